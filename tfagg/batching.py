"""Memory-bounded, retrace-free batched model evaluation.

Calling a Keras 3 model eagerly costs ~100 ms per call, and a ``tf.function`` retraces for every
new input shape. :class:`ModelRunner` therefore pushes any number of inputs through one traced
function in chunks of exactly ``batch_size`` (the last chunk is zero-padded and the padding
dropped), so each runner traces once per image shape and never holds more than ``batch_size``
model inputs at a time.
"""
from __future__ import annotations

import tensorflow as tf

from tfagg.validation import check_positive_int

SCORES = ("probability", "logit")


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}; got {score!r}")
    return score


def pad_to(x: tf.Tensor, size: int) -> tf.Tensor:
    """Zero-pad the leading axis of ``x`` to ``size``."""
    n = tf.shape(x)[0]
    pad = [[0, size - n]] + [[0, 0]] * (len(x.shape) - 1)
    return tf.pad(x, pad)


class ModelRunner:
    """Batched forward passes and input gradients of a Keras classifier.

    Parameters
    ----------
    model : keras.Model
        Maps ``(B, H, W, 3)`` images in [0, 1] to ``(B, C)`` logits.
    batch_size : int
        Number of model inputs per call (the memory bound).
    score : {"probability", "logit"}
        Class score used by :meth:`class_scores` and :meth:`input_gradients`:
        ``softmax(logits)[label]`` or ``logits[label]``.
    """

    def __init__(self, model, batch_size: int = 64, score: str = "probability"):
        self.model = model
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.score = check_score(score)
        self._forward = tf.function(self._forward_impl, reduce_retracing=True)
        self._grad = tf.function(self._grad_impl, reduce_retracing=True)

    # -- traced kernels -------------------------------------------------------------------------
    def _outputs(self, x):
        logits = self.model(x, training=False)
        return tf.nn.softmax(logits, axis=-1) if self.score == "probability" else logits

    def _forward_impl(self, x):
        return self._outputs(x)

    def _grad_impl(self, x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = self._outputs(x)
            s = tf.gather(out, labels, axis=1, batch_dims=1)
        return s, tape.gradient(s, x)

    # -- public API ----------------------------------------------------------------------------
    def outputs(self, x) -> tf.Tensor:
        """``(M, C)`` probabilities or logits (per ``score``) for ``M`` inputs."""
        x = tf.convert_to_tensor(x, tf.float32)
        m = int(x.shape[0])
        parts = []
        for i in range(0, m, self.batch_size):
            chunk = x[i : i + self.batch_size]
            k = int(chunk.shape[0])
            out = self._forward(pad_to(chunk, self.batch_size) if k < self.batch_size else chunk)
            parts.append(out[:k])
        return tf.concat(parts, axis=0)

    def class_scores(self, x, labels) -> tf.Tensor:
        """``(M,)`` score of class ``labels[i]`` for input ``i``."""
        out = self.outputs(x)
        return tf.gather(out, tf.convert_to_tensor(labels, tf.int32), axis=1, batch_dims=1)

    def input_gradients(self, x, labels):
        """``(scores (M,), gradients (M, H, W, 3))`` of the class score w.r.t. the input."""
        x = tf.convert_to_tensor(x, tf.float32)
        labels = tf.convert_to_tensor(labels, tf.int32)
        m = int(x.shape[0])
        scores, grads = [], []
        for i in range(0, m, self.batch_size):
            xc, lc = x[i : i + self.batch_size], labels[i : i + self.batch_size]
            k = int(xc.shape[0])
            if k < self.batch_size:
                xc, lc = pad_to(xc, self.batch_size), pad_to(lc, self.batch_size)
            s, g = self._grad(xc, lc)
            scores.append(s[:k])
            grads.append(g[:k])
        return tf.concat(scores, 0), tf.concat(grads, 0)
