"""Columnar bulk decoding: many uplinks at once, one numpy array per field.

Owns: `decode_many` and its result `Columns`, for bulk work (history backfill, replay,
export) over 10^5-10^6 frames. Frames are grouped by length and structure; each group's
layout is learnt from its first frame with the per-frame decoder (`codec`), every other frame
of the group is checked against that layout's structural bytes (ids, sub-ids, phase masks,
alarm types, lengths) and its value fields are decoded for all rows at once from byte columns
— same scale division, sentinels, range / enum / reserved-bit checks as the generated
decoders, so each value equals the per-frame float bit for bit. Rows that fail a check or do
not match any layout are decoded by `codec.decode` one at a time.

Never decides anything about the wire format itself: the table (through `codec`) says what
a frame means, this module only reads the same bytes faster. Never raises for a bad payload
(each becomes a per-row `DecodeError`); never returns a value that `decode` would not give.

Column paths (`Columns.columns` keys):
  ``<item>.<field>``                 scalar field, shape (N,): ``temperature.temperature_c``
  ``<item>.<field>``                 array field, shape (N, count): ``current.current_a``
  ``<item>.<field>.<g>``             grouped channels (single-phase, or any guide group), (N, 3)
  ``<item>.<field>.<g>.total``       grouped three-phase total (firmware dialect), (N,)
  ``<item>.<field>.<g>.phase``       "single" / "three"
  ``history[r].mode|timestamp|kind`` history record header; ``history[r].<item>.<field>``
An item that occurs more than once in a frame or record (alarms, replies) gets ``<item>[1]``,
``<item>[2]``... for its later occurrences.
dtypes: numbers float64 (integers are exact), timestamps datetime64[s], enum names, texts,
hex strings, flag tuples object. A row without the field (another layout, an error row, a
sentinel) holds NaN / NaT / None; `Columns.unavailable[path]` (fields with a sentinel only)
is True where the device sent its "no data" sentinel, `Columns.present[<item path>]` where
the frame carried the item.

Dialects: with "firmware" or "guide" every group is decoded vectorised in that dialect. With
"auto" a group is vectorised when its first frame decodes as "common" because it reads the
same in both dialects by construction (the codec's invariance rule: only ids, sub-ids and
phase masks decide it, and those are structural bytes here) — then every matching row is
"common" too. A group whose first frame is "firmware" (or "guide") has its values decoded
vectorised in that dialect, but whether the other dialect also parses a row depends on its
values, so each row still gets a per-frame attempt in the other dialect (a failure confirms
the label; a success sends the row to `decode`). Groups whose first frame is ambiguous or
"common" only by comparing both readings are decoded per frame. For firmware-only data pass
dialect="firmware": it is several times faster than "auto" on three-phase frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codec import DialectName, compiled_commands, decode
from .errors import DecodeError
from .model import Item, Uplink
from .schema import BOTH_DIALECTS, WIRE, Dialect, Echo, Flags, Grouped, Hex, Nibbles, Num, Text
from .table import COMMANDS

__all__ = ["Columns", "decode_many"]

HISTORY_HEADER, MONTHLY_KIND = 0xED, 0x40

# column kinds: float64 numbers, objects (names, texts, tuples), datetime64[s]
_F, _O, _M = "f", "O", "M"
_DTYPE: dict[str, Any] = {_F: np.float64, _O: object, _M: "datetime64[s]"}
_MISSING: dict[str, Any] = {_F: np.nan, _O: None, _M: np.datetime64("NaT", "s")}

# how many layouts are tried per payload length before the rest go to `decode` one by one
_MAX_TEMPLATES = 64
_PAD = 4  # u24 values are read as u32; the byte after the last row must exist

# wire type -> (numpy dtype of a strided view, byte step)
_VIEW: dict[str, tuple[str, int]] = {
    "u8": ("u1", 1), "u16": ("<u2", 2), "u24": ("<u4", 3), "u32": ("<u4", 4),
    "s16": ("<i2", 2), "s32": ("<i4", 4),
}


# --- result --------------------------------------------------------------------------------

@dataclass(eq=False)
class Columns:
    """Decoded frames as columns; row i is payload i.

    `ok[i]` is False for frames that are not valid (their error is `errors[i]`, the same
    `DecodeError` that `decode` raises; every column holds NaN / NaT / None there).
    `dialect[i]` is what `decode` reports ("firmware", "guide", "common"; None for errors);
    `ambiguous[i]` marks frames both dialects read differently (columns hold the firmware
    reading, `row(i).alternative` the guide one). `warnings[i]` lists the range violations
    of frames decoded with ``strict_ranges=False``. `vectorised[i]` says whether the row went
    through the bulk path (diagnostics only: the values are the same either way).
    """

    n: int
    columns: dict[str, np.ndarray]
    unavailable: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    ok: np.ndarray
    dialect: np.ndarray
    ambiguous: np.ndarray
    vectorised: np.ndarray
    errors: dict[int, DecodeError]
    warnings: dict[int, tuple[str, ...]]
    _payloads: Sequence[Any] = field(repr=False)
    _decode_args: dict[str, Any] = field(repr=False)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, path: str) -> np.ndarray:
        return self.columns[path]

    def __contains__(self, path: object) -> bool:
        return path in self.columns

    def row(self, i: int) -> Uplink:
        """Frame i decoded per frame (`decode` with the same options); raises its
        `DecodeError` for an error row."""
        return decode(self._payloads[i], **self._decode_args)

    def __repr__(self) -> str:
        return (f"Columns(n={self.n}, ok={int(self.ok.sum())}, errors={len(self.errors)}, "
                f"columns={len(self.columns)})")


# --- the item schema: which columns an item gives ------------------------------------------

@dataclass(frozen=True, slots=True)
class _FieldCol:
    name: str  # attribute of the item
    kind: str  # _F, _O, _M or "grouped"
    width: int | None  # None: (N,), k: (N, k)
    masked: bool  # has a sentinel: an `unavailable` mask goes with the column


def _num_kind(f: Num) -> str:
    if f.time:
        return _M
    return _O if f.enum is not None else _F


def _schema_of(cmd: Any) -> tuple[_FieldCol, ...]:
    hidden = {f.length_field for f in cmd.fields if isinstance(f, Echo)}
    out: list[_FieldCol] = []
    for f in cmd.fields:
        if isinstance(f, Nibbles):
            out += [_FieldCol(n.name, _num_kind(n), None, n.sentinel is not None)
                    for n in (f.high, f.low) if n.name not in hidden]
        elif isinstance(f, Num):
            out.append(_FieldCol(f.name, _num_kind(f), f.count if f.count > 1 else None,
                                 f.sentinel is not None))
        elif isinstance(f, Grouped):
            out.append(_FieldCol(f.name, "grouped", None, f.sentinel is not None))
        elif isinstance(f, Echo):
            out += [_FieldCol(f.name, _O, None, False), _FieldCol("command", _O, None, False)]
        else:  # Flags, Text, Hex
            out.append(_FieldCol(f.name, _O, None, False))
    return tuple(out)


def _build_schemas() -> dict[str, tuple[_FieldCol, ...]]:
    schemas: dict[str, tuple[_FieldCol, ...]] = {}
    for cmd in COMMANDS:
        if not cmd.is_uplink():
            continue
        s = _schema_of(cmd)
        old = schemas.get(cmd.name)
        if old is None:
            schemas[cmd.name] = s
            continue
        if [(c.name, c.kind, c.width) for c in old] != [(c.name, c.kind, c.width) for c in s]:
            raise AssertionError(f"{cmd.name}: dialects give different columns")
        schemas[cmd.name] = tuple(
            _FieldCol(a.name, a.kind, a.width, a.masked or b.masked) for a, b in zip(old, s,
                                                                                    strict=True))
    return schemas


_SCHEMAS = _build_schemas()
_FIELD: dict[tuple[str, str], _FieldCol] = {
    (name, c.name): c for name, cols in _SCHEMAS.items() for c in cols}


# --- the output arrays ---------------------------------------------------------------------

class _Sink:
    """The growing set of output columns; every array is allocated full size (n rows)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.present: dict[str, np.ndarray] = {}

    def col(self, path: str, kind: str, width: int | None) -> np.ndarray:
        c = self.cols.get(path)
        if c is None:
            c = np.empty(self.n if width is None else (self.n, width), _DTYPE[kind])
            c.fill(_MISSING[kind])
            self.cols[path] = c
        return c

    def mask(self, path: str, width: int | None) -> np.ndarray:
        m = self.masks.get(path)
        if m is None:
            m = self.masks[path] = np.zeros(self.n if width is None else (self.n, width), bool)
        return m

    def flag(self, path: str) -> np.ndarray:
        p = self.present.get(path)
        if p is None:
            p = self.present[path] = np.zeros(self.n, bool)
        return p

    def put(self, path: str, kind: str, width: int | None, rows: np.ndarray | None,
            values: np.ndarray) -> None:
        """Store `values` (fresh, one per selected row) at `rows` (None: every row)."""
        if rows is None and path not in self.cols:
            self.cols[path] = values  # the group covers the batch: adopt the array
        else:
            self.col(path, kind, width)[slice(None) if rows is None else rows] = values

    def put_mask(self, path: str, width: int | None, rows: np.ndarray | None,
                 values: np.ndarray | None) -> None:
        if rows is None and path not in self.masks and values is not None:
            self.masks[path] = values
            return
        m = self.mask(path, width)
        if values is not None:
            m[slice(None) if rows is None else rows] = values


