import json

import numpy as np
import pytest
import tensorflow as tf

from tfagg.models import STAGE_NAMES, class_probabilities, probability_model, resnet18
from tfagg.models.zoo import CARD_FILE, MODEL_FILE, load_model, save_model


def test_resnet18_layer_names_and_shapes():
    m = resnet18(num_classes=7, input_size=64, width=8, stem="imagenet")
    # ImageNet stem: /4 after stem, then /1, /2, /2, /2
    expected = {"stage1": 16, "stage2": 8, "stage3": 4, "stage4": 2}
    for name in STAGE_NAMES:
        shape = m.get_layer(name).output.shape
        assert shape[1] == shape[2] == expected[name]
    assert m.get_layer("stage4").output.shape[-1] == 64  # 8 * width
    assert m.output_shape == (None, 7)
    for name in ["stem_conv", "stem_pool", "stage2_block1_down_conv", "stage3_block2_out", "logits", "input_normalization"]:
        m.get_layer(name)


def test_small_stem_keeps_resolution():
    m = resnet18(num_classes=3, input_size=32, width=4, stem="small")
    assert m.get_layer("stage1").output.shape[1] == 32
    assert m.get_layer("stage4").output.shape[1] == 4
    assert "stem_pool" not in [layer.name for layer in m.layers]

def test_parameter_count_matches_published_resnet18():
    # torchvision resnet18 has 11,689,512 trainable parameters; Keras also counts the BN moving
    # mean and variance (2 x 4,800 BN channels) as non-trainable weights.
    m = resnet18()
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert trainable == 11_689_512
    assert m.count_params() == 11_689_512 + 2 * 4_800


def test_model_normalises_inputs_internally():
    m = resnet18(num_classes=3, input_size=32, width=4, stem="small")
    norm = m.get_layer("input_normalization")
    x = np.full((1, 32, 32, 3), 0.485, np.float32)
    y = norm(x).numpy()
    assert abs(y[..., 0]).max() < 1e-5  # (0.485 - mean_R) / std_R == 0


def test_probabilities_are_softmax_of_logits():
    m = resnet18(num_classes=5, input_size=32, width=4, stem="small")
    x = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    p = class_probabilities(m, x, batch_size=2)
    np.testing.assert_allclose(p, tf.nn.softmax(m(x)).numpy(), atol=1e-6)
    np.testing.assert_allclose(probability_model(m)(x).numpy(), p, atol=1e-6)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_size=16, stem="imagenet"), "input_size"),
    (dict(input_size=4, stem="small"), "input_size"),
    (dict(stem="cifar"), "stem"),
    (dict(width=0), "width"),
    (dict(num_classes=1), "num_classes"),
])
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet18(**kwargs)


def test_save_is_atomic_and_card_marks_completion(tmp_path):
    m = resnet18(num_classes=3, input_size=32, width=4, stem="small")
    d = tmp_path / "m"
    with pytest.raises(FileNotFoundError, match="tfagg train"):
        load_model(d)
    save_model(m, {"test_accuracy": 0.5}, d)
    m2, card = load_model(d)
    assert card["test_accuracy"] == 0.5
    x = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(m2(x).numpy(), m(x).numpy(), atol=1e-6)
    # A model file without its card (a crash before the card was written) is not a model.
    (d / CARD_FILE).unlink()
    with pytest.raises(FileNotFoundError):
        load_model(d)
    assert not [p for p in d.iterdir() if p.name.startswith(".model.")]
    assert (d / MODEL_FILE).exists()
