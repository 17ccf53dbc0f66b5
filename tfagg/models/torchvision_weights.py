"""Load torchvision ResNet18 weights into :func:`tfagg.models.resnet18`.

The paper (Mahlau & Nolde 2022, Sec. 5) explains "a ResNet18 trained on ImageNet" without naming
the weights; the standard published ones are torchvision's. Their ``state_dict`` maps onto the
Keras model's layer names one to one:

=====================================  ==========================================
torchvision key prefix                  tfagg layer
=====================================  ==========================================
``conv1`` / ``bn1``                     ``stem_conv`` / ``stem_bn``
``layer{s}.{b}.conv1`` ... ``.bn2``     ``stage{s}_block{b+1}_conv1`` ... ``_bn2``
``layer{s}.0.downsample.0`` / ``.1``    ``stage{s}_block1_down_conv`` / ``_down_bn``
``fc``                                  ``logits``
=====================================  ==========================================

Convolution kernels are transposed from PyTorch's OIHW to Keras' HWIO, the fully connected weight
from (out, in) to (in, out); BatchNorm ``weight, bias, running_mean, running_var`` become
``gamma, beta, moving_mean, moving_variance`` (``num_batches_tracked`` is ignored). Because the
Keras model pads explicitly and uses BatchNorm epsilon 1e-5, the logits equal torch's to float32
round-off (tests: within 1e-4 of the logit scale).

Torch is optional: a ``.pth`` file needs it, but :func:`save_state_dict_npz` converts a state dict
to a ``.npz`` once (wherever torch is installed), and ``.npz`` files load with numpy alone.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfagg.models.resnet18 import IMAGENET_MEAN, IMAGENET_STD, resnet18

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_IGNORED_SUFFIX = ".num_batches_tracked"
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")


# --------------------------------------------------------------------------- reading


def to_numpy(value, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic values
        raise TypeError(f"state dict entry {key!r} is not array-like ({type(value).__name__})") from exc


def _unwrap(obj):
    """The parameter mapping inside a checkpoint / module / dict."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return inner
        return obj
    raise TypeError(
        "expected a state dict (a mapping from torchvision parameter names to arrays/tensors), a torch "
        f"module, or a path to a .pth/.pt/.npz file; got {type(obj).__name__}"
    )


def _load_torch_file(path: Path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading {str(path)!r} needs PyTorch, which is not installed. Either `pip install torch`, or "
            "convert the file once where torch is available with "
            "`tfagg.models.torchvision_weights.save_state_dict_npz(torch.load(path), 'weights.npz')` "
            "and load the .npz (numpy only)"
        ) from None
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_state_dict(source) -> dict:
    """Read torchvision-style ResNet weights into ``{key: float32 numpy array}``.

    ``source`` is a mapping of arrays or torch tensors, a torch module, or a path to a ``.npz``
    (numpy only) or ``.pth``/``.pt`` file (needs torch). A checkpoint wrapping the weights under
    ``"state_dict"``/``"model"`` is unwrapped; a ``"module."`` prefix (DataParallel) is stripped.
    """
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                source = {k: archive[k] for k in archive.files}
        elif path.suffix.lower() in _TORCH_SUFFIXES:
            source = _load_torch_file(path)
        else:
            raise ValueError(f"weights file {str(path)!r}: expected a .npz or a PyTorch .pth/.pt file")
    mapping = _unwrap(source)
    keys = [str(k) for k in mapping]
    strip = "module." if keys and all(k.startswith("module.") for k in keys) else ""
    out = {}
    for key, value in mapping.items():
        key = str(key)
        array = to_numpy(value, key)
        if not key.endswith(_IGNORED_SUFFIX):
            array = array.astype(np.float32, copy=False)
        out[key[len(strip):]] = array
    return out


def save_state_dict_npz(state_dict, path) -> Path:
    """Write a state dict (or anything :func:`load_state_dict` accepts) to ``path`` as ``.npz``.

    Use it once on a machine with torch, e.g.
    ``save_state_dict_npz(torchvision.models.resnet18(weights="DEFAULT").state_dict(), "r18.npz")``.
    """
    arrays = load_state_dict(state_dict)
    path = Path(path).expanduser()
    if path.suffix.lower() != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------- mapping


def _layer_table(model) -> list:
    """``[(torch prefix, keras layer, kind)]`` for every weighted layer of a tfagg ResNet18."""
    names = {layer.name for layer in model.layers}
    table = [("conv1", "stem_conv", "conv"), ("bn1", "stem_bn", "bn")]
    for s in range(1, 5):
        for b in range(2):
            torch_block, keras_block = f"layer{s}.{b}", f"stage{s}_block{b + 1}"
            for part in ("conv1", "bn1", "conv2", "bn2"):
                table.append((f"{torch_block}.{part}", f"{keras_block}_{part}", part[:-1] if part.startswith("bn") else "conv"))
            if f"{keras_block}_down_conv" in names:
                table.append((f"{torch_block}.downsample.0", f"{keras_block}_down_conv", "conv"))
                table.append((f"{torch_block}.downsample.1", f"{keras_block}_down_bn", "bn"))
    table.append(("fc", "logits", "dense"))
    missing = [k for _, k, _ in table if k not in names]
    if missing:
        raise ValueError(f"`keras_model` is not a tfagg ResNet18: it has no layer(s) {missing[:5]}")
    return table


