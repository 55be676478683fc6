"""Device time and the monthly data packet of the virtual CTH01, read against the user guide
ch. 4 ("Synchronize Device Time": DeviceTimeReq after joining and every 5 days since the last
sync) and ch. 5 ("Monthly Data Packet", c6/c7/6d/b8, "Historical Data Query") and the firmware
rules: the monthly summary at 6d LOCAL time (c7 offset + c6 DST), stamped in UTC, as `ed`
records (mode monthly) with 40 kind energy / minimum / maximum, energy = this month's
increase, 12 months kept; b7 sets the device clock and records are stamped with it. Every
check reads the delivered frames back with cth01.protocol."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from cth01.device import DeviceTimeRequest, Measurements
from cth01.device.network import MAC_ANSWER_DELAY_S
from cth01.device.storage import MONTHLY_ENERGY, MONTHLY_EXTREMES
from cth01.protocol import GroupReading, HistoryRecord, commands, items

from .harness import T0, Bench, Rx, of_kind

MIN, HOUR, DAY = 60, 3600, 86_400
BERLIN = ZoneInfo("Europe/Berlin")  # UTC+1 with the EU rule: the reference for c7 60 + c6 EU
EU_DST = commands.set_daylight_saving(enabled=True, bias_min=60, start=(3, 5, 7, 120),
                                      end=(10, 5, 7, 180))
CET = commands.set_time_zone(60)

PF = 0.9
LOAD = Measurements.constant(current_a=10.0, voltage_v=230.0, temperature_c=25.0,
                             thdi_pct=5.0, thdv_pct=2.0, unbalance_pct=1.5, power_factor=PF)
S_VA = 230.0 * 10.0
P_W = S_VA * PF
Q_VAR = S_VA * math.sqrt(1 - PF ** 2)


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def stamp(h: HistoryRecord) -> int:
    return int(h.timestamp.timestamp())


def local_first(year: int, month: int, hour: int = 0, minute: int = 0, day: int = 1) -> int:
    """The UTC instant of a Berlin wall time (the independent reference)."""
    return int(datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp())


def replies(rxs: list[Rx]) -> list[tuple[str, str]]:
    return [(i.result, i.echo) for r in rxs for i in r.up.replies]


def merged(rxs: list[Rx], kind: str) -> dict[tuple[int, str | None], list]:
    """The ed records of the uplinks of `kind`, by (timestamp, monthly kind), a record split
    over several uplinks joined again; each record's items in order."""
    out: dict[tuple[int, str | None], list] = {}
    for r in of_kind(rxs, kind):
        assert r.up.items == (), r.up.items
        for h in r.up.history:
            out.setdefault((stamp(h), h.kind), []).extend(h.items)
    return out


def grouped(channel: float, total: float) -> tuple[GroupReading, ...]:
    """Readings of groups a-d for a bench with group a three-phase."""
    return (GroupReading(group="a", phase="three", total=total),
            *(GroupReading(group=g, phase="single", channels=(channel,) * 3) for g in "bcd"))


def halves(cls_ab: type, cls_cd: type, field: str, channel: float, total: float) -> list:
    g = grouped(channel, total)
    return [cls_ab(**{field: g[:2]}), cls_cd(**{field: g[2:]})]


P, Q = round(P_W), round(Q_VAR)
EXTREMES = [
    items.Temperature(temperature_c=25.0),
    items.VoltageUnbalance(unbalance_pct=1.5),
    items.Thdi(thdi_pct=(5.0,) * 12),
    items.Thdv(thdv_pct=(2.0,) * 3),
    items.Current(current_a=(10.0,) * 12),
    items.Voltage(voltage_v=(230.0,) * 3),
    items.PowerFactor(power_factor_pct=grouped(90, 90)),
    *halves(items.ActivePowerAb, items.ActivePowerCd, "active_power_w", P, round(3 * P_W)),
    *halves(items.ReactivePowerAb, items.ReactivePowerCd, "reactive_power_var", Q,
            round(3 * Q_VAR)),
    *halves(items.ApparentPowerAb, items.ApparentPowerCd, "apparent_power_va", round(S_VA),
            round(3 * S_VA)),
]


# --- a year and a bit of life, 10-minute steps --------------------------------------------------

@dataclass
class Year:
    bench: Bench
    rx: list[Rx]  # everything delivered over the 13 months
    summaries: list[int]  # expected UTC instants of the 13 summaries
    query: list[Rx]  # the answer to a 5c monthly_energy range query over everything


