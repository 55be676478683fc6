"""Outbound notifications: alarm changes to a webhook and MQTT, Home Assistant discovery.

Owns: the hub listeners that push state out —
  AlarmNotifier   every alarm change (raised / repeated / dismissed / acknowledged) as
                  JSON, published to `<alarm_mqtt_topic>/<dev_eui>` (QoS 1) and POSTed to
                  a webhook from a thread of its own, in order, each retried with
                  exponential backoff while the server is unreachable or answers 5xx / 408 /
                  429 (`tries`, `backoff_s`, `max_backoff_s`); a 4xx refusal is not retried
  HomeAssistant   MQTT discovery (retained) for each channel's power, energy, current and power
                  factor and the device's voltages and temperature, with the right
                  device_class / state_class / unit, and a retained state message per new
                  reading whose values are in exactly the units announced (energy in Wh or kWh)
Must never: block the ingest worker (listeners only enqueue or hand over to a non-blocking
publish) or change stored data.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

import httpx
import structlog

from .readings import CHANNELS, UNITS, wide_column
from .store import Store

log = structlog.get_logger("cth01.hub.notify")
Publish = Callable[..., None]  # publish(topic, body: bytes, retain=False), never blocking

# answers worth trying again: the server is overloaded or asked us to wait
_RETRY_STATUS = frozenset({408, 425, 429})


class _Worker:
    """A daemon thread that runs queued jobs in order."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job()
            except Exception as exc:
                log.warning("notify_failed", error=repr(exc))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Run what is queued (no more waiting between retries), then end."""
        self.stopping.set()
        self.jobs.put(None)
        self.thread.join(timeout_s)


class AlarmNotifier:
    """Listener: alarm changes to a webhook and/or MQTT (see the module note).

    `sent` counts changes the webhook took (2xx/3xx), `refused` those it answered 4xx to,
    `failed` those given up after `tries`; `pending` is how many are still to be posted."""

    def __init__(self, *, webhook: str | None = None, publish: Publish | None = None,
                 topic: str | None = None, tries: int = 6, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, timeout_s: float = 5.0) -> None:
        self.webhook, self.publish, self.topic = webhook, publish, topic
        self.tries, self.backoff_s, self.max_backoff_s = max(1, tries), backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self.sent = self.refused = self.failed = self.pending = 0
        self._lock = threading.Lock()
        self._worker = _Worker("cth01-notify") if webhook else None
        self._client = httpx.Client(timeout=timeout_s) if webhook else None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind != "alarm":
            return
        body = json.dumps(data, default=str).encode()
        if self._worker is not None:
            self._count("pending", 1)
            self._worker.jobs.put(lambda: self._post(body))
        if self.publish is not None and self.topic:
            self.publish(f"{self.topic}/{data.get('dev_eui')}", body)

    def _post(self, body: bytes) -> None:
        assert self._client is not None and self._worker is not None
        try:
            for attempt in range(1, self.tries + 1):
                try:
                    r = self._client.post(self.webhook,  # type: ignore[arg-type]
                                          content=body,
                                          headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    log.warning("alarm_webhook_error", error=repr(exc), attempt=attempt)
                else:
                    if r.status_code < 400:
                        self._count("sent", 1)
                        return
                    if r.status_code < 500 and r.status_code not in _RETRY_STATUS:
                        log.warning("alarm_webhook_refused", status=r.status_code)
                        self._count("refused", 1)
                        return
                    log.warning("alarm_webhook_error", status=r.status_code, attempt=attempt)
                delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                if attempt == self.tries or self._worker.stopping.wait(delay):
                    break  # out of tries, or the hub stops (one try each for what is left)
            log.error("alarm_webhook_gave_up", attempts=attempt)
            self._count("failed", 1)
        finally:
            self._count("pending", -1)

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._client is not None:
            self._client.close()


# --- Home Assistant ------------------------------------------------------------------------------

# column -> (name, device_class, state_class)
HA_CHANNEL_SENSORS = {
    "active_power_w": ("power", "power", "measurement"),
    "imported_active_wh": ("energy", "energy", "total_increasing"),
    "current_a": ("current", "current", "measurement"),
    "power_factor_pct": ("power factor", "power_factor", "measurement"),
}
HA_DEVICE_SENSORS = {
    **{f"voltage_l{k}_v": (f"voltage L{k}", "voltage", "measurement") for k in (1, 2, 3)},
    "temperature_c": ("wire temperature", "temperature", "measurement"),
}
EnergyUnit = Literal["Wh", "kWh"]


def _ha_key(column: str, channel: int | None, energy_unit: EnergyUnit) -> str:
    """The state message's key of a sensor, named with the unit its value is in."""
    if column == "imported_active_wh" and energy_unit == "kWh":
        column = "imported_active_kwh"
    return column if channel is None else f"ch{channel}_{column}"


