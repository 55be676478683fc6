"""The `cth01` command line: decode payloads, encode downlinks, list the table, write the docs.

Owns: turning text (hex, base64, options) into codec calls and codec results into JSON or
readable tables. The `encode` sub-commands are generated from the command table — one per
downlink, options derived from the fields (enums as choices, booleans as --x/--no-x, times as
ISO 8601 or Unix seconds, bit flags as a repeatable option) — so a new table entry is a new
sub-command with no change here. Expected failures (bad input, `DecodeError`, `EncodeError`)
print one `error: ...` line on stderr and exit 2.
"""

import base64
import binascii
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import msgspec
import typer

from . import __version__
from .protocol import (
    COMMANDS,
    Command,
    Dialect,
    Item,
    ProtocolError,
    Uplink,
    decode,
    decode_downlink,
    encode_downlink,
    item_class,
)
from .protocol.codec import compiled_commands
from .protocol.model import camel_case
from .protocol.schema import Echo, Flags, Grouped, Hex, Nibbles, Num, Text

app = typer.Typer(
    name="cth01", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="Milesight CTH01 power meter: decode uplinks, encode downlinks, meter waveforms, "
         "simulate devices and fleets.",
)
encode_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich",
    help="Encode one downlink command (one sub-command per downlink of the command table).",
)
app.add_typer(encode_app, name="encode")

EXIT_ERROR = 2


class InputError(ValueError):
    """Text that is not a payload (bad hex, odd number of hex digits, bad base64)."""


