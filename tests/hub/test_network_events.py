"""Network events other than uplinks: ChirpStack v4 `ack`, `txack`, `log`, `status`, `location`
and `integration` events, and The Things Stack v3 over MQTT end to end (uplinks in, `down/push`
out, `down/*` events back), against a real Mosquitto (a private instance per test) and a hub
wired as `cth01 serve` wires it, running in this process; the network server is played by an
MQTT client that sends the JSON the real ones send (chirpstack `integration.proto` in its JSON
mapping; The Things Stack's `v3` ApplicationUp)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cth01.device import VirtualCTH01
from cth01.hub.config import HubConfig
from cth01.hub.envelope import (
    TTS_CORRELATION_PREFIX,
    MessageError,
    NetworkEvent,
    chirpstack_downlink,
    parse_chirpstack,
    parse_tts,
    tts_downlink,
    tts_event,
)
from cth01.protocol import commands, encode_uplink, items

from .broker import (
    HubThread,
    PrivateBroker,
    Subscriber,
    WebhookServer,
    db_rows,
    free_port,
    wait_until,
)

APP = "5f1c0c8e-7d0a-4c1e-9b8a-c7401f1ee7a1"
EUI = "24e1240000000abc"
TOKEN = "network-events-admin-token-0123"
T0 = 1_790_000_000
REPORT = encode_uplink([items.Temperature(temperature_c=24.5)])


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def device_info(eui: str = EUI) -> dict:
    return {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "ChirpStack",
            "applicationId": APP, "applicationName": "meters", "deviceProfileName": "CTH01",
            "deviceName": "meter-7", "devEui": eui, "deviceClassEnabled": "CLASS_A",
            "tags": {}}


def cs_event(kind: str, t: float = T0, eui: str = EUI, **fields) -> tuple[str, bytes]:
    """(topic, body) of a ChirpStack v4 integration event."""
    doc = {"time": iso(t), "deviceInfo": device_info(eui), **fields}
    return f"application/{APP}/device/{eui}/event/{kind}", json.dumps(doc).encode()


def cs_up(payload: bytes, f_cnt: int, t: float, eui: str = EUI) -> tuple[str, bytes]:
    return cs_event("up", t, eui, deduplicationId=str(uuid.uuid4()), devAddr="01f2a3b4",
                    adr=True, dr=5, fCnt=f_cnt, fPort=85, confirmed=False,
                    data=base64.b64encode(payload).decode())


# --- the parsers ---------------------------------------------------------------------------------

def test_location_and_integration_are_events_of_their_own_kind():
    _, body = cs_event("location", location={"latitude": 52.3676, "longitude": 4.9041,
                                             "altitude": 2.5, "source": "GEO_RESOLVER_TDOA",
                                             "accuracy": 35.0},
                       deduplicationId=str(uuid.uuid4()))
    ev = parse_chirpstack(body, event="location")
    assert isinstance(ev, NetworkEvent)
    assert (ev.kind, ev.dev_eui, ev.ok, ev.time) == ("location", EUI, True, T0)
    assert ev.detail == "52.3676, 4.9041, altitude 2.5 m (GEO_RESOLVER_TDOA, accuracy 35.0 m)"
    assert ev.network["applicationId"] == APP
    _, body = cs_event("integration", integrationName="loracloud", eventType="DAS_UplinkResponse",
                       object={"result": {}})
    ev = parse_chirpstack(body, event="integration")
    assert (ev.kind, ev.detail) == ("integration", "loracloud DAS_UplinkResponse")
    with pytest.raises(MessageError, match="missing location"):
        parse_chirpstack(cs_event("location")[1], event="location")


@pytest.mark.parametrize("kind", ["unknownthing", "down", "uplink", "Location", ""])
def test_an_event_chirpstack_does_not_have_is_refused(kind):
    with pytest.raises(MessageError, match="unknown event type") as err:
        parse_chirpstack(cs_event(kind)[1], event=kind)
    assert err.value.dev_eui == EUI


def test_chirpstack_nack_and_downlink_errors():
    qid = str(uuid.uuid4())
    ack = parse_chirpstack(cs_event("ack", queueItemId=qid, acknowledged=True, fCntDown=4)[1],
                           event="ack")
    assert (ack.kind, ack.ok, ack.reference) == ("ack", True, qid)
    # proto3 JSON leaves `false` out: an ack event without `acknowledged` is a nack
    for fields in ({"acknowledged": False}, {}):
        nack = parse_chirpstack(cs_event("ack", queueItemId=qid, fCntDown=4, **fields)[1],
                                event="ack")
        assert (nack.kind, nack.ok, nack.reference) == ("ack", False, qid)
        assert nack.detail == "not acknowledged by the device (ChirpStack ack event, fCntDown 4)"
    for code in ("DOWNLINK_PAYLOAD_SIZE", "F_CNT_DOWN", "EXPIRED"):
        log = parse_chirpstack(cs_event("log", level="ERROR", code=code,
                                        description="Device queue-item discarded",
                                        context={"queue_item_id": qid, "item_size": "60"})[1],
                               event="log")
        assert (log.kind, log.ok, log.reference) == ("downlink_failed", False, qid)
        assert log.detail == f"ChirpStack ERROR {code}: Device queue-item discarded item_size=60"
    gateway = parse_chirpstack(cs_event("log", level="ERROR", code="DOWNLINK_GATEWAY",
                                        description="TOO_LATE")[1], event="log")
    assert (gateway.kind, gateway.reference) == ("downlink_failed", None)
    for level, code in (("ERROR", "UPLINK_CODEC"), ("WARNING", "DOWNLINK_PAYLOAD_SIZE"),
                        ("INFO", "OTAA")):
        log = parse_chirpstack(cs_event("log", level=level, code=code, description="x")[1],
                               event="log")
        assert (log.kind, log.ok) == ("log", True)


def test_tts_topics_events_and_downlinks():
    assert tts_event("v3/app@acme/devices/meter-1/down/nack") == ("app@acme", "meter-1",
                                                                   "down/nack")
    assert tts_event("v3/app@acme/devices/meter-1/down/push") is None  # our own publish
    assert tts_event("v3/app@acme/devices/meter-1/down/replace") is None
    ref = str(uuid.uuid4())
    push = json.loads(tts_downlink(b"\x61\x01\x05\x00", 85, reference=ref))
    assert push == {"downlinks": [{"f_port": 85, "frm_payload": "YQEFAA==", "priority": "NORMAL",
                                   "confirmed": False,
                                   "correlation_ids": [TTS_CORRELATION_PREFIX + ref]}]}
    assert json.loads(chirpstack_downlink(EUI, b"\x61\x01\x05\x00", 85, reference=ref)) == {
        "id": ref, "devEui": EUI, "confirmed": False, "fPort": 85, "data": "YQEFAA=="}
    downlink = {**push["downlinks"][0], "correlation_ids": [
        "as:downlink:01J7", TTS_CORRELATION_PREFIX + ref]}
    cases = {"down/queued": ("downlink_queued", downlink, "queued", True),
             "down/sent": ("downlink_sent", downlink, "txack", True),
             "down/ack": ("downlink_ack", downlink, "ack", True),
             "down/nack": ("downlink_nack", downlink, "ack", False),
             "down/failed": ("downlink_failed", {"downlink": downlink, "error": {
                 "namespace": "pkg/networkserver", "name": "application_downlink_too_long",
                 "message_format": "application downlink too long", "code": 3}},
                 "downlink_failed", False)}
    for event, (field, message, kind, ok) in cases.items():
        ev = parse_tts(tts_message(field, message), event=event,
                       topic=f"v3/app@acme/devices/meter-1/{event}")
        assert (ev.kind, ev.ok, ev.reference, ev.dev_eui) == (kind, ok, ref, EUI), event
    failed = parse_tts(tts_message("downlink_failed", cases["down/failed"][1]),
                       event="down/failed")
    assert failed.detail == ("TTS down/failed: pkg/networkserver:application_downlink_too_long "
                             "application downlink too long")
    # a downlink someone else pushed (no cth01 correlation id) is about no downlink of ours
    other = parse_tts(tts_message("downlink_nack", {"f_port": 1, "correlation_ids": ["x:1"]}),
                      event="down/nack")
    assert (other.kind, other.ok, other.reference) == ("ack", False, None)
    with pytest.raises(MessageError, match="unknown event type 'down/unknown'"):
        parse_tts(tts_message("downlink_x", {}), event="down/unknown")


# --- ChirpStack end to end -----------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path: Path):
    b = PrivateBroker(tmp_path / "broker").start()
    yield b
    b.stop()


def hub_config(tmp_path: Path, broker: PrivateBroker, **options) -> HubConfig:
    return HubConfig(db=str(tmp_path / "hub.db"), mqtt_url=broker.url, port=free_port(),
                     backfill=False, admin_token=TOKEN, log_level="warning",
                     mqtt_client_id=f"test-hub-{uuid.uuid4().hex[:8]}", **options)


@pytest.fixture
def chirpstack_hub(tmp_path, broker):
    hub = HubThread(hub_config(tmp_path, broker), TOKEN)
    yield hub
    hub.stop()


def metric(hub: HubThread, name: str, **labels) -> float:
    text = hub.api("GET", "/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{want}\}} (\S+)$", text, re.M)
    return float(m[1]) if m else 0.0


def queue(hub: HubThread, eui: str, command: str, **params) -> dict:
    r = hub.api("POST", f"/api/devices/{eui}/downlinks",
                json={"command": command, "params": params})
    assert r.status_code == 202, r.text
    return r.json()


def downlink(hub: HubThread, dl_id: int) -> dict:
    listed = {d["id"]: d for d in hub.api("GET", "/api/downlinks").json()}
    one = hub.api("GET", f"/api/downlinks/{dl_id}").json()
    assert listed[dl_id] == one
    return one


def settle(db: str, publish_uplink) -> None:
    """Wait until the hub has handled everything published before: two more uplinks, the
    second published once the first is stored, so the second is in a later ingest batch than
    anything before it (network events take effect right after their batch commits)."""
    for _ in range(2):
        n = db_rows(db, "SELECT count(*) FROM uplink")[0][0]
        publish_uplink(n)
        wait_until(lambda n=n: db_rows(db, "SELECT count(*) FROM uplink")[0][0] > n,
                   what="the barrier uplink stored")


def test_chirpstack_http_integration_devices_get_downlinks_over_mqtt(broker, chirpstack_hub):
    """ChirpStack's HTTP integration carries no downlinks: a device heard only through it
    gets its downlinks through ChirpStack's MQTT integration (`command/down`)."""
    hub = chirpstack_hub
    network = Subscriber(broker.port, f"application/{APP}/device/+/command/down")
    try:
        topic, body = cs_up(REPORT, 1, T0)
        r = hub.api("POST", "/api/uplinks/chirpstack?event=up", content=body)
        assert r.status_code == 200, r.text
        assert hub.api("GET", f"/api/devices/{EUI}").json()["source"] == "http"
        queued = queue(hub, EUI, "set_reporting_interval", minutes=5)
        (topic, body, _, _), = network.wait(count=1)
        assert topic == f"application/{APP}/device/{EUI}/command/down"
        assert base64.b64decode(json.loads(body)["data"]) == bytes.fromhex(
            queued["payload_hex"])
    finally:
        network.close()


