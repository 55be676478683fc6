"""Energy per channel, the local calendar, tariffs, the time-of-use split, the fleet overview,
login sessions and the dashboard's tables — the store on both engines (SQLite file, real
PostgreSQL), tariff.py and templates.py alone.

Every expected number is worked out by hand in the test (counter series written out, hours of
peak counted on the calendar), not by calling the code under test a second way."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cth01.hub import downlinks
from cth01.hub.config import ConfigError, load_config
from cth01.hub.envelope import Envelope, uplink_key
from cth01.hub.pipeline import Pipeline
from cth01.hub.reports import device_status, energy_report, overview
from cth01.hub.store import SESSION_S, NameTaken
from cth01.hub.tariff import (
    TariffError,
    day_bounds,
    energy_cost,
    minute_of_week,
    month_bounds,
    offset_segments,
    parse_tariff,
)
from cth01.hub.templates import TemplateError, command_for, validate_settings
from cth01.protocol import GroupReading, HistoryRecord, Uplink, commands, encode_uplink, items

BERLIN = ZoneInfo("Europe/Berlin")
S = 1_790_000_400  # 2026-09-21 14:20:00 UTC, a period start in the energy tests
EUI = {k: f"24e12400000000{k:02x}" for k in range(1, 9)}
TOU = {"name": "Office", "currency": "EUR", "kind": "tou", "price_per_kwh": 0.20,
       "bands": [{"name": "peak", "price_per_kwh": 0.30, "days": [0, 1, 2, 3, 4],
                  "start": "08:00", "end": "20:00"}]}


# --- helpers (also used by test_api_dashboard) -------------------------------------------------

def envelope(eui: str, t: float, payload: bytes) -> Envelope:
    return Envelope(source="fleet", dev_eui=eui, received_at=float(t), f_port=85, f_cnt=None,
                    payload=payload, key=uplink_key(eui, None, t, payload))


def ab_energy(ch1, ch2, ch3, b_total) -> bytes:
    """Imported energy of group a (single-phase, channels 1-3; None = the device's "no data")
    and group b (three-phase: one total, stored on channel 4)."""
    return encode_uplink([items.ImportedActiveEnergyAb(energy_wh=(
        GroupReading(group="a", phase="single", channels=(ch1, ch2, ch3)),
        GroupReading(group="b", phase="three", total=b_total)))])


def monthly_summary(ts: int, ch1: int, ch2: int, ch3: int, b_total: int) -> bytes:
    """A monthly energy record (`ed` mode monthly, kind energy) stamped at `ts`."""
    rec = HistoryRecord(mode="monthly", kind="energy", timestamp=datetime.fromtimestamp(ts, UTC),
                        items=(items.ImportedActiveEnergyAb(energy_wh=(
                            GroupReading(group="a", phase="single", channels=(ch1, ch2, ch3)),
                            GroupReading(group="b", phase="three", total=b_total))),))
    return encode_uplink(Uplink(dialect="firmware", history=(rec,)))


def feed(store, frames, pipeline: Pipeline | None = None) -> None:
    """Store (eui, t, payload) frames through the hub's pipeline, in one transaction."""
    envelopes = [envelope(eui, t, payload) for eui, t, payload in frames]
    store.write((pipeline or Pipeline()).process(envelopes),
                now=max(e.received_at for e in envelopes))


def energy_of(store, start: int, end: int, **kwargs) -> dict[tuple[str, int], float]:
    return {(r["dev_eui"], r["channel"]): r["energy"]
            for r in store.energy(start=start, end=end, **kwargs)}


def hourly_kwh(eui: str, start: int, end: int, reset_at: int | None = None):
    """A reading at every whole UTC hour from an hour before `start` to `end`, the channel 1
    counter growing 1000 Wh an hour (1 kW); at `reset_at` the counter was cleared during the
    hour before, so it reads 1000 there and grows from that."""
    counter = 50_000
    for t in range(start - 3600, end + 1, 3600):
        counter = 1000 if t == reset_at else counter + 1000
        yield eui, t, ab_energy(counter, 7, 9, 11)


# --- energy per channel ------------------------------------------------------------------------

def test_energy_is_taken_channel_by_channel(store):
    """Counters missing from single readings (the device's "no data", split reports), devices
    first heard in the period, silent periods, resets, three-phase groups — each by hand."""
    E = S + 3600
    a = [(-1200, 1000, 2000, 3000, 4000),
         (-600, 1010, None, 3010, 4010),     # channel 2 missing in the last reading before S
         (600, 1100, 2100, 3100, 4100),
         (1200, 1200, 2200, None, 4200),     # channel 3 missing from here to the end, longer
         (1800, 1300, 2300, None, 4300),     # than the readings looked at first
         (2400, 1400, 2400, None, 4400),
         (3000, 1500, None, None, 4500),     # channel 2 missing in the last reading
         (3600, 1600, 2600, 3600, 4600)]     # at E: not in the period
    b = [(1000, 500, 600, 700, 800), (2000, 550, 650, 750, 850)]  # first heard in the period
    c = [(-600, 10, 20, 30, 40), (4000, 11, 21, 31, 41)]            # silent in the period
    e = [(900, 70, 80, 90, 100)]                                    # one reading only
    f = [(-3000, 100, 5, 5, 5), (-2400, None, 6, 6, 6), (-1800, None, 7, 7, 7),
         (-1200, None, 8, 8, 8), (-600, None, 9, 9, 9), (600, 150, 10, 10, 10)]
    frames = [(EUI[k], S + t, ab_energy(*v)) for k, rows in ((1, a), (2, b), (3, c), (5, e),
                                                              (6, f)) for t, *v in rows]
    feed(store, sorted(frames, key=lambda fr: fr[1]))
    # device 4: a counter reset in the period (1000 -> 1100, cleared, -> 20 -> 70)
    feed(store, [(EUI[4], S + t, ab_energy(v, 1, 1, 1)) for t, v in
                 ((-600, 1000), (600, 1100), (1200, 20), (1800, 70))])

    got = energy_of(store, S, E)
    assert got == {
        (EUI[1], 1): 1500 - 1010, (EUI[1], 2): 2400 - 2000, (EUI[1], 3): 3100 - 3010,
        (EUI[1], 4): 4500 - 4010,                      # group b: its total, on channel 4
        (EUI[2], 1): 50, (EUI[2], 2): 50, (EUI[2], 3): 50, (EUI[2], 4): 50,
        (EUI[4], 1): (1100 - 1000) + 70, (EUI[4], 2): 0, (EUI[4], 3): 0, (EUI[4], 4): 0,
        (EUI[5], 1): 0, (EUI[5], 2): 0, (EUI[5], 3): 0, (EUI[5], 4): 0,  # data: 0, not absent
        (EUI[6], 1): 150 - 100, (EUI[6], 2): 1, (EUI[6], 3): 1, (EUI[6], 4): 1}
    # channels 5, 6 (three-phase group b) and 7-12 (no cd item) have no data: absent, and
    # device 3 (readings before and after, none in the period) is absent, not 0
    assert not any(eui == EUI[3] for eui, _ in got)
    assert energy_of(store, S, E, dev_euis=[EUI[1], EUI[3]]) == {
        k: v for k, v in got.items() if k[0] == EUI[1]}
    assert energy_of(store, S, E, dev_euis=[]) == {}
    assert energy_of(store, S + 4100, S + 5000) == {}  # nobody reported then
    counters = {(c.dev_eui, c.channel): c for c in store.counters(start=S, end=E)}
    assert (counters[(EUI[4], 1)].base, counters[(EUI[4], 1)].last,
            counters[(EUI[4], 1)].resets) == (1000, 70, 1100)


def test_monthly_summaries_match_the_month_they_end(store):
    end = month_bounds(2026, 2, BERLIN)[1]
    feed(store, [(EUI[1], end + 1800, monthly_summary(end + 1800, 100, 200, 300, 400)),
                 (EUI[2], end + 7200, monthly_summary(end + 7200, 1, 2, 3, 4))])
    got = store.monthly_summaries(end=end)
    # device 1's record is 30 min after the month's end: its summary; device 2's is 2 h off
    assert got == {(EUI[1], 1): 100, (EUI[1], 2): 200, (EUI[1], 3): 300, (EUI[1], 4): 400}
    assert store.monthly_summaries(end=end, dev_euis=[EUI[2]]) == {}
    assert store.query("SELECT count(*) FROM monthly_reading")[0][0] == 2


# --- the local calendar -----------------------------------------------------------------------

def test_local_days_and_months_follow_daylight_saving():
    spring = day_bounds(date(2026, 3, 29), BERLIN)
    autumn = day_bounds(date(2026, 10, 25), BERLIN)
    assert spring == (int(datetime(2026, 3, 28, 23, tzinfo=UTC).timestamp()),
                      int(datetime(2026, 3, 29, 22, tzinfo=UTC).timestamp()))
    assert spring[1] - spring[0] == 23 * 3600 and autumn[1] - autumn[0] == 25 * 3600
    assert day_bounds(date(2026, 7, 1), ZoneInfo("UTC")) == (1782864000, 1782950400)
    # Santiago skips midnight on 2022-09-11: the day starts at 01:00, 23 hours long
    s0, s1 = day_bounds(date(2022, 9, 11), ZoneInfo("America/Santiago"))
    assert datetime.fromtimestamp(s0, ZoneInfo("America/Santiago")).hour == 1
    assert s1 - s0 == 23 * 3600
    start, end = month_bounds(2026, 3, BERLIN)
    assert (end - start) // 3600 == 31 * 24 - 1
    assert month_bounds(2026, 12, BERLIN)[1] == int(datetime(2026, 12, 31, 23,
                                                             tzinfo=UTC).timestamp())
    segments = offset_segments(start, end, BERLIN)
    switch = int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp())  # 02:00 CET -> 03:00 CEST
    assert segments == [(start, 3600), (switch, 7200)]
    assert minute_of_week(switch - 1, segments) == 6 * 1440 + 1 * 60 + 59  # Sunday 01:59
    assert minute_of_week(switch, segments) == 6 * 1440 + 3 * 60  # Sunday 03:00
    assert offset_segments(0, 86400, ZoneInfo("UTC")) == [(0, 0)]