def fail(message: object) -> NoReturn:
    """One clear line on stderr, exit code 2 — never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


# --- payload text and JSON ---------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]+")


def parse_payload(text: str) -> bytes:
    """Hex (spaces allowed, any case) or strict base64. An even number of hex digits is hex."""
    s = "".join(text.split())
    if s[:2].lower() == "0x" and _HEX.fullmatch(s[2:]):
        s = s[2:]
    if not s:
        raise InputError("empty payload")
    is_hex = _HEX.fullmatch(s) is not None
    if is_hex and len(s) % 2 == 0:
        return bytes.fromhex(s)
    try:
        data = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if data:
        return data
    if is_hex:
        raise InputError(f"odd number of hex digits ({len(s)}): a digit is missing or extra, "
                         "the payload is not a byte string")
    raise InputError(f"not a hex or base64 payload: {_short(s)!r}")


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[:n] + "..."


def _enc_hook(obj: object) -> object:
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).hex()
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    return str(obj)


def to_json(obj: object, *, pretty: bool = False) -> str:
    data = msgspec.json.encode(obj, enc_hook=_enc_hook)
    if pretty:
        data = msgspec.json.format(data, indent=2)
    return data.decode()


# --- decode ------------------------------------------------------------------------------------

DialectOpt = Literal["auto", "firmware", "guide"]
FormatOpt = Literal["native", "milesight"]


def _decoder(dialect: str, fmt: str, downlink: bool, lenient: bool) -> Callable[[bytes], Any]:
    if downlink:
        if fmt == "milesight":
            fail("--format milesight is a view of uplinks; use --format native with --downlink")
        return lambda p: [i.to_dict() for i in decode_downlink(p, dialect=dialect)]
    if fmt == "milesight":
        try:
            from . import milesight
        except ImportError as exc:
            fail(f"the milesight view is not available ({exc})")
        return milesight.decode
    return lambda p: decode(p, dialect=dialect, strict_ranges=not lenient).to_dict()


def _lines(stream: Any) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            yield n, line


@app.command("decode")
def decode_cmd(
    payload: Annotated[str | None, typer.Argument(
        metavar="[HEX|BASE64|-]",
        help="Payload as hex (spaces allowed) or base64; '-' or nothing reads stdin, "
             "one frame per line, and prints JSON Lines.")] = None,
    dialect: Annotated[DialectOpt, typer.Option(
        help="firmware = real devices, guide = the user guide's tables, auto = whichever "
             "parses exactly.")] = "auto",
    fmt: Annotated[FormatOpt, typer.Option(
        "--format", help="native = the codec's items; milesight = the vendor decoder's JSON "
                         "(--dialect/--lenient apply to native).")] = "native",
    downlink: Annotated[bool, typer.Option(
        "--downlink", help="Decode a downlink (server -> device) into its commands.")] = False,
    lenient: Annotated[bool, typer.Option(
        "--lenient", help="Report out-of-range measurements as warnings instead of failing.")
    ] = False,
    pretty: Annotated[bool, typer.Option("--pretty", help="Indented JSON (single frame).")
    ] = False,
) -> None:
    """Decode an uplink (or with --downlink a downlink) payload to JSON."""
    run = _decoder(dialect, fmt, downlink, lenient)
    if payload is not None and payload != "-":
        try:
            result = run(parse_payload(payload))
        except ValueError as exc:  # InputError, DecodeError, and the milesight view's errors
            fail(exc)
        typer.echo(to_json(result, pretty=pretty))
        return
    if payload is None and sys.stdin.isatty():
        fail("no payload: pass HEX or BASE64, or pipe frames (one per line) on stdin")
    failed = 0
    for n, line in _lines(sys.stdin):
        try:
            result = run(parse_payload(line))
        except ValueError as exc:
            failed += 1
            typer.echo(f"error: line {n}: {exc}", err=True)
            continue
        typer.echo(to_json(result))
    if failed:
        raise typer.Exit(EXIT_ERROR)


# --- encode: one sub-command per downlink, generated from the table ---------------------------

@cache
def downlink_commands() -> dict[str, tuple[Command, tuple[Dialect, ...]]]:
    """Every downlink by name: its table entry (firmware's where both have it) and dialects."""
    out: dict[str, tuple[Command, tuple[Dialect, ...]]] = {}
    for d in (Dialect.FIRMWARE, Dialect.GUIDE):
        for name, compiled in compiled_commands(d, uplink=False).items():
            cmd, ds = out.get(name, (compiled.command, ()))
            out[name] = (cmd, (*ds, d))
    return out


def _fields(cmd: Command) -> list[Num | Flags | Text | Hex | Echo]:
    """The fields a caller sets, in wire order (nibble pairs split, reply length hidden)."""
    visible = set(cmd.names)
    out: list = []
    for f in cmd.fields:
        if isinstance(f, Nibbles):
            out += [n for n in (f.high, f.low) if n.name in visible]
        elif isinstance(f, Grouped):
            raise TypeError(f"{cmd.name}: grouped fields have no command-line form")
        elif f.name in visible:
            out.append(f)
    return out


def _fmt_num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_time(text: str) -> datetime:
    """ISO 8601 (a missing offset means UTC) or Unix seconds."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d+", text):
            return datetime.fromtimestamp(int(text), UTC)
        t = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError) as exc:
        raise typer.BadParameter(f"{text!r} is neither ISO 8601 nor Unix seconds") from exc
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _option(f: Num | Flags | Text | Hex | Echo) -> tuple[Any, Any, Callable[[Any], Any]]:
    """(annotation, default, converter to the item's value) of one field."""
    flag = "--" + f.name.replace("_", "-")
    doc = f.doc or f.name.replace("_", " ")
    doc = doc[:1].upper() + doc[1:]
    default = getattr(f, "default", None)
    ident: Callable[[Any], Any] = lambda v: v  # noqa: E731
    if isinstance(f, Flags):
        # typer takes no list[Literal[...]]: the choices become a (generated) enum
        names = [b for b in f.bits if b]
        choices = StrEnum(camel_case(f.name), {b: b for b in names})  # type: ignore[misc]
        opt = typer.Option(flag, help=f"{doc}: bit flags, repeat the option for each of "
                           f"{', '.join(names)}.", case_sensitive=False, metavar="NAME",
                           show_choices=False)
        return (Annotated[list[choices], opt], [choices(b) for b in f.default],  # type: ignore[valid-type]
                lambda v: tuple(x.value for x in v))
    if isinstance(f, Text):
        limit = f.size or f.max_length
        kind = "ASCII" if f.ascii_only else "UTF-8"
        opt = typer.Option(flag, help=f"{doc}. Text, 1-{limit} {kind} bytes.")
        return Annotated[str, opt], default, ident
    if isinstance(f, Hex | Echo):
        size = f"{f.size} bytes" if isinstance(f, Hex) else "1-15 bytes"
        return Annotated[str, typer.Option(flag, help=f"{doc}. Hex, {size}.")], None, ident
    unit = f". Unit: {f.unit}" if f.unit and not f.time else ""
    if f.time:
        opt = typer.Option(flag, help=f"{doc}. ISO 8601 (no offset = UTC) or Unix seconds.",
                           parser=parse_time, metavar="TIME")
        return Annotated[datetime, opt], default, ident
    if f.enum is not None:
        values = tuple(f.enum.values())
        if set(values) <= {True, False}:
            opt = typer.Option(f"{flag}/--no-{flag[2:]}", help=f"{doc}.")
            return Annotated[bool, opt], None if default is None else bool(default), ident
        opt = typer.Option(flag, help=f"{doc}{unit}.", case_sensitive=False)
        return Annotated[Literal[values], opt], default, ident  # type: ignore[valid-type]
    kind = float if f.scale != 1 else int
    opt = typer.Option(flag, help=f"{doc}{unit}. Range: {f.allowed_range()}.")
    if f.count > 1:
        return Annotated[list[kind], opt], None, tuple  # type: ignore[valid-type]
    return Annotated[kind, opt], default, ident


def build_item(name: str, values: dict[str, Any]) -> Item:
    return item_class(name)(**values)


def _encode_output(item: Item, dialect: str, as_json: bool) -> None:
    try:
        data = encode_downlink(item, dialect=dialect)  # type: ignore[arg-type]
    except ProtocolError as exc:
        fail(exc)
    b64 = base64.b64encode(data).decode()
    if as_json:
        typer.echo(to_json({"command": item.command_name, "dialect": dialect,
                            "item": item.to_dict(), "hex": data.hex(), "base64": b64}))
    else:
        typer.echo(f"hex: {data.hex()}\nbase64: {b64}")


def _make_encoder(cmd: Command, dialects: tuple[Dialect, ...]) -> Callable[..., None]:
    fields = _fields(cmd)
    params, notes, convert = [], [], {}
    for f in fields:
        annotation, default, conv = _option(f)
        convert[f.name] = conv
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
            default=inspect.Parameter.empty if default is None else default))
    names = tuple(d.value for d in dialects)
    params.append(inspect.Parameter(
        "dialect_", inspect.Parameter.KEYWORD_ONLY, default=names[0],
        annotation=Annotated[Literal[names], typer.Option(  # type: ignore[valid-type]
            "--dialect", help="Dialect to encode for.")]))
    params.append(inspect.Parameter(
        "as_json", inspect.Parameter.KEYWORD_ONLY, default=False,
        annotation=Annotated[bool, typer.Option("--json", help="Print JSON.")]))

    def run(**kwargs: Any) -> None:
        dialect, as_json = kwargs.pop("dialect_"), kwargs.pop("as_json")
        values = {k: convert[k](v) for k, v in kwargs.items()}
        _encode_output(build_item(cmd.name, values), dialect, as_json)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    run.__name__ = cmd.name
    if cmd.doc:
        notes.append(cmd.doc)
    if cmd.reply:
        notes.append(f"Device reply: {cmd.reply}.")
    run.__doc__ = (f"{cmd.title}.\n\nWire key {cmd.key} ({cmd.kind}; dialects: "
                   f"{', '.join(names)}). {' '.join(notes)}")
    return run


