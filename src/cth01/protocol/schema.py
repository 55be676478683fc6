"""The vocabulary of the command table: what a command and a field are.

Owns: the small set of field kinds the CTH01 wire format needs (numbers, bit flags, nibble
pairs, text, hex strings, grouped per-phase values, a reply echo) and the `Command` record.
It describes; it never reads or writes bytes — `_compile` turns these descriptions into
decoders and encoders, `docs` into the protocol reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Dialect(StrEnum):
    FIRMWARE = "firmware"  # what real devices send (the vendor codec's layouts)
    GUIDE = "guide"  # the user guide's tables as printed


class Direction(StrEnum):
    UPLINK = "uplink"
    DOWNLINK = "downlink"
    BOTH = "both"  # configuration items: set by downlink, reported back in query answers


BOTH_DIALECTS = frozenset({Dialect.FIRMWARE, Dialect.GUIDE})
FIRMWARE_ONLY = frozenset({Dialect.FIRMWARE})
GUIDE_ONLY = frozenset({Dialect.GUIDE})

# wire type -> (struct code(s), size in bytes, signed, minimum, maximum)
WIRE: dict[str, tuple[str, int, int, int]] = {
    "u8": ("B", 1, 0, 0xFF),
    "u16": ("H", 2, 0, 0xFFFF),
    "u24": ("HB", 3, 0, 0xFFFFFF),
    "u32": ("I", 4, 0, 0xFFFFFFFF),
    "s16": ("h", 2, -0x8000, 0x7FFF),
    "s32": ("i", 4, -0x80000000, 0x7FFFFFFF),
}


@dataclass(frozen=True, slots=True)
class Num:
    """An integer on the wire, presented as int, float (raw / scale), enum name, bool or time.

    `range` is in engineering units (after scale and base) and inclusive; `accepts`, where set,
    is the wider range the decoder tolerates (values other tools may have configured) while the
    encoder keeps to `range`. `sentinel` is the raw
    value meaning "no data / measurement error": it decodes to None and is reported in the
    item's `unavailable` list. `when=(field, raw_values)` makes the field present only when
    an earlier field's raw value is one of raw_values (alarm values). `measured=True` marks a
    measurement whose range check a caller may downgrade to a warning. `choices` restricts the
    raw value to a set. `time=True` presents a u32 as a UTC datetime.
    """

    name: str
    wire: str
    count: int = 1
    scale: int = 1
    base: int = 0
    unit: str = ""
    range: tuple[float, float] | None = None
    accepts: tuple[float, float] | None = None
    enum: Mapping[int, Any] | None = None
    choices: frozenset[int] | None = None
    sentinel: int | None = None
    default: Any = None
    when: tuple[str, frozenset[int]] | None = None
    measured: bool = False
    time: bool = False
    doc: str = ""

    @property
    def size(self) -> int:
        return WIRE[self.wire][1] * self.count

    def engineering(self, raw: int) -> int | float:
        """The presented number of a raw integer (scale and base applied)."""
        return (raw / self.scale if self.scale != 1 else raw) + self.base

    def allowed_range(self, *, decoding: bool = False) -> str:
        """Allowed values in engineering units, e.g. "1..1440 min" or "one of -720, ..."."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in sorted(self.choices))
        lo, hi = (f"{v:g}" if isinstance(v, float) else str(v)
                  for v in map(self.engineering, self.raw_bounds(decoding=decoding)))
        return f"{lo}..{hi}{' ' + self.unit if self.unit else ''}"

    def raw_bounds(self, *, decoding: bool = False) -> tuple[int, int]:
        """Inclusive bounds of the raw integer: the range (or, decoding, the accepted range)
        mapped to raw and clipped to the width."""
        _, _, lo, hi = WIRE[self.wire]
        rng = self.accepts if decoding and self.accepts is not None else self.range
        if rng is not None:
            lo = max(lo, round((rng[0] - self.base) * self.scale))
            hi = min(hi, round((rng[1] - self.base) * self.scale))
        return lo, hi


