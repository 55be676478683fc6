"""The hub's SQL store on both engines (SQLite file, real PostgreSQL): migrations, ingest of a
virtual fleet, split reports, history records, energy and counter resets, alarms, downlinks and
the configuration shadow, API tokens, downsampled readings and completeness.

Expected values are computed here from the payloads (decoded with `cth01.protocol`, not with
the hub's own mapping), so a wrong column, channel or formula in the hub shows up."""

from __future__ import annotations

import copy
import hashlib
import re
from datetime import UTC, datetime

import pytest

from cth01.hub import downlinks
from cth01.hub.envelope import Envelope, uplink_key
from cth01.hub.pipeline import Pipeline
from cth01.hub.readings import CHANNEL_COLUMNS, DEVICE_COLUMNS, READING_COLUMNS
from cth01.hub.schema import MIGRATIONS, migration_sql
from cth01.hub.store import StoreError, open_store
from cth01.protocol import GroupReading, HistoryRecord, Uplink, decode, encode_uplink, items

from .conftest import HUB_FLEET_DEVICES, HUB_FLEET_SECONDS, HUB_FLEET_T0

EUI = "24e12400000000aa"
T = 1767225600 + 86400  # 2026-01-02T00:00:00Z
FIRST = {"a": 1, "b": 4, "c": 7, "d": 10}

TABLES = ("device", "channel", "uplink", "reading", "monthly_reading", "energy_reset", "alarm",
          "alarm_event", "downlink", "config", "config_history", "dead_letter", "gap",
          "api_token", "schema_version")
VIEWS = ("channel_reading", "monthly_channel_reading")


# --- helpers -----------------------------------------------------------------------------------

def envelope(eui: str, t: float, payload: bytes, f_port: int = 85) -> Envelope:
    return Envelope(source="fleet", dev_eui=eui, received_at=float(t), f_port=f_port,
                    f_cnt=None, payload=payload, key=uplink_key(eui, None, t, payload))


def ingest(store, envs, pipeline: Pipeline | None = None, now: float | None = None):
    new, dups = store.new_envelopes(envs)
    result = store.write((pipeline or Pipeline()).process(new), now=now)
    return result, dups


def count(store, sql: str, params=()) -> int:
    return int(store.query(f"SELECT count(*) FROM {sql}", params)[0][0])


def execmany(store, sql: str, rows) -> None:
    with store.transaction("test insert") as cur:
        cur.executemany(sql.replace("?", store.placeholder), rows)


def fleet_envelopes(frames) -> list[Envelope]:
    return [envelope(fr.dev_eui, fr.time, fr.payload, fr.f_port) for fr in frames]


def grouped_values(item) -> dict[int, object]:
    """channel -> value of one grouped item, as the module note of readings.py says: a
    three-phase group's total on its first channel, nothing on the other two."""
    out: dict[int, object] = {}
    for g in getattr(item, item.__struct_fields__[0]):
        first = FIRST[g.group]
        if g.channels is not None:
            for k, v in enumerate(g.channels):
                out[first + k] = v
        else:
            out[first], out[first + 1], out[first + 2] = g.total, None, None
    return out


def expected_report(payload: bytes) -> dict[str, dict[int, object]]:
    """Per channel column name: channel -> value, from a decoded report."""
    names = {"power_factor": "power_factor_pct", "active_power": "active_power_w",
             "imported_active_energy": "imported_active_wh"}
    out: dict[str, dict[int, object]] = {}
    for item in decode(payload).items:
        base = re.sub(r"_(ab|cd)$", "", item.command_name)
        if base in names:
            out.setdefault(names[base], {}).update(grouped_values(item))
    return out


def channel_value(store, eui: str, channel: int, ts: int, column: str):
    """The stored value (through the channel_reading view), None when NULL or when the device
    has no reading at that time."""
    rows = store.query(f"SELECT c.{column} FROM channel_reading c JOIN device d ON "
                       f"d.id = c.device_id WHERE d.dev_eui = ? AND c.channel = ? AND c.ts = ?",
                       (eui, channel, ts))
    assert len(rows) <= 1
    return rows[0][0] if rows else None


def reading_rows(store, eui: str) -> list[tuple]:
    return store.query("SELECT r.ts, r.origin, r.temperature_c, r.voltage_l1_v FROM reading r "
                       "JOIN device d ON d.id = r.device_id WHERE d.dev_eui = ? ORDER BY r.ts",
                       (eui,))


def energy_report(t: int, ch1: int, ch2: int, ch3: int, b_total: int) -> bytes:
    """A report with imported active energy of groups a (single-phase) and b (three-phase)."""
    return encode_uplink([items.ImportedActiveEnergyAb(energy_wh=(
        GroupReading(group="a", phase="single", channels=(ch1, ch2, ch3)),
        GroupReading(group="b", phase="three", total=b_total)))])


@pytest.fixture(scope="module")
def a_report(hub_fleet_frames):
    """A live report of the fleet (device 0: groups a, b, d single-phase, c three-phase)."""
    for fr in hub_fleet_frames:
        u = decode(fr.payload)
        if u.get("active_power_cd") is not None and fr.dev_eui.endswith("0000"):
            return u
    raise AssertionError("the fleet sent no report")


