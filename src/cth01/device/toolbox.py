"""The ToolBox app's local (Bluetooth) configuration interface of a virtual CTH01, as an API.

Owns: what a phone running Milesight ToolBox can do with a CTH01 (guide ch. 4) — log in with
the device password, read the basic information, sync the clock and time zone from the phone,
read and write settings and LoRaWAN parameters, change the password, export and import
configuration templates, export stored history as CSV, and reset to factory settings — plus
the rules of that interface: the password format, the login lockout, the 3-minute idle end of
the Bluetooth session, the 14-day export window.

Settings are written with the device's own rules (`Settings.apply`, the same path downlinks
take), all or nothing, and the firmware is then told about them the way it tells itself after
a downlink (`_sync_bank`, `_act(now, "applied", name)`), so timers and per-second work follow.

Sans-IO like the firmware: every call that depends on time takes `now` (Unix seconds, UTC);
nothing here reads a clock, sleeps or does I/O. Frames the device emits in answer to a ToolBox
action (the join request after a reset) are collected in `ToolBox.outputs` for the runner.

Choices of ours (the guide does not say): five wrong passwords in a row lock the login for
ten minutes; a new login replaces the previous session (the device talks to one phone at a
time); the session ends after a reset (the device reboots). Bluetooth needs the 12 V supply
(the CTH01 has no battery): a device that is off cannot be logged into, and a session ends
when its device loses power. It does not need a network: a device still joining is reachable.
Setting 65 (Bluetooth on/off) switched off refuses logins.

Must never: encode bytes by hand, read the wall clock, or bypass the settings rules.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from cth01.protocol import DecodeError, GroupReading, Item, decode, items

from . import storage as st
from .firmware import Output, VirtualCTH01
from .settings import (
    _ALIASES,
    _SETTING_UNION,
    DEFAULT_PASSWORD,
    GROUPS,
    MODEL,
    SettingError,
)

MAX_LOGIN_FAILURES = 5  # our choice: consecutive wrong passwords before the lockout
LOCKOUT_S = 10 * 60  # our choice
SESSION_IDLE_S = 3 * 60  # guide ch. 4: no data interaction within 3 minutes ends the link
EXPORT_WINDOW_MAX_S = 14 * 86_400  # guide ch. 4: the export time range is limited to 14 days
PASSWORD_RULE = re.compile(r"[A-Za-z0-9_]{6}")  # guide ch. 4: 6 letters, digits, underscores
DEFAULT_PASSWORD_WARNING = (
    "the device password is still the default 123456: change it on first configuration "
    "(guide ch. 4)")
RECORD_TYPES = {name: k for k, name in enumerate(st.TYPE_NAMES)}
CSV_FIXED_COLUMNS = ("time_utc", "time_local", "type", "kind")


# --- errors ------------------------------------------------------------------------------------

class ToolBoxError(Exception):
    """Something the ToolBox interface refuses; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AuthError(ToolBoxError):
    """Wrong password, login locked, or the Bluetooth session has ended."""


class ExportError(ToolBoxError):
    """A history export the ToolBox refuses (unknown type, window over 14 days, start > end)."""


class SettingRefused(ToolBoxError):
    """A setting the device refuses; nothing was written. `setting` names it."""

    def __init__(self, setting: str | None, reason: str) -> None:
        self.setting = setting
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.setting}: {self.reason}" if self.setting else self.reason


# --- the interface -----------------------------------------------------------------------------

