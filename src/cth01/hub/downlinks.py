"""Typed downlinks and how the hub knows they worked.

Owns: the catalogue of commands a user may send (every public builder of
`cth01.protocol.commands`, by name, with its parameters), building a downlink from a name and
JSON parameters (refused with the encoder's reason before anything is queued), what answer
each command waits for (`expects`), and matching the device's answers to those expectations.

Expectation tokens (stored with the downlink, one per command in it):
  ef:<id>      an ef reply echoing <id> ("61", "c502", "7704"); success confirms the setting
  cfg:<id>     a configuration item <id> reported back (configuration queries); a prefix
               ending in * matches any id that starts with it ("cfg:c5*", "cfg:*")
  report       a periodic report (b9 enquiry)
  history      an ed record, or an ef reply echoing 5b/5c (nothing found)
A downlink whose commands expect nothing (rejoin, factory reset, sync time) stays `sent`.

Must never: send anything (the service does) or touch storage.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from cth01.protocol import EncodeError
from cth01.protocol import commands as _commands
from cth01.protocol.commands import Downlink, echo_identifier
from cth01.protocol.schema import Dialect, Flags, Nibbles, Num, Text
from cth01.protocol.table import COMMANDS as _TABLE

_QUERY_EXPECTS = {
    "config_query": lambda item: f"cfg:{item.identifier}",
    "query_all_config": lambda item: "cfg:*",
    "query_storage_settings": lambda item: "cfg:c5*",
    "threshold_query": lambda item: "cfg:7*",
    "enquire_periodic_report": lambda item: "report",
    "history_query_point": lambda item: "history",
    "history_query_range": lambda item: "history",
}
_NO_REPLY = {"factory_reset", "rejoin", "sync_time", "device_status", "sequence_number_check",
             "order_check"}


class CommandError(ValueError):
    """A downlink the hub refuses to queue: unknown command, bad parameters, out of range."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command}: {reason}")
        self.command = command
        self.reason = reason


def catalogue() -> dict[str, Callable[..., Downlink]]:
    """Every typed command builder, by name (set_reporting_interval, query_config ...)."""
    out = {}
    for name, fn in vars(_commands).items():
        if name.startswith("_") or not inspect.isfunction(fn) or name in ("payload",
                                                                           "echo_identifier"):
            continue
        if fn.__module__ == _commands.__name__ and \
                inspect.signature(fn).return_annotation in ("Downlink", Downlink):
            out[name] = fn
    return out


COMMANDS = catalogue()
#: the configuration shadow's setting ids of the current interface (circuit, CT range and
#: direction of each channel) of groups a-d, in group order
CURRENT_INTERFACE_SETTINGS = tuple(
    echo_identifier(_commands.set_current_interface(g, circuit="single_phase").items[0])
    for g in "abcd")


# -- parameter ranges, read from the command table -----------------------------------------
# A builder `set_x` builds the table's command `x`; these build another one.
_BUILDS = {"set_daylight_saving": "daylight_saving_time",
           "set_current_interface": "current_interface_a",
           "query_history_point": "history_query_point",
           "query_history_range": "history_query_range",
           "stop_history_query": "history_query_stop", "query_thresholds": "threshold_query",
           "check_sequence_number": "sequence_number_check", "check_order": "order_check",
           "query_config": "config_query", "set_time": "set_time"}
# (builder, parameter) -> the table field(s) it fills, where the names differ; a list is a
# tuple parameter (one field per element)
_FIELDS: dict[tuple[str, str], Any] = {
    ("set_reporting_interval", "seconds"): ("reporting_interval_seconds", "seconds"),
    ("set_collection_interval", "seconds"): ("collection_interval_seconds", "seconds"),
    ("set_voltage_threshold", "phase"): (None, "channel"),
    ("set_thdv_threshold", "phase"): (None, "channel"),
    ("set_daylight_saving", "start"): [(None, f"start_{f}")
                                       for f in ("month", "week", "weekday", "minute")],
    ("set_daylight_saving", "end"): [(None, f"end_{f}")
                                     for f in ("month", "week", "weekday", "minute")],
    ("set_current_interface", "ct_ranges"): [(None, f"ct_range_{k}") for k in (1, 2, 3)],
}
_TABLE_FIELDS: dict[str, dict[str, Num | Flags | Text]] = {}
for _cmd in _TABLE:  # firmware layouts win over guide-only ones of the same name
    if _cmd.is_downlink() and (_cmd.name not in _TABLE_FIELDS
                               or Dialect.FIRMWARE in _cmd.dialects):
        _TABLE_FIELDS[_cmd.name] = {
            f.name: f for spec in _cmd.fields
            for f in ((spec.high, spec.low) if isinstance(spec, Nibbles) else (spec,))
            if isinstance(f, Num | Flags | Text)}


