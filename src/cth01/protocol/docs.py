"""Renders the protocol reference `docs/protocol.md` from the command table.

Owns: turning `table.COMMANDS` and the schema's field kinds into Markdown — the framing
introduction, one section per command kind, and for every command its wire key, item name,
direction, dialects, body length, field table, reply and examples (each example decoded by
the codec itself, so the printed JSON is what callers get). Only the connecting prose is
written here; every id, width, scale, range, enum, sentinel, default and example comes from
the table. Hand-written notes on guide/firmware disagreements live in `docs/errata.md`.

The output is deterministic (no dates, no set or hash ordering), so a test can require that
the committed `docs/protocol.md` equals `render_protocol_markdown()`; `make docs` rewrites it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .codec import decode, decode_downlink
from .errors import DecodeError
from .schema import (
    WIRE,
    Command,
    Dialect,
    Direction,
    Echo,
    FieldSpec,
    Flags,
    Grouped,
    Hex,
    Nibbles,
    Num,
    Text,
)
from .table import COMMANDS

__all__ = ["command_anchor", "render_protocol_markdown", "write_protocol_markdown"]

DIALECT_ORDER = (Dialect.FIRMWARE, Dialect.GUIDE)
MEASURED = "‡"

# (section id, title, predicate over a command); the order is the document's order
_SECTIONS: tuple[tuple[str, str, Callable[[Command], bool]], ...] = (
    ("device-information-and-service", "Device information, service items and replies",
     lambda c: c.kind in ("info", "service", "reply")),
    ("measurements", "Measurements",
     lambda c: c.kind == "measurement" and not _grouped(c)),
    ("grouped-measurements", "Grouped measurements (phase mask)",
     lambda c: c.kind == "measurement" and _grouped(c) is not None),
    ("alarms", "Alarms", lambda c: c.kind == "alarm"),
    ("history", "History items", lambda c: c.kind == "history"),
    ("configuration", "Configuration", lambda c: c.kind in ("config", "threshold")),
    ("actions-and-queries", "Actions and queries", lambda c: c.kind in ("action", "query")),
)


# --- small formatting helpers ------------------------------------------------------------------

def _grouped(cmd: Command) -> Grouped | None:
    return next((f for f in cmd.fields if isinstance(f, Grouped)), None)


def _dialects(cmd: Command) -> tuple[Dialect, ...]:
    return tuple(d for d in DIALECT_ORDER if d in cmd.dialects)


def _spaced_key(cmd: Command) -> str:
    return f"{cmd.id:02x}" if cmd.sub is None else f"{cmd.id:02x} {cmd.sub:02x}"


def _num(v: object) -> str:
    """A number (or JSON scalar) as text, the same on every run and platform."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(round(v, 6))
    if isinstance(v, str):
        return f'`"{v}"`'
    return str(v)


def _eng(f: Num, raw: int) -> str:
    return _num(f.engineering(raw))


def _hex_raw(raw: int, width_bytes: int) -> str:
    return f"0x{raw:0{2 * width_bytes}x}"


def _runs(codes: Iterable[int]) -> str:
    """0x01, 0x02, 0x04, 0x10–0x17: sorted codes with consecutive runs of 3+ collapsed."""
    values = sorted(codes)
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"0x{values[i]:02x}–0x{values[j]:02x}")
        else:
            out.extend(f"0x{v:02x}" for v in values[i:j + 1])
        i = j + 1
    return ", ".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _direction(cmd: Command) -> str:
    return {
        Direction.UPLINK: "uplink (device → server)",
        Direction.DOWNLINK: "downlink (server → device)",
        Direction.BOTH: "both (same layout downlink and uplink)"
        + (": set by downlink, reported back in query answers"
           if cmd.kind in ("config", "threshold") else ""),
    }[cmd.direction]


# --- anchors -----------------------------------------------------------------------------------

def _anchors() -> dict[int, str]:
    base: dict[int, str] = {}
    for cmd in COMMANDS:
        a = f"cmd-{cmd.key}-{cmd.name}".replace("_", "-")
        if len(cmd.dialects) == 1:
            a += f"-{_dialects(cmd)[0].value}"
        base[id(cmd)] = a
    counts: dict[str, int] = {}
    for a in base.values():
        counts[a] = counts.get(a, 0) + 1
    out = {}
    for cmd in COMMANDS:
        a = base[id(cmd)]
        out[id(cmd)] = a if counts[a] == 1 else f"{a}-{cmd.direction.value}"
    if len(set(out.values())) != len(out):  # pragma: no cover - table invariant
        raise ValueError("two commands of the table would share a documentation anchor")
    return out


