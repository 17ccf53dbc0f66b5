"""Baselines ("uninformative" reference images) shared by explainers and metrics.

The *Normal* baseline of Mahlau & Nolde (2022, Sec. 4 and Appendix A): "we estimate mean and
standard deviation of each color channel and sample new values for every pixel". The paper does
not say where the statistics come from; by default they are estimated from the image itself
(``stats="image"``), and dataset-wide statistics can be passed as ``mean``/``std`` instead. The
samples are not clipped to [0, 1] by default (the paper samples a normal distribution; the model
normalises its input internally, so values slightly outside [0, 1] are valid model inputs).

All images are RGB in [0, 1] with shape ``(N, H, W, 3)``.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def normal_baseline(images, keys, mean=None, std=None, clip: bool = False) -> tf.Tensor:
    """One Normal-baseline sample per image.

    Parameters
    ----------
    images : (N, H, W, 3) float32
    keys : (N, 2) int32
        Stateless seeds, one per image (see :func:`tfagg.random.per_image_keys`).
    mean, std : None or 3-sequence
        Per-channel statistics. ``None`` estimates them per image (over its H*W pixels).
    clip : bool
        Clip the sample to [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if mean is None:
        mean_t = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
    else:
        mean_t = tf.reshape(tf.constant(mean, tf.float32), (1, 1, 1, 3))
    if std is None:
        std_t = tf.math.reduce_std(images, axis=(1, 2), keepdims=True)
    else:
        std_t = tf.reshape(tf.constant(std, tf.float32), (1, 1, 1, 3))
    shape = tf.shape(images)[1:]
    noise = tf.map_fn(
        lambda k: tf.random.stateless_normal(shape, seed=k),
        tf.convert_to_tensor(keys, tf.int32),
        fn_output_signature=tf.float32,
    )
    out = mean_t + std_t * noise
    return tf.clip_by_value(out, 0.0, 1.0) if clip else out


def gaussian_kernel_1d(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def scaled_blur_parameters(image_size: int, sigma: float = 20.0, kernel_size: int = 25, reference_size: int = 224):
    """Blur parameters of Appendix A (sigma 20, 25x25 kernel at 224 px) scaled to ``image_size``.

    Both are scaled by ``image_size / reference_size`` so the blur covers the same fraction of
    the image at every resolution; the kernel size stays odd and >= 3.
    """
    scale = image_size / float(reference_size)
    s = max(sigma * scale, 1e-3)
    k = max(3, int(round(kernel_size * scale)))
    if k % 2 == 0:
        k += 1
    return s, k


def blur_baseline(images, sigma: float = 20.0, kernel_size: int = 25) -> tf.Tensor:
    """Gaussian blur of each image (separable kernel, reflect padding so borders keep their colour).

    With ``sigma=20`` and a 25x25 kernel (Appendix A), the 25-tap kernel is much narrower than
    the Gaussian, i.e. nearly a box filter -- exactly what the paper's parameters give.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    k = tf.constant(gaussian_kernel_1d(sigma, kernel_size))
    pad = kernel_size // 2
    x = _reflect_pad(images, pad)
    kh = tf.tile(tf.reshape(k, (kernel_size, 1, 1, 1)), (1, 1, 3, 1))
    kw = tf.tile(tf.reshape(k, (1, kernel_size, 1, 1)), (1, 1, 3, 1))
    x = tf.nn.depthwise_conv2d(x, kh, strides=[1, 1, 1, 1], padding="VALID")
    x = tf.nn.depthwise_conv2d(x, kw, strides=[1, 1, 1, 1], padding="VALID")
    return x


def _reflect_pad(images: tf.Tensor, pad: int) -> tf.Tensor:
    """Reflect-pad H and W by ``pad``, in rounds of at most (size - 1) so any kernel fits any image."""
    x = images
    remaining = pad
    while remaining > 0:
        h, w = int(x.shape[1]), int(x.shape[2])
        if min(h, w) < 2:
            return tf.pad(x, [[0, 0], [remaining, remaining], [remaining, remaining], [0, 0]], mode="SYMMETRIC")
        step = min(remaining, h - 1, w - 1)
        x = tf.pad(x, [[0, 0], [step, step], [step, step], [0, 0]], mode="REFLECT")
        remaining -= step
    return x


def zeros_baseline(images) -> tf.Tensor:
    return tf.zeros_like(tf.convert_to_tensor(images, tf.float32))