def _number(value: float, scale: int) -> int | float:
    return round(value, len(str(scale)) - 1) if scale != 1 else int(value)


def _field_range(spec: Num | Flags | Text) -> dict[str, Any]:
    """What the table allows for one field: min/max/step/unit, choices, or text length."""
    if isinstance(spec, Flags):
        return {"choices": [b for b in spec.bits if b is not None], "multiple": True}
    if isinstance(spec, Text):
        out: dict[str, Any] = {"max_length": spec.max_length or spec.size}
        return {**out, "ascii_only": True} if spec.ascii_only else out
    if spec.enum is not None:
        values = list(spec.enum.values())
        return {} if values == [False, True] else {"choices": values}
    if spec.choices is not None:
        return {"choices": sorted(spec.engineering(c) for c in spec.choices),
                **({"unit": spec.unit} if spec.unit else {})}
    if spec.time:
        return {"unit": "s"}
    lo, hi = spec.raw_bounds()
    out = {"min": _number(spec.engineering(lo), spec.scale),
           "max": _number(spec.engineering(hi), spec.scale)}
    if spec.scale != 1:
        out["step"] = 1 / spec.scale
    return {**out, "unit": spec.unit} if spec.unit else out


def _param_range(builder: str, param: str, hint: Any) -> dict[str, Any]:
    """The allowed values of one builder parameter: Literal choices from its annotation, the
    rest from the table field it fills (`items` for tuple parameters)."""
    if typing.get_origin(hint) is typing.Literal:
        return {"choices": list(typing.get_args(hint))}
    command = _BUILDS.get(builder, builder.removeprefix("set_"))
    target = _FIELDS.get((builder, param), (None, param))
    if isinstance(target, list):
        items = [_TABLE_FIELDS.get(command, {}).get(f) for _, f in target]
        return {"items": [_field_range(f) if f else {} for f in items]}
    fields = _TABLE_FIELDS.get(target[0] or command, {})
    spec = fields.get(target[1])
    return _field_range(spec) if spec is not None else {}


def describe() -> list[dict[str, Any]]:
    """The catalogue as JSON: name, summary and parameters (name, type, default, and what the
    table allows: min/max/step/unit, choices, max_length, or `items` per tuple element)."""
    out = []
    for name, fn in sorted(COMMANDS.items()):
        params = []
        hints = typing.get_type_hints(fn, vars(_commands))
        for p in inspect.signature(fn).parameters.values():
            params.append({"name": p.name, "type": str(p.annotation),
                           "required": p.default is inspect.Parameter.empty,
                           **({} if p.default is inspect.Parameter.empty
                              else {"default": p.default}),
                           **_param_range(name, p.name, hints.get(p.name))})
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0]
        out.append({"command": name, "summary": doc, "parameters": params})
    return out


def build(command: str, params: dict[str, Any] | None = None) -> Downlink:
    """The downlink for `command` with JSON `params`, or CommandError with the reason."""
    fn = COMMANDS.get(command)
    if fn is None:
        raise CommandError(command, "unknown command; GET /api/commands lists them")
    params = dict(params or {})
    sig = inspect.signature(fn)
    args = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:  # set_report_parameters(*parameters)
            value = params.pop(p.name, [])
            if not isinstance(value, list):
                raise CommandError(command, f"{p.name} must be a list")
            args = value
    try:
        sig.bind(*args, **params)
    except TypeError as exc:
        raise CommandError(command, str(exc)) from None
    try:
        return fn(*args, **params)
    except (EncodeError, ValueError, TypeError, KeyError) as exc:
        raise CommandError(command, str(exc)) from None


def expects(downlink: Downlink) -> list[str]:
    """One expectation token per command of the downlink (see the module note)."""
    out = []
    for item in downlink.items:
        name = item.command_name
        if name in _QUERY_EXPECTS:
            out.append(_QUERY_EXPECTS[name](item))
        elif name not in _NO_REPLY:
            out.append(f"ef:{echo_identifier(item)}")
    return out


def settings_written(downlink: Downlink) -> dict[str, dict[str, Any]]:
    """setting id -> item JSON for every configuration item the downlink writes (the desired
    side of the configuration shadow)."""
    return {echo_identifier(i): msgspec.to_builtins(i) for i in downlink.items
            if i.kind in ("config", "threshold")}


def matches(token: str, *, reply: str | None = None, setting: str | None = None,
            report: bool = False, history: bool = False) -> bool:
    """Whether an answer satisfies one expectation: an ef reply echoing `reply`, a reported
    configuration item `setting`, a periodic report, or a history record."""
    if token.startswith("ef:"):
        return reply == token[3:]
    if token.startswith("cfg:"):
        want = token[4:]
        return setting is not None and (setting.startswith(want[:-1]) if want.endswith("*")
                                        else setting == want)
    if token == "report":
        return report
    if token == "history":
        return history or reply in ("5b", "5c")
    return False

