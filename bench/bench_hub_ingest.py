"""Hub ingest from a real Mosquitto broker into SQLite and PostgreSQL.

A publisher process sends ChirpStack v4 `event/up` messages (QoS 1) of real periodic reports
of a virtual fleet (the devices' default report: temperature, power factor, active power and
imported energy of all 12 channels, ~100 bytes) to a private broker; the hub runs as
`cth01 serve` in its own process pinned to one core (taskset) with MQTT ingest, a persistent
session and manual acknowledgement.

1. Sustained throughput: the hub's MQTT session is created first, then N messages are
   published while the hub is down (the broker queues them for the session, as it does during
   a hub restart), then the hub starts and drains them. A Python publisher cannot go much past
   5,000 messages/s on this machine, so publishing live would measure the publisher; draining a
   queue measures the hub. The figure is messages committed per second from the first to the
   last commit; every message must be stored exactly once (zero loss is checked, not assumed).
   Also printed: the hub process's CPU time per uplink while 10-90 % were stored (from
   /proc; other load on the machine does not change it, unlike the rate).
2. Latency at 1,000 uplinks/s: the publisher paces itself and writes the publish time into the
   event's `time`; the hub stores `stored_at` (wall clock when the transaction that stores it
   begins; its commit follows within the same batch) — p50 / p99 of stored_at - time.

Run `.venv/bin/python bench/bench_hub_ingest.py [--quick] [--engine sqlite|postgresql|both]`.
Targets (issue 5): >= 10,000 uplinks/s on one core, zero loss.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hub.broker import PrivateBroker, db_rows, free_port, listening

from bench_metering import machine
from cth01.device import Fleet

T0 = 1_790_000_000
APP = "5f1c0c8e-7d0a-4c1e-9b8a-c7401f1ee7a1"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def reports(devices: int, n: int) -> list[tuple[str, str, float]]:
    """(dev_eui, base64 payload, report time) of `n` periodic reports of a virtual fleet, in
    time order: every device reports once per 10-minute interval, so each device's energy
    counters rise from report to report as a real fleet's do."""
    fleet = Fleet(devices, seed=3)
    fleet.start(T0)
    out: list[tuple[str, str, float]] = []
    t = T0
    while len(out) < n:
        t += 600
        out += [(f.dev_eui, base64.b64encode(f.payload).decode(), float(f.time))
                for f in fleet.tick(t) if f.kind == "periodic"]
    return out[:n]


def event(eui: str, data: str, f_cnt: int, t: float) -> bytes:
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
    return json.dumps({
        "deduplicationId": str(uuid.uuid4()), "time": iso,
        "deviceInfo": {"tenantId": "t", "applicationId": APP, "devEui": eui,
                       "deviceName": f"cth01-{eui}"},
        "devAddr": "01020304", "adr": True, "dr": 5, "fCnt": f_cnt, "fPort": 85,
        "confirmed": False, "data": data}, separators=(",", ":")).encode()


def publish(port: int, frames: list[tuple[str, str, float]], n: int, rate: float | None,
            done: mp.Event) -> None:
    """The publisher process: n events, as fast as possible or at `rate` per second. Paced
    events carry their publish time (for latency); queued ones their report time."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    topics = [f"application/{APP}/device/{eui}/event/up" for eui, _, _ in frames]
    bodies = None if rate else [event(eui, data, i, t) for i, (eui, data, t) in
                                enumerate(frames[:n])]
    t0 = time.time()
    infos = []
    for i in range(n):
        if rate is not None:
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        k = i % len(frames)
        body = event(*frames[k][:2], i, time.time()) if bodies is None else bodies[i]
        infos.append(client.publish(topics[k], body, qos=1))
        if len(infos) % 20_000 == 0:  # paho has 65,535 message ids: let the broker catch up
            for info in infos[-20_000:]:
                info.wait_for_publish(60)
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    done.set()


def create_session(port: int, client_id: str) -> None:
    """What the hub's first connection does: a persistent session subscribed at QoS 1."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe("application/+/device/+/event/+", qos=1)[1]
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()