def test_chirpstack_nack_and_error_log_fail_their_downlink(broker, chirpstack_hub, tmp_path):
    hub = chirpstack_hub
    network = Subscriber(broker.port, f"application/{APP}/device/+/command/down")
    try:
        network.publish(*cs_up(REPORT, 1, T0))
        wait_until(lambda: hub.api("GET", f"/api/devices/{EUI}").status_code == 200,
                   what="the device registered by its first uplink")

        # 1: the device does not acknowledge a (confirmed) downlink
        first = queue(hub, EUI, "set_reporting_interval", minutes=5)
        (topic, body, _, qos), = network.wait(count=1)
        cmd = json.loads(body)
        assert topic == f"application/{APP}/device/{EUI}/command/down" and qos == 1
        assert base64.b64decode(cmd["data"]) == commands.set_reporting_interval(minutes=5).payload
        assert (cmd["devEui"], cmd["fPort"]) == (EUI, 85)
        sent = wait_until(lambda: (d := downlink(hub, first["id"]))["status"] == "sent" and d,
                          what="the downlink marked sent")
        assert sent["reference"] == cmd["id"]
        network.publish(*cs_event("ack", T0 + 60, queueItemId=cmd["id"], acknowledged=False,
                                  fCntDown=3, deduplicationId=str(uuid.uuid4())))
        failed = wait_until(lambda: (d := downlink(hub, first["id"]))["status"] == "failed" and d,
                            what="the nack to fail the downlink")
        assert failed["result"] == {
            "network": "not acknowledged by the device (ChirpStack ack event, fCntDown 3)"}
        assert failed["done_at"] == T0 + 60

        # 2: ChirpStack drops the queue item (too long for the data rate) and says so in a log
        second = queue(hub, EUI, "set_reporting_interval", minutes=7)
        cmd2 = json.loads(network.wait(count=2)[1][1])
        wait_until(lambda: downlink(hub, second["id"])["status"] == "sent", what="sent")
        # events that are not failures leave it as it is: an INFO log and a txack about it,
        # an error log about an uplink, a nack of some other queue item
        network.publish(*cs_event("log", T0 + 70, level="INFO", code="UNKNOWN",
                                  description="queued", context={"queue_item_id": cmd2["id"]}))
        network.publish(*cs_event("txack", T0 + 71, queueItemId=cmd2["id"], fCntDown=4,
                                  gatewayId="0016c001f153a14c", downlinkId=123))
        network.publish(*cs_event("log", T0 + 72, level="ERROR", code="UPLINK_CODEC",
                                  description="codec error"))
        network.publish(*cs_event("ack", T0 + 73, queueItemId=str(uuid.uuid4()),
                                  acknowledged=False))
        settle(str(tmp_path / "hub.db"),
               lambda n: network.publish(*cs_up(REPORT, 100 + n, T0 + 74 + n)))
        assert metric(hub, "cth01_network_events_total", kind="ack") == 2
        assert downlink(hub, second["id"])["status"] == "sent"
        network.publish(*cs_event("log", T0 + 80, level="ERROR", code="DOWNLINK_PAYLOAD_SIZE",
                                  description="Device queue-item discarded because it exceeds "
                                              "the max. payload size",
                                  context={"max_payload_size": "11", "item_size": "4",
                                           "queue_item_id": cmd2["id"]}))
        failed = wait_until(lambda: (d := downlink(hub, second["id"]))["status"] == "failed"
                            and d, what="the error log to fail the downlink")
        assert failed["result"] == {"network": (
            "ChirpStack ERROR DOWNLINK_PAYLOAD_SIZE: Device queue-item discarded because it "
            "exceeds the max. payload size max_payload_size=11, item_size=4")}
        assert failed["done_at"] == T0 + 80
        assert downlink(hub, first["id"])["status"] == "failed"  # untouched by the second
        assert metric(hub, "cth01_network_events_total", kind="downlink_failed") == 1
        assert metric(hub, "cth01_network_events_total", kind="log") == 2
        assert metric(hub, "cth01_network_events_total", kind="txack") == 1
        assert hub.api("GET", "/api/dead-letters").json() == []
    finally:
        network.close()


