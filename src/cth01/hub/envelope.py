"""What a transport hands the hub: one `Envelope` per uplink, one `NetworkEvent` per other event.

Owns: the transport-neutral uplink value, the dedup key of an uplink, and the parsers of the
network servers' JSON: ChirpStack v4 (MQTT integration events and HTTP integration, which post
the same JSON) and The Things Stack v3 (MQTT `up` messages and webhooks, same JSON).

A parser either returns a value or raises `MessageError(reason, ...)` with what was wrong
(not JSON, a missing field, bad base64, a DevEUI that is not 16 hex digits, a number out of its
range: a frame counter beyond 32 bits, an fPort beyond 255, a time before 2000 or from 2100 on,
which no database column should have to refuse later...). It never decodes
the LoRaWAN payload itself: that is the pipeline's job, so that a payload that fails to decode
still has a well-formed envelope and lands in the dead-letter table with its raw bytes.

Field names follow the Protobuf JSON mapping of chirpstack `api/proto/integration/integration.proto`
(lowerCamelCase, bytes base64, timestamps RFC 3339) and The Things Stack's `v3` JSON
(snake_case, `frm_payload` base64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from typing import Any, Literal

import msgspec

Source = Literal["chirpstack", "tts", "http", "fleet"]
_EUI = re.compile(r"[0-9a-fA-F]{16}")
F_CNT_MAX = 2**32 - 1  # LoRaWAN frame counters are 32 bits
TIME_MIN = 946684800.0  # 2000-01-01T00:00:00Z: a network's receive time is after this...
TIME_MAX = 4102444800.0  # 2100-01-01T00:00:00Z ... and before this


class MessageError(ValueError):
    """A network message the hub cannot take: `reason` says why; `source`, `topic` and
    `dev_eui` (when it could be read) give the context. The raw message goes to dead letters."""

    def __init__(self, reason: str, *, source: str, topic: str = "",
                 dev_eui: str | None = None) -> None:
        super().__init__(f"{source} message on {topic or '-'}: {reason}")
        self.reason = reason
        self.source = source
        self.topic = topic
        self.dev_eui = dev_eui


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One uplink as the network delivered it.

    `received_at` is the network's receive time (Unix seconds, UTC); `key` a 63-bit hash that is
    the same every time the same uplink is delivered again (broker redelivery after a crash, a
    webhook retry), so the store keeps it once. `network` holds what is needed to send this
    device a downlink through the same network (application id, TTS device id...).
    """

    source: str
    dev_eui: str
    received_at: float
    f_port: int
    f_cnt: int | None
    payload: bytes
    key: int
    network: dict[str, str] = {}


class NetworkEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A non-uplink event that matters to the hub: `kind` is "join", "ack" (a confirmed
    downlink was acknowledged, `ok` False for a nack), "txack" (the gateway sent a downlink),
    "queued" (TTS took a downlink into its queue), "status", "downlink_failed", "log",
    "location" (the network resolved the device's position) or "integration" (a ChirpStack
    integration's own event); `reference` the hub's id of the downlink it is about (the
    ChirpStack queue item id, the hub's TTS correlation id) when there is one; `detail` a
    readable account (the network's error, the nack, the position...)."""

    source: str
    kind: str
    dev_eui: str
    time: float
    ok: bool = True
    reference: str | None = None
    detail: str = ""
    network: dict[str, str] = {}


def uplink_key(dev_eui: str, f_cnt: int | None, received_at: float, payload: bytes) -> int:
    """The dedup key: a 63-bit BLAKE2b of DevEUI, frame counter, receive time (ms) and bytes.
    Two different uplinks share a key with probability ~2^-63 per pair."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{dev_eui}|{f_cnt}|{round(received_at * 1000)}|".encode())
    h.update(payload)
    return int.from_bytes(h.digest(), "big") >> 1


def parse_time(value: Any, *, source: str, topic: str, field: str,
               dev_eui: str | None = None) -> float:
    """RFC 3339 (any precision, Z or offset) to Unix seconds, from 2000 to 2099."""
    if not isinstance(value, str):
        raise MessageError(f"bad {field}: {value!r} is not an RFC 3339 time", source=source,
                           topic=topic, dev_eui=dev_eui)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    frac = re.match(r"(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)", text)
    if frac:  # Python < 3.12 takes at most 6 fractional digits; networks send 9
        text = f"{frac[1]}.{frac[2][:6].ljust(6, '0')}{frac[3]}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise MessageError(f"bad {field}: {value!r} is not an RFC 3339 time", source=source,
                           topic=topic, dev_eui=dev_eui) from None
    if dt.tzinfo is None:
        raise MessageError(f"bad {field}: {value!r} has no time zone", source=source,
                           topic=topic, dev_eui=dev_eui)
    t = dt.timestamp()
    if not TIME_MIN <= t < TIME_MAX:
        raise MessageError(f"bad {field}: {value!r} is not between 2000 and 2099",
                           source=source, topic=topic, dev_eui=dev_eui)
    return t


def _b64(value: Any, *, source: str, topic: str, field: str, dev_eui: str | None) -> bytes:
    if not isinstance(value, str):
        raise MessageError(f"bad {field}: missing (base64 bytes)", source=source, topic=topic,
                           dev_eui=dev_eui)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageError(f"bad {field}: not base64 ({exc})", source=source, topic=topic,
                           dev_eui=dev_eui) from None


def _eui(value: Any, *, source: str, topic: str, field: str) -> str:
    if not isinstance(value, str) or not _EUI.fullmatch(value):
        raise MessageError(f"bad {field}: {value!r} is not 16 hex digits", source=source,
                           topic=topic)
    return value.lower()


def _object(body: bytes | str | dict[str, Any], *, source: str, topic: str) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}", source=source, topic=topic) from None
    if not isinstance(doc, dict):
        raise MessageError("not a JSON object", source=source, topic=topic)
    return doc


def _port(value: Any, *, source: str, topic: str, dev_eui: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise MessageError(f"bad fPort: {value!r} is not an integer 0..255", source=source,
                           topic=topic, dev_eui=dev_eui)
    return value


def _counter(value: Any, *, source: str, topic: str, dev_eui: str, field: str) -> int | None:
    """A frame counter (None when the message has none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= F_CNT_MAX:
        raise MessageError(f"bad {field}: {value!r} is not an integer 0..{F_CNT_MAX}",
                           source=source, topic=topic, dev_eui=dev_eui)
    return value


# --- ChirpStack v4 ----------------------------------------------------------------------------

CHIRPSTACK_EVENTS = ("up", "join", "ack", "txack", "status", "log", "location", "integration")
# LogEvent codes (integration.proto LogCode) of an error about a downlink; when ChirpStack dropped
# the device-queue item (payload size, frame counter, expiry) the item is context.queue_item_id
_CHIRPSTACK_DOWNLINK_CODES = frozenset({"DOWNLINK_PAYLOAD_SIZE", "DOWNLINK_CODEC",
                                        "DOWNLINK_GATEWAY", "F_CNT_DOWN", "EXPIRED"})


def chirpstack_event(topic: str) -> str | None:
    """The event type of a ChirpStack integration topic
    (`application/{app}/device/{eui}/event/{type}`), or None for another topic."""
    parts = topic.split("/")
    if len(parts) == 6 and parts[0] == "application" and parts[2] == "device" \
            and parts[4] == "event":
        return parts[5]
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_chirpstack(body: bytes | str | dict[str, Any], *, event: str = "up",
                     topic: str = "", source: str = "chirpstack") -> Envelope | NetworkEvent:
    """One ChirpStack v4 integration event (MQTT or HTTP `?event=up`) as an Envelope (`up`) or
    a NetworkEvent of the event's own kind (`join`, `ack`, `txack`, `status`, `log`,
    `location`, `integration`). An `ack` with `acknowledged` false is a nack of the queue
    item `queueItemId`; a `log` of level ERROR about a downlink (a DOWNLINK_* code, F_CNT_DOWN,
    EXPIRED, or any with `context.queue_item_id`) becomes "downlink_failed" with that item as
    its reference. Another event type is a MessageError."""
    doc = _object(body, source=source, topic=topic)
    info = doc.get("deviceInfo")
    if not isinstance(info, dict):
        raise MessageError("missing deviceInfo", source=source, topic=topic)
    eui = _eui(info.get("devEui"), source=source, topic=topic, field="deviceInfo.devEui")
    network = {k: str(info[k]) for k in ("applicationId", "tenantId", "deviceName")
               if isinstance(info.get(k), str)}
    if event == "up":
        received_at = parse_time(doc.get("time"), source=source, topic=topic, field="time",
                                 dev_eui=eui)
        f_port = _port(doc.get("fPort", 0), source=source, topic=topic, dev_eui=eui)
        payload = b"" if "data" not in doc and f_port == 0 else _b64(
            doc.get("data"), source=source, topic=topic, field="data", dev_eui=eui)
        f_cnt = _counter(doc.get("fCnt"), source=source, topic=topic, dev_eui=eui,
                         field="fCnt")
        dedup = doc.get("deduplicationId")
        key = (uplink_key(eui, None, 0.0, dedup.encode()) if isinstance(dedup, str) and dedup
               else uplink_key(eui, f_cnt, received_at, payload))
        return Envelope(source=source, dev_eui=eui, received_at=received_at, f_port=f_port,
                        f_cnt=f_cnt, payload=payload, key=key, network=network)
    if event not in CHIRPSTACK_EVENTS:
        raise MessageError(f"unknown event type {event!r}", source=source, topic=topic,
                           dev_eui=eui)
    t = parse_time(doc.get("time"), source=source, topic=topic, field="time", dev_eui=eui)
    reference = _text(doc.get("queueItemId"))
    kind, ok, detail = event, True, ""
    if event == "ack":
        ok = doc.get("acknowledged") is True
        if not ok:
            detail = (f"not acknowledged by the device (ChirpStack ack event, fCntDown "
                      f"{doc.get('fCntDown', 0)})")
    elif event == "txack":
        detail = f"sent by gateway {doc.get('gatewayId', '?')} (fCntDown {doc.get('fCntDown', 0)})"
    elif event == "log":
        level, code = str(doc.get("level", "INFO")), str(doc.get("code", "UNKNOWN"))
        context = doc.get("context")
        context = context if isinstance(context, dict) else {}
        reference = reference or _text(context.get("queue_item_id"))
        if level == "ERROR" and (code in _CHIRPSTACK_DOWNLINK_CODES
                                 or code.startswith("DOWNLINK") or reference is not None):
            kind, ok = "downlink_failed", False
        detail = " ".join(filter(None, (f"ChirpStack {level} {code}:",
                                        str(doc.get("description", "")),
                                        ", ".join(f"{k}={v}" for k, v in context.items()
                                                  if k != "queue_item_id"))))
    elif event == "status":
        detail = f"margin {doc.get('margin')} dB"
        if doc.get("externalPowerSource"):
            detail += ", external power"
        elif isinstance(doc.get("batteryLevel"), (int, float)):
            detail += f", battery {doc['batteryLevel']} %"
    elif event == "location":
        loc = doc.get("location")
        if not isinstance(loc, dict):
            raise MessageError("missing location", source=source, topic=topic, dev_eui=eui)
        detail = (f"{loc.get('latitude')}, {loc.get('longitude')}, altitude "
                  f"{loc.get('altitude', 0)} m ({loc.get('source', 'UNKNOWN')}, accuracy "
                  f"{loc.get('accuracy', 0)} m)")
    elif event == "integration":
        detail = f"{doc.get('integrationName', '?')} {doc.get('eventType', '?')}"
    elif event == "join":
        detail = f"devAddr {doc.get('devAddr', '?')}"
    return NetworkEvent(source=source, kind=kind, dev_eui=eui, time=t, ok=ok,
                        reference=reference, detail=detail, network=network)


def chirpstack_downlink(dev_eui: str, payload: bytes, f_port: int, *,
                        confirmed: bool = False, reference: str | None = None) -> bytes:
    """A ChirpStack v4 DownlinkCommand (`.../command/down`); `reference` (a UUID) becomes the
    queue item id that later ack / txack / log events carry."""
    doc = {"devEui": dev_eui, "confirmed": confirmed, "fPort": f_port,
           "data": base64.b64encode(payload).decode("ascii")}
    if reference is not None:
        doc = {"id": reference, **doc}
    return msgspec.json.encode(doc)


# --- The Things Stack v3 ----------------------------------------------------------------------

TTS_EVENTS = ("up", "join", "down/queued", "down/sent", "down/ack", "down/nack", "down/failed")
# what the hub publishes (downlink queue operations), not events: never parsed as messages
TTS_COMMANDS = ("down/push", "down/replace")
# The hub tags each downlink it pushes with the correlation id `cth01:downlink:<reference>`;
# TTS carries it in every later event about that downlink (queued, sent, ack, nack, failed).
TTS_CORRELATION_PREFIX = "cth01:downlink:"
# event -> (NetworkEvent kind, ok, the field of the ApplicationUp message that carries it)
_TTS_KINDS = {"join": ("join", True, "join_accept"),
              "down/queued": ("queued", True, "downlink_queued"),
              "down/sent": ("txack", True, "downlink_sent"),
              "down/ack": ("ack", True, "downlink_ack"),
              "down/nack": ("ack", False, "downlink_nack"),
              "down/failed": ("downlink_failed", False, "downlink_failed")}


def tts_event(topic: str) -> tuple[str, str, str] | None:
    """(application id with `@tenant`, device id, event) of a TTS v3 event topic
    (`v3/{app}@{tenant}/devices/{device}/{event...}`), or None for another topic — including
    the downlink queue topics the hub itself publishes to (`down/push`, `down/replace`)."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[0] == "v3" and parts[2] == "devices":
        event = "/".join(parts[4:])
        return None if event in TTS_COMMANDS else (parts[1], parts[3], event)
    return None


def _tts_reference(*lists: Any) -> str | None:
    """The hub's reference in the first correlation id list that has one."""
    for ids in lists:
        if isinstance(ids, list):
            for cid in ids:
                if isinstance(cid, str) and cid.startswith(TTS_CORRELATION_PREFIX):
                    return cid[len(TTS_CORRELATION_PREFIX):]
    return None


def parse_tts(body: bytes | str | dict[str, Any], *, event: str = "up", topic: str = "",
              source: str = "tts") -> Envelope | NetworkEvent:
    """One The Things Stack v3 message (MQTT `up`, `join`, `down/*`, or a webhook body, which
    carries the same JSON) as an Envelope or a NetworkEvent: `down/queued` "queued",
    `down/sent` "txack", `down/ack` and `down/nack` "ack" (`ok` False for the nack),
    `down/failed` "downlink_failed" with the network's error as detail; the reference is the
    hub's own (`TTS_CORRELATION_PREFIX`), found in the downlink's correlation ids."""
    doc = _object(body, source=source, topic=topic)
    ids = doc.get("end_device_ids")
    if not isinstance(ids, dict):
        raise MessageError("missing end_device_ids", source=source, topic=topic)
    eui = _eui(ids.get("dev_eui"), source=source, topic=topic, field="end_device_ids.dev_eui")
    app = ids.get("application_ids", {})
    network = {"device_id": str(ids.get("device_id", ""))}
    parts = tts_event(topic)
    if parts is not None:  # `{application}@{tenant}`, needed for the down/push topic
        network["topic_application"] = parts[0]
    if isinstance(app, dict) and isinstance(app.get("application_id"), str):
        network["application_id"] = app["application_id"]
    if event == "up" or "uplink_message" in doc:
        up = doc.get("uplink_message")
        if not isinstance(up, dict):
            raise MessageError("missing uplink_message", source=source, topic=topic,
                               dev_eui=eui)
        when = up.get("received_at", doc.get("received_at"))
        received_at = parse_time(when, source=source, topic=topic, field="received_at",
                                 dev_eui=eui)
        f_port = _port(up.get("f_port", 0), source=source, topic=topic, dev_eui=eui)
        payload = b"" if "frm_payload" not in up and f_port == 0 else _b64(
            up.get("frm_payload"), source=source, topic=topic, field="frm_payload",
            dev_eui=eui)
        f_cnt = _counter(up.get("f_cnt", 0), source=source, topic=topic, dev_eui=eui,
                         field="f_cnt")
        return Envelope(source=source, dev_eui=eui, received_at=received_at, f_port=f_port,
                        f_cnt=f_cnt, payload=payload,
                        key=uplink_key(eui, f_cnt, received_at, payload), network=network)
    if event not in _TTS_KINDS:
        raise MessageError(f"unknown event type {event!r}", source=source, topic=topic,
                           dev_eui=eui)
    t = parse_time(doc.get("received_at"), source=source, topic=topic, field="received_at",
                   dev_eui=eui)
    kind, ok, field = _TTS_KINDS[event]
    message = doc.get(field)
    message = message if isinstance(message, dict) else {}
    downlink = message.get("downlink", message) if event == "down/failed" else message
    reference = _tts_reference(downlink.get("correlation_ids") if isinstance(downlink, dict)
                               else None, doc.get("correlation_ids"))
    detail = ""
    if event == "down/nack":
        detail = "not acknowledged by the device (TTS down/nack)"
    elif event == "down/failed":
        error = message.get("error")
        error = error if isinstance(error, dict) else {}
        name = ":".join(str(error[k]) for k in ("namespace", "name") if error.get(k))
        detail = " ".join(filter(None, ("TTS down/failed:", name,
                                        str(error.get("message_format", "")))))
    elif event == "join":
        detail = f"dev_addr {ids.get('dev_addr', '?')}"
    return NetworkEvent(source=source, kind=kind, dev_eui=eui, time=t, ok=ok,
                        reference=reference, detail=detail, network=network)


def tts_downlink(payload: bytes, f_port: int, *, confirmed: bool = False,
                 reference: str | None = None) -> bytes:
    """A TTS v3 `down/push` message; `reference` becomes the correlation id
    `cth01:downlink:<reference>` that later down/* events carry."""
    downlink: dict[str, Any] = {
        "f_port": f_port, "frm_payload": base64.b64encode(payload).decode("ascii"),
        "priority": "NORMAL", "confirmed": confirmed}
    if reference is not None:
        downlink["correlation_ids"] = [TTS_CORRELATION_PREFIX + reference]
    return msgspec.json.encode({"downlinks": [downlink]})