# --- migrations --------------------------------------------------------------------------------

def test_migrate_is_idempotent_and_creates_every_table(store):
    assert store.migrate() == len(MIGRATIONS)
    assert store.migrate() == len(MIGRATIONS)  # open_store migrated once already
    again = open_store(getattr(store, "path", None) or store.url)  # another process, later
    again.close()
    assert store.query("SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, len(MIGRATIONS) + 1)]
    if store.engine == "sqlite":
        sql = "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view')"
    else:
        sql = ("SELECT CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END, table_name "
               "FROM information_schema.tables WHERE table_schema = 'public'")
    names = store.query(sql)
    assert set(TABLES) <= {n for kind, n in names if kind == "table"}
    assert set(VIEWS) <= {n for kind, n in names if kind == "view"}
    for table in TABLES + VIEWS:  # queryable and empty but for the version rows
        assert count(store, table) == (len(MIGRATIONS) if table == "schema_version" else 0)
    with store.transaction("columns") as cur:
        cur.execute("SELECT * FROM channel_reading WHERE 1 = 0")
        assert [d[0] for d in cur.description] == ["device_id", "ts", "origin", "channel",
                                                   *CHANNEL_COLUMNS]
        cur.execute("SELECT * FROM reading WHERE 1 = 0")
        assert [d[0] for d in cur.description] == ["device_id", "ts", "origin",
                                                   *READING_COLUMNS]
    assert READING_COLUMNS[:len(DEVICE_COLUMNS)] == DEVICE_COLUMNS
    assert "c12_apparent_vah" in READING_COLUMNS


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_upgrade_from_the_first_release_keeps_readings(engine, request, tmp_path):
    """A database written by the first schema is upgraded in place at start (migration 2
    rebuilds SQLite's `reading`, migration 4 PostgreSQL's primary key): no reading is lost
    and the key still refuses a second reading of a device at one time."""
    url = str(tmp_path / "old.db") if engine == "sqlite" else request.getfixturevalue("pg_url")
    rows = [(1, T + 600 * k, "live", 20.0 + k, 100.0 * k) for k in range(50)]
    if engine == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url)
        place = "?"
    else:
        import psycopg

        conn = psycopg.connect(url)
        place = "%s"
    with conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in migration_sql(1, engine):
            cur.execute(statement)
        cur.execute("INSERT INTO schema_version (version) VALUES (1)")
        cur.execute(f"INSERT INTO device (dev_eui) VALUES ({place})", (EUI,))
        cur.executemany(f"INSERT INTO reading (device_id, ts, origin, temperature_c, "
                        f"c3_active_power_w) VALUES ({', '.join([place] * 5)})", rows)
    conn.close()

    store = open_store(url)
    try:
        assert store.query("SELECT max(version) FROM schema_version")[0][0] == len(MIGRATIONS)
        assert store.query("SELECT device_id, ts, origin, temperature_c, c3_active_power_w "
                           "FROM reading ORDER BY ts") == rows
        chart = store.readings(EUI, "active_power_w", channel=3, start=T, end=T + 600 * 49,
                               points=50)
        assert [p["mean"] for p in chart] == [r[4] for r in rows]
        with pytest.raises(StoreError):
            execmany(store, "INSERT INTO reading (device_id, ts, origin) VALUES (?, ?, 'x')",
                     [(1, T)])
    finally:
        store.close()


# --- ingest of a virtual fleet -----------------------------------------------------------------

def test_fleet_ingest_dedup_and_values(store, hub_fleet_frames):
    envs = fleet_envelopes(hub_fleet_frames)
    reports = [fr for fr in hub_fleet_frames if decode(fr.payload).get("temperature")]
    euis = sorted({fr.dev_eui for fr in hub_fleet_frames})
    assert len(euis) == HUB_FLEET_DEVICES
    assert len(reports) >= HUB_FLEET_DEVICES * HUB_FLEET_SECONDS // 600 - HUB_FLEET_DEVICES

    result, dups = ingest(store, envs)
    assert dups == 0 and result.stored == len(envs)
    assert count(store, "uplink") == len(envs)
    assert count(store, "device") == HUB_FLEET_DEVICES
    assert result.readings == len(reports)

    # delivered again: all duplicates, and even a forced rewrite stores nothing twice
    new, dups = store.new_envelopes(envs)
    assert new == [] and dups == len(envs)
    store.write(Pipeline().process(envs))
    assert count(store, "uplink") == len(envs)
    assert count(store, "reading") == len(reports)

    for eui in euis:
        mine = [fr for fr in reports if fr.dev_eui == eui]
        rows = reading_rows(store, eui)
        assert [r[0] for r in rows] == [fr.time for fr in mine]
        assert {r[1] for r in rows} == {"live"}
        assert [r[2] for r in rows] == [decode(fr.payload).get("temperature").temperature_c
                                        for fr in mine]
        dev = store.device(eui)
        assert dev["last_seen"] == max(fr.time for fr in hub_fleet_frames if fr.dev_eui == eui)
        assert dev["info"]["serial_number"]

    three_phase_checked = 0
    for fr in reports[::7]:
        for column, by_channel in expected_report(fr.payload).items():
            for ch, value in by_channel.items():
                assert channel_value(store, fr.dev_eui, ch, fr.time, column) == value, (
                    fr.dev_eui, fr.time, column, ch)
            three_phase_checked += sum(1 for ch in (1, 4, 7, 10) if by_channel.get(ch + 1,
                                                                                   0) is None)
    assert three_phase_checked > 0  # the fleet has three-phase groups (totals on channel 1/4/7/10)


