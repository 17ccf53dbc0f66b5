"""SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825), Mahlau & Nolde (2022) Appendix A settings."""
from __future__ import annotations

import tensorflow as tf

from tfagg.explainers._gradients import (
    StreamedGradientExplainer,
    check_reduce,
    check_sigma,
    sample_keys,
    stateless_normal_rows,
)
from tfagg.validation import check_positive_int


class SmoothGrad(StreamedGradientExplainer):
    r"""Average class-score gradient over noisy copies of the image.

    Smilkov et al. (2017), Eq. 3:

    .. math:: \hat M_c(x) = \frac{1}{n} \sum_{i=1}^{n} \nabla_x S_c\big(x + \mathcal N(0, \sigma^2)\big),

    followed by a reduction over the colour channels (``reduce``). Appendix A of Mahlau & Nolde:
    ``n = 256`` samples, ``sigma = 0.1``.

    Parameters
    ----------
    model : keras.Model
        Classifier, RGB in [0, 1] -> logits.
    n_samples : int
        Number of noise draws ``n`` per image (Appendix A: 256).
    sigma : float
        Standard deviation of the Gaussian noise in [0, 1] image units. Smilkov et al. express it
        as a *noise level* ``sigma / (x_max - x_min)``; with images in [0, 1] the two coincide, so
        0.1 is a 10 % noise level (their recommended range is 10-20 %). ``0`` gives the plain
        gradient.
    clip : bool
        Clip the noisy images to [0, 1]. Default ``False``, as in Smilkov et al., who add the
        noise to the raw input (the model normalises internally, so values slightly outside
        [0, 1] are valid inputs and clipping would bias the noise near black/white pixels).
    reduce : {"abs_sum", "sum", "max_abs", "l2"}
        Channel reduction applied to the *averaged* (signed) gradient. Default ``"abs_sum"``:
        Smilkov et al. visualise the absolute value of the gradient summed over channels (their
        reference library PAIR-code/saliency and tf-explain's SmoothGrad both reduce
        ``sum_c |mean gradient|``), and the sign of a raw gradient is not evidence for or against
        the class the way it is for the (x - x')-weighted IG/EG attributions.
    batch_size, seed : see :class:`~tfagg.explainers.base.Explainer`.
    score : {"logit", "probability"}
        ``S_c``; default ``"logit"`` (Smilkov et al. differentiate the class activation function,
        i.e. the pre-softmax score).

    Notes
    -----
    Noise of sample ``i`` of an image is drawn from a stateless stream keyed by the image's key
    and ``i``; samples are streamed in chunks of ``batch_size`` model inputs, so maps do not depend
    on ``batch_size``. Cost: ``n_samples`` forward+backward passes per image.
    """

    name = "smoothgrad"
    default_score = "logit"

    def __init__(
        self,
        model,
        n_samples: int = 256,
        sigma: float = 0.1,
        clip: bool = False,
        reduce: str = "abs_sum",
        batch_size: int = 64,
        seed: int = 0,
        score: str | None = None,
    ):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        self.n_samples = check_positive_int(n_samples, "n_samples", maximum=2**31 - 1)
        self.sigma = check_sigma(sigma)
        self.clip = bool(clip)
        self.reduce = check_reduce(reduce)

    @property
    def samples_per_image(self) -> int:
        return self.n_samples

    def _sample_inputs(self, images, keys, context, image_index, sample_index):
        x = tf.gather(images, image_index)
        if self.sigma > 0:
            row_keys = sample_keys(keys, image_index, sample_index)
            noise = stateless_normal_rows(row_keys, tuple(images.shape[1:]))
            x = x + self.sigma * noise
            if self.clip:
                x = tf.clip_by_value(x, 0.0, 1.0)
        return x, 1.0 / self.n_samples
