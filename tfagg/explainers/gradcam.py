"""Grad-CAM (Selvaraju et al. 2017/2019, arXiv:1610.02391)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfagg.batching import pad_to
from tfagg.explainers._gradients import TracedFunctionCache, chunk_size, class_score, spec_of
from tfagg.explainers.base import Explainer, activation_model, resolve_layer


def check_conv_layer(model, layer, argument: str = "layer") -> str:
    """Name of ``layer`` in ``model``, which must have a 4-D ``(B, h, w, channels)`` output."""
    resolved = resolve_layer(model, layer)
    shape = resolved.output.shape
    if len(shape) != 4:
        raise ValueError(
            f"`{argument}` {resolved.name!r} must output a 4-D (batch, height, width, channels) "
            f"feature map; its output shape is {tuple(shape)}"
        )
    return resolved.name


class GradCAM(TracedFunctionCache, Explainer):
    r"""Gradient-weighted class activation map of one convolutional layer.

    Selvaraju et al., Eq. 1 and 2:

    .. math:: \alpha_k^c = \frac{1}{Z} \sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
              L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big),

    with ``A^k`` the ``k``-th channel of the target layer's activations and ``Z = h * w``. The
    ``h x w`` map is upsampled to the input size with ``tf.image.resize(..., "bilinear")``, i.e.
    half-pixel centres (``align_corners=False``, the convention of PyTorch's
    ``F.interpolate(..., align_corners=False)`` used by the reference implementations), no
    antialiasing. Mahlau & Nolde: "GradCAM (has no parameters)".

    Parameters
    ----------
    model : keras.Model
        Any Keras classifier, RGB in [0, 1] -> logits.
    layer : str
        Name of the target layer (4-D output). Default ``"stage4"``, the last convolutional stage
        of :func:`tfagg.models.resnet18` -- Selvaraju et al. use the last convolutional layer.
    batch_size, seed : see :class:`~tfagg.explainers.base.Explainer` (Grad-CAM is deterministic).
    score : {"logit", "probability"}
        ``y^c``; default ``"logit"`` (Selvaraju et al.: "the score for class c before the softmax").

    Notes
    -----
    Cost: one forward pass and one backward pass down to ``layer`` per image, in traced batches.
    """

    name = "gradcam"
    default_score = "logit"

    def __init__(self, model, layer: str = "stage4", batch_size: int = 64, seed: int = 0, score: str | None = None):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        self.layer = check_conv_layer(model, layer)
        self._activation_models = {}

    def _activation_model(self):
        """``images -> [activations of layer, logits]`` (rebuilt if ``layer`` is changed)."""
        if self.layer not in self._activation_models:
            name = check_conv_layer(self.model, self.layer)
            self._activation_models[self.layer] = activation_model(self.model, [name])
        return self._activation_models[self.layer]

    def _chunk_maps(self, images, labels):
        with tf.GradientTape() as tape:
            activations, logits = self._activation_model()(images, training=False)
            scores = class_score(logits, labels, self.score)
        grads = tape.gradient(scores, activations)
        alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # Eq. 1, (B, 1, 1, K)
        cam = tf.nn.relu(tf.reduce_sum(alpha * activations, axis=-1, keepdims=True))  # Eq. 2
        size = images.shape[1:3] if images.shape[1:3].is_fully_defined() else tf.shape(images)[1:3]
        return tf.image.resize(cam, size, method="bilinear")[..., 0]

    def _explain(self, images, labels, keys):
        n = int(images.shape[0])
        chunk = chunk_size(n, self.batch_size)
        step = self._traced("chunk_maps", self._chunk_maps, (spec_of(images, chunk), spec_of(labels, chunk)))
        maps = []
        for start in range(0, n, chunk):
            x, y = images[start : start + chunk], labels[start : start + chunk]
            rows = int(x.shape[0])
            maps.append(step(pad_to(x, chunk), pad_to(y, chunk)).numpy()[:rows])
        return np.concatenate(maps, axis=0)
