"""LocalClock against zoneinfo (the reference for real zones) and against its own definitions
(properties over random offsets and rules)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cth01.device.clock import DstRule, LocalClock


def rule(start: tuple[int, int, int, int], end: tuple[int, int, int, int],
         bias_min: int = 60) -> DstRule:
    (sm, sw, sd, st_), (em, ew, ed, et) = start, end
    return DstRule(True, bias_min, sm, sw, sd, st_, em, ew, ed, et)


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


BERLIN = rule((3, 5, 7, 120), (10, 5, 7, 180))
NEW_YORK = rule((3, 2, 7, 120), (11, 1, 7, 120))
NEW_YORK_1987 = rule((4, 1, 7, 120), (10, 5, 7, 120))  # US rule until 2006
SYDNEY = rule((10, 1, 7, 120), (4, 1, 7, 180))
SYDNEY_1987 = rule((10, 5, 7, 120), (3, 5, 7, 180))  # NSW rule until 2007
FEB_END = rule((2, 4, 6, 1410), (10, 5, 7, 180))  # made up: jumps over midnight into March

# (zone, offset, rule, years the rule was in force). Sydney 2000 (Olympics: DST from 27 Aug)
# and 2006 (Commonwealth Games: DST until 2 Apr) were one-off exceptions and are left out.
ZONES = [
    ("Europe/Berlin", 60, BERLIN, range(2000, 2038)),
    ("America/New_York", -300, NEW_YORK_1987, range(2000, 2007)),
    ("America/New_York", -300, NEW_YORK, range(2007, 2038)),
    ("Australia/Sydney", 600, SYDNEY_1987, [*range(2001, 2006), 2007]),
    ("Australia/Sydney", 600, SYDNEY, range(2008, 2038)),
]
ZONE_IDS = [f"{z}-{min(y)}" for z, _, _, y in ZONES]


def zone_offset_s(tz: ZoneInfo, t: int) -> int:
    return int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())


def zone_change(tz: ZoneInfo, lo: int, hi: int) -> int:
    """The first second in (lo, hi] whose offset differs from lo's (one change in between)."""
    before = zone_offset_s(tz, lo)
    assert zone_offset_s(tz, hi) != before
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if zone_offset_s(tz, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


# --- real zones -----------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "year", "start", "end"), [
    ("Europe/Berlin", 2026, ts(2026, 3, 29, 1), ts(2026, 10, 25, 1)),
    ("America/New_York", 2026, ts(2026, 3, 8, 7), ts(2026, 11, 1, 6)),
    ("Australia/Sydney", 2026, ts(2026, 10, 3, 16), ts(2026, 4, 4, 16)),
    ("America/New_York", 2006, ts(2006, 4, 2, 7), ts(2006, 10, 29, 6)),
])
def test_transitions_known_instants(zone, year, start, end):
    (offset, dst), = [(o, r) for z, o, r, ys in ZONES if z == zone and year in ys]
    assert LocalClock(offset, dst).transitions(year) == (start, end)


@pytest.mark.parametrize(("zone", "offset", "dst", "years"), ZONES, ids=ZONE_IDS)
def test_matches_zoneinfo_around_every_transition(zone, offset, dst, years):
    tz, clock = ZoneInfo(zone), LocalClock(offset, dst)
    for year in years:
        for edge in clock.transitions(year):
            assert zone_change(tz, edge - 20 * 86_400, edge + 20 * 86_400) == edge, (zone, year)
            for t in [edge - 1, *(edge + k * 3600 for k in range(-3, 4))]:
                assert clock.utc_offset_s(t) == zone_offset_s(tz, t), (zone, utc(t))
                assert clock.local(t) == datetime.fromtimestamp(t, tz).replace(tzinfo=None)
        for month in range(1, 13):  # mid-season too, and every month's summary instant
            t = ts(year, month, 15, 12)
            assert clock.utc_offset_s(t) == zone_offset_s(tz, t), (zone, utc(t))
            expected = int(datetime(year, month, 1, tzinfo=tz).timestamp())
            assert clock.next_monthly(expected - 1) == expected


@pytest.mark.parametrize(("zone", "offset", "dst", "years"), ZONES, ids=ZONE_IDS)
def test_to_utc_matches_zoneinfo_fold0_in_gap_and_fold(zone, offset, dst, years):
    """Gap: read as standard time (lands after the jump); fold: first occurrence."""
    tz, clock = ZoneInfo(zone), LocalClock(offset, dst)
    for year in years[::5]:
        for edge in clock.transitions(year):
            wall = clock.local(edge - 3 * 3600)
            for _ in range(6 * 4):
                assert clock.to_utc(wall) == int(wall.replace(tzinfo=tz).timestamp()), wall
                wall += timedelta(minutes=15)


