"""Pixel order and step schedule of the insertion/deletion metrics.

Both metrics (Mahlau & Nolde 2022, Sec. 4; Petsiuk et al. 2018, RISE, Sec. 4.1) change pixels
in order of decreasing attribution, a fixed number per step. Everything here is exact integer /
order arithmetic in numpy, so a score depends only on the *order* of the attribution values:

* ranks come from a lexicographic sort on ``(-saliency, tie_key)``; negation is exact, and a
  strictly increasing transform of the saliency preserves every comparison, hence every rank;
* ties (iGOS++ and PI give many exact zeros, which the paper says "are in turn inserted or
  deleted in random order", Sec. 4.1) are broken by a seeded random permutation of the pixels,
  never by pixel index (index order would insert the top rows first);
* the number of changed pixels after step ``i`` is ``floor(i * H * W / steps)`` in integer
  arithmetic (see :func:`step_schedule`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfagg.random import per_image_keys
from tfagg.validation import check_positive_int

TIE_BREAK_STREAM = "insertion_deletion/tie_break"


def step_schedule(num_pixels: int, steps: int) -> np.ndarray:
    """Number of pixels changed after each step: ``counts[i] = floor(i * num_pixels / steps)``.

    Parameters
    ----------
    num_pixels : int
        ``H * W``.
    steps : int
        Number of increments, ``1 <= steps <= num_pixels`` (the paper uses 1000).

    Returns
    -------
    counts : (steps + 1,) int64
        ``counts[0] = 0``, ``counts[steps] = num_pixels``. Because ``steps <= num_pixels``,
        consecutive counts differ by ``floor`` or ``ceil`` of ``num_pixels / steps`` (>= 1), so
        pixels are spread evenly and every pixel is changed in exactly one step.

    Notes
    -----
    RISE's reference implementation changes a fixed ``ceil(H*W / steps)`` pixels per step and
    a smaller remainder in the last one; we use the floor schedule instead so that exactly
    ``steps`` increments of near-equal size cover the image and the x-axis ``i / steps`` is the
    fraction of changed pixels up to less than one pixel.
    """
    num_pixels = check_positive_int(num_pixels, "num_pixels")
    steps = check_positive_int(steps, "steps", maximum=num_pixels)
    i = np.arange(steps + 1, dtype=np.int64)
    return (i * num_pixels) // steps


def tie_break_keys(keys, num_pixels: int) -> np.ndarray:
    """``(n, num_pixels)`` int64: one seeded random permutation of the pixels per image.

    Parameters
    ----------
    keys : (n, 2) int32
        Stateless keys, row ``i`` from ``tfagg.random.per_image_keys(seed, N, TIE_BREAK_STREAM)``,
        so image ``i``'s permutation depends only on ``(seed, i)`` -- not on the batch, nor on
        which maps are evaluated (all maps of an image share the same tie-break order).
    """
    u = tf.map_fn(
        lambda k: tf.random.stateless_uniform((num_pixels,), seed=k, dtype=tf.float64),
        tf.convert_to_tensor(keys, tf.int32),
        fn_output_signature=tf.float64,
    ).numpy()
    # argsort of i.i.d. uniforms is a uniformly random permutation; "stable" makes the
    # (probability ~0) case of equal uniforms deterministic too.
    return np.argsort(u, axis=-1, kind="stable").astype(np.int64)


def image_tie_break_keys(seed: int, n: int, num_pixels: int) -> np.ndarray:
    """Tie-break permutations of images ``0..n-1`` for ``seed`` (see :func:`tie_break_keys`)."""
    return tie_break_keys(per_image_keys(seed, n, TIE_BREAK_STREAM), num_pixels)


def pixel_order(saliency, tie_keys) -> np.ndarray:
    """Flat pixel indices sorted by decreasing saliency, ties by increasing ``tie_keys``.

    Parameters
    ----------
    saliency : (..., P) float
    tie_keys : (..., P) or broadcastable int, distinct within each map

    Returns
    -------
    order : (..., P) int64, ``order[..., r]`` is the pixel of rank ``r`` (0 = most important).
    """
    sal = np.asarray(saliency, dtype=np.float64)
    ties = np.broadcast_to(np.asarray(tie_keys), sal.shape)
    # np.lexsort sorts by the *last* key first.
    return np.lexsort((ties, -sal), axis=-1)


def change_steps(saliency, tie_keys, steps: int) -> np.ndarray:
    """Step (1..steps) at which each pixel is inserted / deleted.

    Parameters
    ----------
    saliency : (N, M, H, W) float
    tie_keys : (N, H*W) int, see :func:`tie_break_keys`
    steps : int

    Returns
    -------
    step_of_pixel : (N, M, H, W) int32
        The image after step ``t`` of insertion is ``where(step_of_pixel <= t, image, baseline)``
        and of deletion ``where(step_of_pixel <= t, baseline, image)``. Pixel of rank ``r``
        changes at the first step ``t`` with ``counts[t] > r``.
    """
    sal = np.asarray(saliency, dtype=np.float64)
    n, m, h, w = sal.shape
    p = h * w
    counts = step_schedule(p, steps)
    step_of_rank = np.searchsorted(counts, np.arange(p), side="right").astype(np.int32)
    order = pixel_order(sal.reshape(n, m, p), np.asarray(tie_keys)[:, None, :])
    out = np.empty((n, m, p), dtype=np.int32)
    np.put_along_axis(out, order, np.broadcast_to(step_of_rank, (n, m, p)), axis=-1)
    return out.reshape(n, m, h, w)