_ANCHORS = _anchors()


def command_anchor(cmd: Command) -> str:
    """The HTML anchor of a command's section in `docs/protocol.md`."""
    return _ANCHORS[id(cmd)]


def _link(cmd: Command) -> str:
    dialect = f" ({_dialects(cmd)[0].value})" if len(cmd.dialects) == 1 else ""
    return f"[`{_spaced_key(cmd)}` {cmd.name}{dialect}](#{command_anchor(cmd)})"


# --- body length -------------------------------------------------------------------------------

def _grouped_lengths(g: Grouped, firmware: bool) -> list[int]:
    w = WIRE[g.wire][1]
    n = len(g.groups)
    if not firmware:
        return [1 + 3 * n * w]
    return sorted({1 + sum((3 if m >> i & 1 else 1) * w for i in range(n))
                   for m in range(1 << n)})


def body_length(cmd: Command, short: bool = False) -> str:
    """How the body length (bytes after the id, sub-id included) of a command is found;
    `short` gives just the possible lengths (for the index)."""
    fixed = 0 if cmd.sub is None else 1
    notes: list[str] = []
    extra: int | None = None
    for f in cmd.fields:
        if isinstance(f, Grouped):
            if short:
                return "; ".join(
                    f"{d.value}: " + ", ".join(str(fixed + n) for n in
                                              _grouped_lengths(f, d is Dialect.FIRMWARE))
                    for d in _dialects(cmd))
            parts = []
            for d in _dialects(cmd):
                lengths = _grouped_lengths(f, d is Dialect.FIRMWARE)
                w = WIRE[f.wire][1]
                if d is Dialect.FIRMWARE:
                    parts.append(
                        f"firmware: 1 + per group {3 * w} (single-phase) or {w} (three-phase) "
                        f"= {', '.join(str(fixed + n) for n in lengths)} bytes (mask-derived)")
                else:
                    parts.append(f"guide: {fixed + lengths[0]} bytes (always three values "
                                 f"per group)")
            return "; ".join(parts)
        if isinstance(f, Num) and f.when is not None:
            extra = f.size
            notes.append(f"the {f.size}-byte `{f.name}` follows only when `{f.when[0]}` is "
                         f"{_runs(f.when[1])}")
        elif isinstance(f, Text) and f.size is None:
            if short:
                return f"{fixed + 1} + L"
            return (f"{fixed + 1} + L bytes (L = the length byte [{fixed}], "
                    f"1..{f.max_length})")
        elif isinstance(f, Echo):
            if short:
                return f"{fixed} + n"
            return (f"{fixed} + n bytes (n = `{f.length_field}`, the low nibble of byte "
                    f"[{fixed - 1}], 1..15)")
        else:
            fixed += f.size  # type: ignore[union-attr]
    if extra is not None:
        if short:
            return f"{fixed} or {fixed + extra}"
        return f"{fixed} or {fixed + extra} bytes: " + "; ".join(notes)
    if short:
        return str(fixed)
    text = f"{fixed} byte{'s' if fixed != 1 else ''}"
    return text + (" (sub-id included)" if cmd.sub is not None else "")


# --- field table -------------------------------------------------------------------------------

FIELD_HEADER = ("field", "wire", "count", "scale", "unit", "range", "values", "sentinel",
                "default", "when", "doc")


def _enum_values(f: Num, nibble: bool) -> str:
    if f.enum is None:
        return ""
    size = WIRE[f.wire][1]
    return ", ".join(f"{raw if nibble else _hex_raw(raw, size)} = {_num(v)}"
                     for raw, v in f.enum.items())


def _range(f: Num) -> str:
    if f.time:
        return "Unix seconds, UTC (ISO 8601 in JSON)"
    if f.enum is not None:
        return ""
    if f.choices is not None:
        return "one of " + ", ".join(_num(c) for c in sorted(f.choices))
    lo, hi = f.raw_bounds()
    text = f"{_eng(f, lo)}..{_eng(f, hi)}"
    if f.base:
        text += f" (wire {lo}..{hi})"
    if f.range is None:
        text += " (wire width)"
    alo, ahi = f.raw_bounds(decoding=True)
    if (alo, ahi) != (lo, hi):
        text += f"; decoding accepts {_eng(f, alo)}..{_eng(f, ahi)}"
    if f.measured:
        text += f" {MEASURED}"
    return text


