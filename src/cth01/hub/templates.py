"""Configuration templates: a named list of typed commands to apply to many devices.

Owns: checking a template's commands (each must build with `downlinks.build`, the rule every
downlink follows), and turning a device's configuration — the configuration shadow's setting
items, desired where a user set one, else reported — into the typed commands that would set
it. A setting becomes a command only when building that command writes exactly that setting
item back (checked by building it), so a template never holds a command that would set
something else; settings no builder writes (read-only items) are returned as skipped.

Must never: touch storage or send anything (the API queues through the hub).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from . import downlinks as dl

MAX_COMMANDS = 200


class TemplateError(ValueError):
    """A template command that cannot be built: `index` in the template, `command`, and the
    encoder's `reason`."""

    def __init__(self, index: int | None, command: str, reason: str) -> None:
        where = f"settings[{index}]" if index is not None else "settings"
        super().__init__(f"{where} {command}: {reason}")
        self.index, self.command, self.reason = index, command, reason


def validate_settings(settings: Any) -> list[dict[str, Any]]:
    """The template's commands as [{"command", "params"}], each built once to check it;
    TemplateError for the first that is refused."""
    if not isinstance(settings, list) or not settings:
        raise TemplateError(None, "", "must be a non-empty list of {command, params}")
    if len(settings) > MAX_COMMANDS:
        raise TemplateError(None, "", f"at most {MAX_COMMANDS} commands")
    out = []
    for k, s in enumerate(settings):
        if not isinstance(s, dict) or not isinstance(s.get("command"), str) or \
                not isinstance(s.get("params", {}), dict) or set(s) - {"command", "params"}:
            raise TemplateError(k, str(s.get("command", "") if isinstance(s, dict) else ""),
                                "each entry is {\"command\": str, \"params\": {...}}")
        params = dict(s.get("params") or {})
        try:
            dl.build(s["command"], params)
        except dl.CommandError as exc:
            raise TemplateError(k, exc.command, exc.reason) from None
        out.append({"command": s["command"], "params": params})
    return out


def _normal(value: Any) -> Any:
    """JSON form (tuples -> lists), so stored and built items compare equal."""
    return json.loads(json.dumps(value, default=list))


def _guess(builder: str, item: dict[str, Any]) -> dict[str, Any] | None:
    """Parameters of `builder` read from a setting item's fields, or None when one it needs
    is not there. The result is only a guess until built and compared (`command_for`)."""
    fields, kind = item, str(item.get("type", ""))
    params: dict[str, Any] = {}
    for p in inspect.signature(dl.COMMANDS[builder]).parameters.values():
        name = p.name
        if p.kind is p.VAR_POSITIONAL:
            value = fields.get(name)
        elif name in fields:
            value = fields[name]
        elif name == "phase" and "channel" in fields:  # per-phase thresholds
            value = fields["channel"]
        elif name in ("start", "end") and f"{name}_month" in fields:  # daylight saving
            value = [fields[f"{name}_{f}"] for f in ("month", "week", "weekday", "minute")]
        elif name == "ct_ranges" and "ct_range_1" in fields:
            value = [fields[f"ct_range_{k}"] for k in (1, 2, 3)]
        elif name == "reversed_channels" and "direction_1" in fields:
            value = [k for k in (1, 2, 3) if fields.get(f"direction_{k}") == "reverse"]
        elif name == "group" and kind.startswith("current_interface_"):
            value = kind.removeprefix("current_interface_")
        elif p.default is not p.empty:
            continue
        else:
            return None
        params[name] = value
    return params


_BUILDER_OF: dict[str, str] = {}  # setting item type -> the builder that writes it


def command_for(setting: str, item: dict[str, Any]) -> dict[str, Any] | None:
    """The typed command {"command", "params"} that writes exactly this setting item, or None
    when no command does."""
    item = _normal(item)
    want = {setting: item}
    kind = str(item.get("type", ""))
    builders = [_BUILDER_OF[kind]] if kind in _BUILDER_OF else \
        [name for name in sorted(dl.COMMANDS) if name.startswith("set_")]
    for builder in builders:
        params = _guess(builder, item)
        if params is None:
            continue
        try:
            downlink = dl.build(builder, params)
        except dl.CommandError:
            continue
        if len(downlink.items) == 1 and _normal(dl.settings_written(downlink)) == want:
            _BUILDER_OF[kind] = builder
            return {"command": builder, "params": _normal(params)}
    return None


def commands_from_config(shadow: Sequence[dict[str, Any]]
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(commands, skipped) for a device's configuration shadow (`Store.config_shadow` rows):
    one command per setting with a desired (else reported) value, in setting order; skipped
    settings as {"setting", "reason"}."""
    commands, skipped = [], []
    for row in shadow:
        value = row.get("desired") if row.get("desired") is not None else row.get("reported")
        if not isinstance(value, dict):
            skipped.append({"setting": row.get("setting"), "reason": "no value"})
            continue
        command = command_for(str(row["setting"]), value)
        if command is None:
            skipped.append({"setting": row["setting"], "reason": f"no command sets "
                                                                  f"{value.get('type')!r}"})
        else:
            commands.append(command)
    return commands, skipped


__all__ = ["TemplateError", "command_for", "commands_from_config", "validate_settings"]