def test_the_time_zone_option_is_an_iana_name():
    assert load_config(env={"CTH01_TIMEZONE": "America/New_York"}).timezone == \
        "America/New_York"
    assert load_config(env={}).timezone == "UTC"
    for bad in ("Mars/Olympus", "CET+1", "../../etc/passwd", ""):
        with pytest.raises(ConfigError) as err:
            load_config(env={"CTH01_TIMEZONE": bad})
        assert err.value.name == "timezone" and "IANA" in err.value.reason


# --- tariffs ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"kind": "fixed"}, "kind", "must be one of flat, tou"),
    ({"price_per_kwh": None}, "price_per_kwh", "minutes of the week are in no band (the "
                                               "first: Mon 00:00)"),
    ({"bands": [{"name": "peak", "price_per_kwh": -0.1, "days": [0], "start": "08:00",
                 "end": "20:00"}]}, "bands[0].price_per_kwh", "≥ 0"),
    ({"bands": [{"name": "peak", "price_per_kwh": 0.3, "days": [7], "start": "08:00",
                 "end": "20:00"}]}, "bands[0].days", "7 is not a weekday 0-6"),
    ({"bands": [{"name": "peak", "price_per_kwh": 0.3, "days": [0], "start": "8:00",
                 "end": "20:00"}]}, "bands[0].start", "must be a time \"HH:MM\""),
    ({"bands": [{"name": "peak", "price_per_kwh": 0.3, "days": [0], "start": "08:00",
                 "end": "24:30"}]}, "bands[0].end", "is not a time of day"),
    ({"bands": [{"name": "a", "price_per_kwh": 0.3, "days": [0], "start": "08:00",
                 "end": "20:00"},
                {"name": "b", "price_per_kwh": 0.1, "days": [0], "start": "09:00",
                 "end": "10:00"}]}, "bands[1]", "never applies"),
    ({"bands": [{"name": "*", "price_per_kwh": 0.1}]}, "price_per_kwh", "given twice"),
    ({"bands": []}, "bands", "non-empty list"),
    ({"currency": ""}, "currency", "non-empty"),
    ({"colour": "red"}, "tariff", "unknown field(s) colour"),
])
def test_bad_tariffs_are_refused_with_the_field_and_reason(change, field, reason):
    with pytest.raises(TariffError) as err:
        parse_tariff({**TOU, **change})
    assert err.value.field == field and reason in err.value.reason


