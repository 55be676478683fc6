"""Outbound notifications against real parts: Home Assistant MQTT discovery and state read back
from a real Mosquitto by a subscriber that connects afterwards (so it gets what the broker
retained), value templates rendered with Jinja (as Home Assistant does) against the state
message; alarm changes from real alarm frames to a real HTTP server (http.server in a thread:
answering 5xx, down, hanging) and to MQTT. The hub is wired as `cth01 serve` wires it and fed
ChirpStack v4 uplinks through the broker."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest

from cth01.device import Fleet
from cth01.hub.config import HubConfig
from cth01.hub.notify import AlarmNotifier, HomeAssistant
from cth01.protocol import decode, encode_uplink, items

from .broker import (
    HubThread,
    PrivateBroker,
    Subscriber,
    WebhookServer,
    db_rows,
    free_port,
    wait_until,
)

APP = "0c5a9d3e-3f55-4f0e-9d7e-2b8f61c0a001"
TOKEN = "notify-test-admin-token-0123456"
T0 = 1_790_000_000


def cs_up(eui: str, payload: bytes, f_cnt: int, t: float) -> tuple[str, bytes]:
    """(topic, body) of a ChirpStack v4 `up` event."""
    return f"application/{APP}/device/{eui}/event/up", json.dumps({
        "deduplicationId": str(uuid.uuid4()),
        "time": datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z"),
        "deviceInfo": {"tenantId": "t1", "applicationId": APP, "devEui": eui,
                       "deviceName": "meter"},
        "fCnt": f_cnt, "fPort": 85, "data": base64.b64encode(payload).decode()}).encode()


@pytest.fixture
def broker(tmp_path: Path):
    b = PrivateBroker(tmp_path / "broker").start()
    yield b
    b.stop()


def start_hub(tmp_path: Path, broker: PrivateBroker, setup=None, **options) -> HubThread:
    options = {"db": str(tmp_path / "hub.db"), **options}
    config = HubConfig(mqtt_url=broker.url, port=free_port(), backfill=False, admin_token=TOKEN,
                       log_level="warning", mqtt_client_id=f"test-hub-{uuid.uuid4().hex[:8]}",
                       **options)
    return HubThread(config, TOKEN, setup)


# --- Home Assistant ------------------------------------------------------------------------------

GROUP_FIRST_CHANNEL = {"a": 1, "b": 4, "c": 7, "d": 10}


@pytest.fixture(scope="module")
def report():
    """A full report of a virtual CTH01 (group b three-phase, the others single-phase): its
    own temperature, power factor, active power and energy, plus voltages and currents."""
    fleet = Fleet(1, seed=3)
    frames = list(fleet.start(T0))
    for s in range(1, 700):
        frames += fleet.tick(T0 + s)
    first, second = [f for f in frames if f.kind == "periodic"][:2]
    extra = [items.Voltage(voltage_v=(230.1, 231.4, 229.8)),
             items.Current(current_a=tuple(round(0.5 + 1.25 * k, 3) for k in range(12)))]
    return first.dev_eui, [(f.time, encode_uplink([*decode(f.payload).items, *extra]))
                           for f in (first, second)]


def expected_values(payload: bytes) -> dict[tuple[str, int | None], float | None]:
    """(quantity, channel) -> the value the frame carries, read from the decoded items as the
    guide describes them: one value per phase / channel, a three-phase group's power factor,
    power and energy once, for its first channel (the other two have none)."""
    out: dict[tuple[str, int | None], float | None] = {}
    for item in decode(payload).items:
        name = item.command_name
        if name == "temperature":
            out["temperature", None] = item.temperature_c
        elif name == "voltage":
            for k, v in enumerate(item.voltage_v, 1):
                out[f"voltage_l{k}", None] = v
        elif name == "current":
            for ch, v in enumerate(item.current_a, 1):
                out["current", ch] = v
        elif name in ("power_factor", "active_power_ab", "active_power_cd",
                      "imported_active_energy_ab", "imported_active_energy_cd"):
            quantity = {"power_factor": "power_factor", "active_power_ab": "power",
                        "active_power_cd": "power"}.get(name, "energy")
            for g in getattr(item, item.__struct_fields__[0]):  # GroupReadings
                first = GROUP_FIRST_CHANNEL[g.group]
                values = g.channels if g.channels is not None else (g.total, None, None)
                for k, v in enumerate(values):
                    out[quantity, first + k] = v
    return out


def sensor_spec(key: str) -> tuple[str, int | None, str, str, str]:
    """(quantity, channel, device_class, state_class, unit) a key of the state message must
    be announced with."""
    channel = None
    if key.startswith("ch"):
        head, key = key.split("_", 1)
        channel = int(head[2:])
    return {
        "temperature_c": ("temperature", channel, "temperature", "measurement", "°C"),
        "voltage_l1_v": ("voltage_l1", channel, "voltage", "measurement", "V"),
        "voltage_l2_v": ("voltage_l2", channel, "voltage", "measurement", "V"),
        "voltage_l3_v": ("voltage_l3", channel, "voltage", "measurement", "V"),
        "current_a": ("current", channel, "current", "measurement", "A"),
        "active_power_w": ("power", channel, "power", "measurement", "W"),
        "power_factor_pct": ("power_factor", channel, "power_factor", "measurement", "%"),
        "imported_active_wh": ("energy", channel, "energy", "total_increasing", "Wh"),
        "imported_active_kwh": ("energy", channel, "energy", "total_increasing", "kWh"),
    }[key]


def sensor_unit(message) -> tuple[str, str, str]:
    cfg = json.loads(message[1])
    return cfg["device_class"], cfg["unique_id"], cfg["unit_of_measurement"]


def render(template: str, state: dict) -> str:
    """A value template as Home Assistant renders it: Jinja with `value_json`."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(
        value_json=state)