def _scale(scale: int, base: int = 0) -> str:
    parts = []
    if scale != 1:
        parts.append(f"÷{scale}")
    if base:
        parts.append(f"{base:+d}")
    return " ".join(parts)


def _sentinel(wire: str, sentinel: int | None) -> str:
    if sentinel is None:
        return ""
    _, size, lo, _ = WIRE[wire]
    if lo < 0:
        raw = sentinel.to_bytes(size, "little", signed=True)
        return f"{sentinel} ({raw.hex()}) → null"
    return f"{_hex_raw(sentinel, size)} → null"


def _default(f: Num) -> str:
    if f.default is None:
        return ""
    if f.enum is not None:
        raw = next((r for r, v in f.enum.items()
                    if v == f.default and type(v) is type(f.default)), None)
        return f"{_num(f.default)} ({_hex_raw(raw, WIRE[f.wire][1])})" if raw is not None \
            else _num(f.default)
    return _num(f.default)


def _when(f: Num, cmd: Command) -> str:
    if f.when is None:
        return ""
    ref, raws = f.when
    return f"`{ref}` is {_runs(raws)}"


def _num_row(f: Num, cmd: Command, wire: str | None = None, doc: str = "") -> list[str]:
    nibble = wire is not None
    docs = "; ".join(p for p in (f.doc, doc) if p)
    return [f"`{f.name}`", wire or f.wire, str(f.count), _scale(f.scale, f.base), f.unit,
            _range(f), _enum_values(f, nibble), _sentinel(f.wire, f.sentinel), _default(f),
            _when(f, cmd), docs]


def _report_targets(bit: str) -> str:
    """Measurement items a report-parameter bit switches on (6c), by name."""
    keys = [f"`{c.key}`" for c in COMMANDS if c.kind == "measurement"
            and c.name in (bit, f"{bit}_ab", f"{bit}_cd")]
    return "/".join(dict.fromkeys(keys))


def _flags_row(f: Flags) -> list[str]:
    bits = []
    for i, b in enumerate(f.bits):
        if b is None:
            bits.append(f"bit {i} reserved (0)")
        else:
            target = _report_targets(b)
            bits.append(f"bit {i} `{b}`" + (f" ({target})" if target else ""))
    raw = sum(1 << f.bits.index(b) for b in f.default)
    size = WIRE[f.wire][1]
    default = f"{_hex_raw(raw, size)} (" + ", ".join(f"`{b}`" for b in f.default) + ")"
    return [f"`{f.name}`", f.wire, "1", "", "", "", ", ".join(bits), "", default, "",
            f.doc or "JSON: list of the names of the bits that are set"]


def _field_rows(cmd: Command) -> list[list[str]]:
    rows: list[list[str]] = []
    hidden = {f.length_field for f in cmd.fields if isinstance(f, Echo)}
    if cmd.sub is not None:
        rows.append(["(sub-id)", "u8", "1", "", "", "", _hex_raw(cmd.sub, 1), "", "", "",
                     "selects this layout; not in the JSON"])
    for f in cmd.fields:
        rows.extend(_spec_rows(f, cmd, hidden))
    return rows


