"""torchvision ResNet18 weights -> tfagg Keras ResNet18: same logits as torch, clear errors.

torchvision itself is not installed here, so the torch side is a reference ResNet18 written below
with torchvision's module names (conv1/bn1/layer1..4/BasicBlock/downsample/fc), hence the same
state-dict keys. BatchNorm statistics and affine parameters are randomised, otherwise BN would be
an identity in eval mode and a mis-mapped BN tensor would go unnoticed.
"""
import sys

import numpy as np
import pytest

from tfagg.models.resnet18 import IMAGENET_MEAN, IMAGENET_STD, resnet18
from tfagg.models.torchvision_weights import (
    assign_torchvision_weights,
    load_state_dict,
    load_torchvision_resnet18,
    save_state_dict_npz,
)

torch = pytest.importorskip("torch")
nn = torch.nn


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TorchResNet18(nn.Module):
    def __init__(self, width=8, num_classes=10, small_stem=False):
        super().__init__()
        if small_stem:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        for s, mult in enumerate((1, 2, 4, 8), start=1):
            cout = width * mult
            stride = 1 if s == 1 else 2
            setattr(self, f"layer{s}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s in range(1, 5):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_torch_model(width=8, num_classes=10, small_stem=False, seed=0, size=32):
    """A reference model with non-trivial BatchNorm parameters and statistics.

    Running statistics are first calibrated on random inputs (so activations keep a useful scale
    through all 8 blocks and the logits depend on the image), then perturbed, and the affine
    parameters randomised: every BN tensor matters for the logits.
    """
    torch.manual_seed(seed)
    model = TorchResNet18(width, num_classes, small_stem)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, size, size))
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn_like(bn.running_mean))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
            bn.num_batches_tracked.fill_(123)
        model.fc.bias.normal_(0.0, 0.5)
    return model.eval()


def torch_logits(model, images):
    """Logits of the torch model for NHWC images in [0, 1], normalised like torchvision."""
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(((images - mean) / std).transpose(0, 3, 1, 2)))
    with torch.no_grad():
        return model(x).numpy()


def random_images(n, size, seed=0):
    """Noise around a different random colour per image, so the images' logits differ clearly."""
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0.1, 0.9, (n, 1, 1, 3))
    return np.clip(colour + rng.uniform(-0.1, 0.1, (n, size, size, 3)), 0, 1).astype(np.float32)


def assert_same_logits(keras_model, torch_model, images):
    expected = torch_logits(torch_model, images)
    got = keras_model.predict(images, batch_size=len(images), verbose=0)
    scale = max(1.0, float(np.abs(expected).max()))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    # The comparison must be meaningful: different images give clearly different logits.
    assert np.abs(expected[0] - expected[1]).max() > 1e-2


def test_logits_match_torch_imagenet_stem_small_width():
    torch_model = make_torch_model(width=8, num_classes=10)
    keras_model = load_torchvision_resnet18(torch_model.state_dict(), input_size=64)
    assert keras_model.output_shape == (None, 10)
    assert keras_model.get_layer("stem_conv").kernel.shape == (7, 7, 3, 8)
    assert_same_logits(keras_model, torch_model, random_images(3, 64))


def test_logits_match_torch_small_stem():
    torch_model = make_torch_model(width=4, num_classes=7, small_stem=True, seed=1)
    keras_model = load_torchvision_resnet18(torch_model.state_dict(), input_size=32)
    assert keras_model.get_layer("stem_conv").kernel.shape == (3, 3, 3, 4)
    assert_same_logits(keras_model, torch_model, random_images(2, 32, seed=1))


def test_odd_input_size_padding_matches_torch():
    # 67 px: every strided conv / pool sees an odd extent, where asymmetric "same" padding would differ.
    torch_model = make_torch_model(width=4, num_classes=5, seed=2)
    keras_model = load_torchvision_resnet18(torch_model.state_dict(), input_size=67)
    assert_same_logits(keras_model, torch_model, random_images(2, 67, seed=2))


