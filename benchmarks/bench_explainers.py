"""Throughput of the seven base explainers against the model's raw batched throughput.

For every explainer this measures, in one run and on the same model, images/s of
``explainer(images, labels)`` and

    ratio = bound time / explainer time, for the same number of model passes,

where the bound is the model alone (:class:`_bench_common.RawBounds`: a traced function on one
fixed full batch of ``batch_size`` random images), per pass:

* forward + input gradient for SmoothGrad (``n_samples`` passes per image), Integrated
  Gradients (``steps``), Expected Gradients (``n_baselines * steps``) and Grad-CAM (1 -- its
  backward pass stops at the target layer, so its ratio may exceed 1);
* forward only for PolyCAM (``passes_per_image()`` = 1 + channels of the target layers) and
  RISE (``n_masks``);
* both for iGOS++, whose work depends on its line search: ``last_stats`` counts the gradient
  samples (integrated-gradient passes) and the forward samples (line-search candidates) of the
  call, and ``bound time = grad samples / grad rate + forward samples / forward rate``.

Chunk padding counts as overhead (the bound counts only the method's own passes). Each
explainer is called with enough images to fill a few batches (``fill_batches``); with
``single_image`` it is also timed the way the experiment pipeline calls it, one image per call.

Usage::

    python benchmarks/bench_explainers.py          # offline model: ResNet18 width 16 at 64 px, batch 128
    python benchmarks/bench_explainers.py --full   # also width 64 at 224 px, batch 64, reduced samples
    python benchmarks/bench_explainers.py --only polycam,igos_pp
"""
from __future__ import annotations

import argparse
import math
import time

from _bench_common import RawBounds, paired_summary, rounds_for, timed  # noqa: I001

import numpy as np
import tensorflow as tf

from tfagg.experiment.config import BASE_METHODS, offline_explainers
from tfagg.explainers import EXPLAINERS
from tfagg.models import resnet18

#: Explainer settings per benchmark profile. "offline" = the offline preset (Appendix A settings,
#: Grad-CAM on stage3), but RISE with 1000 instead of 5000 masks so that its paired rounds are
#: short and several fit the budget (per-pass work is the same); "full224" reduces the expensive ones so the 224-px run stays in minutes
#: (ratios are per model pass, so they carry over); "quick" is a smoke run.
PROFILES = {
    "offline": {**offline_explainers(), "rise": {"n_masks": 1000}},
    "quick": {**offline_explainers(), "smoothgrad": {"n_samples": 32},
              "expected_gradients": {"n_baselines": 2},
              "igos_pp": {"iterations": 2}, "rise": {"n_masks": 1000}},
    "full224": {m: {} for m in BASE_METHODS} | {
        "smoothgrad": {"n_samples": 64},
        "expected_gradients": {"n_baselines": 2},
        "polycam": {"layers": ("stage4",)},
        "igos_pp": {"iterations": 1},
        "rise": {"n_masks": 512},
    },
}


def passes_per_image(explainer):
    """``(passes, bound kind)`` of a call, or ``(None, "mixed")`` for iGOS++ (known after a call)."""
    name = explainer.name
    if name == "igos_pp":
        return None, "mixed"
    if name == "rise":
        return explainer.n_masks, "forward"
    if name == "polycam":
        return explainer.passes_per_image(), "forward"
    if name == "gradcam":
        return 1, "gradient"
    return explainer.samples_per_image, "gradient"


def igos_passes(explainer, num_images: int) -> dict:
    """Per-image pass counts of the last iGOS++ call from its ``last_stats``.

    The bound counts the method's own passes: the gradient samples and ``4 K`` forward samples
    per line-search candidate. Speculative samples of candidates that were never reached
    (``forward_evaluated - forward``) and chunk padding count as overhead.
    """
    s = explainer.last_stats
    per_candidate = 4 * explainer.steps
    return {
        "gradient": s["samples_grads"] / num_images,
        "forward": s["candidates"] * per_candidate / num_images,
        "forward_evaluated": s["samples_scores"] / num_images,
        "gradient_slots": s["slots_grads"] / num_images,
        "forward_slots": s["slots_scores"] / num_images,
        "candidates": s["candidates"] / num_images,
    }


def bound_time(bounds: RawBounds, passes: dict, num_images: int):
    """``(wall, cpu)`` of the bound for ``passes`` (kind -> passes per image) on ``num_images``."""
    wall = cpu = 0.0
    for kind in ("gradient", "forward"):
        w, c = bounds.time(kind, passes.get(kind, 0) * num_images)
        wall, cpu = wall + w, cpu + c
    return wall, cpu


