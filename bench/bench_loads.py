"""Load-model throughput on one core: milliseconds per simulated second of `LoadModel.second`
for 1,000, 10,000 and 50,000 devices of mixed profiles, device-seconds per wall second, and
the model's state per device.

Run with `.venv/bin/python bench/bench_loads.py [--quick]`. The fleet cycles through the five
profiles with UTC offsets of 0-3 h; the clock starts on a Wednesday at 10:00 UTC (offices
working, PV producing, workshops on shift) and advances one second per call. The target is
10,000 devices in well under 10 ms per simulated second. "with events" repeats the 10,000
device run with 40 scripted events active (overloads, sags, harmonics, temperature, blackouts
on 1 % of the fleet each).
"""

from __future__ import annotations

import os

# one core: BLAS must not start threads of its own (set before numpy is imported)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench_metering import machine  # noqa: E402
from cth01.device.loads import PROFILES, LoadModel  # noqa: E402

T0 = 1_718_186_400  # 2024-06-12 10:00 UTC, a Wednesday


def fleet(devices: int, seed: int = 1) -> LoadModel:
    profiles = [PROFILES[i % len(PROFILES)] for i in range(devices)]
    offsets = [3600 * (i % 4) for i in range(devices)]
    return LoadModel(profiles, seed=seed, utc_offset_s=offsets)


def add_events(model: LoadModel, start: int, end: int) -> None:
    rng = np.random.default_rng(5)
    n = model.devices
    for _ in range(8):
        pick = rng.choice(n, n // 100, replace=False)
        model.overload(pick, [1, 2, 3], 1.8, start, end)
        model.voltage(rng.choice(n, n // 100, replace=False), 0.85, start, end, phases=(2,))
        model.harmonics(rng.choice(n, n // 100, replace=False), 40.0, start, end)
        model.temperature(rng.choice(n, n // 100, replace=False), 15.0, start, end)
        model.blackout(rng.choice(n, n // 100, replace=False), start, end)


def run(model: LoadModel, seconds: int, t0: int = T0) -> list[float]:
    for k in range(5):  # warm up: allocator, caches, the noise coefficients
        model.second(t0 - 5 + k)
    times = []
    for k in range(seconds):
        s = time.perf_counter()
        model.second(t0 + k)
        times.append(time.perf_counter() - s)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer simulated seconds")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(machine())
    print("one core; LoadModel.second() per simulated second, median and best of N calls\n")
    print(f"{'fleet':<26} {'N':>5} {'median ms':>10} {'best ms':>8} {'device-s/s':>12} "
          f"{'state B/device':>15} {'build s':>8}")
    cases: list[tuple[str, int, bool]] = [("mixed", 1_000, False), ("mixed", 10_000, False),
                                          ("mixed", 50_000, False), ("with events", 10_000, True)]
    for name, devices, events in cases:
        s = time.perf_counter()
        model = fleet(devices)
        build = time.perf_counter() - s
        if events:
            add_events(model, T0 - 100, T0 + 100_000)
        n = {1_000: 1000, 10_000: 300, 50_000: 60}[devices] // (5 if args.quick else 1)
        times = run(model, n)
        med, best = statistics.median(times), min(times)
        print(f"{f'{name}, {devices:,} devices':<26} {n:>5} {med * 1e3:>10.2f} "
              f"{best * 1e3:>8.2f} {devices / med:>12,.0f} {model.nbytes / devices:>15,.0f} "
              f"{build:>8.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nstate = numpy arrays the model keeps (layout, noise and filter state, keys); "
          f"process max RSS {rss:,.0f} MB")


if __name__ == "__main__":
    main()