@pytest.mark.parametrize(("energy_unit", "engine"), [("Wh", "sqlite"), ("kWh", "postgresql")])
def test_home_assistant_sees_every_sensor_with_its_unit_and_value(broker, tmp_path, report,
                                                                  energy_unit, engine, request):
    eui, frames = report
    db = {} if engine == "sqlite" else {"db": request.getfixturevalue("pg_url")}

    def kwh(hub) -> None:  # `--ha-discovery` makes Wh sensors; kWh is the listener's option
        hub.listeners.append(HomeAssistant(hub.store, hub.sources["chirpstack"].publish,
                                           energy_unit="kWh"))

    if energy_unit == "Wh":
        hub = start_hub(tmp_path, broker, ha_discovery=True, **db)
    else:
        hub = start_hub(tmp_path, broker, setup=kwh, **db)
    state_topic = f"cth01/{eui}/state"
    live = Subscriber(broker.port, "cth01/#")
    try:
        live.publish(*cs_up(eui, frames[0][1], 1, frames[0][0]))
        live.wait(state_topic)
        # Home Assistant connecting later gets discovery, availability and state (retained)
        ha = Subscriber(broker.port, "homeassistant/#", "cth01/#")
        configs = ha.wait("homeassistant/", count=4 + 12 * 4)
        time.sleep(0.2)  # nothing more than one config per sensor arrives
        configs = ha.received("homeassistant/")
        assert len(configs) == 4 + 12 * 4
        assert all(retain and qos == 1 for _, _, retain, qos in configs)
        retained = {t: (body, retain) for t, body, retain, _ in ha.wait("cth01/", count=2)}
        assert retained[f"cth01/{eui}/availability"] == (b"online", True)
        body, retain = retained[state_topic]
        assert retain
        state = json.loads(body)
        expected = expected_values(frames[0][1])
        # temperature, 3 voltages, 12 currents; PF, power, energy of 3 single-phase groups
        # (9 channels) and of the three-phase group b (on channel 4 only)
        assert sum(v is not None for v in expected.values()) == 4 + 12 + 9 * 3 + 3
        seen = set()
        for topic, body, _, _ in configs:
            cfg = json.loads(body)
            uid = cfg["unique_id"]
            assert topic == f"homeassistant/sensor/{uid}/config"
            key = uid.removeprefix(f"cth01_{eui}_")
            quantity, channel, device_class, state_class, unit = sensor_spec(key)
            assert (cfg["device_class"], cfg["state_class"], cfg["unit_of_measurement"]) == (
                device_class, state_class, unit), key
            assert cfg["state_topic"] == state_topic
            assert cfg["availability_topic"] == f"cth01/{eui}/availability"
            assert cfg["default_entity_id"] == f"sensor.{uid}"
            assert cfg["device"] == {"identifiers": [f"cth01_{eui}"], "name": f"CTH01 {eui}",
                                     "manufacturer": "Milesight", "model": "CTH01",
                                     "serial_number": eui}
            label = {"temperature": "wire temperature", "voltage_l1": "voltage L1",
                     "voltage_l2": "voltage L2", "voltage_l3": "voltage L3",
                     "power_factor": "power factor"}.get(quantity, quantity)
            assert cfg["name"] == (label if channel is None else f"channel {channel} {label}")
            value = expected[quantity, channel]
            rendered = render(cfg["value_template"], state)
            if value is None:  # a three-phase group's 2nd/3rd channel: HA shows "unknown"
                assert rendered == "None", key
            else:
                if quantity == "energy" and unit == "kWh":
                    value = value / 1000
                assert float(rendered) == pytest.approx(value, rel=1e-12, abs=1e-9), key
            seen.add((quantity, channel, uid))
        assert len(seen) == 52 and len({uid for _, _, uid in seen}) == 52
        assert {u for q, _, u in map(sensor_unit, configs) if q == "energy"} == {energy_unit}

        # the next report: a new state message with its values (no new discovery)
        live.publish(*cs_up(eui, frames[1][1], 2, frames[1][0]))
        states = live.wait(state_topic, count=2)
        state2 = json.loads(states[-1][1])
        power = expected_values(frames[1][1])["power", 1]
        assert power != expected["power", 1]
        assert state2["ch1_active_power_w"] == power
        energy_key = "ch1_imported_active_kwh" if energy_unit == "kWh" else \
            "ch1_imported_active_wh"
        energy = expected_values(frames[1][1])["energy", 1]
        assert state2[energy_key] == pytest.approx(energy / (1000 if energy_unit == "kWh" else 1))
        time.sleep(0.2)
        assert len(ha.received("homeassistant/")) == 4 + 12 * 4
        ha.close()
    finally:
        live.close()
        hub.stop()


