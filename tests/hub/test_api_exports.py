"""CSV exports of the API's lists (devices, alarms, downlinks, dead letters) against a real hub
on a temporary SQLite file: each row says what the JSON list says, times in ISO 8601 UTC."""

import csv
import io
import json
import time
from datetime import UTC, datetime

import pytest

from cth01.hub.api import ALARM_CSV, DEAD_LETTER_CSV, DEVICE_CSV, DOWNLINK_CSV
from cth01.hub.config import HubConfig
from cth01.hub.envelope import Envelope, uplink_key
from cth01.hub.pipeline import DeadLetter
from cth01.hub.service import Hub
from cth01.hub.store import open_store
from cth01.protocol import encode_uplink, items

T = 1_790_000_000
EUIS = ("24e1240000000a01", "24e1240000000a02")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(condition, timeout_s=10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the hub"
        time.sleep(0.005)


@pytest.fixture
def hub(tmp_path):
    store = open_store(str(tmp_path / "h.db"))
    hub = Hub(HubConfig(anonymous_read=False, backfill=False), store, clock=lambda: T)
    hub.start()
    frames = [(EUIS[0], T - 600, [items.Temperature(temperature_c=21.5)]),
              (EUIS[1], T - 500, [items.TemperatureAlarm(alarm="above_threshold",
                                                         temperature_c=70.5)]),
              (EUIS[1], T - 400, [items.CurrentAlarm(channel=2, alarm="above_range",
                                                     current_a=130.0)])]
    for eui, t, its in frames:
        payload = encode_uplink(its)
        hub.submit(Envelope(source="fleet", dev_eui=eui, received_at=float(t), f_port=85,
                            f_cnt=None, payload=payload, key=uplink_key(eui, None, t, payload)))
    hub.submit_dead(DeadLetter(received_at=float(T - 300), source="http", topic="/api/x",
                               dev_eui=None, reason="bad JSON: line 1", body=b'{"a": 1'))
    wait_for(lambda: len(store.alarms()) == 2 and store.dead_letter_list())
    store.update_device(EUIS[0], name="Boiler room, \"north\"", site="Plant 1")
    hub.queue_downlink(EUIS[0], "set_reporting_interval", {"minutes": 5}, user="ops")
    yield hub
    hub.stop()
    store.close()


def exported(client, url, headers, **params) -> list[dict[str, str]]:
    r = client.get(url, headers=headers, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="')
    return list(csv.DictReader(io.StringIO(r.text)))


def test_each_list_exports_as_csv_with_what_its_json_says(client, viewer):
    devices = exported(client, "/api/devices.csv", viewer)
    listed = client.get("/api/devices", headers=viewer).json()
    assert [d["dev_eui"] for d in devices] == [d["dev_eui"] for d in listed]
    boiler = next(d for d in devices if d["dev_eui"] == EUIS[0])
    assert (boiler["name"], boiler["site"]) == ('Boiler room, "north"', "Plant 1")  # quoted
    assert boiler["last_seen"] == iso(T - 600) and list(boiler) == list(DEVICE_CSV)
    assert [d["dev_eui"] for d in exported(client, "/api/devices.csv", viewer, q="boiler")
            ] == [EUIS[0]]

    alarms = exported(client, "/api/alarms.csv", viewer)
    assert [(a["item"], a["condition"], a["status"], a["first_at"]) for a in alarms] == [
        ("current_alarm", "above_range", "active", iso(T - 400)),
        ("temperature_alarm", "above_threshold", "active", iso(T - 500))]
    assert alarms[0]["channel"] == "2" and alarms[0]["last_value"] == "130.0"
    assert list(alarms[0]) == list(ALARM_CSV)
    assert exported(client, "/api/alarms.csv", viewer, status="dismissed") == []

    (downlink,) = exported(client, "/api/downlinks.csv", viewer)
    assert (downlink["dev_eui"], downlink["command"], downlink["status"]) == (
        EUIS[0], "set_reporting_interval", "queued")
    assert json.loads(downlink["params"]) == {"minutes": 5}
    assert downlink["created_at"] == iso(T) and list(downlink) == list(DOWNLINK_CSV)

    (letter,) = exported(client, "/api/dead-letters.csv", viewer)
    assert (letter["reason"], letter["body"], letter["body_encoding"]) == (
        "bad JSON: line 1", '{"a": 1', "utf-8")
    assert letter["received_at"] == iso(T - 300) and list(letter) == list(DEAD_LETTER_CSV)


def test_exports_need_a_token(client):
    for url in ("/api/devices.csv", "/api/alarms.csv", "/api/downlinks.csv",
                "/api/dead-letters.csv"):
        assert client.get(url).status_code == 401, url
