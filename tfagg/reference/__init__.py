"""Published numbers carried as data (Mahlau & Nolde 2022, Table 1)."""
from __future__ import annotations

import csv
from pathlib import Path

_HERE = Path(__file__).parent


def mahlau2022_table1() -> dict:
    """Table 1 of Mahlau & Nolde (2022): ``{method: {"imagenet_insertion": ..., ...}}``.

    Z-score normalised ensembles of the seven base attributions of a ResNet18, 2000 validation
    images per data set, 1000 insertion/deletion increments with a random-normal baseline.
    """
    out = {}
    with open(_HERE / "mahlau2022_table1.csv", newline="") as f:
        for row in csv.DictReader(f):
            method = row.pop("method")
            hp = row.pop("hyperparameters")
            out[method] = {k: float(v) for k, v in row.items()}
            out[method]["hyperparameters"] = hp
    return out
