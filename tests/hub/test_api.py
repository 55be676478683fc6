"""The HTTP API against a real hub on a temporary SQLite file, fed by the virtual fleet."""

import base64
import csv
import io
import json
import math
import time
from datetime import UTC, datetime

import pytest

from cth01.device import Fleet
from cth01.hub.config import HubConfig
from cth01.hub.envelope import Envelope, uplink_key
from cth01.hub.service import Hub
from cth01.hub.store import StoreError, open_store
from cth01.protocol import encode_uplink, items

T0 = 1_790_000_000  # 2026-09-21 14:13:20 UTC
T = T0 + 3 * 3600  # the hub's clock: three simulated hours later
NEW_EUI = "a84041000000beef"


def wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the hub")
        time.sleep(0.005)


def count(hub, sql, params=()):
    return hub.store.query(sql, params)[0][0]


@pytest.fixture(scope="module")
def frames():
    fleet = Fleet(3, seed=1)
    fleet.start(T0)
    return [fr for s in range(1, 3 * 3600, 10) for fr in fleet.tick(T0 + s)]


def envelope(dev_eui, t, payload, f_port=85):
    return Envelope(source="fleet", dev_eui=dev_eui, received_at=float(t), f_port=f_port,
                    f_cnt=None, payload=payload, key=uplink_key(dev_eui, None, t, payload))


def submit_and_wait(hub, envelopes):
    envelopes = list(envelopes)
    before = count(hub, "SELECT count(*) FROM uplink")
    for env in envelopes:
        hub.submit(env)
    wait_for(lambda: count(hub, "SELECT count(*) FROM uplink") >= before + len(envelopes))


@pytest.fixture
def hub(tmp_path, frames):
    store = open_store(str(tmp_path / "h.db"))
    hub = Hub(HubConfig(anonymous_read=False, backfill=False), store, clock=lambda: T)
    hub.start()
    submit_and_wait(hub, (envelope(fr.dev_eui, fr.time, fr.payload, fr.f_port)
                          for fr in frames))
    yield hub
    hub.stop()
    store.close()


@pytest.fixture
def admin(hub):
    return {"Authorization": f"Bearer {hub.store.create_token('admin', 'admin')}"}


@pytest.fixture
def euis(hub):
    return [d["dev_eui"] for d in hub.store.devices()]


# -- health, metrics, OpenAPI, page ---------------------------------------------------------------

def test_health_is_anonymous_and_reports_the_hub(client, hub, frames):
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["worker_alive"] is True
    assert body["stored_uplinks"] == len(frames)
    assert body["time"] == T


def test_health_degraded_is_503(client, hub, monkeypatch):
    def broken(*args, **kwargs):
        raise StoreError("query", OSError("disk gone"), transient=True)

    monkeypatch.setattr(hub.store, "query", broken)
    r = client.get("/api/health")
    assert r.status_code == 503
    assert r.json()["status"] == "degraded"


def test_store_error_is_503_with_detail(client, hub, viewer, monkeypatch):
    def broken():
        raise StoreError("devices", OSError("server closed the connection"), transient=True)

    monkeypatch.setattr(hub.store, "devices", broken)
    r = client.get("/api/devices", headers=viewer)
    assert r.status_code == 503
    assert r.json()["detail"].startswith("database unavailable: devices")


def test_metrics_are_prometheus_text(client, frames):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert f"cth01_uplinks_stored_total {float(len(frames))}" in r.text


def test_openapi_lists_every_route(client):
    doc = client.get("/openapi.json").json()
    assert doc["info"]["title"] == "cth01 hub"
    for path in ("/api/health", "/api/devices", "/api/devices/{dev_eui}",
                 "/api/devices/{dev_eui}/readings", "/api/devices/{dev_eui}/readings.csv",
                 "/api/energy", "/api/energy.csv", "/api/alarms", "/api/alarms/{alarm_id}/ack",
                 "/api/commands", "/api/devices/{dev_eui}/downlinks", "/api/downlinks",
                 "/api/downlinks/{downlink_id}", "/api/devices/{dev_eui}/config",
                 "/api/dead-letters", "/api/completeness", "/api/gaps",
                 "/api/uplinks/chirpstack", "/api/uplinks/tts", "/metrics"):
        assert path in doc["paths"], path
    assert "patch" in doc["paths"]["/api/devices/{dev_eui}"]