def cli_name(name: str) -> str:
    return name.replace("_", "-")


for _name, (_cmd, _dialects) in downlink_commands().items():
    encode_app.command(cli_name(_name), short_help=_cmd.title)(_make_encoder(_cmd, _dialects))


def encode_argv(name: str, values: dict[str, Any], dialect: str = "firmware") -> list[str]:
    """The `cth01 encode ...` arguments that build this item (used by the demo)."""
    argv = ["encode", cli_name(name)]
    for key, v in values.items():
        flag = "--" + cli_name(key)
        if isinstance(v, bool):
            argv.append(flag if v else f"--no-{flag[2:]}")
        elif isinstance(v, tuple | list):
            for x in v:
                argv += [flag, str(x)]
        else:
            argv += [flag, v.isoformat() if isinstance(v, datetime) else str(v)]
    _, dialects = downlink_commands()[name]
    if dialect != dialects[0].value:
        argv += ["--dialect", dialect]
    return argv


# --- commands, docs ----------------------------------------------------------------------------

def _key(cmd: Command) -> str:
    return f"{cmd.id:02x}" if cmd.sub is None else f"{cmd.id:02x} {cmd.sub:02x}"


def command_rows() -> list[dict[str, Any]]:
    rows = []
    for c in COMMANDS:
        rows.append({
            "key": c.key, "id": c.id, "sub": c.sub, "name": c.name,
            "direction": c.direction.value,
            "dialects": sorted(d.value for d in c.dialects), "kind": c.kind, "title": c.title,
            "fields": list(c.names), "reply": c.reply or None, "examples": list(c.examples),
            "cli": f"encode {cli_name(c.name)}" if c.is_downlink() else None,
        })
    return rows


