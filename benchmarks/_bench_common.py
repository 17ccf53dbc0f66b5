"""Shared helpers of the tfagg benchmarks: timers, the model's raw throughput bound, peak RSS, machine.

Every benchmark compares tfagg against the *model's own* throughput on this machine: a traced
function running the model (forward, or forward + input gradient of one class logit) on one
fixed full batch of random images. That is the speed no explainer or metric can beat per model
pass, so ``ratio = bound time / tfagg time`` for the same number of passes measures the cost of
everything tfagg does around the model (sampling, masking, packing, Python, padding).

The machine may be shared with other jobs, so measurements are *paired*: each round times the
tfagg call and, next to it (alternately after and before), the bound for the same number of
passes; ratios are taken per round and their median reported (both sides saw similar load).
"""
from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import tfagg  # noqa: F401,E402  (TensorFlow set-up -- oneDNN -- before its first import)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:  # optional: finer RSS sampling
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------
def timed(fn):
    """``(wall seconds, process CPU seconds)`` of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def paired_summary(own, bound, work: float) -> dict:
    """Summary of paired rounds.

    ``own`` and ``bound`` are ``(rounds, 2)`` arrays of (wall, cpu) seconds of the tfagg call and
    of the bound for the same passes; ``work`` is the number of items (images, curve pairs) of
    one call. ``ratio`` is the median per-round wall-clock ratio bound / own (the headline
    number), ``ratio_fastest`` the ratio of each side's fastest round, ``ratio_cpu`` the median
    per-round ratio of process CPU time.
    """
    own, bound = np.asarray(own, float), np.asarray(bound, float)
    return {
        "rounds": int(len(own)),
        "seconds_per_call": float(np.median(own[:, 0])),
        "items_per_s": float(work / np.median(own[:, 0])),
        "bound_items_per_s": float(work / np.median(bound[:, 0])),
        "ratio": float(np.median(bound[:, 0] / own[:, 0])),
        "ratio_fastest": float(bound[:, 0].min() / own[:, 0].min()),
        "ratio_cpu": float(np.median(bound[:, 1] / own[:, 1])),
    }


def rounds_for(call_seconds: float, budget_seconds: float, minimum: int = 1, maximum: int = 7) -> int:
    """Paired rounds that fit ``budget_seconds`` (each round: the call and its bound)."""
    return int(min(maximum, max(minimum, budget_seconds // max(2 * call_seconds, 1e-3))))


# ----------------------------------------------------------------------------------------------
# the model's raw throughput
# ----------------------------------------------------------------------------------------------
class RawBounds:
    """Traced forward and forward + input-gradient passes on one fixed full batch.

    ``time(kind, passes)`` returns ``(wall, cpu)`` seconds of ``passes`` model passes of
    ``kind`` ("forward" or "gradient"), measured over ``ceil(passes / batch_size)`` full batches
    and scaled to exactly ``passes``. ``rate(kind)`` is the measured images/s.
    """

    def __init__(self, model, size: int, batch_size: int):
        self.batch_size = batch_size
        spec = (tf.TensorSpec([batch_size, size, size, 3]), tf.TensorSpec([batch_size], tf.int32))

        def forward(x, y):
            return tf.gather(model(x, training=False), y, axis=1, batch_dims=1)

        def gradient(x, y):
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = forward(x, y)
            return tape.gradient(s, x)

        self._x = tf.random.uniform((batch_size, size, size, 3), seed=0)
        self._y = tf.zeros((batch_size,), tf.int32)
        self._fns = {}
        for name, fn in (("forward", forward), ("gradient", gradient)):
            # functools.partial: a distinct function per instance, so TensorFlow's retracing
            # detector does not pool the traces of several RawBounds (batch sizes) and warn
            traced = tf.function(functools.partial(fn), input_signature=spec)
            traced(self._x, self._y).numpy()  # trace + warm up
            self._fns[name] = traced

    def batches(self, kind: str, num_batches: int):
        """``(wall, cpu)`` seconds of ``num_batches`` full batches."""
        fn, x, y = self._fns[kind], self._x, self._y
        return timed(lambda: [fn(x, y).numpy() for _ in range(num_batches)])

    def time(self, kind: str, passes: float):
        if passes <= 0:
            return 0.0, 0.0
        n = max(1, math.ceil(passes / self.batch_size))
        wall, cpu = self.batches(kind, n)
        scale = passes / (n * self.batch_size)
        return wall * scale, cpu * scale

    def rate(self, kind: str, num_batches: int = 4, rounds: int = 3) -> float:
        """Images/s of ``kind``: median over ``rounds`` of ``num_batches`` full batches."""
        walls = [self.batches(kind, num_batches)[0] for _ in range(rounds)]
        return num_batches * self.batch_size / float(np.median(walls))


def raw_throughput(model, size: int, batch_size: int, num_batches: int = 4, rounds: int = 3):
    """``(RawBounds, {"forward": images/s, "gradient": images/s, ...})`` of ``model``."""
    t0 = time.perf_counter()
    bounds = RawBounds(model, size, batch_size)
    trace_s = time.perf_counter() - t0
    rates = {kind: bounds.rate(kind, num_batches, rounds) for kind in ("forward", "gradient")}
    return bounds, {**rates, "batch_size": batch_size, "image_size": size, "trace_seconds": trace_s,
                    "batches_per_round": num_batches, "rounds": rounds}


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
def _current_rss() -> int:
    """Resident set size of this process in bytes."""
    if psutil is not None:
        return psutil.Process().memory_info().rss
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - non-Linux without psutil
        return _lifetime_peak_rss()


def _lifetime_peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc), so the next baseline RSS is not inflated by
    memory an earlier measurement freed -- otherwise a later measurement could reuse those pages
    without raising RSS and look free."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class PeakRSS:
    """Context manager: peak RSS increase (MB) over the RSS at entry.

    A background thread samples the RSS every ``interval`` seconds (psutil if installed, else
    /proc); the process's lifetime peak (``getrusage``) is used as well whenever it rose during
    the block, which catches spikes between two samples.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.increase_mb = float("nan")
        self.peak_mb = float("nan")

    def __enter__(self):
        release_free_memory()
        self._baseline = _current_rss()
        self._lifetime0 = _lifetime_peak_rss()
        self._peak = self._baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _current_rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, _current_rss())
        lifetime = _lifetime_peak_rss()
        if lifetime > self._lifetime0:
            peak = max(peak, lifetime)
        self.peak_mb = peak / 2**20
        self.increase_mb = (peak - self._baseline) / 2**20
        return False


# ----------------------------------------------------------------------------------------------
# machine description
# ----------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_info() -> dict:
    """CPU model, cores, memory, TensorFlow / Keras versions, oneDNN flag, threads, load."""
    import keras

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    mem_gb = None
    if psutil is not None:
        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tfagg": tfagg.__version__,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "<unset>"),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "rss_sampler": "psutil" if psutil is not None else "/proc + getrusage",
        "load_average_at_start": load_average(),
    }