def test_time_of_use_bands_first_match_wins_overnight_and_default():
    t = parse_tariff({"name": "x", "currency": "EUR", "kind": "tou", "bands": [
        {"name": "peak", "price_per_kwh": 0.4, "days": [0, 1, 2, 3, 4], "start": "17:00",
         "end": "20:00"},
        {"name": "day", "price_per_kwh": 0.3, "days": [0, 1, 2, 3, 4], "start": "07:00",
         "end": "23:00"},  # overlaps peak: peak wins 17-20
        {"name": "*", "price_per_kwh": 0.2},
        {"name": "night", "price_per_kwh": 0.1, "days": [6], "start": "22:00",
         "end": "06:00"}]})  # Sunday night runs into Monday morning
    at = {(d, h): t.band_at(datetime(2026, 3, 2 + d, h, 30)) for d in range(7)
          for h in range(24)}  # 2026-03-02 is a Monday
    assert at[(0, 18)] == "peak" and at[(0, 16)] == "day" and at[(4, 22)] == "day"
    assert at[(0, 5)] == "night" and at[(0, 6)] == "*" and at[(6, 23)] == "night"
    assert at[(5, 23)] == "*" and at[(6, 21)] == "*"
    assert sum(1 for v in at.values() if v == "peak") == 5 * 3
    assert sum(1 for v in at.values() if v == "night") == 8
    assert t.to_dict()["price_per_kwh"] == 0.2 and len(t.to_dict()["bands"]) == 3
    segments = t.segments()
    assert segments[0] == (0, 360, "night") and segments[-1][1] == 7 * 1440
    assert all(a[1] == b[0] for a, b in pairwise(segments))
    # 10 kWh: 2 peak, 5 day, 3 default -> 0.8 + 1.5 + 0.6
    assert energy_cost(t, 10, {"peak": 2, "day": 5, "*": 3}) == pytest.approx(2.9)
    flat = parse_tariff({"name": "f", "currency": "CHF", "kind": "flat", "price_per_kwh": 0.25,
                         "bands": [], "standing_charge_per_month": 9})
    assert energy_cost(flat, 12, None) == 3.0 and flat.to_dict()["standing_charge_per_month"] == 9


