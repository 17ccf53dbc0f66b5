"""Expected Gradients (Erion et al. 2019, arXiv:1906.10670) with the Normal baseline."""
from __future__ import annotations

import tensorflow as tf

from tfagg.baselines import normal_baseline
from tfagg.explainers._gradients import (
    StreamedGradientExplainer,
    check_channel_stats,
    check_reduce,
    riemann_points,
    sample_keys,
)
from tfagg.validation import check_positive_int


class ExpectedGradients(StreamedGradientExplainer):
    r"""Integrated Gradients averaged over random baselines.

    Erion et al. (2019), definition of expected gradients (an expectation of the IG integrand):

    .. math:: \phi_i(x) = \mathbb E_{x' \sim D,\, \alpha \sim U(0,1)}
              \Big[(x_i - x'_i)\, \frac{\partial f(x' + \alpha (x - x'))}{\partial x_i}\Big]
              \approx \frac{1}{B} \sum_{b=1}^{B} (x_i - x'^{(b)}_i) \sum_{k=1}^{m} w_k
              \frac{\partial f(x'^{(b)} + \alpha_k (x - x'^{(b)}))}{\partial x_i},

    then reduced over colour channels. Appendix A of Mahlau & Nolde: "20 samples, 30 interpolation
    steps, baseline: Normal". Erion et al. draw one ``alpha ~ U(0, 1)`` per baseline sample; a
    separate number of interpolation steps only makes sense if every sampled baseline is
    integrated along its path, so we read the setting as ``B = 20`` baselines, each integrated
    with the ``m = 30``-point quadrature of :class:`IntegratedGradients` (600 gradients per image).
    The deterministic quadrature is a stratified estimate of the ``alpha`` expectation, and per
    baseline the map satisfies completeness w.r.t. that baseline (up to quadrature error).

    The *Normal* baseline (Mahlau & Nolde Sec. 4, :func:`tfagg.baselines.normal_baseline`): every
    pixel of ``x'^{(b)}`` is drawn from ``N(mean_c, std_c^2)`` of its colour channel ``c``.

    Parameters
    ----------
    model : keras.Model
        Classifier, RGB in [0, 1] -> logits.
    n_baselines : int
        Number of baseline samples ``B`` (Appendix A: 20).
    steps : int
        Quadrature points per baseline ``m`` (Appendix A: 30).
    rule : {"midpoint", "right", "left", "trapezoid"}
        Quadrature rule, as in :class:`IntegratedGradients` (default midpoint, O(1/m^2)).
    baseline_mean, baseline_std : None or 3 floats
        Per-channel statistics of the Normal baseline. ``None`` (default) estimates them from the
        explained image itself (over its pixels); pass data-set statistics (e.g. ImageNet's
        ``(0.485, 0.456, 0.406)``, ``(0.229, 0.224, 0.225)``) to sample from the data distribution
        instead. ``baseline_std = 0`` gives the constant baseline ``baseline_mean``.
    baseline_clip : bool
        Clip baseline samples to [0, 1] (default ``False``: the paper samples a plain normal).
    reduce : {"sum", "abs_sum", "max_abs", "l2"}
        Channel reduction (default ``"sum"``: keeps completeness and the sign).
    batch_size, seed : see :class:`~tfagg.explainers.base.Explainer`.
    score : {"logit", "probability"}
        ``f``; default ``"logit"``.

    Notes
    -----
    Baseline ``b`` of an image is drawn from a stateless stream keyed by the image's key and ``b``
    and regenerated for each of its ``steps`` interpolation points, so the ``N * B * m`` model
    inputs are streamed in chunks of ``batch_size`` without storing baselines.
    """

    name = "expected_gradients"
    default_score = "logit"

    def __init__(
        self,
        model,
        n_baselines: int = 20,
        steps: int = 30,
        rule: str = "midpoint",
        baseline_mean=None,
        baseline_std=None,
        baseline_clip: bool = False,
        reduce: str = "sum",
        batch_size: int = 64,
        seed: int = 0,
        score: str | None = None,
    ):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        self.n_baselines = check_positive_int(n_baselines, "n_baselines")
        self.steps = check_positive_int(steps, "steps")
        if self.n_baselines * self.steps > 2**31 - 1:
            raise ValueError("`n_baselines * steps` must be < 2**31")
        riemann_points(self.steps, rule)  # validates `rule`
        self.rule = rule
        self.baseline_mean = check_channel_stats(baseline_mean, "baseline_mean")
        self.baseline_std = check_channel_stats(baseline_std, "baseline_std", allow_zero=True)
        self.baseline_clip = bool(baseline_clip)
        self.reduce = check_reduce(reduce)

    @property
    def samples_per_image(self) -> int:
        return self.n_baselines * self.steps

    def _sample_inputs(self, images, keys, context, image_index, sample_index):
        step_index = sample_index % self.steps
        # Rows are consecutive in the stream, so a chunk covers few (image, baseline) pairs: draw
        # each of them once and share it among its interpolation points (drawing the Gaussian
        # noise per row would cost ~15 % of a small model's gradient pass).
        pair = image_index * self.n_baselines + sample_index // self.steps
        chunk = int(image_index.shape[0])
        unique = min(chunk, (chunk - 1) // self.steps + 2)
        pair_ids = tf.minimum(pair[0] + tf.range(unique), tf.shape(images)[0] * self.n_baselines - 1)
        pair_image, pair_baseline = pair_ids // self.n_baselines, pair_ids % self.n_baselines
        drawn = normal_baseline(
            tf.gather(images, pair_image),
            sample_keys(keys, pair_image, pair_baseline),
            mean=self.baseline_mean,
            std=self.baseline_std,
            clip=self.baseline_clip,
        )
        x = tf.gather(images, image_index)
        x0 = tf.gather(drawn, pair - pair[0])
        alphas, weights = riemann_points(self.steps, self.rule)  # trace-time constants
        alpha = tf.reshape(tf.gather(alphas, step_index), (-1, 1, 1, 1))
        weight = tf.reshape(tf.gather(weights, step_index), (-1, 1, 1, 1)) / self.n_baselines
        delta = x - x0
        return x0 + alpha * delta, weight * delta