class ToolBox:
    """The Bluetooth configuration interface of one device. `login` opens a `Session`."""

    def __init__(self, device: VirtualCTH01) -> None:
        self.device = device
        self.failures = 0  # consecutive wrong passwords
        self.locked_until: int | None = None
        self.outputs: list[Output] = []  # frames the device emitted because of ToolBox actions
        self._session: Session | None = None

    def login(self, password: str, now: int) -> Session:
        """Connect and log in. Raises `AuthError` for a wrong password or while locked (five
        wrong passwords in a row lock the login for ten minutes); `ToolBoxError` when the
        device is off or its Bluetooth is switched off (setting 65). A new login ends the
        previous session."""
        if self.device.state == "off":
            raise ToolBoxError("the device is off: Bluetooth needs its 12 V supply")
        if not self.device.settings.items["65"].enabled:
            raise ToolBoxError("Bluetooth is disabled on this device (setting 65); enable it "
                               "by downlink")
        if self.locked_until is not None:
            if now < self.locked_until:
                raise AuthError(f"login locked after {MAX_LOGIN_FAILURES} wrong passwords "
                                f"until {_iso_utc(self.locked_until)}")
            self.locked_until, self.failures = None, 0
        if password != self.device.settings.password:
            self.failures += 1
            if self.failures >= MAX_LOGIN_FAILURES:
                self.locked_until = now + LOCKOUT_S
                raise AuthError(f"wrong password; login locked for {LOCKOUT_S // 60} minutes "
                                f"after {self.failures} wrong passwords")
            raise AuthError(f"wrong password ({MAX_LOGIN_FAILURES - self.failures} attempts "
                            "left before the lockout)")
        self.failures = 0
        if self._session is not None:
            self._session._end("a new login replaced this session")
        self._session = Session(self, now)
        return self._session


