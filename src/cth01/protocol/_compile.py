"""Compiles the command table into per-command decoders and encoders.

Owns: turning each `Command` (for one dialect) into
  * a decoder — Python source generated from the fields and compiled once at import, so a
    frame is read with one `struct` call per fixed run of fields and no per-field interpretation;
  * an encoder — a small interpreter over the same fields that validates every value against
    the table's ranges, enums and widths and raises `EncodeError` naming field, value and range.
It never decides frame structure (history records, dialect detection): that is `codec`'s job.

Decoder signature: ``decode(buf, o, end, warn) -> (item, new_offset)``; `o` is the offset of
the first byte after the id (and sub-id); `warn` is None for strict range checks or a list
that collects measurement range violations.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import DecodeError, EncodeError
from .model import GroupReading, Item, item_class
from .schema import (
    WIRE,
    Command,
    Dialect,
    Echo,
    Flags,
    Grouped,
    Hex,
    Nibbles,
    Num,
    Text,
    fixed_size,
)

Decoder = Callable[[bytes, int, int, list | None], tuple[Item, int]]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A command of the table, ready to decode and encode in one dialect."""

    command: Command
    dialect: Dialect
    cls: type[Item]
    decode: Decoder
    source: str  # generated decoder source, for debugging and the curious

    def encode(self, item: Item, out: bytearray, *, strict_ranges: bool = True,
               uplink: bool = False) -> None:
        """Append the item's bytes. Uplinks (what a device reports) may carry the wider
        `accepts` ranges the decoder tolerates; downlinks keep to the table's `range`."""
        out.append(self.command.id)
        if self.command.sub is not None:
            out.append(self.command.sub)
        _encode_fields(self.command, self.dialect, item, out, _Limits(strict_ranges, uplink))


# --- decoding: runtime helpers referenced by generated code ------------------------------------

def _trunc(off: int, cid: int, what: str, need: int, left: int) -> DecodeError:
    return DecodeError(f"truncated {what}: needs {need} bytes, {max(left, 0)} left",
                       offset=off, command=cid)


def _bad(off: int, cid: int, name: str, raw: object, allowed: str) -> DecodeError:
    return DecodeError(f"invalid {name}={raw!r}, allowed {allowed}", offset=off, command=cid)


def _range(warn: list | None, off: int, cid: int, name: str, raw: object, allowed: str) -> None:
    err = _bad(off, cid, name, raw, allowed)
    if warn is None:
        raise err
    warn.append(str(err).replace("invalid", "out of range", 1))


def _text(buf: bytes, off: int, n: int, cid: int, name: str) -> str:
    raw = bytes(buf[off:off + n])
    # NUL padding at the end is stripped; a NUL inside the text is not text
    stripped = raw.rstrip(b"\0")
    if b"\0" in stripped:
        raise DecodeError(f"{name}: NUL byte inside the text", offset=off, command=cid)
    # ASCII-only fields are still read as UTF-8: other tools may have written such a name
    try:
        return stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{name}: not valid UTF-8 ({exc.reason})", offset=off + exc.start,
                          command=cid) from None


def _ts(raw: int) -> datetime:
    return datetime.fromtimestamp(raw, UTC)


_ECHO_NAMES: dict[bytes, str] = {}


def echo_command(echo: bytes) -> str | None:
    """Name of the command an `ef` echo identifies (None when it names no known command)."""
    return _ECHO_NAMES.get(bytes(echo[:2])) or _ECHO_NAMES.get(bytes(echo[:1]))


def register_echo_names(commands: tuple[Command, ...]) -> None:
    # downlinks are what replies acknowledge: let them win over same-id uplink items; a bare
    # id of a sub-id family names its member common to both dialects (61 -> reporting_interval)
    for cmd in sorted(commands, key=lambda c: (c.is_downlink(), len(c.dialects))):
        if cmd.sub is None:
            _ECHO_NAMES[bytes([cmd.id])] = cmd.name
        else:
            _ECHO_NAMES[bytes([cmd.id, cmd.sub])] = cmd.name
            if len(cmd.dialects) == 2:
                _ECHO_NAMES.setdefault(bytes([cmd.id]), cmd.name)


# --- decoding: code generation -----------------------------------------------------------------

def _allowed(f: Num, decoding: bool = False) -> str:
    if f.enum is not None:
        return "{" + ", ".join(f"{k:#04x}" for k in f.enum) + "}"
    return f.allowed_range(decoding=decoding)


