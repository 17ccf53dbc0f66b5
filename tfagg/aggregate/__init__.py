"""Ensemble aggregations of Mahlau & Nolde (2022), Sec. 3.2, Eqs 5-16.

Pixel-wise aggregations (average, percentile, ucb, var, pi, ei, ci, api, aei) run vectorised
in TensorFlow; rbm fits a scikit-learn RBM per image on the CPU. All take an ensemble
``(K, N, H, W)`` (or a list of K ``(N, H, W)`` maps; numpy or tf) and return numpy float32
``(N, H, W)``.
"""
from tfagg.aggregate.acquisition import aei, api, ci, contextual_epsilon, ei, exploration_rates, pi
from tfagg.aggregate.ensemble import check_ensemble
from tfagg.aggregate.pixelwise import VAR_DEFAULT_DELTA, average, percentile, ucb, var
from tfagg.aggregate.rbm import rbm
from tfagg.aggregate.registry import (
    AGGREGATIONS,
    DEFAULT_HYPERPARAMETERS,
    TABLE1_METHODS,
    aggregate,
    resolve_method,
)

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_HYPERPARAMETERS",
    "TABLE1_METHODS",
    "VAR_DEFAULT_DELTA",
    "aggregate",
    "aei",
    "api",
    "average",
    "check_ensemble",
    "ci",
    "contextual_epsilon",
    "ei",
    "exploration_rates",
    "percentile",
    "pi",
    "rbm",
    "resolve_method",
    "ucb",
    "var",
]
