"""Pixel-wise statistics aggregations: Average, Percentile, UCB and VAR (Mahlau & Nolde 2022, Sec. 3.2).

Each function maps an ensemble ``(K, N, H, W)`` (or a list of K ``(N, H, W)`` maps) to one map
per image, ``(N, H, W)`` numpy float32, computed independently at every pixel from the K
member values there. Statistics are computed in float64 and returned as float32; a result
that overflows float32 raises ``ValueError``. The TensorFlow graphs take dynamic shapes and tensor hyperparameters, so
calls with new shapes or new hyperparameter values do not retrace.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfagg.aggregate.ensemble import (
    ENSEMBLE_SPEC,
    SCALAR_SPEC,
    check_ensemble,
    check_real,
    finite_result,
    pixel_mean_std,
)
from tfagg.validation import check_positive_float


@tf.function(input_signature=[ENSEMBLE_SPEC])
def _average_tf(ens):
    # float64 so that the sum of K large float32 values cannot overflow.
    return tf.cast(tf.reduce_mean(tf.cast(ens, tf.float64), axis=0), tf.float32)


@tf.function(input_signature=[ENSEMBLE_SPEC, SCALAR_SPEC])
def _ucb_tf(ens, epsilon):
    mean, std = pixel_mean_std(ens)
    return tf.cast(mean + epsilon * std, tf.float32)


@tf.function(input_signature=[ENSEMBLE_SPEC, SCALAR_SPEC, SCALAR_SPEC])
def _var_tf(ens, epsilon, delta):
    mean, std = pixel_mean_std(ens)
    return tf.cast(mean / (epsilon * std + delta), tf.float32)


@tf.function(
    input_signature=[
        ENSEMBLE_SPEC,
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.bool),
    ]
)
def _percentile_tf(ens, lower, upper, gamma, one_minus_gamma, from_upper):
    # Sort the K member values of every pixel: move K last, sort, take the two neighbours.
    values = tf.sort(tf.transpose(ens, [1, 2, 3, 0]), axis=-1)
    below = values[..., lower]
    above = values[..., upper]
    diff = above - below
    # numpy's _lerp: interpolate from the nearer end so that gamma = 0 / 1 return the data
    # point exactly (and the result is bit-identical to numpy.percentile for float32 input).
    return tf.cond(from_upper, lambda: above - diff * one_minus_gamma, lambda: below + diff * gamma)


def _percentile_position(k: float, count: int):
    """Neighbour indices and weight of the k-th percentile of ``count`` sorted values.

    Replicates numpy's default ``method='linear'`` (Hyndman & Fan type 7): virtual index
    ``count * q + (1 - q) - 1`` with ``q = k / 100``, evaluated in float64 in the same order.
    """
    q = k / 100.0
    virtual = count * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0
    lower = math.floor(virtual)
    gamma = virtual - lower
    if virtual >= count - 1:
        lower = upper = count - 1
    else:
        upper = lower + 1
    return lower, upper, gamma


def average(ensemble) -> np.ndarray:
    """Average aggregation (Eq 5).

    .. math:: g_{avg}(E) = \\frac{1}{|E|} \\sum_{e \\in E} e

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W)
    """
    ens = check_ensemble(ensemble)
    return finite_result(_average_tf(tf.constant(ens)), "average")


def percentile(ensemble, k: float = 25.0) -> np.ndarray:
    """Percentile aggregation ``g_k(E)`` (Sec. 3.2, after Eq 5) with linear interpolation.

    At each pixel the k-th percentile of the K member values, interpolated linearly between
    neighbouring order statistics exactly as ``numpy.percentile(..., method='linear')``
    (the default): ``k = 0`` is the minimum, ``k = 50`` the median, ``k = 100`` the maximum.

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    k : float in [0, 100]
        Percentage; Table 1 default 25 (the lower quartile).
    """
    k = check_real(k, "k")
    if not 0.0 <= k <= 100.0:
        raise ValueError(f"percentile `k` must lie in [0, 100]; got {k}")
    ens = check_ensemble(ensemble)
    lower, upper, gamma = _percentile_position(k, ens.shape[0])
    result = _percentile_tf(
        tf.constant(ens),
        tf.constant(lower, tf.int32),
        tf.constant(upper, tf.int32),
        tf.constant(gamma, tf.float32),
        tf.constant(1.0 - gamma, tf.float32),
        tf.constant(gamma >= 0.5),
    )
    return finite_result(result, "percentile")


def ucb(ensemble, epsilon: float = -0.5) -> np.ndarray:
    """Upper Confidence Bound aggregation (Eq 8).

    .. math:: g_{ucb}(E_{ij}, \\varepsilon) = \\mu(E_{ij}) + \\varepsilon\\, \\sigma(E_{ij})

    with the per-pixel mean (Eq 6) and population standard deviation (Eq 7) over the K members.
    ``epsilon = 0`` is the average; negative values penalise disagreement between members.

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    epsilon : float
        Exploration rate; Table 1 default -0.5.
    """
    epsilon = check_real(epsilon, "epsilon")
    ens = check_ensemble(ensemble)
    return finite_result(_ucb_tf(tf.constant(ens), tf.constant(epsilon, tf.float64)), "ucb")


VAR_DEFAULT_DELTA = 1e-7


def var(ensemble, epsilon: float = 1e-7, delta: float = VAR_DEFAULT_DELTA) -> np.ndarray:
    """Variance aggregation VAR (Eq 16, Rieger & Hansen extended with epsilon).

    .. math:: g_{var}(E_{ij}, \\varepsilon, \\delta)
              = \\frac{1}{|E|} \\sum_{e \\in E} \\frac{e_{ij}}{\\varepsilon \\sigma(E_{ij}) + \\delta}
              = \\frac{\\mu(E_{ij})}{\\varepsilon \\sigma(E_{ij}) + \\delta}

    ``epsilon = 0`` gives exactly ``average / delta``; a large ``epsilon / delta`` approaches
    Rieger & Hansen's ``mu / sigma``.

    Choice of ``delta`` (the paper gives none): the pixel ranking depends only on
    ``epsilon / delta``, so delta fixes where on the epsilon axis VAR moves from the average to
    ``mu / sigma``. We use ``delta = 1e-7`` (Keras' fuzz factor ``keras.config.epsilon()``, the
    natural "small constant" of a TensorFlow implementation). With z-scored members
    (``sigma`` of order 1) this reproduces Sec. 4.2.5: at ``epsilon = 1e-10`` the denominator is
    ``delta (1 + 1e-3 sigma)``, i.e. VAR is the average up to a 0.1 % reweighting; the Table 1
    value ``epsilon = 1e-7`` gives ``mu / (1e-7 (sigma + 1))``, a genuine mean/std balance; and
    by ``epsilon = 1e-2`` it is ``mu / sigma`` -- so the "interesting range" [1e-10, 1e-2] of
    the paper spans exactly the transition.

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    epsilon : float >= 0
        Weight of the standard deviation; Table 1 default 1e-7. Negative values are rejected
        because ``epsilon * sigma + delta`` could then vanish.
    delta : float > 0
        Additive constant of the denominator (default 1e-7, see above).
    """
    epsilon = check_positive_float(epsilon, "epsilon", allow_zero=True)
    delta = check_positive_float(delta, "delta")
    ens = check_ensemble(ensemble)
    result = _var_tf(tf.constant(ens), tf.constant(epsilon, tf.float64), tf.constant(delta, tf.float64))
    return finite_result(result, "var")
