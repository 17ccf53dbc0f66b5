"""GradCAM and PolyCAM against hand computations on tiny models."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from tfagg.explainers import EXPLAINERS, GradCAM, PolyCAM
from tfagg.models import resnet18

SIZE = 8
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0.0, 1.0, (3, SIZE, SIZE, 3)).astype(np.float32)
LABELS = np.array([0, 2, 1])


def bilinear(maps, height, width):
    """Hand-written bilinear resize of (N, h, w) maps with half-pixel centres (align_corners=False)."""

    def axis(out_size, in_size):
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), in_size - 1)
        return lo, np.minimum(lo + 1, in_size - 1), src - lo

    r0, r1, fr = axis(height, maps.shape[1])
    c0, c1, fc = axis(width, maps.shape[2])
    rows = maps[:, r0] * (1 - fr)[None, :, None] + maps[:, r1] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def conv_gap_dense(seed=3):
    """conv (named 'conv', 4x4 output) -> global average pooling -> dense logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    a = layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    logits = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(a))
    return keras.Model(inputs, logits)


def two_stage(seed=4):
    """Two ReLU conv stages at 8x8 and 4x4 (no biases), global pooling, dense logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    a = layers.Conv2D(3, 3, padding="same", activation="relu", name="s1")(inputs)
    b = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="s2")(a)
    logits = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(b))
    return keras.Model(inputs, logits)


def activations(model, name, x):
    return keras.Model(model.inputs, model.get_layer(name).output)([x]).numpy()


@pytest.fixture(scope="module")
def tiny_resnet():
    return resnet18(num_classes=5, input_size=32, width=4, stem="small")


# -- GradCAM ----------------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["logit", "probability"])
def test_gradcam_matches_hand_computation(score):
    model = conv_gap_dense()
    a = activations(model, "conv", IMAGES)  # (N, 4, 4, K)
    w, b = model.get_layer("logits").get_weights()
    hw = a.shape[1] * a.shape[2]
    if score == "logit":  # d logit_c / d A_k(i, j) = W[k, c] / (h w)
        alpha = w[:, LABELS].T / hw
    else:  # d p_c / d logit_j = p_c (delta_cj - p_j)
        p = softmax(a.mean(axis=(1, 2)) @ w + b)
        dp = p[np.arange(3), LABELS][:, None] * (np.eye(3)[LABELS] - p)
        alpha = dp @ w.T / hw
    cam = np.maximum(np.einsum("nhwk,nk->nhw", a, alpha), 0)
    expected = bilinear(cam, SIZE, SIZE)
    maps = GradCAM(model, layer="conv", score=score)(IMAGES, LABELS)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    assert np.any(maps > 0) and np.all(maps >= 0)


def test_gradcam_on_resnet18_batches_without_retracing(tiny_resnet):
    x = RNG.uniform(0, 1, (5, 32, 32, 3)).astype(np.float32)
    y = np.arange(5)
    small, big = GradCAM(tiny_resnet, batch_size=2), GradCAM(tiny_resnet, batch_size=64)
    maps = small(x, y)
    assert maps.shape == (5, 32, 32) and np.all(maps >= 0) and np.all(np.isfinite(maps))
    np.testing.assert_allclose(maps, big(x, y), rtol=1e-5, atol=1e-6)
    traces = small.tracing_count()
    small(x[::-1], y)
    assert small.tracing_count() == traces


def test_gradcam_rejects_unknown_and_non_convolutional_layers():
    model = conv_gap_dense()
    with pytest.raises(ValueError, match="layer.*nope"):
        GradCAM(model, layer="nope")
    with pytest.raises(ValueError, match="layer.*4-D"):
        GradCAM(model, layer="logits")
    with pytest.raises(ValueError, match="labels"):
        GradCAM(model, layer="conv")(IMAGES, np.array([0, 1, 7]))


# -- PolyCAM ----------------------------------------------------------------------------------
def masks_of(a, q=0.1):
    """Per-channel percentile min-max normalisation of (h, w, K) activations -> (K, h, w)."""
    out = []
    for k in range(a.shape[-1]):
        lo, hi = np.percentile(a[..., k], [q, 100 - q])
        out.append(np.clip((a[..., k] - lo) / max(hi - lo, 1e-12), 0, 1))
    return np.stack(out)


def hand_weights(model, x, label, a, variant, fill=0.0):
    """Channel weights by one masked forward pass per channel (plain loops, eager)."""
    up = bilinear(masks_of(a), SIZE, SIZE)[..., None]  # (K, H, W, 1)
    fill = np.asarray(fill, np.float32)
    prob = lambda z: softmax(model(z.astype(np.float32), training=False).numpy())[:, label]  # noqa: E731
    kept, removed, base = prob(fill + up * (x - fill)), prob(fill + (1 - up) * (x - fill)), prob(x[None])[0]
    if variant == "plus":
        return kept
    if variant == "minus":
        return np.maximum(base - removed, 0)
    return np.maximum(kept + base - removed, 0)


@pytest.mark.parametrize(
    "variant, fill", [("plus", 0.0), ("minus", 0.0), ("plus_minus", 0.0), ("plus", (0.2, 0.5, 0.7))]
)
def test_polycam_single_layer_matches_hand_computation(variant, fill):
    model = conv_gap_dense()
    a = activations(model, "conv", IMAGES)
    expected = []
    for x, y, ai in zip(IMAGES, LABELS, a):
        cam = np.maximum(np.einsum("hwk,k->hw", ai, hand_weights(model, x, y, ai, variant, fill)), 0)
        expected.append(bilinear(cam[None], SIZE, SIZE)[0])
    maps = PolyCAM(model, layers=["conv"], variant=variant, fill=fill, batch_size=4)(IMAGES, LABELS)
    np.testing.assert_allclose(maps, np.stack(expected), rtol=1e-4, atol=1e-6)


def test_polycam_two_layers_follow_the_lnorm_recursion():
    model = two_stage()
    a1, a2 = activations(model, "s1", IMAGES), activations(model, "s2", IMAGES)
    expected = []
    for x, y, b1, b2 in zip(IMAGES, LABELS, a1, a2):
        m2 = np.maximum(np.einsum("hwk,k->hw", b2, hand_weights(model, x, y, b2, "plus")), 0)
        m1 = np.maximum(np.einsum("hwk,k->hw", b1, hand_weights(model, x, y, b1, "plus")), 0)
        local = bilinear(bilinear(m1[None], 4, 4), SIZE, SIZE)[0]  # LNorm: mean over 2x2 cells
        expected.append(np.maximum(m1 / np.maximum(local, 1e-12) * bilinear(m2[None], SIZE, SIZE)[0], 0))
    maps = PolyCAM(model, layers=["s1", "s2"], batch_size=5)(IMAGES, LABELS)
    np.testing.assert_allclose(maps, np.stack(expected), rtol=1e-4, atol=1e-6)


def test_polycam_peaks_inside_the_only_patch_the_model_reads():
    size, patch = 16, (slice(4, 9), slice(9, 14))
    window = np.zeros((1, size, size, 1), np.float32)
    window[0, patch[0], patch[1]] = 1.0
    keras.utils.set_random_seed(5)
    inputs = keras.Input((size, size, 3))
    x = layers.Multiply()([inputs, tf.constant(window)])
    x = layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="s1")(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", use_bias=False, name="s2")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    images = RNG.uniform(0.2, 1.0, (4, size, size, 3)).astype(np.float32)
    maps = PolyCAM(model, layers=["s1", "s2"])(images, np.array([0, 1, 2, 0]))
    assert maps.shape == (4, size, size) and np.all(np.isfinite(maps)) and np.all(maps >= 0)
    for m in maps:
        r, c = np.unravel_index(np.argmax(m), m.shape)
        assert patch[0].start <= r < patch[0].stop and patch[1].start <= c < patch[1].stop


def test_polycam_on_resnet18_shape_batching_retracing(tiny_resnet):
    x = RNG.uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    y = np.array([4, 0, 2])
    small = PolyCAM(tiny_resnet, batch_size=7)
    maps = small(x, y)
    assert maps.shape == (3, 32, 32) and np.all(maps >= 0) and np.all(np.isfinite(maps)) and maps.max() > 0
    np.testing.assert_allclose(maps, PolyCAM(tiny_resnet, batch_size=64)(x, y), rtol=1e-4, atol=1e-7)
    traces = small.tracing_count()
    small(x[::-1], y)
    assert small.tracing_count() == traces
    assert small.passes_per_image() == 1 + 4 + 8 + 16 + 32
    np.testing.assert_allclose(small.fill_value(), [0.485, 0.456, 0.406], rtol=1e-6)  # ImageNet mean


def test_polycam_defaults_and_registry(tiny_resnet):
    p = PolyCAM(tiny_resnet)
    assert p.layers == ("stage1", "stage2", "stage3", "stage4") and p.variant == "plus" and p.score == "probability"
    assert GradCAM(tiny_resnet).layer == "stage4"
    assert EXPLAINERS["gradcam"] is GradCAM and EXPLAINERS["polycam"] is PolyCAM


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers=["stage1", "nope"]), "nope"),
        (dict(layers=["logits"]), "layers.*4-D"),
        (dict(layers="stage4"), "layers"),
        (dict(layers=[]), "layers"),
        (dict(variant="both"), "variant"),
        (dict(fill=(0.1, 0.2)), "fill"),
        (dict(outlier_percentile=60), "outlier_percentile"),
        (dict(score="softmax"), "score"),
    ],
)
def test_polycam_bad_arguments_name_the_argument(tiny_resnet, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PolyCAM(tiny_resnet, **kwargs)


def test_polycam_bad_inputs_name_the_argument():
    explainer = PolyCAM(conv_gap_dense(), layers=["conv"])
    with pytest.raises(ValueError, match="images"):
        explainer(IMAGES - 0.5, LABELS)
    with pytest.raises(ValueError, match="labels"):
        explainer(IMAGES, LABELS[:2])


def test_polycam_upsampling_matrix_equals_tf_bilinear_resize():
    from tfagg.explainers.polycam import bilinear_matrix

    for h, w, height, width in [(2, 2, 64, 64), (7, 7, 224, 224), (13, 5, 50, 37)]:
        a = RNG.random((2, h, w)).astype(np.float32)
        expected = tf.image.resize(a[..., None], (height, width), method="bilinear").numpy()[..., 0]
        mine = np.einsum("Hh,bhw,Ww->bHW", bilinear_matrix(height, h), a, bilinear_matrix(width, w))
        np.testing.assert_allclose(mine, expected, atol=2e-6)
        np.testing.assert_allclose(mine, bilinear(a, height, width), atol=2e-6)  # the hand-written one


def test_polycam_resize_equals_tf_bilinear_resize_up_and_down():
    """LNorm resizes maps down to the coarser layer and back up: both directions must match TF."""
    from tfagg.explainers.polycam import _resize

    for h, w, height, width in [(32, 32, 16, 16), (16, 16, 4, 4), (7, 9, 3, 2), (4, 4, 32, 32), (5, 3, 11, 8)]:
        a = RNG.random((3, h, w)).astype(np.float32)
        expected = tf.image.resize(a[..., None], (height, width), method="bilinear").numpy()[..., 0]
        np.testing.assert_allclose(_resize(a, (height, width)), expected, atol=2e-6)


def test_polycam_default_layers_include_the_stem_resolution():
    from tfagg.explainers.polycam import default_polycam_layers
    from tfagg.models import resnet18

    assert default_polycam_layers(resnet18(5, 32, 4, "imagenet"))[0] == "stem_relu"
    # the small stem keeps the resolution of stage1: no extra layer
    assert default_polycam_layers(resnet18(5, 32, 4, "small")) == ("stage1", "stage2", "stage3", "stage4")
