"""Low-resolution masks and their bilinear upsampling, shared by RISE and iGOS++.

Both methods draw or optimise a coarse mask and upsample it bilinearly to the image. Bilinear
resizing is separable and linear, so it is a pair of fixed interpolation matrices:
``up(M) = A_h @ M @ A_w^T``. Writing it that way makes it exact, differentiable (iGOS++ needs
the gradient with respect to the coarse mask) and lets RISE's random crop be a row selection
of ``A`` instead of a resize per mask.

Two resize conventions are needed, each matching its reference implementation:

* :func:`half_pixel_mirror_matrix` -- ``skimage.transform.resize(order=1, mode='reflect')`` as
  used by the RISE reference (github eclique/RISE, ``explanations.py``): pixel centres at
  half-integer positions, samples outside the input mirrored about the edge pixel
  (``scipy.ndimage`` ``mirror`` mode, which is what scikit-image's ``reflect`` maps to).
* :func:`align_corners_matrix` -- ``torch.nn.UpsamplingBilinear2d`` (``align_corners=True``)
  as used by the iGOS++ reference (github khorrams/IGOS_pp, ``methods_helper.upscale``).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def half_pixel_mirror_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of 1-D linear resizing with half-pixel centres, mirror edges.

    Output pixel ``o`` samples the input at ``c = (o + 0.5) * in_size / out_size - 0.5``; a ``c``
    outside ``[0, in_size - 1]`` is mirrored (``c -> -c`` or ``c -> 2 (in_size - 1) - c``) and the
    value is linearly interpolated between ``floor(c)`` and ``floor(c) + 1``. Rows sum to 1.
    """
    mat = np.zeros((out_size, in_size), np.float64)
    if in_size == 1:
        mat[:, 0] = 1.0
        return mat.astype(np.float32)
    last = in_size - 1
    for o in range(out_size):
        c = (o + 0.5) * in_size / out_size - 0.5
        c = abs(c)  # mirror at the first pixel centre
        if c > last:
            c = 2 * last - c  # mirror at the last pixel centre
        i0 = min(int(np.floor(c)), last)
        w = c - i0
        mat[o, i0] += 1.0 - w
        if w > 0:
            mat[o, i0 + 1] += w
    return mat.astype(np.float32)


def align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of 1-D linear resizing with ``align_corners=True``.

    Output pixel ``o`` samples the input at ``c = o (in_size - 1) / (out_size - 1)``, so the
    corner pixels of input and output coincide. ``in_size == out_size`` gives the identity.
    """
    mat = np.zeros((out_size, in_size), np.float64)
    if in_size == 1 or out_size == 1:
        mat[:, 0] = 1.0
        return mat.astype(np.float32)
    for o in range(out_size):
        c = o * (in_size - 1) / (out_size - 1)
        i0 = min(int(np.floor(c)), in_size - 2)
        w = c - i0
        mat[o, i0] = 1.0 - w
        mat[o, i0 + 1] = w
    return mat.astype(np.float32)


# -- RISE -------------------------------------------------------------------------------------


def rise_geometry(image_hw, grid_size: int):
    """Cell size and upsampled size of RISE masks (reference ``generate_masks``).

    ``cell = ceil(H / s)`` and the ``s x s`` grid is upsampled to ``(s + 1) * cell`` so that a crop
    of the image size at any shift in ``[0, cell)`` stays inside it.
    """
    cell = tuple(int(np.ceil(n / grid_size)) for n in image_hw)
    up = tuple((grid_size + 1) * c for c in cell)
    return cell, up


def rise_grids(key, n_masks: int, grid_size: int, p1: float, cell_hw):
    """Binary ``(n_masks, s, s)`` grids (keep probability ``p1``) and ``(n_masks, 2)`` shifts.

    Drawn from the stateless ``key`` of one image, so mask ``i`` of an image is the same
    whatever the batch size. Shifts are uniform integers in ``[0, cell)`` per axis (reference:
    ``np.random.randint(0, cell_size)``).
    """
    k_grid, k_dy, k_dx = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    uniform = tf.random.stateless_uniform((n_masks, grid_size, grid_size), seed=k_grid)
    grids = tf.cast(uniform < p1, tf.float32)
    dy = tf.random.stateless_uniform((n_masks,), seed=k_dy, minval=0, maxval=cell_hw[0], dtype=tf.int32)
    dx = tf.random.stateless_uniform((n_masks,), seed=k_dx, minval=0, maxval=cell_hw[1], dtype=tf.int32)
    return grids, tf.stack([dy, dx], axis=1)


def rise_masks_from_grids(grids, shifts, rows_matrix, cols_matrix, image_hw):
    """Upsample binary grids and crop at the shifts: ``(B, H, W)`` masks in [0, 1].

    ``mask_i = A_h[dy_i : dy_i + H] @ grid_i @ A_w[dx_i : dx_i + W]^T`` -- identical to resizing
    the grid to ``(s + 1) * cell`` and cropping ``[dy:dy + H, dx:dx + W]`` as the reference does.
    """
    h, w = image_hw
    rows = tf.gather(rows_matrix, shifts[:, 0:1] + tf.range(h)[None, :])  # (B, H, s)
    cols = tf.gather(cols_matrix, shifts[:, 1:2] + tf.range(w)[None, :])  # (B, W, s)
    return tf.einsum("bhi,bij,bwj->bhw", rows, grids, cols)


def rise_masks(key, n_masks: int, image_hw, grid_size: int = 10, p1: float = 0.1) -> np.ndarray:
    """The ``(n_masks, H, W)`` RISE masks of one image key (for inspection and tests)."""
    cell, up = rise_geometry(image_hw, grid_size)
    grids, shifts = rise_grids(tf.convert_to_tensor(key, tf.int32), n_masks, grid_size, p1, cell)
    rows = tf.constant(half_pixel_mirror_matrix(grid_size, up[0]))
    cols = tf.constant(half_pixel_mirror_matrix(grid_size, up[1]))
    return rise_masks_from_grids(grids, shifts, rows, cols, image_hw).numpy()


# -- per-sample seeds -----------------------------------------------------------------------


def sample_seeds(image_keys: np.ndarray, stream: int, counters: np.ndarray) -> np.ndarray:
    """``(M, 2)`` int32 stateless seeds for samples ``counters`` of the images' keys.

    ``image_keys`` is ``(M, 2)`` (the key of each sample's image). The first word is the image
    key XOR a per-``stream`` constant, the second the image key plus the sample counter; the
    stateless ops scramble seeds with Philox, so neighbouring counters give independent draws.
    """
    image_keys = np.asarray(image_keys, np.int64)
    tag = (0x5BD1E995 * (int(stream) + 1)) & 0x7FFFFFFF
    first = (image_keys[:, 0] ^ tag) & 0x7FFFFFFF
    second = (image_keys[:, 1] + np.asarray(counters, np.int64)) & 0x7FFFFFFF
    return np.stack([first, second], axis=1).astype(np.int32)
