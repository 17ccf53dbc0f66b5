"""Name -> aggregation registry and the single entry point :func:`aggregate`.

``DEFAULT_HYPERPARAMETERS`` is read off the functions' signatures, whose defaults are the
values tuned by Mahlau & Nolde (2022, Table 1), so the registry and the functions cannot
disagree. Experiment configurations and the CLI refer to aggregations by these names.
"""
from __future__ import annotations

import inspect

import numpy as np

from tfagg.aggregate.acquisition import aei, api, ci, ei, pi
from tfagg.aggregate.pixelwise import average, percentile, ucb, var
from tfagg.aggregate.rbm import rbm

# The ten rows of Table 1, in the paper's order.
TABLE1_METHODS = ["average", "rbm", "var", "ucb", "percentile", "pi", "ei", "ci", "api", "aei"]

AGGREGATIONS = {
    "average": average,  # Eq 5
    "rbm": rbm,  # Borisov et al. 2021
    "var": var,  # Eq 16
    "ucb": ucb,  # Eq 8
    "percentile": percentile,  # g_k, Sec. 3.2
    "pi": pi,  # Eq 9
    "ei": ei,  # Eq 10
    "ci": ci,  # Eqs 10 + 11
    "api": api,  # Eqs 12 + 14
    "aei": aei,  # Eqs 13 + 15
}


def _defaults(fn) -> dict:
    params = list(inspect.signature(fn).parameters.values())[1:]  # skip `ensemble`
    return {p.name: p.default for p in params}


DEFAULT_HYPERPARAMETERS = {name: _defaults(fn) for name, fn in AGGREGATIONS.items()}


def resolve_method(method: str) -> str:
    """Canonical (lower-case) aggregation name, or a ``ValueError`` listing the valid ones."""
    if not isinstance(method, str):
        raise TypeError(f"aggregation `method` must be a string, one of {list(AGGREGATIONS)}; got {method!r}")
    key = method.strip().lower()
    if key not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation `method` {method!r}; expected one of {list(AGGREGATIONS)}")
    return key


def aggregate(ensemble, method: str, **hyperparameters) -> np.ndarray:
    """Aggregate an ensemble of saliency maps with the named method.

    Parameters
    ----------
    ensemble : array-like or tf.Tensor, shape (K, N, H, W), or list of K (N, H, W) arrays
        K base attributions (normalised beforehand, e.g. with :func:`tfagg.normalize.normalize`)
        of N images.
    method : str
        One of ``AGGREGATIONS`` (see ``TABLE1_METHODS``).
    **hyperparameters
        Overrides of the method's Table 1 defaults (``DEFAULT_HYPERPARAMETERS[method]``).

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W).
    """
    key = resolve_method(method)
    valid = DEFAULT_HYPERPARAMETERS[key]
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        expected = ", ".join(valid) if valid else "none"
        raise TypeError(
            f"aggregation {key!r} got unknown hyperparameter(s) {unknown}; valid: {expected}"
        )
    return AGGREGATIONS[key](ensemble, **hyperparameters)
