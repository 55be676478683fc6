"""Hub read queries on both engines: a SQLite file (WAL) and a temporary PostgreSQL database.

1. A year of one device: 52,560 ten-minute readings (one wide `reading` row each: temperature
   and, for all 12 channels, power factor, active power and imported energy — the CTH01's
   default report), then `store.readings(eui, "active_power_w", channel=1, start, end,
   points=1000)` over the whole year, the query behind a Grafana/dashboard year chart.
   Measured twice: rows stored contiguously (the device alone), and the same device
   interleaved with 9 others (as a fleet writes them: one row per device per period, so one
   device's year is scattered over the table, one table page per reading). Target: < 100 ms.
   SQLite's `reading` is a WITHOUT ROWID table (kept in key order, migration 2). PostgreSQL's
   primary-key index INCLUDEs each channel's active power (migration 4), so a power chart is
   read from the index alone once VACUUM (autovacuum) has marked the table's pages
   all-visible; it is measured before and after that VACUUM. On both, the same chart of a
   quantity not in that index (the energy counter) shows what reading the table costs.
2. Monthly energy of 1,000 devices x 12 channels: one month plus two days either side of
   readings for 1,000 devices, then `store.energy(start=month_start, end=month_end)`.
   Hourly readings by default (840,000 rows; `--interval 600` loads the 10-minute density,
   5.04 M rows, which takes minutes): per device it seeks the three readings at each end of
   the month and the three before it, then looks each channel's counter up in them (index
   lookups, not a scan), so the row density hardly matters. Target: < 1 s.
   On the same data: the fleet overview (`reports.overview`: latest power, energy since
   local midnight, completeness of 24 h, status — the dashboard's first page; target < 300 ms),
   and the month's report priced with a time-of-use tariff (`reports.energy_report`): the
   month cut into runs of one band, the counters sought at each cut (no target in the issue;
   a dashboard page, so it should take well under a second).

Rows are written straight into `reading` (executemany on SQLite, COPY on PostgreSQL) with
realistic values: daily load profiles, monotonic energy counters. Every timing is the median
of 7 runs (5 for the energy query) after one warm-up run (the page cache is warm, as it is
for a dashboard). PostgreSQL tables are ANALYZEd after loading (autovacuum does the same a
little later).

Run with `.venv/bin/python bench/bench_hub_query.py [--quick] [--engine sqlite|postgresql]
[--part year|energy] [--interval 600]`.
Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); start it with
`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from bench_metering import machine
from cth01.hub import reports
from cth01.hub.readings import CHANNELS, wide_column
from cth01.hub.store import Store, open_store
from cth01.hub.tariff import parse_tariff

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
YEAR_START = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
MONTH_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
MONTH_END = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
QUANTITIES = ("power_factor_pct", "active_power_w", "imported_active_wh")
COLUMNS = ("temperature_c", *(wide_column(q, ch) for ch in CHANNELS for q in QUANTITIES))
RUNS = 7


# --- data --------------------------------------------------------------------------------------

def device_rows(did: int, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(len(times), 2 + len(COLUMNS)) float array: device_id, ts, then COLUMNS."""
    n, step = len(times), float(times[1] - times[0]) if len(times) > 1 else 600.0
    hour = (times % 86400) / 3600.0
    day_profile = 0.55 + 0.45 * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    rated = rng.uniform(100, 4000, 12)  # W per channel
    noise = rng.lognormal(0, 0.25, (n, 12))
    power = np.round(rated * day_profile[:, None] * noise)
    pf = np.clip(np.round(rng.normal(94, 3, (n, 12))), 50, 100)
    energy = np.round(rng.uniform(0, 5e6, 12) + np.cumsum(power * step / 3600.0, axis=0))
    temperature = np.round(25 + 5 * day_profile + rng.normal(0, 0.5, n), 2)
    out = np.empty((n, 2 + len(COLUMNS)))
    out[:, 0], out[:, 1], out[:, 2] = did, times, temperature
    for k in range(12):
        out[:, 3 + 3 * k], out[:, 4 + 3 * k], out[:, 5 + 3 * k] = pf[:, k], power[:, k], \
            energy[:, k]
    return out


