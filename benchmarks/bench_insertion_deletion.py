"""Throughput of tfagg.metrics.insertion_deletion against the model's raw forward throughput.

Measures, in one run and on the same model:

1. the bound: a traced forward pass on full random batches of ``batch_size``
   (:class:`_bench_common.RawBounds`);
2. ``insertion_deletion`` on one image with ``M`` maps: ``N * (2 + 2 M (steps - 1))`` forward
   passes per call, reported as curve pairs/s (one insertion + one deletion curve per map),
   passes/s and the paired ratio to (1) (target >= 0.9);
3. straightforward per-step Python loops, timed over a few steps and extrapolated:
   ``loop-1``  -- RISE's ``single_run`` style: per step build one image in numpy, call the traced
                  model on a batch of 1;
   ``loop-MB`` -- RISE's batched style: per step build the step's image for every map and
                  call the traced model on that batch of M (insertion and deletion separately);
4. optionally (``--sweep``), passes/s and peak RSS per ``batch_size`` (memory against speed),
   each batch size in a fresh process (:mod:`bench_memory`).

Usage::

    python benchmarks/bench_insertion_deletion.py            # offline model: width 16 at 64 px, batch 128
    python benchmarks/bench_insertion_deletion.py --full     # also width 64 at 224 px, batch 64 (slow)
"""
from __future__ import annotations

import argparse
import time

from _bench_common import RawBounds, paired_summary, timed  # noqa: I001

import numpy as np
import tensorflow as tf

from tfagg.metrics import insertion_deletion, step_schedule
from tfagg.models import resnet18