def test_device_keeps_its_newest_uplink_across_batches(store, hub_fleet_frames):
    """last_seen / last_f_cnt / source come from a device's newest uplink, also when a later
    batch brings older ones (a network redelivering late); several devices per batch."""
    frames = hub_fleet_frames[:3]
    euis = ["24e12400000000b1", "24e12400000000b2", "24e12400000000b3"]

    def env(eui: str, t: float, f_cnt: int, source: str) -> Envelope:
        payload = frames[euis.index(eui)].payload
        return Envelope(source=source, dev_eui=eui, received_at=t, f_port=85, f_cnt=f_cnt,
                        payload=payload, key=uplink_key(eui, f_cnt, t, payload))

    ingest(store, [env(euis[0], T + 600, 10, "chirpstack"), env(euis[1], T + 600, 20, "tts"),
                   env(euis[0], T + 300, 9, "chirpstack")])
    ingest(store, [env(euis[0], T + 60, 5, "http"), env(euis[1], T + 1200, 21, "http"),
                   env(euis[2], T, 1, "fleet")])
    seen = {eui: (d["last_seen"], d["last_f_cnt"], d["source"])
            for eui in euis for d in [store.device(eui)]}
    assert seen == {euis[0]: (T + 600, 10, "chirpstack"), euis[1]: (T + 1200, 21, "http"),
                    euis[2]: (T, 1, "fleet")}


def test_a_failed_first_write_of_a_device_does_not_poison_the_retry(store, hub_fleet_frames):
    """A transaction that registers new devices and then fails is rolled back: the retry
    registers them again (the hub retries a batch until it is stored)."""
    envs = fleet_envelopes(hub_fleet_frames[:80])
    euis = {e.dev_eui for e in envs}
    batch = Pipeline().process(envs)
    assert batch.readings and len(euis) > 1
    broken = copy.deepcopy(batch)
    eui, _, origin, columns, values = broken.readings[0]
    broken.readings.append((eui, None, origin, columns, values))  # ts NOT NULL: fails late
    with pytest.raises(StoreError):
        store.write(broken)
    assert count(store, "device") == 0 and count(store, "uplink") == 0
    result = store.write(batch)
    assert result.stored == len(envs)
    assert {r[0] for r in store.query("SELECT dev_eui FROM device")} == euis
    assert count(store, "uplink u JOIN device d ON d.id = u.device_id") == len(envs)


def test_uplink_rows_keep_the_raw_frame(store, hub_fleet_frames):
    envs = fleet_envelopes(hub_fleet_frames[:20])
    ingest(store, envs)
    rows = store.query("SELECT u.payload, u.dedup_key, u.kind, u.received_at, d.dev_eui FROM "
                       "uplink u JOIN device d ON d.id = u.device_id ORDER BY u.id")
    assert [(bytes(r[0]), r[1], r[3], r[4]) for r in rows] == [
        (e.payload, e.key, e.received_at, e.dev_eui) for e in envs]
    assert {r[2] for r in rows} <= {"info", "report", "config"}
    # re-decoding a stored frame gives the same uplink
    assert decode(bytes(rows[-1][0])) == decode(envs[-1].payload)


# --- split reports -----------------------------------------------------------------------------

@pytest.mark.parametrize("apart", [1, 60])
def test_split_report(store, a_report, apart):
    first, second = a_report.items[:3], a_report.items[3:]
    assert {i.command_name for i in first} == {"temperature", "power_factor", "active_power_ab"}
    p1, p2 = encode_uplink(list(first)), encode_uplink(list(second))
    pipeline = Pipeline()
    ingest(store, [envelope(EUI, T + 0.25, p1)], pipeline)
    ingest(store, [envelope(EUI, T + apart + 0.25, p2)], pipeline)
    rows = reading_rows(store, EUI)
    expected = {**expected_report(p1), **expected_report(p2)}
    if apart == 1:  # one reading: both halves' columns on the same rows
        assert [r[0] for r in rows] == [T]
        with_values = {ch for by_channel in expected.values() for ch, v in by_channel.items()
                       if v is not None}
        assert count(store, "channel_reading WHERE power_factor_pct IS NOT NULL OR "
                            "active_power_w IS NOT NULL OR imported_active_wh IS NOT NULL") == \
            len(with_values) == 10  # group c is three-phase: a total on channel 7 only
        for column, by_channel in expected.items():
            for ch, value in by_channel.items():
                assert channel_value(store, EUI, ch, T, column) == value
    else:  # a minute apart: two reports
        assert [r[0] for r in rows] == [T, T + apart]
        assert channel_value(store, EUI, 1, T, "imported_active_wh") is None
        assert channel_value(store, EUI, 1, T + apart, "power_factor_pct") is None
        assert channel_value(store, EUI, 1, T + apart, "imported_active_wh") == \
            expected["imported_active_wh"][1]
    assert rows[0][2] == a_report.get("temperature").temperature_c