class _Gen:
    """Accumulates the source of one decoder and the constants it refers to."""

    def __init__(self, cmd: Command, dialect: Dialect) -> None:
        self.cmd, self.dialect = cmd, dialect
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {
            "_trunc": _trunc, "_bad": _bad, "_range": _range, "_text": _text, "_ts": _ts,
            "_GR": GroupReading, "_echo_command": echo_command, "CID": cmd.id,
        }
        self.n = 0
        self.raw: dict[str, str] = {}  # field name -> local holding its raw value

    def const(self, value: object, stem: str = "K") -> str:
        self.n += 1
        name = f"{stem}{self.n}"
        self.ns[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def need(self, indent: int, size: str | int, what: str) -> None:
        self.emit(indent, f"if end - o < {size}: raise _trunc(o, CID, {what!r}, {size}, end - o)")

    # conversion of raw integers to presented values
    def scalar(self, ind: int, f: Num, raw: str, dst: str, off: str) -> None:
        """Emit code converting raw int `raw` (already a local) into local `dst`."""
        lo, hi = f.raw_bounds(decoding=True)
        _, _, wlo, whi = WIRE[f.wire]
        if f.sentinel is not None:
            self.emit(ind, f"if {raw} == {f.sentinel}:")
            self.emit(ind + 1, f"{dst} = None")
            self.emit(ind, "else:")
            ind += 1
        if f.enum is not None:
            e = self.const(dict(f.enum), "E")
            self.emit(ind, f"if {raw} not in {e}: raise _bad({off}, CID, {f.name!r}, {raw}, "
                           f"{_allowed(f, True)!r})")
            self.emit(ind, f"{dst} = {e}[{raw}]")
            return
        if f.choices is not None:
            c = self.const(f.choices, "C")
            self.emit(ind, f"if {raw} not in {c}: raise _bad({off}, CID, {f.name!r}, {raw}, "
                           f"{_allowed(f, True)!r})")
        elif (lo, hi) != (wlo, whi):
            tests = ([f"{lo} <= {raw}"] if lo != wlo else []) + (
                [f"{raw} <= {hi}"] if hi != whi else [])
            self.emit(ind, f"if not ({' and '.join(tests)}): "
                           f"{self.out_of_range(f, off, self.present(f, raw))}")
        self.emit(ind, f"{dst} = {self.present(f, raw)}")

    @staticmethod
    def out_of_range(f: Num, off: str, value: str) -> str:
        """The statement reporting a value outside the table's range: measured values may be
        downgraded to a warning, anything else is an error."""
        args = f"{off}, CID, {f.name!r}, {value}, {_allowed(f, True)!r}"
        return f"_range(warn, {args})" if f.measured else f"raise _bad({args})"

    @staticmethod
    def present(f: Num, raw: str) -> str:
        if f.time:
            return f"_ts({raw})"
        expr = f"{raw} / {f.scale}" if f.scale != 1 else raw
        return f"{expr} + {f.base}" if f.base else expr

    def array(self, ind: int, f: Num, items: list[str], dst: str, off: str) -> None:
        """Emit code converting raw expressions `items` (a tuple display) into tuple `dst`."""
        self.emit(ind, f"rt = ({', '.join(items)},)")
        lo, hi = f.raw_bounds(decoding=True)
        _, _, wlo, whi = WIRE[f.wire]
        conv = self.present(f, "x")
        checked = (lo, hi) != (wlo, whi)
        if f.sentinel is not None:
            self.emit(ind, f"if {f.sentinel} in rt:")
            self.emit(ind + 1, f"{dst} = tuple([None if x == {f.sentinel} else {conv} "
                               "for x in rt])")
            if checked:
                self.emit(ind + 1, f"chk = [x for x in rt if x != {f.sentinel}]")
            self.emit(ind, "else:")
            self.emit(ind + 1, f"{dst} = tuple([{conv} for x in rt])" if conv != "x"
                      else f"{dst} = rt")
            if checked:
                self.emit(ind + 1, "chk = rt")
        else:
            self.emit(ind, f"{dst} = tuple([{conv} for x in rt])" if conv != "x"
                      else f"{dst} = rt")
            if checked:
                self.emit(ind, "chk = rt")
        if checked:
            tests = ([f"min(chk) < {lo}"] if lo != wlo else []) + (
                [f"max(chk) > {hi}"] if hi != whi else [])
            bad = f"chk and ({' or '.join(tests)})"
            self.emit(ind, f"if {bad}:")
            skip = f"x != {f.sentinel} and " if f.sentinel is not None else ""
            self.emit(ind + 1, f"i = next(i for i, x in enumerate(rt) if {skip}"
                               f"not {lo} <= x <= {hi}); x = rt[i]")
            self.emit(ind + 1, self.out_of_range(f, f"{off} + i * {WIRE[f.wire][1]}", conv))


def _slots(wire: str, count: int, start: int) -> tuple[list[str], int]:
    """Raw value expressions of `count` values of `wire` starting at struct slot `start`."""
    if wire == "u24":
        return [f"(t[{start + 2 * k}] | t[{start + 2 * k + 1}] << 16)" for k in range(count)], \
            start + 2 * count
    return [f"t[{start + k}]" for k in range(count)], start + count


def _size(f: object) -> int:
    return f.size  # type: ignore[attr-defined]


def _fmt(f: object) -> str:
    if isinstance(f, Num):
        return WIRE[f.wire][0] * f.count
    if isinstance(f, Flags):
        return WIRE[f.wire][0]
    if isinstance(f, Nibbles):
        return "B"
    return f"{_size(f)}x"  # Hex and fixed Text are sliced from the buffer directly


def _gen_run(g: _Gen, run: list, ind: int) -> None:
    size = sum(_size(f) for f in run)
    fmt = "<" + "".join(_fmt(f) for f in run)
    g.need(ind, size, g.cmd.name)
    if any(not isinstance(f, Hex | Text) for f in run):
        s = g.const(struct.Struct(fmt), "S")
        g.emit(ind, f"t = {s}.unpack_from(buf, o)")
    g.emit(ind, "b = o")
    g.emit(ind, f"o += {size}")
    slot = pos = 0
    for f in run:
        off = f"b + {pos}"
        if isinstance(f, Num):
            exprs, slot = _slots(f.wire, f.count, slot)
            if f.count == 1:
                g.emit(ind, f"r_{f.name} = {exprs[0]}")
                g.raw[f.name] = f"r_{f.name}"
                g.scalar(ind, f, f"r_{f.name}", f"v_{f.name}", off)
            else:
                g.array(ind, f, exprs, f"v_{f.name}", off)
        elif isinstance(f, Nibbles):
            g.emit(ind, f"r_{f.high.name} = t[{slot}] >> 4; r_{f.low.name} = t[{slot}] & 15")
            slot += 1
            for n in (f.high, f.low):
                g.raw[n.name] = f"r_{n.name}"
                g.scalar(ind, n, f"r_{n.name}", f"v_{n.name}", off)
        elif isinstance(f, Flags):
            reserved = sum(1 << i for i, b in enumerate(f.bits) if b is None)
            bits = g.const(tuple((i, b) for i, b in enumerate(f.bits) if b), "B")
            g.emit(ind, f"r = t[{slot}]")
            slot += 1
            g.emit(ind, f"if r & {reserved}: raise _bad({off}, CID, {f.name!r}, hex(r), "
                        f"'reserved bits {reserved:#x} clear')")
            g.emit(ind, f"v_{f.name} = tuple([n for i, n in {bits} if r >> i & 1])")
        elif isinstance(f, Hex):
            g.emit(ind, f"v_{f.name} = buf[{off}:{off} + {f.size}].hex()")
        elif isinstance(f, Text):
            g.emit(ind, f"v_{f.name} = _text(buf, {off}, {f.size}, CID, {f.name!r})")
        pos += _size(f)


def _gen_grouped(g: _Gen, f: Grouped, ind: int) -> None:
    v = f.value
    w = WIRE[f.wire][1]
    full = (1 << len(f.groups)) - 1
    firmware = g.dialect is Dialect.FIRMWARE
    # mask -> (struct, size) for every legal mask
    layouts = {}
    for m in range(full + 1):
        counts = [3 if (m >> i) & 1 or not firmware else 1 for i in range(len(f.groups))]
        layouts[m] = (struct.Struct("<" + WIRE[f.wire][0] * sum(counts)), sum(counts) * w)
    # fast path: one branch per mask with static offsets, taken when no value is a sentinel
    # and all are in range; otherwise the general code below reports exactly what is wrong
    lo, hi = v.raw_bounds(decoding=True)
    _, _, wlo, whi = WIRE[v.wire]
    fast = [f"{v.sentinel} not in t"] if v.sentinel is not None else []
    fast += [f"min(t) >= {lo}"] if lo != wlo else []
    fast += [f"max(t) <= {hi}"] if hi != whi else []
    g.emit(ind, "if o < end:")
    g.emit(ind + 1, "m = buf[o]")
    for m in range(full + 1):
        parts, k = [], 0
        for i, name in enumerate(f.groups):
            if (m >> i) & 1 or not firmware:
                phase = "single" if (m >> i) & 1 else "three"
                parts.append(f"_GR(group={name!r}, phase={phase!r}, channels=t[{k}:{k + 3}])")
                k += 3
            else:
                parts.append(f"_GR(group={name!r}, phase='three', total=t[{k}])")
                k += 1
        st, size = layouts[m]
        g.emit(ind + 1, f"{'if' if m == 0 else 'elif'} m == {m} and end - o > {size}:")
        g.emit(ind + 2, f"t = {g.const(st, 'S')}.unpack_from(buf, o + 1)")
        g.emit(ind + 2, f"if {' and '.join(fast) or 'True'}:")
        g.emit(ind + 3, f"return CLS({f.name}=({', '.join(parts)},)), o + {1 + size}")
    lay = g.const(layouts, "L")
    g.need(ind, 1, f"{g.cmd.name} mask")
    g.emit(ind, "m = buf[o]")
    g.emit(ind, f"if m > {full}: raise _bad(o, CID, 'mask', hex(m), "
                f"'reserved bits {0xFF & ~full:#x} clear')")
    g.emit(ind, f"s, size = {lay}[m]")
    g.emit(ind, "if end - o - 1 < size: raise _trunc(o, CID, "
                f"{g.cmd.name!r}, size + 1, end - o)")
    g.emit(ind, "t = s.unpack_from(buf, o + 1)")
    g.emit(ind, "b = o + 1")
    g.emit(ind, "o += 1 + size")
    g.emit(ind, "k = 0")
    g.emit(ind, "groups = []")
    for i, name in enumerate(f.groups):
        g.emit(ind, f"if m & {1 << i}:")
        g.array(ind + 1, v, ["t[k]", "t[k + 1]", "t[k + 2]"], "vals", f"b + k * {w}")
        g.emit(ind + 1, f"groups.append(_GR(group={name!r}, phase='single', channels=vals))")
        g.emit(ind + 1, "k += 3")
        g.emit(ind, "else:")
        if firmware:
            g.emit(ind + 1, "r = t[k]")
            g.scalar(ind + 1, v, "r", "tot", f"b + k * {w}")
            g.emit(ind + 1, f"groups.append(_GR(group={name!r}, phase='three', total=tot))")
            g.emit(ind + 1, "k += 1")
        else:
            g.array(ind + 1, v, ["t[k]", "t[k + 1]", "t[k + 2]"], "vals", f"b + k * {w}")
            g.emit(ind + 1, f"groups.append(_GR(group={name!r}, phase='three', channels=vals))")
            g.emit(ind + 1, "k += 3")
    g.emit(ind, f"v_{f.name} = tuple(groups)")


def _gen_variable(g: _Gen, f: object, ind: int) -> None:
    if isinstance(f, Grouped):
        _gen_grouped(g, f, ind)
    elif isinstance(f, Num):  # conditional value (alarms)
        assert f.when is not None
        ref, values = f.when
        vs = g.const(values, "W")
        g.emit(ind, f"if {g.raw[ref]} in {vs}:")
        _gen_run(g, [Num(**{k: getattr(f, k) for k in Num.__slots__ if k != "when"})], ind + 1)
        g.emit(ind, "else:")
        g.emit(ind + 1, f"v_{f.name} = None")
    elif isinstance(f, Text):  # counted text: u8 length then the text
        g.need(ind, 1, f"{f.name} length")
        g.emit(ind, "n = buf[o]")
        g.emit(ind, f"if not 1 <= n <= {f.max_length}: raise _bad(o, CID, 'length', n, "
                    f"'1..{f.max_length}')")
        g.emit(ind, "o += 1")
        g.need(ind, "n", f.name)
        g.emit(ind, f"v_{f.name} = _text(buf, o, n, CID, {f.name!r})")
        g.emit(ind, "o += n")
    elif isinstance(f, Echo):
        n = g.raw[f.length_field]
        g.need(ind, n, f.name)
        g.emit(ind, f"v_{f.name} = buf[o:o + {n}].hex()")
        g.emit(ind, f"v_command = _echo_command(buf[o:o + {n}])")
        g.emit(ind, f"o += {n}")
    else:  # pragma: no cover - the table only uses the kinds above
        raise TypeError(f"cannot compile field {f!r}")


def compile_command(cmd: Command, dialect: Dialect) -> Compiled:
    g = _Gen(cmd, dialect)
    cls = item_class(cmd)
    g.ns["CLS"] = cls
    g.emit(0, "def decode(buf, o, end, warn):")
    run: list = []
    for f in cmd.fields:
        if fixed_size(f) is not None:
            run.append(f)
            continue
        if run:
            _gen_run(g, run, 1)
            run = []
        _gen_variable(g, f, 1)
    if run:
        _gen_run(g, run, 1)
    hidden = {f.length_field for f in cmd.fields if isinstance(f, Echo)}
    kwargs = [f"{n}=v_{n}" for n in cls.__struct_fields__ if n not in hidden]
    g.emit(1, f"return CLS({', '.join(kwargs)}), o")
    source = "\n".join(g.lines)
    exec(compile(source, f"<cth01 decoder {cmd.key} {dialect}>", "exec"), g.ns)
    return Compiled(cmd, dialect, cls, g.ns["decode"], source)


# --- encoding ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Limits:
    strict_ranges: bool  # False: measured values need only fit their wire width
    accepting: bool  # True: the decoder's wider `accepts` ranges apply (uplinks)


def _raw(cmd: Command, f: Num, value: object, limits: _Limits, path: str | None = None) -> int:
    name = path or f.name

    def fail(reason: str) -> EncodeError:
        return EncodeError(reason, command=cmd.name, field=name, value=value, allowed=_allowed(f))

    if value is None:
        if f.sentinel is None:
            raise fail("a value is required")
        return f.sentinel
    if f.enum is not None:
        for raw, label in f.enum.items():
            if label == value and type(label) is type(value):
                return raw
        raise EncodeError("not one of the allowed names", command=cmd.name, field=name,
                          value=value, allowed=", ".join(repr(x) for x in f.enum.values()))
    if f.time:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise fail("a timezone-aware datetime is required")
            value = value.timestamp()
        if not isinstance(value, int | float) or isinstance(value, bool) or value != int(value):
            raise fail("whole Unix seconds are required")
        raw = int(value)
        if not 0 <= raw <= 0xFFFFFFFF:
            raise fail("does not fit a u32 timestamp")
        return raw
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail("a number is required")
    if isinstance(value, float) and not math.isfinite(value):
        raise fail("a finite number is required")
    exact = (value - f.base) * f.scale
    raw = round(exact)
    if abs(exact - raw) > 1e-6 * max(1.0, abs(exact)):
        raise fail(f"has more precision than the wire's step of {1 / f.scale:g} {f.unit}".rstrip())
    _, _, wlo, whi = WIRE[f.wire]
    lo, hi = (f.raw_bounds(decoding=limits.accepting)
              if limits.strict_ranges or not f.measured else (wlo, whi))
    if f.choices is not None and raw not in f.choices:
        raise fail("not an allowed value")
    if not lo <= raw <= hi:
        raise fail("out of range")
    if f.sentinel is not None and raw == f.sentinel:
        raise fail("collides with the 'no data' sentinel")
    return raw


def _pack(wire: str, raw: int, out: bytearray) -> None:
    _, size, lo, _ = WIRE[wire]
    out += raw.to_bytes(size, "little", signed=lo < 0)


def _values(cmd: Command, f: Num | Grouped, value: object, n: int, path: str) -> tuple:
    if not isinstance(value, tuple | list) or len(value) != n:
        raise EncodeError(f"{n} values are required", command=cmd.name, field=path,
                          value=value, allowed=f"a sequence of {n}")
    return tuple(value)


def _encode_fields(cmd: Command, dialect: Dialect, item: Item, out: bytearray,
                   limits: _Limits) -> None:
    raws: dict[str, int] = {}
    for f in cmd.fields:
        if isinstance(f, Num):
            value = getattr(item, f.name)
            if f.when is not None and raws[f.when[0]] not in f.when[1]:
                if value is not None:
                    raise EncodeError("must be None for this alarm type", command=cmd.name,
                                      field=f.name, value=value, allowed="None")
                continue
            if f.count == 1:
                raws[f.name] = raw = _raw(cmd, f, value, limits)
                _pack(f.wire, raw, out)
            else:
                for k, v in enumerate(_values(cmd, f, value, f.count, f.name)):
                    _pack(f.wire, _raw(cmd, f, v, limits, f"{f.name}[{k}]"), out)
        elif isinstance(f, Nibbles):
            echo = next((e for e in cmd.fields if isinstance(e, Echo)), None)
            pair = []
            for n in (f.high, f.low):
                if echo is not None and n.name == echo.length_field:
                    text = getattr(item, echo.name)
                    value = len(text) // 2 if isinstance(text, str) else None
                else:
                    value = getattr(item, n.name)
                raws[n.name] = raw = _raw(cmd, n, value, limits)
                pair.append(raw)
            out.append(pair[0] << 4 | pair[1])
        elif isinstance(f, Flags):
            value = getattr(item, f.name)
            names = {b: i for i, b in enumerate(f.bits) if b}
            raw = 0
            for b in value:
                if b not in names:
                    raise EncodeError("unknown flag", command=cmd.name, field=f.name, value=b,
                                      allowed=", ".join(names))
                raw |= 1 << names[b]
            _pack(f.wire, raw, out)
        elif isinstance(f, Hex):
            out += _hex_bytes(cmd, f.name, getattr(item, f.name), f.size)
        elif isinstance(f, Text):
            out += _text_bytes(cmd, f, getattr(item, f.name), ascii_only=f.ascii_only
                               and not limits.accepting)
        elif isinstance(f, Echo):
            out += _hex_bytes(cmd, f.name, getattr(item, f.name), None)
        elif isinstance(f, Grouped):
            _encode_groups(cmd, dialect, f, getattr(item, f.name), out, limits)


def _hex_bytes(cmd: Command, name: str, value: object, size: int | None) -> bytes:
    try:
        data = bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        data = None
    if data is None or (size is not None and len(data) != size) or (size is None and not data):
        want = f"{size} bytes as hex" if size else "1-15 bytes as hex"
        raise EncodeError("not a valid hex string", command=cmd.name, field=name, value=value,
                          allowed=want)
    return data


def _text_bytes(cmd: Command, f: Text, value: object, *, ascii_only: bool) -> bytes:
    limit = f.size if f.size is not None else f.max_length
    try:
        data = value.encode("ascii" if ascii_only else "utf-8")  # type: ignore[union-attr]
    except (AttributeError, UnicodeEncodeError):
        data = None
    if data is None or b"\0" in data or len(data) > limit or (f.size is None and not data):
        raise EncodeError("not a valid text", command=cmd.name, field=f.name, value=value,
                          allowed=f"1-{limit} {'ASCII' if ascii_only else 'UTF-8'} bytes")
    if f.size is not None:
        return data.ljust(f.size, b"\0")
    return bytes([len(data)]) + data


def _encode_groups(cmd: Command, dialect: Dialect, f: Grouped, groups: object,
                   out: bytearray, limits: _Limits) -> None:
    if not isinstance(groups, tuple | list) or [getattr(g, "group", None) for g in groups] \
            != list(f.groups):
        raise EncodeError("one reading per group is required, in order", command=cmd.name,
                          field=f.name, value=groups, allowed=", ".join(f.groups))
    v = f.value
    mask = 0
    body = bytearray()
    for i, g in enumerate(groups):
        path = f"{f.name}.{g.group}"
        if g.phase not in ("single", "three"):
            raise EncodeError("phase must be 'single' or 'three'", command=cmd.name,
                              field=path, value=g.phase, allowed="single, three")
        if g.phase == "single":
            mask |= 1 << i
        if g.phase == "three" and dialect is Dialect.FIRMWARE:
            if g.channels is not None:
                raise EncodeError("a three-phase group carries a total, not channels",
                                  command=cmd.name, field=path, value=g.channels,
                                  allowed="channels=None")
            _pack(v.wire, _raw(cmd, v, g.total, limits, path + ".total"), body)
        else:
            if g.total is not None:
                raise EncodeError("this group carries channels, not a total", command=cmd.name,
                                  field=path, value=g.total, allowed="total=None")
            for k, x in enumerate(_values(cmd, f, g.channels, 3, path + ".channels")):
                _pack(v.wire, _raw(cmd, v, x, limits, f"{path}[{k}]"), body)
    out.append(mask)
    out += body