# --- per-frame path: an Uplink into row i ---------------------------------------------------

def _occurrence(counts: dict[str, int], name: str) -> str:
    k = counts.get(name, 0)
    counts[name] = k + 1
    return name if k == 0 else f"{name}[{k}]"


def _cell(kind: str, value: Any) -> Any:
    if value is None:
        return _MISSING[kind]
    if kind == _M:
        return np.datetime64(int(value.timestamp()), "s")
    return value


def _put_item(sink: _Sink, i: int, prefix: str, item: Item) -> None:
    sink.flag(prefix)[i] = True
    una = item.unavailable
    for fc in _SCHEMAS[item.command_name]:
        v = getattr(item, fc.name)
        path = f"{prefix}.{fc.name}"
        if fc.kind == "grouped":
            for gr in v:
                gp = f"{path}.{gr.group}"
                sink.col(gp + ".phase", _O, None)[i] = gr.phase
                if gr.channels is not None:
                    sink.col(gp, _F, 3)[i] = [np.nan if x is None else x for x in gr.channels]
                    if fc.masked:
                        sink.mask(gp, 3)[i] = [f"{fc.name}.{gr.group}[{k}]" in una
                                               for k in range(3)]
                else:
                    sink.col(gp + ".total", _F, None)[i] = _cell(_F, gr.total)
                    if fc.masked:
                        sink.mask(gp + ".total", None)[i] = f"{fc.name}.{gr.group}" in una
        elif fc.width is not None:
            col = sink.col(path, fc.kind, fc.width)
            for k, x in enumerate(v):
                col[i, k] = _cell(fc.kind, x)
            if fc.masked:
                sink.mask(path, fc.width)[i] = [f"{fc.name}[{k}]" in una
                                                for k in range(fc.width)]
        else:
            sink.col(path, fc.kind, None)[i] = _cell(fc.kind, v)
            if fc.masked:
                sink.mask(path, None)[i] = fc.name in una


