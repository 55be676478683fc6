"""End to end: virtual fleet -> MQTT (ChirpStack v4 JSON) -> `cth01 serve` -> store -> API,
against a real Mosquitto (a private instance, so it can be stopped and restarted) and the real
PostgreSQL; the hub runs as its own process so it can be killed with SIGKILL mid-stream.
Backfill after an outage runs in-process with the virtual fleet driven step by step."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cth01.device import Fleet
from cth01.hub.config import HubConfig
from cth01.hub.envelope import Envelope, uplink_key
from cth01.hub.service import Hub
from cth01.hub.store import open_store
from cth01.protocol import items
from cth01.simulate.runner import run
from cth01.simulate.sinks import ChirpStackMqttSink

from .broker import PrivateBroker, db_rows, free_port, listening

APP = "5f1c0c8e-7d0a-4c1e-9b8a-c7401f1ee7a1"
TOKEN = "e2e-admin-token-0123456789"
T0 = 1_790_000_000


@pytest.fixture
def broker(tmp_path: Path):
    b = PrivateBroker(tmp_path / "broker").start()
    yield b
    b.stop()


class HubProcess:
    """`python -m cth01 serve` against a broker and a database, restartable."""

    def __init__(self, db: str, broker: PrivateBroker, log: Path) -> None:
        self.db, self.broker, self.log = db, broker, log
        self.port = free_port()
        self.client_id = f"e2e-hub-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        cmd = [sys.executable, "-m", "cth01", "serve", "--db", self.db, "--mqtt-url",
               self.broker.url, "--port", str(self.port), "--no-backfill", "--mqtt-client-id",
               self.client_id, "--admin-token", TOKEN]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                        stderr=self.log.open("ab"))
        deadline = time.monotonic() + 30
        while not listening(self.port):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "hub did not start"
            time.sleep(0.1)
        self.wait_connected()
        return self

    def wait_connected(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "mqtt_connected" in self.log.read_text():
                return
            time.sleep(0.1)
        raise AssertionError("hub did not connect to the broker")

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)

    def api(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def wait_for(predicate, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def uplink_event(eui: str, payload: bytes, f_cnt: int, t: float) -> bytes:
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"
    return json.dumps({"deduplicationId": str(uuid.uuid4()), "time": iso,
                       "deviceInfo": {"applicationId": APP, "devEui": eui, "tenantId": "t"},
                       "fCnt": f_cnt, "fPort": 85,
                       "data": base64.b64encode(payload).decode()}).encode()


def report_frames(devices: int, seconds: int) -> list:
    fleet = Fleet(devices, seed=5)
    frames = list(fleet.start(T0))
    for s in range(1, seconds):
        frames += fleet.tick(T0 + s)
    return frames


class Publisher:
    """A paho publisher of pre-built ChirpStack events (QoS 1, waits for every PUBACK)."""

    def __init__(self, broker: PrivateBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"e2e-pub-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, messages: list[tuple[str, bytes]], pause_s: float = 0.0) -> None:
        infos = []
        for topic, body in messages:
            infos.append(self.client.publish(topic, body, qos=1))
            if pause_s:
                time.sleep(pause_s)
        for info in infos:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def events(frames: list, start_cnt: int = 0) -> list[tuple[str, bytes]]:
    return [(f"application/{APP}/device/{f.dev_eui}/event/up",
             uplink_event(f.dev_eui, f.payload, start_cnt + i, float(f.time)))
            for i, f in enumerate(frames)]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_fleet_through_chirpstack_mqtt_into_the_store_and_api(engine, broker, tmp_path,
                                                              request):
    db = str(tmp_path / "hub.db") if engine == "sqlite" else request.getfixturevalue("pg_url")
    hub = HubProcess(db, broker, tmp_path / "hub.log").start()
    try:
        fleet = Fleet(10, seed=2)
        sink = ChirpStackMqttSink("127.0.0.1", broker.port, log=lambda m: None)
        stats = run(fleet, sink, start=T0, duration_s=2 * 3600, speed=None, log=lambda m: None)
        assert sink.flush(30)
        sink.close()
        wait_for(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] >= stats.uplinks,
                 what="every uplink stored")
        assert db_rows(db, "SELECT count(*) FROM uplink")[0][0] == stats.uplinks
        health = hub.api("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        devices = hub.api("/api/devices").json()
        assert len(devices) == 10 and {d["source"] for d in devices} == {"chirpstack"}
        assert all(d["network"]["applicationId"] == sink.application_id for d in devices)
        eui = devices[0]["dev_eui"]
        # one reading row per periodic report (a split report is one reading)
        periodic = stats.uplinks_by_kind["periodic"]
        readings = db_rows(db, "SELECT count(*) FROM reading")[0][0]
        assert 10 * 11 <= readings <= periodic
        r = hub.api(f"/api/devices/{eui}/readings?quantity=active_power_w&channel=1"
                    f"&start={T0}&end={T0 + 7200}&points=50").json()
        assert r["points"] and all(p["count"] >= 1 for p in r["points"])
    finally:
        hub.stop()


def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(broker, tmp_path):
    db = str(tmp_path / "hub.db")
    hub = HubProcess(db, broker, tmp_path / "hub.log").start()
    frames = [f for f in report_frames(30, 4 * 3600) if f.f_port == 85]
    messages = events(frames)
    pub = Publisher(broker)
    sender = threading.Thread(target=pub.send, args=(messages, 0.0005))
    sender.start()
    wait_for(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] > len(messages) // 4,
             what="a quarter stored")
    hub.kill9()
    stored_at_kill = db_rows(db, "SELECT count(*) FROM uplink")[0][0]
    assert 0 < stored_at_kill < len(messages)
    sender.join(120)
    hub.start()  # same client id: the broker redelivers what was not acknowledged
    try:
        wait_for(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] >= len(messages),
                 what="all stored after the restart")
        time.sleep(1.0)
        total, distinct = db_rows(db, "SELECT count(*), count(DISTINCT dedup_key) "
                                      "FROM uplink")[0]
        assert total == distinct == len(messages)
        # the derived readings are not doubled either
        dup = db_rows(db, "SELECT count(*) FROM (SELECT device_id, ts FROM reading GROUP BY "
                          "device_id, ts HAVING count(*) > 1) x")[0][0]
        assert dup == 0
    finally:
        hub.stop()
        pub.close()


def test_broker_restart_the_hub_reconnects_and_resumes(broker, tmp_path):
    db = str(tmp_path / "hub.db")
    hub = HubProcess(db, broker, tmp_path / "hub.log").start()
    frames = [f for f in report_frames(10, 3 * 3600) if f.f_port == 85]
    half = len(frames) // 2
    try:
        pub = Publisher(broker)
        pub.send(events(frames[:half]))
        pub.close()
        wait_for(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] >= half,
                 what="first half stored")
        broker.stop()
        time.sleep(1.0)
        broker.start()
        pub = Publisher(broker)
        pub.send(events(frames[half:], start_cnt=half))
        pub.close()
        wait_for(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] >= len(frames),
                 timeout_s=90, what="second half stored after the broker restart")
        assert hub.process is not None and hub.process.poll() is None
        assert hub.log.read_text().count("mqtt_connected") >= 2
    finally:
        hub.stop()


def test_malformed_messages_become_dead_letters_and_ingest_goes_on(broker, tmp_path):
    db = str(tmp_path / "hub.db")
    hub = HubProcess(db, broker, tmp_path / "hub.log").start()
    eui = "24e1240000000001"
    topic = f"application/{APP}/device/{eui}/event/up"
    good = next(f for f in report_frames(1, 3600) if f.kind == "periodic")
    bad_b64 = json.loads(uplink_event(eui, b"\x01", 1, T0))
    bad_b64["data"] = "%%%not base64%%%"
    try:
        pub = Publisher(broker)
        pub.send([(topic, b"{not json"),
                  (topic, json.dumps(bad_b64).encode()),
                  (topic, uplink_event(eui, b"\x99\x98\x97", 2, T0 + 1)),
                  (topic, json.dumps({"deviceInfo": {"devEui": "xyz"}}).encode()),
                  (f"application/{APP}/device/{eui}/event/unknownthing",
                   uplink_event(eui, b"", 3, T0 + 2)),
                  # a frame counter no database column holds: refused, never a stalled writer
                  (topic, uplink_event(eui, good.payload, 2**70, T0 + 3)),
                  (topic, uplink_event(eui, good.payload, 4, T0 + 4))])
        pub.close()
        wait_for(lambda: db_rows(db, "SELECT count(*) FROM dead_letter")[0][0] >= 6,
                 what="dead letters")
        reasons = [r[0] for r in db_rows(db, "SELECT reason FROM dead_letter ORDER BY id")]
        assert any(r.startswith("not JSON") for r in reasons)
        assert any("not base64" in r for r in reasons)
        assert any(r.startswith("undecodable") for r in reasons)
        assert any("devEui" in r for r in reasons)
        assert any("unknown event type" in r for r in reasons)
        assert any(r.startswith("bad fCnt: 1180591620717411303424") for r in reasons)
        wait_for(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] == 2,
                 what="the undecodable frame kept raw, the good one stored")
        kinds = sorted(r[0] for r in db_rows(db, "SELECT kind FROM uplink"))
        assert kinds == ["report", "undecodable"]
        letters = hub.api("/api/dead-letters").json()
        assert len(letters) == 6
    finally:
        hub.stop()


class _FleetAdapter:
    """A source for the in-process backfill test: downlinks go straight to the fleet."""

    names = ("fleet",)

    def __init__(self, fleet: Fleet, clock) -> None:
        self.fleet, self.clock = fleet, clock

    def start(self, hub) -> None:
        pass

    def stop(self) -> None:
        pass

    def send_downlink(self, dev_eui, payload, f_port, network, reference) -> None:
        self.fleet.send_downlink(int(self.clock()), dev_eui, payload, f_port)


def test_backfill_after_an_outage_fills_every_gap(tmp_path):
    now = [float(T0)]
    store = open_store(str(tmp_path / "hub.db"))
    hub = Hub(HubConfig(backfill_settle_s=1800, backfill_window_s=86400), store,
              clock=lambda: now[0])
    fleet = Fleet(2, seed=7)
    for dev in fleet.devices:  # storage on, the device's own retransmission off
        dev.settings.apply(items.Retransmission(enabled=False))
    hub.add_source(_FleetAdapter(fleet, lambda: now[0]))
    hub.start()
    outage = (T0 + 2 * 3600, T0 + 4 * 3600)
    fleet.network.outage(*outage)
    submitted = [0]

    def feed(frames) -> None:
        for f in frames:
            hub.submit(Envelope(source="fleet", dev_eui=f.dev_eui, received_at=float(f.time),
                                f_port=f.f_port, f_cnt=None, payload=f.payload,
                                key=uplink_key(f.dev_eui, None, f.time, f.payload)))
            submitted[0] += 1

    def settle() -> None:
        wait_for(lambda: hub.stored_total + hub.metrics.duplicates._value.get() >= submitted[0],
                 what="ingest")

    try:
        feed(fleet.start(T0))
        for s in range(1, 6 * 3600):
            now[0] = T0 + s
            feed(fleet.tick(T0 + s))
        settle()
        devices = store.devices()
        missing = store.completeness(start=T0 + 600, end=T0 + 5 * 3600)
        assert all(m["completeness"] < 0.8 for m in missing)  # the outage cost ~12 of 30
        # the hub asks, the devices answer (records paced by their retrieval interval)
        t = T0 + 6 * 3600
        for _ in range(40):
            now[0] = t
            hub.backfill_once()
            hub.send_due_downlinks()
            for s in range(600):
                now[0] = t + s
                feed(fleet.tick(t + s))
            t += 600
            settle()
            if all(g["status"] in ("filled", "unrecoverable") for g in store.gaps()) and \
                    store.gaps():
                break
        gaps = store.gaps()
        assert gaps and {g["status"] for g in gaps} == {"filled"}, gaps
        complete = store.completeness(start=T0 + 600, end=T0 + 5 * 3600)
        assert [c["completeness"] for c in complete] == [1.0] * len(devices)
        queries = [d for d in store.downlinks() if d["command"] == "query_history_range"]
        assert queries and all(d["params"]["end"] - d["params"]["start"] <= 300 * 600
                               for d in queries)
        origins = {r[0] for r in store.query("SELECT DISTINCT origin FROM reading")}
        assert {"live", "historical"} <= origins or {"live", "target_time"} <= origins
    finally:
        hub.stop()
        store.close()
