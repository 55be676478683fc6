"""The ingest pipeline: envelopes in, everything the store must write out.

Owns: decoding each uplink with `cth01.protocol`, classifying it, merging a report split across
several uplinks into one reading, telling live readings from replayed records (retransmission,
history replies, monthly summaries), spotting energy counter resets, and collecting alarms,
configuration reports, command replies and device information — as plain rows in a `Batch`.

Sans-IO: no SQL, no clock, no transport. The store hands it envelopes that are not duplicates
and writes the batch it returns in one transaction. What it remembers between batches (the open
split report, the last energy counters of each channel) can be primed from the store after a
restart (`prime`), and losing it is harmless: a split report then becomes two readings one
second apart, and a reset across the restart is seen on the next reading.

Split reports: the firmware sends a report too big for the data rate as several uplinks about
one second apart, split at item boundaries. A live measurement uplink that arrives within
`MERGE_WINDOW_S` of the previous one of the same device, and carries none of the items that
reading already has, joins that reading (same timestamp).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cth01.protocol import DecodeError, Item, Uplink, decode
from cth01.protocol.commands import echo_identifier

from .envelope import Envelope
from .readings import CHANNELS, ENERGY_COLUMNS, MEASUREMENTS, Rows, channel_index, rows_of

APPLICATION_PORT = 85
MERGE_WINDOW_S = 10.0
# reading column index -> (channel, energy column)
_ENERGY_INDEX = {channel_index(c, ch): (ch, c) for ch in CHANNELS for c in ENERGY_COLUMNS}
_ENERGY_ITEMS = frozenset(n for n, (_, _, col) in MEASUREMENTS.items() if col in ENERGY_COLUMNS)
_INFO_FIELDS = {"serial_number", "version", "tsl_version", "product_name", "part_number",
                "frequency_band", "oem_id", "lorawan_class", "device_status"}
_CONFIG_KINDS = ("config", "threshold")


@dataclass(slots=True)
class DeadLetter:
    """A message the hub could not use, with why. `body` is the raw message (JSON text of a
    network message, or the payload bytes of an undecodable frame)."""

    received_at: float
    source: str
    reason: str
    body: bytes
    topic: str = ""
    dev_eui: str | None = None


@dataclass(slots=True)
class AlarmEvent:
    dev_eui: str
    time: float
    item: str  # temperature_alarm, current_alarm ... power_failure_alarm
    alarm_type: str  # the table's name: above_threshold, above_range_cleared ...
    channel: int | None = None  # channel 1-12 / phase 1-3, None for device-wide alarms
    value: float | None = None
    replayed: bool = False  # from a stored record (retransmission, history query)


@dataclass(slots=True)
class ConfigReport:
    """A configuration item the device reported (query reply, b9 answer, after a reset)."""

    dev_eui: str
    time: float
    setting: str  # the echo identifier: "61", "c502", "7704"
    value: dict[str, Any]


@dataclass(slots=True)
class Reply:
    """An ef command reply: the device's result for the command it echoes."""

    dev_eui: str
    time: float
    setting: str
    result: str
    command: str | None


@dataclass(slots=True)
class Batch:
    """Everything one batch of envelopes produces, ready for one transaction.

    Reading rows are (dev_eui, ts, origin, columns, values) — `columns` the indices into
    READING_COLUMNS of the values the report carries; monthly rows (dev_eui, ts, kind, columns,
    values). `history_readings` carry a device timestamp and are merged by the store only
    where no live reading of the same period exists.
    `uplinks` are (envelope, kind, note) for the raw-frame table.
    """

    uplinks: list[tuple[Envelope, str, str | None]] = field(default_factory=list)
    readings: list[tuple[Any, ...]] = field(default_factory=list)
    history_readings: list[tuple[Any, ...]] = field(default_factory=list)
    monthly_readings: list[tuple[Any, ...]] = field(default_factory=list)
    energy_resets: list[tuple[Any, ...]] = field(default_factory=list)
    alarms: list[AlarmEvent] = field(default_factory=list)
    configs: list[ConfigReport] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    joins: dict[str, float] = field(default_factory=dict)
    live_devices: set[str] = field(default_factory=set)


