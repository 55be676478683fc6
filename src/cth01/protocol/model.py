"""Decoded values: items, history records, whole uplinks.

Owns: the value types callers get back from `decode` and hand to `encode`. Every command of
the table gets an item class (a frozen msgspec Struct, keyword-only, tagged with the command
name) generated from its fields, so the table stays the only description of the wire format.
Item classes are reachable as `cth01.protocol.items.<CamelName>` or `item_class(name)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec

from .schema import Command, Echo, Flags, Grouped, Hex, Nibbles, Num, Text


class Item(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type",
           gc=False):
    """One decoded command (measurement, alarm, configuration, reply...)."""

    # set on each generated subclass
    command_name: ClassVar[str]
    kind: ClassVar[str]
    sentinel_fields: ClassVar[tuple[tuple[str, str, Any], ...]]

    @property
    def unavailable(self) -> tuple[str, ...]:
        """Fields that carried the device's "no data / error" sentinel (their value is None):
        ``name``, ``name[i]`` for arrays, ``name.g`` / ``name.g[i]`` for group totals/channels.
        A value that is simply absent (an alarm type that carries none) is not listed."""
        out: list[str] = []
        for name, shape, when in self.sentinel_fields:
            value = getattr(self, name)
            if shape == "scalar":
                if value is None and (when is None or getattr(self, when[0]) in when[1]):
                    out.append(name)
            elif shape == "array":
                if None in value:
                    out += [f"{name}[{k}]" for k, v in enumerate(value) if v is None]
            else:
                for g in value:
                    if g.channels is not None:
                        if None in g.channels:
                            out += [f"{name}.{g.group}[{k}]" for k, v in enumerate(g.channels)
                                    if v is None]
                    elif g.total is None:
                        out.append(f"{name}.{g.group}")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (datetimes as ISO 8601 UTC strings), with an `unavailable`
        list when a field carried the no-data sentinel."""
        out = msgspec.to_builtins(self)
        na = self.unavailable
        if na:
            out["unavailable"] = list(na)
        return out


class GroupReading(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The values of one current group (a-d) inside a grouped item (ids 07-17).

    Single-phase groups carry `channels` (three values, the group's channels in order).
    Three-phase groups carry `total` (firmware dialect: one value for the whole circuit) or,
    in the guide dialect, `channels` as well (the guide always sends three values).
    """

    group: str
    phase: str  # "single" | "three"
    channels: tuple[Any, ...] | None = None
    total: Any = None


class HistoryRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True,
                    gc=False):
    """A stored record replayed by the device (ed header + its items).

    `mode` is the header byte's name (target_time / historical / monthly), kept as sent;
    `kind` is "energy", "minimum" or "maximum" for monthly records (from the 40 item) and None
    for periodic snapshots.
    """

    mode: str
    timestamp: datetime
    kind: str | None = None
    items: tuple[Item, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode,
                               "timestamp": msgspec.to_builtins(self.timestamp)}
        if self.kind is not None:
            out["kind"] = self.kind
        out["items"] = [i.to_dict() for i in self.items]
        return out


class Uplink(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A decoded payload.

    `dialect` is "firmware" or "guide" — or "common" when the frame reads the same under both.
    `ambiguous` is True when both dialects parse it with different meanings; `dialect` is then
    "firmware" and `alternative` holds the guide reading. `warnings` lists measurement range
    violations when decoding with ``strict_ranges=False``.
    """

    dialect: str
    items: tuple[Item, ...] = ()
    history: tuple[HistoryRecord, ...] = ()
    ambiguous: bool = False
    alternative: Uplink | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dialect": self.dialect,
            "items": [i.to_dict() for i in self.items],
            "history": [r.to_dict() for r in self.history],
            "ambiguous": self.ambiguous,
            "alternative": None if self.alternative is None else self.alternative.to_dict(),
            "warnings": list(self.warnings),
        }

    def get(self, name: str) -> Item | None:
        """The first live item of that command name, or None."""
        for item in self.items:
            if item.command_name == name:
                return item
        return None

    @property
    def alarms(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.kind == "alarm")

    @property
    def replies(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.command_name == "command_reply")


def camel_case(name: str) -> str:
    """active_power_ab -> ActivePowerAb (item class names)."""
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _num_type(f: Num) -> Any:
    if f.time:
        return datetime
    if f.enum is not None:
        return bool if set(f.enum.values()) <= {True, False} else str
    return float if f.scale != 1 else int


def _field_types(cmd: Command) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    hidden = {f.length_field for f in cmd.fields if isinstance(f, Echo)}
    for f in cmd.fields:
        if isinstance(f, Nibbles):
            out += [(n.name, _num_type(n)) for n in (f.high, f.low) if n.name not in hidden]
        elif isinstance(f, Num):
            t = _num_type(f)
            if f.sentinel is not None or f.when is not None:
                t = t | None
            out.append((f.name, tuple[t, ...] if f.count > 1 else t))
        elif isinstance(f, Flags):
            out.append((f.name, tuple[str, ...]))
        elif isinstance(f, Text | Hex):
            out.append((f.name, str))
        elif isinstance(f, Grouped):
            out.append((f.name, tuple[GroupReading, ...]))
        elif isinstance(f, Echo):
            out += [(f.name, str), ("command", str | None)]
    return out


def _sentinel_spec(cmd: Command) -> tuple[tuple[str, str, Any], ...]:
    out: list[tuple[str, str, Any]] = []
    for f in cmd.fields:
        if isinstance(f, Grouped) and f.sentinel is not None:
            out.append((f.name, "grouped", None))
        elif isinstance(f, Num) and f.sentinel is not None:
            when = None
            if f.when is not None:
                ref = next(x for x in cmd.fields if isinstance(x, Num) and x.name == f.when[0])
                when = (ref.name, frozenset(ref.enum[r] for r in f.when[1]) if ref.enum
                        else f.when[1])
            out.append((f.name, "array" if f.count > 1 else "scalar", when))
    return tuple(out)


_CLASSES: dict[str, type[Item]] = {}


def item_class(cmd: Command | str) -> type[Item]:
    """The item class of a command (created on first use, shared between dialects)."""
    if isinstance(cmd, str):
        return _CLASSES[cmd]
    cls = _CLASSES.get(cmd.name)
    fields = _field_types(cmd)
    if cls is None:
        cls = msgspec.defstruct(
            camel_case(cmd.name),
            [(n, t) for n, t in fields if n != "command"]
            + [(n, t, None) for n, t in fields if n == "command"],
            bases=(Item,), tag=cmd.name, module=__name__,
            namespace={"command_name": cmd.name, "kind": cmd.kind, "__doc__": cmd.title,
                       "sentinel_fields": _sentinel_spec(cmd)},
        )
        _CLASSES[cmd.name] = cls
    elif {n for n, _ in fields} != set(cls.__struct_fields__):
        raise TypeError(f"command {cmd.name!r} has different fields in different table entries")
    return cls
