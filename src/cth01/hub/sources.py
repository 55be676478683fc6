"""Transport adapters: each turns its transport's messages into envelopes for the hub.

Owns:
  MqttSource   ChirpStack v4 (`application/+/device/+/event/+`) and The Things Stack v3
               (`v3/+/devices/+/...`) over one MQTT connection: QoS 1, persistent session
               (MQTT 5, clean start off, session kept by the broker for `session_expiry_s`),
               manual acknowledgement — a PUBACK goes out only when the hub has committed
               the message — automatic reconnection with backoff; downlinks to
               `.../command/down` (ChirpStack) or `.../down/push` (TTS). The Things
               Stack's own MQTT server speaks MQTT 3.1.1 at QoS 0 only (`protocol="3.1.1"`):
               it keeps nothing for a hub that is away, so for lossless TTS ingest use its
               webhooks or its Pub/Sub integration into your own broker.
  FleetSource  the built-in virtual fleet (`cth01.device.Fleet`) run by the simulator's
               runner in a thread, paced at `speed`; its simulated time is the hub's clock.
  WebhookDownlinks  downlinks of the devices heard through the API's webhooks (api.py,
               same envelope parsers; `source` "http"): The Things Stack's down/push URL and
               key as its webhook announced them, ChirpStack's through MqttSource.
Must never: decode payloads, touch storage, or acknowledge before the hub says so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import gmqtt
import httpx
import structlog
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTv50, MQTTv311

from .envelope import (
    Envelope,
    MessageError,
    NetworkEvent,
    chirpstack_downlink,
    chirpstack_event,
    parse_chirpstack,
    parse_tts,
    tts_downlink,
    tts_event,
    uplink_key,
)
from .service import NoDownlinkPath

if TYPE_CHECKING:
    from .service import Hub

log = structlog.get_logger("cth01.hub.sources")
# A message whose commit ends after its connection closed is not acknowledged on that connection
# (gmqtt says so once per message); the broker redelivers it and the hub drops the duplicate.
logging.getLogger("gmqtt.mqtt.protocol").addFilter(
    lambda record: "CLOSED SOCKET" not in record.getMessage())


class _Acks:
    """PUBACKs decided in the hub's writer thread and sent from the MQTT loop:
    `stored(connection, mid)` (any thread) marks one message committed; the loop is woken once
    per burst and writes the burst's PUBACKs in one go (MQTT 5: a 2-byte PUBACK is "success")."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 connection: Callable[[], Any]) -> None:
        self.loop, self.connection = loop, connection
        self._lock = threading.Lock()
        self._mids: list[tuple[object, int]] = []

    def stored(self, connection: object, mid: int) -> None:
        with self._lock:
            self._mids.append((connection, mid))
            first = len(self._mids) == 1
        if first:
            with suppress(RuntimeError):  # the loop has closed: the broker redelivers
                self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            mids, self._mids = self._mids, []
        conn = self.connection()
        if conn is None or conn.is_closing():
            return  # unacknowledged: the broker redelivers on the next connection
        # only on the connection that delivered the message: after a reconnection the broker
        # redelivers it (same packet id), and that copy is acknowledged when it is stored
        data = b"".join(_PUBACK[mid] for c, mid in mids if c is conn)
        if data:
            conn.send_package(data)


_PUBACK = [bytes((0x40, 2, mid >> 8, mid & 0xFF)) for mid in range(65536)]