class Session:
    """One logged-in Bluetooth connection. Every call counts as interaction; a call more than
    three minutes after the previous one finds the session expired (`AuthError`)."""

    def __init__(self, toolbox: ToolBox, now: int) -> None:
        self._toolbox = toolbox
        self._last = now
        self._ended: str | None = None

    @property
    def device(self) -> VirtualCTH01:
        return self._toolbox.device

    @property
    def warnings(self) -> list[str]:
        """Advice to show the user: the default-password warning while it is 123456."""
        if self.device.settings.password == DEFAULT_PASSWORD:
            return [DEFAULT_PASSWORD_WARNING]
        return []

    # -- session bookkeeping -------------------------------------------------------------------

    def _use(self, now: int) -> None:
        if self._ended is None and self.device.state == "off":
            self._end("session ended: the device lost power")
        if self._ended is not None:
            raise AuthError(self._ended)
        if now - self._last > SESSION_IDLE_S:
            self._end("session expired")
            raise AuthError("session expired")
        self._last = max(self._last, now)

    def _end(self, reason: str) -> None:
        self._ended = reason
        if self._toolbox._session is self:
            self._toolbox._session = None

    # -- basic information and time ------------------------------------------------------------

    def basic_information(self, now: int) -> dict[str, Any]:
        """The "Basic Information" page."""
        self._use(now)
        d = self.device
        ident = d.identity
        dev_t = d.device_time(now)
        clock = d.clock
        return {
            "model": MODEL,
            "serial_number": ident.serial_number,
            "dev_eui": ident.dev_eui,
            "app_eui": ident.app_eui,
            "hardware_version": _version(ident.hardware_version),
            "firmware_version": _version(ident.firmware_version),
            "tsl_version": _version(ident.tsl_version),
            "oem_id": ident.oem_id,
            "bluetooth_name": d.settings.items["64"].name,
            "work_mode": "Class C",
            "device_time_utc": _iso_utc(dev_t),
            "device_time_local": clock.local(dev_t).isoformat(),
            "time_zone": _utc_offset(clock.offset_min),
            "dst_active": clock.is_dst(dev_t),
            "status_led": d.led,
            "network_state": d.state,
            "joined": d.state == "joined",
        }

    def sync_time(self, now: int, phone_time: int, phone_offset_min: int) -> None:
        """The Sync button: the device clock takes the phone's time (Unix seconds at `now`)
        and the device time zone the phone's offset (minutes east of UTC; guide ch. 4).
        An offset the device does not offer is refused and nothing changes."""
        self._use(now)
        d = self.device
        trial = d.settings.copy()
        try:
            trial.apply(items.TimeZone(offset_min=int(phone_offset_min)))
        except SettingError as e:
            raise SettingRefused("time_zone", e.reason) from None
        d.settings.items = trial.items
        d.clock_offset_s = int(phone_time) - int(now)
        d._sync_bank()
        self._toolbox.outputs += d._act(now, "applied", "time_zone")
        d._reschedule_bank()

    # -- settings -------------------------------------------------------------------------------

    def read_settings(self, now: int) -> dict[str, Any]:
        """Every setting: the template content (model, firmware version, `lorawan`, `settings`
        as item dicts in report order)."""
        self._use(now)
        return self.device.settings.template(include_name=True)

    def write(self, now: int, *items_or_dicts: Item | Mapping[str, Any]) -> list[str]:
        """Write settings, all or nothing, with the rules a downlink meets. Each argument is a
        configuration item or its dict (``{"type": "reporting_interval", "minutes": 20}``); a
        dict may give only the fields to change, the others are taken from the setting it
        replaces (same type, and same channel for per-channel thresholds). Returns the
        identifiers written, in order. Raises `SettingRefused` and changes nothing when any
        of them is refused."""
        self._use(now)
        d = self.device
        trial = d.settings.copy()
        written: list[str] = []
        names: list[str] = []
        for raw in items_or_dicts:
            item = _to_item(trial, raw)
            try:
                key, stored = trial.apply(item)
            except SettingError as e:
                raise SettingRefused(e.setting or item.command_name, e.reason) from None
            if key not in written:
                written.append(key)
            base = _ALIASES.get(stored.command_name, stored.command_name)
            if base not in names:
                names.append(base)
        d.settings.items = trial.items
        self._applied(now, names)
        return written

    def write_lorawan(self, now: int, **fields: Any) -> None:
        """Write LoRaWAN parameters (join_type, app_port, region, data_rate, adr, confirmed,
        rejoin_mode, link_checks). Raises `SettingRefused` for an unknown field, a value of
        the wrong type or one the device refuses; nothing changes then."""
        self._use(now)
        current = self.device.settings.lorawan
        defaults = asdict(current)
        for name, value in fields.items():
            if name not in defaults:
                raise SettingRefused(name, f"not a LoRaWAN parameter (one of "
                                           f"{', '.join(defaults)})")
            want = type(defaults[name])
            if type(value) is not want:
                raise SettingRefused(name, f"must be {want.__name__}, got {value!r}")
        try:
            lorawan = replace(current, **fields)
        except SettingError as e:
            raise SettingRefused(e.setting, e.reason) from None
        self.device.settings.lorawan = lorawan

    def change_password(self, now: int, new: str, confirm: str) -> None:
        """Guide ch. 4: exactly 6 characters, letters, digits and underscores only, entered
        twice. Raises `SettingRefused` otherwise."""
        self._use(now)
        problem = password_problem(new, confirm)
        if problem is not None:
            raise SettingRefused("password", problem)
        self.device.settings.password = new

    # -- templates ---------------------------------------------------------------------------

    def export_template(self, now: int, name: str) -> dict[str, Any]:
        """"Set Template": the configuration (no identity, no password) under a name."""
        self._use(now)
        if not isinstance(name, str) or not name.strip():
            raise ToolBoxError("a template needs a name")
        return {"name": name, **self.device.settings.template()}

    def import_template(self, now: int, template: Mapping[str, Any] | str) -> list[str]:
        """Write a template (dict or JSON text) of the same model: all or nothing. Returns the
        identifiers written; raises `SettingRefused` (nothing changed) otherwise."""
        self._use(now)
        d = self.device
        if isinstance(template, Mapping):
            template = dict(template)
        try:
            written = d.settings.apply_template(template)
        except SettingError as e:
            raise SettingRefused(e.setting, e.reason) from None
        names = list(dict.fromkeys(_ALIASES.get(i.command_name, i.command_name)
                                   for k, i in d.settings.items.items() if k in written))
        self._applied(now, names)
        return list(dict.fromkeys(written))

    def _applied(self, now: int, names: list[str]) -> None:
        """Tell the firmware, as it tells itself after a downlink, so its timers follow."""
        d = self.device
        d._sync_bank()
        for name in names:
            self._toolbox.outputs += d._act(now, "applied", name)
        d._reschedule_bank()

    # -- history and maintenance -------------------------------------------------------------

    def export_history(self, now: int, record_type: str, start: int, end: int) -> str:
        """Stored records of one type with start <= timestamp <= end (device clock, Unix
        seconds) as CSV text ("\\n" line ends): `time_utc`, `time_local`, `type`, `kind`,
        then one column per value (see `history_csv`). At most 14 days per export (guide
        ch. 4). With storage disabled or nothing stored, only the header."""
        self._use(now)
        if record_type not in RECORD_TYPES:
            raise ExportError(f"record type must be one of {', '.join(RECORD_TYPES)}, "
                              f"got {record_type!r}")
        start, end = int(start), int(end)
        if start > end:
            raise ExportError(f"start {_iso_utc(start)} is after end {_iso_utc(end)}")
        if end - start > EXPORT_WINDOW_MAX_S:
            raise ExportError(f"the export window is limited to 14 days, got "
                              f"{(end - start) / 86_400:.2f} days; export in segments")
        d = self.device
        records = d.storage.range(RECORD_TYPES[record_type], start, end) \
            if d.settings.storage_enabled else []
        return history_csv(records, d)

    def reset(self, now: int) -> None:
        """Factory reset: settings (password included) back to the defaults, stored records
        and energy registers erased, the device reboots — which ends this session."""
        self._use(now)
        self._toolbox.outputs += self.device.factory_reset(now)
        self._end("session ended: the device was reset")


