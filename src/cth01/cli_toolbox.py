"""`cth01 toolbox`: the ToolBox app's Bluetooth configuration of a virtual CTH01, from a shell.

Owns: the device state file (a virtual device lives in memory, so every command loads it, logs
in, acts through `cth01.device.toolbox`, and saves it), parsing KEY=VALUE settings, and
presenting results (rich tables or JSON). Every rule — password format, setting ranges, the
Rogowski rule, templates of the same model only — lives in the device package; this module
only translates. Expected failures print one `error: ...` line on stderr and exit 2.

The state file is JSON: the identity, the LoRaWAN parameters, every setting (item dicts), the
password (in clear: it is a virtual device) and the clock offset. Stored records, energy
registers and the network session are not kept: each command powers the device on afresh
(so `info` shows it joining), and the login lockout (five wrong passwords) lasts one command.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import typer

from .device.firmware import VirtualCTH01
from .device.settings import (
    _ALIASES,
    _SETTING_UNION,
    MODEL,
    Identity,
    SettingError,
    Settings,
    identifier,
)
from .device.toolbox import Session, ToolBox, ToolBoxError, password_problem

STATE_FORMAT = "cth01-toolbox-state"
STATE_VERSION = 1
EXIT_ERROR = 2

toolbox_app = typer.Typer(
    name="toolbox", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help=(
        "The ToolBox app's Bluetooth configuration of a virtual CTH01, kept in a state file.\n\n"
        "[bold]cth01 toolbox new STATE.json[/bold] creates a device with factory settings; "
        "every other command loads the file, logs in with [bold]--password[/bold] "
        "(default 123456, or $CTH01_TOOLBOX_PASSWORD), acts and saves it. The state file "
        "holds the identity, the LoRaWAN parameters, the settings, the password and the clock "
        "offset; stored history records, energy registers and the network session are "
        "[bold]not[/bold] kept, so there is no history export here (use the Python API, "
        "cth01.device.toolbox.Session.export_history). Each command powers the device on "
        "afresh, and the login lockout after five wrong passwords does not carry over "
        "between commands.\n\n"
        "[bold]new[/bold] takes no --password: a new device has the factory password 123456."
    ),
)

PasswordOption = Annotated[str, typer.Option(
    "--password", envvar="CTH01_TOOLBOX_PASSWORD", show_default=True,
    help="The device password (ToolBox login).")]
StateArgument = Annotated[Path, typer.Argument(metavar="STATE", help="The device state file.")]
FormatOption = Annotated[str, typer.Option(
    "--format", help="table (readable) or json.", case_sensitive=False)]


class StateError(ValueError):
    """A state file that cannot be read or does not describe a device."""


def _fail(message: object) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


# --- the state file -----------------------------------------------------------------------------

def state_of(device: VirtualCTH01) -> dict[str, Any]:
    """The JSON-ready state of a device (what the CLI keeps between commands)."""
    ident = device.identity
    template = device.settings.template(include_name=True)
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "identity": msgspec.to_builtins(ident),
        "lorawan": template["lorawan"],
        "settings": template["settings"],
        "password": device.settings.password,
        "clock_offset_s": int(device.clock_offset_s),
    }


def device_of(doc: Any, source: str = "state") -> VirtualCTH01:
    """A device from its state (settings checked with the device's own rules)."""
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise StateError(f"{source}: not a cth01 toolbox state file "
                         f"(create one with `cth01 toolbox new`)")
    if doc.get("version") != STATE_VERSION:
        raise StateError(f"{source}: state version {doc.get('version')!r}, this cth01 reads "
                         f"version {STATE_VERSION}")
    try:
        identity = msgspec.convert(doc.get("identity"), Identity)
    except msgspec.ValidationError as e:
        raise StateError(f"{source}: identity: {e}") from None
    settings = Settings.factory(identity)
    try:
        settings.apply_template({"model": MODEL, "lorawan": doc.get("lorawan", {}),
                                 "settings": doc.get("settings", [])})
    except SettingError as e:
        raise StateError(f"{source}: {e}") from None
    password = doc.get("password")
    problem = password_problem(password, password) if isinstance(password, str) \
        else "missing or not text"
    if problem is not None:
        raise StateError(f"{source}: password: {problem}")
    settings.password = password
    offset = doc.get("clock_offset_s", 0)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise StateError(f"{source}: clock_offset_s must be an integer, got {offset!r}")
    return VirtualCTH01(identity, settings=settings, clock_offset_s=offset)


def load_state(path: Path) -> VirtualCTH01:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(f"{path}: no such state file (create one with `cth01 toolbox new`)"
                         ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"{path}: cannot read the state file ({e})") from None
    return device_of(doc, str(path))


def save_state(device: VirtualCTH01, path: Path) -> None:
    """Write the state next to the file, then replace it (never a half-written state)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(state_of(device), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise StateError(f"{path}: cannot write the state file ({e})") from None


def _now() -> int:
    """The runner's clock: the CLI is the I/O layer, the device package never reads it."""
    return int(time.time())


def _open(state: Path, password: str) -> tuple[VirtualCTH01, Session, int]:
    """Load the device and log in; the login's warnings go to stderr."""
    try:
        device = load_state(state)
    except StateError as e:
        _fail(e)
    now = _now()
    device.power_on(now)  # Bluetooth needs the supply; its join request goes nowhere here
    try:
        session = ToolBox(device).login(password, now)
    except ToolBoxError as e:
        _fail(e)
    for warning in session.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return device, session, now


def _save(device: VirtualCTH01, state: Path) -> None:
    try:
        save_state(device, state)
    except StateError as e:
        _fail(e)


def _check_format(fmt: str) -> str:
    fmt = fmt.lower()
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}")
    return fmt


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


