"""Scripted events for a simulated fleet: a scenario file, checked, then applied to a `Fleet`.

Owns: the scenario format, its validation and its translation into the fleet's own scripting
calls (`fleet.network.outage`, `fleet.loads.overload/voltage/harmonics/temperature/blackout`).
A scenario is JSON (or TOML, chosen by the file extension):

    {"events": [
        {"type": "outage", "devices": "10%", "start": "15m", "duration": "1h"},
        {"type": "overload", "devices": [0, 3], "start": "30m", "duration": "20m",
         "channels": [1, 2], "factor": 1.5}
    ]}

Every event has `type`, `devices` ("all", a list of device indices, or a percentage "10%" of
the fleet, at least one device), `start` (offset from the simulation start) and `duration`
(> 0), both durations like `90s`, `15m`, `2h`, `1d`, `1h30m` or whole seconds; an optional
`comment` is ignored. Type-specific fields:

    outage       —                                  (no LoRaWAN coverage: uplinks are lost)
    blackout     —                                  (mains failure: the power-failure alarm)
    overload     channels [1-12], factor ≥ 0        (current and powers × factor)
    voltage      factor ≥ 0, phases [1-3] = [1,2,3] (sag < 1 < swell)
    harmonics    thdi_pct ≥ 0                       (THDi of every loaded channel)
    temperature  rise_c                             (added to the probe reading)

A percentage picks devices at random but reproducibly (the same event position and fleet size
always pick the same devices). Every mistake is a `ScenarioError` naming the event (its index in
`events`), the field and the reason; device indices are checked against the fleet in `apply`.

Must never: advance time, touch the devices directly, or do I/O other than reading the file.
"""

from __future__ import annotations

import json
import math
import random
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cth01.device import Fleet

DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+[smhd])+")
_PART = re.compile(r"(\d+)([smhd])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")

_COMMON = ("type", "devices", "start", "duration", "comment")
# type -> {field: required}
EVENT_FIELDS: dict[str, dict[str, bool]] = {
    "outage": {},
    "blackout": {},
    "overload": {"channels": True, "factor": True},
    "voltage": {"factor": True, "phases": False},
    "harmonics": {"thdi_pct": True},
    "temperature": {"rise_c": True},
}
_TOP_LEVEL = ("events", "description")


