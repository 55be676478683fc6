"""Typed builders for every downlink command.

Owns: a friendly, keyword-argument front for each downlink of the table, e.g.
``commands.set_reporting_interval(minutes=20)``. Each builder creates the table's item,
validates it by encoding it at once (so a bad value raises `EncodeError` where it was written,
naming field, value and allowed range) and returns a `Downlink`. Downlinks concatenate with
``+`` into one multi-command payload. Ranges, enums and layouts live in the table, not here.

Enum arguments take the table's names ("above", "three_phase", "1000A", "3P4W"...);
channels are 1-12 (voltage phases 1-3) as printed on the device.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from .codec import encode_downlink
from .model import Item, item_class
from .schema import Dialect
from .table import COMMANDS


class Downlink:
    """A validated downlink payload: one or more commands, ready for FPort 85."""

    __slots__ = ("dialect", "items", "payload")

    def __init__(self, items: Sequence[Item], dialect: Literal["firmware", "guide"] = "firmware"
                 ) -> None:
        self.items = tuple(items)
        self.dialect = dialect
        self.payload = encode_downlink(*self.items, dialect=dialect)

    def __add__(self, other: Downlink) -> Downlink:
        if not isinstance(other, Downlink):
            return NotImplemented
        dialect = "guide" if "guide" in (self.dialect, other.dialect) else "firmware"
        return Downlink(self.items + other.items, dialect)

    def __bytes__(self) -> bytes:
        return self.payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Downlink) and self.payload == other.payload

    def __hash__(self) -> int:
        return hash(self.payload)

    def hex(self) -> str:
        return self.payload.hex()

    def base64(self) -> str:
        return base64.b64encode(self.payload).decode("ascii")

    def __repr__(self) -> str:
        names = "+".join(i.command_name for i in self.items)
        return f"Downlink({names}: {self.hex()})"


def _one(command: str, dialect: Literal["firmware", "guide"] = "firmware", /, **fields: object
         ) -> Downlink:
    return Downlink([item_class(command)(**fields)], dialect)


def payload(*downlinks: Downlink) -> Downlink:
    """Several commands in one downlink (sent and applied in order)."""
    out = downlinks[0]
    for d in downlinks[1:]:
        out = out + d
    return out


# --- general -----------------------------------------------------------------------------------

def set_reporting_interval(*, minutes: int | None = None, seconds: int | None = None
                           ) -> Downlink:
    """61: periodic report every 1-1440 min (or, firmware only, 10-64800 s)."""
    if (minutes is None) == (seconds is None):
        raise TypeError("give exactly one of minutes= or seconds=")
    if minutes is not None:
        return _one("reporting_interval", minutes=minutes)
    return _one("reporting_interval_seconds", seconds=seconds)


def set_collection_interval(*, minutes: int | None = None, seconds: int | None = None
                            ) -> Downlink:
    """60 (firmware only): sampling/collection interval."""
    if (minutes is None) == (seconds is None):
        raise TypeError("give exactly one of minutes= or seconds=")
    if minutes is not None:
        return _one("collection_interval", minutes=minutes)
    return _one("collection_interval_seconds", seconds=seconds)


def set_data_storage(enabled: bool) -> Downlink:
    """c5 00: store records on the device (needed for history queries)."""
    return _one("data_storage", enabled=enabled)


def set_retransmission(enabled: bool) -> Downlink:
    """c5 01: resend records stored while the network was unreachable."""
    return _one("retransmission", enabled=enabled)


def set_retransmission_interval(seconds: int) -> Downlink:
    """c5 02: pace of retransmitted records, 120-1200 s."""
    return _one("retransmission_interval", seconds=seconds)


def set_retrieval_interval(seconds: int) -> Downlink:
    """c5 03: pace of records answering a history query, 120-1200 s."""
    return _one("retrieval_interval", seconds=seconds)


def reboot() -> Downlink:
    return _one("reboot")


def factory_reset() -> Downlink:
    """bf (firmware only)."""
    return _one("factory_reset")


def set_bluetooth_name(name: str) -> Downlink:
    """64: 1-13 ASCII characters."""
    return _one("bluetooth_name", name=name)


def enquire_periodic_report() -> Downlink:
    """b9: the device answers with its reporting interval (guide example 61010a00)."""
    return _one("enquire_periodic_report")


def rejoin() -> Downlink:
    return _one("rejoin")


def clear_energy(channel: int = 0) -> Downlink:
    """5f: reset cumulative energy of one channel (1-12) or all (0)."""
    return _one("clear_energy", channel=channel)


HistoryType = Literal["alarm", "periodic", "monthly_energy", "monthly_extremes"]


def clear_history(record_type: HistoryType) -> Downlink:
    return _one("clear_history", record_type=record_type)


def set_temperature_unit(unit: Literal["celsius", "fahrenheit"]) -> Downlink:
    return _one("temperature_unit", unit=unit)


def set_lorawan_version(version: Literal["1.0.2", "1.0.3", "1.0.4"]) -> Downlink:
    return _one("lorawan_version", version=version)


# --- time --------------------------------------------------------------------------------------

def set_time_zone(offset_min: int) -> Downlink:
    """c7: minutes east of UTC (UTC-4 -> -240)."""
    return _one("time_zone", offset_min=offset_min)


def set_daylight_saving(*, enabled: bool, bias_min: int = 60,
                        start: tuple[int, int, int, int] = (1, 1, 1, 0),
                        end: tuple[int, int, int, int] = (1, 1, 1, 0)) -> Downlink:
    """c6: start/end as (month 1-12, week 1-5 with 5 = last, weekday 1-7 Monday..Sunday,
    minute of the local day)."""
    (sm, sw, sd, st), (em, ew, ed, et) = start, end
    return _one("daylight_saving_time", enabled=enabled, bias_min=bias_min,
                start_month=sm, start_week=sw, start_weekday=sd, start_minute=st,
                end_month=em, end_week=ew, end_weekday=ed, end_minute=et)


def sync_time() -> Downlink:
    """b8: the device fetches time from the network server (DeviceTimeReq)."""
    return _one("sync_time")


def set_time(time: datetime | int) -> Downlink:
    """b7 (firmware only): set the device clock (aware datetime or Unix seconds)."""
    return _one("set_time", time=time)


def set_monthly_summary_time(*, day: int = 1, hour: int = 0, minute: int = 0) -> Downlink:
    """6d: when the previous month's summary is produced (local time)."""
    return _one("monthly_summary_time", day=day, hour=hour, minute=minute)


