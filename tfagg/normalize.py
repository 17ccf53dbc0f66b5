"""Normalisation of base attributions (Mahlau & Nolde 2022, Sec. 3.1, Eqs 1-4).

Base attributions live on different scales (RISE in [0, 1], PolyCAM unbounded, gradients near
zero), so each map is normalised *on its own*, over its ``H x W`` pixels, before the ensemble
is aggregated. Every function takes maps of shape ``(..., H, W)`` -- e.g. ``(N, H, W)`` or an
ensemble ``(K, N, H, W)`` -- as a numpy array or ``tf.Tensor`` and returns a numpy float32
array of the same shape.

Degenerate maps never produce NaN or inf. The paper leaves them undefined; we map

* a constant map (``max == min``) to all zeros under ``linear`` (Eq 1) and ``zscore`` (Eq 2):
  a map that ranks no pixel above another carries no attribution, and zero is the neutral
  value of both scales' "nothing here" (linear: the minimum; z-score: the mean);
* an all-zero map to all zeros under ``l1`` (Eq 3) and ``l2`` (Eq 4) (zero norm). A constant
  *non-zero* map is not degenerate for these and is scaled to unit norm.

Constant maps are detected exactly (``max == min``) rather than by ``sigma == 0``: in float32
the mean of a constant map can round away from the constant, leaving a tiny spurious sigma
that would blow rounding noise up to unit variance.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfagg.validation import to_numpy

NORMALIZATION_METHODS = ("linear", "zscore", "l1", "l2", "none")

_FLAT_SPEC = tf.TensorSpec(shape=[None, None], dtype=tf.float64)  # (maps, pixels)


def _check_maps_any_rank(maps, name: str = "maps") -> np.ndarray:
    """Validate ``(..., H, W)`` real, finite, non-empty maps; return them as float32."""
    arr = to_numpy(maps, name)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"`{name}` must be real-valued; got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"`{name}` must have shape (..., H, W) (at least one 2-D map); got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty (shape {arr.shape})")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf")
    return arr


def _apply_flat(fn, maps, name: str) -> np.ndarray:
    """Run ``fn`` on the maps flattened to ``(maps, pixels)`` and restore the input shape.

    The arithmetic runs in float64: base attributions such as ``1 + 1e-4 * noise`` keep only
    ~3 significant digits of their spread in a float32 mean, which z-scoring would amplify.
    """
    arr = _check_maps_any_rank(maps, name)
    flat = arr.reshape(-1, arr.shape[-2] * arr.shape[-1])
    return tf.cast(fn(tf.cast(tf.constant(flat), tf.float64)), tf.float32).numpy().reshape(arr.shape)


@tf.function(input_signature=[_FLAT_SPEC])
def _linear_flat(x):
    lo = tf.reduce_min(x, axis=1, keepdims=True)
    hi = tf.reduce_max(x, axis=1, keepdims=True)
    span = hi - lo
    constant = span == 0.0
    return tf.where(constant, tf.zeros_like(x), (x - lo) / tf.where(constant, tf.ones_like(span), span))


@tf.function(input_signature=[_FLAT_SPEC])
def _zscore_flat(x):
    mean = tf.reduce_mean(x, axis=1, keepdims=True)
    centred = x - mean
    # Two-pass population standard deviation (divide by H*W, not H*W - 1).
    std = tf.sqrt(tf.reduce_mean(tf.square(centred), axis=1, keepdims=True))
    constant = tf.reduce_max(x, axis=1, keepdims=True) == tf.reduce_min(x, axis=1, keepdims=True)
    constant = tf.logical_or(constant, std == 0.0)
    return tf.where(constant, tf.zeros_like(x), centred / tf.where(constant, tf.ones_like(std), std))


@tf.function(input_signature=[_FLAT_SPEC])
def _l1_flat(x):
    norm = tf.reduce_sum(tf.abs(x), axis=1, keepdims=True)
    zero = norm == 0.0
    return tf.where(zero, tf.zeros_like(x), x / tf.where(zero, tf.ones_like(norm), norm))


@tf.function(input_signature=[_FLAT_SPEC])
def _l2_flat(x):
    # float64 cannot overflow here: a float32 value squared is < 1.2e77.
    norm = tf.sqrt(tf.reduce_sum(tf.square(x), axis=1, keepdims=True))
    zero = norm == 0.0
    return tf.where(zero, tf.zeros_like(x), x / tf.where(zero, tf.ones_like(norm), norm))


def normalize_linear(maps) -> np.ndarray:
    """Min-max normalisation of each map to [0, 1] (Eq 1).

    .. math:: \\tilde e_{lin} = (e - \\min e) / (\\max e - \\min e)

    The minimum pixel becomes 0 and the maximum 1. A constant map becomes all zeros.
    """
    return _apply_flat(_linear_flat, maps, "maps")


def normalize_zscore(maps) -> np.ndarray:
    """Z-score normalisation of each map (Eq 2).

    .. math:: \\tilde e_z = (e - \\mu(e)) / \\sigma(e)

    ``mu`` and ``sigma`` are the mean and the *population* standard deviation (divisor
    ``H*W``) over the pixels of one map, so every output map has mean 0 and standard
    deviation 1. A constant map becomes all zeros.
    """
    return _apply_flat(_zscore_flat, maps, "maps")


def normalize_l1(maps) -> np.ndarray:
    """l1 normalisation of each map (Eq 3): ``e / sum |e_ij|``; an all-zero map stays zero."""
    return _apply_flat(_l1_flat, maps, "maps")


def normalize_l2(maps) -> np.ndarray:
    """l2 normalisation of each map (Eq 4): ``e / sqrt(sum e_ij^2)``; an all-zero map stays zero."""
    return _apply_flat(_l2_flat, maps, "maps")


def normalize_none(maps) -> np.ndarray:
    """No normalisation (the paper's baseline in Sec. 4.3): validated float32 copy of ``maps``."""
    return _check_maps_any_rank(maps, "maps").copy()


NORMALIZATIONS = {
    "linear": normalize_linear,
    "zscore": normalize_zscore,
    "l1": normalize_l1,
    "l2": normalize_l2,
    "none": normalize_none,
}


def normalize(maps, method: str = "zscore") -> np.ndarray:
    """Normalise every ``(H, W)`` map in ``maps`` (shape ``(..., H, W)``) separately.

    Parameters
    ----------
    maps : array-like or tf.Tensor, shape (..., H, W)
        Attribution maps, e.g. ``(N, H, W)`` for one method or ``(K, N, H, W)`` for an ensemble.
    method : {"linear", "zscore", "l1", "l2", "none"}
        Eq 1, Eq 2, Eq 3, Eq 4 or identity. The default is z-score, which the paper found to
        balance insertion and deletion best (Sec. 4.3) and used for Table 1.

    Returns
    -------
    numpy.ndarray, float32, same shape as ``maps``.
    """
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a string, one of {list(NORMALIZATIONS)}; got {method!r}")
    key = method.strip().lower()
    if key not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation `method` {method!r}; expected one of {list(NORMALIZATIONS)}")
    return NORMALIZATIONS[key](maps)
