"""Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365) with a blurred-image baseline."""
from __future__ import annotations

import tensorflow as tf

from tfagg.baselines import blur_baseline, scaled_blur_parameters
from tfagg.explainers._gradients import StreamedGradientExplainer, check_reduce, riemann_points
from tfagg.validation import check_positive_float, check_positive_int


class IntegratedGradients(StreamedGradientExplainer):
    r"""Path integral of the class-score gradient from a blurred baseline to the image.

    Sundararajan et al. (2017), Eq. 1 and its Riemann approximation Eq. 3:

    .. math:: \mathrm{IG}_i(x) = (x_i - x'_i) \int_0^1 \frac{\partial F(x' + \alpha (x - x'))}{\partial x_i}\, d\alpha
              \approx (x_i - x'_i) \sum_{k=1}^{m} w_k\, \frac{\partial F(x' + \alpha_k (x - x'))}{\partial x_i},

    then reduced over colour channels. Completeness (their Proposition 1):
    ``sum_i IG_i(x) = F(x) - F(x')`` holds for the signed channel sum, up to the quadrature error.

    Appendix A of Mahlau & Nolde: baseline ``x'`` = the image blurred with a Gaussian of
    ``sigma = 20`` and a 25x25 kernel, ``m = 30`` interpolation steps.

    Parameters
    ----------
    model : keras.Model
        Classifier, RGB in [0, 1] -> logits.
    steps : int
        Number of gradient evaluations ``m`` along the path (Appendix A: 30).
    rule : {"midpoint", "right", "left", "trapezoid"}
        Quadrature rule (see :func:`tfagg.explainers._gradients.riemann_points`). Default
        ``"midpoint"``: same cost as Sundararajan et al.'s right Riemann sum (Eq. 3) but error
        O(1/m^2) instead of O(1/m), so completeness improves fastest as ``steps`` grows.
    blur_sigma, blur_kernel_size : float, int
        Gaussian blur of the baseline at ``blur_reference_size`` pixels (Appendix A: 20, 25).
    blur_reference_size : int or None
        Resolution at which ``blur_sigma``/``blur_kernel_size`` are specified (224 = ImageNet in the
        paper). At another resolution both are scaled by ``min(H, W) / blur_reference_size``
        (kernel kept odd and >= 3, :func:`tfagg.baselines.scaled_blur_parameters`), so the blur
        removes the same fraction of the image's spatial frequencies at every size (e.g. sigma 5.7,
        7x7 kernel at 64 px). ``None`` uses the parameters unscaled.
    reduce : {"sum", "abs_sum", "max_abs", "l2"}
        Channel reduction of ``IG`` (default ``"sum"``: keeps completeness and the sign).
    batch_size, seed : see :class:`~tfagg.explainers.base.Explainer` (IG is deterministic).
    score : {"logit", "probability"}
        ``F``; default ``"logit"``.

    Notes
    -----
    The ``N * steps`` interpolation points are streamed in chunks of ``batch_size`` model inputs;
    cost: ``steps`` forward+backward passes per image.
    """

    name = "integrated_gradients"
    default_score = "logit"

    def __init__(
        self,
        model,
        steps: int = 30,
        rule: str = "midpoint",
        blur_sigma: float = 20.0,
        blur_kernel_size: int = 25,
        blur_reference_size: int | None = 224,
        reduce: str = "sum",
        batch_size: int = 64,
        seed: int = 0,
        score: str | None = None,
    ):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        self.steps = check_positive_int(steps, "steps", maximum=2**31 - 1)
        riemann_points(self.steps, rule)  # validates `rule` (and steps >= 2 for the trapezoid)
        self.rule = rule
        self.blur_sigma = check_positive_float(blur_sigma, "blur_sigma")
        self.blur_kernel_size = check_positive_int(blur_kernel_size, "blur_kernel_size")
        if self.blur_kernel_size % 2 == 0:
            raise ValueError(f"`blur_kernel_size` must be odd (centred kernel); got {blur_kernel_size}")
        self.blur_reference_size = (
            None if blur_reference_size is None else check_positive_int(blur_reference_size, "blur_reference_size")
        )
        self.reduce = check_reduce(reduce)

    @property
    def samples_per_image(self) -> int:
        return self.steps

    def blur_parameters(self, height: int, width: int):
        """``(sigma, kernel_size)`` of the baseline blur for ``height x width`` images."""
        if self.blur_reference_size is None:
            return self.blur_sigma, self.blur_kernel_size
        return scaled_blur_parameters(
            min(height, width), self.blur_sigma, self.blur_kernel_size, self.blur_reference_size
        )

    def baselines(self, images) -> tf.Tensor:
        """The blurred baselines ``x'`` of ``images`` ``(N, H, W, 3)``."""
        images = tf.convert_to_tensor(images, tf.float32)
        sigma, kernel = self.blur_parameters(int(images.shape[1]), int(images.shape[2]))
        return blur_baseline(images, sigma, kernel)

    def _context(self, images):
        return (self.baselines(images),)

    def _sample_inputs(self, images, keys, context, image_index, sample_index):
        (baselines,) = context
        x = tf.gather(images, image_index)
        x0 = tf.gather(baselines, image_index)
        alphas, weights = riemann_points(self.steps, self.rule)  # trace-time constants
        alpha = tf.reshape(tf.gather(alphas, sample_index), (-1, 1, 1, 1))
        weight = tf.reshape(tf.gather(weights, sample_index), (-1, 1, 1, 1))
        delta = x - x0
        return x0 + alpha * delta, weight * delta