def test_one_batch_writing_one_reading_twice_keeps_the_later(store):
    """Two reports of the same items within one second land on the same reading row in one
    transaction (PostgreSQL's one-statement array insert may not touch a row twice: the store
    must fall back to row by row there); the later report's values win."""
    first, later = energy_report(T, 10, 20, 30, 400), energy_report(T, 11, 21, 31, 401)
    ingest(store, [envelope(EUI, T + 0.1, first), envelope(EUI, T + 0.6, later)])
    assert [r[0] for r in reading_rows(store, EUI)] == [T]
    assert [channel_value(store, EUI, ch, T, "imported_active_wh") for ch in (1, 2, 3, 4)] == \
        [11, 21, 31, 401]
    assert count(store, "uplink") == 2


# --- history records ---------------------------------------------------------------------------

def history_payload(ts: int, record_items) -> bytes:
    rec = HistoryRecord(mode="historical", timestamp=datetime.fromtimestamp(ts, UTC),
                        items=tuple(record_items))
    return encode_uplink(Uplink(dialect="firmware", history=(rec,)))


def test_history_payload_encoding_matches_the_guide_example():
    guide = bytes.fromhex("ed01a1b1856901360a")
    u = decode(guide)
    assert history_payload(int(u.history[0].timestamp.timestamp()), u.history[0].items) == guide


def test_history_records_fill_only_empty_periods(store, a_report):
    live = encode_uplink(list(a_report.items))
    pipeline = Pipeline()
    ingest(store, [envelope(EUI, T, live)], pipeline)
    power = items.ActivePowerAb(active_power_w=(
        GroupReading(group="a", phase="single", channels=(11, 12, 13)),
        GroupReading(group="b", phase="three", total=4000)))
    voltage = items.Voltage(voltage_v=(230.5, 231.0, 229.5))
    # 5 s from a live reading: same period, skipped
    result, _ = ingest(store, [envelope(EUI, T + 30, history_payload(T + 5, [power]))], pipeline)
    assert (result.history_skipped, result.history_merged) == (1, 0)
    # an hour before: nothing there, merged as a historical reading
    result, _ = ingest(store, [envelope(EUI, T + 40, history_payload(T - 3600, [power]))],
                       pipeline)
    assert (result.history_skipped, result.history_merged) == (0, 1)
    # exactly the live reading's time: another part of the same record, merged into it
    result, _ = ingest(store, [envelope(EUI, T + 50, history_payload(T, [voltage]))], pipeline)
    assert (result.history_skipped, result.history_merged) == (0, 1)

    rows = reading_rows(store, EUI)
    assert [(r[0], r[1]) for r in rows] == [(T - 3600, "historical"), (T, "live")]
    assert rows[1][3] == 230.5 and rows[1][2] == a_report.get("temperature").temperature_c
    assert count(store, "channel_reading WHERE ts = ?", (T + 5,)) == 0
    assert channel_value(store, EUI, 2, T - 3600, "active_power_w") == 12
    assert channel_value(store, EUI, 4, T - 3600, "active_power_w") == 4000
    assert channel_value(store, EUI, 5, T - 3600, "active_power_w") is None
    # the live values at T were not touched by the skipped record
    assert channel_value(store, EUI, 2, T, "active_power_w") == \
        expected_report(live)["active_power_w"][2]


# --- energy ------------------------------------------------------------------------------------

def independent_energy(frames, start: int, end: int) -> dict[tuple[str, int], float]:
    series: dict[tuple[str, int], list[tuple[int, object]]] = {}
    for fr in frames:
        counters = expected_report(fr.payload).get("imported_active_wh", {})
        for ch, v in counters.items():
            if v is not None:
                series.setdefault((fr.dev_eui, ch), []).append((fr.time, v))
    out = {}
    for key, points in series.items():
        before_start = [v for t, v in points if t < start]
        in_period = [v for t, v in points if start <= t < end]
        if not in_period:  # no reading in the period: no data, not zero energy
            continue
        base = before_start[-1] if before_start else in_period[0]
        out[key] = in_period[-1] - base
    return out


@pytest.mark.parametrize("window", [(0, HUB_FLEET_SECONDS + 1), (7200, 14400), (3000, 3001)])
def test_energy_is_the_counter_difference(store, hub_fleet_frames, window):
    ingest(store, fleet_envelopes(hub_fleet_frames))
    start, end = HUB_FLEET_T0 + window[0], HUB_FLEET_T0 + window[1]
    want = independent_energy(hub_fleet_frames, start, end)
    got = {(r["dev_eui"], r["channel"]): r["energy"] for r in store.energy(start=start, end=end)}
    assert got == want
    assert any(v > 0 for v in want.values()) or window == (3000, 3001)
    subset = store.energy(start=start, end=end, dev_euis=["24e1240000001000"])
    assert {r["dev_eui"] for r in subset} == {e for e, _ in want if e == "24e1240000001000"}


