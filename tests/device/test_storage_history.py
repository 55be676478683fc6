"""Data storage, retransmission and history queries of the virtual CTH01, read against the user
guide ch. 4 ("Configure Data Storage & Retransmission") and ch. 5 ("Historical Data Query",
5b-5f) and the firmware rules: 20,000 records at most (oldest overwritten), 5e clears one
record type, 5f clears energy registers, lost periodic reports resent as `ed` records after a
rejoin paced by c5 02, point queries within ± the reporting interval, range queries of at most
300 records paced by c5 03. Every check reads the delivered frames back with cth01.protocol."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import pytest

from cth01.device import JoinRequest, LinkCheckRequest, Measurements
from cth01.device.storage import ALARM, MONTHLY_ENERGY, MONTHLY_EXTREMES, PERIODIC
from cth01.protocol import HistoryRecord, commands

from .harness import T0, Bench, Rx, of_kind

MIN, HOUR, DAY = 60, 3600, 86_400
LOAD_W = 230.0 * 10.0  # the bench's default load: 10 A at 230 V, PF 1, on every channel
ENERGY_ITEMS = ("imported_active_energy_ab", "imported_active_energy_cd")


def stamp(h: HistoryRecord) -> int:
    return int(h.timestamp.timestamp())


def replies(rxs: list[Rx]) -> list[tuple[str, str]]:
    return [(i.result, i.echo) for r in rxs for i in r.up.replies]


def history(rxs: list[Rx], kind: str = "history") -> list[HistoryRecord]:
    """The ed records of the uplinks of that kind; such uplinks carry nothing else."""
    out = []
    for r in of_kind(rxs, kind):
        assert r.up.items == (), r.up.items
        assert r.up.history, r
        out += r.up.history
    return out


def readings(energy_items: tuple) -> dict[str, int]:
    """imported_active_energy readings by channel ("ch7") or three-phase group total ("a")."""
    out: dict[str, int] = {}
    for item in energy_items:
        if item.command_name not in ENERGY_ITEMS:
            continue
        for g in item.energy_wh:
            if g.phase == "three":
                out[g.group] = g.total
            else:
                first = "abcd".index(g.group) * 3 + 1
                for k, v in enumerate(g.channels):
                    out[f"ch{first + k}"] = v
    return out


def small_records(interval_min: int = 2) -> list:
    """Settings for many small periodic records: temperature only, every `interval_min` min
    (the alarm interval set to 1 min first: it must stay shorter than the report interval)."""
    return [commands.set_alarm_settings(repeat_interval_min=1).items[0],
            commands.set_reporting_interval(minutes=interval_min).items[0],
            commands.set_report_parameters("temperature").items[0]]


# --- the 20,000-record flash ----------------------------------------------------------------

def test_at_most_20000_records_oldest_overwritten():
    # 2-minute reports (a 1-minute interval cannot be set: the alarm interval must be shorter
    # than the reporting interval and is at least 1 min) for 28 days: 20,160 records
    bench = Bench.joined(storage=True, settings=small_records(2))
    periodic = of_kind(bench.run(28 * DAY, step=2 * MIN), "periodic")
    times = [r.t for r in periodic]
    assert len(times) == 20_160
    assert all(b - a == 2 * MIN for a, b in pairwise(times))

    store = bench.device.storage
    assert len(store) == 20_000
    assert store.overwritten == len(times) - 20_000 == 160
    assert [r.timestamp for r in store] == times[-20_000:]  # the oldest 160 are gone

    # on the air: the oldest report is no longer there, the oldest kept one is
    rx = bench.downlink(commands.query_history_point("periodic", times[0]).payload)
    assert replies(rx) == [("write_error", "5b")]
    assert history(rx) == []
    rx = bench.downlink(commands.query_history_point("periodic", times[160]).payload)
    assert replies(rx) == [("success", "5b")]
    kept = history(rx)
    assert [(h.mode, stamp(h), h.items) for h in kept] == \
        [("target_time", times[160], periodic[160].up.items)]


# --- 5e: clear one record type ----------------------------------------------------------------

TYPES = {"alarm": ALARM, "periodic": PERIODIC, "monthly_energy": MONTHLY_ENERGY,
         "monthly_extremes": MONTHLY_EXTREMES}


@pytest.mark.parametrize("cleared", list(TYPES))
def test_clear_history_clears_one_type_only(cleared):
    # start two hours before the monthly summary (1st 00:00, UTC) to have all four types
    start = T0 + 30 * DAY + 22 * HOUR  # 2026-01-31 22:00 UTC
    bench = Bench.joined(storage=True, start=start)
    bench.downlink(commands.set_temperature_threshold(enabled=True, condition="above",
                                                      max_c=30).payload)
    bench.run(MIN, m=Measurements.constant(current_a=10.0, temperature_c=35.0))
    bench.run(3 * HOUR, step=10, m=Measurements.constant(current_a=10.0, temperature_c=25.0))
    store = bench.device.storage
    before = {name: len(store.of_type(t)) for name, t in TYPES.items()}
    assert all(before.values()), before

    rx = bench.downlink(commands.clear_history(cleared).payload)
    assert replies(rx) == [("success", "5e")]
    after = {name: len(store.of_type(t)) for name, t in TYPES.items()}
    assert after == {**before, cleared: 0}
    for name in TYPES:  # and on the air: only the cleared type is gone
        rx = bench.downlink(commands.query_history_range(name, start, bench.now).payload,
                            wait=1)
        assert replies(rx) == [("write_error" if name == cleared else "success", "5c")]
        bench.downlink(commands.stop_history_query(name).payload, wait=1)


# --- 5f: clear energy ---------------------------------------------------------------------------

ALL_READINGS = ["a", "b", *(f"ch{c}" for c in range(7, 13))]


@pytest.mark.parametrize(("channel", "reset"), [
    (0, ALL_READINGS),
    (2, ["a"]),  # channel 2 lies in three-phase group a: its group total is cleared
    (7, ["ch7"]),  # single-phase group c: that channel alone
    (12, ["ch12"]),
])
def test_clear_energy(channel, reset):
    bench = Bench.joined(three_phase="ab")
    first = of_kind(bench.run(HOUR, step=5), "periodic")[-1]
    e1 = readings(first.up.items)
    assert sorted(e1) == sorted(ALL_READINGS)
    bench.run(2 * MIN)
    t_clear = bench.now
    rx = bench.downlink(commands.clear_energy(channel).payload)
    assert [(r.t, r.up.replies[0].result, r.up.replies[0].echo) for r in rx] == \
        [(t_clear, "success", "5f")]
    nxt = of_kind(bench.run(10 * MIN), "periodic")[0]
    e2 = readings(nxt.up.items)
    for key in ALL_READINGS:
        power = LOAD_W * (3 if len(key) == 1 else 1)
        if key in reset:
            expected = power * (nxt.t - t_clear) / HOUR
        else:
            expected = e1[key] + power * (nxt.t - first.t) / HOUR
        assert abs(e2[key] - expected) <= 1, (key, e2[key], expected)


# --- retransmission after a network outage ------------------------------------------------------

STEP = 10  # coarse ticks: every timer still fires at its own second


@dataclass
class Outage:
    bench: Bench
    before: list[Rx]  # periodic reports delivered before the device lost the network
    join_t: int  # when the device was back on the network
    lost: list[int]  # the periodic report instants that never arrived
    rx: list[Rx]  # everything delivered from the outage on


def outage_of_one_hour(*, retransmission: bool = True, run_after: int = 2 * HOUR) -> Outage:
    bench = Bench.joined(storage=True)
    if not retransmission:
        bench.downlink(commands.set_retransmission(False).payload)
    before = of_kind(bench.run(HOUR, step=STEP), "periodic")
    start = bench.now + 100
    bench.network.outage(start, start + HOUR)
    rx = bench.run(HOUR + run_after, step=STEP)
    info = of_kind(rx, "info")
    assert len(info) == 4
    join_t = info[0].t
    interval = bench.device.settings.reporting_interval_s
    delivered = [r.t for r in before + of_kind(rx, "periodic") if r.t < join_t]
    grid = range(before[0].t, join_t + 1, interval)
    assert set(delivered) <= set(grid)
    lost = [t for t in grid if t > delivered[-1]]
    return Outage(bench, [r for r in before + of_kind(rx, "periodic") if r.t < join_t],
                  join_t, lost, rx)


def test_network_loss_detected_by_link_checks_then_rejoin_every_minute():
    o = outage_of_one_hour()
    first_lost = o.lost[0]
    outs = [x for x in o.bench.other if first_lost <= x.time < o.join_t]
    checks = [x.time for x in outs if isinstance(x, LinkCheckRequest)]
    joins = [x.time for x in outs if isinstance(x, JoinRequest)]
    # the report's link check and 4 more 10 s apart (link_checks = 4: sent 4 + 1 times)
    assert checks == [first_lost + 10 * k for k in range(5)]
    assert joins[0] == first_lost + 50
    assert all(b - a == 60 for a, b in pairwise(joins))
    assert o.join_t == joins[-1] + 5  # accepted once back in coverage
    assert len(o.lost) == 6


def test_retransmission_of_a_one_hour_outage():
    o = outage_of_one_hour()
    # the periodic reports after the rejoin go on on the same grid
    after = [r.t for r in of_kind(o.rx, "periodic") if r.t > o.join_t]
    interval = o.bench.device.settings.reporting_interval_s
    assert (after[0] - o.before[0].t) % interval == 0
    assert after[0] - interval == o.lost[-1]

    frames = of_kind(o.rx, "retransmission")
    assert [r.t for r in frames] == [o.join_t + 600 * (k + 1) for k in range(len(o.lost))]
    records = history(o.rx, "retransmission")
    assert [len(r.up.history) for r in frames] == [1] * len(o.lost)  # 127 B: one per uplink
    assert [stamp(h) for h in records] == o.lost
    last = o.before[-1]
    e_last = readings(last.up.items)
    for h in records:
        assert h.mode == "historical"
        assert h.kind is None
        assert [i.command_name for i in h.items] == last.names()
        same = [i for i in h.items if i.command_name not in ENERGY_ITEMS]
        assert same == [i for i in last.up.items if i.command_name not in ENERGY_ITEMS]
        e = readings(h.items)
        for key, v in e.items():
            assert abs(v - (e_last[key] + LOAD_W * (stamp(h) - last.t) / HOUR)) <= 1, (key, h)


def test_no_retransmission_when_it_is_disabled():
    o = outage_of_one_hour(retransmission=False)
    assert of_kind(o.rx, "retransmission") == []
    assert len(o.lost) == 6


@pytest.mark.parametrize("restart", ["reboot", "repower"])
def test_reboot_during_retransmission_resends_the_whole_set(restart):
    o = outage_of_one_hour(run_after=25 * MIN)  # stop after 2 of 6 retransmissions
    bench = o.bench
    assert len(of_kind(o.rx, "retransmission")) == 2
    if restart == "reboot":
        rx = bench.downlink(commands.reboot().payload, wait=1)
        assert replies(rx) == [("success", "be")]
    else:
        bench._handle(bench.device.power_off(bench.now))
        bench.run(MIN)
        bench._handle(bench.device.power_on(bench.now))
    rx = bench.run(3 * HOUR, step=STEP)
    join_t = of_kind(rx, "info")[0].t
    frames = of_kind(rx, "retransmission")
    assert [r.t for r in frames] == [join_t + 600 * (k + 1) for k in range(len(frames))]
    assert [stamp(h) for h in history(rx, "retransmission")] == o.lost


def test_second_outage_during_retransmission_only_the_newest_is_sent():
    o = outage_of_one_hour(run_after=25 * MIN)  # 2 of 6 retransmitted
    bench = o.bench
    start = bench.now + 100
    bench.network.outage(start, start + HOUR)
    rx = bench.run(HOUR + 6 * HOUR, step=STEP)
    join_t = of_kind(rx, "info")[0].t
    interval = bench.device.settings.reporting_interval_s
    delivered = [r.t for r in of_kind(o.rx + rx, "periodic") if r.t < join_t]
    lost2 = list(range(delivered[-1] + interval, join_t + 1, interval))
    assert len(lost2) == 6
    assert lost2[0] > start > o.lost[-1]
    frames = of_kind(rx, "retransmission")
    assert [r.t for r in frames] == [join_t + 600 * (k + 1) for k in range(len(lost2))]
    assert [stamp(h) for h in history(rx, "retransmission")] == lost2


@pytest.mark.parametrize("shift", [2 * HOUR, -2 * HOUR], ids=["ahead", "behind"])
def test_retransmission_with_a_set_device_clock_resends_exactly_the_lost_records(shift):
    bench = Bench.joined(storage=True)
    assert replies(bench.downlink(commands.set_time(bench.now + shift).payload)) == \
        [("success", "b7")]
    before = of_kind(bench.run(HOUR, step=STEP), "periodic")
    start = bench.now + 100
    bench.network.outage(start, start + HOUR)
    rx = bench.run(3 * HOUR, step=STEP)
    join_t = of_kind(rx, "info")[0].t
    delivered = [r.t for r in before + of_kind(rx, "periodic") if r.t < join_t]
    lost = list(range(delivered[-1] + 600, join_t + 1, 600))
    assert len(lost) == 6
    # stored with the set clock (the rejoin's time sync comes after the outage)
    assert [stamp(h) for h in history(rx, "retransmission")] == [t + shift for t in lost]


def test_retransmission_interval_is_configurable():
    bench = Bench.joined(storage=True)
    rx = bench.downlink(commands.set_retransmission_interval(300).payload)
    assert replies(rx) == [("success", "c502")]
    bench.run(HOUR, step=STEP)
    start = bench.now + 100
    bench.network.outage(start, start + HOUR)
    rx = bench.run(3 * HOUR, step=STEP)
    join_t = of_kind(rx, "info")[0].t
    assert [r.t for r in of_kind(rx, "retransmission")] == \
        [join_t + 300 * (k + 1) for k in range(6)]


# --- 5b: point query ----------------------------------------------------------------------------

@pytest.mark.parametrize(("base", "delta", "index"), [
    ("first", 0, 0), ("first", -600, 0), ("first", -601, None),
    ("k", 0, 5), ("k", 200, 5), ("k", -299, 5), ("k", 400, 6), ("k", -400, 4),
    ("last", 0, 11), ("last", 600, 11), ("last", 601, None),
])
def test_point_query_nearest_within_the_reporting_interval(base, delta, index):
    bench = Bench.joined(storage=True)
    periodic = of_kind(bench.run(2 * HOUR, step=MIN), "periodic")
    assert len(periodic) == 12  # every 10 min, the next one is due after the queries
    ref = {"first": periodic[0].t, "k": periodic[5].t, "last": periodic[-1].t}[base]
    rx = bench.downlink(commands.query_history_point("periodic", ref + delta).payload)
    assert of_kind(rx, "periodic") == []
    if index is None:
        assert replies(rx) == [("write_error", "5b")]
        assert [r.kind for r in rx] == ["reply"]
        return
    assert replies(rx) == [("success", "5b")]
    assert [r.kind for r in rx] == ["reply", "history"]
    assert [(h.mode, stamp(h), h.items) for h in history(rx)] == \
        [("target_time", periodic[index].t, periodic[index].up.items)]


# --- 5c: range query ----------------------------------------------------------------------------

@pytest.mark.parametrize("interval", [None, 300])
def test_range_query_at_most_300_records_paced(interval):
    bench = Bench.joined(storage=True, settings=small_records(2))
    periodic = of_kind(bench.run(820 * MIN, step=2 * MIN), "periodic")
    wanted = periodic[:400]
    if interval is not None:
        assert replies(bench.downlink(commands.set_retrieval_interval(interval).payload)) == \
            [("success", "c503")]
    pace = interval or 120
    t_query = bench.now
    rx = bench.downlink(commands.query_history_range("periodic", wanted[0].t,
                                                     wanted[-1].t).payload, wait=1)
    assert [r.t for r in of_kind(rx, "reply")] == [t_query]
    assert replies(rx) == [("success", "5c")]
    rx += bench.run(20 * pace, step=20)
    frames = of_kind(rx, "history")
    assert frames[0].t == t_query + 1  # the first one right after the reply
    assert all(b.t - a.t == pace for a, b in pairwise(frames))
    records = history(rx)
    assert [stamp(h) for h in records] == [r.t for r in wanted[:300]]  # oldest first
    assert all(h.items == r.up.items for h, r in zip(records, wanted, strict=False))
    # every uplink as many whole records as fit 222 B: 9-byte records, 24 a frame
    assert [len(f.frame.payload) for f in frames] == [216] * 12 + [108]
    assert [len(f.up.history) for f in frames] == [24] * 12 + [12]


def test_range_query_stopped_by_5d():
    bench = Bench.joined(storage=True, settings=small_records(2))
    periodic = of_kind(bench.run(820 * MIN, step=2 * MIN), "periodic")
    rx = bench.downlink(commands.query_history_range("periodic", periodic[0].t,
                                                     periodic[-1].t).payload, wait=1)
    rx += bench.run(2 * 120 + 30)
    assert len(of_kind(rx, "history")) == 3
    rx = bench.downlink(commands.stop_history_query("periodic").payload, wait=1)
    assert replies(rx) == [("success", "5d")]
    assert of_kind(bench.run(HOUR, step=10), "history") == []


def test_a_new_range_query_replaces_a_running_one():
    bench = Bench.joined(storage=True, settings=small_records(2))
    periodic = of_kind(bench.run(820 * MIN, step=2 * MIN), "periodic")
    first, second = periodic[:100], periodic[300:310]
    rx = bench.downlink(commands.query_history_range("periodic", first[0].t,
                                                     first[-1].t).payload, wait=1)
    rx += bench.run(2 * 120 + 30)  # 3 of 5 uplinks of the first query
    rx += bench.downlink(commands.query_history_range("periodic", second[0].t,
                                                      second[-1].t).payload, wait=1)
    rx += bench.run(HOUR, step=10)
    assert replies(rx) == [("success", "5c"), ("success", "5c")]
    assert [stamp(h) for h in history(rx)] == [r.t for r in first[:72] + second]


def test_range_query_start_after_end_is_a_parameter_error():
    bench = Bench.joined(storage=True)
    bench.run(HOUR, step=10)
    rx = bench.downlink(commands.query_history_range("periodic", bench.now - MIN,
                                                     bench.now - HOUR).payload)
    assert replies(rx) == [("write_parameter_error", "5c")]
    assert [r.kind for r in rx] == ["reply"]


def test_range_query_with_nothing_in_range_is_a_write_error():
    bench = Bench.joined(storage=True)
    bench.run(HOUR, step=10)
    rx = bench.downlink(commands.query_history_range("periodic", T0 - DAY, T0 - HOUR).payload)
    assert replies(rx) == [("write_error", "5c")]


@pytest.mark.parametrize("query", [
    commands.query_history_point("periodic", T0 + 65),
    commands.query_history_range("periodic", T0, T0 + 2 * HOUR),
], ids=["5b", "5c"])
def test_queries_with_storage_disabled_are_write_errors(query):
    bench = Bench.joined(storage=False)
    periodic = of_kind(bench.run(2 * HOUR, step=10), "periodic")
    assert periodic[0].t == T0 + 65
    assert len(bench.device.storage) == 0
    rx = bench.downlink(query.payload, wait=30)
    assert replies(rx) == [("write_error", query.hex()[:2])]
    assert [r.kind for r in rx if r.kind != "periodic"] == ["reply"]