def _put_uplink(sink: _Sink, i: int, u: Uplink) -> None:
    counts: dict[str, int] = {}
    for item in u.items:
        _put_item(sink, i, _occurrence(counts, item.command_name), item)
    for r, rec in enumerate(u.history):
        base = f"history[{r}]"
        sink.flag(base)[i] = True
        sink.col(base + ".mode", _O, None)[i] = rec.mode
        sink.col(base + ".timestamp", _M, None)[i] = _cell(_M, rec.timestamp)
        sink.col(base + ".kind", _O, None)[i] = rec.kind
        counts = {}
        for item in rec.items:
            _put_item(sink, i, f"{base}.{_occurrence(counts, item.command_name)}", item)


# --- layouts: what a group's first frame teaches about the others ---------------------------

@dataclass(frozen=True, slots=True)
class _NumSlot:
    """A value field read from byte columns: `count` values of `wire` at `off`."""

    path: str
    kind: str
    width: int | None  # None: one value per row
    masked: bool
    off: int
    spec: Num


@dataclass(frozen=True, slots=True)
class _BytesSlot:
    """A hex string or a flag mask: decoded once per distinct value."""

    path: str
    off: int
    spec: Hex | Flags


@dataclass(frozen=True, slots=True)
class _Const:
    """A value fixed by the structural bytes (taken from the template's item)."""

    path: str
    kind: str
    width: int | None
    masked: bool
    value: Any