def test_index_page_is_the_dashboard_shell_without_data(client, viewer, euis):
    # the pages carry no data: their scripts read it from the API, which checks the token
    for headers in (viewer, {}):
        r = client.get("/", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "cth01 hub</title>" in r.text and "/docs" in r.text
        assert "/static/js/overview.js" in r.text
        assert not any(eui in r.text for eui in euis)


# -- auth -----------------------------------------------------------------------------------------

def test_reads_need_a_valid_token(client, viewer):
    r = client.get("/api/devices")
    assert r.status_code == 401 and "token" in r.json()["detail"]
    assert client.get("/api/devices",
                      headers={"Authorization": "Bearer cth01_nope"}).status_code == 401
    assert client.get("/api/devices", headers=viewer).status_code == 200


def test_writes_need_admin(client, viewer, euis):
    eui = euis[0]
    writes = [("PATCH", f"/api/devices/{eui}", {"name": "x"}),
              ("POST", f"/api/devices/{eui}/downlinks",
               {"command": "set_reporting_interval", "params": {"minutes": 20}}),
              ("POST", "/api/alarms/1/ack", None),
              ("POST", "/api/uplinks/chirpstack?event=up", {})]
    for method, url, body in writes:
        assert client.request(method, url, json=body).status_code == 401, url
        r = client.request(method, url, json=body, headers=viewer)
        assert r.status_code == 403, url
        assert "admin" in r.json()["detail"]


def test_anonymous_read_when_configured(client, hub, euis):
    hub.config.anonymous_read = True
    assert client.get("/api/devices").status_code == 200
    assert client.get(f"/api/devices/{euis[0]}").status_code == 200
    assert client.patch(f"/api/devices/{euis[0]}", json={"name": "x"}).status_code == 401


# -- devices and registry -------------------------------------------------------------------------

def test_devices_list_and_search(client, admin, viewer, euis):
    rows = client.get("/api/devices", headers=viewer).json()
    assert [d["dev_eui"] for d in rows] == euis and len(euis) == 3
    hit = client.get("/api/devices", params={"q": euis[1][-6:].upper()}, headers=viewer)
    assert [d["dev_eui"] for d in hit.json()] == [euis[1]]
    client.patch(f"/api/devices/{euis[2]}", json={"name": "Boiler Room", "site": "Lyon"},
                 headers=admin)
    by_name = client.get("/api/devices", params={"q": "boiler"}, headers=viewer).json()
    assert [d["dev_eui"] for d in by_name] == [euis[2]]
    by_site = client.get("/api/devices", params={"q": "LYON"}, headers=viewer).json()
    assert [d["dev_eui"] for d in by_site] == [euis[2]]
    assert client.get("/api/devices", params={"q": "nothing"}, headers=viewer).json() == []


def test_device_detail_normalises_the_eui(client, viewer, euis):
    r = client.get(f"/api/devices/{euis[0].upper()}", headers=viewer)
    assert r.status_code == 200
    assert r.json()["dev_eui"] == euis[0]
    assert [c["channel"] for c in r.json()["channels"]] == list(range(1, 13))
    assert client.get("/api/devices/0000000000000000", headers=viewer).status_code == 404
    assert client.get("/api/devices/nothex", headers=viewer).status_code == 404


def test_patch_registry_then_get_shows_circuits(client, hub, admin, viewer, euis):
    eui = euis[0]
    r = client.patch(f"/api/devices/{eui}", headers=admin, json={
        "name": "Main board", "tenant": "acme",
        "channels": {"1": {"circuit": "Lighting"}, "4": {"circuit": "Oven", "tenant": "bakery"}}})
    assert r.status_code == 200
    assert r.json()["name"] == "Main board"
    got = client.get(f"/api/devices/{eui}", headers=viewer).json()
    assert got["tenant"] == "acme"
    chans = {c["channel"]: c for c in got["channels"]}
    assert chans[1]["circuit"] == "Lighting" and chans[1]["tenant"] is None
    assert chans[4]["circuit"] == "Oven" and chans[4]["tenant"] == "bakery"
    assert chans[2]["circuit"] is None
    # a later patch of one field keeps the others
    client.patch(f"/api/devices/{eui}", headers=admin, json={"channels": {"1": {"tenant": "x"}}})
    chans = {c["channel"]: c for c in
             client.get(f"/api/devices/{eui}", headers=viewer).json()["channels"]}
    assert {k: chans[1][k] for k in ("channel", "circuit", "tenant")} == {
        "channel": 1, "circuit": "Lighting", "tenant": "x"}


def test_patch_refuses_bad_channels_and_unknown_devices(client, hub, admin, euis):
    for bad in ({"channels": {"13": {"circuit": "x"}}}, {"channels": {"0": {}}},
                {"colour": "red"}):
        assert client.patch(f"/api/devices/{euis[0]}", json=bad,
                            headers=admin).status_code == 422, bad
    assert client.patch(f"/api/devices/{NEW_EUI}", json={"name": "ghost"},
                        headers=admin).status_code == 404
    assert count(hub, "SELECT count(*) FROM device") == 3  # not created by the patch


# -- readings -------------------------------------------------------------------------------------

def test_readings_are_downsampled_to_bucket_means(client, hub, viewer, euis):
    eui = euis[0]
    did = hub.store.device_id(eui)
    start, end, points = T0, T, 5
    r = client.get(f"/api/devices/{eui}/readings", headers=viewer, params={
        "quantity": "active_power_w", "channel": 1, "start": start, "end": end,
        "points": points})
    assert r.status_code == 200
    body = r.json()
    assert (body["dev_eui"], body["quantity"], body["unit"], body["channel"]) == (
        eui, "active_power_w", "W", 1)
    assert (body["start"], body["end"]) == (start, end)
    pts = body["points"]
    assert 1 < len(pts) <= points
    stored = count(hub, "SELECT count(*) FROM channel_reading WHERE device_id = ? AND "
                        "channel = 1 AND active_power_w IS NOT NULL", (did,))
    assert sum(p["count"] for p in pts) == stored
    bucket = math.ceil((end - start + 1) / points)
    first = pts[0]
    mean, low, high, n = hub.store.query(
        "SELECT avg(active_power_w), min(active_power_w), max(active_power_w), "
        "count(active_power_w) FROM channel_reading WHERE device_id = ? AND channel = 1 AND "
        "ts >= ? AND ts < ?",
        (did, first["ts"], first["ts"] + bucket))[0]
    assert n > 1
    assert first["count"] == n
    assert first["mean"] == pytest.approx(mean)
    assert (first["min"], first["max"]) == (low, high)


def test_readings_default_window_and_device_quantity(client, hub, viewer, euis):
    body = client.get(f"/api/devices/{euis[1]}/readings", headers=viewer,
                      params={"quantity": "temperature_c"}).json()
    assert (body["start"], body["end"], body["unit"], body["channel"]) == (
        T - 86400, T, "°C", None)
    did = hub.store.device_id(euis[1])
    assert sum(p["count"] for p in body["points"]) == count(
        hub, "SELECT count(*) FROM reading WHERE device_id = ? AND temperature_c IS NOT NULL",
        (did,))


def test_readings_refuse_bad_parameters(client, viewer, euis):
    url = f"/api/devices/{euis[0]}/readings"
    r = client.get(url, headers=viewer, params={"quantity": "power"})
    assert r.status_code == 422
    assert "active_power_w" in r.json()["detail"] and "temperature_c" in r.json()["detail"]
    r = client.get(url, headers=viewer, params={"quantity": "current_a"})
    assert r.status_code == 422 and "channel" in r.json()["detail"]
    for params in ({"quantity": "current_a", "channel": 13},
                   {"quantity": "current_a", "channel": 1, "points": 0},
                   {"quantity": "current_a", "channel": 1, "points": 10001},
                   {"quantity": "current_a", "channel": 1, "start": T, "end": T0},
                   {"quantity": "temperature_c", "channel": 1}):
        assert client.get(url, headers=viewer, params=params).status_code == 422, params
    assert client.get(f"/api/devices/{NEW_EUI}/readings", headers=viewer,
                      params={"quantity": "current_a", "channel": 1}).status_code == 404


def _csv(response):
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(response.text)))


