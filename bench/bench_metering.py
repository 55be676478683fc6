"""Metering throughput on one core: device-seconds per second of `meter_batch`, vectorised
across 1, 100 and 1,000 devices, and the memory it needs.

Run with `.venv/bin/python bench/bench_metering.py [--quick]`. Every device gets its own
second of 15 channels at 8 kHz: 230 V mains with 3 % 5th harmonic and a random frequency in
49.5-50.5 Hz, mildly unbalanced, and 12 load currents with random size, phase angle and 3rd /
5th harmonics. The target is one device-second in ≤ 1 ms, i.e. ≥ 1,000 device-seconds/s.
"""

from __future__ import annotations

import os

# one core: BLAS must not start threads of its own (set before numpy is imported)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from cth01.metering import Meter, MeterConfig, meter_batch  # noqa: E402

FS = 8000


def signals(devices: int, seconds: int = 1, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """voltage (D, 3, N), current (D, 12, N) in V and A."""
    rng = np.random.default_rng(seed)
    n = seconds * FS
    t = np.arange(n) / FS
    f = rng.uniform(49.5, 50.5, (devices, 1, 1))
    w = 2 * np.pi * f * t  # (D, 1, N)
    shift = 2 * np.pi / 3 * np.arange(3)[None, :, None]
    amp_v = 230 * np.sqrt(2) * rng.uniform(0.97, 1.03, (devices, 3, 1))
    voltage = amp_v * (np.cos(w - shift) + 0.03 * np.cos(5 * (w - shift)))
    amp_i = np.sqrt(2) * rng.uniform(1, 90, (devices, 12, 1))
    phase = rng.uniform(-np.pi / 2, np.pi / 2, (devices, 12, 1))
    k = 2 * np.pi / 3 * (np.arange(12) % 3)[None, :, None]
    h3 = rng.uniform(0, 0.3, (devices, 12, 1))
    h5 = rng.uniform(0, 0.2, (devices, 12, 1))
    current = amp_i * (np.cos(w - k - phase) + h3 * np.cos(3 * (w - k)) + h5 * np.cos(5 * (w - k)))
    return voltage, current


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_traced_mb(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, up to 100 devices")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(machine())
    print(f"sample rate {FS} Hz, 15 channels, one core; best of N runs\n")
    config = MeterConfig.default()
    rows = []
    sizes = (1, 100) if args.quick else (1, 100, 1000)
    for devices in sizes:
        v, i = signals(devices)
        meter_batch(v, i, FS, config)  # warm up (plans, first-touch of the working memory)
        repeat = {1: 200, 100: 7, 1000: 3}[devices] // (4 if args.quick else 1)
        dt = best_time(lambda v=v, i=i: meter_batch(v, i, FS, config), max(1, repeat))
        peak = peak_traced_mb(lambda v=v, i=i: meter_batch(v, i, FS, config))
        rows.append((f"meter_batch, {devices:,} device(s) x 1 s", devices, dt, peak,
                     (v.nbytes + i.nbytes) / 2**20))

    # the streaming single-device path: one minute fed in 1-second chunks
    v, i = signals(1, seconds=60, seed=3)

    def stream() -> None:
        m = Meter(config, FS)
        for s in range(60):
            m.feed((v[0, :, s * FS:(s + 1) * FS], i[0, :, s * FS:(s + 1) * FS]))

    stream()
    dt = best_time(stream, 3 if args.quick else 7)
    rows.append(("Meter.feed, 1 device, 60 x 1 s chunks", 60, dt, peak_traced_mb(stream),
                 (v.nbytes + i.nbytes) / 2**20))

    print(f"{'measurement':<42} {'device-s/s':>11} {'µs/device-s':>12} {'peak MB':>8} "
          f"{'input MB':>9}")
    for name, count, dt, peak, inp in rows:
        print(f"{name:<42} {count / dt:>11,.0f} {dt / count * 1e6:>12,.0f} {peak:>8.1f} "
              f"{inp:>9.1f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak MB = tracemalloc peak of one call beyond its inputs; process max RSS "
          f"{rss:,.0f} MB")


if __name__ == "__main__":
    main()