@dataclass(slots=True)
class _Layout:
    structural: np.ndarray  # byte offsets every row must share with the template
    expected: np.ndarray  # the template's bytes there
    slots: list[_NumSlot | _BytesSlot]
    consts: list[_Const]
    flags: list[str]  # item / record paths the layout carries
    invariant: bool  # reads the same in both dialects (codec's rule)


def _const_field(out: _Layout, path: str, fc: _FieldCol, value: Any) -> None:
    if fc.width is not None:
        value = tuple(_cell(fc.kind, x) for x in value)
    else:
        value = _cell(fc.kind, value)
    out.consts.append(_Const(path, fc.kind, fc.width, fc.masked, value))


def _walk_item(out: _Layout, struct: list[int], buf: bytes, o: int, cmd: Any, item: Item,
               prefix: str, dialect: Dialect) -> int:
    """Lay out one item's fields starting at body offset o; returns the end offset."""
    when_refs = {f.when[0] for f in cmd.fields if isinstance(f, Num) and f.when}
    raws: dict[str, int] = {}
    name = cmd.name
    for f in cmd.fields:
        if isinstance(f, Num):
            fc = _FIELD[(name, f.name)]
            path = f"{prefix}.{f.name}"
            if f.when is not None and raws[f.when[0]] not in f.when[1]:
                _const_field(out, path, fc, None)
                continue
            if f.name in when_refs:  # decides the item's length: structural
                struct.extend(range(o, o + f.size))
                raws[f.name] = int.from_bytes(buf[o:o + f.size], "little",
                                              signed=WIRE[f.wire][2] < 0)
                _const_field(out, path, fc, getattr(item, f.name))
            else:
                out.slots.append(_NumSlot(path, fc.kind, fc.width, fc.masked, o, f))
            o += f.size
        elif isinstance(f, Nibbles):
            struct.append(o)
            raws[f.high.name], raws[f.low.name] = buf[o] >> 4, buf[o] & 15
            for n in (f.high, f.low):
                fc = _FIELD.get((name, n.name))
                if fc is not None:  # the echo length is not an item field
                    _const_field(out, f"{prefix}.{n.name}", fc, getattr(item, n.name))
            o += 1
        elif isinstance(f, Flags | Hex):
            out.slots.append(_BytesSlot(f"{prefix}.{f.name}", o, f))
            o += f.size
        elif isinstance(f, Text):  # device names: rare in bulk data, kept as structure
            size = f.size if f.size is not None else 1 + buf[o]
            struct.extend(range(o, o + size))
            _const_field(out, f"{prefix}.{f.name}", _FIELD[(name, f.name)],
                         getattr(item, f.name))
            o += size
        elif isinstance(f, Echo):
            size = raws[f.length_field]
            struct.extend(range(o, o + size))
            for n in (f.name, "command"):
                _const_field(out, f"{prefix}.{n}", _FIELD[(name, n)], getattr(item, n))
            o += size
        elif isinstance(f, Grouped):
            fc = _FIELD[(name, f.name)]
            mask = buf[o]
            struct.append(o)
            o += 1
            value = f.value
            w = WIRE[f.wire][1]
            for i, g in enumerate(f.groups):
                gp = f"{prefix}.{f.name}.{g}"
                single = bool(mask >> i & 1)
                out.consts.append(_Const(gp + ".phase", _O, None, False,
                                         "single" if single else "three"))
                if single or dialect is Dialect.GUIDE:
                    out.slots.append(_NumSlot(gp, _F, 3, fc.masked, o, _as_count(value, 3)))
                    o += 3 * w
                else:
                    out.slots.append(_NumSlot(gp + ".total", _F, None, fc.masked, o, value))
                    o += w
        else:  # pragma: no cover - the table only uses the kinds above
            raise TypeError(f"cannot lay out field {f!r}")
    return o