def test_readings_csv_exports_every_stored_row(client, hub, viewer, euis):
    eui = euis[0]
    did = hub.store.device_id(eui)
    url = f"/api/devices/{eui}/readings.csv"
    rows = _csv(client.get(url, headers=viewer, params={"quantity": "active_power_w",
                                                        "channel": 1, "start": T0, "end": T}))
    assert rows[0] == ["time_utc", "ts", "channel", "active_power_w"]
    db = hub.store.query("SELECT ts, active_power_w FROM channel_reading WHERE device_id = ? "
                         "AND channel = 1 AND active_power_w IS NOT NULL ORDER BY ts", (did,))
    assert len(rows) - 1 == len(db) > 10
    ts, value = db[0]
    assert rows[1] == [datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       str(ts), "1", str(value)]
    # no channel: every channel's rows
    every = _csv(client.get(url, headers=viewer, params={"quantity": "active_power_w",
                                                         "start": T0, "end": T}))
    db = hub.store.query("SELECT channel FROM channel_reading WHERE device_id = ? AND "
                         "active_power_w IS NOT NULL", (did,))
    assert len(every) - 1 == len(db)
    assert {int(r[2]) for r in every[1:]} == {c for (c,) in db} and len(db) > len(rows)
    device = _csv(client.get(url, headers=viewer, params={"quantity": "temperature_c",
                                                          "start": T0, "end": T}))
    assert device[0] == ["time_utc", "ts", "temperature_c"]
    assert len(device) - 1 == count(hub, "SELECT count(*) FROM reading WHERE device_id = ? "
                                         "AND temperature_c IS NOT NULL", (did,)) > 10
    # a window keeps only its rows
    part = _csv(client.get(url, headers=viewer, params={"quantity": "temperature_c",
                                                        "start": T0, "end": T0 + 3600}))
    assert 1 <= len(part) - 1 < len(device) - 1
    assert all(T0 <= int(r[1]) <= T0 + 3600 for r in part[1:])


