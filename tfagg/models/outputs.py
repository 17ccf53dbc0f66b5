"""The one documented way to turn tfagg models' logits into class probabilities."""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def class_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """Softmax of ``model``'s logits, ``(N, num_classes)`` float32, computed in batches.

    tfagg models output logits; insertion/deletion, RISE, iGOS++ and PolyCAM are defined on
    probabilities, which they take as ``softmax(logits)`` exactly like this function.
    """
    out = []
    for i in range(0, len(images), batch_size):
        logits = model(tf.convert_to_tensor(images[i : i + batch_size], tf.float32), training=False)
        out.append(tf.nn.softmax(logits, axis=-1).numpy())
    return np.concatenate(out, axis=0)


def probability_model(model):
    """A Keras model that outputs ``softmax(model(x))`` (shares the weights of ``model``)."""
    import keras

    probs = keras.layers.Softmax(name="probabilities")(model.output)
    return keras.Model(model.input, probs, name=f"{model.name}_probabilities")
