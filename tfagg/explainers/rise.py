"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al. 2018).

The saliency of pixel ``u`` is the expected class score over random masks that keep it:

    S(u) = 1 / (N * p1) * sum_i f_c(x ⊙ M_i) * M_i(u)                       (RISE, Eq. 6)

with ``N`` masks ``M_i``, keep probability ``p1`` and ``f_c`` the softmax probability of the
explained class. Mahlau & Nolde (2022, Appendix A) fix ``N = 5000`` samples and a ``10 x 10``
mask resolution; everything else follows the reference implementation (github eclique/RISE,
``explanations.py``, ``RISE.generate_masks`` / ``RISE.forward``):

* a binary ``s x s`` grid with keep probability ``p1`` per cell,
* bilinear upsampling (``skimage.transform.resize(order=1, mode='reflect')``, i.e. half-pixel
  centres and ``scipy.ndimage`` "mirror" edges, see :mod:`tfagg.explainers._masks`) to
  ``(s + 1) * cell`` with ``cell = ceil(H / s)``,
* a random crop of the image size at a shift uniform in ``[0, cell)`` per axis.

``p1`` is not given in Mahlau & Nolde; the default 0.1 is the value of the RISE reference
evaluation (N = 5000, s = 10, p1 = 0.1 in the repository's notebooks).

Masking. The reference multiplies the *ImageNet-normalised* image by the mask, so a masked
pixel becomes 0 in that space, i.e. the ImageNet mean colour. Our images are RGB in [0, 1]
and the model normalises internally, so ``x ⊙ M`` would turn masked pixels *black*
(``baseline="zeros"``). Masking composes ``x ⊙ M + b ⊙ (1 - M)``; the default
``"imagenet_mean"`` (the constant ImageNet mean colour) is exactly the reference's masked value
for a model that normalises with ImageNet statistics, as tfagg's ResNet18 does, and matches
PolyCAM's ``fill="auto"``. Other baselines:
``"normal"`` (Mahlau & Nolde's Normal baseline, :func:`tfagg.baselines.normal_baseline`) and
``"blur"`` (Appendix A blur, scaled to the image size).

Batching. The ``N_images x n_masks`` (image, mask) pairs form one stream, cut into chunks of
exactly ``batch_size`` (the last one padded) and pushed through one traced function that
builds the masks from their ``s x s`` grids on the fly. Grids and shifts of an image are drawn
from its stateless key, so maps do not depend on ``batch_size``.
"""
from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from tfagg.baselines import blur_baseline, normal_baseline, scaled_blur_parameters
from tfagg.explainers._masks import (
    half_pixel_mirror_matrix,
    rise_geometry,
    rise_grids,
    rise_masks_from_grids,
    sample_seeds,
)
from tfagg.explainers.base import Explainer
from tfagg.models.resnet18 import IMAGENET_MEAN
from tfagg.validation import check_positive_int

BASELINES = ("zeros", "imagenet_mean", "normal", "blur")
_BASELINE_STREAM = 1  # seed stream of the Normal baseline (see tfagg.explainers._masks.sample_seeds)


def check_open_unit(value, name: str) -> float:
    """Return ``value`` as float if it lies strictly inside (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a real number in (0, 1); got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{name}` must lie strictly between 0 and 1; got {value}")
    return float(value)


def check_baseline(baseline: str) -> str:
    if baseline not in BASELINES:
        raise ValueError(f"`baseline` must be one of {BASELINES}; got {baseline!r}")
    return baseline


def make_baselines(kind: str, images: tf.Tensor, keys: np.ndarray) -> tf.Tensor:
    """Baseline images of ``kind`` (one of :data:`BASELINES`) for ``images`` (N, H, W, 3)."""
    if kind == "zeros":
        return tf.zeros_like(images)
    if kind == "imagenet_mean":
        return tf.zeros_like(images) + tf.constant(IMAGENET_MEAN, tf.float32)
    if kind == "normal":
        seeds = sample_seeds(keys, _BASELINE_STREAM, np.zeros(len(keys), np.int64))
        return normal_baseline(images, seeds)
    sigma, size = scaled_blur_parameters(int(images.shape[1]))
    return blur_baseline(images, sigma, size)


def stream_chunks(total: int, batch_size: int):
    """``(start, stop)`` of consecutive chunks of a stream of ``total`` samples."""
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)


class RISE(Explainer):
    """RISE saliency (Petsiuk et al. 2018) with the Appendix A settings of Mahlau & Nolde (2022).

    Parameters
    ----------
    model : keras.Model
        Classifier, RGB images in [0, 1] -> logits.
    n_masks : int
        Number of random masks ``N`` (Appendix A: 5000).
    grid_size : int
        Side ``s`` of the binary grid (Appendix A: 10, i.e. "mask resolution 10 x 10"); at
        most the image side.
    p1 : float in (0, 1)
        Keep probability of a grid cell (RISE reference: 0.1).
    baseline : {"zeros", "imagenet_mean", "normal", "blur"}
        What masked pixels become (see module docstring; default: the ImageNet mean colour, as the
        reference; "zeros" = black).
    batch_size, seed, score
        See :class:`tfagg.explainers.base.Explainer`; ``score`` defaults to "probability"
        (RISE weights masks by the softmax probability).

    Returns from ``__call__``: ``(N, H, W)`` float32 saliency, Eq. 6 above. In expectation
    ``E[M(u)] = p1``, so a model with constant score ``c`` gets a map close to ``c``.
    """

    name = "rise"
    default_score = "probability"

    def __init__(self, model, n_masks: int = 5000, grid_size: int = 10, p1: float = 0.1,
                 baseline: str = "imagenet_mean", batch_size: int = 64, seed: int = 0, score: str = "probability"):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        self.n_masks = check_positive_int(n_masks, "n_masks")
        self.grid_size = check_positive_int(grid_size, "grid_size")
        self.p1 = check_open_unit(p1, "p1")
        self.baseline = check_baseline(baseline)
        self._chunk_fns = {}

    # -- traced kernel ----------------------------------------------------------------------
    def _chunk_fn(self, h: int, w: int):
        """Traced ``(baselines, images - baselines, labels, image_idx, grids, shifts, valid)``.

        Returns ``(segments, H, W)``: for the chunk's local image slots ``image_idx -
        image_idx[0]``, the sums ``sum_i f_c(b + M_i ⊙ (x - b)) M_i`` over its valid samples.
        """
        # Keyed by the hyperparameters too: traced functions capture them, so a changed
        # attribute (e.g. ``score``) must build new ones rather than silently use the old values.
        key = (h, w, self._params_key())
        if key in self._chunk_fns:
            return self._chunk_fns[key]
        s, b = self.grid_size, self.batch_size
        _, up = rise_geometry((h, w), s)
        rows = tf.constant(half_pixel_mirror_matrix(s, up[0]))
        cols = tf.constant(half_pixel_mirror_matrix(s, up[1]))
        cols3 = tf.constant(np.repeat(half_pixel_mirror_matrix(s, up[1]), 3, axis=0))  # (3 W_up, s)
        segments = min(b, (b - 1) // self.n_masks + 2)  # images one chunk can touch
        use_softmax = self.score == "probability"
        model = self.model

        def chunk(baselines, diffs, labels, image_idx, grids, shifts, valid):
            # (B, H, W) masks for the weighted sum and the same masks repeated over the colour
            # channels, (B, H, W, 3), for the inputs: two small matrix products each, cheaper on
            # CPU than a broadcasting multiply of (B, H, W, 1) by (B, H, W, 3).
            masks = rise_masks_from_grids(grids, shifts, rows, cols, (h, w))
            row_m = tf.gather(rows, shifts[:, 0:1] + tf.range(h)[None, :])  # (B, H, s)
            col_m = tf.gather(cols3, 3 * shifts[:, 1:2] + tf.range(3 * w)[None, :])  # (B, 3 W, s)
            masks3 = tf.reshape(tf.matmul(tf.matmul(row_m, grids), col_m, transpose_b=True), (-1, h, w, 3))
            first, last = image_idx[0], image_idx[-1]

            def one_image():  # the common case (n_masks >= chunk): broadcast, no gathers
                return baselines[first][None] + masks3 * diffs[first][None]

            def several_images():
                return tf.gather(baselines, image_idx) + masks3 * tf.gather(diffs, image_idx)

            inputs = tf.cond(tf.equal(first, last), one_image, several_images)
            out = model(inputs, training=False)
            if use_softmax:
                out = tf.nn.softmax(out, axis=-1)
            scores = tf.gather(out, tf.gather(labels, image_idx), axis=1, batch_dims=1) * valid
            # sum_i f_c(x ⊙ M_i) M_i per image of the chunk, as one (segments, B) x (B, H W) product
            weights = tf.one_hot(image_idx - first, segments, dtype=tf.float32) * scores[:, None]
            sums = tf.matmul(weights, tf.reshape(masks, (-1, h * w)), transpose_a=True)
            return tf.reshape(sums, (segments, h, w))

        spec = [
            tf.TensorSpec((None, h, w, 3), tf.float32),
            tf.TensorSpec((None, h, w, 3), tf.float32),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((b,), tf.int32),
            tf.TensorSpec((b, s, s), tf.float32),
            tf.TensorSpec((b, 2), tf.int32),
            tf.TensorSpec((b,), tf.float32),
        ]
        fn = tf.function(chunk, input_signature=spec, autograph=False)
        self._chunk_fns[key] = fn
        return fn

    # -- driver -------------------------------------------------------------------------------
    def _explain(self, images, labels, keys):
        n_img, h, w = (int(d) for d in images.shape[:3])
        s, n, bsz = self.grid_size, self.n_masks, self.batch_size
        if s > min(h, w):
            raise ValueError(f"`grid_size` ({s}) must not exceed the image size ({h}x{w})")
        cell, _ = rise_geometry((h, w), s)
        fn = self._chunk_fn(h, w)
        baselines = make_baselines(self.baseline, images, keys.numpy())
        diffs = images - baselines  # once per call: x ⊙ M + b ⊙ (1 - M) = b + M ⊙ (x - b)
        acc = np.zeros((n_img, h, w), np.float64)
        drawn = {}  # image index -> (grids, shifts) while the stream is inside that image

        def draws(i):
            if i not in drawn:
                g, sh = rise_grids(keys[i], n, s, self.p1, cell)
                drawn[i] = (g.numpy(), sh.numpy())
            return drawn[i]

        for start, stop in stream_chunks(n_img * n, bsz):
            idx = np.arange(start, stop)
            img, msk = idx // n, idx % n
            first, last = int(img[0]), int(img[-1])
            for old in [k for k in drawn if k < first]:
                del drawn[old]
            grids = np.zeros((bsz, s, s), np.float32)
            shifts = np.zeros((bsz, 2), np.int32)
            for i in range(first, last + 1):
                sel = img == i
                g, sh = draws(i)
                grids[: stop - start][sel] = g[msk[sel]]
                shifts[: stop - start][sel] = sh[msk[sel]]
            k = stop - start
            image_idx = np.full(bsz, last, np.int32)
            image_idx[:k] = img
            valid = np.zeros(bsz, np.float32)
            valid[:k] = 1.0
            sums = fn(baselines, diffs, labels, tf.constant(image_idx), tf.constant(grids),
                      tf.constant(shifts), tf.constant(valid)).numpy()
            acc[first : last + 1] += sums[: last - first + 1]
        return (acc / (n * self.p1)).astype(np.float32)