def _spec_rows(f: FieldSpec, cmd: Command, hidden: set[str]) -> list[list[str]]:
    if isinstance(f, Num):
        return [_num_row(f, cmd)]
    if isinstance(f, Nibbles):
        out = []
        for n, bits in ((f.high, "7–4"), (f.low, "3–0")):
            note = "not in the JSON: the echo's byte count" if n.name in hidden else ""
            out.append(_num_row(n, cmd, wire=f"u4 (bits {bits})", doc=note))
        return out
    if isinstance(f, Flags):
        return [_flags_row(f)]
    if isinstance(f, Text):
        charset = "ASCII" if f.ascii_only else "UTF-8"
        if f.size is not None:
            return [[f"`{f.name}`", f"text[{f.size}]", "1", "", "", f"0..{f.size} bytes",
                     charset + ", NUL-padded (padding stripped)", "", _num(f.default)
                     if f.default is not None else "", "", f.doc]]
        return [
            ["(length)", "u8", "1", "", "", f"1..{f.max_length}", "", "", "", "",
             "byte count of the text; not in the JSON"],
            [f"`{f.name}`", "text", "L", "", "", f"1..{f.max_length} bytes",
             charset + ", no NUL", "", _num(f.default) if f.default is not None else "", "",
             f.doc],
        ]
    if isinstance(f, Hex):
        return [[f"`{f.name}`", "bytes", str(f.size), "", "", "", "lower-case hex string", "",
                 "", "", f.doc]]
    if isinstance(f, Echo):
        return [[f"`{f.name}`", "bytes", f"n = `{f.length_field}`", "", "", "1..15 bytes",
                 "lower-case hex string", "", "", "",
                 (f.doc + "; " if f.doc else "") + "JSON also carries `command`, the name of "
                 "the command the bytes identify (null when none)"]]
    if isinstance(f, Grouped):
        n = len(f.groups)
        v = f.value
        mask_bits = ", ".join(f"bit {i} = group {g}" for i, g in enumerate(f.groups))
        counts = []
        if Dialect.FIRMWARE in cmd.dialects:
            counts.append("firmware: 3 per single-phase group, 1 per three-phase group")
        if Dialect.GUIDE in cmd.dialects:
            counts.append("guide: 3 per group")
        return [
            ["(mask)", "u8", "1", "", "", "", f"{mask_bits}; 1 = single-phase, "
             f"0 = three-phase; bits {n}–7 reserved (0)", "", "", "", "not a JSON field: "
             "each group's `phase` carries it"],
            [f"`{f.name}`", f.wire, "; ".join(counts), _scale(f.scale), f.unit, _range(v), "",
             _sentinel(f.wire, f.sentinel), "", "",
             (f.doc + "; " if f.doc else "") + "JSON: one `{group, phase, channels, total}` "
             "per group"],
        ]
    raise TypeError(f"cannot document field {f!r}")  # pragma: no cover


# --- examples ----------------------------------------------------------------------------------

def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _single_dialect(cmd: Command) -> Any:
    return "auto" if len(cmd.dialects) == 2 else _dialects(cmd)[0].value


def _example(cmd: Command, hexstr: str) -> list[str]:
    payload = bytes.fromhex(hexstr)
    dialect = _single_dialect(cmd)
    lines: list[str] = []
    arg = f'bytes.fromhex("{hexstr}")' + ("" if dialect == "auto" else f', dialect="{dialect}"')
    try:
        if cmd.is_downlink():
            items = [i.to_dict() for i in decode_downlink(payload, dialect=dialect)]
            lines += [f"Example `{hexstr}` → `decode_downlink({arg})`:", "", "```json",
                      _json(items), "```", ""]
            if cmd.is_uplink():
                up = decode(payload, dialect=dialect)
                if [i.to_dict() for i in up.items] == items and not up.history:
                    lines += [f"As an uplink (a query answer) the same bytes decode to the same "
                              f"item; `decode` reports dialect `{up.dialect}`.", ""]
                else:
                    lines += [f"`decode({arg})`:", "", "```json", _json(up.to_dict()), "```",
                              ""]
        else:
            up = decode(payload, dialect=dialect)
            lines += [f"Example `{hexstr}` → `decode({arg})`:", "", "```json",
                      _json(up.to_dict()), "```", ""]
    except DecodeError as exc:
        lines += [f"Example `{hexstr}` does not decode: `{exc}`", ""]
    return lines


# --- per-command section -----------------------------------------------------------------------

def _siblings(cmd: Command) -> list[Command]:
    return [c for c in COMMANDS if c is not cmd and (c.id, c.sub) == (cmd.id, cmd.sub)]


def _command_section(cmd: Command) -> list[str]:
    dialects = _dialects(cmd)
    suffix = f" ({dialects[0].value} dialect)" if len(dialects) == 1 else ""
    lines = [f'<a id="{command_anchor(cmd)}"></a>', "",
             f"### `{_spaced_key(cmd)}` {cmd.name} — {cmd.title}{suffix}", ""]
    facts = [
        ("Wire key", f"`{cmd.key}` (id `0x{cmd.id:02x}`"
         + (f", sub-id `0x{cmd.sub:02x}`)" if cmd.sub is not None else ")")),
        ("Name", f"`{cmd.name}` (the item's `type` in decoded JSON)"),
        ("Kind", cmd.kind),
        ("Direction", _direction(cmd)),
        ("Dialects", ", ".join(d.value for d in dialects)),
        ("Body", body_length(cmd)),
    ]
    if cmd.unique:
        facts.append(("Unique", "at most once per frame or history record"))
    if cmd.reply:
        facts.append(("Reply", f"[`ef` command reply](#command-replies) echoing `{cmd.key}`"
                      if cmd.reply == "ef" else cmd.reply))
    sib = _siblings(cmd)
    if sib:
        facts.append(("Same key", ", ".join(_link(c) for c in sib)))
    lines += _table(("", ""), [(f"**{k}**", v) for k, v in facts])
    lines.append("")
    if cmd.doc:
        lines += [cmd.doc, ""]
    rows = _field_rows(cmd)
    if rows:
        lines += _table(FIELD_HEADER, rows)
    else:
        lines.append("No body.")
    lines.append("")
    if cmd.examples:
        for ex in cmd.examples:
            lines += _example(cmd, ex)
    return lines


