"""ResNet18 (He et al. 2016) in the Keras 3 functional API, with stable layer names.

The architecture is torchvision's ``resnet18``: basic blocks, [2, 2, 2, 2] blocks per stage,
channel widths ``(w, 2w, 4w, 8w)`` with ``w = width`` (64 is the published network). Padding is
explicit (``ZeroPadding2D`` + ``valid`` convolutions) so that strided convolutions see exactly the
pixels a PyTorch convolution with symmetric padding sees; together with BatchNorm epsilon 1e-5 this
lets :mod:`tfagg.models.torchvision_weights` reproduce torchvision's logits.

Models take RGB images in [0, 1] and normalise them internally (layer ``"input_normalization"``),
so every explainer, baseline and perturbation in tfagg works in that single image space. They
output *logits*; use :func:`tfagg.models.class_probabilities` (softmax) for probabilities.

Layer names that explainers can target
--------------------------------------
``input_normalization``
``stem_conv``, ``stem_bn``, ``stem_relu``, ``stem_pool`` (``stem_pool`` only with the ImageNet stem)
``stage{s}_block{b}_conv1`` / ``_bn1`` / ``_relu1`` / ``_conv2`` / ``_bn2`` / ``_add`` / ``_out``
    for s in 1..4, b in 1..2; ``stage{s}_block1_down_conv`` / ``_down_bn`` where the block downsamples.
``stage{s}`` -- alias of the stage output, i.e. ``stage{s}_block2_out`` (an identity layer).
``global_pool``, ``logits``.

``stage4`` is the last convolutional stage (GradCAM's default target); PolyCAM uses ``stage1`` ..
``stage4``.
"""
from __future__ import annotations

import keras
from keras import layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")
LAST_CONV_STAGE = "stage4"

_BN_EPS = 1e-5  # PyTorch's default, needed for identical logits with torchvision weights
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1 == Keras momentum 0.9


def _bn(name):
    return layers.BatchNormalization(epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=name)


def _conv(filters, kernel, stride, name, x):
    pad = kernel // 2
    if pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=name)(x)


def _basic_block(x, filters, stride, prefix):
    shortcut = x
    y = _conv(filters, 3, stride, f"{prefix}_conv1", x)
    y = _bn(f"{prefix}_bn1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(filters, 3, 1, f"{prefix}_conv2", y)
    y = _bn(f"{prefix}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{prefix}_down_conv")(x)
        shortcut = _bn(f"{prefix}_down_bn")(shortcut)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_out")(y)


def resnet18(
    num_classes: int = 1000,
    input_size: int = 224,
    width: int = 64,
    stem: str = "imagenet",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    name: str = "resnet18",
) -> keras.Model:
    """Build a ResNet18 classifier that maps RGB images in [0, 1] to logits.

    Parameters
    ----------
    num_classes : int
        Number of output logits (1000 for ImageNet, 43 for GTSRB).
    input_size : int
        Side of the square input image in pixels. The ImageNet stem needs at least 32, the
        small-image stem at least 8 (so that the last stage keeps a spatial extent >= 1).
    width : int
        Channels of the first stage; stages use ``(w, 2w, 4w, 8w)``. 64 is the published ResNet18.
    stem : {"imagenet", "small"}
        ``"imagenet"``: 7x7 stride-2 convolution and 3x3 stride-2 max-pool (torchvision).
        ``"small"``: a single 3x3 stride-1 convolution, no pooling (for 32-64 px images).
    mean, std : 3-sequences
        Per-channel statistics used by the built-in input normalisation ``(x - mean) / std``.
    """
    if stem not in ("imagenet", "small"):
        raise ValueError(f"`stem` must be 'imagenet' or 'small'; got {stem!r}")
    min_size = 32 if stem == "imagenet" else 8
    if not isinstance(input_size, int) or input_size < min_size:
        raise ValueError(
            f"`input_size` must be an integer >= {min_size} for the {stem!r} stem (the network "
            f"downsamples by {32 if stem == 'imagenet' else 8}); got {input_size!r}"
        )
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"`width` must be a positive integer; got {width!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2; got {num_classes!r}")

    inputs = keras.Input((input_size, input_size, 3), name="image")
    variance = [float(s) ** 2 for s in std]
    x = layers.Normalization(mean=list(mean), variance=variance, name="input_normalization")(inputs)
    if stem == "imagenet":
        x = _conv(width, 7, 2, "stem_conv", x)
        x = _bn("stem_bn")(x)
        x = layers.ReLU(name="stem_relu")(x)
        # Inputs are >= 0 after ReLU, so zero padding equals PyTorch's -inf padding here.
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    else:
        x = _conv(width, 3, 1, "stem_conv", x)
        x = _bn("stem_bn")(x)
        x = layers.ReLU(name="stem_relu")(x)

    for s, mult in enumerate((1, 2, 4, 8), start=1):
        for b in (1, 2):
            stride = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(x, width * mult, stride, f"stage{s}_block{b}")
        x = layers.Identity(name=f"stage{s}")(x)

    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)
