"""Cache of trained models under ``$TFAGG_HOME/models/<preset>-seed<seed>/``.

A model directory holds ``model.keras`` and ``card.json`` (config, test accuracy, training time).
Writes are atomic: the model is saved to a temporary file and renamed, and the card -- written last,
also by rename -- is what marks the directory complete. An interrupted training run therefore never
leaves a model that later commands would load as if it were finished.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tfagg.paths import tfagg_home

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"


def model_dir(preset: str, seed: int = 0, root=None) -> Path:
    base = Path(root) if root is not None else tfagg_home() / "models"
    return base / f"{preset}-seed{seed}"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_model(model, card: dict, directory) -> Path:
    """Save ``model`` and its ``card`` into ``directory`` atomically (card last)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card_path = directory / CARD_FILE
    if card_path.exists():
        card_path.unlink()  # the directory is incomplete until the new card lands
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, directory / MODEL_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _atomic_write_text(card_path, json.dumps(card, indent=2, sort_keys=True))
    return directory


def load_model(directory):
    """Load ``(model, card)`` from a complete model directory; ``FileNotFoundError`` otherwise."""
    import keras

    directory = Path(directory)
    card_path, model_path = directory / CARD_FILE, directory / MODEL_FILE
    if not card_path.is_file() or not model_path.is_file():
        raise FileNotFoundError(
            f"no complete trained model in {directory} (expected {MODEL_FILE} and {CARD_FILE}; "
            "an interrupted training run leaves no card). Run `tfagg train` to create it."
        )
    card = json.loads(card_path.read_text())
    model = keras.models.load_model(model_path, compile=False)
    return model, card


def cached_model(preset: str = "synth-signs", seed: int = 0, train_if_missing: bool = True, root=None,
                 progress: bool = True):
    """The trained model of ``preset`` from the cache, training it first if needed (synthetic data only)."""
    directory = model_dir(preset, seed, root)
    try:
        return load_model(directory)
    except FileNotFoundError:
        if not train_if_missing:
            raise
    from tfagg.training import train_model

    return train_model(preset, seed=seed, out_dir=directory, progress=progress)
