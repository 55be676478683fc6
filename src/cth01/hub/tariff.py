"""Tariffs and the local calendar: what energy costs, and when a local day or month begins.

Owns: reading and validating a tariff document (flat, or time-of-use with bands), the map of
the local week that says which band every minute belongs to (bands in order, the first that
matches wins, the default band "*" takes the minutes no other band covers), the cost of energy
split into bands, and the calendar in the hub's time zone — the UTC bounds of a local day or
month (DST-correct: a local day has 23, 24 or 25 hours) and the UTC offsets in force over a
period (what the store needs to place readings in the local week).

A tariff document (JSON):

    {"name": "Office TOU", "currency": "EUR", "kind": "tou",
     "bands": [{"name": "peak", "price_per_kwh": 0.32, "days": [0, 1, 2, 3, 4],
                "start": "08:00", "end": "20:00"},
               {"name": "night", "price_per_kwh": 0.18, "days": [0, 1, 2, 3, 4, 5, 6],
                "start": "22:00", "end": "06:00"}],
     "price_per_kwh": 0.24,
     "standing_charge_per_month": 12.5}

`kind: "flat"` has only `price_per_kwh`. A time-of-use tariff's `price_per_kwh` is its
default price: the price of the default band "*", the minutes of the week no band covers (a
band named "*" in `bands`, with a price and nothing else, says the same; give one or the other).
When the bands cover the whole week there is no default and `price_per_kwh` is null. Days are
0-6, Monday = 0; times "HH:MM" of local time, `end` exclusive, "24:00" allowed as an end; a
band whose end is not after its start runs past midnight into the next day (22:00-06:00 on
Friday covers Friday 22:00 to Saturday 06:00; 00:00-00:00 is the whole day). Bands may overlap:
the earlier one wins; a band that never wins is refused.

Sans-IO: no SQL, no clock, no I/O. Must never: know the store or HTTP.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
#: Unix time 0 was a Thursday: minutes to add to local minutes since the epoch so that whole
#: weeks start on a Monday (Monday = day 0 of the week, as in a tariff's `days`).
EPOCH_WEEKDAY_SHIFT_MIN = 3 * MINUTES_PER_DAY
DEFAULT_BAND = "*"
KINDS = ("flat", "tou")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TIME = re.compile(r"(\d\d):(\d\d)")


class TariffError(ValueError):
    """A tariff document that cannot be used: `field` is where (e.g. "bands[1].start"),
    `reason` what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ZoneError(ValueError):
    """An unknown IANA time zone name."""

    def __init__(self, name: str) -> None:
        self.reason = f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)"
        super().__init__(self.reason)


@dataclass(frozen=True, slots=True)
class Band:
    """One price band; `start_min`/`end_min` are minutes of the local day (end may be 1440;
    end <= start runs past midnight). The default band "*" has no days or times."""

    name: str
    price_per_kwh: float
    days: tuple[int, ...] = ()
    start_min: int = 0
    end_min: int = 0

    def week_ranges(self) -> list[tuple[int, int]]:
        """[start, end) minute-of-week ranges it covers (a range past Sunday midnight is
        split in two)."""
        out = []
        length = (self.end_min - self.start_min) % MINUTES_PER_DAY or MINUTES_PER_DAY
        for day in self.days:
            a = day * MINUTES_PER_DAY + self.start_min
            b = a + length
            if b <= MINUTES_PER_WEEK:
                out.append((a, b))
            else:
                out += [(a, MINUTES_PER_WEEK), (0, b - MINUTES_PER_WEEK)]
        return out


