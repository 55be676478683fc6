"""Virtual-fleet throughput on one core.

1. Fast load model: a `Fleet` of 1,000 / 10,000 / 20,000 devices (mixed profiles, storage on)
   stepped at 1-second evaluation for 20 simulated minutes after joining: ms per fleet second,
   simulated device-seconds per wall second, real-time factor, memory per device.
2. Waveform fidelity: N devices whose inputs are metered from 8 kHz waveforms every second
   (`cth01.metering.meter_batch`) and fed to the same firmware: how many run in real time.

Run with `.venv/bin/python bench/bench_device.py [--quick]`. Target (issue 4): >= 10,000
devices in real time on one core with the fast model.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

from bench_metering import FS, machine, signals  # noqa: E402
from cth01.device import Fleet  # noqa: E402
from cth01.device.measurements import from_second_arrays  # noqa: E402
from cth01.metering import MeterConfig, meter_batch  # noqa: E402

T0 = 1767225600


def fleet_memory(devices: int) -> tuple[float, Fleet]:
    gc.collect()
    tracemalloc.start()
    fleet = Fleet(devices, seed=1, time_zone_min=60)
    fleet.start(T0)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / devices, fleet


def fast_model(devices: int, seconds: int) -> None:
    per_device, fleet = fleet_memory(devices)
    for t in range(T0, T0 + 120):  # join, basic information
        fleet.tick(t)
    uplinks = 0
    start = time.perf_counter()
    for t in range(T0 + 120, T0 + 120 + seconds):
        uplinks += len(fleet.tick(t))
    wall = time.perf_counter() - start
    ms = wall / seconds * 1000
    print(f"  {devices:>6,} devices: {ms:7.1f} ms per fleet second, "
          f"{devices * seconds / wall:>10,.0f} device-s/s, real time x{1000 / ms:5.1f}, "
          f"{uplinks / seconds:6.1f} uplinks/s, {per_device / 1024:5.1f} KiB per device "
          f"(+ {fleet.memory_bytes / devices / 1024:.1f} KiB arrays and records)")


def waveform(devices: int, seconds: int) -> float:
    fleet = Fleet(devices, seed=1)
    for t in range(T0, T0 + 60):
        fleet.tick(t)
    voltage, current = signals(devices, 1)
    config = MeterConfig.default()
    start = time.perf_counter()
    for k in range(seconds):
        arrays = meter_batch(voltage, current, FS, config)
        fleet.tick(T0 + 60 + k, from_second_arrays(arrays, 0))
    wall = time.perf_counter() - start
    rate = devices * seconds / wall
    print(f"  {devices:>6,} devices: {wall / seconds * 1000:7.1f} ms per second "
          f"-> {rate:,.0f} device-s/s = {int(rate):,} devices in real time")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(machine())
    seconds = 120 if args.quick else 1200
    print(f"fast load model, {seconds} simulated seconds at 1-s evaluation:")
    for n in (1_000, 10_000) if args.quick else (1_000, 10_000, 20_000):
        fast_model(n, seconds)
    print("waveform metering (8 kHz, 15 channels) + firmware:")
    for n in (100, 500) if args.quick else (100, 1_000):
        waveform(n, 5 if args.quick else 20)


if __name__ == "__main__":
    main()