# --- document-level sections -------------------------------------------------------------------

def _first(name: str, pred: Callable[[Command], bool] = lambda c: True) -> Command | None:
    return next((c for c in COMMANDS if c.name == name and pred(c)), None)


def _enum_of(cmd: Command | None, field_name: str) -> dict:
    if cmd is None:
        return {}
    for f in cmd.fields:
        nums = (f.high, f.low) if isinstance(f, Nibbles) else (f,)
        for n in nums:
            if isinstance(n, Num) and n.name == field_name and n.enum is not None:
                return dict(n.enum)
    return {}


def _variant(cmd: Command) -> bool:
    """True when the command has a same-key, same-name, same-direction entry in the other
    dialect (a per-dialect layout of one item)."""
    return len(cmd.dialects) == 1 and any(
        s.name == cmd.name and s.direction is cmd.direction and not s.dialects & cmd.dialects
        for s in _siblings(cmd))


def _intro() -> list[str]:
    firmware_only = [c for c in COMMANDS
                     if c.dialects == frozenset({Dialect.FIRMWARE}) and not _variant(c)]
    guide_only = [c for c in COMMANDS
                  if c.dialects == frozenset({Dialect.GUIDE}) and not _variant(c)]
    differ = list(dict.fromkeys(_spaced_key(c) for c in COMMANDS if _variant(c)))
    grouped = [c for c in COMMANDS if _grouped(c) is not None]
    lines = [
        "# CTH01 protocol reference",
        "",
        "> Generated by `cth01.protocol.docs` from the command table "
        "(`src/cth01/protocol/table.py`). Do not edit by hand: change the table and run "
        "`make docs`. Where the user guide and the firmware disagree, and what this codec "
        "chose, is in [errata.md](errata.md).",
        "",
        "## Contents",
        "",
        "- [Framing](#framing)",
        "- [Command index](#command-index)",
    ]
    lines += [f"- [{title}](#{sid})" for sid, title, _ in _SECTIONS]
    lines += [
        "",
        '<a id="framing"></a>',
        "",
        "## Framing",
        "",
        '<a id="payloads-and-items"></a>',
        "",
        "### Payloads and items",
        "",
        "A CTH01 payload is the LoRaWAN application payload on FPort 85 (uplink and downlink; "
        "configurable on the device). It has no header, no length and no checksum: it is a "
        "sequence of **items**, each one id byte followed by a body, up to the last byte.",
        "",
        "- All multi-byte numbers are **little-endian**; signed numbers are two's complement.",
        "- There is no per-item length: the body length follows from the id (and for some ids "
        "from the first body bytes: a sub-id, a phase mask, an alarm type or an explicit "
        "count). An unknown id therefore makes the rest of the payload unreadable, and the "
        "decoder stops with a `DecodeError` (byte offset, id, dialect, reason) instead of "
        "skipping.",
        "- Keys: where the first body byte selects the layout the key is id + sub-id "
        "(`c5 02`, `cf d8`, `61 01`). The guide also prints channel, mode and kind bytes "
        "glued to the id (`770N`, `ed01`, `4003`); on the wire those are ordinary body bytes.",
        "- Channels are presented **1-based** (channel 1–12, voltage phase L1–L3) although "
        "the wire counts from 0; current groups are a = channels 1–3, b = 4–6, c = 7–9, "
        "d = 10–12.",
        "- Timestamps are u32 Unix seconds, UTC; decoded JSON shows them as ISO 8601.",
        "- Measurements are presented in engineering units: °C, %, A, V, W/var/VA for power, "
        "Wh/varh/VAh for energy, power factor in %. Threshold settings use whole A, V and % "
        "(only the temperature threshold keeps the 0.01 °C step).",
        "- Strictness: truncated bodies, unknown ids and sub-ids, reserved bits, values "
        "outside an enum or a range, downlink ids in an uplink (and the reverse), duplicate "
        "measurement items in one frame or record are all errors. Measurement ranges (fields "
        f"marked {MEASURED}) can be downgraded to warnings with `decode(..., "
        "strict_ranges=False)`.",
        "",
        '<a id="dialects"></a>',
        "",
        "### Dialects and auto-detection",
        "",
        "The user guide's tables and the real firmware disagree on several layouts. The codec "
        "implements both as **dialects** of one table:",
        "",
        "- **firmware** — what real devices send (the vendor codec's layouts); the default "
        "for encoding.",
        "- **guide** — the user guide's tables as printed.",
        "",
        "`decode(payload)` (dialect `\"auto\"`) parses the whole payload under each dialect, "
        "never mixing them inside one payload. If only one parses, that is the answer; if "
        "both parse identically the result's dialect is `\"common\"`; if both parse with "
        "different meanings the firmware reading is returned with `ambiguous=True` and the "
        "guide reading in `alternative` (or a `DecodeError` with "
        "`on_ambiguity=\"error\"`); if neither parses, the error names both reasons.",
        "",
        "- Only in the firmware dialect: " + ", ".join(_link(c) for c in firmware_only) + ".",
        "- Only in the guide dialect: " + ", ".join(_link(c) for c in guide_only) + ".",
        "- Same item, a different layout per dialect: "
        + ", ".join(f"`{k}`" for k in differ)
        + "; and the grouped measurements " + ", ".join(f"`{c.key}`" for c in grouped)
        + ", whose firmware bodies depend on the phase mask (they read alike only when "
        "every group is single-phase).",
        "",
    ]
    lines += _history_intro()
    lines += _reply_intro()
    lines += _sentinel_intro()
    lines += [
        '<a id="field-tables"></a>',
        "",
        "### Reading the field tables",
        "",
        "- **Body** is the number of bytes after the id byte, a sub-id included.",
        "- **wire**: `u8`/`u16`/`u24`/`u32` unsigned, `s16`/`s32` signed, little-endian; "
        "`u4` is a nibble of a shared byte.",
        "- **count**: how many values of that type follow (arrays appear in JSON as lists).",
        "- **scale**: `÷100` means engineering value = raw ÷ 100; `+1` means the wire "
        "counts from 0 and the presented value from 1.",
        "- **range**: allowed engineering values, inclusive (`wire width` when no tighter "
        f"range is declared). {MEASURED} marks a measurement whose range check "
        "`strict_ranges=False` turns into a warning; every other range is always enforced "
        "when decoding and when encoding.",
        "- **values**: enum codes (raw = JSON value), or bit assignments.",
        "- **sentinel**: the raw value meaning \"no data / measurement error\"; it decodes "
        "to `null` and the field is listed in the item's `unavailable`.",
        "- **default**: the factory setting, where known.",
        "- **when**: the field is present only for these values of an earlier field "
        "(otherwise it is absent from the wire and `null` in JSON).",
        "",
    ]
    return lines


