"""Area under an insertion / deletion curve."""
from __future__ import annotations

import numpy as np


def curve_fractions(steps: int) -> np.ndarray:
    """x-axis of a curve with ``steps + 1`` points: fraction of changed pixels ``i / steps``."""
    return np.arange(steps + 1, dtype=np.float64) / steps


def auc(curve) -> np.ndarray:
    """Trapezoid-rule area under curves sampled at ``x = 0, 1/steps, ..., 1`` (last axis).

    .. math:: \\mathrm{AUC} = \\frac{1}{T}\\Big(\\tfrac{1}{2} c_0 + \\sum_{i=1}^{T-1} c_i
              + \\tfrac{1}{2} c_T\\Big),

    i.e. the mean of the curve with half weight on both end points; for probabilities it lies
    in [0, 1]. Computed in float64. ``curve`` has shape ``(..., T + 1)`` with ``T >= 1``.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim == 0 or c.shape[-1] < 2:
        raise ValueError(f"`curve` must have at least 2 points on its last axis; got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("`curve` contains NaN or inf")
    steps = c.shape[-1] - 1
    return (c.sum(axis=-1) - 0.5 * (c[..., 0] + c[..., -1])) / steps
