"""Compatibility view: the Milesight (vendor) JSON object model of CTH01 frames.

Owns: the mapping between OUR typed items (`cth01.protocol`) and the JSON objects the vendor's
JavaScript codec (Milesight-IoT/SensorDecoders, cth-series/cth01) produces and accepts, so
that integrations written against the vendor payload format can use our strict codec.
It is a view over `cth01.protocol` and parses no bytes of its own: `decode` runs
``cth01.protocol.decode(payload, dialect="firmware")`` and renders the items; `encode` builds
items from the vendor object and lays them out with ``encode_downlink`` (or ``encode_uplink``
for uplink-shaped objects). Every wire fact (widths, scales, enums, ranges, sentinels) comes
from the command table; this module only knows vendor key names and vendor presentation
(kW/kWh instead of W/Wh, power factor as a ratio, 0-based channels, numeric enums, "error"
for the no-data sentinel, merge rules of repeated items, the `ans` reply list...).

    decode(payload) -> dict            an uplink, as the vendor decoder shows it
    decode_downlink(payload) -> dict   a downlink, as the vendor decoder shows it
    encode(obj) -> bytes               the vendor encoder's input model

Deliberate differences from the vendor codec (it is lax; we are strict):

Decoding
  * Anything `cth01.protocol.decode` rejects raises `DecodeError`: truncated items (the
    vendor reads missing bytes as 0), unknown ids (it skips them byte by byte), unknown
    sub-ids, alarm types / enum values outside the table, reserved mask bits, values outside
    the table's (decoding) ranges, `40` not directly after an `ed` header, history records
    without items, Bluetooth names that are not UTF-8 or longer than 13 bytes, duplicated
    measurements in one record.
  * `d7` (device info) is missing from our table and raises.
  * `65` (Bluetooth enable): like the vendor, ``"ble_enable"`` shows only the enable byte
    (the first byte's meaning is unknown); that byte must be 0 or 1 (the vendor shows any
    value).
  * Downlink commands (`be`, `bf`, `b6`-`b9`, `57`, `5b`-`5f`) are not uplinks and raise in
    `decode`; `decode_downlink` renders them like the vendor decoder does.
  * `fe` (order-check reply): the vendor consumes no byte and parses the order byte as the
    next id; we read it: ``"check_order_reply": {"order": n}`` instead of ``1``.
  * `35` (voltage-unbalance alarm) with the no-data value `ffff` gives ``"error"`` like every
    other sentinel (the vendor forgets the check there and shows 655.35; its own encoder
    writes `ffff` for "error").
  * Like the vendor's, the output does not show the `ed` mode byte; `encode` writes `01`.

Encoding
  * Unknown keys raise (the vendor ignores them), as do keys we cannot encode: `device_info`
    (not in our table), a top-level `history_type` (only valid inside a history record)
    and decoder-only keys (`ans`, `version`, `tsl_version`, ...).
  * `ble_enable` must be 0 or 1; like the vendor we write it into both bytes of `65`.
  * Missing fields raise (the vendor writes 0). Exceptions, as in the vendor model:
    `report_enable` flags default to 0, and absent/null/"" fields of
    `data_storage_settings` and `lorawan_configuration_settings` are not sent.
  * Values are never rounded, wrapped or truncated: a value must be a number that is an
    exact multiple of the wire step (0.01 °C, 0.001 kW...), enums must be known codes,
    and `"error"` is accepted wherever the table has a no-data sentinel. Argument-less
    commands (`reboot`, `reset`, ...) need the value 1 (the vendor sends them for any value).
  * `req` names the vendor does not know raise (the vendor drops them silently).
  * Ranges are the table's; downlinks keep to its encoding ranges. Where the guide and the
    vendor encoder disagree the table encodes the intersection, here the vendor's range
    (calibration ±80 °C, temperature threshold -20..60 °C, alarm `times` 1-100). Narrower
    than the vendor's (ours refuses): data-storage intervals 120-1200 s (vendor 30-1200;
    decoding accepts 30-1200); DST offset 1-120 min (vendor 0-120; decoding accepts 0);
    THD and unbalance thresholds: condition only 0 or 2 (vendor: any; decoding too),
    threshold_max 1-100 (vendor 0-100; decoding accepts 0); voltage/THDV threshold and
    alarm channels 0-2 (decoding too); Bluetooth name 1-13 ASCII bytes (vendor 1-255 UTF-8;
    decoding accepts 1-13 UTF-8 bytes); time_zone only the firmware's offsets. So a
    decoded value outside the encoding range cannot be sent back as a downlink.
  * Uplink-shaped objects are checked against the decoding ranges (what a device may
    report): there configuration echoes may carry calibration ±120 °C, temperature
    threshold up to 100 °C, alarm `times` up to 1000, THD/unbalance threshold_max 0 and
    UTF-8 Bluetooth names, and the measured temperature may reach 100 °C (vendor 60, also
    in a lone ``{"temperature": ...}``).
  * Errors are `EncodeError`s naming the vendor key path (e.g.
    ``current_alarm_settings[0].threshold_max``), the value and the allowed range in vendor
    units.
  * Uplink-shaped objects (measurements, alarms, `history`...) are encoded as an uplink with
    `encode_uplink`; mixing them with downlink-only keys raises. In a history record `40`
    (`history_type`) is written directly after the `ed` header (the vendor writes it after
    the measurements, which our decoder rejects), and top-level keys are written before the
    records (the vendor writes most of them after, into the last record).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cth01.protocol import (
    COMMANDS,
    DecodeError,
    Dialect,
    EncodeError,
    GroupReading,
    HistoryRecord,
    Item,
    Uplink,
    encode_downlink,
    encode_uplink,
    item_class,
)
from cth01.protocol import decode as _decode
from cth01.protocol import decode_downlink as _decode_downlink
from cth01.protocol.schema import Echo, Flags, Grouped, Nibbles, Num

__all__ = ["DecodeError", "EncodeError", "decode", "decode_downlink", "encode"]

# --- vendor vocabulary (names only; all wire facts come from the command table) --------------

# The vendor's alarm-type names, by type code.
ALARM_NAMES: dict[int, str] = {
    0x00: "collection_error",
    0x01: "lower_range_error",
    0x02: "over_range_error",
    0x03: "no_data",
    0x04: "over_range_release",
    0x10: "lower_range_alarm_deactivation",
    0x11: "lower_range_alarm_trigger",
    0x12: "over_range_alarm_deactivation",
    0x13: "over_range_alarm_trigger",
    0x14: "within_range_alarm_deactivation",
    0x15: "within_range_alarm_trigger",
    0x16: "exceed_range_alarm_deactivation",
    0x17: "exceed_range_alarm_trigger",
}

# `report_enable` keys, bit 0 upwards.
REPORT_FLAGS: tuple[str, ...] = (
    "temperature", "current", "voltage", "power_factor", "active_power", "reactive_power",
    "apparent_power", "forward_active_energy", "reverse_active_energy",
    "forward_reactive_energy", "reverse_reactive_energy", "apparent_energy", "thdi", "thdv",
    "voltage_unbalance",
)

# The vendor's identifier names: what `ef` replies echo (decoder `ans[].id`) and what `req`
# queries (encoder). "xx" stands for one byte written as ".<decimal>" in the name.
IDENTIFIERS: dict[str, str] = {
    "request_check_sequence_number": "ff", "request_check_order": "fe",
    "request_command_queries": "ef", "request_query_all_configurations": "ee",
    "historical_data_report": "ed", "lorawan_configuration_settings": "cf",
    "lorawan_configuration_settings.version": "cfd8", "tsl_version": "df",
    "product_name": "de", "product_pn": "dd", "product_sn": "db", "version": "da",
    "oem_id": "d9", "product_frequency_band": "d8", "device_info": "d7", "temperature": "01",
    "voltage_three_phase_imbalcance": "02", "thdi": "03", "thdi._item": "03xx", "thdv": "04",
    "thdv._item": "04xx", "current": "05", "current._item": "05xx", "voltage": "06",
    "voltage._item": "06xx", "power_factor": "07", "active_power1": "08",
    "active_power2": "09", "reactive_power1": "0a", "reactive_power2": "0b",
    "apparent_power1": "0c", "apparent_power2": "0d", "forward_active_energy1": "0e",
    "forward_active_energy2": "0f", "reverse_active_energy1": "10",
    "reverse_active_energy2": "11", "forward_reactive_energy1": "12",
    "forward_reactive_energy2": "13", "reverse_reactive_energy1": "14",
    "reverse_reactive_energy2": "15", "apparent_energy1": "16", "apparent_energy2": "17",
    "history_type": "40", "temperature_alarm": "30", "current_alarm": "31",
    "voltage_alarm": "32", "thdi_alarm": "33", "thdv_alarm": "34",
    "voltage_unbalance_alarm": "35", "power_loss_alarm": "36", "collection_interval": "60",
    "reporting_interval": "61", "device_status": "c8", "temperature_unit": "63",
    "bluetooth_name": "64", "ble_enable": "65", "data_storage_settings": "c5",
    "data_storage_settings.enable": "c500", "data_storage_settings.retransmission_enable":
    "c501", "data_storage_settings.retransmission_interval": "c502",
    "data_storage_settings.retrieval_interval": "c503", "voltage_interface": "66",
    "current_interface1": "67", "current_interface2": "68", "current_interface3": "69",
    "current_interface4": "6a", "temperature_calibration_settings": "6b", "time_zone": "c7",
    "daylight_saving_time": "c6", "temperature_alarm_settings": "76",
    "current_alarm_settings": "77", "current_alarm_settings._item": "77xx",
    "voltage_alarm_settings": "78", "voltage_alarm_settings._item": "78xx",
    "thdi_alarm_settings": "79", "thdi_alarm_settings._item": "79xx",
    "thdv_alarm_settings": "7a", "thdv_alarm_settings._item": "7axx",
    "voltage_unbalance_alarm_settings": "7b", "alarm_global_settings": "7c",
    "month_statistics_settings": "6d", "report_enable": "6c", "reset": "bf", "reboot": "be",
    "stop_historical_data_retrieval": "5d", "retrieve_historical_data_by_time": "5b",
    "retrieve_historical_data_by_time_range": "5c", "query_device_status": "b9",
    "synchronize_time": "b8", "set_time": "b7", "reconnect": "b6", "reset_energy": "5f",
    "clear_data": "5e", "query_history_set": "57",
}
_ECHO_EXACT = {bytes.fromhex(h): n for n, h in IDENTIFIERS.items() if "x" not in h}
_ECHO_ITEM = {bytes.fromhex(h[:2]): n.removesuffix("._item")
              for n, h in IDENTIFIERS.items() if h.endswith("xx")}

# Keys the vendor model has but we do not encode, and why.
_NOT_ENCODABLE = {
    "device_info": "0xd7 (device information) is not in the cth01 command table",
    "history_type": "only valid inside a history record, directly after its header",
    **dict.fromkeys(
        ("ans", "version", "tsl_version", "check_sequence_number_reply", "check_order_reply",
         "all_configurations_request_by_device"),
        "decoder output only (the vendor encoder does not encode it either)"),
}

# --- the command table, seen by (command name, field name) ---------------------------------


def _firmware_commands() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cmd in COMMANDS:
        if Dialect.FIRMWARE in cmd.dialects:
            out.setdefault(cmd.name, cmd)
    return out


_CMDS = _firmware_commands()
_UPLINK = {c.name for c in COMMANDS if Dialect.FIRMWARE in c.dialects and c.is_uplink()}
_DOWNLINK = {c.name for c in COMMANDS if Dialect.FIRMWARE in c.dialects and c.is_downlink()}


def _nums() -> dict[tuple[str, str], Num]:
    out: dict[tuple[str, str], Num] = {}
    for name, cmd in _CMDS.items():
        for f in cmd.fields:
            if isinstance(f, Nibbles):
                nums: tuple[Num, ...] = (f.high, f.low)
            elif isinstance(f, Num):
                nums = (f,)
            elif isinstance(f, Grouped):
                nums = (f.value,)
            else:
                continue
            for n in nums:
                out[(name, n.name)] = n
    return out


_NUMS = _nums()


def _spec(command: str, kind: type) -> Any:
    return next(f for f in _CMDS[command].fields if isinstance(f, kind))


# --- value conversion: our presented values <-> vendor numbers -------------------------------

def _js(raw: int, div: int) -> int | float:
    """raw / div as the vendor's JavaScript shows it (integral values without a fraction)."""
    if div == 1:
        return raw
    v = raw / div
    return int(v) if v.is_integer() else v