@app.command("commands")
def commands_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every command of the table."""
    rows = command_rows()
    if as_json:
        typer.echo(to_json(rows, pretty=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"CTH01 command table ({len(rows)} entries)")
    for col in ("key", "name", "direction", "dialects", "kind", "title"):
        table.add_column(col, no_wrap=col in ("key", "name"))
    for r, c in zip(rows, COMMANDS, strict=True):
        table.add_row(_key(c), r["name"], r["direction"], ", ".join(r["dialects"]), r["kind"],
                      r["title"])
    Console().print(table)


@app.command("docs")
def docs_cmd(
    write: Annotated[bool, typer.Option("--write", help="Write the file instead of printing.")
    ] = False,
    path: Annotated[Path, typer.Option(help="Target of --write.")] = Path("docs/protocol.md"),
) -> None:
    """Print (or --write) the protocol reference generated from the command table."""
    try:
        from .protocol import docs
    except ImportError as exc:
        fail(f"the docs generator is not available ({exc})")
    if write:
        changed = docs.write_protocol_markdown(path)
        typer.echo(f"wrote {path}" if changed is not False else f"{path} is up to date")
    else:
        typer.echo(docs.render_protocol_markdown(), nl=False)


@app.command("meter")
def meter_cmd(
    capture: Annotated[Path, typer.Argument(
        help="A .npz (voltage (3,N) V, current (12,N) A, sample_rate), a 15-channel .wav "
             "(V1-V3, I1-I12; scale factors in the config) or a .csv.")],
    config: Annotated[Path | None, typer.Option(
        "--config", help="Interfaces JSON (MeterConfig.to_dict(), plus optional 'scales', "
                         "'sample_rate_hz', 'nominal_frequency_hz'). Default: 3P4W, all "
                         "groups single-phase, 100 A CTs, forward.")] = None,
    fmt: Annotated[Literal["table", "json"], typer.Option(
        "--format", help="table (summary) or json (one object a second).")] = "table",
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write a PNG of voltage, current, power and energy over time.")] = None,
) -> None:
    """Meter a recorded or generated capture: what a CTH01 would report, second by second."""
    from . import cli_meter

    try:
        _, reports = cli_meter.meter_capture(capture, config)
    except cli_meter.MeterInputError as exc:
        fail(exc)
    docs = [r.to_dict() for r in reports]
    if fmt == "json":
        typer.echo(cli_meter.reports_json(docs))
    else:
        from rich.console import Console

        Console().print(cli_meter.reports_table(docs))
    if plot is not None:
        cli_meter.plot_reports(docs, plot, f"cth01 meter {capture.name}")
        typer.echo(f"plot written to {plot}", err=fmt == "json")


@app.command("generate-capture")
def generate_capture_cmd(
    out: Annotated[Path, typer.Argument(help="The .npz file to write.")],
    profile: Annotated[str, typer.Option(
        "--profile", help="A generator profile: sine, office, data-centre, workshop, pv-site, "
                          "apartment, plant-3p3w.")] = "office",
    seconds: Annotated[int, typer.Option("--seconds", min=1, max=3600)] = 60,
    sample_rate_hz: Annotated[float, typer.Option("--sample-rate")] = 8000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write a capture from the signal generator, so `cth01 meter` works out of the box."""
    from . import cli_meter

    try:
        capture = cli_meter.write_generated(profile, seconds, out, sample_rate_hz, seed)
    except cli_meter.MeterInputError as exc:
        fail(exc)
    typer.echo(f"wrote {out}: profile {profile}, {capture.seconds:g} s at "
               f"{capture.sample_rate_hz:g} Hz")