def _history_intro() -> list[str]:
    header = _first("history_header")
    kind = _first("monthly_kind")
    modes = _enum_of(header, "mode")
    kinds = _enum_of(kind, "kind")
    lines = [
        '<a id="history-records"></a>',
        "",
        "### History records",
        "",
        "Stored data is replayed as history records: an `ed` header (mode byte, u32 "
        "timestamp) followed by ordinary items. A record extends to the next `ed` or to the "
        "end of the payload; records do not nest and have no terminator. Items before the "
        "first `ed` are live data. A record must contain at least one item, may not contain "
        "downlink ids, and may not repeat a measurement id. A monthly record starts with a "
        "`40` kind item directly after its header; a record without `40` is a periodic "
        "snapshot. Decoded records appear in `Uplink.history` as `{mode, timestamp, kind, "
        "items}`.",
        "",
    ]
    if modes:
        lines += ["Header mode byte (reported as sent; never used to derive the record kind):",
                  ""]
        lines += _table(("raw", "mode"), [(_hex_raw(r, 1), _num(v)) for r, v in modes.items()])
        lines.append("")
    if kinds:
        lines += ["Monthly kind (`40`):", ""]
        lines += _table(("raw", "kind"), [(_hex_raw(r, 1), _num(v)) for r, v in kinds.items()])
        lines.append("")
    return lines