def _raw(num: Num, value: Any) -> int:
    """The wire integer of one of our presented values."""
    if num.enum is not None:
        return next(r for r, label in num.enum.items()
                    if label == value and type(label) is type(value))
    if num.time:
        return int(value.timestamp())
    return round((value - num.base) * num.scale)


def _to_vendor(num: Num, value: Any, div: int) -> Any:
    return "error" if value is None else _js(_raw(num, value), div)


def _vendor_allowed(num: Num, div: int, uplink: bool = False) -> str:
    if num.enum is not None:
        return "one of " + ", ".join(str(r) for r in num.enum)
    if num.choices is not None:
        return "one of " + ", ".join(str(c) for c in sorted(num.choices))
    lo, hi = num.raw_bounds(decoding=uplink)
    return f"{_js(lo, div)}..{_js(hi, div)}"


def _fail(path: str, reason: str, value: Any = None, allowed: str | None = None
          ) -> EncodeError:
    return EncodeError(reason, field=path, value=value, allowed=allowed)


def _from_vendor(num: Num, x: Any, div: int, path: str) -> Any:
    """One of our presented values from a vendor number (exact; never rounds)."""
    if isinstance(x, str) and x == "error" and num.sentinel is not None:
        return None
    allowed = _vendor_allowed(num, div)
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise _fail(path, "a number is required", x, allowed)
    exact = x * div
    if not math.isfinite(exact):
        raise _fail(path, "out of range", x, allowed)
    raw = round(exact)
    if abs(exact - raw) > 1e-12 * max(1.0, abs(exact)):
        raise _fail(path, f"finer than the wire's step of {_js(1, div)}",
                            x, allowed)
    if num.enum is not None:
        if raw not in num.enum:
            raise _fail(path, "not a known code", x, allowed)
        return num.enum[raw]
    if num.time:
        if not 0 <= raw <= 0xFFFFFFFF:
            raise _fail(path, "out of range", x, allowed)
        return datetime.fromtimestamp(raw, UTC)
    return num.engineering(raw)


