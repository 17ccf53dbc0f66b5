"""The one explainer interface of tfagg.

Every explainer is constructed with a Keras classifier (RGB images in [0, 1] -> logits) and its
own hyperparameters, and is called as ``explainer(images, labels) -> (N, H, W) float32``
*raw* attributions (normalisation is the aggregation's job).

Subclasses implement :meth:`Explainer._explain` on validated tensors. Randomness comes from
per-image stateless keys derived from ``(seed, name, index of the image within the call)``, so the
map of an image does not depend on ``batch_size``; the same image at another index of a call gets
other random draws (the experiment pipeline explains one image per call with a per-image seed).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfagg.batching import check_score
from tfagg.random import per_image_keys
from tfagg.validation import check_images, check_labels, check_positive_int, num_classes_of


class Explainer:
    """Base class.

    Parameters
    ----------
    model : keras.Model
        Classifier mapping ``(B, H, W, 3)`` images in [0, 1] to ``(B, C)`` logits.
    batch_size : int
        Upper bound on the number of model inputs evaluated at once, over images *and* the
        method's own samples (noise draws, interpolation steps, masks). Results do not depend on it.
    seed : int
        Seed of all random draws; the same seed gives the same maps.
    score : {"logit", "probability"}
        The class score that is explained (subclasses document their default).
    """

    name = "explainer"
    default_score = "logit"

    def __init__(self, model, batch_size: int = 64, seed: int = 0, score: str | None = None):
        self.model = model
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"`seed` must be an integer; got {seed!r}")
        self.seed = int(seed)
        self.score = check_score(score if score is not None else self.default_score)
        self.num_classes = num_classes_of(model)

    def __call__(self, images, labels, seed: int | None = None) -> np.ndarray:
        """Attributions ``(N, H, W)`` float32 for ``images`` ``(N, H, W, 3)`` and ``labels`` ``(N,)``.

        ``seed`` overrides the constructor's seed for this call (the experiment pipeline passes
        a per-image seed derived from the run seed and the image id).
        """
        x = check_images(images)
        y = check_labels(labels, x.shape[0], self.num_classes)
        expected = tuple(self.model.input_shape[1:3]) if getattr(self.model, "input_shape", None) else None
        if expected and None not in expected and tuple(x.shape[1:3]) != expected:
            raise ValueError(f"`images` are {x.shape[1]}x{x.shape[2]} but the model expects {expected[0]}x{expected[1]}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"`seed` must be an integer; got {seed!r}")
        s = self.seed if seed is None else int(seed)
        keys = per_image_keys(s, x.shape[0], self.name)
        maps = self._explain(tf.constant(x), tf.constant(y), keys)
        maps = np.asarray(maps.numpy() if hasattr(maps, "numpy") else maps, dtype=np.float32)
        if maps.shape != x.shape[:3]:  # pragma: no cover - guards subclass bugs
            raise RuntimeError(f"{type(self).__name__} produced maps of shape {maps.shape}, expected {x.shape[:3]}")
        if not np.all(np.isfinite(maps)):
            raise FloatingPointError(
                f"{type(self).__name__} produced non-finite attributions; check the model's outputs for "
                "NaN/inf on these images"
            )
        return maps

    def _explain(self, images: tf.Tensor, labels: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError  # abstract: every public explainer overrides it

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _params_key(self) -> str:
        """Hashable summary of the hyperparameters (cache key of traced functions)."""
        return repr(sorted((k, repr(v)) for k, v in self.get_params().items() if k != "seed"))

    def get_params(self) -> dict:
        """Hyperparameters (for results stores and reprs), excluding the model."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("model", "num_classes")}


def resolve_layer(model, layer):
    """Return the Keras layer ``layer`` (a name or a layer) of ``model`` with a clear error if absent."""
    if not isinstance(layer, str):
        if layer in model.layers:
            return layer
        raise ValueError(f"`layer` {layer!r} is not a layer of model {model.name!r}")
    try:
        return model.get_layer(layer)
    except ValueError:
        names = [l.name for l in model.layers]
        conv_like = [n for n in names if len(model.get_layer(n).output.shape) == 4][-8:]
        raise ValueError(
            f"`layer` {layer!r} does not exist in model {model.name!r}. Layers with 4-D outputs "
            f"near the end: {conv_like}. For tfagg.models.resnet18 use 'stage1'..'stage4'."
        ) from None


def activation_model(model, layer_names):
    """A model returning ``[activations of each layer in layer_names..., logits]``."""
    import keras

    outs = [resolve_layer(model, n).output for n in layer_names]
    return keras.Model(model.inputs, outs + [model.output])