class ScenarioError(ValueError):
    """A scenario that cannot be applied: `event` is the index in `events` (None for the file
    or its top level), `field` the offending field (None when the whole event is wrong)."""

    def __init__(self, reason: str, *, event: int | None = None, field: str | None = None,
                 source: str | None = None) -> None:
        self.reason, self.event, self.field, self.source = reason, event, field, source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.event is not None:
            where.append(f"event {self.event}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def located(self, source: str) -> ScenarioError:
        return ScenarioError(self.reason, event=self.event, field=self.field, source=source)


@dataclass(frozen=True)
class Event:
    """One checked event. `devices` is "all", a tuple of indices or a percentage (float);
    `params` holds the type-specific fields."""

    type: str
    devices: str | tuple[int, ...] | float
    start_s: int
    duration_s: int
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    events: tuple[Event, ...]
    description: str = ""

    @property
    def span_s(self) -> int:
        """Seconds from the simulation start to the end of the last event."""
        return max((e.start_s + e.duration_s for e in self.events), default=0)


# --- durations -----------------------------------------------------------------------------------

def parse_duration(value: object) -> int:
    """Seconds of `90s`, `15m`, `2h`, `1d`, `1h30m` (units may combine, largest first or not)
    or a whole number of seconds (int or digits). Raises ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 90s, 15m, 2h, 1d, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.isdigit():
            return int(text)
        if _DURATION.fullmatch(text):
            return sum(int(n) * DURATION_UNITS_S[u] for n, u in _PART.findall(text))
    raise ValueError(f"expected a duration like 90s, 15m, 2h, 1d, got {value!r}")


# --- parsing -------------------------------------------------------------------------------------

def load(path: str | Path) -> Scenario:
    """Read and check a scenario file: TOML for `.toml`, JSON otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read the scenario ({exc})", source=str(path)) from None
    try:
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML ({exc})", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"not valid JSON (line {exc.lineno} column {exc.colno}: "
                            f"{exc.msg})", source=str(path)) from None
    try:
        return parse(doc)
    except ScenarioError as exc:
        raise exc.located(str(path)) from None


def parse(doc: object) -> Scenario:
    """Check a scenario document (the parsed JSON/TOML) and return the `Scenario`."""
    if not isinstance(doc, Mapping):
        raise ScenarioError(f"a scenario is an object with an 'events' list, got "
                            f"{type(doc).__name__}")
    for key in doc:
        if key not in _TOP_LEVEL:
            raise ScenarioError(f"unknown top-level field (known: {', '.join(_TOP_LEVEL)})",
                                field=str(key))
    if "events" not in doc:
        raise ScenarioError("missing", field="events")
    events = doc["events"]
    if not isinstance(events, list):
        raise ScenarioError(f"must be a list of events, got {type(events).__name__}",
                            field="events")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError("must be text", field="description")
    return Scenario(tuple(_event(i, e) for i, e in enumerate(events)), description)


def _event(i: int, raw: object) -> Event:
    def err(reason: str, name: str | None = None) -> ScenarioError:
        return ScenarioError(reason, event=i, field=name)

    if not isinstance(raw, Mapping):
        raise err(f"an event is an object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind is None:
        raise err("missing", "type")
    if kind not in EVENT_FIELDS:
        raise err(f"unknown event type {kind!r} (known: {', '.join(EVENT_FIELDS)})", "type")
    specific = EVENT_FIELDS[kind]
    for key in raw:
        if key not in _COMMON and key not in specific:
            known = ", ".join([*_COMMON, *specific])
            raise err(f"unknown field for a {kind} event (known: {known})", str(key))
    for key in ("devices", "start", "duration"):
        if key not in raw:
            raise err("missing", key)
    for key, required in specific.items():
        if required and key not in raw:
            raise err(f"missing (a {kind} event needs it)", key)
    devices = _devices(raw["devices"], err)
    try:
        start_s = parse_duration(raw["start"])
    except ValueError as exc:
        raise err(str(exc), "start") from None
    try:
        duration_s = parse_duration(raw["duration"])
    except ValueError as exc:
        raise err(str(exc), "duration") from None
    if duration_s <= 0:
        raise err("must be longer than 0 s", "duration")
    params: dict[str, Any] = {}
    if "channels" in raw:
        params["channels"] = _indices(raw["channels"], 1, 12, "channels", err)
    if "phases" in raw:
        params["phases"] = _indices(raw["phases"], 1, 3, "phases", err)
    for key in ("factor", "thdi_pct", "rise_c"):
        if key in raw:
            params[key] = _number(raw[key], key, err, minimum=None if key == "rise_c" else 0.0)
    return Event(kind, devices, start_s, duration_s, params)


def _devices(value: object, err: Any) -> str | tuple[int, ...] | float:
    if value == "all":
        return "all"
    if isinstance(value, str):
        m = _PERCENT.fullmatch(value.strip())
        if not m:
            raise err(f'expected "all", a list of device indices or a percentage like "10%", '
                      f"got {value!r}", "devices")
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise err(f"a percentage must be above 0 % and at most 100 %, got {value!r}",
                      "devices")
        return pct
    if isinstance(value, list):
        if not value:
            raise err("selects no device (empty list)", "devices")
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise err(f"device indices are whole numbers ≥ 0, got {v!r}", "devices")
            out.append(v)
        return tuple(sorted(set(out)))
    raise err(f'expected "all", a list of device indices or a percentage like "10%", '
              f"got {value!r}", "devices")


def _indices(value: object, lo: int, hi: int, name: str, err: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise err(f"expected a non-empty list of numbers {lo}-{hi}, got {value!r}", name)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise err(f"expected numbers {lo}-{hi}, got {v!r}", name)
    return tuple(sorted(set(value)))


def _number(value: object, name: str, err: Any, *, minimum: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        raise err(f"expected a number, got {value!r}", name)
    if minimum is not None and value < minimum:
        raise err(f"must be ≥ {minimum:g}, got {value!r}", name)
    return float(value)


# --- applying ------------------------------------------------------------------------------------

def select_devices(event: Event, index: int, fleet_size: int) -> list[int] | None:
    """The device indices an event acts on (None = the whole fleet). Raises ScenarioError for
    an index beyond the fleet."""
    if event.devices == "all":
        return None
    if isinstance(event.devices, float):
        k = max(1, math.ceil(fleet_size * event.devices / 100))
        rng = random.Random(f"cth01-scenario:{index}:{fleet_size}")
        return sorted(rng.sample(range(fleet_size), k))
    bad = [d for d in event.devices if d >= fleet_size]
    if bad:
        raise ScenarioError(f"device index {bad[0]} out of range: the fleet has {fleet_size} "
                            f"device(s), indices 0-{fleet_size - 1}", event=index,
                            field="devices")
    return list(event.devices)


def apply(scenario: Scenario, fleet: Fleet, start_unix: int) -> None:
    """Script every event on `fleet`, its times relative to `start_unix` (Unix s). Checks every
    event first, so a scenario with a wrong device index changes nothing."""
    n = len(fleet)
    plan = [(i, e, select_devices(e, i, n)) for i, e in enumerate(scenario.events)]
    for i, e, rows in plan:
        start = int(start_unix) + e.start_s
        end = start + e.duration_s
        devices = list(range(n)) if rows is None else rows
        p = e.params
        try:
            if e.type == "outage":
                euis = None if rows is None else [fleet.devices[k].dev_eui for k in rows]
                fleet.network.outage(start, end, euis)
            elif e.type == "blackout":
                fleet.loads.blackout(devices, start, end)
            elif e.type == "overload":
                fleet.loads.overload(devices, list(p["channels"]), p["factor"], start, end)
            elif e.type == "voltage":
                fleet.loads.voltage(devices, p["factor"], start, end,
                                    list(p.get("phases", (1, 2, 3))))
            elif e.type == "harmonics":
                fleet.loads.harmonics(devices, p["thdi_pct"], start, end)
            elif e.type == "temperature":
                fleet.loads.temperature(devices, p["rise_c"], start, end)
            else:  # pragma: no cover - parse() admits only the types above
                raise AssertionError(e.type)
        except (ValueError, IndexError) as exc:
            raise ScenarioError(f"the fleet refused the event: {exc}", event=i) from None


# --- the built-in demo ---------------------------------------------------------------------------

DEMO = {
    "description": "Two busy hours: a coverage gap, a mains failure, an overload, a sag, heat "
                   "and harmonics.",
    "events": [
        {"type": "outage", "devices": "5%", "start": "20m", "duration": "25m",
         "comment": "the gateway of a few sites loses its backhaul; they rejoin and retransmit"},
        {"type": "blackout", "devices": [0], "start": "35m", "duration": "10m",
         "comment": "mains failure at the first site: the power-failure alarm, then a reboot"},
        {"type": "overload", "devices": "10%", "start": "30m", "duration": "20m",
         "channels": [1, 2, 3], "factor": 2.5},
        {"type": "voltage", "devices": "20%", "start": "1h", "duration": "5m",
         "factor": 0.85, "phases": [1]},
        {"type": "temperature", "devices": "10%", "start": "1h20m", "duration": "30m",
         "rise_c": 25},
        {"type": "harmonics", "devices": "10%", "start": "1h35m", "duration": "15m",
         "thdi_pct": 45},
    ],
}


def demo_scenario() -> Scenario:
    """A small built-in scenario over the first two hours: an outage of ~5 % of the devices,
    a blackout of device 0, an overload, a voltage sag, a temperature rise and harmonics."""
    return parse(DEMO)
