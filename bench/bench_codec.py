"""Codec throughput on one core: per-frame `decode` and columnar `decode_many`.

Run with `make bench` (or `.venv/bin/python bench/bench_codec.py [--quick]`). Frames are built
with `encode_uplink` from item classes, so they are valid by construction; the 100,000-frame
batch combines independently drawn item encodings, so every frame carries distinct values.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from collections.abc import Callable

import numpy as np

from cth01.protocol import GroupReading, decode, encode_uplink, items
from cth01.protocol.columnar import decode_many
from cth01.protocol.table import COMMANDS

GROUPED = [c for c in COMMANDS if 0x07 <= c.id <= 0x17]


def _grouped(cls: type, field: str, groups: tuple[str, ...], phase: str, rng: random.Random,
             lo: int, hi: int) -> items.Item:
    out = []
    for g in groups:
        if phase == "single":
            chans = tuple(rng.randint(lo, hi) for _ in range(3))
            out.append(GroupReading(group=g, phase="single", channels=chans))
        else:
            out.append(GroupReading(group=g, phase="three", total=rng.randint(lo, hi)))
    return cls(**{field: tuple(out)})


def periodic_items(rng: random.Random, phase: str) -> list:
    """Items 01-06 and every grouped item 07-17, random in-range values."""
    def pct(k: int) -> tuple[float, ...]:
        return tuple(rng.randint(0, 10000) / 100 for _ in range(k))

    out = [
        items.Temperature(temperature_c=rng.randint(-2000, 10000) / 100),
        items.VoltageUnbalance(unbalance_pct=pct(1)[0]),
        items.Thdi(thdi_pct=pct(12)),
        items.Thdv(thdv_pct=pct(3)),
        items.Current(current_a=tuple(rng.randint(0, 400000) / 100 for _ in range(12))),
        items.Voltage(voltage_v=tuple(rng.randint(0, 50000) / 100 for _ in range(3))),
    ]
    for cmd in GROUPED:
        f = cmd.fields[0]
        cls = getattr(items, "".join(p.title() for p in cmd.name.split("_")))
        lo, hi = {"u8": (0, 100), "s32": (-10**6, 10**6), "u32": (0, 10**9)}[f.wire]
        out.append(_grouped(cls, f.name, f.groups, phase, rng, lo, hi))
    return out


def periodic_frame(rng: random.Random, phase: str) -> bytes:
    return encode_uplink(periodic_items(rng, phase))


def batch(n: int, phase: str, seed: int = 1, variants: int = 64) -> list[bytes]:
    """n frames of one layout: each item drawn from `variants` independent encodings."""
    rng = random.Random(seed)
    per_item = [[encode_uplink([it]) for it in periodic_items(rng, phase)]
                for _ in range(variants)]
    columns = list(zip(*per_item, strict=True))  # item -> its variants
    pick = np.random.default_rng(seed).integers(0, variants, size=(n, len(columns))).tolist()
    return [b"".join([columns[j][k] for j, k in enumerate(row)]) for row in pick]


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_frame(frame: bytes, n: int, repeat: int, **kw: object) -> float:
    def run() -> None:
        for _ in range(n):
            decode(frame, **kw)
    return n / best(run, repeat)


def to_dict(frame: bytes, n: int, repeat: int) -> float:
    def run() -> None:
        for _ in range(n):
            decode(frame, dialect="firmware").to_dict()
    return n / best(run, repeat)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    ap.add_argument("--frames", type=int, default=100_000, help="batch size for decode_many")
    args = ap.parse_args()
    n_pf, rep = (2_000, 3) if args.quick else (20_000, 5)
    n_batch = 10_000 if args.quick else args.frames
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    rng = random.Random(7)
    single, three = periodic_frame(rng, "single"), periodic_frame(rng, "three")
    rows: list[tuple[str, str, float]] = []

    def add(what: str, size: str, rate: float) -> None:
        rows.append((what, size, rate))
        print(f"  {what:<58} {size:>9} {rate:>14,.0f} frames/s", flush=True)

    print(machine())
    for name, frame in (("single-phase", single), ("three-phase", three)):
        for d in ("auto", "firmware"):
            add(f"decode, {name} periodic, dialect={d}", f"{len(frame)} B",
                per_frame(frame, n_pf, rep, dialect=d))
    add("decode(dialect=firmware).to_dict(), single-phase periodic", f"{len(single)} B",
        to_dict(single, n_pf // 2, rep))
    add("decode(dialect=firmware).to_dict(), three-phase periodic", f"{len(three)} B",
        to_dict(three, n_pf // 2, rep))

    for name, phase in (("single-phase", "single"), ("three-phase", "three")):
        frames = batch(n_batch, phase)
        distinct = len(set(frames))
        size = f"{len(frames[0])} B"
        for d in ("firmware", "auto"):
            cols = decode_many(frames, dialect=d)
            assert cols.ok.all() and cols.vectorised.any(), (d, cols)
            rate = n_batch / best(lambda d=d: decode_many(frames, dialect=d), rep)
            add(f"decode_many, {n_batch:,} {name} frames, dialect={d}", size, rate)
        loop = n_batch / best(lambda: [decode(f, dialect="firmware") for f in frames],
                              max(1, rep // 2))
        add(f"loop over decode, same {n_batch:,} {name} frames, firmware", size, loop)
        print(f"  ({distinct:,} distinct frames; decode_many/loop = "
              f"{rows[-3][2] / loop:.1f}x firmware)", flush=True)


if __name__ == "__main__":
    main()
