"""Time the ten aggregations of Mahlau & Nolde (2022, Table 1) on CPU.

Pixel-wise aggregations run on a random (7, 64, 224, 224) float32 ensemble (ImageNet size,
K = 7 base attributions as in the paper) after one warm-up call each; RBM is timed per image
at 224 x 224 on a few images (it trains a scikit-learn RBM per image).

    python benchmarks/bench_aggregations.py [--images 64] [--repeats 3] [--rbm-images 2]
"""
from __future__ import annotations

import argparse
import time

import tfagg  # noqa: F401  (configure TensorFlow before it is imported)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=7)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed calls")
    parser.add_argument("--rbm-images", type=int, default=2)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.members, args.images, args.size, args.size)
    ensemble = normalize(rng.normal(size=shape).astype(np.float32), "zscore")
    print(f"ensemble {shape}, z-scored; best of {args.repeats} calls after one warm-up")

    total_ms = 0.0
    for name in AGGREGATIONS:
        if name == "rbm":
            continue
        aggregate(ensemble, name)  # warm-up: traces the tf.function
        seconds = _best_of(lambda: aggregate(ensemble, name), args.repeats)
        per_image_ms = 1e3 * seconds / args.images
        total_ms += per_image_ms
        print(f"{name:>10s}  {per_image_ms:8.2f} ms/image   {DEFAULT_HYPERPARAMETERS[name]}")
    print(f"{'total':>10s}  {total_ms:8.2f} ms/image (9 pixel-wise aggregations)")

    n = min(args.rbm_images, args.images)
    start = time.perf_counter()
    aggregate(ensemble[:, :n], "rbm")
    seconds = (time.perf_counter() - start) / n
    print(f"{'rbm':>10s}  {seconds:8.2f} s/image ({n} images, {args.size}x{args.size})   {DEFAULT_HYPERPARAMETERS['rbm']}")


if __name__ == "__main__":
    main()