def test_time_of_use_split_by_local_time_across_daylight_saving(store):
    """Sunday 2026-03-29 (23 h: clocks go forward) and Monday 30 in Berlin, a reading every
    hour, 1 kWh each: Sunday is all default (23 kWh); on Monday the readings at 08:00 ... 19:00
    are peak (12 kWh) and the other 12 default. Device 2 has the same load but its counter
    was cleared on Monday before 10:00 — the same split."""
    t = parse_tariff(TOU)
    start, end = day_bounds(date(2026, 3, 29), BERLIN)[0], day_bounds(date(2026, 3, 30),
                                                                        BERLIN)[1]
    reset = int(datetime(2026, 3, 30, 10, tzinfo=BERLIN).timestamp())
    feed(store, hourly_kwh(EUI[1], start, end))
    feed(store, hourly_kwh(EUI[2], start, end, reset_at=reset))
    counters = store.counters(start=start, end=end)
    segments = t.segments()
    slots = store.energy_by_week_slot(counters, start=start, end=end,
                                      column="imported_active_wh",
                                      offsets=offset_segments(start, end, BERLIN),
                                      edges=[b for _, b, _ in segments])
    for k in (1, 2):
        did = store.device_id(EUI[k])
        bands: dict[str, float] = {}
        for slot, wh in slots[(did, 1)].items():
            bands[segments[slot][2]] = bands.get(segments[slot][2], 0) + wh
        assert bands == {"*": 35_000, "peak": 12_000}, k
        assert slots[(did, 4)] == {0: 0.0} or sum(slots[(did, 4)].values()) == 0


