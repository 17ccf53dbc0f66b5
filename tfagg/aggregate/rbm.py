"""Restricted Boltzmann Machine aggregation (Borisov et al. 2021; Mahlau & Nolde 2022, Sec. 3.2).

``g_rbm(E, alpha, k)`` (Sec. 3.2, between Eqs 15 and 16) fits, *per image*, a Bernoulli RBM
with one hidden unit to the ``H*W x K`` matrix whose rows are pixels and whose columns are the
K base attributions, trained by (persistent) contrastive divergence with learning rate
``alpha`` for ``k`` epochs; the aggregated map is the hidden unit's activation probability
``P(h = 1 | v)`` at every pixel. As in the paper (which used scikit-learn 1.0.2), the model is
scikit-learn's ``BernoulliRBM``; it runs on the CPU in numpy, one image at a time.

The paper gives only ``alpha`` and ``k``; the rest follows the reference implementation of
Borisov et al. (github.com/JohanvandenHeuvel/AggregationOfLocalExplanations,
``scripts/ensemble.py`` and ``scripts/normalize.py``), which we read but did not copy:

* **Input scaling.** Bernoulli visible units expect values in [0, 1], so every member map of
  an image is min-max scaled to [0, 1] over its pixels (Eq 1; a constant member becomes 0),
  as the reference does with its ``min_max`` normalisation before fitting. The reference
  additionally clips attributions at 0 first; we do not, because here the members arrive
  z-scored (Table 1), where 0 is each map's mean rather than "no evidence", and clipping would
  discard the below-average half of every map.
* **Sign of the hidden unit.** One hidden unit may learn the inverted code (high probability
  on unimportant pixels). The reference's ``rbm_flip_detection`` fixes this by comparing the
  top and bottom 5 % of pixels of the RBM map with those of the ensemble mean: it counts
  agreements (top with top, bottom with bottom) and disagreements (top with bottom and vice
  versa) and replaces the map by ``1 - map`` when disagreements win. We apply the same rule,
  with the mean of the scaled members as reference. ``1 - sigmoid(x) = sigmoid(-x)``, so the
  flipped map is the activation of the same unit with negated weights and bias.
* **Other settings.** ``batch_size`` defaults to scikit-learn's 10 (the paper states none);
  the weights are initialised from ``random_state = derive_seed(seed, "rbm")`` -- the same for
  every image, so an image's map depends only on its ensemble and the seed, not on which
  other images share the call. scikit-learn iterates minibatches in order (no shuffling).
"""
from __future__ import annotations

import numpy as np
from sklearn.neural_network import BernoulliRBM

from tfagg.aggregate.ensemble import check_ensemble
from tfagg.random import derive_seed
from tfagg.validation import check_positive_float, check_positive_int

FLIP_CHECK_FRACTION = 0.05  # share of pixels compared at each end (reference: 5 %)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an integer; got {seed!r}")
    return int(seed)


def scale_members(pixels_by_member: np.ndarray) -> np.ndarray:
    """Min-max scale every column (member) of a ``(pixels, K)`` matrix to [0, 1] (Eq 1).

    A constant column becomes all zeros. Returns float64 (scikit-learn's working precision).
    """
    x = np.asarray(pixels_by_member, dtype=np.float64)
    lo = x.min(axis=0, keepdims=True)
    span = x.max(axis=0, keepdims=True) - lo
    constant = span == 0.0
    return np.where(constant, 0.0, (x - lo) / np.where(constant, 1.0, span))


def _end_masks(values: np.ndarray, count: int):
    order = np.argsort(values, kind="stable")
    bottom = np.zeros(values.size, dtype=bool)
    top = np.zeros(values.size, dtype=bool)
    bottom[order[:count]] = True
    top[order[-count:]] = True
    return bottom, top


def orient_hidden(hidden: np.ndarray, reference: np.ndarray, fraction: float = FLIP_CHECK_FRACTION) -> np.ndarray:
    """Return ``hidden`` or ``1 - hidden``, whichever agrees with ``reference`` at its extremes.

    Follows the flip detection of Borisov et al.'s reference implementation: with ``m`` =
    ``fraction`` of the pixels (at least 1), count pixels in the top-``m`` of both maps plus
    pixels in the bottom-``m`` of both (agreement) against pixels in the top of one and the
    bottom of the other (disagreement); flip when disagreement is larger.
    """
    hidden = np.asarray(hidden)
    reference = np.asarray(reference)
    count = max(1, int(fraction * hidden.size))
    ref_bottom, ref_top = _end_masks(reference.ravel(), count)
    hid_bottom, hid_top = _end_masks(hidden.ravel(), count)
    agree = np.sum(ref_top & hid_top) + np.sum(ref_bottom & hid_bottom)
    disagree = np.sum(ref_top & hid_bottom) + np.sum(ref_bottom & hid_top)
    return 1.0 - hidden if disagree > agree else hidden


def rbm_single(
    members: np.ndarray,
    learning_rate: float = 1e-4,
    n_iter: int = 100,
    batch_size: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """RBM aggregation of one image's ensemble ``(K, H, W)`` -> ``(H, W)`` float32 in [0, 1]."""
    k, h, w = members.shape
    visible = scale_members(np.reshape(members, (k, h * w)).T)
    machine = BernoulliRBM(
        n_components=1,
        learning_rate=learning_rate,
        n_iter=n_iter,
        batch_size=batch_size,
        random_state=derive_seed(seed, "rbm"),
    )
    machine.fit(visible)
    hidden = machine.transform(visible)[:, 0]
    hidden = orient_hidden(hidden, visible.mean(axis=1))
    return hidden.reshape(h, w).astype(np.float32)


def rbm(
    ensemble,
    learning_rate: float = 1e-4,
    n_iter: int = 100,
    batch_size: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """RBM aggregation ``g_rbm(E, alpha, k)`` (Sec. 3.2; Borisov et al. 2021).

    Per image: scale each member to [0, 1] (Eq 1), fit a one-hidden-unit ``BernoulliRBM`` on
    the ``(H*W pixels, K members)`` matrix, return ``P(h = 1 | pixel)`` oriented to agree with
    the ensemble mean (see the module docstring for the choices and their source).

    Parameters
    ----------
    ensemble : array-like, shape (K, N, H, W), or list of K (N, H, W) arrays
    learning_rate : float > 0
        ``alpha``; Table 1 default 1e-4.
    n_iter : int >= 1
        ``k``, training epochs over all pixels; Table 1 default 100.
    batch_size : int >= 1
        Pixels per contrastive-divergence minibatch (scikit-learn's default 10).
    seed : int
        Seeds the weight initialisation and the Gibbs sampling.

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W), values in [0, 1].
    """
    learning_rate = check_positive_float(learning_rate, "learning_rate")
    n_iter = check_positive_int(n_iter, "n_iter")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = _check_seed(seed)
    ens = check_ensemble(ensemble)
    return np.stack(
        [rbm_single(ens[:, n], learning_rate, n_iter, batch_size, seed) for n in range(ens.shape[1])]
    )
