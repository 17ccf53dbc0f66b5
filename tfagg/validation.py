"""Input checks shared by explainers, aggregations and metrics.

Every public entry point validates its arguments here so that bad input produces an error
naming the argument and the expected form, never a NaN map or a traceback from deep inside
TensorFlow.
"""
from __future__ import annotations

import numbers

import numpy as np


def to_numpy(x, name: str) -> np.ndarray:
    try:
        return np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"`{name}` must be array-like, got {type(x).__name__}") from exc


def check_images(images, name: str = "images", value_range=(0.0, 1.0)) -> np.ndarray:
    """Return ``images`` as float32 ``(N, H, W, 3)`` in [0, 1], or raise ``ValueError``."""
    arr = to_numpy(images, name)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        raise ValueError(
            f"`{name}` must be a batch of shape (N, H, W, 3); got a single image of shape "
            f"{arr.shape}. Add a batch axis, e.g. images[None]."
        )
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"`{name}` must have shape (N, H, W, 3) (RGB, channels last); got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (N = 0)")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"`{name}` must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf")
    lo, hi = value_range
    mn, mx = float(arr.min()), float(arr.max())
    if mn < lo - 1e-6 or mx > hi + 1e-6:
        raise ValueError(
            f"`{name}` must lie in [{lo}, {hi}] (RGB scaled to [0, 1]; the model normalises "
            f"internally); got values in [{mn:.4g}, {mx:.4g}]. Divide uint8 images by 255."
        )
    return arr


def check_labels(labels, n: int, num_classes: int | None, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as int32 of shape ``(n,)``; a scalar is broadcast to all ``n`` images."""
    arr = to_numpy(labels, name)
    if arr.ndim == 0:
        arr = np.full((n,), arr)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},) (one class index per image); got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must be integer class indices; got dtype {arr.dtype}")
    if num_classes is not None and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes - 1}] for a model with {num_classes} classes; "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int32)


def check_maps(maps, shape_nhw=None, name: str = "saliency") -> np.ndarray:
    """Return attribution maps as float32 ``(N, H, W)``; NaN/inf and mismatched shapes raise."""
    arr = to_numpy(maps, name)
    if arr.ndim != 3:
        raise ValueError(f"`{name}` must have shape (N, H, W); got {arr.shape}")
    if shape_nhw is not None and tuple(arr.shape) != tuple(shape_nhw):
        raise ValueError(
            f"`{name}` has shape {arr.shape} but the images need maps of shape {tuple(shape_nhw)} "
            "(one (H, W) map per image)"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf")
    return arr


def check_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"`{name}` must be >= {minimum}{upper}; got {value}")
    return value


def check_positive_float(value, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a finite real number; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"`{name}` must be {'>= 0' if allow_zero else '> 0'}; got {value}")
    return float(value)


def num_classes_of(model) -> int:
    """Number of output classes of a Keras classifier (last output dimension)."""
    shape = model.output_shape if hasattr(model, "output_shape") else None
    if isinstance(shape, list):
        shape = shape[0]
    if shape is None or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            "`model` must output a (batch, num_classes) tensor of class scores; "
            f"got output shape {shape}"
        )
    return int(shape[-1])