def _torch_shapes(layer, kind: str) -> dict:
    """Torch parameter suffix -> expected torch-layout shape for one Keras layer."""
    weights = layer.get_weights()
    if kind == "conv":
        kh, kw, cin, cout = weights[0].shape
        return {"weight": (cout, cin, kh, kw)}
    if kind == "dense":
        cin, cout = weights[0].shape
        return {"weight": (cout, cin), "bias": (cout,)}
    return {param: tuple(w.shape) for param, w in zip(_BN_PARAMS, weights)}


def _to_keras(kind: str, params: dict) -> list:
    if kind == "conv":
        return [np.transpose(params["weight"], (2, 3, 1, 0))]  # OIHW -> HWIO
    if kind == "dense":
        return [params["weight"].T, params["bias"]]
    return [params[p] for p in _BN_PARAMS]  # gamma, beta, moving_mean, moving_variance


def _list(items, limit=8) -> str:
    items = list(items)
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def assign_torchvision_weights(keras_model, state_dict) -> None:
    """Copy torchvision ResNet18 weights into a tfagg ResNet18 of matching shape, in place.

    Every parameter must be present with the right shape and no foreign key may be left over;
    otherwise ``ValueError`` lists the missing, unexpected and mis-shaped tensors (torch layout).
    """
    state = load_state_dict(state_dict)
    table = _layer_table(keras_model)
    expected = {}
    for prefix, layer_name, kind in table:
        for param, shape in _torch_shapes(keras_model.get_layer(layer_name), kind).items():
            expected[f"{prefix}.{param}"] = shape
    provided = {k for k in state if not k.endswith(_IGNORED_SUFFIX)}
    missing = sorted(set(expected) - provided)
    unexpected = sorted(provided - set(expected))
    misshaped = sorted(
        f"{k}: got {tuple(state[k].shape)}, expected {expected[k]}"
        for k in set(expected) & provided
        if tuple(state[k].shape) != expected[k]
    )
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_list(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_list(unexpected)}")
        if misshaped:
            problems.append(f"wrong shape {len(misshaped)}: {_list(misshaped, 4)}")
        raise ValueError(
            "the state dict does not match this ResNet18 (torchvision key names, e.g. 'layer1.0.conv1.weight'; "
            "num_batches_tracked is ignored) -- " + "; ".join(problems)
        )
    for prefix, layer_name, kind in table:
        params = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".") and "." not in k[len(prefix) + 1:]}
        keras_model.get_layer(layer_name).set_weights(_to_keras(kind, params))


def load_torchvision_resnet18(
    state_dict_or_path,
    num_classes: int | None = None,
    input_size: int = 224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    name: str = "resnet18",
):
    """Build a tfagg ResNet18 whose architecture matches ``state_dict_or_path`` and load it.

    The width is ``conv1.weight.shape[0]`` (64 for torchvision's ResNet18), the stem follows
    the kernel of ``conv1`` (7x7: torchvision's ImageNet stem; 3x3: the ``"small"`` stem, i.e. a
    stride-1 conv without max-pool, as in CIFAR-style ports), and the number of classes is
    ``fc.weight.shape[0]``.

    Parameters
    ----------
    state_dict_or_path
        Anything :func:`load_state_dict` reads (mapping, torch module, ``.pth``, ``.npz``).
    num_classes : int, optional
        If given, must equal the classes of ``fc.weight`` (a guard against the wrong file).
    input_size : int
        Side of the input image (224 for ImageNet; the network itself is size-agnostic).
    mean, std
        Input normalisation inside the model (torchvision's ImageNet statistics by default).

    Returns
    -------
    keras.Model
        Maps RGB images in [0, 1] to the same logits as the torch model on the normalised input.
    """
    state = load_state_dict(state_dict_or_path)
    for key in ("conv1.weight", "fc.weight"):
        if key not in state:
            raise ValueError(f"the state dict has no {key!r}: not a torchvision-style ResNet18 (keys: {_list(sorted(state), 5)})")
    conv1, fc = state["conv1.weight"], state["fc.weight"]
    if conv1.ndim != 4 or conv1.shape[1] != 3 or conv1.shape[2] != conv1.shape[3] or conv1.shape[2] not in (3, 7):
        raise ValueError(f"'conv1.weight' must have shape (width, 3, 7, 7) (or (width, 3, 3, 3)); got {tuple(conv1.shape)}")
    if fc.ndim != 2:
        raise ValueError(f"'fc.weight' must have shape (num_classes, 8 * width); got {tuple(fc.shape)}")
    inferred = int(fc.shape[0])
    if num_classes is not None and int(num_classes) != inferred:
        raise ValueError(f"`num_classes` is {num_classes} but the weights' 'fc.weight' has {inferred} classes")
    stem = "imagenet" if conv1.shape[2] == 7 else "small"
    model = resnet18(num_classes=inferred, input_size=input_size, width=int(conv1.shape[0]), stem=stem, mean=mean, std=std, name=name)
    assign_torchvision_weights(model, state)
    return model
