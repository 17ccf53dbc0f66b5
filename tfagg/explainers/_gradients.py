"""Shared machinery of the gradient explainers (SmoothGrad, Integrated and Expected Gradients).

All three average, per image, a quantity of the form ``multiplier * grad f_c(input)`` over ``S``
samples (noise draws, interpolation steps, baselines x steps). :class:`StreamedGradientExplainer`
flattens the ``N * S`` (image, sample) pairs into one stream, cuts it into chunks of exactly
``chunk`` rows (``chunk <= batch_size``; the last chunk is padded and the padding weighted 0) and
pushes every chunk through one traced function that *generates* its inputs on the fly from the
images, per-image stateless keys and the sample indices. Hence

* at most ``batch_size`` model inputs exist at any time (256 SmoothGrad draws of 10 images never
  materialise as 2560 images),
* a sample's random draw depends only on ``(seed, explainer name, image index, sample index)``,
  so results do not depend on ``batch_size`` (up to float32 summation order),
* the traced function has one stable signature per image shape and never retraces across calls.
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from tfagg.explainers.base import Explainer
from tfagg.validation import check_positive_float

REDUCTIONS = ("sum", "abs_sum", "max_abs", "l2")
RIEMANN_RULES = ("midpoint", "left", "right", "trapezoid")


# -- small validated helpers --------------------------------------------------------------------
def check_reduce(reduce: str) -> str:
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS}; got {reduce!r}")
    return reduce


def reduce_channels(x: np.ndarray, reduce: str) -> np.ndarray:
    """Reduce ``(N, H, W, 3)`` attributions over the colour axis to ``(N, H, W)``.

    ``"sum"`` is the signed sum (keeps completeness of IG/EG), ``"abs_sum"`` the sum of absolute
    values (SmoothGrad's grey-scale visualisation), ``"max_abs"`` the largest absolute value, and
    ``"l2"`` the Euclidean norm over channels.
    """
    if reduce == "sum":
        return x.sum(axis=-1)
    if reduce == "abs_sum":
        return np.abs(x).sum(axis=-1)
    if reduce == "max_abs":
        return np.abs(x).max(axis=-1)
    if reduce == "l2":
        return np.sqrt((x * x).sum(axis=-1))
    raise ValueError(f"`reduce` must be one of {REDUCTIONS}; got {reduce!r}")  # pragma: no cover


def riemann_points(steps: int, rule: str):
    """Interpolation points ``alpha_k`` and weights ``w_k`` (summing to 1) on [0, 1].

    Approximates ``int_0^1 g(alpha) d alpha ~= sum_k w_k g(alpha_k)`` with exactly ``steps``
    evaluations of ``g`` for every rule:

    * ``"midpoint"``: ``alpha_k = (k + 1/2) / m``, ``w_k = 1/m`` -- error O(1/m^2) for smooth ``g``;
    * ``"left"`` / ``"right"``: ``alpha_k = k/m`` / ``(k + 1)/m``, ``w_k = 1/m`` -- error O(1/m)
      (``"right"`` is Sundararajan et al.'s Eq. 3);
    * ``"trapezoid"``: ``alpha_k = k/(m - 1)`` with halved end weights -- error O(1/m^2), needs m >= 2.
    """
    if rule not in RIEMANN_RULES:
        raise ValueError(f"`rule` must be one of {RIEMANN_RULES}; got {rule!r}")
    m = int(steps)
    k = np.arange(m, dtype=np.float64)
    if rule == "midpoint":
        alphas, weights = (k + 0.5) / m, np.full(m, 1.0 / m)
    elif rule == "left":
        alphas, weights = k / m, np.full(m, 1.0 / m)
    elif rule == "right":
        alphas, weights = (k + 1.0) / m, np.full(m, 1.0 / m)
    else:
        if m < 2:
            raise ValueError(f"`steps` must be >= 2 for the trapezoid rule; got {m}")
        alphas = k / (m - 1)
        weights = np.full(m, 1.0 / (m - 1))
        weights[[0, -1]] *= 0.5
    return alphas.astype(np.float32), weights.astype(np.float32)


def check_channel_stats(value, name: str, allow_zero: bool = False):
    """``None`` or a 3-tuple of finite floats (per-channel mean or std of a Normal baseline)."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1) if np.ndim(value) else np.full(3, float(value))
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be None or 3 finite per-channel (RGB) values; got {value!r}")
    if allow_zero and np.any(arr < 0):
        raise ValueError(f"`{name}` must be >= 0 in every channel; got {value!r}")
    return tuple(float(v) for v in arr)


def chunk_size(total: int, batch_size: int) -> int:
    """Rows per traced call: the stream of ``total`` rows split into equal chunks <= ``batch_size``.

    ``ceil(total / ceil(total / batch_size))`` rows per chunk leaves less than one padded row per
    chunk (e.g. 30 IG steps of one image run as one chunk of 30, not a chunk of 64 with 34 padded
    rows, and 600 EG samples as 10 chunks of 60). The chunk size depends only on ``total``, so a
    pipeline calling with a fixed number of images traces once; another number of images may
    trace one more shape.
    """
    pieces = -(-total // batch_size)
    return -(-total // pieces)


def class_score(outputs: tf.Tensor, labels: tf.Tensor, score: str) -> tf.Tensor:
    """``(B,)`` score of class ``labels[b]``: the logit or the softmax probability."""
    if score == "probability":
        outputs = tf.nn.softmax(outputs, axis=-1)
    return tf.gather(outputs, labels, axis=1, batch_dims=1)


def sample_keys(keys: tf.Tensor, image_index: tf.Tensor, sample_index: tf.Tensor) -> tf.Tensor:
    """``(B, 2)`` int32 stateless seeds of the (image, sample) pairs of a chunk.

    The per-image key's first word is XOR-ed with the sample index, so draws of one image are
    distinct streams and depend on nothing but the image key and the sample index.
    """
    k = tf.gather(keys, image_index)
    return tf.stack([tf.bitwise.bitwise_xor(k[:, 0], tf.cast(sample_index, tf.int32)), k[:, 1]], axis=1)


def stateless_normal_rows(row_keys: tf.Tensor, shape) -> tf.Tensor:
    """One standard-normal tensor of static ``shape`` per row key: ``(B, *shape)``.

    Box-Muller transform of stateless uniforms: ``z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2)``.
    Exactly Gaussian (up to float32 resolution, like ``tf.random.stateless_normal``) but ~1.6x
    cheaper on CPU, because the uniforms are drawn per row and the transform runs once over
    the whole chunk -- noise generation is otherwise a sizeable share of a small model's
    gradient pass.
    """
    size = int(np.prod(shape))
    pairs = (size + 1) // 2
    uniforms = tf.map_fn(
        lambda k: tf.random.stateless_uniform((2, pairs), seed=k),
        row_keys,
        fn_output_signature=tf.float32,
        parallel_iterations=16,
    )
    radius = tf.sqrt(-2.0 * tf.math.log1p(-uniforms[:, 0]))  # 1 - u1 lies in (0, 1]: finite log
    angle = (2.0 * np.pi) * uniforms[:, 1]
    normals = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=1)[:, :size]
    return tf.reshape(normals, (-1, *shape))


def spec_of(tensor, batch: int | None = None) -> tf.TensorSpec:
    """TensorSpec of ``tensor`` with its leading (batch) axis set to ``batch`` (None = any)."""
    return tf.TensorSpec((batch, *tensor.shape[1:]), tensor.dtype)


class TracedFunctionCache:
    """tf.functions with fixed input signatures, cached per hyperparameter setting and signature.

    Each function traces exactly once: the number of images is left open (``None``) in the
    signature while chunk sizes and image shapes are fixed, so the model always sees static
    shapes and repeated calls never retrace. Mutating a hyperparameter selects a new function
    instead of reusing one traced with the old value. :meth:`tracing_count` lets tests assert it.
    """

    def _traced(self, name: str, python_function, input_signature):
        cache = self.__dict__.setdefault("_traced_functions", {})
        params = {k: v for k, v in self.get_params().items() if k not in ("seed", "batch_size")}
        key = (name, repr(sorted(params.items())), repr(input_signature))
        if key not in cache:
            # functools.partial gives each function its own identity for TensorFlow's "frequent
            # retracing" detector, which otherwise pools traces of all instances of a class.
            cache[key] = tf.function(functools.partial(python_function), input_signature=input_signature)
        return cache[key]

    def tracing_count(self) -> int:
        """Total number of traces of this explainer's tf.functions (for retracing tests)."""
        return sum(f.experimental_get_tracing_count() for f in self.__dict__.get("_traced_functions", {}).values())


class StreamedGradientExplainer(TracedFunctionCache, Explainer):
    """Base of explainers whose map is ``reduce(sum_s multiplier_s * grad f_c(input_s))``.

    Subclasses define :attr:`samples_per_image`, :meth:`_context` (per-call tensors computed once,
    e.g. blurred baselines) and :meth:`_sample_inputs` (traced: the model inputs and multipliers
    of a chunk of (image, sample) pairs), and :attr:`reduce`.
    """

    reduce = "sum"

    @property
    def samples_per_image(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _context(self, images: tf.Tensor) -> tuple:
        return ()

    def _sample_inputs(self, images, keys, context, image_index, sample_index):  # pragma: no cover
        """``(inputs (B, H, W, 3), multiplier)`` of a chunk; a Python-float multiplier is applied
        after the per-image sum (cheaper), a tensor one per row."""
        raise NotImplementedError

    # -- traced kernel ----------------------------------------------------------------------------
    def _chunk_sums(self, images, labels, keys, context, offsets):
        """Per-image sums of ``multiplier * gradient`` over one chunk of the sample stream.

        Returns ``(sums (segments, H, W, 3), first image index)``; row ``j`` of ``sums`` belongs
        to image ``first + j``.
        """
        per_image = self.samples_per_image
        chunk = offsets.shape[0]
        segments = min(chunk, (chunk - 1) // per_image + 2)  # images one chunk can touch
        total = tf.shape(images)[0] * per_image
        valid = offsets < total
        safe = tf.minimum(offsets, total - 1)  # padded rows recompute the last pair; dropped below
        image_index = safe // per_image
        sample_index = safe % per_image
        inputs, multiplier = self._sample_inputs(images, keys, context, image_index, sample_index)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = self.model(inputs, training=False)
            scores = class_score(outputs, tf.gather(labels, image_index), self.score)
        grads = tape.gradient(scores, inputs)  # rows are independent: d(sum)/d(row) = d(row)/d(row)
        scalar = isinstance(multiplier, (int, float))
        contributions = grads if scalar else grads * multiplier
        first = image_index[0]
        local = tf.where(valid, image_index - first, -1)  # unsorted_segment_sum drops id -1 (padding)
        sums = tf.math.unsorted_segment_sum(contributions, local, num_segments=segments)
        return (sums * multiplier if scalar else sums), first

    # -- driver -----------------------------------------------------------------------------------
    def _accumulate(self, images: tf.Tensor, labels: tf.Tensor, keys: tf.Tensor) -> np.ndarray:
        """``(N, H, W, 3)`` float64 per-image sums of ``multiplier * gradient`` over all samples."""
        n = int(images.shape[0])
        total = n * self.samples_per_image
        chunk = chunk_size(total, self.batch_size)
        context = tuple(self._context(images))
        signature = (
            spec_of(images),
            spec_of(labels),
            spec_of(keys),
            tuple(spec_of(c) for c in context),
            tf.TensorSpec((chunk,), tf.int32),
        )
        step = self._traced("chunk_sums", self._chunk_sums, signature)
        acc = np.zeros(tuple(images.shape), np.float64)
        for start in range(0, total, chunk):
            offsets = tf.range(start, start + chunk, dtype=tf.int32)
            sums, first = step(images, labels, keys, context, offsets)
            first = int(first)
            rows = min(sums.shape[0], n - first)
            acc[first : first + rows] += sums.numpy()[:rows]
        return acc

    def _explain(self, images, labels, keys):
        return reduce_channels(self._accumulate(images, labels, keys), self.reduce).astype(np.float32)


def check_sigma(sigma, name: str = "sigma") -> float:
    return check_positive_float(sigma, name, allow_zero=True)