# -- energy ---------------------------------------------------------------------------------------

def _last_minus_first(hub, start, end):
    """Energy per (dev_eui, channel) straight from channel_reading: the counter at the last
    reading in [start, end) minus the one at the first (no reading before `start` exists)."""
    rows = hub.store.query(
        "SELECT d.dev_eui, c.channel, c.ts, c.imported_active_wh FROM channel_reading c "
        "JOIN device d ON d.id = c.device_id WHERE c.ts >= ? AND c.ts < ? AND "
        "c.imported_active_wh IS NOT NULL ORDER BY d.dev_eui, c.channel, c.ts", (start, end))
    out = {}
    for eui, ch, _, value in rows:
        first, _last = out.get((eui, int(ch)), (value, value))
        out[(eui, int(ch))] = (first, value)
    return {k: last - first for k, (first, last) in out.items()}


def test_energy_per_channel_is_last_minus_first(client, hub, viewer):
    body = client.get("/api/energy", headers=viewer,
                      params={"start": T0, "end": T + 1}).json()
    assert (body["quantity"], body["unit"], body["group_by"]) == (
        "imported_active_wh", "Wh", "channel")
    got = {(r["dev_eui"], r["channel"]): r["energy"] for r in body["rows"]}
    expected = _last_minus_first(hub, T0, T + 1)
    assert got == pytest.approx(expected)
    assert sum(expected.values()) > 0


def test_energy_grouped_by_device_and_tenant(client, hub, admin, viewer, euis):
    a, b, _ = euis
    client.patch(f"/api/devices/{a}", headers=admin,
                 json={"tenant": "acme", "channels": {"2": {"tenant": "beta",
                                                            "circuit": "Pumps"}}})
    per_channel = _last_minus_first(hub, T0, T + 1)
    params = {"start": T0, "end": T + 1}
    channels = client.get("/api/energy", headers=viewer, params=params).json()["rows"]
    row = next(r for r in channels if (r["dev_eui"], r["channel"]) == (a, 2))
    assert (row["circuit"], row["tenant"]) == ("Pumps", "beta")
    assert next(r for r in channels if (r["dev_eui"], r["channel"]) == (a, 1))["tenant"] == \
        "acme"
    tenants = client.get("/api/energy", headers=viewer,
                         params={**params, "group_by": "tenant"}).json()["rows"]
    got = {r["tenant"]: r["energy"] for r in tenants}
    assert got == pytest.approx({
        "acme": sum(v for (e, ch), v in per_channel.items() if e == a and ch != 2),
        "beta": per_channel[(a, 2)],
        "unassigned": sum(v for (e, _), v in per_channel.items() if e != a)})
    devices = client.get("/api/energy", headers=viewer,
                         params={**params, "group_by": "device"}).json()["rows"]
    assert {r["dev_eui"]: r["energy"] for r in devices} == pytest.approx(
        {e: sum(v for (x, _), v in per_channel.items() if x == e) for e in euis})
    only_b = client.get("/api/energy", headers=viewer,
                        params={**params, "dev_eui": b.upper()}).json()["rows"]
    assert {r["dev_eui"] for r in only_b} == {b}
    rows = _csv(client.get("/api/energy.csv", headers=viewer,
                           params={**params, "group_by": "tenant"}))
    assert rows[0] == ["tenant", "imported_active_wh"]
    assert {r[0]: float(r[1]) for r in rows[1:]} == pytest.approx(got)