def _as_count(f: Num, count: int) -> Num:
    return Num(**{k: getattr(f, k) for k in Num.__slots__ if k != "count"}, count=count)


def _dispatch(dialect: Dialect) -> tuple[list, list]:
    """id -> Compiled (or sub-id -> Compiled) and id -> invariance (the codec's rule: a
    command shared by both dialects reads the same in both; a grouped one only when every
    group is single-phase, i.e. when its mask byte is all ones)."""
    table: list = [None] * 256
    invariance: list = [None] * 256
    for compiled in compiled_commands(dialect, True).values():
        cmd = compiled.command
        grouped = next((f for f in cmd.fields if isinstance(f, Grouped)), None)
        if cmd.dialects != BOTH_DIALECTS:
            inv: bool | int = False
        else:
            inv = True if grouped is None else (1 << len(grouped.groups)) - 1
        if cmd.sub is None:
            table[cmd.id], invariance[cmd.id] = compiled, inv
        else:
            table[cmd.id] = {**(table[cmd.id] or {}), cmd.sub: compiled}
            invariance[cmd.id] = {**(invariance[cmd.id] or {}), cmd.sub: inv}
    return table, invariance


_DISPATCH = {d: _dispatch(d) for d in Dialect}


def _layout(buf: bytes, dialect: Dialect) -> _Layout:
    """The layout of a frame known to decode in `dialect` (the frame walker of `codec`,
    recording offsets instead of values)."""
    table, invariance = _DISPATCH[dialect]
    out = _Layout(np.empty(0, np.intp), np.empty(0, np.uint8), [], [], [], True)
    struct: list[int] = []
    n = len(buf)
    o = 0
    counts: dict[str, int] = {}
    base = ""
    record = -1
    kind_seen = True
    invariant = True
    while o < n:
        cid = buf[o]
        struct.append(o)
        compiled, inv = table[cid], invariance[cid]
        o += 1
        if type(compiled) is dict:
            struct.append(o)
            compiled, inv = compiled[buf[o]], inv[buf[o]]
            o += 1
        if invariant and inv is not True:
            invariant = inv is not False and o < n and buf[o] == inv
        item, end = compiled.decode(buf, o, n, [])
        cmd = compiled.command
        if cid == HISTORY_HEADER:
            if not kind_seen:
                out.consts.append(_Const(f"{base}.kind", _O, None, False, None))
            record += 1
            base = f"history[{record}]"
            out.flags.append(base)
            counts, kind_seen = {}, False
            for f, suffix in zip(cmd.fields, ("mode", "timestamp"), strict=True):
                fc = _FIELD[(cmd.name, f.name)]
                out.slots.append(_NumSlot(f"{base}.{suffix}", fc.kind, None, False, o, f))
                o += f.size
        elif cid == MONTHLY_KIND:
            kind_seen = True
            (f,) = cmd.fields
            out.slots.append(_NumSlot(f"{base}.kind", _O, None, False, o, f))
            o += f.size
        else:
            name = _occurrence(counts, cmd.name)
            prefix = f"{base}.{name}" if base else name
            out.flags.append(prefix)
            o = _walk_item(out, struct, buf, o, cmd, item, prefix, dialect)
        if o != end:  # pragma: no cover - the layout must agree with the decoder
            raise AssertionError(f"layout of {cmd.name} ends at {o}, decoder at {end}")
    if not kind_seen:
        out.consts.append(_Const(f"{base}.kind", _O, None, False, None))
    out.structural = np.array(struct, np.intp)
    out.expected = np.frombuffer(buf, np.uint8)[out.structural]
    out.invariant = invariant
    return out


# --- vectorised value decoding ---------------------------------------------------------------

@dataclass(slots=True)
class _Result:
    path: str
    kind: str
    width: int | None
    values: np.ndarray
    mask: np.ndarray | None  # sentinel positions (masked fields)
    masked: bool


