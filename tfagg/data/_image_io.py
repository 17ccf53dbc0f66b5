"""Image decoding and torchvision-compatible resizing, shared by the ImageNet and GTSRB loaders.

Everything here uses Pillow, the library torchvision's own transforms use on PIL images, so the
preprocessing is torchvision's standard evaluation transform and not an approximation of it:

* ``Resize(256)`` on a PIL image calls ``PIL.Image.resize(..., BILINEAR)``. Pillow's bilinear
  filter widens its support by the scale factor when it shrinks an image (i.e. it is
  antialiased), which is what torchvision's ``antialias=True`` tensor path imitates.
* ``CenterCrop(224)`` takes the offsets ``int(round((H - 224) / 2))`` (Python ``round``, halves
  to even), ``int(round((W - 224) / 2))``.
* ``ToTensor()`` divides uint8 values by 255.

The only residual difference to a torchvision pipeline is JPEG decoding, if torchvision ran with a
different libjpeg build than this Pillow (``ToTensor``'s float32 division by 255 is the same
operation here). For comparison, ``tf.image.resize(..., "bilinear", antialias=True)`` followed
by the same crop stays within 1 grey level of Pillow (measured: max 0.97, mean 0.11 levels on a
500x375 image with sharp edges) because Pillow rounds to uint8 after resizing; without
``antialias`` the difference reaches 64 levels. Pillow is used here to make it exact.
The paper (Sec. 5) does not state its preprocessing; torchvision's evaluation transform is the one
its ImageNet ResNet18 weights were validated with.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

# Pillow's bilinear filter; the enum moved in Pillow 9.1, the module constant still exists.
_BILINEAR = getattr(getattr(Image, "Resampling", Image), "BILINEAR")


def decode_rgb(data: bytes, name: str = "image") -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, PPM, ...) into an RGB PIL image.

    Greyscale and CMYK images (both occur in ImageNet) are converted with ``Image.convert("RGB")``
    exactly like torchvision's default ``pil_loader``.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises several exception types for bad files
        raise ValueError(f"could not decode image {name!r}: {exc}") from exc
    return image if image.mode == "RGB" else image.convert("RGB")


def resized_shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(new_width, new_height)`` of torchvision's ``Resize(size)`` for an int ``size``.

    The shorter side becomes ``size`` and the longer one ``int(size * long / short)``
    (truncated, as torchvision does).
    """
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of torchvision's ``CenterCrop(crop)`` (image >= crop)."""
    if width < crop or height < crop:
        raise ValueError(f"cannot center-crop {crop}x{crop} from a {width}x{height} image")
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return left, top, left + crop, top + crop


def to_unit_float(image: Image.Image) -> np.ndarray:
    """RGB PIL image -> float32 ``(H, W, 3)`` array in [0, 1] (torchvision's ``ToTensor``)."""
    return np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)


def torchvision_eval_transform(image: Image.Image, resize_size: int = 256, crop_size: int = 224) -> np.ndarray:
    """``Resize(resize_size) -> CenterCrop(crop_size) -> ToTensor()`` as float32 ``(H, W, 3)``.

    An image whose size already equals the target is left untouched, as in torchvision.
    """
    if resize_size < crop_size:
        raise ValueError(f"`resize_size` ({resize_size}) must be >= `image_size` ({crop_size})")
    new_size = resized_shorter_side_size(image.width, image.height, resize_size)
    if new_size != image.size:
        image = image.resize(new_size, _BILINEAR)
    image = image.crop(center_crop_box(image.width, image.height, crop_size))
    return to_unit_float(image)


def resize_exact(image: Image.Image, size: int, box=None) -> np.ndarray:
    """Bilinear (antialiased) resize of ``image`` -- or of its crop ``box`` -- to ``size x size``.

    ``box`` is ``(left, top, right, bottom)`` in pixel-edge coordinates (right/bottom exclusive).
    Equals torchvision's ``Resize((size, size))`` on the (cropped) PIL image.
    """
    if box is not None:
        image = image.crop(tuple(int(v) for v in box))
    if image.size != (size, size):
        image = image.resize((size, size), _BILINEAR)
    return to_unit_float(image)


def parallel_map(fn, items, workers: int | None = None) -> list:
    """``[fn(x) for x in items]`` on a thread pool, order preserved.

    Pillow releases the GIL while decoding and resampling, so threads give a near-linear speed-up;
    results are identical to the sequential loop.
    """
    items = list(items)
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) < 8:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