class _DeviceMemory:
    __slots__ = ("energy", "energy_ts", "open_at", "open_items", "open_ts", "wiring")

    def __init__(self) -> None:
        self.open_ts: int | None = None
        self.open_at = 0.0
        self.open_items: frozenset[str] = frozenset()
        self.wiring: dict[str, str] = {}
        # reading column index -> the latest energy counter, and the time of that reading
        self.energy: dict[int, Any] = {}
        self.energy_ts = 0


def uplink_kind(uplink: Uplink) -> str:
    """A short label of what an uplink carried, for the raw-frame table."""
    kinds = {i.kind for i in uplink.items}
    if uplink.history:
        kinds.add("history")
    for label in ("alarm", "reply", "history", "measurement"):
        if label in kinds:
            return {"measurement": "report"}.get(label, label)
    if kinds & set(_CONFIG_KINDS):
        return "config"
    return "info" if kinds else "empty"


class Pipeline:
    """Decodes envelopes and produces `Batch`es; keeps per-device memory between batches."""

    def __init__(self, *, dialect: str = "auto") -> None:
        self.dialect = dialect
        self._memory: dict[str, _DeviceMemory] = {}

    def known(self, dev_eui: str) -> bool:
        return dev_eui in self._memory

    def prime(self, dev_eui: str, energy: dict[int, tuple[int, list[Any]]]) -> None:
        """Restore what the store knows: channel -> (time, counters in ENERGY_COLUMNS order)
        of its latest reading."""
        mem = self._memory.setdefault(dev_eui, _DeviceMemory())
        for ch, (ts, counters) in energy.items():
            mem.energy_ts = max(mem.energy_ts, ts)
            for column, value in zip(ENERGY_COLUMNS, counters, strict=True):
                if value is not None:
                    mem.energy[channel_index(column, ch)] = value

    def process(self, envelopes: Iterable[Envelope]) -> Batch:
        batch = Batch()
        for env in envelopes:
            self._one(env, batch)
        return batch

    # -- one uplink ---------------------------------------------------------------------------

    def _one(self, env: Envelope, batch: Batch) -> None:
        if env.f_port != APPLICATION_PORT:
            if env.f_port == 0 or not env.payload:
                batch.uplinks.append((env, "mac", None))
                return
            reason = f"fPort {env.f_port} is not the CTH01 application port {APPLICATION_PORT}"
            self._dead(env, reason, batch)
            return
        try:
            uplink = decode(env.payload, dialect=self.dialect, strict_ranges=False)
        except DecodeError as exc:
            self._dead(env, f"undecodable: {exc}", batch)
            return
        note = "; ".join(uplink.warnings) or None
        if uplink.ambiguous:
            note = "; ".join(filter(None, (note, "reads differently as the guide dialect")))
        batch.uplinks.append((env, uplink_kind(uplink), note))
        self._items(env, uplink.items, batch)
        for record in uplink.history:
            self._record(env, record.timestamp.timestamp(), record.kind, record.mode,
                         record.items, batch)

    def _dead(self, env: Envelope, reason: str, batch: Batch) -> None:
        batch.uplinks.append((env, "undecodable", reason))
        batch.dead_letters.append(DeadLetter(
            env.received_at, env.source, reason, env.payload, dev_eui=env.dev_eui))

    def _items(self, env: Envelope, items: tuple[Item, ...], batch: Batch) -> None:
        eui, t = env.dev_eui, env.received_at
        measurements: list[Item] = []
        for item in items:
            kind = item.kind
            if kind == "measurement":
                measurements.append(item)
            elif kind == "alarm":
                batch.alarms.append(_alarm(eui, t, item))
            elif item.command_name == "command_reply":
                batch.replies.append(Reply(eui, t, item.echo, item.result,  # type: ignore
                                           item.command))  # type: ignore[attr-defined]
            elif kind in _CONFIG_KINDS:
                batch.configs.append(ConfigReport(eui, t, echo_identifier(item),
                                                  msgspec.to_builtins(item)))
            elif item.command_name in _INFO_FIELDS:
                info = batch.info.setdefault(eui, {})
                info[item.command_name] = _info_value(item)
            elif item.command_name == "config_request":
                batch.info.setdefault(eui, {})["reset"] = t
        if measurements:
            self._live(env, measurements, batch)

    def _live(self, env: Envelope, items: list[Item], batch: Batch) -> None:
        eui, t = env.dev_eui, env.received_at
        mem = self._memory.get(eui)
        if mem is None:
            mem = self._memory[eui] = _DeviceMemory()
        names = frozenset(i.command_name for i in items)
        if (mem.open_ts is not None and 0 <= t - mem.open_at <= MERGE_WINDOW_S
                and not names & mem.open_items):
            ts = mem.open_ts
            mem.open_items |= names
        else:
            ts = int(t)
            mem.open_ts, mem.open_items = ts, names
        mem.open_at = t
        rows = rows_of(items)
        batch.live_devices.add(eui)
        if rows.phases and any(mem.wiring.get(g) != p for g, p in rows.phases.items()):
            mem.wiring.update(rows.phases)
            batch.info.setdefault(eui, {})["wiring"] = ",".join(
                f"{g}:{p}" for g, p in sorted(mem.wiring.items()))
        batch.readings.append((eui, ts, "live", *rows.compact()))
        if not names.isdisjoint(_ENERGY_ITEMS):
            self._check_resets(mem, eui, ts, rows, batch)

    def _check_resets(self, mem: _DeviceMemory, eui: str, ts: int, rows: Rows,
                      batch: Batch) -> None:
        if ts < mem.energy_ts:
            return  # an older reading (merged late): not a reset
        mem.energy_ts = ts
        last, values = mem.energy, rows.values
        for k in rows.present:
            if k in _ENERGY_INDEX:
                after, before = values[k], last.get(k)
                if before is not None and after is not None and after < before:
                    ch, column = _ENERGY_INDEX[k]
                    batch.energy_resets.append((eui, ch, ts, column, before, after))
                last[k] = after

    def _record(self, env: Envelope, ts: float, kind: str | None, mode: str,
                items: tuple[Item, ...], batch: Batch) -> None:
        eui, t = env.dev_eui, int(ts)
        rows: Rows = rows_of(items)
        for item in items:
            if item.kind == "alarm":
                batch.alarms.append(_alarm(eui, ts, item, replayed=True))
        if kind is None:
            batch.history_readings.append((eui, t, mode, *rows.compact()))
        else:
            batch.monthly_readings.append((eui, t, kind, *rows.compact()))


def _alarm(eui: str, t: float, item: Item, *, replayed: bool = False) -> AlarmEvent:
    name = item.command_name
    if name == "power_failure_alarm":
        return AlarmEvent(eui, t, name, "power_failure", replayed=replayed)
    channel = getattr(item, "channel", None)
    value = None
    for f in ("temperature_c", "current_a", "voltage_v", "thdi_pct", "thdv_pct",
              "unbalance_pct"):
        if hasattr(item, f):
            value = getattr(item, f)
            break
    # the codec gives channels 1-12 and phases 1-3 as printed on the device
    return AlarmEvent(eui, t, name, item.alarm, channel, value,  # type: ignore[attr-defined]
                      replayed)


def _info_value(item: Item) -> Any:
    data = msgspec.to_builtins(item)
    data.pop("type", None)
    return next(iter(data.values())) if len(data) == 1 else data
