"""The runner: JSON-lines output of an unpaced run, pacing against a fake clock (no real
sleeping), downlinks from a sink into the fleet, scripted outages, Ctrl-C."""

from __future__ import annotations

import base64
import io
import json
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from cth01.device import Fleet
from cth01.protocol import commands, decode
from cth01.simulate import (
    CallbackSink,
    JsonLinesSink,
    apply_scenario,
    parse_scenario,
    run,
)

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
KEYS = {"dev_eui", "time", "f_port", "payload_hex", "payload_base64", "kind", "f_cnt"}


class FakeWall:
    """A wall clock that moves only when slept on (plus `cost` per reading: a slow machine)."""

    def __init__(self, cost: float = 0.0) -> None:
        self.now = 100.0
        self.cost = cost
        self.sleeps: list[float] = []

    def clock(self) -> float:
        self.now += self.cost
        return self.now

    def sleep(self, s: float) -> None:
        assert s > 0
        self.sleeps.append(s)
        self.now += s


def test_jsonl_of_an_unpaced_run():
    out = io.StringIO()
    fleet = Fleet(3, seed=5)
    stats = run(fleet, JsonLinesSink(out), start=T0, duration_s=30 * 60)
    lines = out.getvalue().splitlines()
    assert len(lines) == stats.uplinks > 0
    assert stats.simulated_s == 1800 and stats.devices == 3 and not stats.interrupted
    assert stats.uplinks_by_kind["info"] == 3 * 4 and stats.uplinks_by_kind["periodic"] >= 6
    last: dict[str, datetime] = {}
    counters: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        doc = json.loads(line)
        assert set(doc) == KEYS
        assert doc["time"].endswith("Z")
        t = datetime.fromisoformat(doc["time"])
        assert t.tzinfo is not None and T0 <= t.timestamp() <= T0 + 1800
        assert t >= last.get(doc["dev_eui"], t)
        last[doc["dev_eui"]] = t
        payload = bytes.fromhex(doc["payload_hex"])
        assert base64.b64decode(doc["payload_base64"]) == payload
        assert doc["f_port"] == 85
        uplink = decode(payload, dialect="firmware")
        assert uplink.items or uplink.history
        counters[doc["dev_eui"]].append(doc["f_cnt"])
    assert set(counters) == {d.dev_eui for d in fleet.devices}
    for seq in counters.values():  # one session each: 0, 1, 2, ...
        assert seq == list(range(len(seq)))


def test_speed_60_paces_two_minutes_into_two_wall_seconds():
    wall = FakeWall()
    stats = run(Fleet(2, seed=1), CallbackSink(lambda f: None), start=T0, duration_s=120,
                speed=60, clock=wall.clock, sleep=wall.sleep)
    assert wall.now - 100.0 == pytest.approx(2.0, abs=1e-9)
    assert len(wall.sleeps) == 120 and sum(wall.sleeps) == pytest.approx(2.0)
    assert stats.wall_s == pytest.approx(2.0) and stats.speed == pytest.approx(60)
    assert stats.dev_seconds_per_wall_s == pytest.approx(120)


def test_behind_schedule_never_sleeps():
    wall = FakeWall(cost=0.1)  # every clock reading costs more than a simulated second (1/60 s)
    stats = run(Fleet(1), CallbackSink(lambda f: None), start=T0, duration_s=120, speed=60,
                clock=wall.clock, sleep=wall.sleep)
    assert wall.sleeps == []
    assert stats.simulated_s == 120


def test_a_late_second_is_caught_up_without_drift():
    wall = FakeWall()
    seen = []

    def slow_once(frame):
        seen.append(frame)
        if len(seen) == 1:
            wall.now += 0.5  # the first uplink takes half a wall second to send

    run(Fleet(1), CallbackSink(slow_once), start=T0, duration_s=120, speed=60,
        clock=wall.clock, sleep=wall.sleep)
    assert wall.now - 100.0 == pytest.approx(2.0)  # not 2.5: the schedule was kept
    assert len(wall.sleeps) < 120  # the seconds after the hiccup ran back to back