class MqttSource:
    """ChirpStack v4 and/or The Things Stack v3 over MQTT (see the module note).

    The client (gmqtt: asyncio, buffered reads) runs its own event loop in a thread of its own,
    so ingest does not depend on the API's loop. QoS 1 messages are taken from gmqtt's packet
    handler with their packet id (`_on_qos1`), so their PUBACKs can wait for the commit and go
    out in bursts (`_Acks`) — gmqtt's own path costs an asyncio task per message and a write
    per PUBACK, a third of the hub's time at 10,000 messages/s. That hook is gmqtt's internal
    API: the version is pinned in pyproject.toml and the end-to-end tests exercise it.
    """

    names = ("chirpstack", "tts")

    def __init__(self, url: str = "mqtt://127.0.0.1:1883", *, chirpstack: bool = True,
                 tts: bool = False, client_id: str = "cth01-hub", username: str | None = None,
                 password: str | None = None, session_expiry_s: int = 7 * 86400,
                 receive_maximum: int = 16384, keepalive_s: int = 30,
                 max_backoff_s: int = 30, protocol: str = "5") -> None:
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 1883
        self.chirpstack, self.tts = chirpstack, tts
        self.client_id = client_id
        self.username, self.password = username or u.username, password or u.password
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.max_backoff_s = max_backoff_s
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol must be 5 or 3.1.1, not {protocol!r}")
        self.protocol = protocol  # 3.1.1 for The Things Stack's own MQTT server
        self.connected = threading.Event()
        self.connects = 0
        self.hub: Hub | None = None
        self.client: gmqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acks: _Acks | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._away: deque[tuple[str, bytes, bool]] = deque(maxlen=10_000)  # while disconnected

    @property
    def broker(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def topics(self) -> list[str]:
        out = []
        if self.chirpstack:
            out.append("application/+/device/+/event/+")
        if self.tts:
            out += ["v3/+/devices/+/up", "v3/+/devices/+/join", "v3/+/devices/+/down/+"]
        return out

    # -- life cycle (any thread) --------------------------------------------------------------

    def start(self, hub: Hub) -> None:
        self.hub = hub
        started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(started)),
                                        name="cth01-mqtt", daemon=True)
        self._thread.start()
        started.wait(10)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self.connected.wait(timeout_s)

    # -- the MQTT loop ------------------------------------------------------------------------

    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        started.set()
        v5 = self.protocol == "5"
        session = ({"session_expiry_interval": self.session_expiry_s,
                    "receive_maximum": self.receive_maximum} if v5 else {})
        client = self.client = gmqtt.Client(
            self.client_id, clean_session=False, optimistic_acknowledgement=False, **session)
        self._acks = _Acks(self._loop, lambda: client._connection)
        client._package_handler._handle_qos_1_publish_packet = self._on_qos1
        client.set_config({"reconnect_retries": UNLIMITED_RECONNECTS, "reconnect_delay": 1})
        if self.username:
            client.set_auth_credentials(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        delay = 1.0
        while not self._stop.is_set():  # the first connection; gmqtt reconnects after that
            try:
                await client.connect(self.host, self.port, keepalive=self.keepalive_s,
                                     version=MQTTv50 if v5 else MQTTv311)
                break
            except Exception as exc:  # refused, unreachable: keep trying, with backoff
                log.warning("mqtt_connect_failed", broker=self.broker, error=repr(exc),
                            retry_in_s=delay)
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, self.max_backoff_s)
        await self._stop.wait()
        if client.is_connected:
            await client.disconnect()

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: Any) -> None:
        self.connects += 1
        client.reconnect_delay = 1
        client.subscribe([gmqtt.Subscription(t, qos=1) for t in self.topics])
        while self._away:
            topic, body, retain = self._away.popleft()
            client.publish(topic, body, qos=1, retain=retain)
        self.connected.set()
        log.info("mqtt_connected", broker=self.broker, session_present=bool(flags),
                 topics=self.topics)

    def _on_disconnect(self, client: gmqtt.Client, packet: Any, exc: Any = None) -> None:
        self.connected.clear()
        client.reconnect_delay = min(max(1, client.reconnect_delay) * 2, self.max_backoff_s)
        log.warning("mqtt_disconnected", broker=self.broker, reason=repr(exc or packet),
                    retry_in_s=client.reconnect_delay)

    def _on_message(self, client: gmqtt.Client, topic: str, body: bytes, qos: int,
                    properties: Any) -> int:
        self._take(topic, body, None)  # QoS 0: nothing to acknowledge
        return 0

    def _on_qos1(self, mid: int, body: bytes, topic: str, properties: Any) -> None:
        acks, conn = self._acks, self.client._connection if self.client else None
        assert acks is not None
        self._take(topic, body, partial(acks.stored, conn, mid))

    def _take(self, topic: str, body: bytes, done: Callable[[], None] | None) -> None:
        hub = self.hub
        assert hub is not None
        try:
            message = self.parse(topic, body)
        except MessageError as exc:
            hub.reject(exc, body, done)
            return
        except Exception as exc:  # a bug must not lose the message: keep it as a dead letter
            log.exception("mqtt_message_failed", topic=topic)
            hub.reject(MessageError(f"unexpected error: {exc!r}", source="mqtt", topic=topic),
                       body, done)
            return
        if message is None:  # a topic we do not take (our own downlinks echoed...)
            if done is not None:
                done()
        elif isinstance(message, Envelope):
            hub.submit(message, done)
        else:
            hub.submit_event(message, done)

    def parse(self, topic: str, body: bytes) -> Envelope | NetworkEvent | None:
        event = chirpstack_event(topic)
        if event is not None:
            return parse_chirpstack(body, event=event, topic=topic)
        parts = tts_event(topic)
        if parts is not None:
            return parse_tts(body, event=parts[2], topic=topic)
        if topic.endswith(("/command/down", "/down/push", "/down/replace")):
            return None
        raise MessageError("unknown topic", source="mqtt", topic=topic)

    # -- out (any thread) ---------------------------------------------------------------------

    def send_downlink(self, dev_eui: str, payload: bytes, f_port: int,
                      network: dict[str, str], reference: str) -> None:
        if "topic_application" in network:
            topic = (f"v3/{network['topic_application']}/devices/{network['device_id']}"
                     f"/down/push")
            body = tts_downlink(payload, f_port, reference=reference)
        elif "applicationId" in network:
            topic = f"application/{network['applicationId']}/device/{dev_eui}/command/down"
            body = chirpstack_downlink(dev_eui, payload, f_port, reference=reference)
        else:
            raise NoDownlinkPath(f"no network application known for {dev_eui}")
        if not self.connected.is_set():  # stays queued in the hub; sent on a later round
            raise ConnectionError(f"not connected to the MQTT broker {self.broker}")
        self.publish(topic, body)

    def publish(self, topic: str, body: bytes, *, retain: bool = False) -> None:
        """QoS 1, from any thread; kept (bounded) while the broker is away and sent on
        reconnection — for downlinks, notifications and Home Assistant."""
        loop = self._loop
        if loop is None:
            self._away.append((topic, body, retain))
            return
        loop.call_soon_threadsafe(self._publish, topic, body, retain)

    def _publish(self, topic: str, body: bytes, retain: bool) -> None:
        client = self.client
        if client is None or not client.is_connected:
            self._away.append((topic, body, retain))
            return
        client.publish(topic, body, qos=1, retain=retain)