# --- alarms --------------------------------------------------------------------------------------

EUI = "24e1240000000def"
RAISE = encode_uplink([items.CurrentAlarm(channel=3, alarm="above_threshold", current_a=12.5)])
REPEAT = encode_uplink([items.CurrentAlarm(channel=3, alarm="above_threshold", current_a=13.0)])
CLEAR = encode_uplink([items.CurrentAlarm(channel=3, alarm="above_threshold_cleared",
                                          current_a=4.0)])
REPORT = encode_uplink([items.Temperature(temperature_c=21.0)])


def alarm_frames(pub: Subscriber, eui: str = EUI, start_cnt: int = 1) -> None:
    """The device's alarm: raised, repeated 30 s later, cleared 60 s later."""
    for k, payload in enumerate((RAISE, REPEAT, CLEAR)):
        pub.publish(*cs_up(eui, payload, start_cnt + k, T0 + 30 * k))


def summary(change: dict) -> tuple:
    return (change["change"], change["dev_eui"], change["item"], change["channel"],
            change["condition"], change["status"], change["count"], change["last_value"])


CHANGES = [("raised", EUI, "current_alarm", 3, "above_threshold", "active", 1, 12.5),
           ("repeated", EUI, "current_alarm", 3, "above_threshold", "active", 2, 13.0),
           ("dismissed", EUI, "current_alarm", 3, "above_threshold", "dismissed", 2, 4.0)]


def test_alarm_changes_go_to_the_webhook_and_mqtt(broker, tmp_path):
    webhook = WebhookServer().start()
    hub = start_hub(tmp_path, broker, alarm_webhook=webhook.url, alarm_mqtt_topic="site/alarms")
    listener = Subscriber(broker.port, "site/alarms/#")
    try:
        alarm_frames(listener)
        posted = wait_until(lambda: len(webhook.requests) >= 3 and webhook.requests,
                            what="three alarm changes posted")
        assert [path for path, _, _ in posted] == ["/alarms"] * 3
        assert [summary(body) for _, body, _ in posted] == CHANGES
        published = listener.wait("site/alarms/", count=3)
        assert [(t, q) for t, _, _, q in published] == [(f"site/alarms/{EUI}", 1)] * 3
        assert [json.loads(b) for _, b, _, _ in published] == [b for _, b, _ in posted]
        raised = posted[0][1]
        assert (raised["first_at"], raised["last_at"], raised["cleared_at"]) == (T0, T0, None)
        assert posted[2][1]["cleared_at"] == T0 + 60 and posted[2][1]["cleared_by"] == "device"
        alarm = hub.api("GET", "/api/alarms").json()
        assert [a["id"] for a in alarm] == [raised["id"]]

        # a user's acknowledgement is a change too; a second one changes nothing
        acked = hub.api("POST", f"/api/alarms/{raised['id']}/ack")
        assert acked.status_code == 200 and acked.json()["change"] == "acknowledged"
        assert hub.api("POST", f"/api/alarms/{raised['id']}/ack").json()["change"] is None
        listener.publish(*cs_up(EUI, RAISE, 4, T0 + 120))  # a new alarm: the next change
        posted = wait_until(lambda: len(webhook.requests) >= 5 and webhook.requests,
                            what="the acknowledgement and the new alarm posted")
        ack, new = posted[3][1], posted[4][1]
        assert (ack["change"], ack["id"], ack["status"]) == ("acknowledged", raised["id"],
                                                             "dismissed")
        assert ack["acknowledged_by"] == acked.json()["acknowledged_by"] != ""
        assert (new["change"], new["id"] != raised["id"]) == ("raised", True)
        published = listener.wait("site/alarms/", count=5)
        assert [json.loads(b)["change"] for _, b, _, _ in published[3:]] == [
            "acknowledged", "raised"]
    finally:
        listener.close()
        hub.stop()
        webhook.stop()