def test_energy_across_a_counter_reset(store):
    before_reset = [(T, 1000, 500), (T + 600, 1100, 520)]
    pipeline = Pipeline()
    for t, c1, b in before_reset:
        ingest(store, [envelope(EUI, t, energy_report(t, c1, 7, 9, b))], pipeline)
    # the hub restarts: a fresh pipeline primed from the store sees the reset
    states = store.energy_states([EUI, "24e12400000000ff"])  # the other one is not known
    assert states["24e12400000000ff"] == {}
    state = states[EUI]
    assert state[1][0] == T + 600 and 1100 in state[1][1]
    restarted = Pipeline()
    restarted.prime(EUI, state)
    for t, c1, b in [(T + 1200, 50, 540), (T + 1800, 80, 560)]:
        ingest(store, [envelope(EUI, t, energy_report(t, c1, 7, 9, b))], restarted)

    resets = store.query("SELECT channel, ts, quantity, before_value, after_value FROM "
                         "energy_reset ORDER BY channel")
    assert resets == [(1, T + 1200, "imported_active_wh", 1100, 50)]
    got = {r["channel"]: r["energy"] for r in store.energy(start=T, end=T + 2400)}
    # channel 1: 1000 -> 1100, reset to 0, -> 80; group b (three-phase) total on channel 4
    assert got == {1: (1100 - 1000) + 80, 2: 0, 3: 0, 4: 60}
    after = {r["channel"]: r["energy"] for r in store.energy(start=T + 1500, end=T + 2400)}
    assert after[1] == 80 - 50
    before = {r["channel"]: r["energy"] for r in store.energy(start=T, end=T + 1000)}
    assert before[1] == 100


# --- alarms ------------------------------------------------------------------------------------

def test_alarm_lifecycle(store):
    pipeline = Pipeline()

    def send(t, *alarm_items):
        result, _ = ingest(store, [envelope(EUI, t, encode_uplink(list(alarm_items)))], pipeline)
        return result.alarm_changes

    raise_ = items.CurrentAlarm(channel=3, alarm="above_threshold", current_a=12.5)
    changes = send(T, raise_)
    assert [c["change"] for c in changes] == ["raised"]
    alarm_id = changes[0]["id"]
    active = store.alarms(status="active")
    assert [(a["id"], a["count"], a["item"], a["condition"]) for a in active] == [
        (alarm_id, 1, "current_alarm", "above_threshold")]

    changes = send(T + 30, items.CurrentAlarm(channel=3, alarm="above_threshold", current_a=13.0))
    assert [(c["change"], c["id"], c["count"]) for c in changes] == [("repeated", alarm_id, 2)]
    assert store.alarms(status="active")[0]["last_value"] == 13.0

    changes = send(T + 60, items.CurrentAlarm(channel=3, alarm="above_threshold_cleared",
                                              current_a=2.5))
    assert [(c["change"], c["id"]) for c in changes] == [("dismissed", alarm_id)]
    row = store.alarms(dev_eui=EUI)[0]
    assert (row["status"], row["cleared_by"], row["cleared_at"]) == ("dismissed", "device",
                                                                     T + 60)
    assert store.alarms(status="active") == []
    assert store.query("SELECT alarm_type FROM alarm_event WHERE alarm_id = ? ORDER BY ts",
                       (alarm_id,)) == [("above_threshold",), ("above_threshold",),
                                        ("above_threshold_cleared",)]

    # a power failure: sent twice, dismissed by the first uplink 60 s or more after the last
    send(T + 100, items.PowerFailureAlarm())
    send(T + 101, items.PowerFailureAlarm())
    pf = store.alarms(status="active")
    assert [(a["condition"], a["count"]) for a in pf] == [("power_failure", 2)]
    heard = encode_uplink([items.Temperature(temperature_c=21.5)])
    ingest(store, [envelope(EUI, T + 150, heard)], pipeline)
    assert len(store.alarms(status="active")) == 1  # 49 s: not yet
    result, _ = ingest(store, [envelope(EUI, T + 161, heard)], pipeline)
    assert [(c["change"], c["cleared_by"]) for c in result.alarm_changes] == [
        ("dismissed", "power restored")]
    assert store.alarms(status="active") == []

    acked = store.acknowledge_alarm(alarm_id, "alice", now=T + 200)
    assert (acked["acknowledged_by"], acked["acknowledged_at"], acked["change"]) == (
        "alice", T + 200, "acknowledged")
    again = store.acknowledge_alarm(alarm_id, "bob", now=T + 300)
    assert (again["acknowledged_by"], again["change"]) == ("alice", None)  # the first stays
    assert store.acknowledge_alarm(10_000, "alice") is None