def _obj(value: Any, path: str, keys: set[str] | None = None) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, "an object is required", value)
    if keys is not None:
        extra = [k for k in value if k not in keys]
        if extra:
            raise _fail(f"{path}.{extra[0]}", "unknown key", value[extra[0]],
                        ", ".join(sorted(keys)))
    return value


def _get(value: dict, key: str, path: str) -> Any:
    if key not in value:
        raise _fail(f"{path}.{key}", "missing")
    return value[key]


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list | tuple):
        raise _fail(path, "a list is required", value)
    return list(value)


# --- output scopes: the vendor's merge rules -------------------------------------------------

def _merge(scope: dict, key: str, value: Any) -> None:
    """Objects merge into an existing one (keys keep their place); anything else replaces."""
    old = scope.get(key)
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge(old, k, v)
    else:
        scope[key] = value


def _upsert(scope: dict, key: str, entry: dict) -> None:
    """Alarm-setting lists: an entry replaces the fields of the one with its channel."""
    entries = scope.setdefault(key, [])
    for old in entries:
        if old.get("channel") == entry["channel"]:
            old.update(entry)
            return
    entries.append(entry)


# --- shapes: one per vendor presentation, instantiated per command ---------------------------

# our field path -> (vendor path, vendor value, Num or None, vendor divisor)
Where = dict[str, tuple[str, Any, Num | None, int]]
Built = tuple[Item, Where]


@dataclass(frozen=True)
class F:
    """One vendor key <-> one of our fields; vendor value = wire integer / div."""

    key: str
    ours: str
    div: int = 1


@dataclass(frozen=True)
class Shape:
    command: str  # our command name
    key: str  # vendor key in decoded output
    encode_key: str | None = field(default="", kw_only=True)  # "" = same as key; None = none

    @property
    def enc(self) -> str | None:
        return self.key if self.encode_key == "" else self.encode_key

    def num(self, ours: str) -> Num:
        return _NUMS[(self.command, ours)]

    def cls(self) -> type[Item]:
        return item_class(self.command)

    def render(self, item: Item, scope: dict) -> None:
        raise NotImplementedError

    def build(self, value: Any, path: str) -> list[Built] | None:
        raise NotImplementedError


@dataclass(frozen=True)
class Flag(Shape):
    """A command without data: ``"key": 1``."""

    def render(self, item: Item, scope: dict) -> None:
        scope[self.key] = 1

    def build(self, value: Any, path: str) -> list[Built]:
        if value is not True and (isinstance(value, bool) or value != 1):
            raise _fail(path, "must be 1 to send the command", value, "1")
        return [(self.cls()(), {})]