def _reply_intro() -> list[str]:
    replies = [c for c in COMMANDS if c.name == "command_reply"]
    if not replies:
        return []
    per = {d: {} for d in DIALECT_ORDER}
    for c in replies:
        for d in _dialects(c):
            per[d] = _enum_of(c, "result")
    codes = sorted({r for m in per.values() for r in m})
    lines = [
        '<a id="command-replies"></a>',
        "",
        "### Command replies (`ef`)",
        "",
        "A command that needs confirmation is answered with `ef | result << 4 | n | echo`: "
        "the high nibble is the result, the low nibble the number n (1–15) of echoed bytes, "
        "and the echo is the identifier of the acknowledged command (id plus sub-id or "
        "channel byte). An echo that names no known command is kept as hex with "
        "`command: null`. Several replies may share one uplink. Result codes per dialect "
        "(a code missing from a dialect is an error in that dialect):",
        "",
    ]
    rows = [[str(r)] + [_num(per[d][r]) if r in per[d] else "—" for d in DIALECT_ORDER]
            for r in codes]
    lines += _table(["code"] + [d.value for d in DIALECT_ORDER], rows)
    lines.append("")
    query = _first("config_query")
    if query is not None:
        lines += [f"In the firmware dialect `ef` is also a downlink, the configuration query "
                  f"({_link(query)}): `ef | n | identifier` asks the device to report one "
                  "configuration item, answered in the layout of the matching set command.",
                  ""]
    return lines


def _sentinel_intro() -> list[str]:
    groups: dict[tuple[str, int], dict[str, set[Dialect]]] = {}
    for c in COMMANDS:
        for f in c.fields:
            spec = f.value if isinstance(f, Grouped) else f
            if isinstance(spec, Num) and spec.sentinel is not None:
                entries = groups.setdefault((spec.wire, spec.sentinel), {})
                entries.setdefault(f"`{c.key}` {spec.name}", set()).update(c.dialects)

    def label(name: str, dialects: set[Dialect]) -> str:
        if len(dialects) == len(DIALECT_ORDER):
            return name
        return name + " (" + ", ".join(d.value for d in DIALECT_ORDER if d in dialects) + ")"
    no_sentinel = sorted({f"`{c.key}`" for c in COMMANDS if c.kind in ("measurement", "alarm")
                          for f in c.fields if isinstance(f, Num) and f.sentinel is None
                          and f.enum is None and f.name != "channel"})
    lines = [
        '<a id="sentinels"></a>',
        "",
        "### Sentinels (\"no data\")",
        "",
        "The firmware marks a value it could not measure with a reserved raw value. The codec "
        "maps it to `null` *before* range checks, in both dialects, and lists the field in "
        "the item's `unavailable` (`name`, `name[i]` for arrays, `name.g` / `name.g[i]` for "
        "groups). The encoder writes `None` as the sentinel and refuses a real value that "
        "would collide with it.",
        "",
    ]
    lines += _table(("wire", "raw sentinel", "fields"),
                    [(w, _sentinel(w, s).removesuffix(" → null"),
                      ", ".join(label(n, ds) for n, ds in names.items()))
                     for (w, s), names in groups.items()])
    lines += [
        "",
        "The s32 sentinel −1 collides with a genuine reading of −1 W / −1 var / −1 VA: such a "
        "reading decodes as unavailable and cannot be encoded. Items without a sentinel: "
        + ", ".join(no_sentinel) + " (temperature: every raw value is a number).",
        "",
    ]
    return lines


def _index() -> list[str]:
    lines = ['<a id="command-index"></a>', "", "## Command index", ""]
    rows = [(_link(c), c.title, c.direction.value, ", ".join(d.value for d in _dialects(c)),
             c.kind, body_length(c, short=True)) for c in COMMANDS]
    lines += _table(("key / name", "title", "direction", "dialects", "kind", "body bytes"),
                    rows)
    lines.append("")
    return lines


def _grouped_intro(cmds: list[Command]) -> list[str]:
    lines = [
        "Each of these items starts with a **phase mask** byte, one bit per current group it "
        "covers: 1 = the group is wired single-phase, 0 = three-phase; unused high bits must "
        "be 0. (The current-interface settings `67`–`6a` use the opposite polarity: 0 = "
        "single-phase.)",
        "",
        "- **firmware** dialect: a single-phase group carries three values (its channels in "
        "order), a three-phase group **one** value for the whole circuit; the mask therefore "
        "decides the body length.",
        "- **guide** dialect: always three values per group; the mask only tells the wiring.",
        "",
        "In JSON every group is `{group, phase: \"single\" | \"three\", channels, total}`: "
        "`channels` holds the three values (single-phase, and every group in the guide "
        "dialect), `total` the one three-phase value of the firmware dialect. Both dialects "
        "read a frame alike only when every covered group is single-phase.",
        "",
    ]
    rows = []
    for c in cmds:
        g = _grouped(c)
        assert g is not None
        groups = ", ".join(f"bit {i} {name} (ch {3 * (ord(name) - 97) + 1}–"
                           f"{3 * (ord(name) - 97) + 3})" for i, name in enumerate(g.groups))
        fw = ", ".join(str(n) for n in _grouped_lengths(g, True)) \
            if Dialect.FIRMWARE in c.dialects else "—"
        gd = ", ".join(str(n) for n in _grouped_lengths(g, False)) \
            if Dialect.GUIDE in c.dialects else "—"
        rows.append((_link(c), groups, f"{g.wire} {g.unit}".strip(), fw, gd))
    lines += _table(("item", "mask bits", "value", "firmware body", "guide body"), rows)
    lines.append("")
    return lines


