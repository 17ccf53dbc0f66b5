"""Acquisition-function aggregations: PI, EI, CI, API and AEI (Mahlau & Nolde 2022, Eqs 9-15).

Every pixel is treated as a candidate point of Bayesian optimisation whose objective has mean
``mu(E_ij)`` (Eq 6) and standard deviation ``sigma(E_ij)`` (Eq 7, population std over the K
members). With the incumbent ``E+ = max_ij mu(E_ij)`` -- taken per image -- and

.. math:: d = \\mu(E_{ij}) - E^+ - \\varepsilon, \\qquad Z = d / \\sigma(E_{ij}),

PI is ``Phi(Z)`` (Eq 9) and EI is ``Phi(Z) d + sigma phi(Z)`` (Eq 10).

Numerics
--------
* Where ``sigma = 0`` (all members agree) ``Z`` is undefined; we return the limit
  ``sigma -> 0+``: PI is 1 if ``d > 0``, 0 if ``d < 0`` and 0.5 if ``d = 0`` (the value of
  ``Phi(0)``, i.e. PI stays continuous along ``d = 0``); EI is ``max(d, 0)``.
* ``Phi(z) = erfc(-z / sqrt 2) / 2`` and ``phi(z) = exp(-z^2 / 2) / sqrt(2 pi)`` are exactly
  0 / 1 for huge ``|z|`` (also ``z = +-inf``), so nothing becomes NaN.
* Everything is computed in float64 (from float64 mu and sigma); EI is clipped at 0 (it is
  non-negative mathematically, but in the far tail ``d Phi(Z) + sigma phi(Z)`` cancels and
  rounding could make it slightly negative). All outputs are float32.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfagg.aggregate.ensemble import ENSEMBLE_SPEC, check_ensemble, check_real, finite_result, pixel_mean_std
from tfagg.validation import check_positive_int

_F64 = tf.float64
_EPSILONS_SPEC = tf.TensorSpec(shape=[None], dtype=tf.float64)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

DEFAULT_N_SAMPLES = 10


def _statistics(ens):
    """Per-pixel ``mu``, ``sigma`` (float64, ``(N, H, W)``) and per-image ``E+`` (``(N, 1, 1)``)."""
    mean, std = pixel_mean_std(ens)
    best = tf.reduce_max(mean, axis=[1, 2], keepdims=True)
    return mean, std, best


def _z_score(improvement, std):
    positive = std > 0.0
    return positive, improvement / tf.where(positive, std, tf.ones_like(std))


def _pi_from_statistics(mean, std, best, epsilon):
    """Eq 9 with the sigma -> 0 limit; ``epsilon`` broadcasts against ``(N, 1, 1)``."""
    improvement = mean - best - epsilon
    positive, z = _z_score(improvement, std)
    cdf = 0.5 * tf.math.erfc(-z * _INV_SQRT2)
    step = tf.where(improvement > 0.0, 1.0, tf.where(improvement < 0.0, 0.0, 0.5))
    return tf.where(positive, cdf, tf.cast(step, _F64))


def _ei_from_statistics(mean, std, best, epsilon):
    """Eq 10 with the sigma -> 0 limit ``max(d, 0)``."""
    improvement = mean - best - epsilon
    positive, z = _z_score(improvement, std)
    cdf = 0.5 * tf.math.erfc(-z * _INV_SQRT2)
    pdf = _INV_SQRT_2PI * tf.exp(-0.5 * tf.square(z))
    ei = tf.maximum(cdf * improvement + std * pdf, 0.0)
    return tf.where(positive, ei, tf.maximum(improvement, 0.0))


@tf.function(input_signature=[ENSEMBLE_SPEC, tf.TensorSpec([], _F64)])
def _pi_tf(ens, epsilon):
    mean, std, best = _statistics(ens)
    return tf.cast(_pi_from_statistics(mean, std, best, epsilon), tf.float32)


@tf.function(input_signature=[ENSEMBLE_SPEC, tf.TensorSpec([], _F64)])
def _ei_tf(ens, epsilon):
    mean, std, best = _statistics(ens)
    return tf.cast(_ei_from_statistics(mean, std, best, epsilon), tf.float32)


def _contextual_epsilon(mean_sq_std, best):
    """Eq 11 per image: ``mean_ij sigma^2 / E+``; 0 where ``E+ = 0`` (Eq 11 is undefined there)."""
    zero = best == 0.0
    return tf.where(zero, tf.zeros_like(best), mean_sq_std / tf.where(zero, tf.ones_like(best), best))


@tf.function(input_signature=[ENSEMBLE_SPEC])
def _ci_tf(ens):
    mean, std, best = _statistics(ens)
    epsilon = _contextual_epsilon(tf.reduce_mean(tf.square(std), axis=[1, 2], keepdims=True), best)
    return tf.cast(_ei_from_statistics(mean, std, best, epsilon), tf.float32), epsilon[:, 0, 0]


def _average_over_epsilons(acquisition):
    """Graph for Eqs 14/15: mean of ``acquisition`` over a vector of exploration rates."""

    @tf.function(input_signature=[ENSEMBLE_SPEC, _EPSILONS_SPEC])
    def averaged(ens, epsilons):
        mean, std, best = _statistics(ens)
        total = tf.zeros_like(mean)
        for i in tf.range(tf.shape(epsilons)[0]):
            total += acquisition(mean, std, best, epsilons[i])
        return tf.cast(total / tf.cast(tf.shape(epsilons)[0], _F64), tf.float32)

    return averaged


_api_tf = _average_over_epsilons(_pi_from_statistics)
_aei_tf = _average_over_epsilons(_ei_from_statistics)


def exploration_rates(a: float, b: float, n_samples: int) -> np.ndarray:
    """The N evenly spaced rates ``a + k (b - a) / (N - 1)``, k = 0..N-1, of Eqs 14/15.

    ``N = 1`` gives ``[a]`` (Eq 14's ``0 / 0`` read as the first sample).
    """
    a = check_real(a, "a")
    b = check_real(b, "b")
    n_samples = check_positive_int(n_samples, "n_samples")
    if a > b:
        raise ValueError(f"the exploration interval [a, b] needs a <= b; got a = {a} > b = {b}")
    if n_samples == 1:
        return np.array([a])
    k = np.arange(n_samples, dtype=np.float64)
    return k * (b - a) / (n_samples - 1) + a


def pi(ensemble, epsilon: float = -4.0) -> np.ndarray:
    """Probability of Improvement aggregation (Eq 9).

    .. math:: g_{pi}(E_{ij}, \\varepsilon) = \\Phi(Z), \\quad
              Z = \\frac{\\mu(E_{ij}) - E^+ - \\varepsilon}{\\sigma(E_{ij})}

    with ``E+`` the maximum of the mean map of the same image. Where ``sigma = 0`` the result is
    the step limit 1 / 0.5 / 0 for ``d > 0`` / ``d = 0`` / ``d < 0`` (module docstring).

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    epsilon : float
        Exploration rate; Table 1 default -4.

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W), values in [0, 1].
    """
    epsilon = check_real(epsilon, "epsilon")
    ens = check_ensemble(ensemble)
    return finite_result(_pi_tf(tf.constant(ens), tf.constant(epsilon, _F64)), "pi")


def ei(ensemble, epsilon: float = -6.0) -> np.ndarray:
    """Expected Improvement aggregation (Eq 10).

    .. math:: g_{ei}(E_{ij}, \\varepsilon) = \\Phi(Z) (\\mu(E_{ij}) - E^+ - \\varepsilon)
              + \\sigma(E_{ij}) \\phi(Z)

    ``Z`` and ``E+`` as in :func:`pi`. Where ``sigma = 0`` the result is ``max(d, 0)``. For
    very negative ``epsilon`` ``Phi(Z) -> 1`` and ``phi(Z) -> 0``, so EI becomes the average
    shifted by ``-E+ - epsilon`` and ranks pixels as the average does (Sec. 4.2.4).

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    epsilon : float
        Exploration rate; Table 1 default -6.

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W), values >= 0.
    """
    epsilon = check_real(epsilon, "epsilon")
    ens = check_ensemble(ensemble)
    return finite_result(_ei_tf(tf.constant(ens), tf.constant(epsilon, _F64)), "ei")


def contextual_epsilon(ensemble) -> np.ndarray:
    """The per-image exploration rate of Contextual Improvement (Eq 11), float64 ``(N,)``.

    .. math:: \\varepsilon = \\frac{1}{m n E^+} \\sum_{i,j} \\sigma(E_{ij})^2

    Where ``E+ = 0`` Eq 11 divides by zero; we use ``epsilon = 0`` there (plain EI). For
    ``E+ < 0`` the formula is applied as written (a negative rate).
    """
    ens = check_ensemble(ensemble)
    return _ci_tf(tf.constant(ens))[1].numpy()


def ci(ensemble) -> np.ndarray:
    """Contextual Improvement aggregation (Jasrasaria & Pyzer-Knapp; Eqs 10 and 11).

    EI (Eq 10) of each image with its own exploration rate from Eq 11 (see
    :func:`contextual_epsilon`). No hyperparameters.

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W), values >= 0.
    """
    ens = check_ensemble(ensemble)
    return finite_result(_ci_tf(tf.constant(ens))[0], "ci")


def api(ensemble, a: float = -7.0, b: float = 2.0, n_samples: int = DEFAULT_N_SAMPLES) -> np.ndarray:
    """Average Probability of Improvement (Eq 12, approximated by Eq 14).

    .. math:: g_{api}(E_{ij}, a, b) \\approx \\frac{1}{N} \\sum_{k=0}^{N-1}
              g_{pi}\\left(E_{ij}, \\frac{k (b - a)}{N - 1} + a\\right)

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    a, b : float, a <= b
        Interval of exploration rates; Table 1 default [-7, 2].
    n_samples : int >= 1
        N, the number of evenly spaced rates including both ends (the paper does not state
        it; default 10, i.e. a step of 1 on [-7, 2]). ``n_samples = 1`` is ``pi(ensemble, a)``.
    """
    epsilons = exploration_rates(a, b, n_samples)
    ens = check_ensemble(ensemble)
    return finite_result(_api_tf(tf.constant(ens), tf.constant(epsilons, _F64)), "api")


def aei(ensemble, a: float = -10.0, b: float = 5.0, n_samples: int = DEFAULT_N_SAMPLES) -> np.ndarray:
    """Average Expected Improvement (Eq 13, approximated by Eq 15).

    .. math:: g_{aei}(E_{ij}, a, b) \\approx \\frac{1}{N} \\sum_{k=0}^{N-1}
              g_{ei}\\left(E_{ij}, \\frac{k (b - a)}{N - 1} + a\\right)

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    a, b : float, a <= b
        Interval of exploration rates; Table 1 default [-10, 5].
    n_samples : int >= 1
        N, the number of evenly spaced rates including both ends (default 10; the paper does
        not state it). ``n_samples = 1`` is ``ei(ensemble, a)``.
    """
    epsilons = exploration_rates(a, b, n_samples)
    ens = check_ensemble(ensemble)
    return finite_result(_aei_tf(tf.constant(ens), tf.constant(epsilons, _F64)), "aei")
