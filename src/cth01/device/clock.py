"""The local wall clock of a CTH01, as the device itself keeps it.

Owns: `DstRule` (the daylight-saving rule of downlink c6) and `LocalClock` (the fixed time zone
offset of c7 plus that rule): is DST on at a UTC instant, the local reading of an instant, the
instant of a local reading, and the next instant a monthly local wall time (the monthly summary)
comes round. Everything works on integer Unix seconds (UTC) and naive local `datetime`s.

Device semantics: the start of DST is given in local *standard* time (offset only), the end in
local *daylight* time (offset + bias, the wall clock as it reads then); week 1-4 is the n-th such
weekday of the month, week 5 the last one. A start month after the end month is a southern
rule: DST spans the new year. The state at an instant is that of the latest transition at or
before it (at a tie the end wins, so a zero-length window means no DST).

Must never: read the wall clock, do I/O, or consult zoneinfo / the OS time zone database — the
device knows only its offset and its rule, and so does this module. It is called for every
periodic report of every device in a fleet, so transition instants are computed once per
(offset, rule, year) and the last constant-offset segment is kept per clock.
"""

from __future__ import annotations

from bisect import bisect_right
from calendar import monthrange
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_DAY = 86_400
_FAR = 1 << 62  # beyond any instant a datetime can show

OFFSET_RANGE = (-720, 840)
_RULE_RANGES: dict[str, tuple[int, int]] = {
    "bias_min": (1, 120),
    "start_month": (1, 12), "start_week": (1, 5), "start_weekday": (1, 7),
    "start_minute": (0, 1439),
    "end_month": (1, 12), "end_week": (1, 5), "end_weekday": (1, 7), "end_minute": (0, 1439),
}


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True)
class DstRule:
    """A c6 daylight-saving rule. Fields are checked only when `enabled` (a disabled rule read
    back from a device may carry zeros)."""

    enabled: bool = False
    bias_min: int = 60
    start_month: int = 1
    start_week: int = 1
    start_weekday: int = 1
    start_minute: int = 0
    end_month: int = 1
    end_week: int = 1
    end_weekday: int = 1
    end_minute: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be a bool, got {self.enabled!r}")
        if self.enabled:
            for name, (lo, hi) in _RULE_RANGES.items():
                _check_int(name, getattr(self, name), lo, hi)

    @classmethod
    def from_item(cls, item: Any) -> DstRule:
        """The rule of a protocol item (`DaylightSavingTime`) or any object with these
        attribute names; an `enabled` of 0/1 is taken as a bool."""
        values = {f.name: getattr(item, f.name) for f in fields(cls)}
        if values["enabled"] in (0, 1) and not isinstance(values["enabled"], bool):
            values["enabled"] = bool(values["enabled"])
        return cls(**values)