@app.command("examples")
def examples_cmd() -> None:
    """Decode and explain the user guide's example frames, then encode a few commands."""
    from rich.console import Console

    run_demo(Console())


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cth01 {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Codec for the Milesight CTH01 LoRaWAN power meter."""


# --- demo: the guide's examples, explained -----------------------------------------------------

GUIDE_UPLINKS: tuple[tuple[str, str, str], ...] = (
    ("D1 basic information",
     "df0100eedb6527f41809380000da0100010100000000d90000c801cf0002",
     "Sent after power-on or reset: identifies the meter (serial, hardware/firmware, "
     "LoRaWAN class). Only the guide layout parses (firmware devices send cf d8...)."),
    ("D2 protocol version", "df0102", "The TSL (protocol) version, here 1.2."),
    ("D3 periodic report (one digit restored)",
     "019d0a0229260c0008020000df0300008f000000a1000000b80000007e0000000d0083050000b7430100"
     "09010000cf010000450100002c000000",
     "A periodic report: wire temperature, voltage unbalance and apparent power per channel "
     "(VA, not W as printed). Guide layout: three values per group even when the mask says "
     "three-phase; a real device would send one total per three-phase group."),
    ("D3 as printed in the guide",
     "019d0a 022926 0c000802000df0300008f000000a1000000b80000007e000000 "
     "0d0083050000b743010009010000cf010000450100002c000000",
     "The guide drops one digit: such text is not a byte string and is refused, not guessed."),
    ("D4 monthly maximum records",
     "ed0100277e69 4003 01 2e0b ed0100277e69 4003 02 1027 ed0100277e69 4003 03 "
     "d40e04057d23ff11081d46177c268309c4174916370e310a ed0100277e69 4003 04 000000000000 "
     "ed0100277e69 4003 06 5aa8fc81d331",
     "Stored monthly maxima replayed from the meter's memory (one record per item). Note "
     "the voltages 332.76 V / 127.55 V: the guide's 33.276 / 12.755 are typos."),
    ("D5 power failure", "36",
     "The 12 V supply collapsed: the meter sends this twice before it goes dark."),
    ("D6 temperature alarm", "30139e0a",
     "Wire temperature crossed the configured upper threshold."),
    ("D7 current over-range alarm", "3104023c28",
     "Channel 5 above the CT's range at 103 A. Guide layout (2-byte value); firmware devices "
     "send 3 bytes (3104023c2800)."),
    ("D8 historical periodic record", "ed01a1b1856901360a",
     "A stored periodic reading, fetched with a history query (5c)."),
    ("D9 historical monthly records",
     "ed0200277e69 4003 01 2e0b ed0200277e69 4003 02 1027 ed0200277e69 4003 03 "
     "d40e04057d23ff11081d46177c268309c4174916370e310a ed0200277e69 4003 04 000000000000 "
     "ed0200277e69 4003 06 5aa8fc81d331",
     "The monthly maxima again, as replayed in answer to a 5c history query."),
)

# (guide example, what it does, command, values, dialect, hex printed in the guide)
GUIDE_DOWNLINKS: tuple[tuple[str, str, str, dict[str, Any], str, str], ...] = (
    ("D10", "report every 20 minutes", "reporting_interval", {"minutes": 20}, "firmware",
     "61011400"),
    ("D11", "restart the meter", "reboot", {}, "firmware", "be"),
    ("D12", "Bluetooth name 'Milesight'", "bluetooth_name", {"name": "Milesight"},
     "firmware", "64094d696c657369676874"),
    ("D13", "time zone UTC-4", "time_zone", {"offset_min": -240}, "firmware", "c710ff"),
    ("D14", "summer time +60 min, last Sun of Mar to last Sun of Oct, 01:00",
     "daylight_saving_time", {
         "enabled": True, "bias_min": 60, "start_month": 3, "start_week": 5,
         "start_weekday": 7, "start_minute": 60, "end_month": 10, "end_week": 5,
         "end_weekday": 7, "end_minute": 60}, "firmware", "c6013c03573c000a573c00"),
    ("D18", "alarm when channel 5 is above 888 A", "current_threshold",
     {"channel": 5, "enabled": True, "condition": "above", "min_a": 0, "max_a": 888},
     "firmware", "7704010200007803"),
    ("D18", "alarm when channel 9 is within 1-300 A", "current_threshold",
     {"channel": 9, "enabled": True, "condition": "within", "min_a": 1, "max_a": 300},
     "firmware", "7708010301002c01"),
    ("D18", "alarm when channel 11 is outside 222-666 A", "current_threshold",
     {"channel": 11, "enabled": True, "condition": "outside", "min_a": 222, "max_a": 666},
     "firmware", "770a0104de009a02"),
    ("D24", "ask for the temperature threshold (guide only)", "threshold_query",
     {"threshold": "temperature"}, "guide", "5800"),
)


def _uplink_command(name: str, dialect: str) -> Command:
    d = Dialect.GUIDE if dialect == "guide" else Dialect.FIRMWARE
    return compiled_commands(d, uplink=True)[name].command


def _value(v: object, unit: str) -> str:
    if v is None:
        return "no data"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(v, tuple):
        return ", ".join(map(str, v)) or "(none)"
    text = _fmt_num(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)
    return f"{text} {unit}".rstrip()


def explain_item(item: Item, dialect: str) -> list[tuple[str, str, str]]:
    """(item title, what, value with unit) rows of one decoded item."""
    cmd = _uplink_command(item.command_name, dialect)
    rows: list[tuple[str, str, str]] = []
    specs: list = []
    for f in cmd.fields:
        specs += [f.high, f.low] if isinstance(f, Nibbles) else [f]
    for f in specs:
        if f.name not in cmd.names:
            continue
        v = getattr(item, f.name)
        label = _label(f.name, getattr(f, "unit", ""))
        if isinstance(f, Grouped):
            for g in v:
                first = 3 * "abcd".index(g.group) + 1
                if g.channels is None:
                    rows.append((cmd.title, f"ch {first}-{first + 2} (group {g.group}), "
                                            "3-phase total", _value(g.total, f.unit)))
                    continue
                for k, x in enumerate(g.channels):
                    rows.append((cmd.title, f"ch {first + k} ({g.group}, {_PHASES[g.phase]})",
                                 _value(x, f.unit)))
        elif isinstance(f, Num) and f.count > 1:
            for k, x in enumerate(v):
                where = f"L{k + 1}" if f.count == 3 else f"ch {k + 1}"
                rows.append((cmd.title, where, _value(x, f.unit)))
        else:
            rows.append((cmd.title, label, _value(v, getattr(f, "unit", ""))))
    if not rows:
        rows.append((cmd.title, "", "(no value)"))
    return [(t if i == 0 else "", w, v) for i, (t, w, v) in enumerate(rows)]


_PHASES = {"single": "1-phase", "three": "3-phase"}


def _label(name: str, unit: str) -> str:
    """A field name for people: the unit suffix dropped ("temperature_c" -> "temperature")."""
    head, _, tail = name.rpartition("_")
    return (head if unit and head and tail else name).replace("_", " ")


def explain(uplink: Uplink) -> list[tuple[str, str, str]]:
    rows = []
    for item in uplink.items:
        rows += explain_item(item, uplink.dialect)
    for rec in uplink.history:
        kind = f", monthly {rec.kind}" if rec.kind else ""
        rows.append((f"[bold]record {rec.timestamp:%Y-%m-%d %H:%M} UTC[/bold]",
                     f"{rec.mode}{kind}", ""))
        for item in rec.items:
            rows += [("  " + t, w, v) for t, w, v in explain_item(item, uplink.dialect)]
    return rows


def run_demo(console: Any) -> None:
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    console.rule("CTH01 uplinks: the user guide's example frames")
    for title, text, note in GUIDE_UPLINKS:
        body = Table.grid(padding=(0, 1))
        body.add_column(no_wrap=True)
        body.add_column(overflow="fold")
        body.add_row("[dim]hex[/dim]", escape(text))
        try:
            uplink = decode(parse_payload(text))
        except (InputError, ProtocolError) as exc:
            body.add_row("[red]error[/red]", escape(str(exc)))
            body.add_row("", f"[italic]{escape(note)}[/italic]")
            console.print(Panel(body, title=title, title_align="left", border_style="red"))
            continue
        dialect = uplink.dialect + (" (reads the same in both dialects)"
                                    if uplink.dialect == "common" else " dialect")
        body.add_row("[dim]read as[/dim]", dialect)
        values = Table(box=None, show_header=True, pad_edge=False)
        for col in ("item", "channel / field", "value"):
            values.add_column(col)
        for row in explain(uplink):
            values.add_row(*row)
        body.add_row("", values)
        body.add_row("", f"[italic]{escape(note)}[/italic]")
        console.print(Panel(body, title=title, title_align="left", border_style="green"))

    console.rule("CTH01 downlinks: encoding the guide's examples")
    table = Table()
    for col in ("guide", "setting", "hex", "base64", "ok"):
        table.add_column(col, no_wrap=col in ("hex", "base64"))
    ok = True
    lines = []
    for ref, what, name, values, dialect, expected in GUIDE_DOWNLINKS:
        data = encode_downlink(build_item(name, values), dialect=dialect)  # type: ignore[arg-type]
        same = data.hex() == expected
        ok &= same
        table.add_row(ref, what, data.hex(), base64.b64encode(data).decode(),
                      "[green]✓[/green]" if same else f"[red]guide: {expected}[/red]")
        lines.append(f"  cth01 {' '.join(encode_argv(name, values, dialect))}")
    console.print(table)
    console.print("The same from the command line:")
    console.print(escape("\n".join(lines)), soft_wrap=True, highlight=False)
    d18 = "".join(x[5] for x in GUIDE_DOWNLINKS if x[0] == "D18")
    console.print(f"Several commands may share one downlink: the three thresholds of D18 "
                  f"together are {d18}.")
    console.print("[green]all encodings match the guide[/green]" if ok
                  else "[red]some encodings differ from the guide[/red]")


# --- the virtual device (cth01.device) ----------------------------------------------------------
from .cli_simulate import simulate  # noqa: E402
from .cli_toolbox import toolbox_app  # noqa: E402

app.command("simulate")(simulate)

# --- the hub (cth01.hub) ------------------------------------------------------------------------
from .cli_hub import demo, serve, token  # noqa: E402

app.command("serve")(serve)
app.command("demo")(demo)
app.command("token")(token)
app.add_typer(toolbox_app, name="toolbox",
              help="The ToolBox app's local interface to a virtual CTH01 kept in a state file.")