def test_gap_and_fold_berlin_2026():
    clock = LocalClock(60, BERLIN)
    assert clock.to_utc(datetime(2026, 3, 29, 2, 30)) == ts(2026, 3, 29, 1, 30)  # reads 03:30
    assert clock.local(ts(2026, 3, 29, 1, 30)) == datetime(2026, 3, 29, 3, 30)
    assert clock.to_utc(datetime(2026, 10, 25, 2, 30)) == ts(2026, 10, 25, 0, 30)  # CEST
    assert clock.local(ts(2026, 10, 25, 1, 30)) == datetime(2026, 10, 25, 2, 30)  # 2nd time
    assert clock.is_dst(ts(2026, 10, 25, 0, 59, 59)) and not clock.is_dst(ts(2026, 10, 25, 1))


def test_no_dst():
    for clock in (LocalClock(480), LocalClock(-210, DstRule(enabled=False, bias_min=0))):
        assert clock.transitions(2026) is None
        assert not clock.is_dst(ts(2026, 7, 1))
        assert clock.utc_offset_s(ts(2026, 7, 1)) == clock.offset_min * 60
        assert clock.to_utc(clock.local(1_000_000_007)) == 1_000_000_007
    assert LocalClock().dst == DstRule()


# --- rule dates -----------------------------------------------------------------------------

# February 2026 starts on a Sunday and has exactly four of every weekday.
@pytest.mark.parametrize(("month", "week", "weekday", "day"), [
    (2, 1, 7, 1),    # week 1 when the month starts on that weekday
    (2, 4, 7, 22),
    (2, 5, 7, 22),   # week 5 = last, though there are only four Sundays
    (2, 5, 1, 23),
    (2, 5, 6, 28),
    (2, 1, 1, 2),
    (3, 5, 7, 29),   # March 2026 has five Sundays
    (3, 4, 7, 22),
    (3, 5, 2, 31),
    (10, 1, 7, 4),
])
def test_rule_dates(month, week, weekday, day):
    clock = LocalClock(0, rule((month, week, weekday, 90), (12, 1, 1, 0)))
    assert clock.transitions(2026)[0] == ts(2026, month, day, 1, 30)


def test_end_is_in_daylight_time_and_start_in_standard_time():
    clock = LocalClock(-300, rule((3, 2, 7, 120), (11, 1, 7, 120), bias_min=30))
    assert clock.transitions(2026) == (ts(2026, 3, 8, 7), ts(2026, 11, 1, 6, 30))
    assert clock.utc_offset_s(ts(2026, 7, 1)) == -270 * 60


def test_zero_length_window_is_no_dst():
    clock = LocalClock(0, rule((6, 1, 1, 120), (6, 1, 1, 180)))  # both 01 Jun 02:00 UTC
    start, end = clock.transitions(2026)
    assert start == end
    assert not clock.is_dst(start) and not clock.is_dst(start - 1)


def test_from_item():
    item = SimpleNamespace(enabled=1, bias_min=60, start_month=3, start_week=5,
                           start_weekday=7, start_minute=120, end_month=10, end_week=5,
                           end_weekday=7, end_minute=180, extra="ignored")
    assert DstRule.from_item(item) == BERLIN
    assert DstRule.from_item(SimpleNamespace(**{**vars(item), "enabled": False, "bias_min": 0}))


def test_from_decoded_protocol_item():
    from cth01.protocol.codec import decode_downlink

    item, = decode_downlink(bytes.fromhex("c6013c03573c000a573c00"))
    assert DstRule.from_item(item) == rule((3, 5, 7, 60), (10, 5, 7, 60))