def test_energy_periods_and_validation(client, viewer):
    month = client.get("/api/energy", headers=viewer,
                       params={"period": "month", "month": "2026-11"}).json()
    assert (month["start"], month["end"]) == (
        int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
        int(datetime(2026, 12, 1, tzinfo=UTC).timestamp()))
    # the fleet ran in September: no reading in November, so no rows (no data is not 0 kWh)
    assert month["rows"] == []
    dec = client.get("/api/energy", headers=viewer,
                     params={"period": "month", "month": "2026-12"}).json()
    assert dec["end"] == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    day = client.get("/api/energy", headers=viewer,
                     params={"period": "day", "day": "2026-09-21"}).json()
    assert day["end"] - day["start"] == 86400
    assert day["start"] == int(datetime(2026, 9, 21, tzinfo=UTC).timestamp())
    assert day["rows"]  # the fleet's three hours are in that day
    for bad in ({"quantity": "active_power_w"}, {"group_by": "site"},
                {"period": "month", "month": "Nov"}, {"period": "week"},
                {"period": "day", "start": T0}):
        assert client.get("/api/energy", headers=viewer,
                          params=bad).status_code == 422, bad
    assert client.get("/api/energy", headers=viewer,
                      params={"dev_eui": NEW_EUI}).status_code == 404


# -- alarms ---------------------------------------------------------------------------------------

def test_alarms_list_and_acknowledge(client, hub, admin, viewer, euis):
    eui = euis[0]
    payload = encode_uplink([items.TemperatureAlarm(alarm="above_threshold", temperature_c=70.5)])
    submit_and_wait(hub, [envelope(eui, T - 5, payload)])
    alarms = client.get("/api/alarms", headers=viewer, params={"status": "active"}).json()
    assert len(alarms) == 1
    alarm = alarms[0]
    assert (alarm["dev_eui"], alarm["item"], alarm["last_value"]) == (
        eui, "temperature_alarm", 70.5)
    assert alarm["acknowledged_by"] is None
    assert client.get(f"/api/devices/{eui}", headers=viewer).json()["active_alarms"] == 1
    assert client.get("/api/alarms", headers=viewer,
                      params={"dev_eui": euis[1]}).json() == []
    r = client.post(f"/api/alarms/{alarm['id']}/ack", headers=admin)
    assert r.status_code == 200
    assert (r.json()["acknowledged_by"], r.json()["acknowledged_at"]) == ("admin", T)
    stored = hub.store.query("SELECT acknowledged_by FROM alarm WHERE id = ?", (alarm["id"],))
    assert stored == [("admin",)]
    assert client.post("/api/alarms/999/ack", headers=admin).status_code == 404


# -- downlinks ------------------------------------------------------------------------------------

def test_refused_downlink_is_422_and_queues_nothing(client, hub, admin, euis):
    url = f"/api/devices/{euis[0]}/downlinks"
    for minutes in (0, 10000):
        r = client.post(url, headers=admin, json={"command": "set_reporting_interval",
                                                  "params": {"minutes": minutes}})
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert detail["command"] == "set_reporting_interval"
        assert "out of range" in detail["reason"]
    r = client.post(url, headers=admin, json={"command": "self_destruct"})
    assert r.status_code == 422 and r.json()["detail"]["command"] == "self_destruct"
    assert count(hub, "SELECT count(*) FROM downlink") == 0
    assert client.post(f"/api/devices/{NEW_EUI}/downlinks", headers=admin, json={
        "command": "reboot"}).status_code == 404


