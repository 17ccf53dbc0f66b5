"""Data: the built-in synthetic traffic signs, and loaders for ImageNet and GTSRB."""
from tfagg.data.base import ImageSet, choose_indices

__all__ = ["ImageSet", "choose_indices"]