class WebhookDownlinks:
    """The downlink path of devices heard through the API's webhooks (`source` "http").

    The Things Stack: a webhook with a downlink API key sends, with each message, where to
    push (`X-Downlink-Push`) and the key (`X-Downlink-Apikey`). The push URL is kept with the
    device (`network["downlink_push"]`); the key only in memory, never stored or shown — after
    a restart the device's next webhook uplink brings it again (a class A device takes a
    downlink only after an uplink anyway); until then its downlinks stay queued.
    ChirpStack: the HTTP integration carries no downlinks; with `--mqtt-url` set (ChirpStack's
    MQTT integration, always on) they go as `command/down` through MqttSource.
    A refusal by the network server (4xx) fails the downlink; other errors leave it queued."""

    names = ("http",)

    def __init__(self, mqtt: MqttSource | None = None, timeout_s: float = 10.0) -> None:
        self.mqtt = mqtt
        self._keys: dict[str, str] = {}  # push URL -> its API key
        self._client = httpx.Client(timeout=timeout_s)

    def start(self, hub: Hub) -> None:
        pass

    def stop(self) -> None:
        self._client.close()

    def remember(self, push_url: str, api_key: str) -> None:
        """A TTS webhook's downlink path (from its headers)."""
        self._keys[push_url] = api_key

    def send_downlink(self, dev_eui: str, payload: bytes, f_port: int,
                      network: dict[str, str], reference: str) -> None:
        push = network.get("downlink_push")
        if push:
            key = self._keys.get(push)
            if key is None:  # stays queued
                raise ConnectionError(f"no downlink key for {push} yet: The Things Stack "
                                      f"sends it (X-Downlink-Apikey) with the next webhook")
            r = self._client.post(push, content=tts_downlink(payload, f_port,
                                                             reference=reference),
                                  headers={"Authorization": f"Bearer {key}",
                                           "Content-Type": "application/json"})
            if 400 <= r.status_code < 500 and r.status_code not in (408, 425, 429):
                raise NoDownlinkPath(f"The Things Stack refused the downlink push "
                                     f"({r.status_code}): {r.text[:200]}")
            r.raise_for_status()
            return
        if self.mqtt is not None and "applicationId" in network:
            self.mqtt.send_downlink(dev_eui, payload, f_port, network, reference)
            return
        raise NoDownlinkPath(
            f"no downlink path for {dev_eui}: its uplinks come through a webhook that gave "
            f"none (The Things Stack: set the webhook's downlink API key; ChirpStack: give "
            f"the hub --mqtt-url for ChirpStack's MQTT integration)")