def _alarm_intro(cmds: list[Command]) -> list[str]:
    names: dict[int, Any] = {}
    for c in cmds:
        for raw, name in _enum_of(c, "alarm").items():
            names.setdefault(raw, name)
    ids = sorted({c.id for c in cmds if _enum_of(c, "alarm")})

    def cell(cid: int, code: int) -> str:
        marks = []
        for d in DIALECT_ORDER:
            cmd = next((c for c in cmds if c.id == cid and d in c.dialects), None)
            enum = _enum_of(cmd, "alarm")
            if cmd is None or code not in enum:
                marks.append("–")
                continue
            value = next((f for f in cmd.fields if isinstance(f, Num) and f.name != "alarm"
                          and f.name != "channel"), None)
            has = value is not None and (value.when is None or code in value.when[1])
            marks.append("V" if has else "N")
        return " / ".join(marks)

    lines = [
        "Alarm items carry an alarm-type byte (after the channel, where there is one). In the "
        "**firmware** dialect the measured value follows only for value-bearing types, so "
        "the type decides the body length; in the **guide** dialect the value is always "
        "present. Several alarms may share one uplink, and all are kept in order. Which types "
        "each item accepts (`firmware / guide`; `V` = accepted, a value follows; `N` = "
        "accepted, no value follows; `–` = not accepted):",
        "",
    ]
    header = ["code", "type"] + [f"`{cid:02x}`" for cid in ids]
    rows = [[f"0x{code:02x}", _num(name)] + [cell(cid, code) for cid in ids]
            for code, name in sorted(names.items())]
    lines += _table(header, rows)
    lines.append("")
    return lines


def _section_intro(sid: str, cmds: list[Command]) -> list[str]:
    if sid == "grouped-measurements":
        return _grouped_intro(cmds)
    if sid == "alarms":
        return _alarm_intro(cmds)
    if sid == "configuration":
        return ["Configuration items are set by downlink and come back, in the same layout, "
                "in uplink answers to configuration queries. Thresholds (`76`–`7b`) use whole "
                "amperes, volts and percent, unlike the 0.01-step measurements; the "
                "temperature threshold keeps 0.01 °C.", ""]
    if sid == "actions-and-queries":
        return ["Downlink-only commands. They are errors inside an uplink.", ""]
    if sid == "history":
        return ["See [History records](#history-records) for the record structure.", ""]
    return []


def render_protocol_markdown() -> str:
    """The complete protocol reference (`docs/protocol.md`) as Markdown text."""
    lines = _intro()
    lines += _index()
    placed: set[int] = set()
    sections: list[tuple[str, str, list[Command]]] = []
    for sid, title, pred in _SECTIONS:
        cmds = [c for c in COMMANDS if id(c) not in placed and pred(c)]
        placed.update(id(c) for c in cmds)
        sections.append((sid, title, cmds))
    rest = [c for c in COMMANDS if id(c) not in placed]
    if rest:  # a new kind must not vanish from the reference
        sections.append(("other", "Other commands", rest))
    for sid, title, cmds in sections:
        lines += [f'<a id="{sid}"></a>', "", f"## {title}", ""]
        lines += _section_intro(sid, cmds)
        for cmd in cmds:
            lines += _command_section(cmd)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def write_protocol_markdown(path: str | Path) -> bool:
    """Write the rendered reference to `path`; returns True when the file changed."""
    path = Path(path)
    text = render_protocol_markdown()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return True


if __name__ == "__main__":  # pragma: no cover - `python -m cth01.protocol.docs [path]`
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/protocol.md")
    print(f"{target}: {'written' if write_protocol_markdown(target) else 'up to date'}")