@dataclass(frozen=True)
class Scalar(Shape):
    """``"key": number``."""

    ours: str = ""
    div: int = 1

    def render(self, item: Item, scope: dict) -> None:
        scope[self.key] = _to_vendor(self.num(self.ours), getattr(item, self.ours), self.div)

    def build(self, value: Any, path: str) -> list[Built]:
        v = _from_vendor(self.num(self.ours), value, self.div, path)
        return [(self.cls()(**{self.ours: v}), {self.ours: (path, value, self.num(self.ours),
                                                           self.div)})]


@dataclass(frozen=True)
class Doubled(Scalar):
    """``"key": number`` for a command whose value the vendor writes into two fields: its
    decoder shows only `ours` (the other byte is read and dropped), its encoder writes the
    value into `copy` as well (65: mode byte, then the enable byte)."""

    copy: str = ""

    def build(self, value: Any, path: str) -> list[Built]:
        ours, copy = self.num(self.ours), self.num(self.copy)
        kwargs = {self.ours: _from_vendor(ours, value, self.div, path),
                  self.copy: _from_vendor(copy, value, self.div, path)}
        return [(self.cls()(**kwargs), {self.ours: (path, value, ours, self.div),
                                        self.copy: (path, value, copy, self.div)})]


@dataclass(frozen=True)
class Text(Shape):
    """``"key": string`` (names, serial numbers, OEM id)."""

    ours: str = ""

    def render(self, item: Item, scope: dict) -> None:
        scope[self.key] = getattr(item, self.ours)

    def build(self, value: Any, path: str) -> list[Built]:
        if not isinstance(value, str):
            raise _fail(path, "a string is required", value)
        return [(self.cls()(**{self.ours: value}), {self.ours: (path, value, None, 1)})]


@dataclass(frozen=True)
class Obj(Shape):
    """``"key": {fixed keys..., fields...}``; `consts` are vendor keys with a fixed value that
    select this command (the interval unit); `optional` fields are not sent when absent."""

    fields: tuple[F, ...] = ()
    consts: tuple[tuple[str, int], ...] = ()
    optional: bool = False

    def keys(self) -> set[str]:
        return {k for k, _ in self.consts} | {f.key for f in self.fields}

    def render(self, item: Item, scope: dict) -> None:
        out: dict[str, Any] = dict(self.consts)
        for f in self.fields:
            out[f.key] = _to_vendor(self.num(f.ours), getattr(item, f.ours), f.div)
        _merge(scope, self.key, out)

    def build(self, value: Any, path: str, *, shared: bool = False) -> list[Built] | None:
        _obj(value, path)
        if any(value.get(k) != v for k, v in self.consts):
            return None
        if self.consts or not shared:
            _obj(value, path, self.keys())
        kwargs: dict[str, Any] = {}
        where: Where = {}
        for f in self.fields:
            if self.optional and value.get(f.key) in (None, ""):
                continue
            x = _get(value, f.key, path)
            kwargs[f.ours] = _from_vendor(self.num(f.ours), x, f.div, f"{path}.{f.key}")
            where[f.ours] = (f"{path}.{f.key}", x, self.num(f.ours), f.div)
        if self.optional and not kwargs:
            return []
        return [(self.cls()(**kwargs), where)]


@dataclass(frozen=True)
class Values(Shape):
    """``"key": [{"value": v}, ...]`` (per-channel measurements)."""

    ours: str = ""
    div: int = 1

    def render(self, item: Item, scope: dict) -> None:
        num = self.num(self.ours)
        scope[self.key] = [{"value": _to_vendor(num, v, self.div)}
                           for v in getattr(item, self.ours)]

    def build(self, value: Any, path: str) -> list[Built]:
        num = self.num(self.ours)
        entries = _list(value, path)
        if len(entries) != num.count:
            raise _fail(path, f"{num.count} entries are required", value)
        vals, where = [], {}
        for k, e in enumerate(entries):
            p = f"{path}[{k}]"
            x = _get(_obj(e, p, {"value"}), "value", p)
            vals.append(_from_vendor(num, x, self.div, f"{p}.value"))
            where[f"{self.ours}[{k}]"] = (f"{p}.value", x, num, self.div)
        return [(self.cls()(**{self.ours: tuple(vals)}), where)]


@dataclass(frozen=True)
class Groups(Shape):
    """Grouped values (07-17): ``{"mask1".., "group1": {"chan1"..} | "group1_value": v, ..}``;
    mask 1 = single-phase group with three channel values."""

    div: int = 1

    def render(self, item: Item, scope: dict) -> None:
        spec: Grouped = _spec(self.command, Grouped)
        num = spec.value
        readings = getattr(item, spec.name)
        out: dict[str, Any] = {f"mask{i}": int(g.phase == "single")
                               for i, g in enumerate(readings, 1)}
        for i, g in enumerate(readings, 1):
            if g.phase == "single":
                out[f"group{i}"] = {f"chan{k}": _to_vendor(num, v, self.div)
                                    for k, v in enumerate(g.channels, 1)}
            else:
                out[f"group{i}_value"] = _to_vendor(num, g.total, self.div)
        _merge(scope, self.key, out)

    def build(self, value: Any, path: str) -> list[Built]:
        spec: Grouped = _spec(self.command, Grouped)
        num = spec.value
        _obj(value, path)
        masks = []
        for i in range(1, len(spec.groups) + 1):
            m = _get(value, f"mask{i}", path)
            if isinstance(m, bool) or m not in (0, 1):
                raise _fail(f"{path}.mask{i}", "must be 0 or 1", m, "0, 1")
            masks.append(m)
        _obj(value, path, {f"mask{i}" for i in range(1, len(masks) + 1)}
             | {f"group{i}" if m else f"group{i}_value" for i, m in enumerate(masks, 1)})
        readings, where = [], {}
        for i, (g, m) in enumerate(zip(spec.groups, masks, strict=True), 1):
            ours = f"{spec.name}.{g}"
            if m:
                p = f"{path}.group{i}"
                chans = _obj(_get(value, f"group{i}", path), p, {"chan1", "chan2", "chan3"})
                vals = []
                for k in range(3):
                    x = _get(chans, f"chan{k + 1}", p)
                    vals.append(_from_vendor(num, x, self.div, f"{p}.chan{k + 1}"))
                    where[f"{ours}[{k}]"] = (f"{p}.chan{k + 1}", x, num, self.div)
                readings.append(GroupReading(group=g, phase="single", channels=tuple(vals)))
            else:
                p = f"{path}.group{i}_value"
                x = _get(value, f"group{i}_value", path)
                readings.append(GroupReading(group=g, phase="three",
                                             total=_from_vendor(num, x, self.div, p)))
                where[f"{ours}.total"] = (p, x, num, self.div)
        return [(self.cls()(**{spec.name: tuple(readings)}), where)]