# --- next_monthly ---------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "dst", "after", "args", "expected"), [
    # default: local midnight of the 1st at UTC+8
    (480, None, ts(2026, 1, 15), (), ts(2026, 1, 31, 16)),
    # strictly after: at the instant itself -> the next month
    (480, None, ts(2026, 1, 31, 16), (), ts(2026, 2, 28, 16)),
    (480, None, ts(2026, 1, 31, 15, 59, 59), (), ts(2026, 1, 31, 16)),
    # 15th 09:00 in Berlin across both DST changes
    (60, BERLIN, ts(2026, 3, 15, 8), (15, 9, 0), ts(2026, 4, 15, 7)),
    (60, BERLIN, ts(2026, 10, 15, 7), (15, 9, 0), ts(2026, 11, 15, 8)),
    # gap: 02:30 on 28 Mar 2027, the day Berlin jumps 02:00 -> 03:00 (at 01:00 UTC)
    (60, BERLIN, ts(2027, 3, 1), (28, 2, 30), ts(2027, 3, 28, 1)),
    (60, BERLIN, ts(2027, 3, 28, 1), (28, 2, 30), ts(2027, 4, 28, 0, 30)),
    # gap: New York, second Sunday of March 2026 = 8th, 02:00 -> 03:00 at 07:00 UTC
    (-300, NEW_YORK, ts(2026, 2, 20), (8, 2, 30), ts(2026, 3, 8, 7)),
    # gap across a month end: 28 Feb 2026 (4th Saturday) 23:30 -> 1 Mar 00:30
    (0, FEB_END, ts(2026, 2, 1), (28, 23, 45), ts(2026, 2, 28, 23, 30)),
    (0, FEB_END, ts(2026, 2, 20), (1, 0, 15), ts(2026, 2, 28, 23, 30)),
    (0, FEB_END, ts(2026, 2, 28, 23, 30), (1, 0, 15), ts(2026, 3, 31, 23, 15)),
    # fold: 02:30 on 25 Oct 2026 in Berlin happens twice; only the first one counts
    (60, BERLIN, ts(2026, 10, 1), (25, 2, 30), ts(2026, 10, 25, 0, 30)),
    (60, BERLIN, ts(2026, 10, 25, 0, 30), (25, 2, 30), ts(2026, 11, 25, 1, 30)),
    # year rollover
    (60, BERLIN, ts(2026, 12, 20), (1, 0, 0), ts(2026, 12, 31, 23)),
    (-300, NEW_YORK, ts(2026, 12, 10, 5), (10, 0, 0), ts(2027, 1, 10, 5)),
    (600, SYDNEY, ts(2026, 12, 28, 13), (28, 23, 59), ts(2027, 1, 28, 12, 59)),
])
def test_next_monthly(offset, dst, after, args, expected):
    clock = LocalClock(offset, dst)
    assert utc(clock.next_monthly(after, *args)) == utc(expected)
    check_next_monthly(clock, after, *(args or (1, 0, 0)))


# --- properties ------------------------------------------------------------------------------

T_MIN, T_MAX = ts(1970, 1, 1), ts(2100, 12, 31, 23, 59, 59)
REAL = [(60, BERLIN), (-300, NEW_YORK), (600, SYDNEY), (-300, NEW_YORK_1987)]


@st.composite
def clocks(draw: st.DrawFn) -> LocalClock:
    if draw(st.booleans()):
        return LocalClock(*draw(st.sampled_from(REAL)))
    edges = [st.integers(1, 12), st.integers(1, 5), st.integers(1, 7), st.integers(0, 1439)]
    dst = DstRule(draw(st.booleans()), draw(st.integers(1, 120)),
                  *[draw(s) for s in edges], *[draw(s) for s in edges])
    return LocalClock(draw(st.integers(-720, 840)), dst)


def bias_s(clock: LocalClock) -> int:
    return clock.dst.bias_min * 60 if clock.dst.enabled else 0


@st.composite
def instants(draw: st.DrawFn, clock: LocalClock) -> int:
    """Anywhere in 1970..2100, or within a few hours of a transition (gaps and folds)."""
    if clock.dst.enabled and draw(st.booleans()):
        edge = draw(st.sampled_from(clock.transitions(draw(st.integers(1971, 2099)))))
        return edge + draw(st.integers(-3 * 3600, 3 * 3600))
    return draw(st.integers(T_MIN, T_MAX))


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(st.data())
def test_local_to_utc_round_trip(data):
    """to_utc(local(t)) == t, except in the fold's second hour: that reading was already
    shown bias seconds earlier (in DST), and to_utc returns the first occurrence."""
    clock = data.draw(clocks())
    t = data.draw(instants(clock))
    b = bias_s(clock)
    second_occurrence = b > 0 and not clock.is_dst(t) and clock.is_dst(t - b)
    if second_occurrence:
        assert clock.local(t - b) == clock.local(t)
    assert clock.to_utc(clock.local(t)) == (t - b if second_occurrence else t)


@PROPS
@given(st.data())
def test_offset_is_offset_or_offset_plus_bias(data):
    clock = data.draw(clocks())
    t = data.draw(instants(clock))
    off = clock.utc_offset_s(t)
    assert off == clock.offset_min * 60 + (bias_s(clock) if clock.is_dst(t) else 0)
    assert clock.local(t) == datetime(1970, 1, 1) + timedelta(seconds=t + off)
    if not clock.dst.enabled:
        assert not clock.is_dst(t)


def reaches(clock: LocalClock, q: int, wall: datetime) -> bool:
    """The clock reaches or jumps past `wall` at q, and q is not a fold's second occurrence."""
    b = bias_s(clock)
    second = b > 0 and clock.local(q - b) == clock.local(q)
    return clock.local(q - 1) < wall <= clock.local(q) and not second