# --- calibration, thresholds, alarms -----------------------------------------------------------

def set_temperature_calibration(*, enabled: bool, offset_c: float = 0) -> Downlink:
    return _one("temperature_calibration", enabled=enabled, offset_c=offset_c)


Condition = Literal["disabled", "below", "above", "within", "outside"]


def set_temperature_threshold(*, enabled: bool, condition: Condition, min_c: float = 0,
                              max_c: float = 0) -> Downlink:
    return _one("temperature_threshold", enabled=enabled, condition=condition, min_c=min_c,
                max_c=max_c)


def set_current_threshold(channel: int, *, enabled: bool, condition: Condition,
                          min_a: int = 0, max_a: int = 0) -> Downlink:
    """77: whole amperes, channel 1-12."""
    return _one("current_threshold", channel=channel, enabled=enabled, condition=condition,
                min_a=min_a, max_a=max_a)


def set_voltage_threshold(phase: int, *, enabled: bool, condition: Condition,
                          min_v: int = 0, max_v: int = 0) -> Downlink:
    """78: whole volts, phase 1-3."""
    return _one("voltage_threshold", channel=phase, enabled=enabled, condition=condition,
                min_v=min_v, max_v=max_v)


def set_thdi_threshold(channel: int, *, enabled: bool, max_pct: int) -> Downlink:
    """79: alarm above max_pct % (whole percent), channel 1-12."""
    return _one("thdi_threshold", channel=channel, enabled=enabled,
                condition="above" if enabled else "disabled", min_pct=0, max_pct=max_pct)


def set_thdv_threshold(phase: int, *, enabled: bool, max_pct: int) -> Downlink:
    """7a: alarm above max_pct % (whole percent), phase 1-3."""
    return _one("thdv_threshold", channel=phase, enabled=enabled,
                condition="above" if enabled else "disabled", min_pct=0, max_pct=max_pct)


def set_voltage_unbalance_threshold(*, enabled: bool, max_pct: int) -> Downlink:
    """7b: alarm above max_pct % three-phase voltage unbalance."""
    return _one("voltage_unbalance_threshold", enabled=enabled,
                condition="above" if enabled else "disabled", min_pct=0, max_pct=max_pct)


def set_alarm_settings(*, repeat_interval_min: int = 5, repeat_count: int = 3,
                       report_cleared: bool = False) -> Downlink:
    """7c: how often and how many times an alarm repeats, and whether clearing is reported."""
    return _one("alarm_settings", repeat_interval_min=repeat_interval_min,
                repeat_count=repeat_count, report_cleared=report_cleared)


