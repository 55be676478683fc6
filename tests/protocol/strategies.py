"""Hypothesis strategies derived from the command table: any valid item of any command, in
either dialect and direction, and whole valid uplink frames. Nothing here restates the wire
format; ranges, enums and layouts all come from `cth01.protocol.table`."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from cth01.protocol import GroupReading, HistoryRecord, Item
from cth01.protocol._compile import echo_command
from cth01.protocol.codec import compiled_commands
from cth01.protocol.schema import (
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
from cth01.protocol.table import HISTORY_MODES, MONTHLY_KINDS


def num_values(f: Num) -> st.SearchStrategy:
    if f.enum is not None:
        return st.sampled_from(list(f.enum.values()))
    if f.choices is not None:
        return st.sampled_from(sorted(f.choices))
    lo, hi = f.raw_bounds()
    raws = st.integers(lo, hi)
    if f.sentinel is not None:
        raws = raws.filter(lambda r: r != f.sentinel)
    if f.time:
        return raws.map(lambda r: datetime.fromtimestamp(r, UTC))
    values = raws.map(lambda r: (r / f.scale if f.scale != 1 else r) + f.base)
    if f.sentinel is not None:
        values = st.one_of(st.just(None), values)
    return values


def _array(f: Num) -> st.SearchStrategy:
    one = num_values(f)
    return st.tuples(*[one] * f.count) if f.count > 1 else one


def _groups(f: Grouped, dialect: Dialect) -> st.SearchStrategy:
    value = num_values(f.value)

    def reading(group: str) -> st.SearchStrategy:
        single = st.tuples(value, value, value).map(
            lambda c: GroupReading(group=group, phase="single", channels=c))
        if dialect is Dialect.GUIDE:
            three = st.tuples(value, value, value).map(
                lambda c: GroupReading(group=group, phase="three", channels=c))
        else:
            three = value.map(lambda v: GroupReading(group=group, phase="three", total=v))
        return single | three

    return st.tuples(*[reading(g) for g in f.groups])


_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@st.composite
def item_of(draw: st.DrawFn, cmd: Command, dialect: Dialect, cls: type[Item]) -> Item:
    values: dict[str, object] = {}
    raw_alarm: int | None = None
    for f in cmd.fields:
        if isinstance(f, Num):
            if f.when is not None:
                values[f.name] = draw(_array(f)) if raw_alarm in f.when[1] else None
                continue
            values[f.name] = v = draw(_array(f))
            if f.name == "alarm":
                raw_alarm = next(k for k, n in f.enum.items() if n == v)
        elif isinstance(f, Nibbles):
            for n in (f.high, f.low):
                if n.name != "length":
                    values[n.name] = draw(num_values(n))
        elif isinstance(f, Flags):
            names = [b for b in f.bits if b]
            chosen = draw(st.sets(st.sampled_from(names)))
            values[f.name] = tuple(b for b in names if b in chosen)
        elif isinstance(f, Text):
            size = f.size or f.max_length or 1
            alphabet = _PRINTABLE if f.ascii_only else st.characters(
                blacklist_categories=("Cs",), blacklist_characters="\0")
            text = draw(st.text(alphabet, min_size=0 if f.size else 1, max_size=size).filter(
                lambda s, size=size: len(s.encode()) <= size))
            values[f.name] = text
        elif isinstance(f, Hex):
            values[f.name] = draw(st.binary(min_size=f.size, max_size=f.size)).hex()
        elif isinstance(f, Echo):
            echo = draw(st.binary(min_size=1, max_size=15))
            values[f.name] = echo.hex()
            values["command"] = echo_command(echo)
        elif isinstance(f, Grouped):
            values[f.name] = draw(_groups(f, dialect))
    return cls(**values)


def commands_of(dialect: Dialect, uplink: bool) -> list:
    return sorted(compiled_commands(dialect, uplink).values(), key=lambda c: c.command.key)


def items(dialect: Dialect, uplink: bool, *, exclude: frozenset[str] = frozenset()
          ) -> st.SearchStrategy:
    return st.one_of([item_of(c.command, dialect, c.cls) for c in commands_of(dialect, uplink)
                      if c.command.name not in exclude])


_STRUCTURAL = frozenset({"history_header", "monthly_kind"})


def _unique_items(dialect: Dialect, max_size: int) -> st.SearchStrategy:
    """Item lists an uplink may carry: each 'unique' command at most once."""
    unique = {c.command.name for c in commands_of(dialect, True) if c.command.unique}
    return st.lists(items(dialect, True, exclude=_STRUCTURAL), max_size=max_size).map(
        lambda xs: _dedupe(xs, unique))


def _dedupe(xs: list[Item], unique: set[str]) -> tuple[Item, ...]:
    seen: set[str] = set()
    out = []
    for x in xs:
        if x.command_name in unique:
            if x.command_name in seen:
                continue
            seen.add(x.command_name)
        out.append(x)
    return tuple(out)


@st.composite
def uplinks(draw: st.DrawFn, dialect: Dialect
            ) -> tuple[tuple[Item, ...], tuple[HistoryRecord, ...]]:
    live = draw(_unique_items(dialect, 6))
    records = []
    for _ in range(draw(st.integers(0, 3))):
        body = draw(_unique_items(dialect, 4).filter(bool))
        records.append(HistoryRecord(
            mode=draw(st.sampled_from(list(HISTORY_MODES.values()))),
            timestamp=datetime.fromtimestamp(draw(st.integers(0, WIRE["u32"][3])), UTC),
            kind=draw(st.one_of(st.none(), st.sampled_from(list(MONTHLY_KINDS.values())))),
            items=body))
    if not live and not records:
        live = (draw(items(dialect, True, exclude=_STRUCTURAL)),)
    return live, tuple(records)