# --- password rule -------------------------------------------------------------------------------

def password_problem(new: str, confirm: str) -> str | None:
    """Why a new password is refused, or None (guide ch. 4)."""
    if not isinstance(new, str) or len(new) != 6:
        n = len(new) if isinstance(new, str) else type(new).__name__
        return f"the password must have exactly 6 characters, got {n}"
    if not PASSWORD_RULE.fullmatch(new):
        return "only letters, digits and underscores are allowed"
    if new != confirm:
        return "the confirmation does not match"
    return None


# --- history as CSV ------------------------------------------------------------------------------

# periodic-report field -> column prefix where the field name alone is not clear
_RENAMES = {"unbalance_pct": "voltage_unbalance_pct"}


def history_csv(records: list[st.Record], device: VirtualCTH01) -> str:
    """Records as CSV: one row per record. Columns: `time_utc` (ISO 8601, Z), `time_local`
    (the device's local time), `type`, `kind` (energy / minimum / maximum for monthly
    records), then the values of the record's decoded items, named with their unit and
    channel: `temperature_c`, `voltage_unbalance_pct`, `current_a_ch1`..`ch12`,
    `voltage_v_l1`..`l3`, `thdi_pct_ch1`, `thdv_pct_l1`, `power_factor_pct_ch1` (single-phase
    group) or `power_factor_pct_group_b` (three-phase group total), `active_power_w_ch4`,
    `imported_active_energy_wh_group_c` ...; alarms as `alarm` (the alarm item, e.g.
    current_alarm), `alarm_condition`, `alarm_channel`, `alarm_value`, `alarm_unit`.
    The header is the union of the records' columns in order of first appearance; a value
    the device marked unavailable, or one a record does not carry, is an empty cell."""
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = dict.fromkeys(CSV_FIXED_COLUMNS)
    for rec in records:
        row: dict[str, Any] = {
            "time_utc": _iso_utc(rec.timestamp),
            "time_local": device.clock.local(rec.timestamp).isoformat(),
            "type": st.TYPE_NAMES[rec.type],
            "kind": rec.kind or "",
        }
        try:
            uplink = decode(b"".join(rec.body), dialect="firmware")
        except DecodeError as e:  # a record the device wrote itself: should never happen
            raise ExportError(f"stored record at {row['time_utc']} does not decode: {e}") \
                from None
        for item in uplink.items:
            for key, value in _flatten(item):
                _put(row, key, value)
        columns.update(dict.fromkeys(row))
        rows.append(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _put(row: dict[str, Any], key: str, value: Any) -> None:
    """A second value under the same column in one record gets `_2`, `_3`... (never lost)."""
    name, n = key, 1
    while name in row:
        n += 1
        name = f"{key}_{n}"
    row[name] = "" if value is None else value


def _flatten(item: Item) -> list[tuple[str, Any]]:
    """(column, value) pairs of one decoded item."""
    name = item.command_name
    if item.kind == "alarm":
        value_field = next((f for f in item.__struct_fields__
                            if f not in ("channel", "alarm")), None)
        out: list[tuple[str, Any]] = [("alarm", name),
                                      ("alarm_condition", getattr(item, "alarm", ""))]
        out.append(("alarm_channel", getattr(item, "channel", None)))
        out.append(("alarm_value", getattr(item, value_field) if value_field else None))
        out.append(("alarm_unit", _UNITS.get(value_field, "") if value_field else ""))
        return out
    out = []
    for field in item.__struct_fields__:
        value = getattr(item, field)
        prefix = _RENAMES.get(field, field)
        if field.startswith("energy_"):  # imported_active_energy_ab.energy_wh -> ..._wh
            prefix = f"{name.rsplit('_', 1)[0]}_{field.removeprefix('energy_')}"
        elif item.kind != "measurement":
            prefix = f"{name}_{field}"
        if isinstance(value, tuple) and value and isinstance(value[0], GroupReading):
            out += _groups(prefix, value)
        elif isinstance(value, tuple):
            label = "l" if len(value) == 3 else "ch"
            out += [(f"{prefix}_{label}{k + 1}", v) for k, v in enumerate(value)]
        else:
            out.append((prefix, value))
    return out


def _groups(prefix: str, readings: tuple[GroupReading, ...]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for g in readings:
        if g.channels is not None and g.phase == "single":
            first = 3 * GROUPS.index(g.group) + 1
            out += [(f"{prefix}_ch{first + k}", v) for k, v in enumerate(g.channels)]
        else:
            out.append((f"{prefix}_group_{g.group}", g.total))
    return out


_UNITS = {"temperature_c": "°C", "current_a": "A", "voltage_v": "V", "thdi_pct": "%",
          "thdv_pct": "%", "unbalance_pct": "%"}


# --- helpers -------------------------------------------------------------------------------------

def _to_item(settings: Any, raw: Item | Mapping[str, Any]) -> Item:
    """An item from an item or a (possibly partial) dict, completed from the current one."""
    if isinstance(raw, Item):
        return raw
    if not isinstance(raw, Mapping):
        raise SettingRefused(None, f"a setting must be an item or a dict, got "
                                   f"{type(raw).__name__}")
    name = raw.get("type")
    if not isinstance(name, str):
        raise SettingRefused(None, f"a setting dict needs a \"type\", got {dict(raw)!r}")
    merged = dict(raw)
    try:
        current = settings.get(_ALIASES.get(name, name), raw.get("channel"))
    except KeyError:
        current = None
    if current is not None and current.command_name == name:
        merged = {**current.to_dict(), **raw}
        merged.pop("unavailable", None)
    try:
        return msgspec.convert(merged, _SETTING_UNION)
    except msgspec.ValidationError as e:
        raise SettingRefused(name, str(e)) from None


def _iso_utc(t: int) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(v: tuple[int, int]) -> str:
    return f"V{v[0]}.{v[1]}"


def _utc_offset(offset_min: int) -> str:
    sign = "+" if offset_min >= 0 else "-"
    h, m = divmod(abs(offset_min), 60)
    return f"UTC{sign}{h:02d}:{m:02d}"


__all__ = ["AuthError", "ExportError", "Session", "SettingRefused", "ToolBox", "ToolBoxError",
           "history_csv", "password_problem"]