@pytest.mark.slow
def test_logits_match_torch_full_width_224():
    torch_model = make_torch_model(width=64, num_classes=1000, seed=3)
    keras_model = load_torchvision_resnet18(torch_model.state_dict())
    assert keras_model.count_params() == sum(p.numel() for p in torch_model.parameters()) + sum(
        b.numel() for name, b in torch_model.named_buffers() if not name.endswith("num_batches_tracked")
    )
    assert_same_logits(keras_model, torch_model, random_images(2, 224, seed=3))


def test_pth_npz_and_wrapped_checkpoints_round_trip(tmp_path):
    torch_model = make_torch_model(width=4, num_classes=6, seed=4)
    state = torch_model.state_dict()
    images = random_images(2, 64, seed=4)
    reference = load_torchvision_resnet18(state, input_size=64).predict(images, verbose=0)

    pth = tmp_path / "weights.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, pth)
    npz = save_state_dict_npz(pth, tmp_path / "weights")
    assert npz.suffix == ".npz"
    for source in (pth, npz, torch_model):
        got = load_torchvision_resnet18(source, num_classes=6, input_size=64).predict(images, verbose=0)
        np.testing.assert_array_equal(got, reference)


def test_npz_loads_without_torch_and_pth_explains_the_npz_route(tmp_path, monkeypatch):
    torch_model = make_torch_model(width=4, num_classes=3, seed=5)
    npz = save_state_dict_npz(torch_model.state_dict(), tmp_path / "w.npz")
    pth = tmp_path / "w.pth"
    torch.save(torch_model.state_dict(), pth)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    state = load_state_dict(npz)
    assert state["conv1.weight"].shape == (4, 3, 7, 7)
    with pytest.raises(ImportError, match="npz"):
        load_state_dict(pth)


def test_assign_weights_reports_missing_unexpected_and_misshaped():
    torch_model = make_torch_model(width=4, num_classes=5, seed=6)
    keras_model = resnet18(num_classes=5, input_size=32, width=4)
    good = {k: v.numpy() for k, v in torch_model.state_dict().items()}

    missing = dict(good)
    del missing["layer2.0.downsample.1.running_var"]
    with pytest.raises(ValueError, match=r"missing 1: layer2\.0\.downsample\.1\.running_var"):
        assign_torchvision_weights(keras_model, missing)

    extra = dict(good, **{"layer5.0.conv1.weight": np.zeros((4, 4, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"unexpected 1: layer5\.0\.conv1\.weight"):
        assign_torchvision_weights(keras_model, extra)

    wrong = dict(good, **{"fc.bias": np.zeros((7,), np.float32)})
    with pytest.raises(ValueError, match=r"fc\.bias: got \(7,\), expected \(5,\)"):
        assign_torchvision_weights(keras_model, wrong)

    # num_batches_tracked is optional; without it the weights still load.
    no_counters = {k: v for k, v in good.items() if not k.endswith("num_batches_tracked")}
    assign_torchvision_weights(keras_model, no_counters)
    np.testing.assert_array_equal(keras_model.get_layer("logits").bias.numpy(), good["fc.bias"])


def test_load_rejects_bad_inputs(tmp_path):
    state = make_torch_model(width=4, num_classes=5, seed=7).state_dict()
    with pytest.raises(ValueError, match="`num_classes` is 9"):
        load_torchvision_resnet18(state, num_classes=9, input_size=32)
    with pytest.raises(ValueError, match="no 'fc.weight'"):
        load_torchvision_resnet18({k: v for k, v in state.items() if not k.startswith("fc.")}, input_size=32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_torchvision_resnet18(tmp_path / "nothing.pth")
    with pytest.raises(TypeError, match="state dict"):
        load_torchvision_resnet18(42)
    with pytest.raises(ValueError, match="not a tfagg ResNet18"):
        import keras

        inputs = keras.Input((8, 8, 3))
        assign_torchvision_weights(keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs)), state)