@pytest.fixture(scope="module")
def year() -> Year:
    bench = Bench.joined(storage=True, three_phase="a", measurements=LOAD,
                         settings=[CET.items[0], EU_DST.items[0],
                                   commands.set_reporting_interval(minutes=1440).items[0]])
    bench.run(600 - (bench.now - T0) % 600)  # from now on the ticks fall on whole 10 min
    rx = bench.run(ts(2027, 2, 10) - bench.now, step=600)
    summaries = [local_first(2026 + (m // 12), m % 12 + 1) for m in range(1, 14)]
    query = bench.downlink(commands.query_history_range("monthly_energy", T0,
                                                        bench.now).payload, wait=1)
    query += bench.run(2 * HOUR, step=MIN)
    return Year(bench, rx, summaries, query)


def test_thirteen_summaries_at_local_midnight_of_the_1st(year):
    got = sorted({t for t, _ in merged(year.rx, "monthly")})
    assert got == year.summaries
    # UTC 23:00 the day before in winter, 22:00 in summer (CEST)
    hours = [datetime.fromtimestamp(t, UTC).hour for t in got]
    assert hours == [23, 23, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 23]
    assert [datetime.fromtimestamp(t, BERLIN).replace(tzinfo=None) for t in got] == \
        [datetime(2026 + m // 12, m % 12 + 1, 1) for m in range(1, 14)]
    frames = of_kind(year.rx, "monthly")
    firsts = sorted({min(r.t for r in frames if stamp(r.up.history[0]) == t) for t in got})
    assert firsts == got  # each summary goes out at its instant
    for r in frames:
        assert {h.mode for h in r.up.history} == {"monthly"}


def test_each_summary_has_energy_minimum_and_maximum(year):
    records = merged(year.rx, "monthly")
    assert sorted(records) == sorted((t, k) for t in year.summaries
                                     for k in ("energy", "minimum", "maximum"))


def test_monthly_energy_is_this_months_increase(year):
    records = merged(year.rx, "monthly")
    previous = T0 + 1  # energy counts from the first second after power-on
    for t in year.summaries:
        hours = (t - previous) / HOUR
        energy = {i.command_name: i for i in records[(t, "energy")]}
        for name, field, power in (
                ("imported_active_energy", "energy_wh", P_W),
                ("exported_active_energy", "energy_wh", 0.0),
                ("imported_reactive_energy", "energy_varh", Q_VAR),
                ("exported_reactive_energy", "energy_varh", 0.0),
                ("apparent_energy", "energy_vah", S_VA)):
            readings = [*getattr(energy[f"{name}_ab"], field),
                        *getattr(energy[f"{name}_cd"], field)]
            assert readings[0].phase == "three"
            assert abs(readings[0].total - 3 * power * hours) <= 1, (t, name)
            for g in readings[1:]:
                for v in g.channels:
                    assert abs(v - power * hours) <= 1, (t, name, v, power * hours)
        previous = t


def test_monthly_minimum_and_maximum_are_the_constant_values(year):
    records = merged(year.rx, "monthly")
    for t in year.summaries:
        assert records[(t, "minimum")] == EXTREMES, datetime.fromtimestamp(t, UTC)
        assert records[(t, "maximum")] == EXTREMES, datetime.fromtimestamp(t, UTC)


def test_only_twelve_monthly_records_of_each_kind_are_kept(year):
    store = year.bench.device.storage
    kept = {k: [r.timestamp for r in store.of_type(t) if r.kind == k]
            for t, k in ((MONTHLY_ENERGY, "energy"), (MONTHLY_EXTREMES, "minimum"),
                         (MONTHLY_EXTREMES, "maximum"))}
    assert kept == {k: year.summaries[1:] for k in ("energy", "minimum", "maximum")}
    # on the air: the range query over everything returns the newest twelve months
    assert replies(year.query) == [("success", "5c")]
    answered = merged(year.query, "history")
    assert sorted(answered) == [(t, "energy") for t in year.summaries[1:]]
    delivered = merged(year.rx, "monthly")
    for key, got in answered.items():
        assert got == delivered[key]


def test_monthly_uplinks_go_out_one_after_another(year):
    times = [r.t for r in of_kind(year.rx, "monthly") if stamp(r.up.history[0]) ==
             year.summaries[0]]
    assert len(times) >= 3
    assert times == list(range(times[0], times[0] + len(times)))


def test_device_time_request_after_join_and_every_5_days_since_the_last_sync(year):
    asks = [o.time for o in year.bench.other if isinstance(o, DeviceTimeRequest)]
    assert asks[0] == T0 + 5  # at the join (JoinAccept 5 s after the JoinRequest at T0)
    synced = [t + MAC_ANSWER_DELAY_S for t in asks]
    assert [b - a for a, b in zip(synced, asks[1:], strict=False)] == [5 * DAY] * (len(asks) - 1)
    assert len(asks) == (year.bench.now - T0) // (5 * DAY + MAC_ANSWER_DELAY_S) + 1


# --- 6d: another summary time ----------------------------------------------------------------

@pytest.mark.parametrize("start", [ts(2026, 1, 10), ts(2026, 7, 10)], ids=["winter", "summer"])
def test_monthly_summary_time_15th_09_30_local(start):
    bench = Bench.joined(start=start, measurements=LOAD,
                         settings=[CET.items[0], EU_DST.items[0]])
    rx = bench.downlink(commands.set_monthly_summary_time(day=15, hour=9, minute=30).payload)
    assert replies(rx) == [("success", "6d")]
    rx = bench.run(7 * DAY, step=600)
    month = datetime.fromtimestamp(start, UTC).month
    expected = local_first(2026, month, 9, 30, day=15)
    assert datetime.fromtimestamp(expected, UTC).hour == (8 if month == 1 else 7)
    records = merged(rx, "monthly")
    assert sorted(records) == [(expected, k) for k in ("energy", "maximum", "minimum")]
    assert min(r.t for r in of_kind(rx, "monthly")) == expected


@pytest.mark.parametrize(("record_type", "offset", "kinds"), [
    ("monthly_energy", 0, ["energy"]),
    ("monthly_extremes", 10 * DAY, ["minimum", "maximum"]),
    ("monthly_extremes", -16 * DAY, ["minimum", "maximum"]),
    ("monthly_energy", 16 * DAY + 1, None),
])
def test_point_query_of_a_month_within_16_days(record_type, offset, kinds):
    bench = Bench.joined(storage=True, start=ts(2026, 1, 31, 20), measurements=LOAD,
                         three_phase="a", settings=[CET.items[0], EU_DST.items[0]])
    rx = bench.run(4 * HOUR, step=MIN)
    summary = local_first(2026, 2)
    assert sorted({t for t, _ in merged(rx, "monthly")}) == [summary]
    rx = bench.downlink(commands.query_history_point(record_type, summary + offset).payload,
                        wait=10)
    if kinds is None:
        assert replies(rx) == [("write_error", "5b")]
        return
    assert replies(rx) == [("success", "5b")]
    got = merged(rx, "history")
    assert sorted(got) == sorted((summary, k) for k in kinds)
    assert {h.mode for r in of_kind(rx, "history") for h in r.up.history} == {"target_time"}
    if "minimum" in kinds:
        assert got[(summary, "minimum")] == got[(summary, "maximum")] == EXTREMES


# --- b8 and b7 -----------------------------------------------------------------------------

def test_b8_asks_the_network_time_at_once():
    bench = Bench.joined()
    bench.run(HOUR, step=10)
    first = len(bench.other)
    t = bench.now
    rx = bench.downlink(commands.sync_time().payload)
    assert [(r.t, *replies([r])) for r in rx] == [(t, ("success", "b8"))]
    assert [o for o in bench.other[first:] if isinstance(o, DeviceTimeRequest)] == \
        [DeviceTimeRequest(bench.device.dev_eui, t)]


def test_b7_sets_the_clock_records_are_stamped_with_it_and_b8_puts_it_back():
    bench = Bench.joined(storage=True)
    bench.run(15 * MIN, step=5)
    shift = 3 * DAY + 1234
    rx = bench.downlink(commands.set_time(bench.now + shift).payload)
    assert replies(rx) == [("success", "b7")]
    report = of_kind(bench.run(10 * MIN, step=5), "periodic")[0]

    # the stored record carries the set clock: found at the shifted instant only
    rx = bench.downlink(commands.query_history_point("periodic", report.t + shift).payload)
    assert replies(rx) == [("success", "5b")]
    records = [h for r in of_kind(rx, "history") for h in r.up.history]
    assert [(stamp(h), h.items) for h in records] == [(report.t + shift, report.up.items)]
    # (the report before the b7 lies 601 s before report.t + 1: out of the tolerance)
    rx = bench.downlink(commands.query_history_point("periodic", report.t + 1).payload)
    assert replies(rx) == [("write_error", "5b")]

    # b8: the network time again; the next record is stamped with true time
    assert replies(bench.downlink(commands.sync_time().payload)) == [("success", "b8")]
    report = of_kind(bench.run(10 * MIN, step=5), "periodic")[0]
    rx = bench.downlink(commands.query_history_point("periodic", report.t).payload)
    records = [h for r in of_kind(rx, "history") for h in r.up.history]
    assert [(stamp(h), h.items) for h in records] == [(report.t, report.up.items)]


def test_b7_moves_the_monthly_summary_to_the_set_local_time():
    bench = Bench.joined(start=ts(2026, 1, 10), measurements=LOAD,
                         settings=[CET.items[0], EU_DST.items[0]])
    bench.run(5 * MIN)
    t_set = bench.now
    # one minute before local midnight of Feb 1 on the device's clock
    rx = bench.downlink(commands.set_time(local_first(2026, 2) - MIN).payload, wait=1)
    assert replies(rx) == [("success", "b7")]
    rx = bench.run(5 * MIN)
    frames = of_kind(rx, "monthly")
    assert min(r.t for r in frames) == t_set + MIN
    assert sorted(merged(rx, "monthly")) == \
        [(local_first(2026, 2), k) for k in ("energy", "maximum", "minimum")]