def start_hub(db: str, broker_port: int, http_port: int, log: Path, client_id: str
              ) -> subprocess.Popen:
    env = {**os.environ, "CTH01_LOG_LEVEL": "warning", "OPENBLAS_NUM_THREADS": "1"}
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "cth01", "serve", "--db", db,
           "--mqtt-url", f"mqtt://127.0.0.1:{broker_port}", "--port", str(http_port),
           "--no-backfill", "--mqtt-client-id", client_id]
    hub = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    deadline = time.time() + 30
    while not listening(http_port):
        if time.time() > deadline or hub.poll() is not None:
            raise RuntimeError(f"hub did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # MQTT subscription
    return hub


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def new_db(engine: str, workdir: Path, tag: str) -> tuple[str, callable]:
    if engine == "sqlite":
        return str(workdir / f"{tag}.db"), lambda: None
    import psycopg
    name = f"cth01_bench_{tag}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def run_case(engine: str, broker: PrivateBroker, frames: list, n: int, rate: float | None,
             workdir: Path) -> dict:
    db, drop = new_db(engine, workdir, "rate" if rate else "max")
    http_port = free_port()
    client_id = f"bench-hub-{uuid.uuid4().hex[:8]}"
    done = mp.Event()
    pub = mp.Process(target=publish, args=(broker.port, frames, n, rate, done))
    if rate is None:  # queue everything for the hub's session, then start the hub
        create_session(broker.port, client_id)
        pub.start()
        pub.join(600)
    hub = start_hub(db, broker.port, http_port, workdir / f"hub-{engine}.log", client_id)
    try:
        t_start = time.time()
        if rate is not None:
            pub.start()
        stored = 0
        deadline = time.time() + 60 + n / 500
        samples = []  # (stored, the hub's CPU seconds) every 0.25 s
        while time.time() < deadline:
            stored = db_rows(db, "SELECT count(*) FROM uplink")[0][0]
            samples.append((stored, cpu_s(hub.pid)))
            if stored >= n:
                break
            time.sleep(0.25)
        # the hub's CPU per uplink between 10 % and 90 % stored (no start-up, no idle tail)
        a = next(x for x in samples if x[0] >= 0.1 * n)
        b = next(x for x in samples if x[0] >= 0.9 * n)
        cpu_us = 1e6 * (b[1] - a[1]) / max(1, b[0] - a[0])
        if pub.is_alive():
            pub.join(60)
        rows = db_rows(db, "SELECT min(stored_at), max(stored_at), count(*), "
                         "count(DISTINCT dedup_key) FROM uplink")[0]
        lat = sorted(r[0] for r in db_rows(db, "SELECT stored_at - received_at FROM uplink"))
        first, last, total, distinct = rows
        readings, resets = db_rows(db, "SELECT (SELECT count(*) FROM reading), "
                                       "(SELECT count(*) FROM energy_reset)")[0]
        return {"engine": engine, "n": n, "stored": total, "distinct": distinct,
                "readings": readings, "resets": resets,
                "lost": n - distinct, "wall_s": time.time() - t_start,
                "cpu_us": cpu_us,
                "rate": (total - 1) / (last - first) if last and last > first else 0.0,
                "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None}
    finally:
        hub.terminate()
        hub.wait(30)
        drop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    args = ap.parse_args()
    print(machine())
    n_max = 30_000 if args.quick else 100_000
    n_rate = 5_000 if args.quick else 20_000
    frames = reports(500, n_max)
    print(f"frames: {len(frames):,} periodic reports of 500 devices in time order, "
          f"{sum(len(base64.b64decode(d)) for _, d, _ in frames) / len(frames):.0f} bytes mean")
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = PrivateBroker(workdir / "broker").start()
        try:
            for engine in engines:
                r = run_case(engine, broker, frames, n_max, None, workdir)
                print(f"{engine:10s} sustained: {r['stored']:,} of {r['n']:,} stored "
                      f"(lost {r['lost']}), {r['rate']:,.0f} uplinks/s committed; "
                      f"{r['readings']:,} readings, {r['resets']} counter resets; hub CPU "
                      f"{r['cpu_us']:.0f} µs per uplink (all on one core: "
                      f"{1e6 / r['cpu_us']:,.0f}/s)")
                r = run_case(engine, broker, frames, n_rate, 1000.0, workdir)
                print(f"{engine:10s} at 1,000/s: {r['stored']:,} of {r['n']:,} stored "
                      f"(lost {r['lost']}), publish->stored p50 {r['p50_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