@dataclass(frozen=True, slots=True)
class Flags:
    """A bit mask presented as the tuple of names of the bits that are set; bits named None
    are reserved and must be zero."""

    name: str
    wire: str
    bits: tuple[str | None, ...]
    default: tuple[str, ...] = ()
    doc: str = ""

    @property
    def size(self) -> int:
        return WIRE[self.wire][1]


@dataclass(frozen=True, slots=True)
class Nibbles:
    """One byte holding two 4-bit numbers: `high` in bits 7-4, `low` in bits 3-0."""

    high: Num
    low: Num

    size = 1


@dataclass(frozen=True, slots=True)
class Text:
    """Text, either in a fixed NUL-padded field (`size`) or preceded by a u8 length
    (`max_length`, counted form)."""

    name: str
    size: int | None = None
    max_length: int | None = None
    ascii_only: bool = False
    default: str | None = None
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Hex:
    """Bytes presented as a lower-case hex string (serial numbers, OEM id)."""

    name: str
    size: int
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Grouped:
    """Per-group values after a phase mask byte (ids 07-17).

    One mask bit per covered group, 1 = single-phase, 0 = three-phase; unused bits must be 0.
    Firmware dialect: a single-phase group carries three per-channel values, a three-phase
    group one value for the whole group. Guide dialect: always three values per group, the
    mask only tells the wiring.
    """

    name: str
    wire: str
    groups: tuple[str, ...]
    scale: int = 1
    unit: str = ""
    range: tuple[float, float] | None = None
    sentinel: int | None = None
    measured: bool = True
    doc: str = ""

    @property
    def value(self) -> Num:
        return Num(self.name, self.wire, scale=self.scale, unit=self.unit, range=self.range,
                   sentinel=self.sentinel, measured=self.measured)


@dataclass(frozen=True, slots=True)
class Echo:
    """The identifier echoed by a command reply or named by a configuration query; its length
    is the `low` nibble of the preceding `Nibbles` field named `length_field`."""

    name: str
    length_field: str
    doc: str = ""


FieldSpec = Num | Flags | Nibbles | Text | Hex | Grouped | Echo


def fixed_size(spec: FieldSpec) -> int | None:
    """Bytes a field always takes, or None when its length depends on the frame (conditional
    values, counted text, reply echoes, mask-dependent groups)."""
    if isinstance(spec, Num):
        return spec.size if spec.when is None else None
    if isinstance(spec, Flags | Nibbles | Hex):
        return spec.size
    if isinstance(spec, Text):
        return spec.size
    return None


def field_names(spec: FieldSpec) -> tuple[str, ...]:
    """Names a field contributes to its item (a nibble pair contributes two)."""
    if isinstance(spec, Nibbles):
        return (spec.high.name, spec.low.name)
    return (spec.name,)


@dataclass(frozen=True)
class Command:
    """One command id (and, where the first body byte selects the layout, one sub-id).

    `name` is the item's type name in decoded output and in the encoder. `unique` marks items
    that may appear at most once per frame or history record (measurements, device info).
    """

    id: int
    name: str
    title: str
    direction: Direction
    fields: tuple[FieldSpec, ...] = ()
    sub: int | None = None
    dialects: frozenset[Dialect] = BOTH_DIALECTS
    kind: str = "config"
    unique: bool = False
    reply: str = ""
    doc: str = ""
    examples: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """Wire identifier as hex, the sub-id included: "61", "c502"."""
        return f"{self.id:02x}" if self.sub is None else f"{self.id:02x}{self.sub:02x}"

    @property
    def names(self) -> tuple[str, ...]:
        """Field names of the item, in wire order, the reply length nibble excluded."""
        hidden = {f.length_field for f in self.fields if isinstance(f, Echo)}
        return tuple(n for f in self.fields for n in field_names(f) if n not in hidden)

    def is_uplink(self) -> bool:
        return self.direction is not Direction.DOWNLINK

    def is_downlink(self) -> bool:
        return self.direction is not Direction.UPLINK