def test_location_and_integration_events_are_counted_not_dead_lettered(broker, chirpstack_hub):
    hub = chirpstack_hub
    network = Subscriber(broker.port, "unused/#")
    try:
        network.publish(*cs_event("location", T0, deduplicationId=str(uuid.uuid4()),
                                  location={"latitude": 52.1, "longitude": 5.2,
                                            "source": "GEO_RESOLVER_RSSI", "accuracy": 120}))
        network.publish(*cs_event("integration", T0 + 1, integrationName="loracloud",
                                  eventType="DAS_UplinkResponse", object={"a": 1}))
        network.publish(*cs_event("status", T0 + 2, margin=7, externalPowerSource=True,
                                  batteryLevelUnavailable=False))
        network.publish(*cs_event("unknownthing", T0 + 3))
        letters = wait_until(lambda: hub.api("GET", "/api/dead-letters").json(),
                             what="the unknown event's dead letter")
        wait_until(lambda: metric(hub, "cth01_network_events_total", kind="status") == 1,
                   what="the events processed")
        assert [(d["reason"], d["topic"]) for d in letters] == [
            ("unknown event type 'unknownthing'",
             f"application/{APP}/device/{EUI}/event/unknownthing")]
        assert metric(hub, "cth01_network_events_total", kind="location") == 1
        assert metric(hub, "cth01_network_events_total", kind="integration") == 1
        assert metric(hub, "cth01_dead_letters_total", source="chirpstack") == 1
    finally:
        network.close()