def _ha_sensors(energy_unit: EnergyUnit) -> list[tuple[str, int | None, str, str]]:
    """(column, channel or None, state key, unit) of every sensor of a device."""
    out = [(col, None, _ha_key(col, None, energy_unit), UNITS[col])
           for col in HA_DEVICE_SENSORS]
    for ch in CHANNELS:
        for col in HA_CHANNEL_SENSORS:
            unit = energy_unit if col == "imported_active_wh" else UNITS[col]
            out.append((col, ch, _ha_key(col, ch, energy_unit), unit))
    return out


def ha_discovery(dev_eui: str, name: str | None, prefix: str = "homeassistant", *,
                 energy_unit: EnergyUnit = "Wh") -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) of every Home Assistant sensor of one device."""
    device = {"identifiers": [f"cth01_{dev_eui}"], "name": name or f"CTH01 {dev_eui}",
              "manufacturer": "Milesight", "model": "CTH01", "serial_number": dev_eui}
    state_topic = f"cth01/{dev_eui}/state"
    out = []
    for col, ch, key, unit in _ha_sensors(energy_unit):
        label, device_class, state_class = (HA_DEVICE_SENSORS if ch is None
                                            else HA_CHANNEL_SENSORS)[col]
        uid = f"cth01_{dev_eui}_{key}"
        out.append((f"{prefix}/sensor/{uid}/config", {
            "name": label if ch is None else f"channel {ch} {label}",
            "unique_id": uid,
            # `object_id` until Home Assistant 2025.9, `default_entity_id` from 2025.10
            "object_id": uid, "default_entity_id": f"sensor.{uid}",
            "state_topic": state_topic,
            "value_template": f"{{{{ value_json.{key} }}}}",
            "device_class": device_class, "state_class": state_class,
            "unit_of_measurement": unit, "device": device,
            "availability_topic": f"cth01/{dev_eui}/availability"}))
    return out


class HomeAssistant:
    """Listener: discovery once per device, then the latest values after each report.

    The state message has a key for every announced sensor (null when the latest reading has
    no value for it: a three-phase group's second and third channel, a quantity the device
    does not report), so every value template resolves; energy is in `energy_unit`."""

    def __init__(self, store: Store, publish: Publish, prefix: str = "homeassistant", *,
                 energy_unit: EnergyUnit = "Wh") -> None:
        if energy_unit not in ("Wh", "kWh"):
            raise ValueError(f"energy_unit must be Wh or kWh, not {energy_unit!r}")
        self.store, self.publish, self.prefix = store, publish, prefix
        self.energy_unit: EnergyUnit = energy_unit
        self._sensors = _ha_sensors(energy_unit)
        self._columns = [col if ch is None else wide_column(col, ch)
                         for col, ch, _, _ in self._sensors]
        self._announced: set[str] = set()
        self._worker = _Worker("cth01-homeassistant")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "readings":
            for eui in data["devices"]:
                self._worker.jobs.put(lambda eui=eui: self._state(eui))

    def state(self, dev_eui: str) -> dict[str, Any]:
        """The value of every sensor in the device's latest reading (one indexed row)."""
        out: dict[str, Any] = {key: None for _, _, key, _ in self._sensors}
        did = self.store.device_id(dev_eui)
        if did is None:
            return out
        rows = self.store.query(f"SELECT {', '.join(self._columns)} FROM reading WHERE "
                                f"device_id = ? ORDER BY ts DESC LIMIT 1", (did,))
        if rows:
            for (col, _, key, _), value in zip(self._sensors, rows[0], strict=True):
                if value is not None and col == "imported_active_wh" and \
                        self.energy_unit == "kWh":
                    value = round(value / 1000, 6)
                out[key] = value
        return out

    def _state(self, dev_eui: str) -> None:
        if dev_eui not in self._announced:
            device = self.store.device(dev_eui) or {}
            for topic, config in ha_discovery(dev_eui, device.get("name"), self.prefix,
                                              energy_unit=self.energy_unit):
                self.publish(topic, json.dumps(config).encode(), retain=True)
            self.publish(f"cth01/{dev_eui}/availability", b"online", retain=True)
            self._announced.add(dev_eui)
        self.publish(f"cth01/{dev_eui}/state", json.dumps(self.state(dev_eui)).encode(),
                     retain=True)

    def stop(self) -> None:
        self._worker.stop()