# --- KEY=VALUE -----------------------------------------------------------------------------------

def parse_assignments(assignments: list[str], settings: Settings
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """KEY=VALUE arguments as (LoRaWAN fields, partial setting dicts).

    KEY is `lorawan.FIELD` or `SETTING.FIELD`, SETTING being an identifier as `read` shows it
    (61, c500, 7704 ...) or a setting name that occurs once (reporting_interval,
    data_storage ...). VALUE is read as JSON when it parses (20, true, ["current","voltage"])
    and as text otherwise (4000A, US915). Fields of the same setting make one write."""
    lorawan: dict[str, Any] = {}
    partial: dict[str, dict[str, Any]] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        target, dot, field = key.strip().rpartition(".")
        if not sep or not dot or not target or not field:
            raise ValueError(f"{text!r}: expected SETTING.FIELD=VALUE or lorawan.FIELD=VALUE")
        value = _value(raw)
        if target == "lorawan":
            lorawan[field] = value
            continue
        base = _setting_of(target, settings)
        partial.setdefault(target, base)[field] = value
    return lorawan, list(partial.values())


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _setting_of(target: str, settings: Settings) -> dict[str, Any]:
    """The start of a partial dict for a setting named by identifier or name."""
    current = settings.items.get(target.lower())
    if current is not None:
        out: dict[str, Any] = {"type": current.command_name}
        if hasattr(current, "channel"):
            out["channel"] = current.channel
        return out
    base = _ALIASES.get(target, target)
    matches = [k for k, i in settings.items.items()
               if _ALIASES.get(i.command_name, i.command_name) == base]
    if not matches:
        raise ValueError(f"{target!r} is neither a setting identifier nor a setting name "
                         f"(see `cth01 toolbox read`)")
    if len(matches) > 1:
        raise ValueError(f"{target} has {len(matches)} channels: name one by its identifier "
                         f"({matches[0]} .. {matches[-1]})")
    return {"type": target}


def _json_settings(path: Path) -> tuple[dict[str, Any], list[Any]]:
    """A --json file: a list of setting dicts, or {"settings": [...], "lorawan": {...}}."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    if isinstance(doc, list):
        return {}, doc
    if isinstance(doc, dict) and isinstance(doc.get("settings", []), list) \
            and isinstance(doc.get("lorawan", {}), dict):
        return dict(doc.get("lorawan", {})), list(doc.get("settings", []))
    raise ValueError(f"{path}: expected a list of settings or an object with \"settings\"")


# --- presentation --------------------------------------------------------------------------------

def _settings_table(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    lora = Table(title="LoRaWAN", title_justify="left")
    lora.add_column("parameter")
    lora.add_column("value")
    for k, v in data["lorawan"].items():
        lora.add_row(k, json.dumps(v))
    table = Table(title="settings", title_justify="left")
    for col in ("id", "setting", "values"):
        table.add_column(col)
    for raw in data["settings"]:
        item = msgspec.convert(raw, _SETTING_UNION)
        values = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in raw.items()
                           if k != "type")
        table.add_row(identifier(item), raw["type"], values)
    return Group(lora, table)


def _info_table(info: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="basic information", title_justify="left")
    table.add_column("item")
    table.add_column("value")
    for k, v in info.items():
        table.add_row(k, str(v))
    return table


def _print(renderable: Any) -> None:
    from rich.console import Console

    Console().print(renderable)


# --- commands ------------------------------------------------------------------------------------

@toolbox_app.command("new")
def new_cmd(
    state: StateArgument,
    serial_number_index: Annotated[int, typer.Option(
        "--serial-number-index", min=0, max=16 ** 8 - 1,
        help="The n-th virtual device: serial 6527<n as 8 hex digits>0000.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Create a virtual device with factory settings (password 123456) and save it."""
    if state.exists() and not force:
        _fail(f"{state}: already exists (use --force to overwrite)")
    device = VirtualCTH01(Identity.numbered(serial_number_index))
    _save(device, state)
    typer.echo(f"created {MODEL} {device.identity.serial_number} "
               f"(DevEUI {device.dev_eui}) in {state}")
    typer.echo("warning: the device password is the default 123456: change it with "
               "`cth01 toolbox password`", err=True)


@toolbox_app.command("info")
def info_cmd(state: StateArgument, password: PasswordOption = "123456",
             fmt: FormatOption = "table") -> None:
    """Basic information: identity, versions, Bluetooth name, device time, LED, network."""
    fmt = _check_format(fmt)
    _, session, now = _open(state, password)
    info = session.basic_information(now)
    if fmt == "json":
        _print_json(info)
    else:
        _print(_info_table(info))


@toolbox_app.command("read")
def read_cmd(state: StateArgument, password: PasswordOption = "123456",
             fmt: FormatOption = "table") -> None:
    """Every setting and the LoRaWAN parameters."""
    fmt = _check_format(fmt)
    _, session, now = _open(state, password)
    data = session.read_settings(now)
    if fmt == "json":
        _print_json(data)
    else:
        _print(_settings_table(data))


@toolbox_app.command("write")
def write_cmd(
    state: StateArgument,
    assignments: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...",
        help="SETTING.FIELD=VALUE (SETTING: identifier such as 61, c500, 7704, or a unique "
             "name such as reporting_interval) or lorawan.FIELD=VALUE. VALUE is JSON when it "
             "parses, else text: reporting_interval.minutes=20, data_storage.enabled=true, "
             "67.ct_range_1=4000A, lorawan.region=US915.")] = None,
    item: Annotated[list[str] | None, typer.Option(
        "--item", help="One setting as JSON; only the fields to change are needed: "
                       "--item '{\"type\":\"reporting_interval\",\"minutes\":20}'. "
                       "Repeatable.")] = None,
    json_file: Annotated[Path | None, typer.Option(
        "--json", help="A JSON file: a list of settings like --item, or an object with "
                       "\"settings\" (and optionally \"lorawan\").")] = None,
    password: PasswordOption = "123456",
) -> None:
    """Write settings, all or nothing, with the rules a downlink meets (ranges, the Rogowski
    rule, min <= max ...). Nothing is saved when anything is refused."""
    device, session, now = _open(state, password)
    try:
        lorawan: dict[str, Any] = {}
        settings: list[Any] = []
        if json_file is not None:
            lorawan, settings = _json_settings(json_file)
        for text in item or []:
            try:
                settings.append(json.loads(text))
            except json.JSONDecodeError as e:
                raise ValueError(f"--item {text!r}: not JSON ({e})") from None
        more_lorawan, partial = parse_assignments(assignments or [], device.settings)
        lorawan.update(more_lorawan)
        settings += partial
    except ValueError as e:
        _fail(e)
    if not lorawan and not settings:
        _fail("nothing to write: give KEY=VALUE, --item or --json")
    try:
        if lorawan:
            session.write_lorawan(now, **lorawan)
        written = session.write(now, *settings)
    except ToolBoxError as e:
        _fail(e)
    _save(device, state)
    parts = ([f"lorawan ({', '.join(lorawan)})"] if lorawan else []) + written
    typer.echo(f"written: {' '.join(parts)}")