def images_per_call(passes, batch_size: int, fill_batches: int) -> int:
    """Images per call so that a call runs about ``fill_batches`` full batches (iGOS++: 1)."""
    if passes is None:
        return 1
    return max(1, math.ceil(fill_batches * batch_size / passes))


def bench_explainer(explainer, images, labels, bounds: RawBounds, num_images: int, budget_s: float,
                    min_rounds: int = 1, max_rounds: int = 7) -> dict:
    """Paired-round throughput of one explainer on the first ``num_images`` of ``images``.

    Returns images/s, the bound's images/s for the same passes, the ratios (see
    :func:`_bench_common.paired_summary`) and the passes per image. (Peak memory is measured in
    fresh processes by :mod:`bench_memory`: TensorFlow keeps a traced function's buffers, so
    in-process RSS after the first call says little.)
    """
    x, y = images[:num_images], labels[:num_images]
    t0 = time.perf_counter()
    explainer(x, y)  # trace + warm up
    first_s = time.perf_counter() - t0
    call_s, _ = timed(lambda: explainer(x, y))
    static, kind = passes_per_image(explainer)
    passes = igos_passes(explainer, num_images) if static is None else {kind: static}
    rounds = rounds_for(call_s, budget_s, min_rounds, max_rounds)
    own, raw = [], []
    for i in range(rounds):
        # alternate which half goes first, so a load change within a round biases neither side
        if i % 2:
            raw.append(bound_time(bounds, passes, num_images))
        own.append(timed(lambda: explainer(x, y)))
        if static is None:  # iGOS++: this call's own pass counts (deterministic for a fixed seed)
            passes = igos_passes(explainer, num_images)
        if not i % 2:
            raw.append(bound_time(bounds, passes, num_images))
    return {
        "explainer": explainer.name,
        "settings": {k: v for k, v in explainer.get_params().items() if k not in ("seed",)},
        "images_per_call": num_images,
        "bound": kind,
        "passes_per_image": passes,
        "first_call_seconds": first_s,
        **paired_summary(own, raw, num_images),
    }