def load(store: Store, blocks: Iterator[np.ndarray]) -> int:
    """Write row blocks into `reading`; returns the number of rows."""
    names = ", ".join(("device_id", "ts", "origin", *COLUMNS))
    rows = 0
    with store.transaction("bench load") as cur:
        if store.engine == "postgresql":
            with cur.copy(f"COPY reading ({names}) FROM STDIN") as copy:
                for block in blocks:
                    lines = []
                    for r in block.tolist():
                        lines.append(f"{int(r[0])}\t{int(r[1])}\tlive\t"
                                     + "\t".join(map(repr, r[2:])) + "\n")
                    copy.write("".join(lines))
                    rows += len(block)
        else:
            sql = (f"INSERT INTO reading ({names}) VALUES (?, ?, 'live'"
                   f"{', ?' * len(COLUMNS)})")
            for block in blocks:
                cur.executemany(sql, [(int(r[0]), int(r[1]), *r[2:]) for r in block.tolist()])
                rows += len(block)
    if store.engine == "postgresql":
        with store.transaction("analyze") as cur:
            cur.execute("ANALYZE")
    return rows


def period_major(per_device: list[np.ndarray], chunk: int = 500) -> Iterator[np.ndarray]:
    """Rows in the order a fleet writes them: every device's reading of a period, then the
    next period."""
    for k in range(0, len(per_device[0]), chunk):
        yield np.stack([a[k:k + chunk] for a in per_device], axis=1).reshape(
            -1, 2 + len(COLUMNS))


def vacuum(store: Store) -> float:
    """PostgreSQL: VACUUM `reading`, as autovacuum does once 1 % of it is new (schema migration
    4), marking its pages all-visible: only then is a power chart read from the index alone
    (the index INCLUDEs each channel's active power). Returns seconds."""
    import psycopg

    t = time.perf_counter()
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE reading")
    return time.perf_counter() - t


def add_devices(store: Store, n: int, first: int = 0) -> list[tuple[int, str]]:
    euis = [f"24e124{first + k:010x}" for k in range(n)]
    with store.transaction("bench devices") as cur:
        cur.executemany("INSERT INTO device (dev_eui, first_seen) VALUES (?, ?)".replace(
                            "?", store.placeholder),
                        [(e, float(YEAR_START)) for e in euis])
    ids = dict(store.query("SELECT dev_eui, id FROM device"))
    return [(int(ids[e]), e) for e in euis]


# --- engines -----------------------------------------------------------------------------------

@contextmanager
def opened(engine: str) -> Iterator[Store]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(str(Path(tmp) / "bench.db"))
            try:
                yield store
            finally:
                store.close()
        return
    import psycopg

    name = f"cth01_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL is not reachable ({exc}); start it with: pg_ctlcluster "
                         f"--skip-systemctl-redirect $(ls /etc/postgresql) main start") from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    store = open_store(f"{PG_SERVER}/{name}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(fn: Callable[[], object], runs: int = RUNS) -> tuple[float, float, object]:
    """(median ms, min ms, last result) after one warm-up call."""
    out = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times), out


def verdict(ms: float, target_ms: float) -> str:
    return f"target < {target_ms:,.0f} ms: {'OK' if ms < target_ms else 'MISSED'}"


# --- the two measurements ----------------------------------------------------------------------

def year_of_one_device(engine: str, neighbours: int, days: int) -> None:
    times = np.arange(YEAR_START, YEAR_START + days * 86400, 600, dtype=np.int64)
    with opened(engine) as store:
        devices = add_devices(store, 1 + neighbours)
        rng = np.random.default_rng(1)
        t = time.perf_counter()
        rows = load(store, period_major([device_rows(d, times, rng) for d, _ in devices]))
        load_s = time.perf_counter() - t
        eui = devices[0][1]
        start, end = int(times[0]), int(times[-1])

        def chart(quantity: str) -> Callable[[], list[dict]]:
            return lambda: store.readings(eui, quantity, channel=1, start=start, end=end,
                                          points=1000)

        layout = "alone" if neighbours == 0 else f"interleaved with {neighbours} devices"
        print(f"  {len(times):,} readings of one device ({layout}; {rows:,} rows loaded in "
              f"{load_s:.1f} s), readings(points=1000) median (min):")
        cases = [("active power", "active_power_w", False),
                 ("energy counter (read from the table)", "imported_active_wh", False)]
        if engine == "postgresql":  # index only once VACUUM has marked the pages all-visible
            cases[:1] = [("active power, rows not yet vacuumed", "active_power_w", False),
                         ("active power", "active_power_w", True)]
        charts: dict[str, list[dict]] = {}
        for label, quantity, vacuum_first in cases:
            if vacuum_first:
                vacuum(store)
            med, best, out = timed(chart(quantity))
            assert 900 <= len(out) <= 1000 and sum(p["count"] for p in out) == len(times)
            assert charts.setdefault(quantity, out) == out  # the same before and after VACUUM
            print(f"    {label:<38} {med:6.1f} ms ({best:.1f})  [{verdict(med, 100)}]")