# --- The Things Stack v3 end to end --------------------------------------------------------------

TTS_APP, TTS_TENANT, TTS_DEVICE = "cth01-meters", "acme", "meter-1"
TTS_BASE = f"v3/{TTS_APP}@{TTS_TENANT}/devices/{TTS_DEVICE}"


def tts_message(field: str, message: dict, eui: str = EUI, t: float = T0) -> bytes:
    """A TTS v3 ApplicationUp (what `v3/.../{event}` carries), fields as TTS sends them."""
    return json.dumps({
        "end_device_ids": {"device_id": TTS_DEVICE, "application_ids": {
            "application_id": TTS_APP}, "dev_eui": eui.upper(), "join_eui": "24E124C0002A0001",
            "dev_addr": "260B1234"},
        "correlation_ids": ["as:up:01HZ8K4W5T1Q", f"ns:uplink:{uuid.uuid4().hex}"],
        "received_at": iso(t), field: message}).encode()


def tts_up(payload: bytes, f_cnt: int, t: float, eui: str) -> bytes:
    return tts_message("uplink_message", {
        "session_key_id": "AYqhQb9T0vJ6pX1d2w==", "f_port": 85, "f_cnt": f_cnt,
        "frm_payload": base64.b64encode(payload).decode(),
        "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -71, "snr": 9.5}],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}}},
        "received_at": iso(t - 0.2), "consumed_airtime": "0.061696s"}, eui, t)