_PROPERTY_DEVICES = iter(range(0x100, 0x100000))  # a new device for each example


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(zone=st.sampled_from(["Europe/Berlin", "UTC", "Asia/Kolkata", "Australia/Sydney"]),
       day=st.sampled_from([date(2026, 3, 29), date(2026, 10, 25), date(2026, 4, 5),
                            date(2026, 10, 4)]),  # Sundays of DST changes: a week begins
       bands=st.lists(st.tuples(st.sets(st.integers(0, 6), min_size=1),
                                st.integers(0, 47), st.integers(0, 47)), min_size=1,
                      max_size=3),
       steps=st.lists(st.tuples(st.integers(300, 10_800), st.integers(0, 5000),
                                st.booleans()), min_size=24, max_size=60))  # ~2 days
def test_time_of_use_split_equals_reading_by_reading(store, zone, day, bands, steps):
    """The split by runs of a slot gives each band what adding up the counter's increases
    reading by reading gives it (an increase to the band at the later reading's local time; a
    counter that went down restarted from 0): readings at random times around a DST change,
    random bands on the half hour, random counter resets."""
    z = ZoneInfo(zone)
    doc = {"name": "p", "currency": "EUR", "kind": "tou", "price_per_kwh": 0.1, "bands": [
        {"name": f"b{k}", "price_per_kwh": 0.2, "days": sorted(days),
         "start": f"{a // 2:02d}:{a % 2 * 30:02d}", "end": f"{b // 2:02d}:{b % 2 * 30:02d}"}
        for k, (days, a, b) in enumerate(bands)]}
    try:
        tariff = parse_tariff(doc)
    except TariffError:
        assume(False)
    start, end = day_bounds(day, z)[0], day_bounds(date.fromordinal(day.toordinal() + 1), z)[1]
    eui = f"24e1240000{next(_PROPERTY_DEVICES):06x}"
    t, value, readings = start - 1800, 10_000, []
    for gap, increase, reset in steps:
        t += gap
        value = increase if reset else value + increase  # reset: cleared, then grew again
        readings.append((t, value))
    feed(store, [(eui, ts, ab_energy(v, 0, 0, 0)) for ts, v in readings])
    counters = [c for c in store.counters(start=start, end=end, dev_euis=[eui])
                if c.channel == 1]
    assume(counters)  # some reading in the period
    offsets = offset_segments(start, end, z)
    edges = [b for _, b, _ in tariff.segments()]
    got = store.energy_by_week_slot(counters, start=start, end=end,
                                    column="imported_active_wh", offsets=offsets,
                                    edges=edges)[(counters[0].device_id, 1)]
    want: dict[int, float] = {}
    prev = counters[0].base
    for ts, v in readings:
        if start <= ts < end:
            slot = bisect_right(edges, minute_of_week(ts, offsets))
            want[slot] = want.get(slot, 0) + (v - prev if v >= prev else v)
            prev = v
    for slot in set(got) | set(want):
        assert got.get(slot, 0) == pytest.approx(want.get(slot, 0)), slot


