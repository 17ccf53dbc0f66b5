"""The container every tfagg data loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class ImageSet:
    """A set of images ready for a tfagg model.

    Attributes
    ----------
    images : (N, H, W, 3) float32 in [0, 1]
    labels : (N,) int32 class indices
    ids : list of N strings, stable identifiers (file names, or ``"<dataset>-<split>-<index>"``)
    masks : optional (N, H, W) bool, ground-truth evidence (sign region / ROI box), if known
    glyph_masks : optional (N, H, W) bool, the class-deciding glyph, if separable
    class_names : optional list of class names, index = label
    name : data set name, e.g. ``"synth-signs"``, ``"imagenet"``, ``"gtsrb"``
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list
    masks: Optional[np.ndarray] = None
    glyph_masks: Optional[np.ndarray] = None
    class_names: Optional[list] = None
    name: str = "images"
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.images.shape[0])

    def subset(self, index) -> "ImageSet":
        index = np.asarray(index)
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return ImageSet(
            images=self.images[index],
            labels=self.labels[index],
            ids=[self.ids[i] for i in np.arange(len(self))[index]],
            masks=pick(self.masks),
            glyph_masks=pick(self.glyph_masks),
            class_names=self.class_names,
            name=self.name,
            meta=dict(self.meta),
        )


def choose_indices(total: int, n: int | None, seed: int) -> np.ndarray:
    """A deterministic, seeded choice of ``n`` of ``total`` items, returned in ascending order."""
    if n is None or n >= total:
        return np.arange(total)
    if n < 1:
        raise ValueError(f"`n` must be >= 1; got {n}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=n, replace=False))