def test_unpaced_never_sleeps():
    wall = FakeWall()
    run(Fleet(1), CallbackSink(lambda f: None), start=T0, duration_s=300, speed=None,
        clock=wall.clock, sleep=wall.sleep)
    assert wall.sleeps == []


def test_consecutive_runs_continue_one_timeline_and_downlinks_reach_devices():
    frames = []
    fleet = Fleet(2, seed=3)
    sink = CallbackSink(frames.append)
    run(fleet, sink, start=T0, duration_s=600)
    target = fleet.devices[1].dev_eui
    sink.push_downlink(target.upper(), commands.set_reporting_interval(minutes=1).payload)
    sink.push_downlink("24e1249999999999", b"\x01")  # not in the fleet
    log = []
    stats = run(fleet, sink, start=T0 + 600, duration_s=600, log=log.append)
    assert (stats.downlinks, stats.downlinks_rejected) == (1, 1)
    assert "24e1249999999999" in log[0]
    replies = [f for f in frames if f.kind == "reply"]
    assert [f.dev_eui for f in replies] == [target]
    (reply,) = decode(replies[0].payload, dialect="firmware").items
    assert (reply.result, reply.command) == ("success", "reporting_interval")
    later = [f for f in frames if f.time > T0 + 660 and f.kind == "periodic"]
    assert sum(f.dev_eui == target for f in later) >= 8  # every minute now
    assert sum(f.dev_eui != target for f in later) <= 1  # still every 10 minutes
    times = [f.time for f in frames]
    assert times == sorted(times)


def test_an_outage_loses_uplinks_that_come_back_as_retransmissions():
    frames = []
    fleet = Fleet(2, seed=1)
    apply_scenario(parse_scenario({"events": [
        {"type": "outage", "devices": [0], "start": "2m", "duration": "23m"}]}), fleet, T0)
    stats = run(fleet, CallbackSink(frames.append), start=T0, duration_s=40 * 60)
    assert stats.lost_uplinks >= 1
    cut = fleet.devices[0].dev_eui
    assert not any(f.dev_eui == cut and T0 + 120 <= f.time < T0 + 1500 for f in frames)
    resent = [f for f in frames if f.kind == "retransmission"]
    assert resent and all(f.dev_eui == cut and f.time >= T0 + 1500 for f in resent)
    stamps = [r.timestamp.timestamp() for f in resent
              for r in decode(f.payload, dialect="firmware").history]
    assert any(T0 + 120 <= s < T0 + 1500 for s in stamps)  # the data of the gap
    assert stats.uplinks_by_kind["retransmission"] == len(resent)


def test_ctrl_c_ends_the_run_with_stats():
    wall = FakeWall()

    def sleep(s):
        if len(wall.sleeps) == 30:
            raise KeyboardInterrupt
        wall.sleep(s)

    reports = []
    stats = run(Fleet(1), CallbackSink(lambda f: None), start=T0, duration_s=600, speed=60,
                clock=wall.clock, sleep=sleep, progress=reports.append)
    assert stats.interrupted and stats.simulated_s == 30
    assert reports[-1] is stats


def test_bad_arguments():
    with pytest.raises(ValueError, match="speed"):
        run(Fleet(1), CallbackSink(print), start=T0, duration_s=10, speed=0)
    with pytest.raises(ValueError, match="duration"):
        run(Fleet(1), CallbackSink(print), start=T0, duration_s=-1)


def test_iso_times_are_utc():
    from cth01.simulate.sinks import iso_utc
    assert iso_utc(T0) == "2025-01-01T00:00:00Z"
    assert datetime.fromisoformat(iso_utc(T0 + 1.5)) == datetime.fromtimestamp(T0 + 1.5, UTC)
