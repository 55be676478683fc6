"""Whole frames: item sequencing, history records, direction and dialect rules.

Owns: walking a payload item by item with the compiled command table, grouping items into
history records (`ed` ... up to the next `ed`), the strictness rules that span items (unknown
ids, downlink ids in uplinks, duplicates, `40` placement, empty records) and dialect
auto-detection; and the reverse: laying items and records out as a payload.

Never does I/O; never guesses: anything it cannot read exactly is a `DecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

from ._compile import Compiled, compile_command, register_echo_names
from .errors import DecodeError, EncodeError
from .model import HistoryRecord, Item, Uplink
from .schema import WIRE, Command, Dialect, Grouped, fixed_size
from .table import COMMANDS

HISTORY_HEADER, MONTHLY_KIND = 0xED, 0x40

DialectName = Literal["auto", "firmware", "guide"]


class _Entry(NamedTuple):
    """A compiled command in one dispatch table, with what the frame walker needs to know
    (a tuple, so the walker unpacks it in one step)."""

    decode: Callable
    unique_bit: int  # 1 << id for items allowed once per frame or record, else 0
    # True: reads the same in the other dialect; False: may not; int: same only if the
    # mask byte (first body byte) equals this value (all groups single-phase)
    invariant: bool | int
    structural: bool  # ed / 40: shape history records instead of becoming items
    body_size: int | None  # bytes after the id (and sub-id) when fixed, else None


def _body_size(cmd: Command, dialect: Dialect) -> int | None:
    size = 0
    for f in cmd.fields:
        n = fixed_size(f)
        if n is None and isinstance(f, Grouped) and dialect is Dialect.GUIDE:
            n = 1 + 3 * len(f.groups) * WIRE[f.wire][1]  # the guide always sends 3 per group
        if n is None:
            return None
        size += n
    return size


def _lookup(cmd: Command, dialect: Dialect, uplink: bool) -> Command | None:
    for c in COMMANDS:
        if (c.id, c.sub) == (cmd.id, cmd.sub) and dialect in c.dialects and (
                c.is_uplink() if uplink else c.is_downlink()):
            return c
    return None


def _build(dialect: Dialect, uplink: bool) -> tuple[list, dict[str, Compiled]]:
    table: list = [None] * 256
    by_name: dict[str, Compiled] = {}
    other = Dialect.GUIDE if dialect is Dialect.FIRMWARE else Dialect.FIRMWARE
    for cmd in COMMANDS:
        if dialect not in cmd.dialects or not (cmd.is_uplink() if uplink else cmd.is_downlink()):
            continue
        compiled = compile_command(cmd, dialect)
        grouped = next((f for f in cmd.fields if isinstance(f, Grouped)), None)
        if _lookup(cmd, other, uplink) is not cmd:
            invariant: bool | int = False
        elif grouped is not None:
            invariant = (1 << len(grouped.groups)) - 1
        else:
            invariant = True
        entry = _Entry(compiled.decode, 1 << cmd.id if cmd.unique else 0,
                       invariant, cmd.id in (HISTORY_HEADER, MONTHLY_KIND) and uplink,
                       _body_size(cmd, dialect))
        if cmd.sub is None:
            assert table[cmd.id] is None, cmd
            table[cmd.id] = entry
        else:
            subs = table[cmd.id] = table[cmd.id] or {}
            subs[cmd.sub] = entry
        if cmd.name in by_name:
            raise AssertionError(f"duplicate command name {cmd.name} in {dialect}")
        by_name[cmd.name] = compiled
    return table, by_name


register_echo_names(COMMANDS)
_TABLES = {(d, up): _build(d, up) for d in Dialect for up in (True, False)}


def compiled_commands(dialect: Dialect, uplink: bool) -> dict[str, Compiled]:
    """Every compiled command of a dialect and direction, by name."""
    return _TABLES[(dialect, uplink)][1]


# --- decoding ----------------------------------------------------------------------------------

def _unknown(o: int, cid: int, dialect: Dialect, uplink: bool) -> DecodeError:
    here = "an uplink" if uplink else "a downlink"
    for d in Dialect:
        for up in (uplink, not uplink):
            if (d, up) != (dialect, uplink) and _TABLES[(d, up)][0][cid] is not None:
                if up != uplink:
                    what = "downlink command" if uplink else "uplink item"
                    return DecodeError(f"id 0x{cid:02x} is a {what}, not valid in {here}",
                                       offset=o, command=cid)
                return DecodeError(f"id 0x{cid:02x} exists only in the {d} dialect",
                                   offset=o, command=cid)
    return DecodeError(f"unknown id 0x{cid:02x}", offset=o, command=cid)


def _walk(buf: bytes, dialect: Dialect, uplink: bool, warn: list | None
          ) -> tuple[list[Item], list[HistoryRecord], bool]:
    """Decode every item; returns (live items, history records, reads-the-same-in-both)."""
    table = _TABLES[(dialect, uplink)][0]
    n = len(buf)
    o = 0
    live: list[Item] = []
    records: list[HistoryRecord] = []
    items = live
    header: Item | None = None
    kind: str | None = None
    header_at = -1
    seen = 0
    invariant = True
    while o < n:
        cid = buf[o]
        entry = table[cid]
        start = o
        o += 1
        if type(entry) is not _Entry:
            if entry is None:
                raise _unknown(start, cid, dialect, uplink)
            if o >= n:
                raise DecodeError("truncated: sub-id missing", offset=o, command=cid)
            sub = buf[o]
            entry = entry.get(sub)
            if entry is None:
                raise DecodeError(f"unknown sub-id 0x{sub:02x}", offset=o, command=cid)
            o += 1
        decoder, bit, inv, structural, _ = entry
        if invariant and inv is not True:
            invariant = inv is not False and o < n and buf[o] == inv
        item, o = decoder(buf, o, n, warn)
        if structural:
            if cid == HISTORY_HEADER:
                if header is not None:
                    records.append(_record(header, kind, items, header_at))
                header, kind, items, header_at, seen = item, None, [], start, 0
                continue
            if header is None or items or kind is not None:
                raise DecodeError("monthly kind (40) must directly follow a history header",
                                  offset=start, command=cid)
            kind = item.kind  # type: ignore[attr-defined]
            continue
        if bit:
            if seen & bit:
                raise DecodeError(f"duplicate item 0x{cid:02x} in one "
                                  f"{'record' if header else 'frame'}", offset=start, command=cid)
            seen |= bit
        items.append(item)
    if header is not None:
        records.append(_record(header, kind, items, header_at))
    return live, records, invariant


def _may_parse(buf: bytes, dialect: Dialect, uplink: bool) -> bool:
    """False when the frame certainly does not parse in `dialect`: a walk over item lengths
    alone (no values decoded) runs into an unknown id or off the end. Cheap enough to spare
    auto-detection most full second readings."""
    table = _TABLES[(dialect, uplink)][0]
    n = len(buf)
    o = 0
    while o < n:
        entry = table[buf[o]]
        o += 1
        if entry is None:
            return False
        if type(entry) is not _Entry:
            if o >= n or (entry := entry.get(buf[o])) is None:
                return False
            o += 1
        if entry.body_size is None:
            return True  # variable length: only a full reading can tell
        o += entry.body_size
    return o == n


def _record(header: Item, kind: str | None, items: list[Item], at: int) -> HistoryRecord:
    if not items:
        raise DecodeError("history record without items", offset=at, command=HISTORY_HEADER)
    return HistoryRecord(mode=header.mode, timestamp=header.timestamp,  # type: ignore[attr-defined]
                         kind=kind, items=tuple(items))


def _parse(buf: bytes, dialect: Dialect, uplink: bool, strict_ranges: bool
           ) -> tuple[list[Item], list[HistoryRecord], bool, list[str]]:
    warn: list | None = None if strict_ranges else []
    try:
        live, records, invariant = _walk(buf, dialect, uplink, warn)
    except DecodeError as exc:
        exc.dialect = dialect.value
        raise
    except (IndexError, ValueError, OverflowError) as exc:  # a decoder bug must not escape raw
        raise DecodeError(f"internal decoder error: {exc!r}", dialect=dialect.value) from exc
    return live, records, invariant, warn or []


def _neither(what: str, fw: DecodeError, gd: DecodeError) -> DecodeError:
    def at(e: DecodeError) -> str:
        return e.reason if e.offset is None else f"{e.reason} at offset {e.offset}"

    return DecodeError(f"not {what} in either dialect: firmware: {at(fw)}; guide: {at(gd)}",
                       offset=fw.offset, command=fw.command, dialect="auto")


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
        if not data:
            raise DecodeError("empty payload", offset=0)
        return data
    raise DecodeError(f"payload must be bytes, not {type(payload).__name__}")


def decode(payload: bytes, *, dialect: DialectName = "auto", strict_ranges: bool = True,
           on_ambiguity: Literal["firmware", "error"] = "firmware") -> Uplink:
    """Decode one uplink payload.

    dialect: "firmware" (real devices), "guide" (the user guide's tables) or "auto" — the one
    under which the frame parses exactly; "common" when both read it identically; firmware,
    flagged `ambiguous` with the guide reading attached, when both parse with different
    meanings (or a `DecodeError` with ``on_ambiguity="error"``).
    strict_ranges: False turns out-of-range measurements into `Uplink.warnings`.
    Raises `DecodeError` for anything that is not exactly a CTH01 frame.
    """
    buf = _as_bytes(payload)
    if dialect != "auto":
        d = Dialect(dialect)
        live, records, _, warnings = _parse(buf, d, True, strict_ranges)
        return Uplink(dialect=d.value, items=tuple(live), history=tuple(records),
                      warnings=tuple(warnings))
    try:
        fw = _parse(buf, Dialect.FIRMWARE, True, strict_ranges)
    except DecodeError as fw_error:
        try:
            gd = _parse(buf, Dialect.GUIDE, True, strict_ranges)
        except DecodeError as gd_error:
            raise _neither("a frame", fw_error, gd_error) from None
        return Uplink(dialect="guide", items=tuple(gd[0]), history=tuple(gd[1]),
                      warnings=tuple(gd[3]))
    live, records, invariant, warnings = fw
    if invariant:
        return Uplink(dialect="common", items=tuple(live), history=tuple(records),
                      warnings=tuple(warnings))
    if not _may_parse(buf, Dialect.GUIDE, True):
        return Uplink(dialect="firmware", items=tuple(live), history=tuple(records),
                      warnings=tuple(warnings))
    try:
        gd = _parse(buf, Dialect.GUIDE, True, strict_ranges)
    except DecodeError:
        return Uplink(dialect="firmware", items=tuple(live), history=tuple(records),
                      warnings=tuple(warnings))
    if (gd[0], gd[1]) == (live, records):
        return Uplink(dialect="common", items=tuple(live), history=tuple(records),
                      warnings=tuple(warnings))
    if on_ambiguity == "error":
        raise DecodeError("ambiguous frame: firmware and guide dialects read it differently",
                          offset=0, dialect="auto")
    alternative = Uplink(dialect="guide", items=tuple(gd[0]), history=tuple(gd[1]),
                         warnings=tuple(gd[3]))
    return Uplink(dialect="firmware", items=tuple(live), history=tuple(records),
                  ambiguous=True, alternative=alternative, warnings=tuple(warnings))


def decode_downlink(payload: bytes, *, dialect: DialectName = "auto") -> tuple[Item, ...]:
    """Decode a downlink payload (what a network server sends the device) into its commands."""
    buf = _as_bytes(payload)
    if dialect != "auto":
        return tuple(_parse(buf, Dialect(dialect), False, True)[0])
    try:
        return tuple(_parse(buf, Dialect.FIRMWARE, False, True)[0])
    except DecodeError as fw_error:
        try:
            return tuple(_parse(buf, Dialect.GUIDE, False, True)[0])
        except DecodeError as gd_error:
            raise _neither("a downlink", fw_error, gd_error) from None


# --- encoding ----------------------------------------------------------------------------------

def _encode_items(items: Iterable[Item], dialect: Dialect, uplink: bool, out: bytearray,
                  strict_ranges: bool) -> None:
    by_name = _TABLES[(dialect, uplink)][1]
    for item in items:
        name = getattr(item, "command_name", None)
        compiled = by_name.get(name) if name else None
        if compiled is None:
            where = "an uplink" if uplink else "a downlink"
            raise EncodeError(f"{name or type(item).__name__} cannot be sent in {where} "
                              f"({dialect} dialect)", command=name)
        if not isinstance(item, compiled.cls):
            raise EncodeError(f"expected a {compiled.cls.__name__} item", command=name)
        compiled.encode(item, out, strict_ranges=strict_ranges, uplink=uplink)


def encode_downlink(*items: Item, dialect: Literal["firmware", "guide"] = "firmware") -> bytes:
    """Lay downlink commands out as one payload; validates every value (`EncodeError`)."""
    out = bytearray()
    _encode_items(items, Dialect(dialect), False, out, True)
    return bytes(out)


def encode_uplink(frame: Uplink | Iterable[Item], *,
                  dialect: Literal["firmware", "guide"] | None = None,
                  strict_ranges: bool = True) -> bytes:
    """Lay uplink items (and history records) out as one payload — what the device sends.

    The dialect defaults to the frame's own (firmware for "common") or firmware for items.
    """
    if isinstance(frame, Uplink):
        d = Dialect(dialect or (frame.dialect if frame.dialect == "guide" else "firmware"))
        live, records = frame.items, frame.history
    else:
        d, live, records = Dialect(dialect or "firmware"), tuple(frame), ()
    out = bytearray()
    _encode_items(live, d, True, out, strict_ranges)
    by_name = _TABLES[(d, True)][1]
    for rec in records:
        header = by_name["history_header"]
        header.encode(header.cls(mode=rec.mode, timestamp=rec.timestamp), out)
        if rec.kind is not None:
            kind = by_name["monthly_kind"]
            kind.encode(kind.cls(kind=rec.kind), out)
        if not rec.items:
            raise EncodeError("a history record needs at least one item", command="history")
        _encode_items(rec.items, d, True, out, strict_ranges)
    if not out:
        raise EncodeError("nothing to encode")
    return bytes(out)
