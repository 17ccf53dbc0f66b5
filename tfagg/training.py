"""``tfagg train``: train a ResNet18 preset with Keras ``fit`` and cache it.

Training uses Adam with a cosine-decayed learning rate and sparse categorical cross-entropy on
logits. Everything is seeded (``keras.utils.set_random_seed`` + the data generator's seed); on a
multi-threaded CPU, TensorFlow's reductions are not bit-deterministic, so two runs agree in accuracy
to a fraction of a percent rather than bit for bit.
"""
from __future__ import annotations

import time

import numpy as np

from tfagg.models.presets import get_preset
from tfagg.models.resnet18 import resnet18
from tfagg.models.zoo import model_dir, save_model


def _synth_sign_data(preset, seed, train_images, batch_size):
    from tfagg.data.synth_signs import load_synth_signs, synth_signs_tf_dataset

    train = synth_signs_tf_dataset("train", train_images, preset.input_size, seed, batch_size)
    val = load_synth_signs("val", 1000, preset.input_size, seed)
    test = load_synth_signs("test", 2000, preset.input_size, seed)
    return train, (val.images, val.labels), (test.images, test.labels)


def _gtsrb_data(preset, seed, data_dir, batch_size):
    from tfagg.data.gtsrb import gtsrb_tf_dataset, load_gtsrb

    if data_dir is None:
        raise ValueError("the 'gtsrb' preset needs `data_dir`: the folder holding the official GTSRB archives")
    # Streamed: the whole training set as float32 at 128 px would need ~7.7 GB.
    train = gtsrb_tf_dataset(data_dir, split="train", image_size=preset.input_size, batch_size=batch_size,
                             shuffle=True, seed=seed)
    val = load_gtsrb(data_dir, split="test", n=1000, seed=seed + 1, image_size=preset.input_size)
    test = gtsrb_tf_dataset(data_dir, split="test", image_size=preset.input_size, batch_size=256, shuffle=False)
    return train, (val.images, val.labels), test


def evaluate_accuracy(model, images, labels=None, batch_size: int = 256):
    """``(accuracy, number of images)`` on arrays, or on a dataset of (images, labels) batches."""
    from tfagg.batching import ModelRunner

    runner = ModelRunner(model, batch_size=batch_size, score="logit")
    batches = [(images, labels)] if labels is not None else images
    correct = total = 0
    for x, y in batches:
        pred = np.argmax(runner.outputs(x).numpy(), axis=1)
        correct += int(np.sum(pred == np.asarray(y)))
        total += len(pred)
    return correct / total, total


def train_model(preset: str = "synth-signs", seed: int = 0, out_dir=None, epochs: int | None = None,
                train_images: int | None = None, data_dir=None, progress: bool = True):
    """Train ``preset`` and save it (atomically) to ``out_dir``; return ``(model, card)``."""
    import keras

    p = get_preset(preset)
    if p.dataset == "imagenet":
        raise ValueError("the 'imagenet' preset is not trained here: convert torchvision weights with "
                         "`tfagg convert-weights` (see README)")
    epochs = p.epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1; got {epochs}")
    keras.utils.set_random_seed(seed)
    if p.dataset == "synth-signs":
        n_train = p.train_images if train_images is None else int(train_images)
        if n_train < p.batch_size:
            raise ValueError(f"`train_images` must be >= the batch size {p.batch_size}; got {n_train}")
        train, val, test = _synth_sign_data(p, seed, n_train, p.batch_size)
        steps = n_train // p.batch_size
    else:
        train, val, test = _gtsrb_data(p, seed, data_dir, p.batch_size)
        steps = max(1, int(train.cardinality()))
    model = resnet18(p.num_classes, p.input_size, p.width, p.stem, name=f"resnet18_{p.name.replace('-', '_')}")
    total = max(1, epochs * steps)
    # Linear warm-up over the first 10 % of steps, then cosine decay to zero.
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - total // 10, warmup_target=p.learning_rate, warmup_steps=total // 10)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    t0 = time.time()
    model.fit(train, epochs=epochs, validation_data=val, verbose=1 if progress else 0)
    train_seconds = time.time() - t0
    accuracy, n_test = evaluate_accuracy(model, *test) if isinstance(test, tuple) else evaluate_accuracy(model, test)
    card = {
        "preset": p.as_dict(),
        "seed": seed,
        "epochs": epochs,
        "test_accuracy": accuracy,
        "test_images": int(n_test),
        "train_seconds": round(train_seconds, 1),
        "tfagg_version": __import__("tfagg").__version__,
    }
    if out_dir is None:
        out_dir = model_dir(preset, seed)
    save_model(model, card, out_dir)
    return model, card