def query_thresholds(threshold: Literal["temperature", "current", "voltage", "thdi", "thdv",
                                        "voltage_unbalance"]) -> Downlink:
    """58 (guide dialect only); on firmware devices use `query_config`."""
    return _one("threshold_query", "guide", threshold=threshold)


# --- reporting and interfaces ------------------------------------------------------------------

def set_report_parameters(*parameters: str) -> Downlink:
    """6c: which quantities the periodic report carries (names of table.REPORT_PARAMETERS)."""
    return _one("report_parameters", parameters=tuple(parameters))


def set_voltage_interface(wiring: Literal["3P4W", "3P3W"]) -> Downlink:
    return _one("voltage_interface", wiring=wiring)


CtRange = Literal["none", "100A", "300A", "500A", "1000A", "4000A"]


def set_current_interface(group: Literal["a", "b", "c", "d"], *,
                          circuit: Literal["single_phase", "three_phase"],
                          ct_ranges: tuple[CtRange, CtRange, CtRange] = ("none",) * 3,
                          reversed_channels: Sequence[int] = ()) -> Downlink:
    """67-6a: circuit type of a group and the CT of its three channels.

    `reversed_channels` are positions 1-3 within the group whose current direction is reversed.
    """
    fields: dict[str, object] = {"circuit": circuit}
    for k in range(3):
        fields[f"direction_{k + 1}"] = "reverse" if k + 1 in reversed_channels else "forward"
        fields[f"ct_range_{k + 1}"] = ct_ranges[k]
    return _one(f"current_interface_{group}", **fields)


# --- history -----------------------------------------------------------------------------------

def query_history_point(record_type: HistoryType, time: datetime | int) -> Downlink:
    """5b: the stored record nearest to `time`."""
    return _one("history_query_point", record_type=record_type, time=time)


def query_history_range(record_type: HistoryType, start: datetime | int, end: datetime | int
                        ) -> Downlink:
    """5c: stored records in [start, end] (at most 300 per query, paced by c5 03)."""
    return _one("history_query_range", record_type=record_type, start=start, end=end)


def stop_history_query(record_type: HistoryType) -> Downlink:
    return _one("history_query_stop", record_type=record_type)


def query_storage_settings() -> Downlink:
    """57 (firmware only)."""
    return _one("query_storage_settings")


# --- configuration queries (firmware) ----------------------------------------------------------

def query_config(identifier: str) -> Downlink:
    """ef (firmware only): ask for one configuration item, by wire identifier as hex — the id
    plus sub-id or channel where the item has one: "61", "c503", "7704" (channel 5)."""
    return _one("config_query", reserved=0, identifier=identifier)


def query_all_config() -> Downlink:
    """ee (firmware only): the device reports every configuration item."""
    return _one("query_all_config")


def check_sequence_number(sequence_number: int) -> Downlink:
    return _one("sequence_number_check", sequence_number=sequence_number)


def check_order(order: int) -> Downlink:
    return _one("order_check", order=order)


# --- what the device echoes ----------------------------------------------------------------------

#: Commands whose ef echo (and configuration identifier) includes the sub-id byte.
ECHO_WITH_SUB_ID = (0xC5, 0xCF)
#: Per-channel thresholds: the echo includes the channel byte (0-based), e.g. "7704" = ch 5.
ECHO_WITH_CHANNEL = frozenset(("current_threshold", "voltage_threshold", "thdi_threshold",
                               "thdv_threshold"))
_DOWNLINK_COMMANDS = {c.name: c for c in COMMANDS if c.is_downlink}
_DOWNLINK_COMMANDS.update({c.name: c for c in COMMANDS
                           if c.is_downlink and Dialect.FIRMWARE in c.dialects})


def echo_identifier(item: Item) -> str:
    """The hex identifier the device echoes in its ef reply to this command, which is also the
    key of the setting it writes: the command id, plus the sub-id of c5 / cf or the channel byte
    of the per-channel thresholds 77-7a ("61", "c502", "7704")."""
    cmd = _DOWNLINK_COMMANDS[item.command_name]
    if cmd.sub is not None and cmd.id in ECHO_WITH_SUB_ID:
        return f"{cmd.id:02x}{cmd.sub:02x}"
    if cmd.name in ECHO_WITH_CHANNEL:
        return f"{cmd.id:02x}{item.channel - 1:02x}"  # type: ignore[attr-defined]
    return f"{cmd.id:02x}"