@dataclass(frozen=True)
class Alarm(Shape):
    """``{"type": t, "<alarm name>": {} | {value_key: v}}``, wrapped in
    ``{"channel": c, "info": {...}}`` for per-channel alarms."""

    ours: str = ""  # our value field
    value_key: str = ""
    div: int = 100
    channel: bool = False

    def render(self, item: Item, scope: dict) -> None:
        code = _raw(self.num("alarm"), item.alarm)  # type: ignore[attr-defined]
        value_num = self.num(self.ours)
        assert value_num.when is not None
        sub = ({self.value_key: _to_vendor(value_num, getattr(item, self.ours), self.div)}
               if code in value_num.when[1] else {})
        info = {"type": code, ALARM_NAMES[code]: sub}
        if self.channel:
            ch = _raw(self.num("channel"), item.channel)  # type: ignore[attr-defined]
            _merge(scope, self.key, {"channel": ch, "info": info})
        else:
            _merge(scope, self.key, info)

    def build(self, value: Any, path: str) -> list[Built]:
        kwargs: dict[str, Any] = {}
        where: Where = {}
        if self.channel:
            _obj(value, path, {"channel", "info"})
            x = _get(value, "channel", path)
            kwargs["channel"] = _from_vendor(self.num("channel"), x, 1, f"{path}.channel")
            where["channel"] = (f"{path}.channel", x, self.num("channel"), 1)
            value = _get(value, "info", path)
            path = f"{path}.info"
        _obj(value, path)
        code = _get(value, "type", path)
        kwargs["alarm"] = _from_vendor(self.num("alarm"), code, 1, f"{path}.type")
        name = ALARM_NAMES[int(code)]
        _obj(value, path, {"type", name})
        value_num = self.num(self.ours)
        assert value_num.when is not None
        if int(code) in value_num.when[1]:
            p = f"{path}.{name}"
            x = _get(_obj(_get(value, name, path), p, {self.value_key}), self.value_key, p)
            kwargs[self.ours] = _from_vendor(value_num, x, self.div, f"{p}.{self.value_key}")
            where[self.ours] = (f"{p}.{self.value_key}", x, value_num, self.div)
        else:
            _obj(value.get(name, {}), f"{path}.{name}", set())
            kwargs[self.ours] = None
        return [(self.cls()(**kwargs), where)]


@dataclass(frozen=True)
class Settings(Shape):
    """Per-channel alarm thresholds: a list of ``{"channel", "enable", ...}``, upserted by
    channel when decoding."""

    fields: tuple[F, ...] = ()

    def render(self, item: Item, scope: dict) -> None:
        _upsert(scope, self.key, {f.key: _to_vendor(self.num(f.ours), getattr(item, f.ours),
                                                    f.div) for f in self.fields})

    def build(self, value: Any, path: str) -> list[Built]:
        shape = Obj(self.command, self.key, fields=self.fields)
        out: list[Built] = []
        for k, entry in enumerate(_list(value, path)):
            out += shape.build(entry, f"{path}[{k}]") or []
        return out


@dataclass(frozen=True)
class Interface(Shape):
    """``{"type": t, "config": [{"direction": d, "range": r} x 3]}`` (67-6a)."""

    def render(self, item: Item, scope: dict) -> None:
        g = lambda n: _raw(self.num(n), getattr(item, n))  # noqa: E731
        _merge(scope, self.key, {"type": g("circuit"), "config": [
            {"direction": g(f"direction_{k}"), "range": g(f"ct_range_{k}")} for k in (1, 2, 3)]})

    def build(self, value: Any, path: str) -> list[Built]:
        _obj(value, path, {"type", "config"})
        fields = [F("type", "circuit")]
        flat = {"type": _get(value, "type", path)}
        config = _list(_get(value, "config", path), f"{path}.config")
        if len(config) != 3:
            raise _fail(f"{path}.config", "3 entries are required", config)
        for k, entry in enumerate(config, 1):
            p = f"{path}.config[{k - 1}]"
            _obj(entry, p, {"direction", "range"})
            for vkey, ours in (("direction", f"direction_{k}"), ("range", f"ct_range_{k}")):
                flat[f"config[{k - 1}].{vkey}"] = _get(entry, vkey, p)
                fields.append(F(f"config[{k - 1}].{vkey}", ours))
        return Obj(self.command, self.key, fields=tuple(fields)).build(flat, path) or []


@dataclass(frozen=True)
class Report(Shape):
    """``{"temperature": 0|1, ...}``: one key per reported quantity (6c)."""

    def render(self, item: Item, scope: dict) -> None:
        spec: Flags = _spec(self.command, Flags)
        on = {spec.bits.index(n) for n in getattr(item, spec.name)}
        _merge(scope, self.key, {n: int(i in on) for i, n in enumerate(REPORT_FLAGS)})

    def build(self, value: Any, path: str) -> list[Built]:
        spec: Flags = _spec(self.command, Flags)
        _obj(value, path, set(REPORT_FLAGS))
        chosen = []
        for i, n in enumerate(REPORT_FLAGS):
            x = value.get(n, 0)
            if isinstance(x, bool) or x not in (0, 1):
                raise _fail(f"{path}.{n}", "must be 0 or 1", x, "0, 1")
            if x:
                chosen.append(spec.bits[i])
        return [(self.cls()(**{spec.name: tuple(chosen)}), {spec.name: (path, value, None, 1)})]