def tts_echo(push: dict) -> dict:
    """The ApplicationDownlink TTS reports in its down/* events for a pushed downlink: what was
    pushed (correlation ids kept), with its own ids added."""
    return {**push, "session_key_id": "AYqhQb9T0vJ6pX1d2w==", "f_cnt": 3,
            "correlation_ids": [f"as:downlink:{uuid.uuid4().hex}",
                                *push.get("correlation_ids", [])]}


@pytest.fixture(params=["5", "3.1.1"])
def tts_hub(tmp_path, broker, request):
    """The hub subscribed to TTS topics over MQTT 5 and over 3.1.1 (what The Things Stack's
    own MQTT server speaks)."""
    hub = HubThread(hub_config(tmp_path, broker, tts=True, mqtt_protocol=request.param), TOKEN)
    yield hub
    hub.stop()


def test_tts_uplinks_are_stored_and_downlinks_go_out_on_down_push(broker, tts_hub, tmp_path):
    hub = tts_hub
    device = VirtualCTH01()
    eui = device.dev_eui
    device.power_on(T0)
    joined = [f for f in device.join_accept(T0 + 5) if hasattr(f, "payload")]
    network = Subscriber(broker.port, "v3/+/devices/+/down/push")
    db = str(tmp_path / "hub.db")
    try:
        network.publish(f"{TTS_BASE}/join", tts_message("join_accept", {
            "session_key_id": "AYqhQb9T0vJ6pX1d2w==", "received_at": iso(T0 + 4)}, eui, T0 + 4))
        for n, frame in enumerate(joined, 1):
            network.publish(f"{TTS_BASE}/up", tts_up(frame.payload, n, T0 + 5, eui))
        network.publish(f"{TTS_BASE}/up", tts_up(REPORT, len(joined) + 1, T0 + 65, eui))
        # the same uplinks delivered again (same counter, time and bytes) are stored once
        network.publish(f"{TTS_BASE}/up", tts_up(joined[0].payload, 1, T0 + 5, eui))
        network.publish(f"{TTS_BASE}/up", tts_up(REPORT, len(joined) + 1, T0 + 65, eui))
        wait_until(lambda: metric(hub, "cth01_uplinks_received_total", source="tts")
                   == len(joined) + 3, what="every uplink received")
        wait_until(lambda: db_rows(db, "SELECT count(*) FROM reading")[0][0] == 1,
                   what="the report stored")
        rows = db_rows(db, "SELECT f_port, f_cnt, source, payload, kind FROM uplink ORDER BY "
                           "f_cnt")
        assert [r[:4] for r in rows] == [
            *[(85, n, "tts", f.payload) for n, f in enumerate(joined, 1)],
            (85, len(joined) + 1, "tts", REPORT)]
        assert rows[-1][4] == "report"
        # timed by the network server's receive time (uplink_message.received_at)
        assert db_rows(db, "SELECT temperature_c, ts FROM reading") == [(24.5, int(T0 + 64.8))]
        dev = hub.api("GET", f"/api/devices/{eui}").json()
        assert dev["source"] == "tts"
        assert dev["network"] == {"device_id": TTS_DEVICE, "application_id": TTS_APP,
                                  "topic_application": f"{TTS_APP}@{TTS_TENANT}"}
        assert dev["joined_at"] == T0 + 4

        queued = queue(hub, eui, "set_reporting_interval", minutes=5)
        (topic, body, _, qos), = network.wait(count=1)
        assert (topic, qos) == (f"{TTS_BASE}/down/push", 1)
        push = json.loads(body)
        assert list(push) == ["downlinks"] and len(push["downlinks"]) == 1
        down = push["downlinks"][0]
        assert (down["f_port"], down["priority"]) == (85, "NORMAL")
        assert base64.b64decode(down["frm_payload"]) == bytes.fromhex(queued["payload_hex"]) \
            == commands.set_reporting_interval(minutes=5).payload
        wait_until(lambda: downlink(hub, queued["id"])["status"] == "sent", what="sent")
        # TTS reports the downlink queued, sent, acknowledged: the hub waits for the device
        for event, field in (("down/queued", "downlink_queued"), ("down/sent", "downlink_sent"),
                             ("down/ack", "downlink_ack")):
            network.publish(f"{TTS_BASE}/{event}",
                            tts_message(field, tts_echo(down), eui, T0 + 100))
        settle(db, lambda n: network.publish(f"{TTS_BASE}/up",
                                             tts_up(REPORT, 100 + n, T0 + 101 + n, eui)))
        assert metric(hub, "cth01_network_events_total", kind="ack") == 1
        assert downlink(hub, queued["id"])["status"] == "sent"
        assert metric(hub, "cth01_network_events_total", kind="queued") == 1
        assert metric(hub, "cth01_network_events_total", kind="txack") == 1
        # ... and the device's answer confirms it
        reply, = device.receive_downlink(T0 + 110, base64.b64decode(down["frm_payload"]))
        network.publish(f"{TTS_BASE}/up", tts_up(reply.payload, 9, T0 + 110, eui))
        done = wait_until(lambda: (d := downlink(hub, queued["id"]))["status"] == "confirmed"
                          and d, what="the device's reply to confirm the downlink")
        assert done["result"] == {"ef:61": "success"}
        # the hub's own down/push (the broker echoes it) is neither taken nor dead-lettered
        assert hub.api("GET", "/api/dead-letters").json() == []
        assert metric(hub, "cth01_dead_letters_total", source="tts") == 0
    finally:
        network.close()