# --- the fleet overview and latest values ------------------------------------------------------

def test_latest_merges_split_reports_and_overview_status(store):
    now = S + 3000
    power_ab = items.ActivePowerAb(active_power_w=(
        GroupReading(group="a", phase="single", channels=(100, 200, 300)),
        GroupReading(group="b", phase="three", total=4000)))
    power_cd = items.ActivePowerCd(active_power_w=(
        GroupReading(group="c", phase="single", channels=(1, 2, 3)),
        GroupReading(group="d", phase="single", channels=(10, 20, 30))))
    feed(store, [
        (EUI[1], now - 1300, encode_uplink([items.Temperature(temperature_c=20.5), power_ab])),
        (EUI[1], now - 700, encode_uplink([items.Temperature(temperature_c=21.5), power_ab])),
        # the next report split over two uplinks 30 s apart: two rows
        (EUI[1], now - 100, encode_uplink([items.Temperature(temperature_c=22.5)])),
        (EUI[1], now - 70, encode_uplink([power_cd])),
        (EUI[2], now - 4000, encode_uplink([power_ab])),  # unheard for > 3 intervals
        (EUI[3], now - 200, encode_uplink([power_cd])),
    ])
    store.update_device(EUI[4], name="spare")  # registered, never heard
    with store.transaction("alarm") as cur:
        did = store.device_id(EUI[3])
        cur.execute(store._q("INSERT INTO alarm (device_id, alarm_key, item, channel, "
                             "condition, status, first_at, last_at, count) VALUES "
                             "(?, 'k', 'current_alarm', 1, 'above_threshold', 'active', ?, ?, 1)"),
                    (did, now, now))
    latest = store.latest(EUI[1])
    assert latest["ts"] == now - 70
    v = latest["values"]
    # temperature of the newest row, cd power of the newest, ab power from the row before
    assert v["temperature_c"] == 22.5 and v["c7_active_power_w"] == 1
    assert v["c1_active_power_w"] == 100 and v["c4_active_power_w"] == 4000
    assert "c5_active_power_w" not in v and "c1_imported_active_wh" not in v
    assert store.latest("ffffffffffffffff") is None

    rows = {r["dev_eui"]: r for r in overview(store, now=now, zone=BERLIN)}
    assert {e: r["status"] for e, r in rows.items()} == {
        EUI[1]: "online", EUI[2]: "offline", EUI[3]: "alarm", EUI[4]: "never"}
    assert rows[EUI[1]]["total_power_w"] == 100 + 200 + 300 + 4000 + 1 + 2 + 3 + 10 + 20 + 30
    assert rows[EUI[2]]["total_power_w"] == 4600 and rows[EUI[4]]["total_power_w"] is None
    assert rows[EUI[3]]["active_alarms"] == 1 and rows[EUI[4]]["today_kwh"] is None
    # device 1: 4 readings in 24 h, first 1300 s ago -> 1300 // 600 + 1 = 3 expected
    assert rows[EUI[1]]["completeness"] == 1.0
    assert rows[EUI[2]]["completeness"] == round(1 / (4000 // 600 + 1), 4)  # silent since
    assert device_status({"last_seen": None, "joined_at": now - 10, "active_alarms": 0,
                          "interval_s": 600}, now) == "online"


def test_overview_today_is_energy_since_local_midnight(store):
    midnight = day_bounds(date(2026, 3, 30), BERLIN)[0]  # 22:00 UTC the day before
    feed(store, [(EUI[1], midnight - 600, ab_energy(1000, 0, 0, 500)),
                 (EUI[1], midnight + 600, ab_energy(1400, 0, 0, 600)),
                 (EUI[1], midnight + 1200, ab_energy(1900, 0, 0, 700))])
    rows = overview(store, now=midnight + 1500, zone=BERLIN)
    # since midnight: channel 1 1900 - 1000, channel 4 700 - 500 (the reading before counts)
    assert rows[0]["today_kwh"] == pytest.approx((900 + 200) / 1000)
    assert overview(store, now=midnight + 1500, zone=ZoneInfo("Asia/Tokyo"))[0][
        "today_kwh"] == pytest.approx((900 + 200) / 1000)  # Tokyo's day began at 15:00 UTC


# --- the monthly report -----------------------------------------------------------------------

def test_energy_report_uses_device_summaries_and_splits_bands(store):
    start, end = month_bounds(2026, 3, BERLIN)
    feed(store, hourly_kwh(EUI[1], start, end - 3600))  # 743 readings, 1 kWh each
    feed(store, [(EUI[1], end, monthly_summary(end, 800_000, 0, 0, 0))])  # the device says 800
    feed(store, hourly_kwh(EUI[2], start, end - 3600))
    store.update_device(EUI[2], tenant="Bakery", channels={1: {"circuit": "Oven"},
                                                           4: {"tenant": "Café"}})
    t = parse_tariff({**TOU, "standing_charge_per_month": 10}, tariff_id=1)
    report = energy_report(store, year=2026, month=3, zone=BERLIN, tariff=t)
    rows = {(r["dev_eui"], r["channel"]): r for r in report["channels"]}
    computed, summary = rows[(EUI[2], 1)], rows[(EUI[1], 1)]
    # 22 weekdays in March 2026 x 12 peak hours = 264 kWh; 743 - 264 = 479 kWh default
    assert computed["source"] == "computed" and computed["energy_kwh"] == 743
    assert computed["bands"] == {"peak": 264, "*": 479}
    assert computed["cost"] == pytest.approx(264 * 0.30 + 479 * 0.20)
    assert computed["circuit"] == "Oven" and computed["tenant"] == "Bakery"
    assert rows[(EUI[2], 4)]["tenant"] == "Café" and rows[(EUI[2], 4)]["energy_kwh"] == 0
    # device 1 sent its own summary: 800 kWh, the bands of its readings scaled to it
    assert summary["source"] == "device_summary" and summary["energy_kwh"] == 800
    assert summary["bands"]["peak"] == pytest.approx(264 * 800 / 743)
    assert rows[(EUI[1], 2)]["energy_kwh"] == 0 and rows[(EUI[1], 2)]["tenant"] == "(unassigned)"
    tenants = {x["tenant"]: x for x in report["tenants"]}
    assert set(tenants) == {"Bakery", "Café", "(unassigned)"}
    assert tenants["Bakery"]["cost"] == pytest.approx(computed["cost"] + 10)  # standing charge
    assert tenants["Café"]["cost"] == pytest.approx(10)
    assert report["total"]["energy_kwh"] == pytest.approx(743 + 800)
    assert report["total"]["cost"] == pytest.approx(sum(x["cost"] for x in tenants.values()))
    assert (report["start"], report["end"], report["timezone"]) == (start, end, "Europe/Berlin")
    plain = energy_report(store, year=2026, month=3, zone=BERLIN)
    assert plain["tariff"] is None and plain["total"]["cost"] is None
    assert all(r["cost"] is None and r["bands"] == {} for r in plain["channels"])
    assert energy_report(store, year=2026, month=5, zone=BERLIN)["channels"] == []


# --- sessions, tokens, tariffs and templates in the store ---------------------------------------

def test_sessions_slide_expire_and_end_with_their_token(store):
    token = store.create_token("alice", "admin")
    assert store.create_session("wrong-token", now=1000) is None
    session_id, name, role = store.create_session(token, now=1000)
    assert (name, role) == ("alice", "admin")
    assert session_id not in str(store.query("SELECT * FROM session"))  # stored hashed
    assert store.session_caller(session_id, now=1000 + SESSION_S - 1) == ("alice", "admin")
    # that use extended it: 12 h from then
    assert store.session_caller(session_id, now=1000 + 2 * SESSION_S - 2) == ("alice", "admin")
    assert store.session_caller(session_id, now=1000 + 4 * SESSION_S) is None  # expired
    again, _, _ = store.create_session(token, now=5000)
    store.delete_session(again)
    assert store.session_caller(again, now=5001) is None
    third, _, _ = store.create_session(token, now=6000)
    store.create_token("alice", "read")  # a new token for alice: old sessions end
    assert store.session_caller(third, now=6001) is None


def test_token_last_used_is_written_at_most_once_a_minute(store):
    store.create_token("bob", "read")
    last = lambda: store.query("SELECT last_used_at FROM api_token WHERE name = 'bob'")[0][0]  # noqa: E731
    assert last() is None
    store.token_used("bob", now=1000)
    store.token_used("bob", now=1030)
    assert last() == 1000
    store.token_used("bob", now=1061)
    assert last() == 1061


def test_tariff_and_template_tables(store):
    flat = store.save_tariff({"name": "Flat", "currency": "EUR", "kind": "flat",
                              "price_per_kwh": 0.25})
    tou = store.save_tariff(parse_tariff(TOU).to_dict())
    assert [t["name"] for t in store.tariffs()] == ["Flat", "Office"]
    with pytest.raises(NameTaken):
        store.save_tariff({**TOU, "name": "Flat"})
    store.save_tariff({**flat, "price_per_kwh": 0.3}, flat["id"])
    assert store.tariff(flat["id"])["price_per_kwh"] == 0.3
    with pytest.raises(KeyError):
        store.save_tariff({**flat, "name": "Other"}, 999)
    with pytest.raises(NameTaken):  # renaming onto another tariff's name
        store.save_tariff({**flat, "name": "Office"}, flat["id"])
    assert store.tariff(flat["id"])["name"] == "Flat"
    assert store.delete_tariff(tou["id"]) and not store.delete_tariff(tou["id"])
    row = store.create_template("Base", [{"command": "set_reporting_interval",
                                          "params": {"minutes": 5}}], created_by="alice")
    assert store.template(row["id"])["settings"][0]["params"] == {"minutes": 5}
    with pytest.raises(NameTaken):
        store.create_template("Base", [], created_by="alice")
    assert [t["name"] for t in store.templates()] == ["Base"]
    assert store.delete_template(row["id"]) and store.templates() == []


# --- templates (sans-IO) ----------------------------------------------------------------------

def test_template_commands_are_checked_and_settings_become_commands():
    ok = validate_settings([{"command": "set_reporting_interval", "params": {"minutes": 5}},
                            {"command": "set_data_storage", "params": {"enabled": True}}])
    assert [s["command"] for s in ok] == ["set_reporting_interval", "set_data_storage"]
    with pytest.raises(TemplateError) as err:
        validate_settings([{"command": "set_data_storage", "params": {"enabled": True}},
                           {"command": "set_reporting_interval", "params": {"minutes": 0}}])
    assert err.value.index == 1 and "out of range" in err.value.reason
    with pytest.raises(TemplateError):
        validate_settings([{"command": "no_such_command"}])
    for downlink in (commands.set_daylight_saving(enabled=True, start=(3, 5, 7, 120),
                                                  end=(10, 5, 7, 180)),
                     commands.set_current_interface("c", circuit="three_phase",
                                                    ct_ranges=("100A", "300A", "300A"),
                                                    reversed_channels=[3]),
                     commands.set_thdv_threshold(2, enabled=True, max_pct=8),
                     commands.set_reporting_interval(seconds=90),
                     commands.set_report_parameters("temperature", "current")):
        (setting, item), = downlinks.settings_written(downlink).items()
        command = command_for(setting, item)
        assert command is not None, setting
        rebuilt = downlinks.build(command["command"], command["params"])
        assert rebuilt.payload == downlink.payload, command