@dataclass(frozen=True)
class Bluetooth(Shape):
    """``{"length": bytes, "content": name}`` (64)."""

    def render(self, item: Item, scope: dict) -> None:
        name = item.name  # type: ignore[attr-defined]
        _merge(scope, self.key, {"length": len(name.encode()), "content": name})

    def build(self, value: Any, path: str) -> list[Built]:
        _obj(value, path, {"length", "content"})
        content = _get(value, "content", path)
        length = _get(value, "length", path)
        if not isinstance(content, str):
            raise _fail(f"{path}.content", "a string is required", content)
        if isinstance(length, bool) or length != len(content.encode()):
            raise _fail(f"{path}.length", "must equal the UTF-8 length of content", length,
                        str(len(content.encode())))
        return [(self.cls()(name=content), {"name": (f"{path}.content", content, None, 1)})]


@dataclass(frozen=True)
class Reply(Shape):
    """`ef`: one ``{"result", "length", "id"}`` appended to `ans` per reply (or query);
    `id` is the vendor's name of the echoed identifier. Encodes from `req` (query names)."""

    def render(self, item: Item, scope: dict) -> None:
        nib: Nibbles = _spec(self.command, Nibbles)
        echo = bytes.fromhex(getattr(item, _spec(self.command, Echo).name))
        scope.setdefault(self.key, []).append({
            "result": _raw(nib.high, getattr(item, nib.high.name)),
            "length": len(echo), "id": echo_name(echo)})

    def build(self, value: Any, path: str) -> list[Built]:
        out: list[Built] = []
        for k, name in enumerate(_list(value, path)):
            p = f"{path}[{k}]"
            ident = identifier(name, p)
            out.append((self.cls()(reserved=0, identifier=ident), {"identifier": (p, name,
                                                                                   None, 1)}))
        return out


@dataclass(frozen=True)
class TslVersion(Shape):
    def render(self, item: Item, scope: dict) -> None:
        scope[self.key] = f"v{item.major}.{item.minor}"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Version(Shape):
    def render(self, item: Item, scope: dict) -> None:
        i: Any = item
        fw = f"v{i.firmware_major}.{i.firmware_minor}"
        for tag, n in (("r", i.firmware_release), ("a", i.firmware_alpha),
                       ("u", i.firmware_unit_test), ("t", i.firmware_test)):
            fw += f"-{tag}{n}" if n else ""
        _merge(scope, self.key, {"hardware_version": f"v{i.hardware_major}.{i.hardware_minor}",
                                 "firmware_version": fw})


@dataclass(frozen=True)
class History(Shape):
    """Placeholder fixing where the vendor encoder writes `history` records."""


def echo_name(echo: bytes) -> str | None:
    """The vendor's name of an `ef` echo (None when it has none)."""
    if len(echo) == 1:
        return _ECHO_EXACT.get(echo)
    if len(echo) == 2:
        if echo in _ECHO_EXACT:
            return _ECHO_EXACT[echo]
        base = _ECHO_ITEM.get(echo[:1])
        return f"{base}.{echo[1]}" if base else None
    return None


def identifier(name: Any, path: str = "req") -> str:
    """The hex identifier a vendor `req` name queries ("current_alarm_settings.4" -> "7704")."""
    if not isinstance(name, str):
        raise _fail(path, "a name is required", name)
    parts = name.split(".")
    numbers = [int(p) for p in parts if re.fullmatch(r"[0-9]+", p)]
    key = ".".join("_item" if re.fullmatch(r"[0-9]+", p) else p for p in parts)
    hexed = IDENTIFIERS.get(key)
    if hexed is None or hexed.count("xx") != len(numbers):
        raise _fail(path, "not a configuration name cth01 can query", name)
    for n in numbers:
        if n > 0xFF:
            raise _fail(path, "item number out of range", name, "0..255")
        hexed = hexed.replace("xx", f"{n:02x}", 1)
    return hexed


def _thresholds(unit: str, div: int = 1) -> tuple[F, ...]:
    return (F("enable", "enabled"), F("threshold_condition", "condition"),
            F("threshold_min", f"min_{unit}", div), F("threshold_max", f"max_{unit}", div))


def _interval(command: str, key: str) -> tuple[Obj, Obj]:
    return (Obj(f"{command}_seconds", key, fields=(F("seconds_of_time", "seconds"),),
                consts=(("unit", 0),)),
            Obj(command, key, fields=(F("minutes_of_time", "minutes"),), consts=(("unit", 1),)))


_POWER_ENERGY = (("active_power", "active_power"), ("reactive_power", "reactive_power"),
                 ("apparent_power", "apparent_power"),
                 ("imported_active_energy", "forward_active_energy"),
                 ("exported_active_energy", "reverse_active_energy"),
                 ("imported_reactive_energy", "forward_reactive_energy"),
                 ("exported_reactive_energy", "reverse_reactive_energy"),
                 ("apparent_energy", "apparent_energy"))
_DST = ("month", "week_num", "week_day", "hour_min")
_DST_OURS = ("month", "week", "weekday", "minute")