def bench_explainers(model, batch_size: int, profile: str, bounds: RawBounds, budget_s: float = 8.0,
                     fill_batches: int = 4, single_image: bool = True, only=(), min_rounds: int = 1,
                     max_rounds: int = 7, log=print) -> list:
    """Benchmark every explainer of ``PROFILES[profile]`` on ``model``; a list of result dicts.

    With ``single_image`` each explainer whose batched call used more than one image is also
    timed with one image per call (the pipeline's pattern), reported as ``single_image``.
    """
    size = int(model.input_shape[1])
    num_classes = int(model.output_shape[-1])
    results = []
    for name, kwargs in PROFILES[profile].items():
        if only and name not in only:
            continue
        try:
            explainer = EXPLAINERS[name](model, batch_size=batch_size, **kwargs)
            static, _ = passes_per_image(explainer)
            n = images_per_call(static, batch_size, fill_batches)
            rng = np.random.default_rng(0)
            images = rng.random((n, size, size, 3), dtype=np.float32)
            labels = rng.integers(0, num_classes, n)
            res = bench_explainer(explainer, images, labels, bounds, n, budget_s, min_rounds, max_rounds)
            if single_image and n > 1:
                one = bench_explainer(explainer, images, labels, bounds, 1, budget_s / 2, min_rounds, max_rounds)
                res["single_image"] = {k: one[k] for k in ("items_per_s", "bound_items_per_s", "ratio",
                                                           "ratio_fastest", "ratio_cpu", "rounds")}
            elif single_image:
                res["single_image"] = "same as batched (1 image per call)"
        except Exception as exc:  # keep benchmarking the others; the report shows the failure
            res = {"explainer": name, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"}
            log(f"  {name:22s} FAILED: {res['error']}")
            results.append(res)
            continue
        results.append(res)
        log(format_result(res))
    return results


def format_passes(res: dict) -> str:
    p = res["passes_per_image"]
    if res["bound"] == "mixed":
        return f"{p['gradient']:.0f} fwd+grad + {p['forward']:.0f} fwd"
    return f"{p[res['bound']]:.0f} {'fwd' if res['bound'] == 'forward' else 'fwd+grad'}"


def format_result(res: dict) -> str:
    one = res.get("single_image")
    single = f", 1 img/call {one['ratio']:.2f}" if isinstance(one, dict) else ""
    return (f"  {res['explainer']:22s} {format_passes(res):>24s}/img  x{res['images_per_call']:<4d} "
            f"{res['items_per_s']:9.2f} img/s | bound {res['bound_items_per_s']:9.2f} img/s | ratio {res['ratio']:.3f} "
            f"(fastest {res['ratio_fastest']:.3f}, cpu {res['ratio_cpu']:.3f}{single})")


def overhead_probes(model, batch_size: int, small_batches=(32, 64), rounds: int = 3) -> dict:
    """Costs that explain ratios below 1, measured on this model and machine.

    * ms per chunk of ``batch_size`` for the model's forward and forward+gradient passes, and for
      drawing one chunk of per-sample Gaussian noise images: SmoothGrad's Box-Muller rows
      (``stateless_normal_rows``) and the plain ``tf.random.stateless_normal`` iGOS++ uses;
    * the model's forward images/s at smaller batches relative to ``batch_size`` (explainers whose
      streams are shorter than a batch run such chunks).
    """
    from _bench_common import RawBounds as _Raw

    from tfagg.explainers._gradients import stateless_normal_rows

    size = int(model.input_shape[1])
    keys = tf.constant(np.stack([np.arange(batch_size), np.arange(batch_size) + 7], 1), tf.int32)
    box_muller = tf.function(lambda k: stateless_normal_rows(k, (size, size, 3)))
    normal = tf.function(lambda k: tf.random.stateless_normal((batch_size, size, size, 3), seed=k[0]))
    bounds = _Raw(model, size, batch_size)
    out = {"batch_size": batch_size}
    for name, fn in (("noise_box_muller", box_muller), ("noise_stateless_normal", normal)):
        fn(keys).numpy()
        walls = [timed(lambda fn=fn: [fn(keys).numpy() for _ in range(4)])[0] / 4 for _ in range(rounds)]
        out[f"{name}_ms_per_chunk"] = 1e3 * float(np.median(walls))
    for kind in ("forward", "gradient"):
        out[f"{kind}_ms_per_chunk"] = 1e3 * batch_size / bounds.rate(kind, 2, rounds)
    try:  # iGOS++'s path-score kernel on one chunk (private API: skipped if it changes)
        out["igos_scores_kernel_ms_per_chunk"] = 1e3 * _igos_kernel_seconds(model, batch_size, rounds)
    except Exception as exc:  # noqa: BLE001 - a probe must not stop the benchmark
        out["igos_scores_kernel_error"] = f"{type(exc).__name__}: {exc}"[:200]
    try:  # PolyCAM's masked-score kernel on one image's channel masks of all target layers
        out["polycam_kernel_ms_per_chunk"] = 1e3 * _polycam_kernel_seconds(model, batch_size, rounds)
    except Exception as exc:  # noqa: BLE001
        out["polycam_kernel_error"] = f"{type(exc).__name__}: {exc}"[:200]
    try:  # RISE's chunk kernel (masks from grids -> blend -> model -> weighted mask sum)
        out["rise_chunk_ms_per_chunk"] = 1e3 * _rise_chunk_seconds(model, batch_size, rounds)
    except Exception as exc:  # noqa: BLE001
        out["rise_chunk_error"] = f"{type(exc).__name__}: {exc}"[:200]
    rate = bounds.rate("forward", 4, rounds)
    for b in small_batches:
        out[f"forward_rate_batch{b}_relative"] = _Raw(model, size, b).rate("forward", max(1, 4 * batch_size // b),
                                                                            rounds) / rate
    return out


def _rise_chunk_seconds(model, batch_size: int, rounds: int) -> float:
    """Seconds per chunk of RISE's traced kernel on one image's masks (private API)."""
    size = int(model.input_shape[1])
    rise = EXPLAINERS["rise"](model, batch_size=batch_size)
    fn = rise._chunk_fn(size, size)
    b, s = batch_size, rise.grid_size
    rng = np.random.default_rng(0)
    baselines = tf.fill((1, size, size, 3), 0.45)
    diffs = tf.random.uniform((1, size, size, 3), seed=2) - baselines
    args = (baselines, diffs, tf.constant([0]), tf.zeros((b,), tf.int32),
            tf.constant((rng.random((b, s, s)) < rise.p1).astype(np.float32)),
            tf.constant(rng.integers(0, 3, (b, 2)), tf.int32), tf.ones((b,)))
    fn(*args).numpy()
    walls = [timed(lambda: [fn(*args).numpy() for _ in range(4)])[0] / 4 for _ in range(rounds)]
    return float(np.median(walls))


def _polycam_kernel_seconds(model, batch_size: int, rounds: int) -> float:
    """Seconds per chunk of ``batch_size`` of PolyCAM's masked-score kernel (private API): the
    first chunk of one image's stream, which mixes the shallow layers' channels."""
    import functools

    from tfagg.explainers._gradients import spec_of

    size = int(model.input_shape[1])
    explainer = EXPLAINERS["polycam"](model, batch_size=batch_size)
    images = tf.random.uniform((1, size, size, 3), seed=3)
    labels = tf.constant([0])
    rng = np.random.default_rng(0)
    masks = tuple(tf.constant(rng.random((1, int(model.get_layer(n).output.shape[-1]),
                                          *model.get_layer(n).output.shape[1:3])).astype(np.float32))
                  for n in explainer.layers)
    diffs = images - tf.constant(explainer.fill_value().reshape(1, 1, 1, 3))
    signature = (spec_of(images), spec_of(labels), tuple(spec_of(m) for m in masks),
                 tf.TensorSpec((batch_size,), tf.int32))
    fn = tf.function(functools.partial(explainer._chunk_masked_scores, invert=False), input_signature=signature)
    offsets = tf.range(batch_size, dtype=tf.int32)
    fn(diffs, labels, masks, offsets).numpy()
    walls = [timed(lambda: [fn(diffs, labels, masks, offsets).numpy() for _ in range(4)])[0] / 4
             for _ in range(rounds)]
    return float(np.median(walls))


def _igos_kernel_seconds(model, batch_size: int, rounds: int) -> float:
    """Seconds per chunk of iGOS++'s forward path-score kernel (masks -> noisy path images -> scores)."""
    from tfagg.explainers.igos_pp import noise_table

    size = int(model.input_shape[1])
    explainer = EXPLAINERS["igos_pp"](model, batch_size=batch_size)
    kern = explainer._get_kernels(size, size)
    mh, mw = kern["mask_hw"]
    b = explainer._candidate_chunk()
    x = tf.random.uniform((1, size, size, 3), seed=1)
    base = tf.fill((1, size, size, 3), 0.45)
    ones = tf.ones((1, mh, mw))
    zeros = tf.zeros((b,), tf.int32)
    noise = noise_table(size, size) * explainer.noise_std
    args = (tf.concat([base, x], 0), x - base, tf.constant([0]), noise, ones, ones, zeros, zeros,
            tf.constant(np.arange(b) % 4, tf.int32), tf.fill((b,), 0.5),
            tf.constant(np.arange(b) * 97, tf.int32), tf.ones((b,)))
    kern["scores"](*args).numpy()
    walls = [timed(lambda: [kern["scores"](*args).numpy() for _ in range(4)])[0] / 4 for _ in range(rounds)]
    return float(np.median(walls)) * batch_size / b  # per batch_size samples, comparable to the model's chunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also ResNet18 width 64 at 224 px (batch 64)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of paired rounds per explainer")
    parser.add_argument("--memory", action="store_true", help="also peak RSS per explainer (fresh processes)")
    parser.add_argument("--only", default="", help="comma-separated explainer names, e.g. polycam,igos_pp")
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]
    print(f"TensorFlow {tf.__version__}, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()}")
    configs = [(64, 16, 43, args.batch_size, "offline", args.budget)]
    if args.full:
        configs.append((224, 64, 1000, 64, "full224", 20.0))
    for size, width, classes, batch, profile, budget in configs:
        model = resnet18(num_classes=classes, input_size=size, width=width, stem="imagenet")
        bounds = RawBounds(model, size, batch)
        print(f"\nResNet18 width {width} at {size} px, batch_size {batch}, profile {profile}: "
              f"forward {bounds.rate('forward'):.1f} img/s, forward+gradient {bounds.rate('gradient'):.1f} img/s")
        bench_explainers(model, batch, profile, bounds, budget_s=budget, fill_batches=4 if size < 224 else 1,
                         single_image=size < 224, only=only)
        if args.memory:
            from bench_memory import explainer_memory

            explainer_memory(PROFILES[profile], size, width, classes, batch, only=only)


if __name__ == "__main__":
    main()
