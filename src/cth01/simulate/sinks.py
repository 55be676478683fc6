"""Where a simulated fleet's uplinks go, and where its downlinks come from.

Owns: the `Sink` interface the runner talks to and three sinks —
  JsonLinesSink        one JSON object per uplink per line (stdout, a file)
  ChirpStackMqttSink   ChirpStack v4 MQTT integration events (`event/up`, `event/join`) and
                       downlink commands (`command/down`), through a real MQTT broker
  CallbackSink         an in-process consumer (the hub's built-in simulated fleet)
and the per-device LoRaWAN session view both network-server-like sinks need (frame counter,
DevAddr, join detection).

ChirpStack v4 JSON follows the Protobuf JSON mapping of `api/proto/integration/integration.proto`
(UplinkEvent, JoinEvent, DownlinkCommand) and `api/proto/gw/gw.proto` (UplinkRxInfo,
UplinkTxInfo) in chirpstack/chirpstack: lowerCamelCase names, bytes as base64, enums by name,
timestamps RFC 3339 UTC.

Must never: decode payloads (that is the consumer's job), advance simulated time, or let a bad
message from the broker raise into the runner — it is logged (stderr) and counted.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import sys
import threading
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from cth01.device import Fleet, UplinkFrame

# a fixed UUID so that a simulator restarted with the defaults publishes to the same topics
DEFAULT_APPLICATION_ID = "5f1c0c8e-7d0a-4c1e-9b8a-c7401f1ee7a1"
DEFAULT_TENANT_ID = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
DEFAULT_DEVICE_PROFILE_ID = "c7401000-0000-4000-8000-000000000001"
DEVICE_PROFILE_NAME = "Milesight CTH01"
DEFAULT_GATEWAY_ID = "0016c001f1500001"
EU868_CHANNEL_0_HZ = 868_100_000
_EUI = re.compile(r"[0-9a-fA-F]{16}")


class Downlink(NamedTuple):
    """A downlink from the application side, for the fleet's network."""

    dev_eui: str
    payload: bytes
    f_port: int


class Sink(Protocol):
    """What the runner needs from a destination. `send` is called for every uplink in time
    order; `poll_downlinks` once per simulated second; `close` once at the end."""

    def send(self, frame: UplinkFrame, fleet: Fleet) -> None: ...

    def poll_downlinks(self) -> list[Downlink]: ...

    def close(self) -> None: ...


def iso_utc(t: float) -> str:
    """RFC 3339 / ISO 8601 UTC with a Z: 2025-01-01T00:00:00Z (microseconds when not whole)."""
    dt = datetime.fromtimestamp(t, UTC)
    fmt = "%Y-%m-%dT%H:%M:%SZ" if dt.microsecond == 0 else "%Y-%m-%dT%H:%M:%S.%fZ"
    return dt.strftime(fmt)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Sessions:
    """The network server's view of each device's LoRaWAN session: a new session starts at
    each join (read from the device's `joined_at`, so a rejoin after an outage or a reboot is
    seen), with a new DevAddr and an uplink frame counter restarting at 0 (LoRaWAN 1.0.x
    FCntUp after OTAA). Counts only the uplinks that reached the network."""

    def __init__(self) -> None:
        self._session: dict[str, tuple[Any, str]] = {}
        self._f_cnt: dict[str, int] = {}

    def next(self, frame: UplinkFrame, fleet: Fleet | None) -> tuple[int, str, bool]:
        """(f_cnt of this uplink, DevAddr, whether it is the first uplink of a new session)."""
        eui = frame.dev_eui
        dev = fleet.by_eui.get(eui) if fleet is not None else None
        joined_at = getattr(dev, "joined_at", None)
        old = self._session.get(eui)
        new = old is None or old[0] != joined_at
        if new:
            addr = zlib.crc32(f"{eui}:{joined_at}".encode()) & 0x01FF_FFFF  # NetID 000000
            self._session[eui] = (joined_at, f"{addr:08x}")
            self._f_cnt[eui] = 0
        f_cnt = self._f_cnt[eui]
        self._f_cnt[eui] = f_cnt + 1
        return f_cnt, self._session[eui][1], new