def test_replayed_alarm_packets_are_stored_once_and_never_reopen_a_cleared_alarm(store):
    """Alarm packets inside stored records (retransmission after an outage, a history query)
    repeat what the hub may have heard live: the same packet (device clock vs the hub's
    reception time, seconds apart) changes nothing; one older than the alarm's newest packet
    is kept in its history without re-opening it; a missed raise and clear are applied."""
    pipeline = Pipeline()

    def live(t, item):
        return ingest(store, [envelope(EUI, t, encode_uplink([item]))], pipeline)[0]

    def replay(t, *records):
        uplink = Uplink(dialect="firmware", history=tuple(
            HistoryRecord(mode="historical", timestamp=datetime.fromtimestamp(ts, UTC),
                          items=(item,)) for ts, item in records))
        return ingest(store, [envelope(EUI, t, encode_uplink(uplink))], pipeline)[0]

    raised = items.CurrentAlarm(channel=3, alarm="above_range", current_a=120.0)
    cleared = items.CurrentAlarm(channel=3, alarm="above_range_cleared", current_a=1.0)
    assert [c["change"] for c in live(T + 0.4, raised).alarm_changes] == ["raised"]
    assert replay(T + 600, (T, raised)).alarm_changes == []  # heard live already
    assert store.query("SELECT status, count FROM alarm") == [("active", 1)]
    assert [c["change"] for c in live(T + 1200.3, cleared).alarm_changes] == ["dismissed"]
    assert replay(T + 1800, (T, raised), (T + 1200, cleared)).alarm_changes == []
    # a raise the hub missed, older than the clear it heard: history, not a new alarm
    assert replay(T + 2400, (T + 900, raised)).alarm_changes == []
    assert store.query("SELECT status, count FROM alarm") == [("dismissed", 1)]
    assert store.query("SELECT count(*) FROM alarm_event") == [(3,)]
    # the hub away for both: the replayed raise and clear make one dismissed alarm
    changes = replay(T + 9000, (T + 6000, raised), (T + 6600, cleared)).alarm_changes
    assert [(c["change"], c["status"], c["first_at"], c["cleared_at"]) for c in changes] == [
        ("raised", "active", T + 6000, None), ("dismissed", "dismissed", T + 6000, T + 6600)]

def test_a_clear_without_an_active_alarm_is_kept_dismissed(store):
    result, _ = ingest(store, [envelope(EUI, T, encode_uplink([items.TemperatureAlarm(
        alarm="above_threshold_cleared", temperature_c=40.0)]))])
    assert [(c["change"], c["status"], c["cleared_by"]) for c in result.alarm_changes] == [
        ("dismissed", "dismissed", "device")]


def test_alarm_channel_is_the_channel_of_the_packet(store):
    ingest(store, [envelope(EUI, T, encode_uplink([items.CurrentAlarm(
        channel=3, alarm="above_threshold", current_a=12.5)]))])
    assert store.alarms()[0]["channel"] == 3


# --- downlinks and the configuration shadow ----------------------------------------------------

def queue_interval(store, minutes: int, now: float, **kw):
    params = {"minutes": minutes}
    return store.create_downlink(EUI, "set_reporting_interval", params,
                                 downlinks.build("set_reporting_interval", params),
                                 created_by="t", now=now, **kw)


def reply(result: str) -> bytes:
    return encode_uplink([items.CommandReply(result=result, echo="61",
                                             command="reporting_interval")])


def test_downlink_confirmed_and_config_in_sync(store):
    assert reply("success") == bytes.fromhex("ef0161")  # what the virtual device answers
    row = queue_interval(store, 5, T)
    assert (row["status"], row["payload_hex"], row["expects"]) == ("queued", "61010500",
                                                                   ["ef:61"])
    to_send, timed_out = store.due_downlinks(T, 300)
    assert [d["id"] for d in to_send] == [row["id"]] and timed_out == []
    shadow = {r["setting"]: r for r in store.config_shadow(EUI)}
    assert shadow["61"]["state"] == "pending"

    store.mark_sent(row["id"], T + 1, reference="q1")
    sent = store.downlink(row["id"])
    assert (sent["status"], sent["attempts"], sent["reference"]) == ("sent", 1, "q1")
    result, _ = ingest(store, [envelope(EUI, T + 20, reply("success"))], now=T + 20)
    assert [(c["id"], c["status"]) for c in result.downlink_changes] == [(row["id"],
                                                                          "confirmed")]
    done = store.downlink(row["id"])
    assert (done["status"], done["result"], done["done_at"]) == ("confirmed",
                                                                 {"ef:61": "success"}, T + 20)
    shadow = {r["setting"]: r for r in store.config_shadow(EUI)}
    assert shadow["61"]["state"] == "in_sync"
    assert shadow["61"]["reported"] == {"type": "reporting_interval", "minutes": 5}
    assert store.device(EUI)["reporting_interval_s"] == 300
    assert store.interval_s(store.device_id(EUI)) == 300
    sides = store.query("SELECT side FROM config_history ORDER BY ts")
    assert sides == [("desired",), ("reported",)]


