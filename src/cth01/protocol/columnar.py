"""Columnar bulk decoding: many uplinks at once, one numpy array per field.

Owns: `decode_many` and its result `Columns`, for bulk work (history backfill, replay,
export) over 10^5-10^6 frames. Frames are grouped by length and structure; each group's
layout is learnt from its first frame with the per-frame decoder (`codec`), every other frame
of the group must equal that frame in every structural byte (ids, sub-ids, phase masks, alarm
types, lengths, texts), and the value fields of all its rows are then decoded at once from
byte columns — with the generated decoders' scale division (raw / scale, so every float
equals the per-frame one bit for bit), sentinels and range / enum / reserved-bit checks.
Rows that fail a check or match no layout are decoded by `codec.decode`, one at a time.

Never decides what the bytes mean: the command table (through `codec`) does, this module only
reads the same bytes faster. Never raises for a bad payload (each becomes a per-row
`DecodeError`, the one `decode` raises); never returns a value `decode` would not give.

Column paths (`Columns.columns` keys; an item's later occurrences in one frame or record are
``<item>[1]``, ``<item>[2]``...):
  ``<item>.<field>``              scalar field, shape (N,): ``temperature.temperature_c``
  ``<item>.<field>``              array field, (N, count): ``current.current_a`` is (N, 12)
  ``<item>.<field>.<g>``          grouped, three channel values (single-phase groups, and
                                  every guide-dialect group), (N, 3)
  ``<item>.<field>.<g>.total``    grouped, a three-phase group's total (firmware), (N,)
  ``<item>.<field>.<g>.phase``    "single" / "three"
  ``history[r].mode|timestamp|kind``, ``history[r].<item>.<field>``   history record r
A path has one shape for the whole batch, hence ``.total`` beside the (N, 3) channels.

dtypes — every number exactly the one `decode` gives:
  * scaled numbers (``raw / scale``: °C, %, A, V) and fields that may be absent from a present
    item (alarm values): float64; no value is NaN;
  * the other integers (powers, energies, power factors, channels, settings): the numpy
    integer type of their wire type (s32 int32, u32 and u24 uint32, s16 int16, u16 uint16,
    u8 uint8; widened only where an offset needs it), so ``int(col[i])`` is `decode`'s int.
    These columns have no "missing" value: a row without one (another layout, an error row,
    the other kind of group, a sentinel) holds 0. `Columns.valid(path)` says where a column
    holds a value — for integer columns from `present`, the group's ``.phase``, the row's
    dialect and `unavailable`; ``np.where(cols.valid(p), cols[p], np.nan)`` gives the float
    column with NaN. Unsigned columns wrap around in arithmetic (energy differences): cast
    first, ``col.astype(np.int64)``;
  * timestamps datetime64[s] (no value: NaT); enum names, flag tuples, hex strings and texts
    object (no value: None).
`Columns.unavailable[path]` (fields with a sentinel) is True exactly where the item's
`unavailable` lists the field (the device sent its "no data" sentinel: the value is None in
`decode`, NaN / 0 here), `Columns.present[<item or record path>]` where the frame carried that
item or record. All arrays are read-only; columns may be views of one shared block (copy to
modify); numeric (N, k) columns are stored channel by channel (``col[:, j]`` is contiguous).

Dialects: with "firmware" or "guide" every layout is decoded vectorised in that dialect. With
"auto" the label of a row must be the one `decode` gives, and that can depend on values, so:
  * first frame "common" and reading the same in both dialects by the codec's invariance
    rule (ids, sub-ids and phase masks only — all structural here): every matching row is
    "common", vectorised;
  * first frame "firmware" (or "guide"): the matching rows are read vectorised in that
    dialect; each row keeps that label once the other dialect is shown to fail on it —
    by a vectorised walk of the other dialect's structure (unknown ids, truncation, reserved
    mask bits, rejected alarm types and lengths, duplicates, misplaced `40`, empty records)
    or, where that walk cannot decide, by `decode` in the other dialect; rows the other
    dialect reads go to `decode`;
  * first frame ambiguous, or "common" only because both readings compared equal: every
    matching row goes to `decode`.

Speed: the batch is first read against the layout of its first valid frame (among the first
16), straight from the payload list a chunk at a time — each chunk copied, compared with the
template, decoded and checked while in cache, into one output block; other lengths and
layouts follow as described above.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codec import DialectName, compiled_commands, decode
from .errors import DecodeError
from .model import Item, Uplink, item_class
from .schema import (
    BOTH_DIALECTS,
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
)
from .table import COMMANDS

__all__ = ["Columns", "decode_many"]

HISTORY_HEADER, MONTHLY_KIND = 0xED, 0x40

# column kinds: float64 numbers, objects (names, texts, tuples), datetime64[s]; exact integer
# columns have their numpy dtype's string as kind ("|u1", "<i4", ...)
_F, _O, _M = "f", "O", "M"
_DTYPE: dict[str, Any] = {_F: np.dtype(np.float64), _O: np.dtype(object),
                          _M: np.dtype("datetime64[s]")}
_MISSING: dict[str, Any] = {_F: np.nan, _O: None, _M: np.datetime64("NaT", "s")}


def _dtype(kind: str) -> np.dtype:
    dt = _DTYPE.get(kind)
    return np.dtype(kind) if dt is None else dt


def _missing(kind: str) -> Any:
    return _MISSING.get(kind, 0)


def _is_int(kind: str) -> bool:
    return kind not in _DTYPE


_MAX_TEMPLATES = 64  # layouts tried per payload length before the rest go to `decode`
_PAD = 4  # u24 values are read as u32: the byte after the last row must exist
_CHUNK = 2048  # rows per pass when decoding values (keeps the frames in cache)
_TEMPLATE_TRIES = 16  # leading rows tried as the template of the whole-batch pass
_MIN_NODE = 4  # fewer rows than this: the other-dialect walk leaves them to `decode`

# wire type -> (numpy dtype of a strided view, byte step)
_VIEW: dict[str, tuple[str, int]] = {
    "u8": ("u1", 1), "u16": ("<u2", 2), "u24": ("<u4", 3), "u32": ("<u4", 4),
    "s16": ("<i2", 2), "s32": ("<i4", 4),
}


# --- result --------------------------------------------------------------------------------

@dataclass(eq=False)
class Columns:
    """Decoded frames as columns; row i is payload i (see the module docstring for paths and
    dtypes).

    `ok[i]` is False for frames that are not valid (`errors[i]` is the `DecodeError` that
    `decode` raises; every column holds its "no value" in that row: NaN / NaT / None / 0).
    `dialect[i]` is what `decode` reports ("firmware", "guide", "common"; None for errors).
    `ambiguous[i]` marks frames both dialects read differently (the columns hold the firmware
    reading, `row(i).alternative` the guide one). `warnings[i]`: range violations of frames
    decoded with ``strict_ranges=False``. `vectorised[i]`: whether the row took the bulk path
    (diagnostics only; the values are the same either way).
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
    _options: dict[str, Any] = field(repr=False)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, path: str) -> np.ndarray:
        return self.columns[path]

    def __contains__(self, path: object) -> bool:
        return path in self.columns

    def row(self, i: int) -> Uplink:
        """Frame i decoded by `decode` with the same options (raises its `DecodeError` for an
        error row)."""
        return decode(self._payloads[i], **self._options)

    def valid(self, path: str) -> np.ndarray:
        """Where column `path` holds a value (`decode` gives a value, not None), shaped like
        the column. Float, time and object columns: not NaN / NaT / None. Integer columns:
        the row carries the item (`present`), the group has that kind of values (channels:
        single-phase or guide dialect; ``.total``: three-phase in the firmware reading) and
        the device sent no sentinel there (`unavailable`)."""
        col = self.columns[path]
        if col.dtype.kind == "f":
            return ~np.isnan(col)
        if col.dtype.kind == "M":
            return ~np.isnat(col)
        if col.dtype.kind == "O":
            return np.frompyfunc(lambda x: x is not None, 1, 1)(col).astype(bool)
        parts = path.split(".")
        owner = next(p for p in (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
                     if p in self.present)
        rows = self.present[owner].copy()
        total = path.endswith(".total")
        phase = self.columns.get((path[:-len(".total")] if total else path) + ".phase")
        if phase is not None:  # a group: channels or total, by phase and dialect
            guide = self.dialect == "guide"
            if total:
                rows &= (phase == "three") & ~guide
            else:
                rows &= (phase == "single") | guide
        out = rows if col.ndim == 1 else np.repeat(rows[:, None], col.shape[1], axis=1)
        na = self.unavailable.get(path)
        return out if na is None else out & ~na

    def __repr__(self) -> str:
        return (f"Columns(n={self.n}, ok={int(self.ok.sum())}, errors={len(self.errors)}, "
                f"columns={len(self.columns)})")


# --- which columns an item gives -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _FieldCol:
    name: str  # attribute of the item
    kind: str  # of the values: _F, _O, _M or an integer dtype
    grouped: bool  # a Grouped field: columns per group (see the module docstring)
    width: int | None  # None: (N,), k: (N, k)
    masked: bool  # has a sentinel: an `unavailable` mask goes with the column


def _decode_bounds(f: Num) -> tuple[int, int]:
    """The raw bounds the generated decoders check."""
    try:
        return f.raw_bounds(decoding=True)  # type: ignore[call-arg]
    except TypeError:  # a table without decode-only ranges
        return f.raw_bounds()


def _num_kind(specs: Sequence[Num]) -> str:
    """The column kind of a number field (its specs in every dialect). Integers keep an exact
    integer dtype: the wire type's, widened where needed to hold every value `decode` can give
    (the checked range — the wire's for measurements, which may only warn — plus `base`)."""
    f = specs[0]
    if f.time:
        return _M
    if f.enum is not None:
        return _O
    if any(s.scale != 1 or s.when is not None for s in specs):
        return _F
    lo, hi, size, signed = 0, 0, 1, False
    for s in specs:
        _, width, wlo, whi = WIRE[s.wire]
        a, b = (wlo, whi) if s.measured else _decode_bounds(s)
        lo, hi = min(lo, a + s.base), max(hi, b + s.base)
        size, signed = max(size, 4 if width == 3 else width), signed or wlo < 0
    signed = signed or lo < 0
    for width in (1, 2, 4, 8):
        dt = np.dtype(f"<{'i' if signed else 'u'}{width}")
        if width >= size and np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return dt.str
    raise AssertionError(f"{f.name}: no integer dtype holds {lo}..{hi}")


def _field_specs(cmd: Command) -> list[tuple[str, Num | None, bool, int | None, bool]]:
    """(name, number spec or None, grouped, width, masked) of the item fields of one command."""
    hidden = {f.length_field for f in cmd.fields if isinstance(f, Echo)}
    out: list[tuple[str, Num | None, bool, int | None, bool]] = []
    for f in cmd.fields:
        if isinstance(f, Nibbles):
            out += [(n.name, n, False, None, n.sentinel is not None)
                    for n in (f.high, f.low) if n.name not in hidden]
        elif isinstance(f, Num):
            out.append((f.name, f, False, f.count if f.count > 1 else None,
                        f.sentinel is not None))
        elif isinstance(f, Grouped):
            out.append((f.name, f.value, True, None, f.sentinel is not None))
        elif isinstance(f, Echo):
            out += [(f.name, None, False, None, False), ("command", None, False, None, False)]
        else:  # Flags, Text, Hex
            out.append((f.name, None, False, None, False))
    return out


def _build_schemas() -> dict[str, tuple[_FieldCol, ...]]:
    by_name: dict[str, list[list[tuple[str, Num | None, bool, int | None, bool]]]] = {}
    for cmd in COMMANDS:
        if cmd.is_uplink():
            by_name.setdefault(cmd.name, []).append(_field_specs(cmd))
    schemas: dict[str, tuple[_FieldCol, ...]] = {}
    for name, variants in by_name.items():
        shapes = {tuple((n, s is None, g, w) for n, s, g, w, _ in v) for v in variants}
        if len(shapes) != 1:
            raise AssertionError(f"{name}: the dialects give different columns")
        cols = []
        for fields in zip(*variants, strict=True):
            fname, spec, grouped, width, _ = fields[0]
            specs = [s for _, s, _, _, _ in fields if s is not None]
            kind = _O if spec is None else _num_kind(specs)
            if len({(s.time, s.enum is None) for s in specs}) > 1:
                raise AssertionError(f"{name}.{fname}: the dialects give different kinds")
            cols.append(_FieldCol(fname, kind, grouped, width, any(m for *_, m in fields)))
        schemas[name] = tuple(cols)
    return schemas


_SCHEMAS = _build_schemas()
_FIELD = {(name, c.name): c for name, cols in _SCHEMAS.items() for c in cols}


def _listed_when(command: str, field: str) -> tuple[str, frozenset] | None:
    """The model's rule for a scalar sentinel field: listed in `Item.unavailable` only while
    the item's field `when[0]` holds one of the values `when[1]` (alarm values; the rule of
    the item class, which both dialects share)."""
    for name, shape, when in item_class(command).sentinel_fields:
        if name == field and shape == "scalar":
            return when
    return None


# --- the output arrays ---------------------------------------------------------------------

class _Sink:
    """The growing output; every array has n rows."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.present: dict[str, np.ndarray] = {}

    def col(self, path: str, kind: str, width: int | None) -> np.ndarray:
        c = self.cols.get(path)
        if c is None:
            shape = self.n if width is None else (self.n, width)
            if _is_int(kind):
                c = np.zeros(shape, _dtype(kind), order="F")
            else:
                c = np.empty(shape, _dtype(kind), order="F")  # channel by channel
                c.fill(_missing(kind))
            self.cols[path] = c
        return c

    def mask(self, path: str, width: int | None) -> np.ndarray:
        m = self.masks.get(path)
        if m is None:
            m = self.masks[path] = np.zeros(self.n if width is None else (self.n, width), bool,
                                            order="F")
        return m

    def flag(self, path: str) -> np.ndarray:
        p = self.present.get(path)
        if p is None:
            p = self.present[path] = np.zeros(self.n, bool)
        return p


def _full(n: int, kind: str, value: Any) -> np.ndarray:
    a = np.empty(n, _dtype(kind))
    a.fill(value)
    return a


# --- per-frame path: an Uplink into row i ---------------------------------------------------

def _occurrence(counts: dict[str, int], name: str) -> str:
    k = counts.get(name, 0)
    counts[name] = k + 1
    return name if k == 0 else f"{name}[{k}]"


def _cell(kind: str, value: Any) -> Any:
    if value is None:
        return _missing(kind)
    if kind == _M:
        return np.datetime64(int(value.timestamp()), "s")
    return value


def _put_item(sink: _Sink, i: int, prefix: str, item: Item) -> None:
    sink.flag(prefix)[i] = True
    una = item.unavailable
    for fc in _SCHEMAS[item.command_name]:
        v = getattr(item, fc.name)
        path = f"{prefix}.{fc.name}"
        if fc.grouped:
            for gr in v:
                gp = f"{path}.{gr.group}"
                sink.col(gp + ".phase", _O, None)[i] = gr.phase
                if gr.channels is not None:
                    sink.col(gp, fc.kind, 3)[i] = [_cell(fc.kind, x) for x in gr.channels]
                    if fc.masked:
                        sink.mask(gp, 3)[i] = [f"{fc.name}.{gr.group}[{k}]" in una
                                               for k in range(3)]
                else:
                    sink.col(gp + ".total", fc.kind, None)[i] = _cell(fc.kind, gr.total)
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


# --- dispatch: the codec's tables, rebuilt from its compiled commands ----------------------

@dataclass(frozen=True, slots=True)
class _Cmd:
    compiled: Any  # codec's Compiled: .command and .decode(buf, o, end, warn)
    command: Command
    invariant: bool | int  # the codec's rule, see _dispatch
    unique: int  # bit to test for duplicates, 0 if the item may repeat


def _dispatch(dialect: Dialect) -> list:
    """id -> _Cmd (or {sub-id: _Cmd}) for uplinks. Invariance is the codec's rule: a command
    shared by both dialects reads the same in both; a grouped one only when every group is
    single-phase (mask byte all ones)."""
    table: list = [None] * 256
    for compiled in compiled_commands(dialect, True).values():
        cmd = compiled.command
        grouped = next((f for f in cmd.fields if isinstance(f, Grouped)), None)
        if cmd.dialects != BOTH_DIALECTS:
            inv: bool | int = False
        else:
            inv = True if grouped is None else (1 << len(grouped.groups)) - 1
        entry = _Cmd(compiled, cmd, inv, 1 << cmd.id if cmd.unique else 0)
        if cmd.sub is None:
            table[cmd.id] = entry
        else:
            table[cmd.id] = {**(table[cmd.id] or {}), cmd.sub: entry}
    return table


_DISPATCH = {d: _dispatch(d) for d in Dialect}


# --- layouts: what a group's first frame teaches about the others ---------------------------

@dataclass(frozen=True, slots=True)
class _Slot:
    """A value field read from byte columns: `spec.count` (or `count`) values at `off`."""

    path: str
    kind: str
    width: int | None  # None: one value per row
    masked: bool
    off: int
    spec: Num | Hex | Flags
    count: int = 1
    # listed in `unavailable` only when this item field (path) holds one of these values
    when: tuple[str, frozenset] | None = None


@dataclass(slots=True)
class _Class:
    """Number slots sharing wire type, scale, base, sentinel, checks and column kind: the rows
    of one (rows, m) block of the column dtype."""

    wire: str
    scale: int
    base: int
    sentinel: int | None
    bounds: tuple[int, int] | None  # checked raw bounds (None: the wire's own)
    choices: np.ndarray | None
    dtype: np.dtype  # of the columns
    raw: np.dtype  # of raw values (u24: uint32)
    direct: bool  # integer columns: raw values are copied into the block and checked there
    copies: list[tuple[int, int, str, int, int, bool]] = field(default_factory=list)
    rows: int = 0
    low: int | None = None  # raw values below / above these need a closer look: out of the
    high: int | None = None  # checked bounds, or possibly the sentinel
    scan: bool = False  # the sentinel lies inside the bounds: compare every value
    ones: np.dtype | None = None  # scan for -1 in integers: the maximum as this unsigned type
    ones_max: int = 0

    def suspect(self, blk: np.ndarray) -> bool:
        """Whether some value of `blk` (raw values) is a sentinel or fails a check."""
        if self.choices is not None:
            return True
        if self.scan and (self.ones is None
                          or blk.view(self.ones).max() == self.ones_max):
            return True
        return bool((self.high is not None and blk.max() > self.high)
                    or (self.low is not None and blk.min() < self.low))

    def failing(self, blk: np.ndarray) -> np.ndarray | None:
        """Values failing the range or choice check (sentinels included)."""
        if self.choices is not None:
            return ~np.isin(blk, self.choices)
        if self.bounds is None:
            return None
        lo, hi = self.bounds
        return (blk < lo) | (blk > hi)


@dataclass(slots=True)
class _Layout:
    structural: list[int] = field(default_factory=list)  # offsets every row shares
    expected: list[int] = field(default_factory=list)  # the template's bytes there
    numbers: list[_Slot] = field(default_factory=list)  # float and integer slots
    values: list[tuple[_Slot, int, int]] = field(default_factory=list)  # (slot, class, row)
    classes: list[_Class] = field(default_factory=list)
    others: list[_Slot] = field(default_factory=list)  # enums, times, hex, flags
    consts: list[tuple[str, str, int | None, bool, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # item / record paths
    invariant: bool = True
    pad: bool = False  # a u24 read runs past the end of the frame


def _const(out: _Layout, path: str, fc: _FieldCol, value: Any) -> None:
    if fc.width is not None:
        value = tuple(_cell(fc.kind, x) for x in value)
    else:
        value = _cell(fc.kind, value)
    out.consts.append((path, fc.kind, fc.width, fc.masked, value))


def _slot(out: _Layout, path: str, fc_kind: str, width: int | None, masked: bool, off: int,
          spec: Num, count: int, when: tuple[str, frozenset] | None = None) -> None:
    s = _Slot(path, fc_kind, width, masked, off, spec, count, when)
    if fc_kind in (_O, _M):
        out.others.append(s)
    else:
        out.numbers.append(s)


def _walk_item(out: _Layout, struct: list[int], buf: bytes, o: int, cmd: Command, item: Item,
               prefix: str, dialect: Dialect) -> int:
    """Lay out one item's fields from body offset o; returns the end offset."""
    when_refs = {f.when[0] for f in cmd.fields if isinstance(f, Num) and f.when}
    raws: dict[str, int] = {}
    name = cmd.name
    for f in cmd.fields:
        if isinstance(f, Num):
            fc = _FIELD[(name, f.name)]
            path = f"{prefix}.{f.name}"
            if f.when is not None and raws[f.when[0]] not in f.when[1]:
                _const(out, path, fc, None)  # absent value: sets the column up, NaN
                continue
            if f.name in when_refs:  # decides the item's length: structural
                struct.extend(range(o, o + f.size))
                raws[f.name] = int.from_bytes(buf[o:o + f.size], "little",
                                              signed=WIRE[f.wire][2] < 0)
                _const(out, path, fc, getattr(item, f.name))
            else:
                when = _listed_when(name, f.name)
                _slot(out, path, fc.kind, fc.width, fc.masked, o, f, f.count,
                      None if when is None else (f"{prefix}.{when[0]}", when[1]))
            o += f.size
        elif isinstance(f, Nibbles):
            struct.append(o)
            raws[f.high.name], raws[f.low.name] = buf[o] >> 4, buf[o] & 15
            for n in (f.high, f.low):
                fc_n = _FIELD.get((name, n.name))
                if fc_n is not None:  # (a reply's echo length is no item field)
                    _const(out, f"{prefix}.{n.name}", fc_n, getattr(item, n.name))
            o += 1
        elif isinstance(f, Flags | Hex):
            out.others.append(_Slot(f"{prefix}.{f.name}", _O, None, False, o, f))
            o += f.size
        elif isinstance(f, Text):  # device names: rare in bulk data, kept as structure
            size = f.size if f.size is not None else 1 + buf[o]
            struct.extend(range(o, o + size))
            _const(out, f"{prefix}.{f.name}", _FIELD[(name, f.name)], getattr(item, f.name))
            o += size
        elif isinstance(f, Echo):
            size = raws[f.length_field]
            struct.extend(range(o, o + size))
            for n in (f.name, "command"):
                _const(out, f"{prefix}.{n}", _FIELD[(name, n)], getattr(item, n))
            o += size
        elif isinstance(f, Grouped):
            fc = _FIELD[(name, f.name)]
            mask = buf[o]
            struct.append(o)
            o += 1
            w = WIRE[f.wire][1]
            for i, g in enumerate(f.groups):
                gp = f"{prefix}.{f.name}.{g}"
                single = bool(mask >> i & 1)
                out.consts.append((gp + ".phase", _O, None, False,
                                   "single" if single else "three"))
                if single or dialect is Dialect.GUIDE:
                    _slot(out, gp, fc.kind, 3, fc.masked, o, f.value, 3)
                    o += 3 * w
                else:
                    _slot(out, gp + ".total", fc.kind, None, fc.masked, o, f.value, 1)
                    o += w
        else:  # pragma: no cover - the table only uses the kinds above
            raise TypeError(f"cannot lay out field {f!r}")
    return o


def _layout(buf: bytes, dialect: Dialect) -> _Layout:
    """The layout of a frame known to decode in `dialect`: the codec's frame walk, recording
    offsets instead of values."""
    table = _DISPATCH[dialect]
    out = _Layout()
    struct = out.structural
    n = len(buf)
    o = 0
    counts: dict[str, int] = {}
    base = ""
    record = -1
    kind_seen = True
    while o < n:
        cid = buf[o]
        struct.append(o)
        entry = table[cid]
        o += 1
        if type(entry) is dict:
            struct.append(o)
            entry = entry[buf[o]]
            o += 1
        if out.invariant and entry.invariant is not True:
            out.invariant = (entry.invariant is not False and o < n
                             and buf[o] == entry.invariant)
        item, end = entry.compiled.decode(buf, o, n, [])
        cmd = entry.command
        if cid == HISTORY_HEADER:
            if not kind_seen:
                out.consts.append((f"{base}.kind", _O, None, False, None))
            record += 1
            base = f"history[{record}]"
            out.flags.append(base)
            counts, kind_seen = {}, False
            for f in cmd.fields:  # mode, timestamp
                fc = _FIELD[(cmd.name, f.name)]
                _slot(out, f"{base}.{f.name}", fc.kind, None, False, o, f, 1)
                o += f.size
        elif cid == MONTHLY_KIND:
            kind_seen = True
            (f,) = cmd.fields
            _slot(out, f"{base}.kind", _O, None, False, o, f, 1)
            o += f.size
        else:
            prefix = _occurrence(counts, cmd.name)
            prefix = f"{base}.{prefix}" if base else prefix
            out.flags.append(prefix)
            o = _walk_item(out, struct, buf, o, cmd, item, prefix, dialect)
        if o != end:  # pragma: no cover - the layout must agree with the decoder
            raise AssertionError(f"layout of {cmd.name} ends at {o}, decoder at {end}")
    if not kind_seen:
        out.consts.append((f"{base}.kind", _O, None, False, None))
    out.expected = [buf[p] for p in struct]
    _plan_values(out, n)
    return out


def _plan_values(out: _Layout, n: int) -> None:
    """Group the number slots into classes; give each slot a row range of its class block."""
    by_key: dict[tuple, list[_Slot]] = {}
    for s in out.numbers:
        f = s.spec
        assert isinstance(f, Num)
        bounds = _decode_bounds(f)
        _, _, wlo, whi = WIRE[f.wire]
        key = (f.wire, f.scale, f.base, f.sentinel,
               None if f.choices is not None or bounds == (wlo, whi) else bounds,
               None if f.choices is None else tuple(sorted(f.choices)), s.kind)
        by_key.setdefault(key, []).append(s)
    for (wire, scale, base, sentinel, bounds, choices, kind), slots in by_key.items():
        view = np.dtype(_VIEW[wire][0])
        cls = _Class(wire, scale, base, sentinel, bounds,
                     None if choices is None else np.array(choices, view), _dtype(kind),
                     view.newbyteorder("="), _is_int(kind))
        _, _, wlo, whi = WIRE[wire]
        lo, hi = bounds if bounds is not None else (wlo, whi)
        if lo != wlo:
            cls.low = lo
        if hi != whi:
            cls.high = hi
        if sentinel is not None and lo <= sentinel <= hi:
            if sentinel == hi:  # the top of the range (u32 energies): spotted by the maximum
                cls.high = hi - 1
            elif sentinel == lo:
                cls.low = lo + 1
            else:  # e.g. -1 W among signed powers
                cls.scan = True
                if sentinel == -1 and cls.direct and cls.dtype.kind == "i":
                    cls.ones = np.dtype(f"<u{cls.dtype.itemsize}")  # -1: all bits set
                    cls.ones_max = int(np.iinfo(cls.ones).max)
        k = len(out.classes)
        for s in slots:
            dt, step = _VIEW[wire]
            cls.copies.append((s.off, s.count, dt, step, cls.rows, wire == "u24"))
            if wire == "u24" and s.off + 3 * s.count >= n:
                out.pad = True
            out.values.append((s, k, cls.rows))
            cls.rows += s.count
        out.classes.append(cls)
    for s in out.others:  # (no such field today)
        if isinstance(s.spec, Num) and s.spec.wire == "u24" and s.off + 3 * s.count >= n:
            out.pad = True


# --- vectorised value decoding ---------------------------------------------------------------

def _pieces(structural: list[int], expected: list[int]) -> list[tuple[int, str, int]]:
    """Runs of adjacent structural bytes as (offset, dtype, expected value), <= 8 bytes each."""
    out: list[tuple[int, str, int]] = []
    k = 0
    while k < len(structural):
        start = structural[k]
        run = 1
        while k + run < len(structural) and structural[k + run] == start + run and run < 8:
            run += 1
        size = 8 if run >= 8 else 4 if run >= 4 else 2 if run >= 2 else 1
        value = int.from_bytes(bytes(expected[k:k + size]), "little")
        out.append((start, {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}[size], value))
        k += size
    return out


def _same(flat: np.ndarray, m: int, L: int, layout: _Layout, todo: np.ndarray | None
          ) -> np.ndarray:
    """Which rows (all m, or the positions `todo`) equal the template in every structural
    byte; compared chunk by chunk so the frames are read from memory once."""
    pieces = _pieces(layout.structural, layout.expected)
    if todo is not None:
        same = np.ones(len(todo), bool)
        for off, dt, value in pieces:
            same &= np.ndarray((m,), dt, flat, off, (L,))[todo] == value
        return same
    same = np.ones(m, bool)
    for start in range(0, m, 4 * _CHUNK):
        stop = min(m, start + 4 * _CHUNK)
        part = same[start:stop]
        for off, dt, value in pieces:
            part &= np.ndarray((stop - start,), dt, flat, off + start * L, (L,)) == value
    return same


_ENUM_LUTS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _enum_lut(f: Num) -> tuple[np.ndarray, np.ndarray]:
    """(valid, names) lookup tables indexed by the raw value (enums are u8 or u16)."""
    assert f.enum is not None
    lut = _ENUM_LUTS.get(id(f.enum))
    if lut is None:
        size = 1 << (8 * WIRE[f.wire][1])
        valid = np.zeros(size, bool)
        names = np.empty(size, object)
        for raw, label in f.enum.items():
            valid[raw] = True
            names[raw] = label
        lut = _ENUM_LUTS[id(f.enum)] = (valid, names)
    return lut


def _list_chunks(seq: Sequence[Any], L: int, pad: bool, same: np.ndarray
                 ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, bytes of rows start..stop) straight from the payloads, _CHUNK rows at a
    time into one reused buffer (it stays in cache for the passes over it). Payloads that are
    not bytes of length L are read as zeros and cleared in `same`."""
    n = len(seq)
    size = min(n, _CHUNK)
    buf = np.zeros(size + 1 if pad else size, f"S{L}")  # pad: a zero row after the last
    flat = buf.view(np.uint8)
    typed = set(map(type, seq)) == {bytes}
    for start in range(0, n, size):
        stop = min(n, start + size)
        part = seq[start:stop]
        if (not typed and set(map(type, part)) != {bytes}) or set(map(len, part)) != {L}:
            fits = [type(p) is bytes and len(p) == L for p in part]
            same[start:stop] &= fits
            part = [p if f else b"" for p, f in zip(part, fits, strict=True)]
        if pad and stop - start < size:
            buf[stop - start] = b""
        buf[:stop - start] = part
        yield start, stop, flat


def _matrix_chunks(flat: np.ndarray, m: int, L: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """The same over m rows already in one buffer (followed by _PAD bytes)."""
    for start in range(0, m, _CHUNK):
        yield start, min(m, start + _CHUNK), flat[start * L:]


@dataclass(slots=True)
class _Values:
    m: int  # rows
    blocks: list[np.ndarray]  # per class: (rows, m) of the column dtype
    sents: list[np.ndarray | None]  # per class with a sentinel: (rows, m), True: sentinel
    bad: np.ndarray | None  # rows failing a check
    others: list[tuple[_Slot, np.ndarray, np.ndarray | None]]  # (slot, values, sentinels)


def _blocks(layout: _Layout, m: int) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Uninitialised value blocks and zeroed sentinel masks for m rows, each set in one
    allocation (large ones get huge pages: far fewer page faults than many arrays)."""
    offs, size = [], 0
    for c in layout.classes:
        offs.append(size)
        size += -(-c.rows * m * c.dtype.itemsize // 64) * 64
    buf = np.empty(size, np.uint8)
    blocks = [np.ndarray((c.rows, m), c.dtype, buf, off)
              for c, off in zip(layout.classes, offs, strict=True)]
    masked = [c.rows if c.sentinel is not None else 0 for c in layout.classes]
    flags = np.zeros((sum(masked), m), bool)
    sents: list[np.ndarray | None] = []
    row = 0
    for k in masked:
        sents.append(flags[row:row + k] if k else None)
        row += k
    return blocks, sents


def _merged(copies: list[tuple[int, int, str, int, int, bool]]
            ) -> list[tuple[int, int, str, int, int, bool]]:
    """Copies of one class with adjacent values and rows (the groups of an item) as one."""
    out: list[tuple[int, int, str, int, int, bool]] = []
    for off, count, dt, step, row, u24 in copies:
        if out:
            o, c, _, _, r, _ = out[-1]
            if off == o + c * step and row == r + c:
                out[-1] = (o, c + count, dt, step, r, u24)
                continue
        out.append((off, count, dt, step, row, u24))
    return out


def _runs(items: list[tuple], off: Any, fits: Any) -> list[list[tuple]]:
    """`items` cut into runs at evenly spaced offsets (`off(item)`) where `fits(prev, item)`,
    each run to be read with one strided view. A pair is not formed when its second item
    starts a run of three or more."""
    def spaced(i: int, j: int, delta: int) -> bool:  # items[j] continues a run ending at i
        return (j < len(items) and fits(items[i], items[j])
                and off(items[j]) - off(items[i]) == delta)

    runs: list[list[tuple]] = []
    i = 0
    while i < len(items):
        j = i + 1
        if j < len(items) and fits(items[i], items[j]):
            delta = off(items[j]) - off(items[i])
            while spaced(j - 1, j, delta):
                j += 1
            if j == i + 2 and j + 1 < len(items) and fits(items[i + 1], items[j]) and spaced(
                    j, j + 1, off(items[j]) - off(items[i + 1])):
                j = i + 1
        runs.append(items[i:j])
        i = j
    return runs


@dataclass(frozen=True, slots=True)
class _Read:
    """`r` groups of `count` values, `delta` bytes apart, into block rows row..row + r*count."""

    off: int
    r: int
    delta: int
    count: int
    dt: str
    step: int
    row: int
    u24: bool


def _reads(copies: list[tuple[int, int, str, int, int, bool]]) -> list[_Read]:
    runs = _runs(_merged(copies), lambda c: c[0],
                 lambda a, b: (a[1], a[2], a[5]) == (b[1], b[2], b[5]) and b[4] == a[4] + a[1])
    return [_Read(run[0][0], len(run), run[1][0] - run[0][0] if len(run) > 1 else 0,
                  run[0][1], run[0][2], run[0][3], run[0][4], run[0][5]) for run in runs]


def _checks(pieces: list[tuple[int, str, int]]
            ) -> list[tuple[int, int, int, str, np.ndarray]]:
    """Structural pieces as runs: (offset, count, delta, dtype, expected values (count, 1))."""
    runs = _runs(pieces, lambda p: p[0], lambda a, b: a[1] == b[1])
    return [(run[0][0], len(run), run[1][0] - run[0][0] if len(run) > 1 else 0, run[0][1],
             np.array([p[2] for p in run], run[0][1])[:, None]) for run in runs]


def _values(layout: _Layout, m: int, L: int, chunks: Iterable[tuple[int, int, np.ndarray]],
            same: np.ndarray | None) -> _Values:
    """Decode the number and other value slots of m rows, chunk by chunk: each chunk is
    compared with the template (when `same` is given: cleared where a row differs), copied
    into its class blocks, checked (one min / max per class and chunk decides whether any
    value needs a closer look) and scaled while in cache."""
    blocks, sents = _blocks(layout, m)
    classes = layout.classes
    reads = [_reads(c.copies) for c in classes]
    # each read's rows of its class block, as (r, count, m)
    dests = [[blk[d.row:d.row + d.r * d.count].reshape(d.r, d.count, m) for d in rs]
             for blk, rs in zip(blocks, reads, strict=True)]
    checks = _checks(_pieces(layout.structural, layout.expected)) if same is not None else []
    size = min(m, _CHUNK)
    eq = np.empty((max((c[1] for c in checks), default=1), size), bool)
    bad = np.zeros(m, bool)
    any_bad = False
    parts: list[list[tuple[int, int, np.ndarray, np.ndarray | None, np.ndarray | None]]] = [
        [] for _ in layout.others]
    src = None  # views of the current chunk buffer, rebuilt when the buffer or size changes
    for start, stop, flat in chunks:
        k = stop - start
        if src is None or flat is not src[0] or k != src[1]:
            src = (flat, k,
                   [np.ndarray((r, k), dt, flat, off, (delta, L))
                    for off, r, delta, dt, _ in checks],
                   [[np.ndarray((d.r, d.count, k), d.dt, flat, d.off, (d.delta, d.step, L))
                     for d in rs] for rs in reads])
        _, _, check_views, read_views = src
        if same is not None:
            part, e = same[start:stop], eq[0, :k]
            for view, (_, r, _, _, expected) in zip(check_views, checks, strict=True):
                if r == 1:
                    np.equal(view[0], expected[0, 0], out=e)
                else:
                    np.equal(view, expected, out=eq[:r, :k])
                    np.logical_and.reduce(eq[:r, :k], axis=0, out=e)
                part &= e
        for c, rs, views, dst, out_all, sent_all in zip(classes, reads, read_views, dests,
                                                        blocks, sents, strict=True):
            for d, view, full in zip(rs, views, dst, strict=True):
                if d.u24:
                    np.bitwise_and(view, 0xFFFFFF, out=full[..., start:stop])
                else:
                    full[..., start:stop] = view
            blk = out_all[:, start:stop]  # raw values (floats: exact integers)
            sent = None
            if c.suspect(blk):
                sent = blk == c.sentinel if c.sentinel is not None else None
                fail = c.failing(blk)
                if fail is not None:
                    if sent is not None:
                        fail &= ~sent
                    if fail.any():
                        bad[start:stop] |= fail.any(axis=0)
                        any_bad = True
                if sent is not None:
                    if sent.any():
                        assert sent_all is not None
                        sent_all[:, start:stop] = sent
                    else:
                        sent = None
            if c.scale != 1:  # raw / scale + base, as the generated decoders
                np.divide(blk, c.scale, out=blk)
            if c.base:
                blk += c.base
            if sent is not None:  # a sentinel is NaN (floats) or 0 (integers)
                blk[sent] = 0 if c.direct else np.nan
        for slot, acc in zip(layout.others, parts, strict=True):
            acc.append((start, stop, *_other(slot, flat, k, L)))
    others = []
    for slot, acc in zip(layout.others, parts, strict=True):
        values = acc[0][2] if len(acc) == 1 else np.concatenate([a[2] for a in acc])
        sent = None
        if any(a[3] is not None for a in acc):
            sent = np.concatenate([np.zeros(a[2].shape, bool) if a[3] is None else a[3]
                                   for a in acc])
        for start, stop, _, _, b in acc:
            if b is not None:
                bad[start:stop] |= b
                any_bad = True
        others.append((slot, values, sent))
    return _Values(m, blocks, sents, bad if any_bad else None, others)


def _other(slot: _Slot, flat: np.ndarray, m: int, L: int
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(values, sentinel mask, failing rows) of an enum, time, hex or flags slot."""
    f = slot.spec
    if isinstance(f, Hex):
        block = np.ascontiguousarray(np.ndarray((m, f.size), np.uint8, flat, slot.off, (L, 1)))
        uniq, inv = np.unique(block.view(np.dtype((np.void, f.size))).ravel(),
                              return_inverse=True)
        lut = np.empty(len(uniq), object)
        for j, u in enumerate(uniq):
            lut[j] = u.tobytes().hex()
        return lut[inv.ravel()], None, None
    dt, step = _VIEW[f.wire]
    if isinstance(f, Flags):
        raw = np.ndarray((m,), dt, flat, slot.off, (L,))
        uniq, inv = np.unique(raw, return_inverse=True)
        lut = np.empty(len(uniq), object)
        for j, r in enumerate(uniq.tolist()):
            lut[j] = tuple(b for i, b in enumerate(f.bits) if b and r >> i & 1)
        reserved = sum(1 << i for i, b in enumerate(f.bits) if b is None)
        bad = (raw & reserved) != 0
        return lut[inv.ravel()], None, bad if bad.any() else None
    shape = (m,) if slot.width is None else (m, slot.count)
    raw = np.ndarray(shape, dt, flat, slot.off, (L,) if slot.width is None else (L, step))
    if f.wire == "u24":
        raw = raw & 0xFFFFFF
    sent = None
    if f.sentinel is not None:
        sent = raw == f.sentinel
        if not sent.any():
            sent = None
    assert isinstance(f, Num)
    if f.enum is not None:
        valid, names = _enum_lut(f)
        bad = ~valid[raw]
        values = names[raw]
    else:  # a time
        lo, hi = _decode_bounds(f)
        _, _, wlo, whi = WIRE[f.wire]
        bad = None
        if f.choices is not None:
            bad = ~np.isin(raw, np.array(sorted(f.choices)))
        elif (lo, hi) != (wlo, whi):
            bad = (raw < lo) | (raw > hi)
        values = raw.astype(np.int64).astype("datetime64[s]")
    if sent is not None:
        values[sent] = None if f.enum is not None else np.datetime64("NaT")
        if bad is not None:
            bad &= ~sent
    if bad is not None:
        bad = bad.any(axis=1) if bad.ndim == 2 else bad
        if not bad.any():
            bad = None
    if slot.masked and sent is None:
        sent = np.zeros(shape, bool)
    return values, sent, bad


# --- proving that the other dialect cannot read a row ----------------------------------------

_FAIL = -1


def _split(col: np.ndarray, pos: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    """(byte value, positions) for each distinct value of `col`."""
    first = int(col[0])
    if (col == first).all():
        return ((first, pos),)
    order = np.argsort(col, kind="stable")
    cuts = np.flatnonzero(np.diff(col[order])) + 1
    return ((int(col[part[0]]), pos[part]) for part in np.split(order, cuts))


def _can_hold(f: Num, raw: int) -> bool:
    """False when the generated decoder must reject this raw value of a structural field
    (measured ranges are only warnings without strict ranges: never proof)."""
    if raw == f.sentinel or f.measured:
        return True
    if f.enum is not None:
        return raw in f.enum
    if f.choices is not None:
        return raw in f.choices
    lo, hi = _decode_bounds(f)
    return lo <= raw <= hi


def _item_ends(cmd: Command, dialect: Dialect, frames: np.ndarray, rows: np.ndarray,
               pos: np.ndarray, o: int, L: int) -> list[tuple[np.ndarray, int]]:
    """Where an item whose body starts at o ends, for groups of rows: an offset, or _FAIL
    when its decoder must raise (truncation, reserved mask bits, a length or alarm type it
    rejects)."""
    refs = {f.when[0] for f in cmd.fields if isinstance(f, Num) and f.when}
    refs |= {f.length_field for f in cmd.fields if isinstance(f, Echo)}
    parts: list[tuple[np.ndarray, int, dict[str, int]]] = [(pos, o, {})]
    for f in cmd.fields:
        nxt: list[tuple[np.ndarray, int, dict[str, int]]] = []
        for p, at, raws in parts:
            absent = isinstance(f, Num) and f.when is not None and (
                raws[f.when[0]] not in f.when[1])
            if at < 0 or absent:  # decided already, or an alarm value that is not sent
                nxt.append((p, at, raws))
            elif isinstance(f, Num) and f.name in refs:
                if f.wire != "u8":  # pragma: no cover - alarm types are bytes
                    raise TypeError(f"{cmd.name}.{f.name}: a structural field wider than a byte")
                if at >= L:
                    nxt.append((p, _FAIL, raws))
                    continue
                for v, sub in _split(frames[rows[p], at], p):
                    nxt.append((sub, at + 1 if _can_hold(f, v) else _FAIL, {**raws, f.name: v}))
            elif isinstance(f, Nibbles) and {f.high.name, f.low.name} & refs:
                if at >= L:
                    nxt.append((p, _FAIL, raws))
                    continue
                for v, sub in _split(frames[rows[p], at], p):
                    ok = _can_hold(f.high, v >> 4) and _can_hold(f.low, v & 15)
                    nxt.append((sub, at + 1 if ok else _FAIL,
                                {**raws, f.high.name: v >> 4, f.low.name: v & 15}))
            elif isinstance(f, Echo):
                nxt.append((p, at + raws[f.length_field], raws))
            elif isinstance(f, Text) and f.size is None:  # u8 length, then the text
                if at >= L:
                    nxt.append((p, _FAIL, raws))
                    continue
                assert f.max_length is not None
                for v, sub in _split(frames[rows[p], at], p):
                    nxt.append((sub, at + 1 + v if 1 <= v <= f.max_length else _FAIL, raws))
            elif isinstance(f, Grouped):
                if at >= L:
                    nxt.append((p, _FAIL, raws))
                    continue
                full = (1 << len(f.groups)) - 1
                w = WIRE[f.wire][1]
                for mask, sub in _split(frames[rows[p], at], p):
                    if mask > full:
                        nxt.append((sub, _FAIL, raws))
                        continue
                    n = sum(3 if mask >> i & 1 or dialect is Dialect.GUIDE else 1
                            for i in range(len(f.groups)))
                    nxt.append((sub, at + 1 + n * w, raws))
            else:  # fixed size: Num, Nibbles, Flags, Hex, Text
                nxt.append((p, at + f.size, raws))  # type: ignore[union-attr]
        parts = nxt
    return [(p, _FAIL if at > L else at) for p, at, _ in parts]


def _refute(frames: np.ndarray, rows: np.ndarray, dialect: Dialect) -> np.ndarray:
    """For each of `rows`: True when `decode(..., dialect=dialect)` certainly raises.

    Walks the dialect's frame structure over all rows at once, splitting them by the bytes
    that decide it (ids, sub-ids, masks, alarm types, lengths); proves failure only by
    structural rules (unknown ids and sub-ids, truncation, reserved mask bits, rejected alarm
    types and lengths, duplicates, a misplaced `40`, an empty record), which a row's parse
    reaches unless it fails earlier. Rows that walk to the end, or sit in groups smaller than
    _MIN_NODE, stay False.
    """
    table = _DISPATCH[dialect]
    L = frames.shape[1]
    proven = np.zeros(len(rows), bool)
    # (positions in rows, offset, seen bits, in a record, items in it, kind seen)
    stack: list[tuple[np.ndarray, int, int, bool, int, bool]] = [
        (np.arange(len(rows)), 0, 0, False, 0, False)]
    while stack:
        pos, o, seen, header, items, kind = stack.pop()
        if o == L:
            if header and items == 0:
                proven[pos] = True
            continue
        if len(pos) < _MIN_NODE:
            continue
        for cid, sub in _split(frames[rows[pos], o], pos):
            entry = table[cid]
            if entry is None:
                proven[sub] = True
                continue
            heads: list[tuple[np.ndarray, Any, int]] = []
            if type(entry) is dict:
                if o + 1 >= L:
                    proven[sub] = True
                    continue
                for sid, sub2 in _split(frames[rows[sub], o + 1], sub):
                    if sid in entry:
                        heads.append((sub2, entry[sid], o + 2))
                    else:
                        proven[sub2] = True
            else:
                heads.append((sub, entry, o + 1))
            for p, e, body in heads:
                for q, end in _item_ends(e.command, dialect, frames, rows, p, body, L):
                    if end == _FAIL:
                        proven[q] = True
                    elif cid == HISTORY_HEADER:
                        if header and items == 0:
                            proven[q] = True
                        else:
                            stack.append((q, end, 0, True, 0, False))
                    elif cid == MONTHLY_KIND:
                        if not header or items or kind:
                            proven[q] = True
                        else:
                            stack.append((q, end, seen, True, items, True))
                    elif seen & e.unique:
                        proven[q] = True
                    else:
                        stack.append((q, end, seen | e.unique, header, items + 1, kind))
    return proven


# --- the driver -------------------------------------------------------------------------------

def _safe_decode(payload: Any, options: dict[str, Any]) -> Uplink | DecodeError:
    try:
        return decode(payload, **options)
    except DecodeError as exc:
        return exc
    except Exception as exc:  # a decoder bug must not abort a whole batch
        return DecodeError(f"internal decoder error: {exc!r}")


def _as_bytes(p: Any) -> bytes:
    """Bytes-likes as bytes; anything else as b"" (which `decode` then rejects for what it is)."""
    return p if type(p) is bytes else bytes(p) if isinstance(p, bytearray | memoryview) else b""


class _Batch:
    def __init__(self, payloads: Sequence[Any], dialect: str, strict_ranges: bool) -> None:
        self.payloads = payloads
        self.n = n = len(payloads)
        self.dialect = dialect
        self.options: dict[str, Any] = {"dialect": dialect, "strict_ranges": strict_ranges}
        self.sink = _Sink(n)
        self.ok = np.zeros(n, bool)
        self.labels = np.empty(n, object)
        self.ambiguous = np.zeros(n, bool)
        self.vectorised = np.zeros(n, bool)
        self.errors: dict[int, DecodeError] = {}
        self.warnings: dict[int, tuple[str, ...]] = {}

    def per_frame(self, i: int, result: Uplink | DecodeError | None = None) -> None:
        if result is None:
            result = _safe_decode(self.payloads[i], self.options)
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
        rest = self.bulk()
        if rest is None:
            self.general(None)
        elif len(rest):
            self.general(rest)

    def bulk(self) -> np.ndarray | None:
        """The whole batch against the layout of its first valid frame (among the first few),
        read straight from the payload list: the common case of bulk data, one pass over the
        payloads. Returns the rows of other layouts (positions), None if no template was
        found."""
        seq = self.payloads
        for t in range(min(self.n, _TEMPLATE_TRIES)):
            p = seq[t]
            if type(p) is bytes and p:
                first = _safe_decode(p, self.options)
                if not isinstance(first, DecodeError):
                    break
        else:
            return None
        mode, label, reading = self.plan(first)
        if mode == "per_frame":
            return None
        layout = _layout(p, reading)
        if mode == "common" and not layout.invariant:
            return None
        n, L = self.n, len(p)
        same = np.ones(n, bool)
        chunks = _list_chunks(seq, L, layout.pad, same)
        kept = np.empty((n, L), np.uint8) if mode == "check" else None
        if kept is not None:  # the other dialect's walk reads the frames: keep a copy

            def keep(chunks: Iterator[tuple[int, int, np.ndarray]]
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
                for start, stop, flat in chunks:
                    kept.reshape(-1)[start * L:stop * L] = flat[:(stop - start) * L]
                    yield start, stop, flat

            chunks = keep(chunks)
        vals = _values(layout, n, L, chunks, same)
        self.finish(layout, vals, None, same, label, mode, lambda pos: (kept, pos))
        return np.flatnonzero(~same)

    def general(self, rows: np.ndarray | None) -> None:
        """Rows (None: all) grouped by length, each group by layouts."""
        seq = self.payloads if rows is None else [self.payloads[i] for i in rows.tolist()]
        if set(map(type, seq)) != {bytes}:  # bytes-likes are copied, the rest become errors
            seq = [_as_bytes(p) for p in seq]
        lengths = set(map(len, seq))
        if rows is None and len(lengths) == 1 and 0 not in lengths:
            self.length_group(seq, None, lengths.pop())
            return
        lens = np.fromiter(map(len, seq), np.int64, len(seq))
        sizes, first = np.unique(lens, return_index=True)
        for length in sizes[np.argsort(first)].tolist():  # in order of first appearance
            pos = np.flatnonzero(lens == length)
            where = pos if rows is None else rows[pos]
            if length == 0:  # empty, or not bytes at all: `decode` says why
                for i in where.tolist():
                    self.per_frame(i)
            else:
                self.length_group([seq[i] for i in pos.tolist()], where, length)

    def length_group(self, items: Sequence[bytes], rows: np.ndarray | None, L: int) -> None:
        """Frames of one length: `items`, the payloads of batch rows `rows` (None: all)."""
        m = len(items)
        pad = [b""] * -(-_PAD // L)  # zero rows after the last frame
        data = np.array([*items, *pad], dtype=f"S{L}").view(np.uint8)
        where = np.arange(m) if rows is None else rows
        frames = data[:m * L].reshape(m, L)
        todo: np.ndarray | None = None  # positions in `items` not yet decoded (None: all)
        for _ in range(_MAX_TEMPLATES):
            t = 0 if todo is None else int(todo[0])
            i = int(where[t])
            first = _safe_decode(items[t], self.options)
            if isinstance(first, DecodeError):
                self.per_frame(i, first)
                todo = np.arange(1, m) if todo is None else todo[1:]
            else:
                mode, label, reading = self.plan(first)
                layout = _layout(items[t], reading)
                same = _same(data, m, L, layout, todo)
                if same.all():
                    match, rest = (None if todo is None else todo), np.empty(0, np.intp)
                else:
                    every = np.arange(m) if todo is None else todo
                    match, rest = every[same], every[~same]
                if mode == "per_frame" or (mode == "common" and not layout.invariant):
                    # ambiguous, or "common" because both readings compared equal: that
                    # depends on the values, so `decode` has to see every row
                    for k in (range(m) if match is None else match.tolist()):
                        self.per_frame(int(where[k]), first if k == t else None)
                else:
                    self.vector(layout, data, frames, rows, match, L, label, mode)
                todo = rest
            if not len(todo):
                return
        for k in todo.tolist():  # too many layouts of this length: one by one
            self.per_frame(int(where[k]))

    def plan(self, first: Uplink) -> tuple[str, str, Dialect]:
        """(mode, label, dialect to read in) for the rows of a template's layout."""
        if self.dialect != "auto":
            return "direct", first.dialect, Dialect(self.dialect)
        if first.ambiguous:
            return "per_frame", "", Dialect.FIRMWARE
        if first.dialect == "common":
            return "common", "common", Dialect.FIRMWARE
        return "check", first.dialect, Dialect(first.dialect)

    def vector(self, layout: _Layout, data: np.ndarray, frames: np.ndarray,
               rows: np.ndarray | None, match: np.ndarray | None, L: int, label: str,
               mode: str) -> None:
        """Decode the rows `match` (positions in `frames`; None: all) of one layout; `rows`:
        the batch row of each frame (None: frame k is row k)."""
        if match is None:
            m, flat = len(frames), data
        else:
            m = len(match)
            flat = np.zeros(m * L + _PAD, np.uint8)
            np.take(frames, match, axis=0, out=flat[:m * L].reshape(m, L))
        vals = _values(layout, m, L, _matrix_chunks(flat, m, L), None)
        idx = rows if match is None else match if rows is None else rows[match]

        def frames_of(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return flat[:m * L].reshape(m, L), pos

        self.finish(layout, vals, idx, None, label, mode, frames_of)

    def finish(self, layout: _Layout, vals: _Values, idx: np.ndarray | None,
               same: np.ndarray | None, label: str, mode: str, frames: Any) -> None:
        """Rows of `vals` (idx: their batch rows; None: row k is batch row k) that match the
        template (`same`; None: all) go to the columns, unless a check failed on them or, in
        auto mode, the other dialect may read them: those go to `decode`."""
        take = np.ones(vals.m, bool) if same is None else same.copy()
        if vals.bad is not None:
            take &= ~vals.bad
        if mode == "check":
            self.settle(take, idx, label, frames)
        later = ~take if same is None else same & ~take
        self.emit(layout, vals, idx, take, label)
        for p in np.flatnonzero(later).tolist():
            self.per_frame(p if idx is None else int(idx[p]))

    def settle(self, take: np.ndarray, idx: np.ndarray | None, label: str, frames: Any
               ) -> None:
        """Auto mode: clear in `take` the rows the other dialect may read (`decode` decides
        them); `frames(positions)` gives (a matrix holding those rows, their rows in it)."""
        other = Dialect.GUIDE if label == "firmware" else Dialect.FIRMWARE
        cand = np.flatnonzero(take)
        if not len(cand):
            return
        matrix, at = frames(cand)
        proven = _refute(matrix, at, other)
        if proven.all():
            return
        options = {"dialect": other.value, "strict_ranges": self.options["strict_ranges"]}
        for j in np.flatnonzero(~proven).tolist():
            p = int(cand[j])
            i = p if idx is None else int(idx[p])
            if not isinstance(_safe_decode(self.payloads[i], options), DecodeError):
                take[p] = False  # the other dialect reads it too: `decode` decides

    def emit(self, layout: _Layout, vals: _Values, idx: np.ndarray | None, take: np.ndarray,
             label: str) -> None:
        """Write the rows `take` of `vals` into the output. With idx None (row k is batch row
        k) the value arrays become the columns themselves, their other rows set to "no
        value"."""
        sink = self.sink
        everything = bool(take.all())
        if not everything and not take.any():
            return
        if idx is None:
            sel: Any = slice(None) if everything else take
            outside = None if everything else np.flatnonzero(~take)
        else:
            sel, outside = (idx if everything else idx[take]), None

        def put(store: dict[str, np.ndarray], make: Any, path: str, values: np.ndarray,
                missing: Any) -> None:
            if idx is None and path not in store:
                if outside is not None:
                    values[outside] = missing
                store[path] = values
            else:
                make(path)[sel] = values if everything else values[take]

        known: dict[str, Any] = {p: v for p, _, _, _, v in layout.consts}
        known.update((s.path, values) for s, values, _ in vals.others)

        def listed(s: _Slot, sent: np.ndarray) -> np.ndarray:
            if s.when is None:
                return sent
            ref, names = s.when
            value = known[ref]
            if isinstance(value, np.ndarray):
                return sent & np.isin(value, np.array(list(names), object))
            return sent if value in names else np.zeros_like(sent)

        for s, k, row in layout.values:
            blk, sent_blk = vals.blocks[k], vals.sents[k]
            if s.width is None:
                values = blk[row]
                sent = sent_blk[row] if sent_blk is not None else None
            else:
                values = blk[row:row + s.count].T
                sent = sent_blk[row:row + s.count].T if sent_blk is not None else None
            put(sink.cols, lambda p, s=s: sink.col(p, s.kind, s.width), s.path, values,
                _missing(s.kind))
            if s.masked:
                if sent is None:
                    sent = np.zeros(values.shape, bool)
                put(sink.masks, lambda p, s=s: sink.mask(p, s.width), s.path,
                    listed(s, sent), False)
        for s, values, sent in vals.others:
            put(sink.cols, lambda p, s=s: sink.col(p, s.kind, s.width), s.path, values,
                _missing(s.kind))
            if s.masked and sent is not None:
                put(sink.masks, lambda p, s=s: sink.mask(p, s.width), s.path,
                    listed(s, sent), False)
        shared: dict[tuple[str, type, Any], np.ndarray] = {}
        m = len(take)
        for path, kind, width, masked, value in layout.consts:
            if idx is None and width is None and path not in sink.cols:
                if everything:
                    key = (kind, type(value), value)
                    if key not in shared:  # constant columns share one read-only array
                        shared[key] = _full(m, kind, value)
                    sink.cols[path] = shared[key]
                else:
                    col = sink.cols[path] = _full(m, kind, value)
                    col[outside] = _missing(kind)
            elif width is None and kind == _O:
                sink.col(path, kind, None)[sel] = _full(m if everything else int(take.sum()),
                                                        kind, value)
            else:
                sink.col(path, kind, width)[sel] = value
            if masked:
                sink.mask(path, width)
        for path in layout.flags:
            if idx is None and path not in sink.present:
                sink.present[path] = take.copy()
            else:
                sink.flag(path)[sel] = True
        self.ok[sel] = True
        self.vectorised[sel] = True
        self.labels[sel] = label


def decode_many(payloads: Sequence[bytes], *, dialect: DialectName = "auto",
                strict_ranges: bool = True) -> Columns:
    """Decode many uplink payloads into columns, one row per payload, in input order.

    Every row gets exactly the values, dialect, ambiguity and warnings that
    ``decode(payload, dialect=dialect, strict_ranges=strict_ranges)`` gives, or that call's
    `DecodeError` in `Columns.errors`: bad payloads (anything not bytes-like included) never
    raise. See the module docstring for the column paths and the dialect rules.
    """
    if dialect not in ("auto", "firmware", "guide"):
        raise ValueError(f"dialect must be 'auto', 'firmware' or 'guide', not {dialect!r}")
    if isinstance(payloads, bytes | bytearray | memoryview | str):
        raise TypeError("payloads must be a sequence of payloads, not one payload")
    if not isinstance(payloads, list | tuple):
        payloads = list(payloads)
    batch = _Batch(payloads, dialect, strict_ranges)
    if batch.n:
        batch.run()
    sink = batch.sink
    arrays = [batch.ok, batch.labels, batch.ambiguous, batch.vectorised,
              *sink.cols.values(), *sink.masks.values(), *sink.present.values()]
    for a in arrays:
        a.flags.writeable = False
    return Columns(
        n=batch.n, columns=sink.cols, unavailable=sink.masks, present=sink.present,
        ok=batch.ok, dialect=batch.labels, ambiguous=batch.ambiguous,
        vectorised=batch.vectorised, errors=dict(sorted(batch.errors.items())),
        warnings=dict(sorted(batch.warnings.items())), _payloads=payloads,
        _options=dict(batch.options),
    )