def test_tts_webhook_devices_get_downlinks_through_the_push_url_it_announced(broker, tmp_path):
    """A device heard only through TTS webhooks: TTS sends the downlink path with each message
    (X-Downlink-Push, X-Downlink-Apikey); the hub pushes there with that key (kept out of the
    database and the API), fails a downlink TTS refuses (4xx), and fails at once a downlink
    for a device whose webhook gave no path."""
    tts_api = WebhookServer(statuses=[200, 403]).start()
    hub = HubThread(hub_config(tmp_path, broker), TOKEN)
    push_path = f"/api/v3/as/applications/{TTS_APP}/webhooks/cth01/devices/{TTS_DEVICE}/down/push"
    push_url = f"http://127.0.0.1:{tts_api.port}{push_path}"
    key = "NNSXS.K3Y0FTHEWEBH00K.SECRETSECRETSECRET"
    other = "24e1240000000abd"
    db = str(tmp_path / "hub.db")
    try:
        r = hub.api("POST", "/api/uplinks/tts/up", content=tts_up(REPORT, 1, T0, EUI),
                    headers={"X-Downlink-Push": push_url, "X-Downlink-Apikey": key,
                             "X-Downlink-Replace": push_url.removesuffix("push") + "replace"})
        assert r.status_code == 200, r.text
        r = hub.api("POST", "/api/uplinks/tts/up", content=tts_up(REPORT, 1, T0, other))
        assert r.status_code == 200, r.text
        dev = hub.api("GET", f"/api/devices/{EUI}")
        assert dev.json()["source"] == "http"
        assert dev.json()["network"]["downlink_push"] == push_url
        assert "SECRET" not in dev.text
        assert not db_rows(db, "SELECT count(*) FROM device WHERE network LIKE '%SECRET%'")[0][0]

        queued = queue(hub, EUI, "set_reporting_interval", minutes=5)
        done = wait_until(lambda: (d := hub.api("GET", f"/api/downlinks/{queued['id']}")
                                   .json())["status"] == "sent" and d, what="the downlink pushed")
        (path, body, status), = tts_api.requests
        assert (path, status) == (push_path, 200)
        assert tts_api.headers[0]["authorization"] == f"Bearer {key}"
        assert body == json.loads(tts_downlink(bytes.fromhex(queued["payload_hex"]), 85,
                                               reference=done["reference"]))
        assert body["downlinks"][0]["correlation_ids"] == [
            TTS_CORRELATION_PREFIX + done["reference"]]

        def failed(dl_id: int) -> str:
            return wait_until(lambda: (d := hub.api("GET", f"/api/downlinks/{dl_id}").json())[
                "status"] == "failed" and d["result"]["network"], what="the downlink failed")

        refused = queue(hub, EUI, "set_reporting_interval", minutes=10)
        assert "refused the downlink push (403)" in failed(refused["id"])
        pathless = queue(hub, other, "set_reporting_interval", minutes=10)
        assert "no downlink path" in failed(pathless["id"])
        assert len(tts_api.requests) == 2
    finally:
        hub.stop()
        tts_api.stop()