# In the vendor encoder's emission order (a multi-key object is laid out in this order).
SHAPES: tuple[Shape, ...] = (
    Obj("sequence_number_check", "check_sequence_number_reply",
        fields=(F("sequence_number", "sequence_number"),),
        encode_key="request_check_sequence_number"),
    Obj("order_check", "check_order_reply", fields=(F("order", "order"),),
        encode_key="request_check_order"),
    Reply("command_reply", "ans", encode_key=None),
    Reply("config_query", "ans", encode_key="req"),
    Flag("config_request", "all_configurations_request_by_device", encode_key=None),
    Flag("query_all_config", "all_configurations_request_by_device",
         encode_key="request_query_all_configurations"),
    History("history_header", "history"),
    Obj("lorawan_version", "lorawan_configuration_settings", fields=(F("version", "version"),),
        optional=True),
    TslVersion("tsl_version", "tsl_version", encode_key=None),
    Version("version", "version", encode_key=None),
    Text("product_name", "product_name", ours="product_name"),
    Text("part_number", "product_pn", ours="part_number"),
    Text("serial_number", "product_sn", ours="serial_number"),
    Text("oem_id", "oem_id", ours="oem_id"),
    Text("frequency_band", "product_frequency_band", ours="frequency_band"),
    Scalar("temperature", "temperature", ours="temperature_c", div=100),
    Scalar("voltage_unbalance", "voltage_three_phase_imbalcance", ours="unbalance_pct", div=100),
    Values("thdi", "thdi", ours="thdi_pct", div=100),
    Values("thdv", "thdv", ours="thdv_pct", div=100),
    Values("current", "current", ours="current_a", div=100),
    Values("voltage", "voltage", ours="voltage_v", div=100),
    Groups("power_factor", "power_factor", div=100),
    *(Groups(f"{ours}_{ab}", f"{vendor}{n}", div=1000)
      for ours, vendor in _POWER_ENERGY for ab, n in (("ab", 1), ("cd", 2))),
    Alarm("temperature_alarm", "temperature_alarm", ours="temperature_c",
          value_key="temperature"),
    Alarm("current_alarm", "current_alarm", ours="current_a", value_key="current",
          channel=True),
    Alarm("voltage_alarm", "voltage_alarm", ours="voltage_v", value_key="voltage",
          channel=True),
    Alarm("thdi_alarm", "thdi_alarm", ours="thdi_pct", value_key="thdi", channel=True),
    Alarm("thdv_alarm", "thdv_alarm", ours="thdv_pct", value_key="thdv", channel=True),
    Alarm("voltage_unbalance_alarm", "voltage_unbalance_alarm", ours="unbalance_pct",
          value_key="voltage_unbalance"),
    Flag("power_failure_alarm", "power_loss_alarm"),
    *_interval("collection_interval", "collection_interval"),
    *_interval("reporting_interval", "reporting_interval"),
    Scalar("device_status", "device_status", ours="status"),
    Scalar("temperature_unit", "temperature_unit", ours="unit"),
    Bluetooth("bluetooth_name", "bluetooth_name"),
    Doubled("bluetooth_enable", "ble_enable", ours="enabled", copy="mode"),
    Obj("data_storage", "data_storage_settings", fields=(F("enable", "enabled"),),
        optional=True),
    Obj("retransmission", "data_storage_settings",
        fields=(F("retransmission_enable", "enabled"),), optional=True),
    Obj("retransmission_interval", "data_storage_settings",
        fields=(F("retransmission_interval", "seconds"),), optional=True),
    Obj("retrieval_interval", "data_storage_settings",
        fields=(F("retrieval_interval", "seconds"),), optional=True),
    Scalar("voltage_interface", "voltage_interface", ours="wiring"),
    *(Interface(f"current_interface_{g}", f"current_interface{n}")
      for n, g in enumerate("abcd", 1)),
    Obj("temperature_calibration", "temperature_calibration_settings",
        fields=(F("enable", "enabled"), F("calibration_value", "offset_c", 100))),
    Scalar("time_zone", "time_zone", ours="offset_min"),
    Obj("daylight_saving_time", "daylight_saving_time", fields=(
        F("enable", "enabled"), F("daylight_saving_time_offset", "bias_min"),
        *(F(f"{edge}_{v}", f"{edge}_{o}") for edge in ("start", "end")
          for v, o in zip(_DST, _DST_OURS, strict=True)))),
    Obj("temperature_threshold", "temperature_alarm_settings",
        fields=_thresholds("c", 100)),
    *(Settings(f"{q}_threshold", f"{q}_alarm_settings",
               fields=(F("channel", "channel"), *_thresholds(unit)))
      for q, unit in (("current", "a"), ("voltage", "v"), ("thdi", "pct"), ("thdv", "pct"))),
    Obj("voltage_unbalance_threshold", "voltage_unbalance_alarm_settings",
        fields=_thresholds("pct")),
    Obj("alarm_settings", "alarm_global_settings", fields=(
        F("interval", "repeat_interval_min"), F("times", "repeat_count"),
        F("release_enable", "report_cleared"))),
    Obj("monthly_summary_time", "month_statistics_settings",
        fields=(F("day", "day"), F("hour", "hour"), F("minute", "minute"))),
    Report("report_parameters", "report_enable"),
    Flag("factory_reset", "reset"),
    Flag("reboot", "reboot"),
    Obj("history_query_stop", "stop_historical_data_retrieval",
        fields=(F("type", "record_type"),)),
    Obj("history_query_point", "retrieve_historical_data_by_time",
        fields=(F("type", "record_type"), F("time", "time"))),
    Obj("history_query_range", "retrieve_historical_data_by_time_range",
        fields=(F("type", "record_type"), F("start_time", "start"), F("end_time", "end"))),
    Flag("enquire_periodic_report", "query_device_status"),
    Flag("sync_time", "synchronize_time"),
    Obj("set_time", "set_time", fields=(F("timestamp", "time"),)),
    Flag("rejoin", "reconnect"),
    Obj("clear_energy", "reset_energy", fields=(F("channel", "channel"),)),
    Obj("clear_history", "clear_data", fields=(F("type", "record_type"),)),
    Flag("query_storage_settings", "query_history_set"),
)