@dataclass(frozen=True, slots=True)
class Tariff:
    """A validated tariff (see the module note). `bands` are the named bands of a
    time-of-use tariff (empty for a flat one); `price_per_kwh` is the flat price, or the
    time-of-use default price (the band "*"; None when the bands cover the whole week)."""

    name: str
    currency: str
    kind: str
    price_per_kwh: float | None = None
    bands: tuple[Band, ...] = ()
    standing_charge_per_month: float | None = None
    id: int | None = None
    week: tuple[int, ...] = field(default=(), repr=False, compare=False)  # band index, -1: "*"

    def price(self, band: str) -> float:
        """The price per kWh of a band ("*": the default price)."""
        if band == DEFAULT_BAND and self.price_per_kwh is not None:
            return self.price_per_kwh
        for b in self.bands:
            if b.name == band:
                return b.price_per_kwh
        raise KeyError(band)

    def band_at_minute(self, minute_of_week: int) -> str:
        """The band of one minute of the local week (0 = Monday 00:00)."""
        k = self.week[minute_of_week % MINUTES_PER_WEEK]
        return DEFAULT_BAND if k < 0 else self.bands[k].name

    def band_at(self, local: datetime) -> str:
        """The band in force at a local (wall-clock) time."""
        return self.band_at_minute(local.weekday() * MINUTES_PER_DAY + local.hour * 60
                                   + local.minute)

    def segments(self) -> list[tuple[int, int, str]]:
        """The local week as runs of one band: (start_min, end_min, band), in order, covering
        [0, 10080) (a time-of-use tariff only)."""
        out: list[tuple[int, int, str]] = []
        start = 0
        for m in range(1, MINUTES_PER_WEEK + 1):
            if m == MINUTES_PER_WEEK or self.week[m] != self.week[start]:
                out.append((start, m, self.band_at_minute(start)))
                start = m
        return out

    def to_dict(self) -> dict[str, Any]:
        """The document form (as accepted by `parse_tariff`), with `id` when stored."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "currency": self.currency,
                               "kind": self.kind, "price_per_kwh": self.price_per_kwh}
        if self.kind == "tou":
            out["bands"] = [_band_dict(b) for b in self.bands]
        if self.standing_charge_per_month is not None:
            out["standing_charge_per_month"] = self.standing_charge_per_month
        return out


def _band_dict(b: Band) -> dict[str, Any]:
    return {"name": b.name, "price_per_kwh": b.price_per_kwh, "days": list(b.days),
            "start": _hhmm(b.start_min), "end": _hhmm(b.end_min)}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# --- reading and validating --------------------------------------------------------------------

def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TariffError(where, f"must be a number (got {value!r})")
    if not value >= 0 or value == float("inf"):
        raise TariffError(where, f"must be a finite number ≥ 0 (got {value!r})")
    return float(value)


def _text(value: Any, where: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TariffError(where, "must be a non-empty string")
    if len(value) > max_length:
        raise TariffError(where, f"at most {max_length} characters")
    return value.strip()


def _time(value: Any, where: str, *, end: bool) -> int:
    m = _TIME.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise TariffError(where, f"must be a time \"HH:MM\" (got {value!r})")
    hours, minutes = int(m[1]), int(m[2])
    if end and (hours, minutes) == (24, 0):
        return MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        raise TariffError(where, f"{value!r} is not a time of day (00:00-23:59"
                                 f"{', or 24:00 as an end' if end else ''})")
    return hours * 60 + minutes


def _band(doc: Any, where: str) -> Band:
    if not isinstance(doc, Mapping):
        raise TariffError(where, "must be an object")
    unknown = set(doc) - {"name", "price_per_kwh", "days", "start", "end"}
    if unknown:
        raise TariffError(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    name = _text(doc.get("name"), f"{where}.name", 40)
    price = _price(doc.get("price_per_kwh"), f"{where}.price_per_kwh")
    if name == DEFAULT_BAND:
        return Band(name, price)
    days = doc.get("days")
    if not isinstance(days, list) or not days:
        raise TariffError(f"{where}.days", "must be a non-empty list of weekdays 0-6 "
                                           "(Monday = 0)")
    for d in days:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6:
            raise TariffError(f"{where}.days", f"{d!r} is not a weekday 0-6 (Monday = 0)")
    if len(set(days)) != len(days):
        raise TariffError(f"{where}.days", "a weekday is listed twice")
    start = _time(doc.get("start"), f"{where}.start", end=False)
    end_min = _time(doc.get("end"), f"{where}.end", end=True)
    return Band(name, price, tuple(days), start, end_min)


def parse_tariff(doc: Any, *, tariff_id: int | None = None) -> Tariff:
    """A validated `Tariff` from its JSON document, or TariffError naming the field."""
    if not isinstance(doc, Mapping):
        raise TariffError("tariff", "must be a JSON object")
    unknown = set(doc) - {"id", "name", "currency", "kind", "price_per_kwh", "bands",
                          "standing_charge_per_month"}
    if unknown:
        raise TariffError("tariff", f"unknown field(s) {', '.join(sorted(unknown))}")
    name = _text(doc.get("name"), "name", 100)
    currency = _text(doc.get("currency"), "currency", 8)
    kind = doc.get("kind")
    if kind not in KINDS:
        raise TariffError("kind", f"must be one of {', '.join(KINDS)} (got {kind!r})")
    standing = doc.get("standing_charge_per_month")
    if standing is not None:
        standing = _price(standing, "standing_charge_per_month")
    if kind == "flat":
        if doc.get("bands"):
            raise TariffError("bands", "a flat tariff has no bands (use kind \"tou\")")
        return Tariff(name, currency, kind, _price(doc.get("price_per_kwh"), "price_per_kwh"),
                      standing_charge_per_month=standing, id=tariff_id)
    docs = doc.get("bands")
    if not isinstance(docs, list) or not docs:
        raise TariffError("bands", "a time-of-use tariff needs a non-empty list of bands")
    bands = [_band(b, f"bands[{k}]") for k, b in enumerate(docs)]
    names = [b.name for b in bands]
    for k, n in enumerate(names):
        if n in names[:k]:
            raise TariffError(f"bands[{k}].name", f"band {n!r} is defined twice")
    default = doc.get("price_per_kwh")
    if default is not None:
        default = _price(default, "price_per_kwh")
    if DEFAULT_BAND in names:
        if default is not None:
            raise TariffError("price_per_kwh", "the default price is given twice: as "
                                               "price_per_kwh and as the band \"*\"")
        default = bands.pop(names.index(DEFAULT_BAND)).price_per_kwh
    if not bands:
        raise TariffError("bands", "a time-of-use tariff needs at least one band with days "
                                   "and times (or use kind \"flat\")")
    positions = [k for k, n in enumerate(names) if n != DEFAULT_BAND]
    week = _week_map(tuple(bands), positions, default is not None)
    if -1 not in week:
        default = None  # the bands cover the whole week: no minute has the default price
    return Tariff(name, currency, kind, default, tuple(bands), standing, tariff_id, week)


def _week_map(bands: tuple[Band, ...], positions: Sequence[int], has_default: bool
              ) -> tuple[int, ...]:
    """Band index of every minute of the week (first matching band), -1 for the default.
    `positions` are the bands' places in the document (for the errors)."""
    week = [-1] * MINUTES_PER_WEEK
    for k, band in enumerate(bands):
        won = 0
        for a, b in band.week_ranges():
            for m in range(a, b):
                if week[m] < 0:
                    week[m] = k
                    won += 1
        if not won:
            raise TariffError(f"bands[{positions[k]}]", f"band {band.name!r} never applies: "
                                                        f"the bands before it cover all its times")
    if not has_default and -1 in week:
        m = week.index(-1)
        raise TariffError("price_per_kwh", f"{week.count(-1)} minutes of the week are in no "
                                           f"band (the first: {DAY_NAMES[m // MINUTES_PER_DAY]} "
                                           f"{_hhmm(m % MINUTES_PER_DAY)}): give a default "
                                           f"price_per_kwh (or a band named \"*\")")
    return tuple(week)


