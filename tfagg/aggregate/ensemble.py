"""Ensemble input checks and the per-pixel statistics shared by the aggregations.

An ensemble ``E = {e^1, ..., e^K}`` (Mahlau & Nolde 2022, Sec. 3) is passed as one array of
shape ``(K, N, H, W)`` -- K base attributions of N images -- or as a list of K arrays of shape
``(N, H, W)``.
"""
from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from tfagg.validation import to_numpy, check_maps

ENSEMBLE_SPEC = tf.TensorSpec(shape=[None, None, None, None], dtype=tf.float32)
SCALAR_SPEC = tf.TensorSpec(shape=[], dtype=tf.float64)


def check_ensemble(ensemble, name: str = "ensemble") -> np.ndarray:
    """Return ``ensemble`` as a finite float32 array ``(K, N, H, W)`` with K, N, H, W >= 1.

    Accepts a ``(K, N, H, W)`` array / tensor or a list/tuple of K ``(N, H, W)`` maps.
    """
    if isinstance(ensemble, (list, tuple)):
        if len(ensemble) == 0:
            raise ValueError(f"`{name}` is empty: expected at least one base attribution (K >= 1)")
        members = [check_maps(m, name=f"{name}[{i}]") for i, m in enumerate(ensemble)]
        shapes = [m.shape for m in members]
        if len(set(shapes)) > 1:
            raise ValueError(
                f"members of `{name}` must all have the same shape (N, H, W); got shapes {shapes}"
            )
        arr = np.stack(members)
    else:
        arr = to_numpy(ensemble, name)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"`{name}` must be real-valued; got dtype {arr.dtype}")
        if arr.ndim != 4:
            hint = (
                " For a single image add an image axis, e.g. ensemble[:, None]." if arr.ndim == 3 else ""
            )
            raise ValueError(
                f"`{name}` must have shape (K, N, H, W) (K base attributions of N images) or be a "
                f"list of K (N, H, W) arrays; got shape {arr.shape}.{hint}"
            )
        arr = arr.astype(np.float32, copy=False)
    if 0 in arr.shape:
        raise ValueError(f"`{name}` is empty: shape (K, N, H, W) = {arr.shape} has a zero axis")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf")
    return arr


def check_real(value, name: str) -> float:
    """Return ``value`` as a finite float (any sign), or raise ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a finite real number; got {value!r}")
    return float(value)


def pixel_mean_std(ens: tf.Tensor):
    """Per-pixel mean (Eq 6) and population standard deviation (Eq 7) over the K members.

    Returns float64 ``(N, H, W)`` tensors. ``sigma`` uses divisor ``|E| = K`` as in Eq 7 and
    is computed in two passes in float64, so squaring cannot overflow for any finite float32
    input and the mean does not lose digits. Where all K members agree exactly
    (``max == min``) sigma is set to exactly 0 and mu to that common value, so the sigma -> 0
    limits of PI/EI apply exactly instead of to a rounding residue.
    """
    ens = tf.cast(ens, tf.float64)
    mean = tf.reduce_mean(ens, axis=0)
    std = tf.sqrt(tf.reduce_mean(tf.square(ens - mean[None]), axis=0))
    lo = tf.reduce_min(ens, axis=0)
    agree = lo == tf.reduce_max(ens, axis=0)
    return tf.where(agree, lo, mean), tf.where(agree, tf.zeros_like(std), std)


def finite_result(result: tf.Tensor, method: str) -> np.ndarray:
    """``result`` as numpy float32, or a ``ValueError`` if it overflowed float32.

    Finite inputs can still give an infinite float32 result (e.g. VAR divides by
    ``delta = 1e-7``); raising here keeps inf/NaN out of downstream metrics.
    """
    out = result.numpy()
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"the {method} aggregation of this ensemble exceeds the float32 range (|value| > "
            f"{np.finfo(np.float32).max:.3g}); normalise the base attributions first (tfagg.normalize)"
        )
    return out