@toolbox_app.command("password")
def password_cmd(
    state: StateArgument,
    new: Annotated[str, typer.Option(
        "--new", help="6 characters: letters, digits, underscores.")],
    confirm: Annotated[str | None, typer.Option(
        "--confirm", help="The new password again (default: same as --new).")] = None,
    password: PasswordOption = "123456",
) -> None:
    """Change the device password."""
    device, session, now = _open(state, password)
    try:
        session.change_password(now, new, new if confirm is None else confirm)
    except ToolBoxError as e:
        _fail(e)
    _save(device, state)
    typer.echo("password changed")


@toolbox_app.command("sync-time")
def sync_time_cmd(
    state: StateArgument,
    offset_min: Annotated[int | None, typer.Option(
        "--offset-min", help="The phone's time zone, minutes east of UTC "
                             "(default: this computer's).")] = None,
    at: Annotated[int | None, typer.Option(
        "--time", help="The phone's time, Unix seconds (default: now).")] = None,
    password: PasswordOption = "123456",
) -> None:
    """The Sync button: device clock and time zone from the phone (here: this computer)."""
    device, session, now = _open(state, password)
    if offset_min is None:
        delta = datetime.now(UTC).astimezone().utcoffset()
        offset_min = int(delta.total_seconds() // 60) if delta is not None else 0
    try:
        session.sync_time(now, now if at is None else at, offset_min)
    except ToolBoxError as e:
        _fail(e)
    _save(device, state)
    info = session.basic_information(now)
    typer.echo(f"device time {info['device_time_utc']} ({info['time_zone']}, local "
               f"{info['device_time_local']})")


@toolbox_app.command("template-export")
def template_export_cmd(
    state: StateArgument,
    out: Annotated[Path, typer.Argument(metavar="FILE", help="The template JSON to write.")],
    name: Annotated[str | None, typer.Option(
        "--name", help="Template name (default: the file name without extension).")] = None,
    password: PasswordOption = "123456",
) -> None:
    """Save the configuration as a template (no identity, no password)."""
    _, session, now = _open(state, password)
    try:
        template = session.export_template(now, name or out.stem)
        out.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    except ToolBoxError as e:
        _fail(e)
    except OSError as e:
        _fail(f"{out}: cannot write ({e})")
    typer.echo(f"template {template['name']!r} written to {out}")


@toolbox_app.command("template-import")
def template_import_cmd(
    state: StateArgument,
    template: Annotated[Path, typer.Argument(metavar="FILE", help="A template JSON file.")],
    password: PasswordOption = "123456",
) -> None:
    """Write a template of the same model to the device, all or nothing."""
    device, session, now = _open(state, password)
    try:
        text = template.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"{template}: cannot read ({e})")
    try:
        written = session.import_template(now, text)
    except ToolBoxError as e:
        _fail(e)
    _save(device, state)
    typer.echo(f"template written: {len(written)} settings")


@toolbox_app.command("reset")
def reset_cmd(state: StateArgument, password: PasswordOption = "123456") -> None:
    """Factory reset: every setting and the password (123456) back to the defaults."""
    device, session, now = _open(state, password)
    session.reset(now)
    _save(device, state)
    typer.echo("reset to factory settings; the password is 123456 again")