def test_tts_nack_and_failed_fail_their_downlink(broker, tts_hub):
    hub = tts_hub
    network = Subscriber(broker.port, "v3/+/devices/+/down/push")
    try:
        network.publish(f"{TTS_BASE}/up", tts_up(REPORT, 1, T0, EUI))
        wait_until(lambda: hub.api("GET", f"/api/devices/{EUI}").status_code == 200,
                   what="the device registered")
        outcomes = []
        for n, (event, field) in enumerate((("down/nack", "downlink_nack"),
                                            ("down/failed", "downlink_failed"))):
            queued = queue(hub, EUI, "set_reporting_interval", minutes=5 + n)
            down = json.loads(network.wait(count=n + 1)[n][1])["downlinks"][0]
            wait_until(lambda q=queued: downlink(hub, q["id"])["status"] == "sent",
                       what="sent")
            message = tts_echo(down)
            if event == "down/failed":
                message = {"downlink": message, "error": {
                    "namespace": "pkg/networkserver", "name": "application_downlink_too_long",
                    "message_format": "application downlink too long", "code": 3}}
            network.publish(f"{TTS_BASE}/{event}",
                            tts_message(field, message, EUI, T0 + 100 + n))
            outcomes.append(wait_until(
                lambda q=queued: (d := downlink(hub, q["id"]))["status"] != "sent" and d,
                timeout_s=3, what=f"the {event} to end the downlink"))
        assert [(d["status"], d["result"]) for d in outcomes] == [
            ("failed", {"network": "not acknowledged by the device (TTS down/nack)"}),
            ("failed", {"network": "TTS down/failed: pkg/networkserver:"
                                   "application_downlink_too_long application downlink too long"})]
    finally:
        network.close()