# --- cost -------------------------------------------------------------------------------------

def energy_cost(tariff: Tariff, energy_kwh: float, bands_kwh: Mapping[str, float] | None = None
                ) -> float | None:
    """Cost of energy (without the standing charge): flat -> kWh x price; time-of-use -> the
    sum over bands of kWh x the band's price (None when the energy is not split into bands)."""
    if tariff.kind == "flat":
        assert tariff.price_per_kwh is not None
        return energy_kwh * tariff.price_per_kwh
    if not bands_kwh:
        return None if energy_kwh else 0.0
    return sum(kwh * tariff.price(band) for band, kwh in bands_kwh.items())


# --- the local calendar -----------------------------------------------------------------------

def zone_of(name: str) -> ZoneInfo:
    """The ZoneInfo of an IANA name, or ZoneError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ZoneError(name) from None


def _local_midnight(day: date, zone: ZoneInfo) -> int:
    """The first instant of a local day, Unix seconds. A midnight that does not exist (a DST
    gap at 00:00) maps to the end of the gap; one that exists twice, to the first one."""
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def day_bounds(day: date, zone: ZoneInfo) -> tuple[int, int]:
    """[start, end) of a local calendar day in Unix seconds (23, 24 or 25 hours long)."""
    return _local_midnight(day, zone), _local_midnight(day + timedelta(days=1), zone)


def month_bounds(year: int, month: int, zone: ZoneInfo) -> tuple[int, int]:
    """[start, end) of a local calendar month in Unix seconds."""
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return _local_midnight(date(year, month, 1), zone), _local_midnight(nxt, zone)


def local_date(ts: float, zone: ZoneInfo) -> date:
    """The local calendar date of an instant."""
    return datetime.fromtimestamp(ts, zone).date()


def utc_offset_s(ts: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(ts, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def offset_segments(start: int, end: int, zone: ZoneInfo) -> list[tuple[int, int]]:
    """The UTC offsets in force over [start, end): [(from_ts, offset_s), ...], the first from
    `start`, each until the next one's `from_ts` (a month has at most a few). Sampled hourly
    (no zone changes its offset twice within an hour), each change found to the second."""
    current = utc_offset_s(start, zone)
    out = [(start, current)]
    prev = start
    for p in [*range(start + 3600, end, 3600), end - 1]:
        if p <= prev:
            continue
        offset = utc_offset_s(p, zone)
        if offset != current:
            lo, hi = prev, p  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if utc_offset_s(mid, zone) == current else (lo, mid)
            current = offset
            out.append((hi, offset))
        prev = p
    return out


def minute_of_week(ts: int, offsets: Sequence[tuple[int, int]]) -> int:
    """Minute of the local week (0 = Monday 00:00) of an instant, given `offset_segments`."""
    k = bisect_right([o[0] for o in offsets], ts) - 1
    local_min = (ts + offsets[max(k, 0)][1]) // 60 + EPOCH_WEEKDAY_SHIFT_MIN
    return local_min % MINUTES_PER_WEEK


def slot_runs(start: int, end: int, offsets: Sequence[tuple[int, int]], edges: Sequence[int]
              ) -> tuple[list[int], list[int]]:
    """[start, end) cut where the slot of the local week changes: (the cuts, ascending, inside
    the period; the slot of each run, one more than the cuts). `offsets` as
    `offset_segments` gives them, `edges` the ascending ends of the slots in minutes of the
    local week (slot i holds the minutes [edges[i-1], edges[i]); the last edge is 10,080).
    A slot can change only where a local minute reaches an edge or the week starts again, or
    where the UTC offset changes: those instants are the candidates."""
    candidates = {t for t, _ in offsets[1:]}
    for k, (seg_start, offset) in enumerate(offsets):
        seg_end = offsets[k + 1][0] if k + 1 < len(offsets) else end
        first = ((seg_start + offset) // 60 + EPOCH_WEEKDAY_SHIFT_MIN) // MINUTES_PER_WEEK
        last = ((seg_end + offset) // 60 + EPOCH_WEEKDAY_SHIFT_MIN) // MINUTES_PER_WEEK
        for week in range(first, last + 1):
            for edge in (0, *edges[:-1]):
                # the first instant whose local minute of the week is `edge`
                t = ((week * MINUTES_PER_WEEK + edge - EPOCH_WEEKDAY_SHIFT_MIN) * 60
                     - offset)
                if seg_start < t < seg_end:
                    candidates.add(t)
    cuts: list[int] = []
    slots = [bisect_right(edges, minute_of_week(start, offsets))]
    for t in sorted(c for c in candidates if start < c < end):
        slot = bisect_right(edges, minute_of_week(t, offsets))
        if slot != slots[-1]:
            cuts.append(t)
            slots.append(slot)
    return cuts, slots


def parse_month(text: str) -> tuple[int, int]:
    """(year, month) of "YYYY-MM", or ValueError."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if m is None or not 1 <= int(m[2]) <= 12:
        raise ValueError(f"month must be YYYY-MM (got {text!r})")
    return int(m[1]), int(m[2])


def month_label(ts: float, zone: ZoneInfo) -> str:
    d = local_date(ts, zone)
    return f"{d.year:04d}-{d.month:02d}"


__all__ = ["DEFAULT_BAND", "Band", "Tariff", "TariffError", "ZoneError", "day_bounds",
           "energy_cost", "local_date", "minute_of_week", "month_bounds", "offset_segments",
           "parse_month", "parse_tariff", "slot_runs", "utc_offset_s", "zone_of"]
