"""Results store of a run directory: an SQLite database plus compressed per-image ensembles.

Layout of a run directory::

    config.json          the run's configuration (a rerun with a different one is refused)
    results.sqlite       per-image scores and curves (stdlib sqlite3; open it with any SQLite tool)
    ensembles/<id>.npz   the seven base attributions of each image, with a checksum

Every image's results are written in one transaction together with its "done" mark, so a process
killed at any moment loses at most the image in flight. Rows carry the configuration's fingerprint,
so two configurations never mix.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import zipfile
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_id TEXT PRIMARY KEY, config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    config_id TEXT, image_id TEXT, position INTEGER, dataset TEXT, label INTEGER, target INTEGER,
    target_probability REAL, PRIMARY KEY (config_id, image_id)
);
CREATE TABLE IF NOT EXISTS scores (
    config_id TEXT, image_id TEXT, dataset TEXT, model TEXT, map_key TEXT, kind TEXT,
    normalization TEXT, aggregation TEXT, hyperparameters TEXT, members TEXT,
    insertion REAL, deletion REAL, PRIMARY KEY (config_id, image_id, map_key)
);
CREATE TABLE IF NOT EXISTS curves (
    config_id TEXT, image_id TEXT, map_key TEXT, insertion BLOB, deletion BLOB,
    PRIMARY KEY (config_id, image_id, map_key)
);
CREATE TABLE IF NOT EXISTS progress (
    config_id TEXT, image_id TEXT, phase TEXT, PRIMARY KEY (config_id, image_id, phase)
);
"""


class ResultsStore:
    """The SQLite database of one run directory."""

    def __init__(self, path):
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path))
        self.conn.execute("PRAGMA journal_mode=WAL")  # crash-safe, readers never block the run
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self.conn.commit()

    def close(self):
        self.conn.close()

    def register_config(self, config_id: str, config: dict) -> None:
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO runs VALUES (?, ?)", (config_id, json.dumps(config, sort_keys=True)))

    def is_done(self, config_id: str, image_id: str, phase: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM progress WHERE config_id=? AND image_id=? AND phase=?", (config_id, image_id, phase)
        ).fetchone()
        return row is not None

    def write_image_results(self, config_id, phase, image_row: dict, score_rows: list, curve_rows: list) -> None:
        """Write one image's rows and its done-mark in a single transaction."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO images VALUES (:config_id, :image_id, :position, :dataset, :label, "
                ":target, :target_probability)", {"config_id": config_id, **image_row})
            self.conn.executemany(
                "INSERT OR REPLACE INTO scores VALUES (:config_id, :image_id, :dataset, :model, :map_key, :kind, "
                ":normalization, :aggregation, :hyperparameters, :members, :insertion, :deletion)",
                [{"config_id": config_id, **r} for r in score_rows])
            self.conn.executemany(
                "INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?, ?)",
                [(config_id, r["image_id"], r["map_key"], np.asarray(r["insertion"], "<f4").tobytes(),
                  np.asarray(r["deletion"], "<f4").tobytes()) for r in curve_rows])
            self.conn.execute("INSERT OR REPLACE INTO progress VALUES (?, ?, ?)", (config_id, image_row["image_id"], phase))

    def scores(self, config_id: str, **where) -> list:
        """Score rows as dicts, filtered by equality on columns."""
        sql = "SELECT * FROM scores WHERE config_id=?"
        args = [config_id]
        for k, v in where.items():
            sql += f" AND {k}=?"
            args.append(v)
        cur = self.conn.execute(sql + " ORDER BY image_id, map_key", args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def curves(self, config_id: str, map_key: str):
        """``(insertion (n, steps+1), deletion (n, steps+1))`` curves of ``map_key`` over the run's images."""
        rows = self.conn.execute(
            "SELECT insertion, deletion FROM curves WHERE config_id=? AND map_key=? ORDER BY image_id",
            (config_id, map_key)).fetchall()
        if not rows:
            return None, None
        ins = np.stack([np.frombuffer(r[0], "<f4") for r in rows])
        dele = np.stack([np.frombuffer(r[1], "<f4") for r in rows])
        return ins, dele

    def images(self, config_id: str) -> list:
        cur = self.conn.execute("SELECT * FROM images WHERE config_id=? ORDER BY position", (config_id,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def count_done(self, config_id: str, phase: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM progress WHERE config_id=? AND phase=?",
                                 (config_id, phase)).fetchone()[0]


# -- ensembles --------------------------------------------------------------------------------------

def _safe_name(image_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)
    return f"{name}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"


def _digest(maps: np.ndarray, methods, config_id: str) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(maps, "<f4").tobytes())
    h.update(json.dumps([list(methods), list(maps.shape), config_id]).encode())
    return h.hexdigest()


def ensemble_path(run_dir, image_id: str, ensemble_id: str) -> Path:
    """Ensembles live under their ensemble id, so runs that differ only in metrics share them."""
    return Path(run_dir) / "ensembles" / ensemble_id / f"{_safe_name(image_id)}.npz"


def save_ensemble(run_dir, image_id: str, maps: np.ndarray, methods, config_id: str) -> Path:
    """Write ``maps`` (K, H, W) compressed, with a checksum over data, methods and ids (atomic).

    ``config_id`` is the run's *ensemble* id (:func:`tfagg.experiment.config.run_identity`).
    """
    path = ensemble_path(run_dir, image_id, config_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    maps = np.asarray(maps, np.float32)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(f, maps=maps, methods=np.array(list(methods)), config_id=np.array(config_id),
                            image_id=np.array(image_id), sha256=np.array(_digest(maps, methods, config_id)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_ensemble(run_dir, image_id: str, methods, config_id: str):
    """The stored ensemble, or ``None`` if absent, truncated, corrupt or from another config."""
    path = ensemble_path(run_dir, image_id, config_id)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            maps = z["maps"]
            ok = (
                [str(m) for m in z["methods"]] == list(methods)
                and str(z["config_id"]) == config_id
                and str(z["image_id"]) == image_id
                and str(z["sha256"]) == _digest(maps, methods, config_id)
                and np.all(np.isfinite(maps))
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        ok = False
    return maps if ok else None
