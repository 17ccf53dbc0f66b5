"""Seeding: every random draw in tfagg comes from a stateless stream keyed by (seed, ...).

Keys are derived, never drawn from global state, so a map depends only on the seed and the
image's identity -- not on batch size, call order, or resumption of an interrupted run.
"""
from __future__ import annotations

import hashlib

import numpy as np
import tensorflow as tf


def derive_seed(*parts) -> int:
    """A 31-bit integer seed determined by ``parts`` (ints / strings), e.g. (run_seed, image_id)."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def stateless_key(*parts) -> tf.Tensor:
    """A ``tf.random.stateless_*`` seed tensor (shape (2,), int32) derived from ``parts``."""
    return tf.constant([derive_seed(*parts, "a"), derive_seed(*parts, "b")], dtype=tf.int32)


def per_image_keys(seed: int, n: int, stream: str) -> tf.Tensor:
    """``(n, 2)`` int32 keys: one independent stream per image index of a call."""
    return tf.constant([[derive_seed(seed, stream, i, "a"), derive_seed(seed, stream, i, "b")] for i in range(n)], tf.int32)


def numpy_rng(*parts) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))