RENDER: dict[str, Shape] = {s.command: s for s in SHAPES if not isinstance(s, History)}
ENCODERS: dict[str, list[Shape]] = {}
for _s in SHAPES:
    if _s.enc is not None:
        ENCODERS.setdefault(_s.enc, []).append(_s)
del _s

_MONTHLY = _NUMS[("monthly_kind", "kind")]

# --- decoding ----------------------------------------------------------------------------------


def _render_all(items: tuple[Item, ...], scope: dict) -> dict:
    for item in items:
        RENDER[item.command_name].render(item, scope)
    return scope


def _record(rec: HistoryRecord) -> dict:
    out: dict[str, Any] = {"timestamp": int(rec.timestamp.timestamp())}
    if rec.kind is not None:
        out["history_type"] = {"type": _raw(_MONTHLY, rec.kind)}
    return _render_all(rec.items, out)


def decode(payload: bytes) -> dict[str, Any]:
    """An uplink as the vendor decoder presents it; `DecodeError` for anything that is not
    exactly a firmware-dialect CTH01 uplink."""
    up = _decode(payload, dialect="firmware")
    out = _render_all(up.items, {})
    if up.history:
        out["history"] = [_record(r) for r in up.history]
    return out


def decode_downlink(payload: bytes) -> dict[str, Any]:
    """A downlink as the vendor decoder presents it (the vendor decoder reads both
    directions; e.g. `be` -> ``{"reboot": 1}``)."""
    return _render_all(_decode_downlink(payload, dialect="firmware"), {})


# --- encoding ----------------------------------------------------------------------------------

def _build(key: str, value: Any, path: str) -> list[Built]:
    shapes = ENCODERS[key]
    if len(shapes) == 1:
        return shapes[0].build(value, path) or []
    # several of our commands behind one vendor key: intervals (by unit), data storage
    objs = [s for s in shapes if isinstance(s, Obj)]
    _obj(value, path)
    if objs[0].consts:
        for s in objs:
            got = s.build(value, path, shared=True)
            if got is not None:
                return got
        units = ", ".join(str(s.consts[0][1]) for s in objs)
        raise _fail(f"{path}.unit", "not a known unit", value.get("unit"), units)
    _obj(value, path, set().union(*(s.keys() for s in objs)))
    out: list[Built] = []
    for s in objs:
        out += s.build(value, path, shared=True) or []
    return out


def _build_object(obj: Any, path: str, *, in_record: bool) -> list[tuple[Item, Where, str]]:
    if not isinstance(obj, dict):
        raise _fail(path or "payload", "an object is required", obj)
    for key in obj:
        p = f"{path}.{key}" if path else key
        if in_record and key in ("timestamp", "history_type"):
            continue
        if key in _NOT_ENCODABLE or (in_record and key == "history"):
            raise _fail(p, f"cannot be encoded: {_NOT_ENCODABLE.get(key, 'nested history')}",
                        obj[key])
        if key not in ENCODERS:
            raise _fail(p, "unknown key", obj[key])
    out: list[tuple[Item, Where, str]] = []
    for key in ENCODERS:
        if key in obj and key != "history":
            p = f"{path}.{key}" if path else key
            out += [(item, where, p) for item, where in _build(key, obj[key], p)]
    return out


def _build_history(value: Any) -> list[tuple[HistoryRecord, list[tuple[Item, Where, str]]]]:
    out = []
    for k, rec in enumerate(_list(value, "history")):
        p = f"history[{k}]"
        _obj(rec, p)
        ts = _from_vendor(_NUMS[("history_header", "timestamp")], _get(rec, "timestamp", p), 1,
                          f"{p}.timestamp")
        kind = None
        if "history_type" in rec:
            hp = f"{p}.history_type"
            t = _get(_obj(rec["history_type"], hp, {"type"}), "type", hp)
            kind = _from_vendor(_MONTHLY, t, 1, f"{hp}.type")
        built = _build_object(rec, p, in_record=True)
        if not built:
            raise _fail(p, "a history record needs at least one item besides its header")
        out.append((HistoryRecord(mode="historical", timestamp=ts, kind=kind,
                                  items=tuple(i for i, _, _ in built)), built))
    return out


def _check(item: Item, where: Where, path: str, uplink: bool) -> None:
    """Encode one item alone so that an error can name the vendor key path."""
    try:
        if uplink:
            encode_uplink([item])
        else:
            encode_downlink(item)
    except EncodeError as exc:
        hit = where.get(exc.field or "")
        if hit is None:
            raise _fail(path, f"{exc.field}: {exc.reason}" if exc.field else exc.reason,
                        exc.value, exc.allowed) from None
        vpath, vvalue, num, div = hit
        allowed = _vendor_allowed(num, div, uplink) if num is not None else exc.allowed
        raise _fail(vpath, exc.reason, vvalue, allowed) from None


def encode(obj: dict[str, Any]) -> bytes:
    """The payload the vendor encoder produces for `obj`, built from our items and validated
    by our table (`EncodeError` naming the vendor key path). Downlink keys give a downlink;
    uplink-shaped keys (measurements, alarms, history...) give an uplink frame."""
    built = _build_object(obj, "", in_record=False)
    records = _build_history(obj["history"]) if "history" in obj else []
    every = built + [b for _, bs in records for b in bs]
    uplink = bool(records) or any(i.command_name not in _DOWNLINK for i, _, _ in every)
    if uplink:
        down_only = [p for i, _, p in every if i.command_name not in _UPLINK]
        if down_only:
            raise _fail(down_only[0], "a downlink command cannot be mixed with uplink-only "
                        "keys (measurements, alarms, history...)")
    for item, where, path in every:
        _check(item, where, path, uplink)
    if not every:
        return b""
    if uplink:
        return encode_uplink(Uplink(dialect="firmware", items=tuple(i for i, _, _ in built),
                                    history=tuple(r for r, _ in records)))
    return encode_downlink(*(i for i, _, _ in built))
