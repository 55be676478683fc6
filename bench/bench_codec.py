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

from cth01.protocol import GroupReading, Item, decode, encode_uplink, items
from cth01.protocol.columnar import decode_many
from cth01.protocol.table import COMMANDS

GROUPED = [c for c in COMMANDS if 0x07 <= c.id <= 0x17]


def _grouped(cls: type, field: str, groups: tuple[str, ...], phase: str, rng: random.Random,
             lo: int, hi: int) -> Item:
    out = []
    for g in groups:
        if phase == "single":
            chans = tuple(rng.randint(lo, hi) for _ in range(3))
            out.append(GroupReading(group=g, phase="single", channels=chans))
        else:
            out.append(GroupReading(group=g, phase="three", total=rng.randint(lo, hi)))
    return cls(**{field: tuple(out)})


def periodic_items(rng: random.Random, phase: str) -> list[Item]:
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


DEFAULT_REPORT = {"temperature", "power_factor", "active_power_ab", "active_power_cd",
                  "imported_active_energy_ab", "imported_active_energy_cd"}


def default_report_frame(rng: random.Random) -> bytes:
    """What a device sends with the factory report mask 6c = 0x0099 (temperature, power
    factor, active power, imported active energy), all groups single-phase."""
    return encode_uplink([i for i in periodic_items(rng, "single")
                          if i.command_name in DEFAULT_REPORT])


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


def out_mb(cols: object) -> float:
    """Megabytes of value columns (arrays shared by several columns counted once)."""
    arrays = {id(a): a for a in cols.columns.values()}  # type: ignore[attr-defined]
    return sum(a.nbytes for a in arrays.values()) / 1e6


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, one used; Python "
            f"{platform.python_version()}, numpy {np.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    ap.add_argument("--frames", type=int, default=100_000, help="batch size for decode_many")
    args = ap.parse_args()
    n_pf, rep = (2_000, 3) if args.quick else (20_000, 7)
    n_batch = 10_000 if args.quick else args.frames
    if hasattr(os, "sched_setaffinity"):  # one core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    rng = random.Random(7)
    single, three = periodic_frame(rng, "single"), periodic_frame(rng, "three")
    print(machine())
    print(f"{'measurement':<70} {'frame':>7} {'frames/s':>11}")

    def row(what: str, size: int, rate: float, note: str = "") -> None:
        print(f"{what:<70} {size:>5} B {rate:>11,.0f}{'  ' + note if note else ''}",
              flush=True)

    default = default_report_frame(rng)
    for name, frame in (("single-phase", single), ("three-phase", three),
                        ("default-report (6c=0x0099)", default)):
        for d in ("auto", "firmware"):
            row(f"decode, {name} periodic, dialect={d}", len(frame),
                per_frame(frame, n_pf, rep, dialect=d))
    for name, frame in (("single-phase", single), ("three-phase", three)):
        row(f"decode(dialect=firmware).to_dict(), {name} periodic", len(frame),
            to_dict(frame, n_pf // 2, rep))

    for name, phase in (("single-phase", "single"), ("three-phase", "three")):
        frames = batch(n_batch, phase)
        size = len(frames[0])
        assert len(set(frames)) == n_batch, "frames are not distinct"
        rates = {}
        for d in ("firmware", "auto"):
            t = time.perf_counter()
            cols = decode_many(frames, dialect=d)
            cold = n_batch / (time.perf_counter() - t)
            assert cols.ok.all() and cols.vectorised.all(), (d, cols)
            rates[d] = n_batch / best(lambda d=d, fs=frames: decode_many(fs, dialect=d), rep)
            row(f"decode_many, {n_batch:,} distinct {name} frames, dialect={d}", size,
                rates[d], f"(first call {cold:,.0f}; columns {out_mb(cols):.0f} MB)")
        loop = n_batch / best(lambda fs=frames: [decode(f, dialect="firmware") for f in fs], 2)
        row(f"[decode(f, dialect=firmware) for f in the same {n_batch:,}]", size, loop,
            f"(decode_many is {rates['firmware'] / loop:.0f}x)")


if __name__ == "__main__":
    main()
