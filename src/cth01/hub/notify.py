"""Outbound notifications: alarm changes to a webhook and MQTT, Home Assistant discovery.

Owns: the hub listeners that push state out —
  AlarmNotifier   every alarm change (raised / repeated / dismissed) as JSON, POSTed to a
                  webhook (3 tries with backoff, from its own thread so ingest never waits) and
                  published to `<alarm_mqtt_topic>/<dev_eui>` (QoS 1)
  HomeAssistant   MQTT discovery (retained) for each channel's power, energy, current and power
                  factor and the device's voltages and temperature, with the right
                  device_class / state_class / unit, and a state message per new reading
Must never: block the ingest worker (listeners only enqueue) or change stored data.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from .readings import CHANNELS, UNITS
from .store import Store

log = structlog.get_logger("cth01.hub.notify")
Publish = Callable[..., None]  # publish(topic, body: bytes, retain=False)


class _Worker:
    """A daemon thread that runs queued jobs in order."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job()
            except Exception as exc:
                log.warning("notify_failed", error=repr(exc))

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(5)


class AlarmNotifier:
    """Listener: alarm changes to a webhook and/or MQTT."""

    def __init__(self, *, webhook: str | None = None, publish: Publish | None = None,
                 topic: str | None = None, tries: int = 3, backoff_s: float = 1.0) -> None:
        self.webhook, self.publish, self.topic = webhook, publish, topic
        self.tries, self.backoff_s = tries, backoff_s
        self.sent = 0
        self.failed = 0
        self._worker = _Worker("cth01-notify")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind != "alarm":
            return
        body = json.dumps(data, default=str).encode()
        if self.publish is not None and self.topic:
            self.publish(f"{self.topic}/{data.get('dev_eui')}", body)
        if self.webhook:
            self._worker.jobs.put(lambda: self._post(body))

    def _post(self, body: bytes) -> None:
        for attempt in range(self.tries):
            try:
                r = httpx.post(self.webhook, content=body, timeout=5.0,  # type: ignore[arg-type]
                               headers={"content-type": "application/json"})
                if r.status_code < 500:
                    self.sent += 1
                    if r.status_code >= 400:
                        log.warning("alarm_webhook_refused", status=r.status_code)
                    return
            except httpx.HTTPError as exc:
                log.warning("alarm_webhook_error", error=str(exc), attempt=attempt + 1)
            time.sleep(self.backoff_s * 2 ** attempt)
        self.failed += 1

    def stop(self) -> None:
        self._worker.stop()


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


def ha_discovery(dev_eui: str, name: str | None, prefix: str = "homeassistant"
                 ) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) of every Home Assistant sensor of one device."""
    device = {"identifiers": [f"cth01_{dev_eui}"], "name": name or f"CTH01 {dev_eui}",
              "manufacturer": "Milesight", "model": "CTH01"}
    state_topic = f"cth01/{dev_eui}/state"
    out = []
    sensors = [(col, None, spec) for col, spec in HA_DEVICE_SENSORS.items()]
    sensors += [(col, ch, spec) for ch in CHANNELS for col, spec in HA_CHANNEL_SENSORS.items()]
    for col, ch, (label, device_class, state_class) in sensors:
        key = col if ch is None else f"ch{ch}_{col}"
        uid = f"cth01_{dev_eui}_{key}"
        out.append((f"{prefix}/sensor/{uid}/config", {
            "name": label if ch is None else f"channel {ch} {label}",
            "unique_id": uid, "object_id": uid, "state_topic": state_topic,
            "value_template": f"{{{{ value_json.{key} }}}}",
            "device_class": device_class, "state_class": state_class,
            "unit_of_measurement": UNITS[col], "device": device,
            "availability_topic": f"cth01/{dev_eui}/availability"}))
    return out


class HomeAssistant:
    """Listener: discovery once per device, then the latest values after each report."""

    def __init__(self, store: Store, publish: Publish, prefix: str = "homeassistant") -> None:
        self.store, self.publish, self.prefix = store, publish, prefix
        self._announced: set[str] = set()
        self._worker = _Worker("cth01-homeassistant")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "readings":
            for eui in data["devices"]:
                self._worker.jobs.put(lambda eui=eui: self._state(eui))

    def state(self, dev_eui: str) -> dict[str, Any]:
        """The latest stored value of every sensor of the device."""
        did = self.store.device_id(dev_eui)
        out: dict[str, Any] = {}
        dev_cols = ", ".join(HA_DEVICE_SENSORS)
        rows = self.store.query_dicts(f"SELECT {dev_cols} FROM reading WHERE device_id = ? "
                                      f"ORDER BY ts DESC LIMIT 1", (did,))
        if rows:
            out.update({k: v for k, v in rows[0].items() if v is not None})
        ch_cols = ", ".join(HA_CHANNEL_SENSORS)
        rows = self.store.query_dicts(
            f"SELECT channel, {ch_cols} FROM channel_reading c WHERE device_id = ? AND ts = "
            f"(SELECT max(ts) FROM channel_reading x WHERE x.device_id = c.device_id AND "
            f"x.channel = c.channel)", (did,))
        for r in rows:
            ch = r.pop("channel")
            out.update({f"ch{ch}_{k}": v for k, v in r.items() if v is not None})
        return out

    def _state(self, dev_eui: str) -> None:
        if dev_eui not in self._announced:
            device = self.store.device(dev_eui) or {}
            for topic, config in ha_discovery(dev_eui, device.get("name"), self.prefix):
                self.publish(topic, json.dumps(config).encode(), retain=True)
            self.publish(f"cth01/{dev_eui}/availability", b"online", retain=True)
            self._announced.add(dev_eui)
        self.publish(f"cth01/{dev_eui}/state", json.dumps(self.state(dev_eui)).encode(),
                     retain=True)

    def stop(self) -> None:
        self._worker.stop()
