"""The hub's settings: one struct, three sources.

Owns: `HubConfig` (every option of `cth01 serve`, its default and its meaning) and the rule
that merges where a value can come from — command line > environment variable `CTH01_<NAME>`
> config file (TOML, same names) > default. Values are validated once, here.
Must never: start anything.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec


class ConfigError(ValueError):
    """A bad option: `name` is the option, `reason` what is wrong, `origin` where it came from."""

    def __init__(self, name: str, reason: str, origin: str) -> None:
        super().__init__(f"{name} (from {origin}): {reason}")
        self.name, self.reason, self.origin = name, reason, origin


class HubConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every option of the hub. The docstring of each field is in `HELP`."""

    db: str = "cth01.db"
    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id: str = "cth01-hub"
    mqtt_protocol: str = "5"
    chirpstack: bool = True
    tts: bool = False
    fleet_devices: int = 0
    fleet_speed: float = 1.0
    fleet_seed: int = 0
    fleet_events: bool = True
    anonymous_read: bool = False
    admin_token: str | None = None
    downlink_timeout_s: float = 300.0
    downlink_max_attempts: int = 3
    backfill: bool = True
    backfill_window_s: int = 7 * 86400
    backfill_settle_s: int = 1800
    backfill_every_s: int = 60
    alarm_webhook: str | None = None
    alarm_mqtt_topic: str | None = None
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"
    ha_energy_unit: str = "Wh"
    batch_max: int = 2000
    sqlite_durable: bool = False
    log_format: str = "json"
    log_level: str = "info"
    timezone: str = "UTC"


HELP: dict[str, str] = {
    "db": "Database: a SQLite file path (embedded, default) or postgresql://user@host/db.",
    "host": "Address the HTTP API and dashboard listen on.",
    "port": "Port of the HTTP API and dashboard.",
    "mqtt_url": "MQTT broker of the network server, mqtt://host:1883 (none: no MQTT ingest).",
    "mqtt_username": "MQTT user name.",
    "mqtt_password": "MQTT password.",
    "mqtt_client_id": "MQTT client id; keep it stable: the broker keeps the session (QoS 1 "
                      "messages that arrive while the hub is down) under this id.",
    "mqtt_protocol": "MQTT version: 5 (ChirpStack, your own broker) or 3.1.1 (The Things "
                     "Stack's MQTT server, which offers QoS 0 only: nothing is kept for a hub "
                     "that is away; prefer its webhooks or Pub/Sub for lossless ingest).",
    "chirpstack": "Subscribe to ChirpStack v4 events (application/+/device/+/event/+).",
    "tts": "Subscribe to The Things Stack v3 messages (v3/+/devices/+/...).",
    "fleet_devices": "Run a built-in virtual fleet of this many CTH01s (0: none).",
    "fleet_speed": "Simulated seconds per wall second of the virtual fleet.",
    "fleet_seed": "Seed of the virtual fleet's loads.",
    "fleet_events": "Play the demo's scripted events (overload, sag, blackout...) in the fleet.",
    "anonymous_read": "Allow reading the API without a token (writes always need one).",
    "admin_token": "Create (or keep) an admin token with this value at start.",
    "downlink_timeout_s": "Seconds to wait for a device's answer before resending a downlink.",
    "downlink_max_attempts": "Times a downlink is sent before it is marked timed out.",
    "backfill": "Ask devices for missing periodic records (history range queries).",
    "backfill_window_s": "How far back gaps are looked for (the device keeps 20,000 records).",
    "backfill_settle_s": "Age a gap must reach before it is requested (gives the device's own "
                         "retransmission time to fill it).",
    "backfill_every_s": "Seconds between two gap scans.",
    "alarm_webhook": "URL that receives every alarm change as a JSON POST.",
    "alarm_mqtt_topic": "MQTT topic prefix for alarm changes (<prefix>/<dev_eui>).",
    "ha_discovery": "Publish Home Assistant MQTT discovery and state for every channel.",
    "ha_prefix": "Home Assistant discovery prefix.",
    "ha_energy_unit": "Unit of the Home Assistant energy sensors: Wh or kWh.",
    "batch_max": "Most uplinks stored in one transaction.",
    "sqlite_durable": "SQLite synchronous=FULL (survives power loss, slower).",
    "log_format": "json (one object per line) or console.",
    "log_level": "debug, info, warning or error.",
    "timezone": "IANA time zone of calendar days and months in the API, reports and tariffs "
                "(Europe/Berlin); DST is followed, so a day may have 23 or 25 hours.",
}

ENV_PREFIX = "CTH01_"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _coerce(name: str, value: Any, origin: str) -> Any:
    proto = HubConfig()
    default = getattr(proto, name)
    kind = type(default) if default is not None else str
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ConfigError(name, f"{value!r} is not true/false", origin)
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a {kind.__name__}", origin) from None
    return value


def load_config(file: str | Path | None = None, *, env: dict[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> HubConfig:
    """Merge defaults < config file < environment < `overrides` (the command line; None values
    are ignored) into a validated HubConfig."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if file is not None:
        try:
            doc = tomllib.loads(Path(file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config", str(exc), str(file)) from None
        for key, value in doc.items():
            name = key.replace("-", "_")
            if name not in HELP:
                raise ConfigError(key, "unknown option", str(file))
            values[name], origins[name] = value, str(file)
    for name in HELP:
        if env_name(name) in env:
            values[name] = _coerce(name, env[env_name(name)], env_name(name))
            origins[name] = env_name(name)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name], origins[name] = value, "command line"
    try:
        config = msgspec.convert(values, HubConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError("config", str(exc), ", ".join(sorted(set(origins.values())))
                          or "defaults") from None
    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"{config.timezone!r} is not an IANA time zone "
                          f"(e.g. UTC, Europe/Berlin)", origins.get("timezone", "default")
                          ) from None
    for name, ok, reason in (
            ("port", 0 <= config.port <= 65535, "must be 0-65535"),
            ("fleet_devices", config.fleet_devices >= 0, "must be ≥ 0"),
            ("fleet_speed", config.fleet_speed > 0, "must be > 0"),
            ("downlink_max_attempts", config.downlink_max_attempts >= 1, "must be ≥ 1"),
            ("batch_max", config.batch_max >= 1, "must be ≥ 1"),
            ("log_format", config.log_format in ("json", "console"), "json or console"),
            ("mqtt_protocol", config.mqtt_protocol in ("5", "3.1.1"), "5 or 3.1.1"),
            ("ha_energy_unit", config.ha_energy_unit in ("Wh", "kWh"), "Wh or kWh"),
            ("log_level", config.log_level in ("debug", "info", "warning", "error"),
             "debug, info, warning or error")):
        if not ok:
            raise ConfigError(name, reason, origins.get(name, "default"))
    return config