def test_valid_downlink_is_queued(client, hub, admin, viewer, euis):
    eui = euis[0]
    r = client.post(f"/api/devices/{eui.upper()}/downlinks", headers=admin, json={
        "command": "set_reporting_interval", "params": {"minutes": 20}})
    assert r.status_code == 202
    row = r.json()
    assert (row["status"], row["dev_eui"], row["created_by"], row["params"]) == (
        "queued", eui, "admin", {"minutes": 20})
    assert count(hub, "SELECT count(*) FROM downlink WHERE status = 'queued'") == 1
    assert client.get(f"/api/downlinks/{row['id']}", headers=viewer).json() == row
    assert [d["id"] for d in client.get("/api/downlinks", headers=viewer,
                                        params={"dev_eui": eui}).json()] == [row["id"]]
    assert client.get("/api/downlinks", headers=viewer, params={"status": "sent"}).json() == []
    assert client.get("/api/downlinks/999", headers=viewer).status_code == 404
    shadow = client.get(f"/api/devices/{eui}/config", headers=viewer).json()
    assert {s["setting"]: s["state"] for s in shadow}["61"] == "pending"
    catalogue = {c["command"] for c in client.get("/api/commands", headers=viewer).json()}
    assert {"set_reporting_interval", "reboot"} <= catalogue


# -- operations -----------------------------------------------------------------------------------

def test_completeness_gaps_and_dead_letters(client, hub, viewer, euis):
    body = client.get("/api/completeness", headers=viewer).json()
    assert (body["start"], body["end"]) == (T - 7 * 86400, T)
    per = {d["dev_eui"]: d for d in body["devices"]}
    assert set(per) == set(euis)
    assert all(d["readings"] == count(hub, "SELECT count(*) FROM reading r JOIN device d ON "
                                           "d.id = r.device_id WHERE d.dev_eui = ?", (e,))
               for e, d in per.items())
    hub.store.save_gaps(hub.store.device_id(euis[1]), [(T0 + 600, T0 + 1200)], T)
    gaps = client.get("/api/gaps", headers=viewer, params={"dev_eui": euis[1]}).json()
    assert [(g["dev_eui"], g["start_ts"], g["status"]) for g in gaps] == [
        (euis[1], T0 + 600, "open")]
    assert client.get("/api/gaps", headers=viewer, params={"dev_eui": euis[0]}).json() == []
    assert client.get("/api/gaps", headers=viewer, params={"dev_eui": NEW_EUI}
                      ).status_code == 404
    assert client.get("/api/dead-letters", headers=viewer).json() == []


# -- webhooks -------------------------------------------------------------------------------------

def chirpstack_up(data, *, eui=NEW_EUI, f_cnt=7):
    return {"deduplicationId": f"3d6f-{f_cnt}", "time": "2026-09-21T17:13:00.123456789Z",
            "deviceInfo": {"devEui": eui.upper(), "applicationId": "app-1",
                           "deviceName": "meter"},
            "fCnt": f_cnt, "fPort": 85, "data": data}


def test_chirpstack_uplink_is_stored_before_the_answer(client, hub, admin, frames,
                                                        monkeypatch):
    write = hub.store.write

    def slow_write(*args, **kwargs):  # a slow commit: the answer must still wait for it
        time.sleep(0.2)
        return write(*args, **kwargs)

    monkeypatch.setattr(hub.store, "write", slow_write)
    frame = next(fr for fr in frames if fr.kind == "periodic")
    body = chirpstack_up(base64.b64encode(frame.payload).decode())
    r = client.post("/api/uplinks/chirpstack", params={"event": "up"}, json=body,
                    headers=admin)
    assert r.status_code == 200 and r.json() == {"stored": True}
    rows = hub.store.query("SELECT u.source, u.kind, u.payload FROM uplink u JOIN device d ON "
                           "d.id = u.device_id WHERE d.dev_eui = ?", (NEW_EUI,))
    assert rows == [("http", "report", frame.payload)]
    assert count(hub, "SELECT count(*) FROM channel_reading c JOIN device d ON d.id = "
                      "c.device_id WHERE d.dev_eui = ?", (NEW_EUI,)) > 0
    # the same uplink again (a webhook retry) is acknowledged and stored once
    token = admin["Authorization"].split()[1]
    again = client.post("/api/uplinks/chirpstack", params={"event": "up", "token": token},
                        json=body)
    assert again.status_code == 200
    assert count(hub, "SELECT count(*) FROM uplink WHERE source = 'http'") == 1


def test_chirpstack_join_event(client, hub, admin, euis):
    body = {"time": "2026-09-21T17:00:00Z", "deviceInfo": {"devEui": euis[0]},
            "devAddr": "01020304"}
    r = client.post("/api/uplinks/chirpstack", params={"event": "join"}, json=body,
                    headers=admin)
    assert r.status_code == 200
    joined = hub.store.device(euis[0])["joined_at"]
    assert joined == datetime(2026, 9, 21, 17, tzinfo=UTC).timestamp()


