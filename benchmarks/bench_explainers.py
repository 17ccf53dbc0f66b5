"""Throughput of the base explainers against the model's raw batched throughput.

For every explainer this measures, in one run and on the same model, images/s of
``explainer(images, labels)`` and the ratio

    ratio = explainer images/s * passes per image / raw bound (images/s)

where the bound is a traced function on one fixed full batch of ``batch_size`` random images:

* forward + input gradient of the class logit for the gradient methods (SmoothGrad: ``n_samples``
  passes per image, Integrated Gradients: ``steps``, Expected Gradients: ``n_baselines * steps``;
  Grad-CAM: 1 -- its backward pass stops at ``stage4``, so its ratio may exceed 1);
* forward only for PolyCAM (``1 + sum of target-layer channels`` forward passes per image).

The target is a ratio >= 0.9: the explainers' own work (noise, baselines, masks, accumulation)
should cost little next to the model. The machine may be shared, so every round pairs an
explainer call with a bound measurement of the same number of passes right after it; the median
per-round ratio (wall clock and process CPU time) and the ratio of the fastest rounds are reported.

Usage::

    python benchmarks/bench_explainers.py          # ResNet18 width 16 at 64 px, reduced sample counts
    python benchmarks/bench_explainers.py --full   # also width 64 at 224 px with Appendix A settings
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import tfagg  # noqa: F401,E402  (TensorFlow set-up before its first import)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfagg.explainers import ExpectedGradients, GradCAM, IntegratedGradients, PolyCAM, SmoothGrad  # noqa: E402
from tfagg.models import resnet18  # noqa: E402


def timed(fn):
    """``(wall seconds, process CPU seconds)`` of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def raw_bounds(model, size, batch_size):
    """Timers ``num_batches -> (wall s, cpu s)`` of traced forward / forward+input-gradient passes."""
    spec = (tf.TensorSpec([batch_size, size, size, 3]), tf.TensorSpec([batch_size], tf.int32))

    def forward(x, y):
        return tf.gather(model(x, training=False), y, axis=1, batch_dims=1)

    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = forward(x, y)
        return tape.gradient(s, x)

    x = tf.random.uniform((batch_size, size, size, 3), seed=0)
    y = tf.zeros((batch_size,), tf.int32)
    timers = {}
    for name, fn in (("forward", forward), ("gradient", gradient)):
        traced = tf.function(fn, input_signature=spec)
        traced(x, y).numpy()  # trace + warm up

        def run(num_batches, traced=traced):
            return timed(lambda: [traced(x, y).numpy() for _ in range(num_batches)])

        timers[name] = run
    return timers


def explainers(model, full: bool, batch_size: int):
    """(explainer, passes per image, bound) -- reduced sample counts unless ``full``."""
    sg = SmoothGrad(model, n_samples=256 if full else 64, batch_size=batch_size)
    ig = IntegratedGradients(model, steps=30, batch_size=batch_size)
    eg = ExpectedGradients(model, n_baselines=20 if full else 4, steps=30, batch_size=batch_size)
    gc = GradCAM(model, batch_size=batch_size)
    pc = PolyCAM(model, batch_size=batch_size)
    return [
        (sg, sg.n_samples, "gradient"),
        (ig, ig.steps, "gradient"),
        (eg, eg.samples_per_image, "gradient"),
        (gc, 1, "gradient"),
        (pc, pc.passes_per_image(), "forward"),
    ]


def bench(size, width, batch_size, num_images, rounds, full, only=None):
    model = resnet18(num_classes=1000, input_size=size, width=width, stem="imagenet")
    rng = np.random.default_rng(0)
    images = rng.random((num_images, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, 1000, num_images)
    print(f"\nResNet18 width {width} at {size} px, batch_size {batch_size}, {num_images} images per call")
    bounds = raw_bounds(model, size, batch_size)
    for explainer, passes, bound in explainers(model, full, batch_size):
        if only and explainer.name not in only:
            continue
        # one-pass methods get a full batch of images so that both sides run full batches
        n = num_images if passes > 1 else batch_size
        x, y = np.resize(images, (n, size, size, 3)), np.resize(labels, n)
        explainer(x, y)  # trace + warm up
        batches = max(1, round(n * passes / batch_size))
        own, raw = [], []  # (wall, cpu) seconds per round
        for _ in range(rounds):
            own.append(timed(lambda: explainer(x, y)))
            raw.append(bounds[bound](batches))
        own, raw = np.array(own), np.array(raw) * (n * passes / (batches * batch_size))  # same work
        label = f"{type(explainer).__name__} ({passes} {'fwd' if bound == 'forward' else 'fwd+grad'} passes/image)"
        # ratio = bound time / explainer time for the same number of passes. Each round pairs an
        # explainer call with an adjacent bound measurement (similar load on a shared machine);
        # reported: the median of the per-round wall-clock ratios, the ratio of the fastest
        # rounds of each side, and the median per-round ratio of process CPU time.
        paired = np.median(raw[:, 0] / own[:, 0])
        fastest = raw[:, 0].min() / own[:, 0].min()
        cpu = np.median(raw[:, 1] / own[:, 1])
        rate, bound_rate = n / np.median(own[:, 0]), n * passes / np.median(raw[:, 0])
        print(f"  {label:52s} {rate:9.2f} images/s | bound {bound_rate:8.1f} images/s "
              f"| ratio: paired median {paired:.3f}, fastest {fastest:.3f}, cpu-time {cpu:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also ResNet18 width 64 at 224 px, Appendix A settings")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated explainer names, e.g. polycam,smoothgrad")
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]
    print(f"TensorFlow {tf.__version__}, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()}")
    bench(64, 16, args.batch_size, args.images, args.rounds, full=False, only=only)
    if args.full:
        bench(224, 64, args.batch_size, 1, rounds=2, full=True, only=only)


if __name__ == "__main__":
    main()