def test_downlink_failed_reply(store):
    row = queue_interval(store, 15, T)
    store.mark_sent(row["id"], T + 1)
    result, _ = ingest(store, [envelope(EUI, T + 20, reply("write_parameter_error"))])
    done = store.downlink(row["id"])
    assert (done["status"], done["result"]) == ("failed", {"ef:61": "write_parameter_error"})
    assert [c["status"] for c in result.downlink_changes] == ["failed"]
    shadow = {r["setting"]: r for r in store.config_shadow(EUI)}
    assert shadow["61"]["state"] == "failed" and shadow["61"]["reported"] is None
    assert store.device(EUI)["reporting_interval_s"] == 600  # unchanged (factory default)


def test_downlink_resent_until_timed_out(store):
    row = queue_interval(store, 5, T, max_attempts=3)
    store.mark_sent(row["id"], T)
    now = T
    for attempt in (2, 3):
        assert store.due_downlinks(now + 299, 300) == ([], [])  # not overdue yet
        now += 300
        to_send, timed_out = store.due_downlinks(now, 300)
        assert [d["id"] for d in to_send] == [row["id"]] and timed_out == []
        store.mark_sent(row["id"], now)
        assert store.downlink(row["id"])["attempts"] == attempt
    to_send, timed_out = store.due_downlinks(now + 300, 300)
    assert to_send == [] and [d["id"] for d in timed_out] == [row["id"]]
    assert store.downlink(row["id"])["status"] == "timed_out"
    assert {r["setting"]: r["state"] for r in store.config_shadow(EUI)} == {"61": "timed_out"}
    assert store.due_downlinks(now + 900, 300) == ([], [])



def test_the_registry_shows_each_channels_ct_from_the_configuration_shadow(store):
    """Group b's current interface (command 68) asked for, then confirmed by the device: the
    device's channels 4-6 show the CT range and direction, unconfirmed and then confirmed;
    the other groups' channels show none."""
    params = {"group": "b", "circuit": "three_phase", "ct_ranges": ["100A", "300A", "100A"],
              "reversed_channels": [2]}
    row = store.create_downlink(EUI, "set_current_interface", params,
                                downlinks.build("set_current_interface", params),
                                created_by="t", now=T)
    chans = store.device(EUI)["channels"]
    assert [(c["ct_range"], c["direction"], c["ct_confirmed"]) for c in chans[3:6]] == [
        ("100A", "forward", False), ("300A", "reverse", False), ("100A", "forward", False)]
    assert {(c["ct_range"], c["ct_confirmed"]) for c in chans[:3] + chans[6:]} == {(None, None)}
    store.mark_sent(row["id"], T + 1)
    answer = encode_uplink([items.CommandReply(result="success", echo="68",
                                               command="current_interface_b")])
    ingest(store, [envelope(EUI, T + 20, answer)], now=T + 20)
    assert store.downlink(row["id"])["status"] == "confirmed"
    chans = store.device(EUI)["channels"]
    assert [(c["ct_range"], c["ct_confirmed"]) for c in chans[3:6]] == [
        ("100A", True), ("300A", True), ("100A", True)]

def test_a_transaction_that_fails_for_any_reason_leaves_nothing_behind(store):
    """Not only database errors: a value the driver refuses or a bug halfway through a
    transaction rolls it back, so the next transaction on the connection does not commit it."""
    with pytest.raises(ValueError), store.transaction("half done") as cur:
        cur.execute(store._q("INSERT INTO device (dev_eui, first_seen) VALUES (?, ?)"),
                    ("24e12400000000f1", T))
        raise ValueError("a bug")
    with store.transaction("next") as cur:
        cur.execute(store._q("INSERT INTO device (dev_eui, first_seen) VALUES (?, ?)"),
                    ("24e12400000000f2", T))
    assert store.query("SELECT dev_eui FROM device ORDER BY dev_eui") == [("24e12400000000f2",)]

def test_a_downlink_never_handed_to_the_network_times_out(store):
    """Broker away, no downlink path: the send fails and the downlink stays queued and is
    tried again — until its attempts' time (3 x 300 s) has passed since it was created."""
    row = queue_interval(store, 5, T, max_attempts=3)
    to_send, timed_out = store.due_downlinks(T + 899, 300)
    assert [d["id"] for d in to_send] == [row["id"]] and timed_out == []
    to_send, timed_out = store.due_downlinks(T + 900, 300)
    assert to_send == [] and [d["id"] for d in timed_out] == [row["id"]]
    done = store.downlink(row["id"])
    assert done["status"] == "timed_out" and "900 s" in str(done["result"])
    assert store.due_downlinks(T + 2000, 300) == ([], [])

# --- tokens ------------------------------------------------------------------------------------