def loop_throughput(model, image, baseline, maps, steps, batch_per_step, timed_steps):
    """Passes/s of a per-step Python loop (numpy image building + one traced model call per step)."""
    h, w, _ = image.shape
    b = maps.shape[0] if batch_per_step else 1
    fwd = tf.function(lambda x: tf.nn.softmax(model(x, training=False)), input_signature=(tf.TensorSpec([b, h, w, 3]),))
    orders = np.argsort(-maps.reshape(maps.shape[0], -1), axis=-1, kind="stable")
    counts = step_schedule(h * w, steps)
    fwd(np.repeat(image[None], b, 0)).numpy()  # trace outside the timing

    def one_step(i):
        for start, fill in ((baseline, image), (image, baseline)):  # insertion, deletion
            # per map: one batch of b images (loop-MB) or b = 1 image per call, M calls (loop-1)
            for first in range(0, maps.shape[0], b):
                xs = np.repeat(start[None], b, 0).reshape(b, h * w, 3)
                for j in range(b):
                    idx = orders[first + j, : counts[i]]
                    xs[j, idx] = fill.reshape(-1, 3)[idx]
                fwd(xs.reshape(b, h, w, 3)).numpy()

    one_step(1)
    t0 = time.perf_counter()
    for i in range(1, timed_steps + 1):
        one_step(i * (steps // timed_steps))
    elapsed = time.perf_counter() - t0
    return 2 * maps.shape[0] * timed_steps / elapsed


def bench_insertion_deletion(model, bounds: RawBounds, batch_size: int, num_maps: int, steps: int, rounds: int,
                             loop_steps: int, log=print) -> dict:
    """Curve pairs/s of ``insertion_deletion`` on one image with ``num_maps`` maps, its paired
    ratio to the forward bound, and its speed-up over the per-step loops."""
    size = int(model.input_shape[1])
    rng = np.random.default_rng(0)
    image = rng.random((1, size, size, 3), dtype=np.float32)
    maps = rng.standard_normal((1, num_maps, size, size))
    labels = np.array([0])  # given, as the pipeline does (None would add one batch to predict it)
    passes = image.shape[0] * (2 + 2 * num_maps * (steps - 1))

    def call():
        insertion_deletion(model, image, labels, maps, steps=steps, batch_size=batch_size)

    call()  # trace the scorer (cached per model / batch size / image size) + warm up
    own, raw = [], []
    for i in range(rounds):  # paired rounds; alternate which half goes first
        if i % 2:
            raw.append(bounds.time("forward", passes))
        own.append(timed(call))
        if not i % 2:
            raw.append(bounds.time("forward", passes))
    res = {"image_size": size, "batch_size": batch_size, "maps": num_maps, "steps": steps,
           "passes_per_call": passes, **paired_summary(own, raw, num_maps)}
    res["passes_per_s"] = res["items_per_s"] * passes / num_maps
    log(f"  insertion_deletion: 1 image x {num_maps} maps x {steps} steps = {passes} passes/call: "
        f"{res['items_per_s']:.2f} curve pairs/s ({res['passes_per_s']:.0f} passes/s) | bound "
        f"{res['bound_items_per_s']:.2f} pairs/s | ratio {res['ratio']:.3f} (fastest {res['ratio_fastest']:.3f}, "
        f"cpu {res['ratio_cpu']:.3f})")

    base = (image[0].mean((0, 1)) + image[0].std((0, 1)) * rng.standard_normal(image[0].shape)).astype(np.float32)
    loops = {}
    for name, batched in (("loop-1", False), ("loop-MB", True)):
        lt = loop_throughput(model, image[0], base, maps[0], steps, batched, loop_steps)
        pairs = lt / (2 + 2 * (steps - 1))
        loops[name] = {"passes_per_s": lt, "curve_pairs_per_s": pairs, "speedup": res["items_per_s"] / pairs}
        log(f"  per-step {name:7s}: {lt:8.1f} passes/s = {pairs:.3f} curve pairs/s (extrapolated from {loop_steps} "
            f"steps); insertion_deletion is {loops[name]['speedup']:.1f}x faster")
    res["loops"] = loops
    res["loop_steps_timed"] = loop_steps
    return res


def pipeline_maps(model, batch_size: int, image_index: int = 0):
    """One synthetic-sign image, its class and the maps the reproduction pipeline scores for it.

    The seven base maps come from the offline preset's explainers on ``model``; the maps are
    phase 1 (Table 1, Figures 4-10) plus the Figure 11 ablation with the bases in registry order
    (the pipeline orders them by their measured scores), as :func:`tfagg.experiment.pipeline`
    builds them.
    """
    from tfagg.data.synth_signs import load_synth_signs
    from tfagg.experiment.config import BASE_METHODS, default_sweeps, offline_explainers
    from tfagg.experiment.maps import ablation_specs, build_maps, phase1_specs
    from tfagg.explainers import EXPLAINERS

    data = load_synth_signs("test", image_index + 1)
    image = data.images[image_index : image_index + 1]
    target = np.asarray(model(image, training=False)).argmax(-1)
    settings = offline_explainers()
    ensemble = np.stack([EXPLAINERS[m](model, batch_size=batch_size, **settings.get(m, {}))(image, target)[0]
                         for m in BASE_METHODS])
    specs = phase1_specs(default_sweeps())
    keys = {x.key for x in specs}
    specs += [x for x in ablation_specs(list(BASE_METHODS), list(BASE_METHODS)) if x.key not in keys]
    return image, target, build_maps(ensemble, specs, seed=0)[None]


def bench_shared_inputs(model, bounds: RawBounds, batch_size: int, steps: int, rounds: int, trained: bool,
                        log=print) -> dict:
    """Insertion/deletion of one image's pipeline maps: how many perturbed inputs coincide (and are
    evaluated once), the ratio to the bound for the inputs evaluated, and the *effective* ratio --
    bound time for all nominal inputs / tfagg time (above 1 when sharing saves passes)."""
    image, target, maps = pipeline_maps(model, batch_size)
    res0 = insertion_deletion(model, image, target, maps, steps=steps, batch_size=batch_size)
    own, raw, raw_nominal = [], [], []
    for i in range(rounds):
        if i % 2:
            raw.append(bounds.time("forward", res0.model_inputs))
        own.append(timed(lambda: insertion_deletion(model, image, target, maps, steps=steps, batch_size=batch_size)))
        if not i % 2:
            raw.append(bounds.time("forward", res0.model_inputs))
        raw_nominal.append(tuple(v * res0.nominal_inputs / res0.model_inputs for v in raw[-1]))
    summary = paired_summary(own, raw, maps.shape[1])
    out = {"trained_model": trained, "maps": int(maps.shape[1]), "steps": steps, "batch_size": batch_size,
           "nominal_inputs": res0.nominal_inputs, "model_inputs": res0.model_inputs,
           "shared_fraction": 1.0 - res0.model_inputs / res0.nominal_inputs,
           **summary, "effective_ratio": paired_summary(own, raw_nominal, maps.shape[1])["ratio"]}
    log(f"  pipeline maps of one image ({out['maps']} maps, {steps} steps, "
        f"{'trained offline model' if trained else 'untrained model'}): {res0.model_inputs} of "
        f"{res0.nominal_inputs} inputs evaluated ({out['shared_fraction']:.1%} coincide); ratio "
        f"{out['ratio']:.3f} for the inputs evaluated, effective ratio {out['effective_ratio']:.3f}")
    return out


def build_cost_probe(model, batch_size: int, num_maps: int = 16, steps: int = 256, rounds: int = 3) -> dict:
    """ms per batch of the scorer's input build (select between image and baseline), the fused
    build+score call and the model's forward pass on prepared inputs (private API of
    ``tfagg.metrics.causal_metrics``; returns ``{"error": ...}`` if it changed)."""
    try:
        import tfagg.metrics.causal_metrics as cm

        size = int(model.input_shape[1])
        rng = np.random.default_rng(0)
        image = rng.random((1, size, size, 3), dtype=np.float32)
        sal = rng.standard_normal((1, num_maps, size, size))
        insertion_deletion(model, image, np.array([0]), sal[:, :1], steps=steps, batch_size=batch_size)
        scorer = cm._scorer_for(model, batch_size, size, size)
        tables, _ = cm._group_tables(image, sal, "normal", cm._image_keys(0, 1, cm.BASELINE_STREAM),
                                     cm._image_keys(0, 1, cm.TIE_BREAK_STREAM), 0, 1, steps)
        desc = cm._item_descriptors(np.arange(batch_size, 2 * batch_size), num_maps, steps, np.array([False, True]))
        labels = tf.zeros((batch_size,), tf.int32)
        prepared = scorer.build(*tables, *desc)
        build_only = tf.function(lambda *a: tf.reduce_sum(scorer._build(*a)))  # no copy-out of the inputs
        build_only(*tables, *desc).numpy()
        calls = {"build": lambda: build_only(*tables, *desc).numpy(),
                 "fused": lambda: scorer.fused(*tables, *desc, labels).numpy(),
                 "score_prepared": lambda: scorer.score(prepared, labels).numpy()}
        out = {}
        for name, fn in calls.items():
            walls = [timed(lambda fn=fn: [fn() for _ in range(4)])[0] / 4 for _ in range(rounds)]
            out[f"{name}_ms_per_batch"] = 1e3 * float(np.median(walls))
        return out
    except Exception as exc:  # noqa: BLE001 - a probe must not stop the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also ResNet18 width 64 at 224 px")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--maps", type=int, default=16, help="maps per call (the pipeline scores ~50-70)")
    parser.add_argument("--steps", type=int, default=256, help="increments (offline preset: 256, paper: 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sweep", action="store_true",
                        help="also batch sizes 32..256: passes/s and peak RSS, each in a fresh process")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()}")
    model = resnet18(num_classes=43, input_size=64, width=16, stem="imagenet")
    bounds = RawBounds(model, 64, args.batch_size)
    print(f"\nResNet18 width 16 at 64 px, batch_size {args.batch_size}")
    bench_insertion_deletion(model, bounds, args.batch_size, args.maps, args.steps, args.rounds, loop_steps=10)
    if args.sweep:
        from bench_memory import batch_sweep

        batch_sweep("insertion_deletion", (32, 64, 128, 256), maps=4, steps=args.steps)
    if args.full:
        # 224 px is ~70x slower per pass: one map and 128 steps (2 x 128 = 256 passes, four full
        # batches of 64 -- no padded last batch) keep the run to a minute
        model = resnet18(num_classes=1000, input_size=224, width=64, stem="imagenet")
        bounds = RawBounds(model, 224, 64)
        print("\nResNet18 width 64 at 224 px, batch_size 64")
        bench_insertion_deletion(model, bounds, 64, 1, 128, rounds=2, loop_steps=2)


if __name__ == "__main__":
    main()
