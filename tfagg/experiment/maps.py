"""Which attribution maps each experiment of Mahlau & Nolde (2022, Sec. 4) scores, and how to build them.

A :class:`MapSpec` names one map of an image: a base attribution, or an aggregation of (a subset of)
the normalised ensemble. Specs are identified by a stable ``key`` so that a map used by several
experiments (e.g. the z-scored average: Table 1, Figure 4, Figure 10, Figure 11) is scored once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from tfagg.aggregate import DEFAULT_HYPERPARAMETERS, TABLE1_METHODS, aggregate
from tfagg.experiment.config import BASE_METHODS
from tfagg.normalize import normalize

NORMALIZATIONS = ("none", "linear", "zscore", "l1", "l2")
TABLE1_NORMALIZATION = "zscore"


@dataclass(frozen=True)
class MapSpec:
    kind: str  # "base" or "aggregate"
    normalization: str = "none"
    aggregation: str = "none"
    hyperparameters: tuple = ()  # sorted (name, value) pairs
    members: tuple = BASE_METHODS

    @property
    def params(self) -> dict:
        return dict(self.hyperparameters)

    @property
    def members_label(self) -> str:
        return "all" if tuple(self.members) == tuple(BASE_METHODS) else "+".join(self.members)

    @property
    def key(self) -> str:
        if self.kind == "base":
            return f"base|{self.members[0]}"
        hp = json.dumps(self.params, sort_keys=True)
        return f"{self.normalization}|{self.aggregation}|{hp}|{self.members_label}"

    def row(self) -> dict:
        return {
            "map_key": self.key, "kind": self.kind, "normalization": self.normalization,
            "aggregation": self.aggregation, "hyperparameters": json.dumps(self.params, sort_keys=True),
            "members": self.members_label,
        }


def base_spec(method: str) -> MapSpec:
    return MapSpec(kind="base", members=(method,))


def aggregate_spec(aggregation: str, normalization: str = TABLE1_NORMALIZATION, members=BASE_METHODS,
                   **overrides) -> MapSpec:
    """The spec of an aggregation; equal maps get equal keys (k=25 and k=25.0; any member order)."""
    defaults = DEFAULT_HYPERPARAMETERS.get(aggregation, {})
    hp = dict(defaults)
    hp.pop("seed", None)  # RBM's seed is the image's seed (set in build_maps), not a hyperparameter
    for name, value in overrides.items():
        default = defaults.get(name)
        hp[name] = type(default)(value) if isinstance(default, (int, float)) and not isinstance(default, bool) else value
    if aggregation != "rbm":  # every other aggregation is symmetric in its members
        chosen = set(members)
        members = tuple(m for m in BASE_METHODS if m in chosen)
    return MapSpec(kind="aggregate", normalization=normalization, aggregation=aggregation,
                   hyperparameters=tuple(sorted(hp.items())), members=tuple(members))


def phase1_specs(sweeps: dict) -> list:
    """Maps of Table 1, Figures 4-10 for one image, deduplicated, in a stable order."""
    specs = [base_spec(m) for m in BASE_METHODS]  # Figure 4 (bases), ablation ordering
    specs += [aggregate_spec(m) for m in TABLE1_METHODS]  # Table 1
    specs += [aggregate_spec("average", normalization=n) for n in NORMALIZATIONS]  # Figure 10
    for method, grid in sweeps.items():  # Figures 5-9
        for name, values in grid.items():
            specs += [aggregate_spec(method, **{name: v}) for v in values]
    return _dedupe(specs)


def ablation_specs(order_insertion, order_deletion) -> list:
    """Figure 11: top-k ensembles (k = 1..7, bases ordered per metric) under Average and UCB."""
    specs = []
    for order in (order_insertion, order_deletion):
        for k in range(1, len(order) + 1):
            for agg in ("average", "ucb"):
                specs.append(aggregate_spec(agg, members=tuple(order[:k])))
    return _dedupe(specs)


def _dedupe(specs):
    seen, out = set(), []
    for s in specs:
        if s.key not in seen:
            seen.add(s.key)
            out.append(s)
    return out


def build_maps(ensemble: np.ndarray, specs, seed: int = 0) -> np.ndarray:
    """Maps ``(M, H, W)`` for ``specs`` from one image's raw ensemble ``(K, H, W)`` (K = BASE_METHODS)."""
    index = {m: i for i, m in enumerate(BASE_METHODS)}
    normalized = {}
    out = []
    for spec in specs:
        if spec.kind == "base":
            out.append(ensemble[index[spec.members[0]]])
            continue
        if spec.normalization not in normalized:
            normalized[spec.normalization] = np.asarray(normalize(ensemble[:, None], spec.normalization))
        members = normalized[spec.normalization][[index[m] for m in spec.members]]
        params = spec.params
        if spec.aggregation == "rbm":
            params["seed"] = seed
        out.append(np.asarray(aggregate(members, spec.aggregation, **params))[0])
    return np.stack(out).astype(np.float32)
