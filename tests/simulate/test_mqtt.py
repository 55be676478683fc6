"""ChirpStackMqttSink against a real Mosquitto: every uplink arrives once as a ChirpStack v4
`event/up` (with a `event/join` per session), downlink commands reach the devices, bad
commands are counted and logged, never raised."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cth01.device import Fleet
from cth01.protocol import commands, decode
from cth01.simulate import ChirpStackMqttSink, SinkError, run

T0 = 1_735_689_600
DEVICE_INFO = {"tenantId", "tenantName", "applicationId", "applicationName", "deviceProfileId",
               "deviceProfileName", "deviceName", "devEui", "tags"}
UP = {"deduplicationId", "time", "deviceInfo", "devAddr", "adr", "dr", "fCnt", "fPort",
      "confirmed", "data", "rxInfo", "txInfo"}
RX = {"gatewayId", "uplinkId", "rssi", "snr", "channel", "location", "context", "metadata",
      "crcStatus"}


class Listener:
    """A separate MQTT client, as an application would be: collects what is published under
    `application/{app}/#` and can publish commands."""

    def __init__(self, broker, app_id):
        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(*broker)
        self.client.subscribe(f"application/{app_id}/device/+/event/+", qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def wait_for(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def app_id():
    return str(uuid.uuid4())


@pytest.fixture
def listener(mosquitto, app_id):
    lst = Listener(mosquitto, app_id)
    yield lst
    lst.close()


def test_every_uplink_arrives_as_a_chirpstack_v4_event(mosquitto, app_id, listener):
    fleet = Fleet(2, seed=4)
    sink = ChirpStackMqttSink(*mosquitto, app_id, dev_euis=fleet.by_eui)
    try:
        stats = run(fleet, sink, start=T0, duration_s=20 * 60)
    finally:
        sink.close()
    assert sink.pending == 0 and sink.acknowledged == sink.published
    got = listener.wait_for(sink.published)
    ups = [(t, m) for t, m in got if t.endswith("/event/up")]
    joins = [(t, m) for t, m in got if t.endswith("/event/join")]
    assert len(got) == sink.published == stats.uplinks + 2  # nothing lost, nothing doubled
    assert len(ups) == stats.uplinks > 0 and len(joins) == 2
    f_cnts = defaultdict(list)
    for topic, m in ups:
        assert set(m) == UP
        eui = m["deviceInfo"]["devEui"]
        assert topic == f"application/{app_id}/device/{eui}/event/up"
        assert set(m["deviceInfo"]) == DEVICE_INFO
        assert m["deviceInfo"]["applicationId"] == app_id
        assert m["deviceInfo"]["deviceProfileName"] == "Milesight CTH01"
        uuid.UUID(m["deduplicationId"])
        assert m["time"].endswith("Z") and datetime.fromisoformat(m["time"]).timestamp() >= T0
        assert (m["adr"], m["dr"], m["fPort"], m["confirmed"]) == (True, 5, 85, False)
        assert len(m["devAddr"]) == 8
        (rx,) = m["rxInfo"]
        assert set(rx) >= RX and rx["crcStatus"] == "CRC_OK"
        assert isinstance(rx["uplinkId"], int) and isinstance(rx["rssi"], int)
        base64.b64decode(rx["context"], validate=True)
        assert m["txInfo"] == {"frequency": 868100000, "modulation": {"lora": {
            "bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}
        uplink = decode(base64.b64decode(m["data"], validate=True), dialect="firmware")
        assert uplink.items or uplink.history
        f_cnts[eui].append(m["fCnt"])
    assert set(f_cnts) == set(fleet.by_eui)
    assert all(seq == list(range(len(seq))) for seq in f_cnts.values())
    for topic, m in joins:
        assert topic == f"application/{app_id}/device/{m['deviceInfo']['devEui']}/event/join"
        assert set(m) == {"deduplicationId", "time", "deviceInfo", "devAddr"}
        first_up = next(u for _, u in ups if u["deviceInfo"]["devEui"] ==
                        m["deviceInfo"]["devEui"])
        assert first_up["devAddr"] == m["devAddr"]


def test_downlink_commands_reach_the_device_and_bad_ones_are_counted(mosquitto, app_id,
                                                                      listener):
    fleet = Fleet(2, seed=4)
    logged = []
    sink = ChirpStackMqttSink(*mosquitto, app_id, dev_euis=fleet.by_eui, log=logged.append)
    target = fleet.devices[0].dev_eui
    down = f"application/{app_id}/device/{{}}/command/down"
    try:
        run(fleet, sink, start=T0, duration_s=10 * 60)  # joined by now
        good = {"devEui": target, "confirmed": False, "fPort": 85,
                "data": commands.set_reporting_interval(minutes=1).base64()}
        listener.publish(down.format(target), json.dumps(good))
        listener.publish(down.format(target), b"{not json")
        listener.publish(down.format(target), json.dumps({**good, "data": "%%%"}))
        listener.publish(down.format(target), json.dumps({**good, "fPort": 0}))
        other = "24e1249999999999"
        listener.publish(down.format(other), json.dumps({**good, "devEui": other}))
        deadline = time.monotonic() + 5
        while sink.received < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.received == 5
        stats = run(fleet, sink, start=T0 + 600, duration_s=6 * 60)
    finally:
        sink.close()
    assert stats.downlinks == 1 and stats.downlinks_rejected == 0
    assert sink.rejected == Counter({"not JSON": 1, "bad data": 1, "bad fPort": 1,
                                     "unknown device": 1})
    assert len(logged) == 4 and all(f"application/{app_id}/device/" in m for m in logged)
    got = listener.wait_for(sink.published)
    replies = []
    for topic, m in got:
        if topic.endswith("/event/up"):
            uplink = decode(base64.b64decode(m["data"]), dialect="firmware")
            replies += [(m["deviceInfo"]["devEui"], i) for i in uplink.items
                        if i.command_name == "command_reply"]
    assert len(replies) == 1
    eui, reply = replies[0]
    assert (eui, reply.result, reply.echo) == (target, "success", "61")
    periodic = Counter(m["deviceInfo"]["devEui"] for t, m in got if t.endswith("/event/up")
                       and datetime.fromisoformat(m["time"]).timestamp() > T0 + 660
                       and decode(base64.b64decode(m["data"]), dialect="firmware").items[0]
                       .command_name != "command_reply")
    assert periodic[target] >= 4  # reporting every minute now


def test_no_broker_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(SinkError, match=f"127.0.0.1:{port}"):
        ChirpStackMqttSink("127.0.0.1", port, str(uuid.uuid4()), connect_timeout_s=1)