# --- JSON lines ----------------------------------------------------------------------------------

class JsonLinesSink:
    """One JSON object per uplink per line, flushed per line: dev_eui, time (ISO 8601 UTC),
    f_port, payload_hex, payload_base64, kind, f_cnt (per device and session, from 0).
    The stream is not closed (it is usually stdout); no downlinks."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.sessions = Sessions()
        self.sent = 0

    def send(self, frame: UplinkFrame, fleet: Fleet) -> None:
        f_cnt, _, _ = self.sessions.next(frame, fleet)
        doc = {"dev_eui": frame.dev_eui, "time": iso_utc(frame.time), "f_port": frame.f_port,
               "payload_hex": frame.payload.hex(), "payload_base64": b64(frame.payload),
               "kind": frame.kind, "f_cnt": f_cnt}
        self.stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self.stream.flush()
        self.sent += 1

    def poll_downlinks(self) -> list[Downlink]:
        return []

    def close(self) -> None:
        self.stream.flush()


# --- in-process ----------------------------------------------------------------------------------

class CallbackSink:
    """Hands every uplink to `fn(frame)`; downlinks pushed with `push_downlink` (from any
    thread) reach the fleet at the next simulated second."""

    def __init__(self, fn: Callable[[UplinkFrame], object]) -> None:
        self.fn = fn
        self._downlinks: deque[Downlink] = deque()

    def send(self, frame: UplinkFrame, fleet: Fleet) -> None:
        self.fn(frame)

    def push_downlink(self, dev_eui: str, payload: bytes, f_port: int = 85) -> None:
        self._downlinks.append(Downlink(dev_eui.lower(), bytes(payload), int(f_port)))

    def poll_downlinks(self) -> list[Downlink]:
        out = []
        while self._downlinks:
            out.append(self._downlinks.popleft())
        return out

    def close(self) -> None:
        pass


# --- ChirpStack v4 over MQTT ---------------------------------------------------------------------

class SinkError(RuntimeError):
    """A sink that cannot work at all (e.g. no broker at the address)."""


class ChirpStackMqttSink:
    """Publishes what a ChirpStack v4 MQTT integration publishes for a fleet, and takes its
    downlink commands.

    Topics (`{app}` = application_id, `{eui}` = DevEUI, lowercase hex):
      application/{app}/device/{eui}/event/up      UplinkEvent JSON, QoS 1, per uplink
      application/{app}/device/{eui}/event/join    JoinEvent JSON, before the first uplink of
                                                   each session (ChirpStack sends it "at the
                                                   first uplink after OTAA")
      application/{app}/device/+/command/down      subscribed: DownlinkCommand JSON
                                                   {"devEui", "confirmed", "fPort", "data"}

    The paho client runs its network loop in a thread and reconnects by itself with an
    exponential backoff (1 s doubling to `max_backoff_s`), re-subscribing on each connect.
    Uplinks published while the broker is away are kept in memory by paho (QoS 1, unbounded
    queue) and sent, in order, once the connection is back; `close` waits up to
    `close_timeout_s` for the broker to acknowledge everything. A bad `command/down`
    (not JSON, bad base64, bad port, a device not in the fleet...) is logged with the reason
    and counted in `rejected` — never raised.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883,
                 application_id: str = DEFAULT_APPLICATION_ID, *,
                 application_name: str = "cth01-simulated-fleet",
                 tenant_id: str = DEFAULT_TENANT_ID, tenant_name: str = "cth01 simulator",
                 device_profile_id: str = DEFAULT_DEVICE_PROFILE_ID,
                 gateway_id: str = DEFAULT_GATEWAY_ID, dev_euis: Iterable[str] | None = None,
                 client_id: str | None = None, keepalive_s: int = 30,
                 connect_timeout_s: float = 5.0, close_timeout_s: float = 10.0,
                 max_backoff_s: int = 30, max_pending: int = 10_000, seed: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        self.application_id = application_id
        self.device_info_base = {
            "tenantId": tenant_id, "tenantName": tenant_name,
            "applicationId": application_id, "applicationName": application_name,
            "deviceProfileId": device_profile_id, "deviceProfileName": DEVICE_PROFILE_NAME,
        }
        self.gateway_id = gateway_id
        self.known = None if dev_euis is None else {e.lower() for e in dev_euis}
        self.sessions = Sessions()
        self.close_timeout_s = close_timeout_s
        self.max_pending = max_pending
        self._log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self._rng = random.Random(seed)
        self._down_prefix = f"application/{application_id}/device/"
        self._down_topic = f"{self._down_prefix}+/command/down"
        self._downlinks: deque[Downlink] = deque()
        self._cond = threading.Condition()
        self._connected = False
        self._connects = 0
        self._first_connect = threading.Event()
        self._connect_error: str | None = None
        self.published = 0  # events handed to paho (up + join)
        self.acknowledged = 0  # events the broker acknowledged (PUBACK)
        self.uplinks = 0
        self.joins = 0
        self.received = 0  # command/down messages received
        self.rejected: Counter[str] = Counter()  # reason -> count

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"cth01-sim-{uuid.uuid4().hex[:12]}",
                                  clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max_backoff_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(host, port, keepalive=keepalive_s)
        except (OSError, ValueError) as exc:
            raise SinkError(f"cannot connect to the MQTT broker at {host}:{port} "
                            f"({exc})") from None
        self.client.loop_start()
        if not self._first_connect.wait(connect_timeout_s) or self._connect_error:
            self.client.loop_stop()
            self.client.disconnect()
            reason = self._connect_error or f"no answer within {connect_timeout_s:g} s"
            raise SinkError(f"the MQTT broker at {host}:{port} refused the connection "
                            f"({reason})")

    # -- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            self._first_connect.set()
            return
        client.subscribe(self._down_topic, qos=1)
        with self._cond:
            self._connected = True
            self._connects += 1
            self._cond.notify_all()
        if self._connects > 1:
            self._log(f"mqtt: reconnected to the broker ({self.pending} event(s) to resend)")
        self._first_connect.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self._cond.notify_all()
        if was and reason.is_failure:
            self._log(f"mqtt: connection to the broker lost ({reason}); reconnecting with "
                      f"backoff, uplinks are queued meanwhile")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._cond:
            self.acknowledged += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        try:
            self._downlinks.append(self._command(msg.topic, msg.payload))
        except ValueError as exc:
            self.rejected[str(exc).split(":")[0]] += 1
            self._log(f"mqtt: rejected command/down on {msg.topic}: {exc}")
        except Exception as exc:  # a bug here must not kill paho's network thread
            self.rejected["internal error"] += 1
            self._log(f"mqtt: rejected command/down on {msg.topic}: internal error {exc!r}")

    def _command(self, topic: str, payload: bytes) -> Downlink:
        """A `command/down` message as a Downlink, or ValueError("<reason>: <detail>")."""
        topic_eui = topic[len(self._down_prefix):].split("/")[0].lower()
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object: a DownlinkCommand is an object")
        eui = doc.get("devEui", topic_eui)
        if not isinstance(eui, str) or not _EUI.fullmatch(eui):
            raise ValueError(f"bad devEui: {eui!r} is not 16 hex digits")
        eui = eui.lower()
        if eui != topic_eui:
            raise ValueError(f"devEui mismatch: {eui} in the message, {topic_eui} in the topic")
        if self.known is not None and eui not in self.known:
            raise ValueError(f"unknown device: {eui} is not in the fleet")
        f_port = doc.get("fPort")
        if isinstance(f_port, bool) or not isinstance(f_port, int) or not 1 <= f_port <= 223:
            raise ValueError(f"bad fPort: {f_port!r} (an application port is 1-223)")
        confirmed = doc.get("confirmed", False)
        if not isinstance(confirmed, bool):
            raise ValueError(f"bad confirmed: {confirmed!r} is not true/false")
        data = doc.get("data")
        if not isinstance(data, str):
            reason = "needs a codec; send data" if "object" in doc else "missing"
            raise ValueError(f"bad data: {reason} (base64 bytes)")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"bad data: not base64 ({exc})") from None
        return Downlink(eui, raw, f_port)

    # -- the Sink interface (simulation thread) -----------------------------------------------

    @property
    def pending(self) -> int:
        """Events handed to paho that the broker has not acknowledged yet."""
        return self.published - self.acknowledged

    @property
    def connected(self) -> bool:
        return self._connected

    def send(self, frame: UplinkFrame, fleet: Fleet) -> None:
        f_cnt, dev_addr, new_session = self.sessions.next(frame, fleet)
        dev = fleet.by_eui.get(frame.dev_eui) if fleet is not None else None
        base = f"application/{self.application_id}/device/{frame.dev_eui}/event/"
        info = self.device_info(frame.dev_eui)
        if new_session:
            join = {"deduplicationId": str(uuid.uuid4()), "time": iso_utc(frame.time),
                    "deviceInfo": info, "devAddr": dev_addr}
            self._publish(base + "join", join)
            self.joins += 1
        self._publish(base + "up", self.uplink_event(frame, f_cnt, dev_addr, info, dev))
        self.uplinks += 1

    def device_info(self, dev_eui: str) -> dict[str, Any]:
        return {**self.device_info_base, "deviceName": f"cth01-{dev_eui}", "devEui": dev_eui,
                "tags": {}}

    def uplink_event(self, frame: UplinkFrame, f_cnt: int, dev_addr: str,
                     info: dict[str, Any], dev: Any = None) -> dict[str, Any]:
        """The UplinkEvent of one frame (proto3 JSON mapping, as ChirpStack v4 publishes)."""
        lorawan = getattr(getattr(dev, "settings", None), "lorawan", None)
        dr = int(getattr(lorawan, "data_rate", 5))
        # a steady link per device (placement) with a little fading per frame
        h = zlib.crc32(frame.dev_eui.encode())
        rssi = -60 - h % 50 + self._rng.randint(-3, 3)
        snr = round(10.0 - (h >> 8) % 15 + self._rng.uniform(-1.5, 1.5), 1)
        context = (frame.time * 1_000_000 & 0xFFFF_FFFF).to_bytes(4, "big")
        return {
            "deduplicationId": str(uuid.uuid4()),
            "time": iso_utc(frame.time),
            "deviceInfo": info,
            "devAddr": dev_addr,
            "adr": bool(getattr(lorawan, "adr", True)),
            "dr": dr,
            "fCnt": f_cnt,
            "fPort": frame.f_port,
            "confirmed": bool(getattr(lorawan, "confirmed", False)),
            "data": b64(frame.payload),
            "rxInfo": [{
                "gatewayId": self.gateway_id,
                "uplinkId": self._rng.getrandbits(32),
                "nsTime": iso_utc(frame.time),
                "rssi": rssi,
                "snr": snr,
                "channel": 0,
                "location": {},
                "context": b64(context),
                "metadata": {},
                "crcStatus": "CRC_OK",
            }],
            "txInfo": {
                "frequency": EU868_CHANNEL_0_HZ,
                "modulation": {"lora": {"bandwidth": 125_000,
                                        "spreadingFactor": 12 - dr if 0 <= dr <= 5 else 7,
                                        "codeRate": "CR_4_5"}},
            },
        }

    def _publish(self, topic: str, doc: dict[str, Any]) -> None:
        with self._cond:
            # back-pressure while connected, so an unpaced run cannot outgrow the broker;
            # while disconnected paho keeps queueing (the point of QoS 1 here)
            while self._connected and self.pending >= self.max_pending:
                self._cond.wait(1.0)
            self.published += 1
        info = self.client.publish(topic, json.dumps(doc, separators=(",", ":")), qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._cond:
                self.published -= 1
            self._log(f"mqtt: could not queue an event on {topic}: "
                      f"{mqtt.error_string(info.rc)}")

    def poll_downlinks(self) -> list[Downlink]:
        out = []
        while self._downlinks:
            out.append(self._downlinks.popleft())
        return out

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until the broker acknowledged every published event; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.pending <= 0, timeout_s)

    def close(self) -> None:
        """Wait (up to close_timeout_s) for outstanding acknowledgements, then disconnect."""
        if not self.flush(self.close_timeout_s):
            self._log(f"mqtt: {self.pending} event(s) not acknowledged by the broker after "
                      f"{self.close_timeout_s:g} s; closing anyway")
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())