_ENUM_LUTS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _enum_lut(f: Num) -> tuple[np.ndarray, np.ndarray]:
    """(valid, names) lookup tables indexed by the raw value (enums fit in 16 bits)."""
    key = id(f.enum)
    lut = _ENUM_LUTS.get(key)
    if lut is None:
        size = 1 << (8 * WIRE[f.wire][1])
        valid = np.zeros(size, bool)
        names = np.empty(size, object)
        for raw, label in f.enum.items():  # type: ignore[union-attr]
            valid[raw] = True
            names[raw] = label
        lut = _ENUM_LUTS[key] = (valid, names)
    return lut


def _num(slot: _NumSlot, flat: np.ndarray, m: int, L: int
         ) -> tuple[_Result, np.ndarray | None]:
    f = slot.spec
    dt, step = _VIEW[f.wire]
    shape: tuple[int, ...] = (m,) if slot.width is None else (m, f.count)
    strides: tuple[int, ...] = (L,) if slot.width is None else (L, step)
    raw = np.ndarray(shape, dt, flat, slot.off, strides)
    if f.wire == "u24":
        raw = raw & 0xFFFFFF
    bad = None
    sent = None
    if f.sentinel is not None:
        sent = raw == f.sentinel
        if not sent.any():
            sent = None
    if f.enum is not None:
        valid, names = _enum_lut(f)
        ok = valid[raw]
        if sent is not None:
            ok |= sent
        bad = ~ok
        values = names[raw]
    else:
        if f.choices is not None:
            bad = ~np.isin(raw, np.fromiter(f.choices, np.int64))
        else:
            lo, hi = f.raw_bounds()
            _, _, wlo, whi = WIRE[f.wire]
            if lo != wlo and hi != whi:
                bad = (raw < lo) | (raw > hi)
            elif lo != wlo:
                bad = raw < lo
            elif hi != whi:
                bad = raw > hi
        if bad is not None and sent is not None:
            bad &= ~sent
        if f.time:
            values = raw.astype("datetime64[s]")
        else:
            values = raw / f.scale if f.scale != 1 else raw.astype(np.float64)
            if f.base:
                values += f.base
            if sent is not None:
                values[sent] = np.nan
    if sent is not None and f.enum is not None:
        values[sent] = None
    if bad is not None:
        bad = bad.any(axis=1) if bad.ndim == 2 else bad
        if not bad.any():
            bad = None
    if slot.masked and sent is None:
        sent = np.zeros(shape, bool)
    return _Result(slot.path, slot.kind, slot.width, values, sent, slot.masked), bad


def _bytes_slot(slot: _BytesSlot, flat: np.ndarray, m: int, L: int
                ) -> tuple[_Result, np.ndarray | None]:
    f = slot.spec
    if isinstance(f, Flags):
        dt, _ = _VIEW[f.wire]
        raw = np.ndarray((m,), dt, flat, slot.off, (L,))
        uniq, inv = np.unique(raw, return_inverse=True)
        reserved = sum(1 << i for i, b in enumerate(f.bits) if b is None)
        lut = np.empty(len(uniq), object)
        for j, r in enumerate(uniq.tolist()):
            lut[j] = tuple(n for i, n in enumerate(f.bits) if n and r >> i & 1)
        bad = (raw & reserved) != 0
        if not bad.any():
            bad = None
    else:
        block = np.ascontiguousarray(np.ndarray((m, f.size), np.uint8, flat, slot.off, (L, 1)))
        uniq, inv = np.unique(block.view(np.dtype((np.void, f.size))).ravel(),
                              return_inverse=True)
        lut = np.empty(len(uniq), object)
        for j, u in enumerate(uniq):
            lut[j] = u.tobytes().hex()
        bad = None
    return _Result(slot.path, _O, None, lut[inv.ravel()], None, False), bad


# --- the driver -------------------------------------------------------------------------------

def _safe_decode(payload: Any, kwargs: dict[str, Any]) -> Uplink | DecodeError:
    try:
        return decode(payload, **kwargs)
    except DecodeError as exc:
        return exc
    except Exception as exc:  # a decoder bug must not abort a whole batch
        return DecodeError(f"internal decoder error: {exc!r}")