def test_the_webhook_is_retried_through_5xx_and_an_outage_and_keeps_the_order(broker, tmp_path):
    webhook = WebhookServer(statuses=[500, 503])
    notifier = AlarmNotifier(webhook=webhook.url, tries=12, backoff_s=0.02, max_backoff_s=0.2)
    hub = start_hub(tmp_path, broker, setup=lambda hub: hub.listeners.append(notifier))
    pub = Subscriber(broker.port, "unused/#")
    try:
        alarm_frames(pub)  # the server is down
        wait_until(lambda: notifier.pending == 3, what="three changes waiting")
        time.sleep(0.3)  # an outage of a few tries
        assert notifier.pending == 3 and webhook.requests == []
        webhook.start()  # back, answering 500 then 503 then 200
        wait_until(lambda: notifier.pending == 0, what="all three posted")
        assert [status for _, _, status in webhook.requests] == [500, 503, 200, 200, 200]
        assert webhook.requests[0][1] == webhook.requests[1][1] == webhook.requests[2][1]
        assert [summary(b) for b in webhook.delivered()] == CHANGES
        assert (notifier.sent, notifier.failed, notifier.refused, notifier.pending) == (
            3, 0, 0, 0)
    finally:
        pub.close()
        hub.stop()
        webhook.stop()


def test_a_hanging_webhook_holds_up_neither_ingest_nor_mqtt(broker, tmp_path):
    webhook = WebhookServer().start()
    webhook.hold.clear()  # every request waits until released
    hub = start_hub(tmp_path, broker, alarm_webhook=webhook.url, alarm_mqtt_topic="site/alarms")
    listener = Subscriber(broker.port, "site/alarms/#")
    db = str(tmp_path / "hub.db")
    try:
        alarm_frames(listener)
        for n in range(20):
            listener.publish(*cs_up(EUI, REPORT, 10 + n, T0 + 600 * (n + 1)))
        wait_until(lambda: db_rows(db, "SELECT count(*) FROM uplink")[0][0] == 23,
                   what="every uplink stored while the webhook hangs")
        assert len(listener.wait("site/alarms/", count=3)) == 3
        assert webhook.requests == []  # the first POST is still waiting for its answer
        webhook.hold.set()
        wait_until(lambda: len(webhook.delivered()) == 3, what="delivered once released")
        assert [summary(b) for b in webhook.delivered()] == CHANGES
    finally:
        listener.close()
        hub.stop()
        webhook.stop()


def test_a_refusal_is_not_retried_and_a_dead_server_is_given_up():
    change = {"change": "raised", "dev_eui": EUI, "id": 1}
    refusing = WebhookServer(statuses=[404]).start()
    notifier = AlarmNotifier(webhook=refusing.url, tries=4, backoff_s=0.02)
    try:
        notifier("alarm", change)
        notifier("readings", {"devices": [EUI]})  # not an alarm: not posted
        wait_until(lambda: notifier.pending == 0, what="the refusal")
        assert [(p, b, s) for p, b, s in refusing.requests] == [("/alarms", change, 404)]
        assert (notifier.sent, notifier.refused, notifier.failed) == (0, 1, 0)
    finally:
        notifier.stop()
        refusing.stop()
    dead = WebhookServer()  # never started
    notifier = AlarmNotifier(webhook=dead.url, tries=3, backoff_s=0.05)
    try:
        started = time.monotonic()
        notifier("alarm", change)
        wait_until(lambda: notifier.pending == 0, what="giving up")
        assert time.monotonic() - started >= 0.05 + 0.1  # two waits between three tries
        assert (notifier.sent, notifier.refused, notifier.failed) == (0, 0, 1)
    finally:
        notifier.stop()