def test_malformed_webhooks_go_to_dead_letters(client, hub, admin):
    url = "/api/uplinks/chirpstack?event=up"
    r = client.post(url, content=b"{not json", headers=admin)
    assert r.status_code == 400 and r.json()["detail"].startswith("not JSON")
    r = client.post(url, json=chirpstack_up("%%%not-base64"), headers=admin)
    assert r.status_code == 400 and "not base64" in r.json()["detail"]
    letters = hub.store.query("SELECT source, dev_eui, reason, body FROM dead_letter "
                              "ORDER BY id")
    assert [(s, e) for s, e, _, _ in letters] == [("http", None), ("http", NEW_EUI)]
    assert letters[0][2].startswith("not JSON") and bytes(letters[0][3]) == b"{not json"
    assert "not base64" in letters[1][2]
    listed = client.get("/api/dead-letters", headers=admin).json()
    assert [d["body"] for d in listed][-1] == "{not json"
    assert count(hub, "SELECT count(*) FROM uplink WHERE source = 'http'") == 0


def test_webhook_uplink_with_a_huge_frame_counter_is_refused_and_the_next_is_stored(
        client, hub, admin, frames):
    data = base64.b64encode(next(fr for fr in frames if fr.kind == "periodic").payload).decode()
    r = client.post("/api/uplinks/chirpstack?event=up", json=chirpstack_up(data, f_cnt=2**70),
                    headers=admin)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("bad fCnt: 1180591620717411303424")
    assert hub.store.query("SELECT dev_eui, reason FROM dead_letter") == [
        (NEW_EUI, "bad fCnt: 1180591620717411303424 is not an integer 0..4294967295")]
    r = client.post("/api/uplinks/chirpstack?event=up", json=chirpstack_up(data, f_cnt=8),
                    headers=admin)
    assert r.status_code == 200 and r.json() == {"stored": True}
    assert hub.store.query("SELECT f_cnt FROM uplink WHERE source = 'http'") == [(8,)]


def test_undecodable_payload_is_stored_raw_and_dead_lettered(client, hub, admin):
    r = client.post("/api/uplinks/chirpstack?event=up", headers=admin,
                    json=chirpstack_up(base64.b64encode(b"\x99\x99").decode()))
    assert r.status_code == 200
    assert hub.store.query("SELECT kind, payload FROM uplink WHERE source = 'http'") == [
        ("undecodable", b"\x99\x99")]
    (reason,) = hub.store.query("SELECT reason FROM dead_letter")[0]
    assert reason.startswith("undecodable")


def test_tts_webhooks(client, hub, admin, frames):
    frame = next(fr for fr in frames if fr.kind == "periodic")

    def up(f_cnt):
        return {"end_device_ids": {"device_id": "meter-1", "dev_eui": NEW_EUI.upper(),
                                   "application_ids": {"application_id": "app"}},
                "correlation_ids": ["as:up:01"], "received_at": "2026-09-21T17:13:00Z",
                "uplink_message": {"f_port": 85, "f_cnt": f_cnt,
                                   "frm_payload": base64.b64encode(frame.payload).decode(),
                                   "received_at": f"2026-09-21T17:13:0{f_cnt}Z"}}

    assert client.post("/api/uplinks/tts", json=up(1), headers=admin).json() == {"stored": True}
    assert client.post("/api/uplinks/tts/uplink", json=up(2), headers=admin).status_code == 200
    assert count(hub, "SELECT count(*) FROM uplink WHERE source = 'http'") == 2
    join = {"end_device_ids": {"device_id": "meter-1", "dev_eui": NEW_EUI},
            "received_at": "2026-09-21T17:20:00Z", "join_accept": {"session_key_id": "x"}}
    assert client.post("/api/uplinks/tts", json=join, headers=admin).status_code == 200
    assert hub.store.device(NEW_EUI)["joined_at"] == datetime(
        2026, 9, 21, 17, 20, tzinfo=UTC).timestamp()
    r = client.post("/api/uplinks/tts/up", content=json.dumps({"end_device_ids": {}}),
                    headers=admin)
    assert r.status_code == 400
    assert count(hub, "SELECT count(*) FROM dead_letter") == 1