class _Batch:
    def __init__(self, payloads: Sequence[Any], dialect: str, strict_ranges: bool) -> None:
        self.payloads = payloads
        self.n = n = len(payloads)
        self.dialect = dialect
        self.kwargs: dict[str, Any] = {"dialect": dialect, "strict_ranges": strict_ranges}
        self.sink = _Sink(n)
        self.ok = np.zeros(n, bool)
        self.labels = np.empty(n, object)
        self.ambiguous = np.zeros(n, bool)
        self.vectorised = np.zeros(n, bool)
        self.errors: dict[int, DecodeError] = {}
        self.warnings: dict[int, tuple[str, ...]] = {}

    # one frame at a time
    def per_frame(self, i: int, result: Uplink | DecodeError | None = None) -> None:
        if result is None:
            result = _safe_decode(self.payloads[i], self.kwargs)
        if isinstance(result, DecodeError):
            self.errors[i] = result
            return
        self.ok[i] = True
        self.labels[i] = result.dialect
        self.ambiguous[i] = result.ambiguous
        if result.warnings:
            self.warnings[i] = result.warnings
        _put_uplink(self.sink, i, result)

    def run(self) -> None:
        seq = self.payloads
        if not all(type(p) is bytes for p in seq):
            seq = [bytes(p) if isinstance(p, bytearray | memoryview) else
                   p if type(p) is bytes else b"" for p in seq]
        lens = np.fromiter(map(len, seq), np.int64, self.n)
        lengths, first = np.unique(lens, return_index=True)
        for length in lengths[np.argsort(first)].tolist():
            rows = np.flatnonzero(lens == length)
            if length == 0:  # empty or not bytes at all: `decode` says why
                for i in rows.tolist():
                    self.per_frame(i)
                continue
            self.length_group(seq, rows, length)

    def length_group(self, seq: Sequence[bytes], rows: np.ndarray, L: int) -> None:
        m = len(rows)
        whole = m == self.n
        data = np.empty(m * L + _PAD, np.uint8)
        data[:m * L] = np.array(seq if whole else [seq[i] for i in rows.tolist()],
                                dtype=f"S{L}").view(np.uint8)
        data[m * L:] = 0
        frames = data[:m * L].reshape(m, L)
        todo = np.arange(m)
        templates = 0
        while todo.size:
            if templates == _MAX_TEMPLATES:  # too many layouts: not worth vectorising
                for k in todo.tolist():
                    self.per_frame(int(rows[k]))
                return
            templates += 1
            t = int(todo[0])
            i = int(rows[t])
            first = _safe_decode(seq[i], self.kwargs)
            if isinstance(first, DecodeError):
                self.per_frame(i, first)
                todo = todo[1:]
                continue
            mode, label, reading = self.plan(first)
            try:
                layout = _layout(seq[i], reading)
            except Exception:  # pragma: no cover - defensive: decode the template alone
                self.per_frame(i, first)
                todo = todo[1:]
                continue
            same = (frames[np.ix_(todo, layout.structural)] == layout.expected).all(axis=1)
            match = todo if same.all() else todo[same]
            todo = todo[~same] if not same.all() else todo[:0]
            if mode == "per_frame":
                for k in match.tolist():
                    self.per_frame(int(rows[k]), first if k == t else None)
                continue
            self.vector(layout, data, frames, rows, match, L, label, mode, whole)

    def plan(self, first: Uplink) -> tuple[str, str, Dialect]:
        """(mode, label, reading dialect) for the rows of a template's layout."""
        if self.dialect != "auto":
            return "direct", first.dialect, Dialect(self.dialect)
        if first.ambiguous:
            return "per_frame", "", Dialect.FIRMWARE
        if first.dialect == "common":
            return "common", "common", Dialect.FIRMWARE
        if first.dialect == "firmware":
            return "check", "firmware", Dialect.FIRMWARE
        return "check", "guide", Dialect.GUIDE

    def vector(self, layout: _Layout, data: np.ndarray, frames: np.ndarray, rows: np.ndarray,
               match: np.ndarray, L: int, label: str, mode: str, whole: bool) -> None:
        if mode == "common" and not layout.invariant:
            # "common" only because both readings compared equal: that depends on values
            for k in match.tolist():
                self.per_frame(int(rows[k]))
            return
        m = len(match)
        if m == len(frames):
            flat = data
        else:
            flat = np.empty(m * L + _PAD, np.uint8)
            np.take(frames, match, axis=0, out=flat[:m * L].reshape(m, L))
            flat[m * L:] = 0
            whole = False
        results: list[_Result] = []
        bad: np.ndarray | None = None
        for slot in layout.slots:
            res, b = (_num(slot, flat, m, L) if isinstance(slot, _NumSlot)
                      else _bytes_slot(slot, flat, m, L))
            results.append(res)
            if b is not None:
                bad = b if bad is None else bad | b
        keep = None  # positions in `match` decoded here (None: all of them)
        if bad is not None:
            keep = np.flatnonzero(~bad)
            for k in match[bad].tolist():
                self.per_frame(int(rows[k]))
        if mode == "check":
            other = "guide" if label == "firmware" else "firmware"
            kwargs = {"dialect": other, "strict_ranges": self.kwargs["strict_ranges"]}
            positions = range(m) if keep is None else keep.tolist()
            settled = []
            for p in positions:
                i = int(rows[match[p]])
                if isinstance(_safe_decode(self.payloads[i], kwargs), DecodeError):
                    settled.append(p)
                else:  # the other dialect reads it as well: let `decode` settle it
                    self.per_frame(i)
            if len(settled) != m:
                keep = np.array(settled, np.intp)
        if keep is not None and len(keep) == 0:
            return
        target = rows[match] if keep is None else rows[match[keep]]
        adopt = whole and keep is None
        out_rows = None if adopt else target
        sink = self.sink
        for res in results:
            values = res.values if keep is None else res.values[keep]
            sink.put(res.path, res.kind, res.width, out_rows, values)
            if res.masked:
                mask = res.mask if keep is None or res.mask is None else res.mask[keep]
                sink.put_mask(res.path, res.width, out_rows, mask)
        for c in layout.consts:
            col = sink.col(c.path, c.kind, c.width)
            if c.width is not None:
                col[target] = np.array(c.value, _DTYPE[c.kind])
            elif c.kind == _O:
                fill = np.empty(len(target), object)
                fill.fill(c.value)
                col[target] = fill
            else:
                col[target] = c.value
            if c.masked:
                sink.mask(c.path, c.width)
        for path in layout.flags:
            sink.flag(path)[target] = True
        self.ok[target] = True
        self.vectorised[target] = True
        fill = np.empty(len(target), object)
        fill.fill(label)
        self.labels[target] = fill


