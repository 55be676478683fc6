"""Transport adapters: each turns its transport's messages into envelopes for the hub.

Owns:
  MqttSource   ChirpStack v4 (`application/+/device/+/event/+`) and The Things Stack v3
               (`v3/+/devices/+/...`) over one MQTT connection: QoS 1, persistent session
               (MQTT 5, clean start off, session kept by the broker for `session_expiry_s`),
               manual acknowledgement — a PUBACK goes out only when the hub has committed
               the message — automatic reconnection with backoff; downlinks to
               `.../command/down` (ChirpStack) or `.../down/push` (TTS).
  FleetSource  the built-in virtual fleet (`cth01.device.Fleet`) run by the simulator's
               runner in a thread, paced at `speed`; its simulated time is the hub's clock.
HTTP webhooks are routes of the API (api.py) that use the same envelope parsers.
Must never: decode payloads, touch storage, or acknowledge before the hub says so.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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

if TYPE_CHECKING:
    from .service import Hub

log = structlog.get_logger("cth01.hub.sources")


class MqttSource:
    """ChirpStack v4 and/or The Things Stack v3 over MQTT (see the module note)."""

    names = ("chirpstack", "tts")

    def __init__(self, url: str = "mqtt://127.0.0.1:1883", *, chirpstack: bool = True,
                 tts: bool = False, client_id: str = "cth01-hub", username: str | None = None,
                 password: str | None = None, session_expiry_s: int = 7 * 86400,
                 receive_maximum: int = 4096, keepalive_s: int = 30,
                 max_backoff_s: int = 30) -> None:
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 1883
        self.chirpstack, self.tts = chirpstack, tts
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.connected = threading.Event()
        self.connects = 0
        self.hub: Hub | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if username or u.username:
            self.client.username_pw_set(username or u.username, password or u.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max_backoff_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def topics(self) -> list[str]:
        out = []
        if self.chirpstack:
            out.append("application/+/device/+/event/+")
        if self.tts:
            out += ["v3/+/devices/+/up", "v3/+/devices/+/join", "v3/+/devices/+/down/+"]
        return out

    def start(self, hub: Hub) -> None:
        self.hub = hub
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self.connected.wait(timeout_s)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason.is_failure:
            log.error("mqtt_connect_refused", broker=f"{self.host}:{self.port}",
                      reason=str(reason))
            return
        self.connects += 1
        client.subscribe([(t, 1) for t in self.topics])
        self.connected.set()
        log.info("mqtt_connected", broker=f"{self.host}:{self.port}",
                 session_present=bool(getattr(flags, "session_present", False)),
                 topics=self.topics)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        self.connected.clear()
        log.warning("mqtt_disconnected", broker=f"{self.host}:{self.port}", reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        hub = self.hub
        assert hub is not None
        mid, qos, topic, body = msg.mid, msg.qos, msg.topic, msg.payload

        def ack() -> None:
            if qos > 0:
                client.ack(mid, qos)

        try:
            message = self.parse(topic, body)
        except MessageError as exc:
            hub.reject(exc, body, ack)
            return
        if message is None:  # a topic we do not take (our own downlinks echoed...)
            ack()
        elif isinstance(message, Envelope):
            hub.submit(message, ack)
        else:
            hub.submit_event(message, ack)

    def parse(self, topic: str, body: bytes) -> Envelope | NetworkEvent | None:
        event = chirpstack_event(topic)
        if event is not None:
            return parse_chirpstack(body, event=event, topic=topic)
        parts = tts_event(topic)
        if parts is not None:
            return parse_tts(body, event=parts[2], topic=topic)
        if topic.endswith(("/command/down", "/down/push")):
            return None
        raise MessageError("unknown topic", source="mqtt", topic=topic)

    def send_downlink(self, dev_eui: str, payload: bytes, f_port: int,
                      network: dict[str, str], reference: str) -> None:
        if "topic_application" in network:
            topic = (f"v3/{network['topic_application']}/devices/{network['device_id']}"
                     f"/down/push")
            body = tts_downlink(payload, f_port)
        elif "applicationId" in network:
            topic = f"application/{network['applicationId']}/device/{dev_eui}/command/down"
            body = chirpstack_downlink(dev_eui, payload, f_port, reference=reference)
        else:
            raise ValueError(f"no network application known for {dev_eui}")
        info = self.client.publish(topic, body, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise ConnectionError(mqtt.error_string(info.rc))

    def publish(self, topic: str, body: bytes, *, retain: bool = False) -> None:
        """For notifications and Home Assistant (QoS 1, queued by paho while away)."""
        self.client.publish(topic, body, qos=1, retain=retain)


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

    def clock(self) -> float:
        """The fleet's simulated time (the hub's clock when the fleet is its source)."""
        return self.now

    def start(self, hub: Hub) -> None:
        from cth01.simulate import scenario

        self.hub = hub
        if self.events:
            scenario.apply(scenario.demo_scenario(), self.fleet, self.start_unix)
        self._thread = threading.Thread(target=self._run, name="cth01-fleet", daemon=True)
        self._thread.start()

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