def monthly_energy(engine: str, devices_n: int, interval: int) -> None:
    times = np.arange(MONTH_START - 2 * 86400, MONTH_END + 2 * 86400, interval, dtype=np.int64)
    with opened(engine) as store:
        devices = add_devices(store, devices_n)
        rng = np.random.default_rng(2)
        per_device = [device_rows(d, times, rng) for d, _ in devices]
        # device 0, channel 1: its counter in the last reading before the end and the start
        col = 2 + COLUMNS.index(wide_column("imported_active_wh", 1))
        want = float(per_device[0][times < MONTH_END, col][-1]
                     - per_device[0][times < MONTH_START, col][-1])
        t = time.perf_counter()
        rows = load(store, period_major(per_device))
        load_s = time.perf_counter() - t
        del per_device
        med, best, out = timed(lambda: store.energy(start=MONTH_START, end=MONTH_END), runs=5)
        assert len(out) == devices_n * 12, len(out)
        first = next(r for r in out if r["dev_eui"] == devices[0][1] and r["channel"] == 1)
        assert first["energy"] == want, (first, want)
        print(f"  {devices_n:,} devices x 12 channels, {interval // 60}-min readings "
              f"({rows:,} rows loaded in {load_s:.1f} s): energy(month) median {med:7.1f} ms "
              f"(min {best:.1f}) -> {len(out):,} rows  [{verdict(med, 1000)}]")
        zone = ZoneInfo("Europe/Berlin")
        med, best, fleet = timed(lambda: reports.overview(store, now=MONTH_END - 6 * 3600,
                                                          zone=zone), runs=5)
        assert len(fleet) == devices_n and fleet[0]["total_power_w"] is not None
        print(f"    overview (power, today's energy, 24 h completeness, status) median "
              f"{med:7.1f} ms (min {best:.1f})  [{verdict(med, 300)}]")
        tou = parse_tariff({"name": "bench", "currency": "EUR", "kind": "tou",
                            "price_per_kwh": 0.2, "bands": [
                                {"name": "peak", "price_per_kwh": 0.3, "days": [0, 1, 2, 3, 4],
                                 "start": "08:00", "end": "20:00"}]})
        med, best, report = timed(lambda: reports.energy_report(
            store, year=2026, month=1, zone=ZoneInfo("UTC"), tariff=tou), runs=3)
        assert len(report["channels"]) == devices_n * 12
        first = next(r for r in report["channels"] if r["dev_eui"] == devices[0][1])
        assert abs(sum(first["bands"].values()) - want / 1000) < 1e-6, first
        print(f"    monthly report, time-of-use bands (counters at each band change) median "
              f"{med:7.1f} ms (min {best:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="90 days, 100 devices")
    ap.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--interval", type=int, default=3600,
                    help="seconds between readings of the 1,000-device month (600 or 3600)")
    ap.add_argument("--part", choices=("year", "energy", "both"), default="both")
    args = ap.parse_args()
    print(machine())
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    days, devices_n = (90, 100) if args.quick else (365, 1000)
    for engine in engines:
        print(f"{engine}:")
        if args.part != "energy":
            year_of_one_device(engine, 0, days)
            year_of_one_device(engine, 9, days)
        if args.part != "year":
            monthly_energy(engine, devices_n, args.interval)


if __name__ == "__main__":
    main()
