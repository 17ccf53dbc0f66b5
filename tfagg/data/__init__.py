"""Data: the built-in synthetic traffic signs, and loaders for ImageNet and GTSRB.

* :func:`load_synth_signs` / :func:`generate_signs` -- offline GTSRB-like benchmark with sign and glyph masks
* :func:`load_imagenet_val` (tar, JPEG folder or ImageFolder tree) / :func:`load_imagenet_val_tfds`
* :func:`load_gtsrb` (official archives or extracted folders), :func:`gtsrb_tf_dataset`
"""
from tfagg.data.base import ImageSet, choose_indices
from tfagg.data.gtsrb import GTSRB_CLASS_NAMES, gtsrb_tf_dataset, load_gtsrb
from tfagg.data.imagenet import load_imagenet_val, load_imagenet_val_tfds
from tfagg.data.synth_signs import CLASS_NAMES, generate_signs, load_synth_signs, synth_signs_tf_dataset

__all__ = [
    "ImageSet", "choose_indices", "CLASS_NAMES", "generate_signs", "load_synth_signs", "synth_signs_tf_dataset",
    "load_imagenet_val", "load_imagenet_val_tfds", "GTSRB_CLASS_NAMES", "load_gtsrb", "gtsrb_tf_dataset",
]