def test_tokens(store):
    token = store.create_token("grafana", "read")
    admin = store.create_token("ops", "admin")
    assert store.token_role(token) == ("grafana", "read")
    assert store.token_role(admin) == ("ops", "admin")
    assert store.token_role(token + "x") is None
    hashes = [r[0] for r in store.query("SELECT token_hash FROM api_token ORDER BY name")]
    assert token not in hashes and admin not in hashes
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    renewed = store.create_token("grafana", "read")  # same name: replaces the old token
    assert store.token_role(token) is None and store.token_role(renewed) == ("grafana", "read")
    with pytest.raises(ValueError):
        store.create_token("x", "root")
    chosen = "operator-chosen-admin-token"  # `cth01 serve --admin-token`
    assert store.create_token("admin", "admin", token=chosen) == chosen
    assert store.token_role(chosen) == ("admin", "admin")
    assert chosen not in [r[0] for r in store.query("SELECT token_hash FROM api_token")]
    with pytest.raises(ValueError):
        store.create_token("admin", "admin", token="short")
    assert store.token_role(chosen) == ("admin", "admin")  # a refused token changes nothing


# --- downsampled readings, completeness --------------------------------------------------------

def test_readings_downsampled_and_completeness(store):
    store.update_device(EUI, name="synthetic")
    other = "24e12400000000bb"
    store.update_device(other, name="silent")
    did = store.device_id(EUI)
    missing = set(range(60, 74))  # 14 slots of a 144-slot day
    slots = [k for k in range(144) if k not in missing]
    execmany(store, "INSERT INTO reading (device_id, ts, origin, temperature_c) "
                    "VALUES (?, ?, 'live', ?)", [(did, T + 600 * k, 20 + k / 10) for k in slots])
    execmany(store, "UPDATE reading SET c1_active_power_w = ?, c2_active_power_w = ? "
                    "WHERE device_id = ? AND ts = ?",
             [(100.0 + k, 200.0 + k, did, T + 600 * k) for k in slots])

    out = store.readings(EUI, "active_power_w", channel=2, start=T, end=T + 86399, points=24)
    hours = {}
    for k in slots:
        hours.setdefault(k // 6, []).append(200.0 + k)
    assert [r["ts"] for r in out] == [T + 3600 * h for h in sorted(hours)]
    for r, h in zip(out, sorted(hours), strict=True):
        vals = hours[h]
        assert r["count"] == len(vals)
        assert (r["min"], r["max"]) == (min(vals), max(vals))
        assert r["mean"] == pytest.approx(sum(vals) / len(vals))
    assert 10 not in [r["ts"] for r in out]
    full = store.readings(EUI, "temperature_c", start=T, end=T + 86399, points=10_000)
    assert [r["count"] for r in full] == [1] * len(slots)
    with pytest.raises(ValueError):
        store.readings(EUI, "active_power_w", start=T, end=T + 100)
    with pytest.raises(ValueError):
        store.readings(EUI, "bogus", start=T, end=T + 100)
    assert store.readings("0000000000000000", "temperature_c", start=T, end=T + 100) == []

    comp = {r["dev_eui"]: r for r in store.completeness(start=T, end=T + 86399)}
    assert (comp[EUI]["readings"], comp[EUI]["expected"]) == (130, 144)
    assert comp[EUI]["completeness"] == pytest.approx(130 / 144)
    assert (comp[other]["readings"], comp[other]["expected"], comp[other]["completeness"]) == (
        0, 0, None)


def test_postgresql_connections_plan_each_execution(pg_url):
    """The hub's connections plan every execution for its parameters: a generic plan kept
    from when `uplink` was empty made the dedup lookup a sequential scan (ingest halved)."""
    store = open_store(pg_url)
    try:
        assert store.query("SHOW plan_cache_mode") == [("force_custom_plan",)]
        assert store.query("SHOW jit") == [("off",)]
    finally:
        store.close()


def test_postgresql_power_chart_reads_only_the_index(pg_url):
    """PostgreSQL serves a power chart from the primary-key index (which INCLUDEs each
    channel's active power): no table page is read, however a fleet interleaved the rows.
    Another quantity is read from the table. (The time it saves is in bench_hub_query.py.)"""
    import psycopg

    store = open_store(pg_url)
    try:
        euis = [f"24e12400000001{k:02x}" for k in range(3)]
        for eui in euis:
            store.update_device(eui, name=eui)
        ids = [store.device_id(eui) for eui in euis]
        execmany(store, "INSERT INTO reading (device_id, ts, origin, c5_active_power_w, "
                        "c5_current_a) VALUES (?, ?, 'live', ?, ?)",
                 [(did, T + 600 * k, 10.0 * k, 0.1 * k) for k in range(3000) for did in ids])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE reading")  # as autovacuum does: pages all-visible

        def plan(column: str) -> str:
            sql, params = store.readings_sql(ids[1], column, start=T, end=T + 600 * 2999,
                                             channel=5, points=100)
            return "\n".join(r[0] for r in store.query(
                "EXPLAIN (ANALYZE, COSTS OFF) " + sql.replace("?", "%s"), params))

        power = plan("active_power_w")
        assert "Index Only Scan using reading_pkey" in power and "Heap Fetches: 0" in power
        assert "Index Only Scan" not in plan("current_a")
        chart = store.readings(euis[1], "active_power_w", channel=5, start=T,
                               end=T + 600 * 2999, points=3000)
        assert [p["mean"] for p in chart] == [10.0 * k for k in range(3000)]
    finally:
        store.close()
