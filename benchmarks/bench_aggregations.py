"""Time the ten aggregations of Mahlau & Nolde (2022, Table 1) on CPU.

Pixel-wise aggregations run on a random z-scored ``(K, N, H, W)`` float32 ensemble (K = 7 base
attributions as in the paper) after one warm-up call each (best of ``repeats`` calls); RBM is
timed per image on a few images (it trains a scikit-learn RBM per image). ``pipeline_maps``
times the experiment pipeline's own per-image map building (``build_maps``: one image per call,
every map of Table 1 and Figures 4-11 except RBM).

    python benchmarks/bench_aggregations.py [--images 64] [--size 224] [--repeats 3] [--rbm-images 2]
"""
from __future__ import annotations

import argparse
import time

from _bench_common import PeakRSS  # noqa: I001  (sets up sys.path and TensorFlow)

import numpy as np

from tfagg.aggregate import AGGREGATIONS, DEFAULT_HYPERPARAMETERS, aggregate
from tfagg.normalize import normalize


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def random_ensemble(members: int, images: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(normalize(rng.normal(size=(members, images, size, size)).astype(np.float32), "zscore"))


def bench_pixelwise(members: int = 7, images: int = 64, size: int = 224, repeats: int = 3, log=print) -> dict:
    """ms per image and peak RSS increase of each pixel-wise aggregation on ``(members, images, size, size)``."""
    ensemble = random_ensemble(members, images, size)
    log(f"  ensemble {ensemble.shape}, z-scored; best of {repeats} calls after one warm-up")
    out = {}
    for name in AGGREGATIONS:
        if name == "rbm":
            continue
        aggregate(ensemble, name)  # warm-up: traces the tf.function
        with PeakRSS() as mem:
            seconds = _best_of(lambda: aggregate(ensemble, name), repeats)
        out[name] = {"ms_per_image": 1e3 * seconds / images, "peak_rss_increase_mb": mem.increase_mb,
                     "hyperparameters": DEFAULT_HYPERPARAMETERS[name]}
        log(f"  {name:>10s}  {out[name]['ms_per_image']:8.3f} ms/image  peak +{mem.increase_mb:5.0f} MB   "
            f"{DEFAULT_HYPERPARAMETERS[name]}")
    total = sum(v["ms_per_image"] for v in out.values())
    log(f"  {'total':>10s}  {total:8.3f} ms/image (9 pixel-wise aggregations)")
    return {"shape": list(ensemble.shape), "repeats": repeats, "methods": out, "total_ms_per_image": total}


def bench_rbm(members: int = 7, images: int = 1, size: int = 224, log=print) -> dict:
    """Seconds per image and peak RSS increase of the RBM aggregation (one RBM fit per image)."""
    ensemble = random_ensemble(members, images, size, seed=1)
    with PeakRSS() as mem:
        start = time.perf_counter()
        aggregate(ensemble, "rbm")
        seconds = (time.perf_counter() - start) / images
    log(f"  {'rbm':>10s}  {seconds:8.2f} s/image ({images} image(s), {size}x{size})  peak +{mem.increase_mb:.0f} MB   "
        f"{DEFAULT_HYPERPARAMETERS['rbm']}")
    return {"size": size, "images": images, "seconds_per_image": seconds, "peak_rss_increase_mb": mem.increase_mb,
            "hyperparameters": DEFAULT_HYPERPARAMETERS["rbm"]}


def bench_pipeline_maps(size: int = 224, log=print) -> dict:
    """Seconds per image of the pipeline's ``build_maps`` for all maps of one image, RBM excluded.

    The pipeline calls it once per image (phase 1: Table 1, Figures 4-10; then Figure 11's top-k
    ensembles); with one image per call, per-call overhead matters more than in
    :func:`bench_pixelwise`. The ablation maps use two different base orders (most distinct maps).
    """
    from tfagg.experiment.config import BASE_METHODS, default_sweeps
    from tfagg.experiment.maps import ablation_specs, build_maps, phase1_specs

    phase1 = phase1_specs(default_sweeps())
    keys = {s.key for s in phase1}
    ablation = [s for s in ablation_specs(BASE_METHODS, BASE_METHODS[::-1]) if s.key not in keys]
    specs = [s for s in phase1 + ablation if s.aggregation != "rbm"]
    ensemble = random_ensemble(len(BASE_METHODS), 1, size, seed=2)[:, 0]
    build_maps(ensemble, specs)  # warm-up: traces each aggregation for (K', 1, H, W)
    with PeakRSS() as mem:
        seconds = _best_of(lambda: build_maps(ensemble, specs), 2)
    res = {"size": size, "maps_phase1": len(phase1), "maps_ablation": len(ablation),
           "rbm_maps": sum(s.aggregation == "rbm" for s in phase1 + ablation),
           "seconds_per_image_without_rbm": seconds, "peak_rss_increase_mb": mem.increase_mb}
    log(f"  pipeline build_maps at {size} px: {len(specs)} maps (RBM excluded) in {seconds:.3f} s per image")
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=7)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed calls")
    parser.add_argument("--rbm-images", type=int, default=2)
    args = parser.parse_args()
    bench_pixelwise(args.members, args.images, args.size, args.repeats)
    bench_rbm(args.members, args.rbm_images, args.size)
    bench_pipeline_maps(args.size)


if __name__ == "__main__":
    main()