DEMO_REPORT = ("temperature", "current", "voltage", "power_factor", "active_power",
               "imported_active_energy", "thdi", "thdv", "voltage_unbalance")


class FleetSource:
    """The built-in virtual fleet as a source (see the module note)."""

    names = ("fleet",)

    def __init__(self, devices: int, *, speed: float = 1.0, seed: int = 0, events: bool = True,
                 start: int | None = None) -> None:
        from cth01.device import Fleet
        from cth01.simulate.sinks import CallbackSink, Sessions

        self.fleet = Fleet(devices, seed=seed)
        self.speed = speed
        self.events = events
        self.start_unix = int(time.time()) if start is None else start
        self.now = float(self.start_unix)
        self.sink = CallbackSink(self._on_frame)
        self.sessions = Sessions()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.hub: Hub | None = None
        self.stats: Any = None
        self._to_commission: set[str] = set()  # demo: devices to set to the rich report
        self._rich_report = b""

    def clock(self) -> float:
        """The fleet's simulated time (the hub's clock when the fleet is its source)."""
        return self.now

    def start(self, hub: Hub) -> None:
        from cth01.simulate import scenario

        self.hub = hub
        if self.events:
            scenario.apply(scenario.demo_scenario(), self.fleet, self.start_unix)
            self._commission()
        self._thread = threading.Thread(target=self._run, name="cth01-fleet", daemon=True)
        self._thread.start()

    def _commission(self) -> None:
        """As an integrator would: every other device is set (by the typed downlink, sent
        after its first periodic report, once it has joined) to report voltages, currents,
        THD and unbalance too, so the demo shows every quantity."""
        from cth01.protocol.commands import set_report_parameters

        self._rich_report = set_report_parameters(*DEMO_REPORT).payload
        self._to_commission = {device.dev_eui for device in self.fleet.devices[::2]}

    def _run(self) -> None:
        from cth01.simulate.runner import run

        def progress(stats: Any) -> None:
            self.stats = stats
            self.now = float(self.start_unix + stats.simulated_s)

        try:
            run(self.fleet, self.sink, start=self.start_unix, duration_s=10**9,
                speed=self.speed, progress=progress, progress_every_s=0.05,
                should_stop=self._stop.is_set, log=lambda m: log.warning("fleet", message=m))
        except Exception as exc:  # the fleet is a demo source: say why it stopped
            log.exception("fleet_failed", error=repr(exc))

    def _on_frame(self, frame: Any) -> None:
        hub = self.hub
        assert hub is not None
        self.now = max(self.now, float(frame.time))
        if frame.kind == "periodic" and frame.dev_eui in self._to_commission:
            self._to_commission.discard(frame.dev_eui)
            self.sink.push_downlink(frame.dev_eui, self._rich_report)
        f_cnt, dev_addr, new_session = self.sessions.next(frame, self.fleet)
        if new_session:
            hub.submit_event(NetworkEvent(source="fleet", kind="join", dev_eui=frame.dev_eui,
                                          time=float(frame.time), detail=dev_addr))
        hub.submit(Envelope(source="fleet", dev_eui=frame.dev_eui, received_at=float(frame.time),
                            f_port=frame.f_port, f_cnt=f_cnt, payload=frame.payload,
                            key=uplink_key(frame.dev_eui, f_cnt, frame.time, frame.payload)))

    def send_downlink(self, dev_eui: str, payload: bytes, f_port: int,
                      network: dict[str, str], reference: str) -> None:
        self.sink.push_downlink(dev_eui, payload, f_port)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
