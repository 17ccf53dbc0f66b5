"""Peak memory of tfagg calls, each measured in a fresh process.

Why a fresh process: TensorFlow keeps the buffers of a traced function after its first call
(measured: a second call of a batch-256 forward pass raises RSS by ~1 MB, the first by ~70 MB,
and ``malloc_trim`` does not give them back), so in a long benchmark process every measurement
after the first reuses memory and looks free. Here each item runs in its own interpreter:
import tfagg, build the model, record the RSS, then trace and run the item twice while a
background thread samples the RSS (:class:`_bench_common.PeakRSS`). Reported: the peak increase
over that baseline, i.e. what the call adds to a process that already holds the model --
including tracing, which every real run pays once. Optionally the item's speed is timed too
(after the memory measurement), which the batch-size sweep uses.

Usage (prints one JSON object)::

    python benchmarks/bench_memory.py explainer:rise --batch-size 128 [--size 64 --width 16 --classes 43]
    python benchmarks/bench_memory.py insertion_deletion --maps 16 --steps 256 --batch-size 256 --time
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(item: str, size: int, width: int, classes: int, batch_size: int, maps: int, steps: int,
            explainer_kwargs: dict, time_it: bool) -> dict:
    """Run ``item`` in this process (meant to be a fresh one) and return its memory (and speed)."""
    from _bench_common import PeakRSS, _current_rss, timed

    import numpy as np

    from tfagg.models import resnet18

    model = resnet18(classes, size, width, "imagenet")
    rng = np.random.default_rng(0)
    if item == "insertion_deletion":
        from tfagg.metrics import insertion_deletion

        image = rng.random((1, size, size, 3), dtype=np.float32)
        sal = rng.standard_normal((1, maps, size, size))

        def call():
            insertion_deletion(model, image, np.array([0]), sal, steps=steps, batch_size=batch_size)

        work = {"maps": maps, "steps": steps, "passes": 2 + 2 * maps * (steps - 1)}
    elif item.startswith("explainer:"):
        from tfagg.explainers import EXPLAINERS

        explainer = EXPLAINERS[item.split(":", 1)[1]](model, batch_size=batch_size, **explainer_kwargs)
        x = rng.random((1, size, size, 3), dtype=np.float32)
        y = rng.integers(0, classes, 1)

        def call():
            explainer(x, y)

        work = {"images": 1, "settings": explainer_kwargs}
    else:
        raise ValueError(f"unknown item {item!r}; expected 'insertion_deletion' or 'explainer:<name>'")
    baseline_mb = _current_rss() / 2**20
    with PeakRSS() as mem:
        call()  # trace + first run
        call()
    res = {"item": item, "image_size": size, "width": width, "batch_size": batch_size, **work,
           "baseline_rss_mb": baseline_mb, "peak_rss_mb": mem.peak_mb, "peak_rss_increase_mb": mem.increase_mb}
    if time_it:
        walls = [timed(call)[0] for _ in range(2)]
        res["seconds_per_call"] = float(np.median(walls))
    return res


def run_isolated(item: str, size: int = 64, width: int = 16, classes: int = 43, batch_size: int = 128,
                 maps: int = 4, steps: int = 256, explainer_kwargs: dict | None = None, time_it: bool = False) -> dict:
    """:func:`measure` in a fresh Python process; returns its result dict (or ``{"error": ...}``)."""
    cmd = [sys.executable, str(HERE / "bench_memory.py"), item, "--size", str(size), "--width", str(width),
           "--classes", str(classes), "--batch-size", str(batch_size), "--maps", str(maps), "--steps", str(steps),
           "--kwargs", json.dumps(explainer_kwargs or {})] + (["--time"] if time_it else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"item": item, "batch_size": batch_size, "error": proc.stderr.strip().splitlines()[-1:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_seconds"] = time.perf_counter() - t0
    return res


def explainer_memory(settings: dict, size: int = 64, width: int = 16, classes: int = 43, batch_size: int = 128,
                     only=(), workers: int = 2, overrides: dict | None = None, log=print) -> dict:
    """Peak RSS increase of each explainer (``settings``: name -> kwargs), one fresh process each.

    ``workers`` processes run at once: only memory is measured here, which concurrency does not
    change, and the imports dominate each process's time. ``overrides`` (name -> kwargs) replace
    settings that do not change memory but cost time (e.g. fewer iGOS++ iterations).
    """
    from concurrent.futures import ThreadPoolExecutor

    names = [n for n in settings if not only or n in only]
    kwargs = {n: {**settings[n], **(overrides or {}).get(n, {})} for n in names}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {n: pool.submit(run_isolated, f"explainer:{n}", size, width, classes, batch_size,
                                  explainer_kwargs=kwargs[n]) for n in names}
        out = {n: f.result() for n, f in futures.items()}
    for n, r in out.items():
        log(f"  {n:22s} peak RSS +{r.get('peak_rss_increase_mb', float('nan')):6.0f} MB "
            f"(fresh process, baseline {r.get('baseline_rss_mb', float('nan')):.0f} MB) {r.get('error', '')}")
    return out


def batch_sweep(item: str, batch_sizes=(32, 64, 128, 256), size: int = 64, width: int = 16, classes: int = 43,
                maps: int = 4, steps: int = 256, explainer_kwargs: dict | None = None, log=print) -> list:
    """Speed and peak RSS increase of ``item`` per batch size, each in a fresh process (run one
    after another, so that the timings do not disturb each other)."""
    rows = []
    for b in sorted(batch_sizes):
        r = run_isolated(item, size, width, classes, b, maps, steps, explainer_kwargs, time_it=True)
        if "error" not in r:
            r["passes_per_s"] = r["passes"] / r["seconds_per_call"] if "passes" in r else None
            r["images_per_s"] = r.get("images", 0) / r["seconds_per_call"]
            speed = (f"{r['passes_per_s']:8.0f} passes/s" if r["passes_per_s"] else f"{r['images_per_s']:8.2f} img/s")
            log(f"  {item} batch {b:4d}: {speed}, peak RSS +{r['peak_rss_increase_mb']:.0f} MB "
                f"(fresh process, baseline {r['baseline_rss_mb']:.0f} MB)")
        else:
            log(f"  {item} batch {b:4d}: failed: {r['error']}")
        rows.append(r)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("item", help="'insertion_deletion' or 'explainer:<name>' (e.g. explainer:rise)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--classes", type=int, default=43)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--maps", type=int, default=4)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--kwargs", default="{}", help="explainer settings as JSON")
    parser.add_argument("--time", action="store_true", help="also time two calls after the memory measurement")
    args = parser.parse_args()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.kwargs).items()}
    res = measure(args.item, args.size, args.width, args.classes, args.batch_size, args.maps, args.steps, kwargs,
                  args.time)
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
