"""Named model presets: the paper's settings and the CPU-sized offline benchmark.

``synth-signs`` (offline)
    ResNet18 with the ImageNet stem at **64 px** and **width 16** (channels 16/32/64/128 instead of
    64/128/256/512), trained on the built-in synthetic traffic signs (43 GTSRB classes). The paper's
    GTSRB model is the same architecture at 128 px and width 64; the offline preset is ~16x cheaper
    per image at 64 px and ~4x in width, so that the whole Mahlau & Nolde pipeline (7 explainers with
    Appendix A sample counts, ~2x17 insertion/deletion curves per image) runs on a 2-core laptop CPU
    in minutes. Measured on the 2-core CI machine: ~4200 images/s forward, ~1800 images/s
    forward+input-gradient at batch 128.
``gtsrb``
    The paper's setting: ResNet18, width 64, 128 px, 43 classes, trained by ``tfagg train``.
``imagenet``
    torchvision's ResNet18 (width 64, 224 px, 1000 classes) converted with
    :mod:`tfagg.models.torchvision_weights`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelPreset:
    name: str
    dataset: str
    num_classes: int
    input_size: int
    width: int
    stem: str
    # training schedule (ignored for presets that load converted weights)
    train_images: int = 0
    epochs: int = 0
    batch_size: int = 64
    learning_rate: float = 2e-3

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "synth-signs": ModelPreset(
        name="synth-signs", dataset="synth-signs", num_classes=43, input_size=64, width=16, stem="imagenet",
        train_images=20000, epochs=3, batch_size=64, learning_rate=3e-3,
    ),
    "gtsrb": ModelPreset(
        name="gtsrb", dataset="gtsrb", num_classes=43, input_size=128, width=64, stem="imagenet",
        train_images=0, epochs=15, batch_size=64, learning_rate=1e-3,
    ),
    "imagenet": ModelPreset(
        name="imagenet", dataset="imagenet", num_classes=1000, input_size=224, width=64, stem="imagenet",
    ),
}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