def _nth_weekday(year: int, month: int, week: int, weekday: int) -> int:
    """Day of the month of the `week`-th (5 = last) `weekday` (1 Monday..7 Sunday)."""
    first_wd, days = monthrange(year, month)  # first_wd: 0 = Monday
    first = 1 + (weekday - 1 - first_wd) % 7
    if week <= 4:
        return first + 7 * (week - 1)
    return first + 7 * ((days - first) // 7)


def _days(year: int, month: int, day: int) -> int:
    return date(year, month, day).toordinal() - _EPOCH_ORD


@lru_cache(maxsize=8192)
def _transitions(offset_min: int, rule: DstRule, year: int) -> tuple[int, int]:
    start_day = _nth_weekday(year, rule.start_month, rule.start_week, rule.start_weekday)
    end_day = _nth_weekday(year, rule.end_month, rule.end_week, rule.end_weekday)
    start = _days(year, rule.start_month, start_day) * _DAY + (rule.start_minute - offset_min) * 60
    end = (_days(year, rule.end_month, end_day) * _DAY
           + (rule.end_minute - offset_min - rule.bias_min) * 60)
    return start, end


class LocalClock:
    """Fixed offset (minutes east of UTC) plus an optional DST rule, as a CTH01 keeps time."""

    __slots__ = ("_bias_s", "_dst", "_dst_s", "_events", "_off_s", "_offset_min", "_seg")

    def __init__(self, offset_min: int = 0, dst: DstRule | None = None) -> None:
        _check_int("offset_min", offset_min, *OFFSET_RANGE)
        if dst is None:
            dst = DstRule()
        elif not isinstance(dst, DstRule):
            raise ValueError(f"dst must be a DstRule or None, got {dst!r}")
        self._offset_min = offset_min
        self._dst = dst
        self._off_s = offset_min * 60
        self._bias_s = dst.bias_min * 60 if dst.enabled else 0
        self._dst_s = self._off_s + self._bias_s
        # per standard-local year: (sorted transition instants, DST state after each)
        self._events: dict[int, tuple[list[int], list[bool]]] = {}
        # the last segment looked up: (lo, hi, dst) with the state constant on [lo, hi)
        self._seg: tuple[int, int, bool] = (
            (_FAR, _FAR, False) if dst.enabled else (-_FAR, _FAR, False))

    @property
    def offset_min(self) -> int:
        """Minutes east of UTC (c7). Read-only: the caches depend on it."""
        return self._offset_min

    @property
    def dst(self) -> DstRule:
        """The daylight-saving rule (c6); a disabled rule when there is none. Read-only."""
        return self._dst

    def __repr__(self) -> str:
        return f"LocalClock(offset_min={self.offset_min}, dst={self.dst!r})"

    def transitions(self, year: int) -> tuple[int, int] | None:
        """(DST start, DST end) in Unix seconds for the rule's dates in local `year`, or None
        when DST is off. For a southern rule the end comes first in the year."""
        if not self.dst.enabled:
            return None
        return _transitions(self.offset_min, self.dst, year)

    def _year_events(self, year: int) -> tuple[list[int], list[bool]]:
        ev = self._events.get(year)
        if ev is None:
            pairs = []
            for y in (year - 1, year, year + 1):
                start, end = _transitions(self.offset_min, self.dst, y)
                pairs += [(start, 0), (end, 1)]  # at a tie the end sorts last, so it wins
            pairs.sort()
            ev = ([t for t, _ in pairs], [kind == 0 for _, kind in pairs])
            self._events[year] = ev
        return ev

    def _segment(self, t: int) -> tuple[int, int, bool]:
        """(lo, hi, dst): lo is the latest transition <= t, the state is constant on [lo, hi)."""
        days = (t + self._off_s) // _DAY
        year = date.fromordinal(days + _EPOCH_ORD).year
        instants, states = self._year_events(year)
        # every year-1 transition lies before the start of `year` (standard local), so i >= 2
        i = bisect_right(instants, t)
        year_end = _days(year + 1, 1, 1) * _DAY - self._off_s
        hi = min(instants[i], year_end) if i < len(instants) else year_end
        seg = (instants[i - 1], hi, states[i - 1])
        self._seg = seg
        return seg

    def is_dst(self, t_utc: int) -> bool:
        """Whether daylight-saving time applies at Unix second `t_utc`."""
        lo, hi, on = self._seg
        if lo <= t_utc < hi:
            return on
        if not self._bias_s:
            return False
        return self._segment(t_utc)[2]

    def utc_offset_s(self, t_utc: int) -> int:
        """Seconds east of UTC of the local wall clock at `t_utc` (offset, + bias in DST)."""
        lo, hi, on = self._seg
        if not lo <= t_utc < hi:
            if not self._bias_s:
                return self._off_s
            on = self._segment(t_utc)[2]
        return self._dst_s if on else self._off_s

    def local(self, t_utc: int) -> datetime:
        """The naive local wall-clock reading at Unix second `t_utc`."""
        return _EPOCH + timedelta(seconds=t_utc + self.utc_offset_s(t_utc))

    def _resolve(self, wall_s: int) -> tuple[int, bool]:
        """(instant, in_gap) of a local reading given as seconds since the local epoch. In the
        fold: the first occurrence (DST). In the gap: read as standard time (after the jump)."""
        if self._bias_s:
            t_dst = wall_s - self._dst_s
            if self.is_dst(t_dst):
                return t_dst, False
            t_std = wall_s - self._off_s
            return t_std, self.is_dst(t_std)
        return wall_s - self._off_s, False

    def to_utc(self, local: datetime) -> int:
        """Unix seconds of the naive local wall time `local` (sub-second part dropped). In the
        spring-forward gap the reading is taken as standard time, which lands after the jump
        (Berlin 02:30 on the start day -> 01:30 UTC, when the clock shows 03:30); in the autumn
        fold the first occurrence (still DST) is returned. Same as zoneinfo with fold=0."""
        if not isinstance(local, datetime) or local.tzinfo is not None:
            raise ValueError(f"local must be a naive datetime, got {local!r}")
        delta = local - _EPOCH
        return self._resolve(delta.days * _DAY + delta.seconds)[0]

    def next_monthly(self, after_utc: int, day: int = 1, hour: int = 0, minute: int = 0) -> int:
        """The first instant strictly after `after_utc` at which the local wall clock shows
        `day` (1-28) of some month at `hour`:`minute`. When that reading does not exist (the
        spring-forward gap) the instant the clock jumps past it; when it occurs twice (the
        autumn fold) only the first occurrence counts, so a monthly event fires once a month."""
        if isinstance(after_utc, bool) or not isinstance(after_utc, int):
            raise ValueError(f"after_utc must be an integer, got {after_utc!r}")
        _check_int("day", day, 1, 28)
        _check_int("hour", hour, 0, 23)
        _check_int("minute", minute, 0, 59)
        now = self.local(after_utc)
        year, month = now.year, now.month
        clock = hour * 3600 + minute * 60
        # A wall reading in an earlier month than `now` resolves to an instant before after_utc
        # (readings a day or more apart, shifts <= 2 h), so the answer is this month or the next.
        while True:
            wall_s = _days(year, month, day) * _DAY + clock
            t, gap = self._resolve(wall_s)
            if gap:
                t = self._segment(t)[0]  # the DST start: the jump past this reading
            if t > after_utc:
                return t
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