def decode_many(payloads: Sequence[bytes], *, dialect: DialectName = "auto",
                strict_ranges: bool = True) -> Columns:
    """Decode many uplink payloads into columns (see the module docstring for the paths).

    Every row gets exactly the values, dialect and warnings `decode(payload, dialect=...,
    strict_ranges=...)` gives, or its `DecodeError` in `Columns.errors`; nothing is raised
    for bad payloads (anything that is not bytes-like is an error row too). Row order is
    input order.
    """
    if dialect not in ("auto", "firmware", "guide"):
        raise ValueError(f"dialect must be 'auto', 'firmware' or 'guide', not {dialect!r}")
    if isinstance(payloads, bytes | bytearray | memoryview | str):
        raise TypeError("payloads must be a sequence of payloads, not one payload")
    if not isinstance(payloads, list | tuple):
        payloads = list(payloads)
    batch = _Batch(payloads, dialect, strict_ranges)
    batch.run()
    sink = batch.sink
    return Columns(
        n=batch.n, columns=sink.cols, unavailable=sink.masks, present=sink.present,
        ok=batch.ok, dialect=batch.labels, ambiguous=batch.ambiguous,
        vectorised=batch.vectorised, errors=dict(sorted(batch.errors.items())),
        warnings=dict(sorted(batch.warnings.items())), _payloads=payloads,
        _decode_args=dict(batch.kwargs),
    )