def months(first: datetime, last: datetime):
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        yield y, m
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def check_next_monthly(clock: LocalClock, after: int, day: int, hour: int, minute: int) -> int:
    r = clock.next_monthly(after, day, hour, minute)
    assert r > after
    walls = {m: datetime(*m, day, hour, minute)
             for m in months(clock.local(after) - timedelta(days=1), clock.local(r))}
    # r shows the wall time, or is the instant the clock jumps past it (gap)
    wall, = [w for w in walls.values() if reaches(clock, r, w)]
    if clock.local(clock.to_utc(wall)) == wall:  # the wall time exists
        assert clock.local(r) == wall
    else:
        assert r in [clock.transitions(y)[0] for y in range(utc(r).year - 1, utc(r).year + 2)]
    # no earlier qualifying instant: the reading meets a wall time only when it passes it at
    # the standard offset, at the daylight offset, or at a jump
    jumps = [e for y in range(utc(after).year - 1, utc(r).year + 2)
             for e in (clock.transitions(y) or ())]
    for wall in walls.values():
        w = int((wall - datetime(1970, 1, 1)).total_seconds())
        for q in [w - clock.offset_min * 60, w - clock.offset_min * 60 - bias_s(clock), *jumps]:
            if after < q < r:
                assert not reaches(clock, q, wall), (utc(q), wall)
    return r


@PROPS
@given(st.data())
def test_next_monthly_properties(data):
    clock = data.draw(clocks())
    after = data.draw(instants(clock))
    day, hour, minute = data.draw(st.integers(1, 28)), data.draw(st.integers(0, 23)), \
        data.draw(st.integers(0, 59))
    check_next_monthly(clock, after, day, hour, minute)


@PROPS
@given(st.data())
def test_next_monthly_in_gap_is_the_jump(data):
    """A wall time inside the spring-forward gap resolves to the DST start instant."""
    edges = [st.integers(1, 12), st.integers(1, 3), st.integers(1, 7), st.integers(0, 1439)]
    start = [data.draw(s) for s in edges]
    end = [data.draw(s) for s in edges]
    assume(end[0] != start[0])
    clock = LocalClock(data.draw(st.integers(-720, 840)),
                       rule(tuple(start), tuple(end), data.draw(st.integers(1, 120))))
    jump = clock.transitions(data.draw(st.integers(1971, 2099)))[0]
    wall = clock.local(jump - 1) + timedelta(seconds=1) + timedelta(
        minutes=data.draw(st.integers(0, clock.dst.bias_min - 1)))
    assume(wall.day <= 28)
    after = jump - data.draw(st.integers(1, 20 * 86_400))
    assert check_next_monthly(clock, after, wall.day, wall.hour, wall.minute) == jump


# --- errors ------------------------------------------------------------------------------------

GOOD = dict(enabled=True, bias_min=60, start_month=3, start_week=5, start_weekday=7,
            start_minute=120, end_month=10, end_week=5, end_weekday=7, end_minute=180)
BAD_RULE = [("bias_min", 0), ("bias_min", 121), ("enabled", 1), ("enabled", None)] + [
    (f"{edge}_{name}", value) for edge in ("start", "end")
    for name, values in [("month", (0, 13)), ("week", (0, 6)), ("weekday", (0, 8)),
                         ("minute", (-1, 1440, 1.5))]
    for value in values]


def raises_naming(field: str, value: object):
    return pytest.raises(ValueError, match=rf"{field}\b.*{re.escape(repr(value))}")


@pytest.mark.parametrize(("field", "value"), BAD_RULE)
def test_invalid_rule_field(field, value):
    with raises_naming(field, value):
        DstRule(**{**GOOD, field: value})


def test_disabled_rule_is_not_checked():
    DstRule(enabled=False, bias_min=0, start_month=0, end_week=0)


@pytest.mark.parametrize("value", [-721, 841, 60.0, True, "60"])
def test_invalid_offset(value):
    with raises_naming("offset_min", value):
        LocalClock(value)


def test_invalid_dst_argument():
    with raises_naming("dst", "x"):
        LocalClock(60, "x")


@pytest.mark.parametrize(("args", "field", "value"), [
    ((0, 1, 0), "day", 0), ((29, 1, 0), "day", 29), ((1.0, 1, 0), "day", 1.0),
    ((1, -1, 0), "hour", -1), ((1, 24, 0), "hour", 24),
    ((1, 0, -1), "minute", -1), ((1, 0, 60), "minute", 60),
])
def test_invalid_next_monthly(args, field, value):
    with raises_naming(field, value):
        LocalClock(60, BERLIN).next_monthly(ts(2026, 1, 1), *args)
    with raises_naming("after_utc", 1.5):
        LocalClock().next_monthly(1.5)


def test_to_utc_rejects_aware_datetime():
    with pytest.raises(ValueError, match="local"):
        LocalClock().to_utc(datetime(2026, 1, 1, tzinfo=UTC))
