"""The API the dashboard uses, on both engines: login sessions (cookie, CSRF header), calendar
periods in the hub's time zone, the monthly energy report (JSON and CSV), tariffs,
configuration templates, latest values, the fleet overview, and the live event stream against
a real uvicorn server."""

from __future__ import annotations

import csv
import io
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn

from cth01.hub import api
from cth01.hub.api import create_app
from cth01.hub.config import HubConfig
from cth01.hub.service import Hub
from cth01.hub.tariff import month_bounds
from cth01.protocol import GroupReading, encode_uplink, items

from .test_reports import BERLIN, EUI, TOU, ab_energy, envelope, feed, hourly_kwh

T = int(datetime(2026, 4, 2, 10, tzinfo=UTC).timestamp())  # the hub's clock
CSRF = {"X-CTH01-CSRF": "1"}


@pytest.fixture
def hub(store):
    return Hub(HubConfig(backfill=False, timezone="Europe/Berlin"), store, clock=lambda: T)


@pytest.fixture
def tokens(hub):
    return {"admin": hub.store.create_token("admin", "admin"),
            "viewer": hub.store.create_token("viewer", "read")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- sessions -------------------------------------------------------------------------------------

def test_login_session_cookie_csrf_and_logout(client, hub, tokens):
    feed(hub.store, [(EUI[1], T - 600, ab_energy(1, 2, 3, 4))])
    assert client.post("/api/session", json={"token": "cth01_not_a_token"}).status_code == 401
    assert client.get("/api/session").status_code == 401
    r = client.post("/api/session", json={"token": tokens["admin"]})
    assert r.status_code == 200 and r.json() == {"name": "admin", "role": "admin"}
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("cth01_session=") and "httponly" in cookie
    assert "samesite=strict" in cookie and "path=/" in cookie
    assert tokens["admin"] not in r.headers["set-cookie"]
    # the cookie alone now reads and, with the CSRF header, writes
    assert client.get("/api/session").json() == {"name": "admin", "role": "admin"}
    assert client.get("/api/devices").status_code == 200
    patch = {"name": "Kitchen"}
    refused = client.patch(f"/api/devices/{EUI[1]}", json=patch)
    assert refused.status_code == 403 and "X-CTH01-CSRF" in refused.json()["detail"]
    assert client.patch(f"/api/devices/{EUI[1]}", json=patch, headers=CSRF).status_code == 200
    # a bearer token needs no CSRF header, and wins over the cookie
    as_viewer = client.patch(f"/api/devices/{EUI[1]}", json=patch,
                             headers=bearer(tokens["viewer"]))
    assert as_viewer.status_code == 403 and "'read'" in as_viewer.json()["detail"]
    assert client.get("/api/session", headers=bearer(tokens["viewer"])).json()["role"] == "read"
    assert hub.store.query("SELECT last_used_at FROM api_token WHERE name = 'admin'")[0][0]
    # logging out is a write too
    assert client.delete("/api/session").status_code == 403
    out = client.delete("/api/session", headers=CSRF)
    assert out.status_code == 204 and "cth01_session=" in out.headers["set-cookie"]
    assert client.get("/api/session").status_code == 401
    assert client.get("/api/devices").status_code == 401
    hub.config.anonymous_read = True
    assert client.get("/api/session").json() == {"name": "anonymous", "role": "read"}


def test_a_stale_cookie_is_no_login(client, hub, tokens):
    client.post("/api/session", json={"token": tokens["viewer"]})
    assert client.get("/api/session").json()["name"] == "viewer"
    hub.store.create_token("viewer", "read")  # the token is replaced: its sessions end
    assert client.get("/api/overview").status_code == 401
    assert client.patch(f"/api/devices/{EUI[1]}", json={}, headers=CSRF).status_code == 401


# -- calendar periods ----------------------------------------------------------------------------

def test_day_and_month_periods_are_local_to_the_hub_time_zone(client, tokens):
    def bounds(**params):
        body = client.get("/api/energy", headers=bearer(tokens["viewer"]), params=params).json()
        return body["start"], body["end"]

    spring = bounds(period="day", day="2026-03-29")
    autumn = bounds(period="day", day="2026-10-25")
    assert spring[0] == int(datetime(2026, 3, 28, 23, tzinfo=UTC).timestamp())
    assert spring[1] - spring[0] == 23 * 3600 and autumn[1] - autumn[0] == 25 * 3600
    assert bounds(period="month", month="2026-03") == (
        int(datetime(2026, 2, 28, 23, tzinfo=UTC).timestamp()),
        int(datetime(2026, 3, 31, 22, tzinfo=UTC).timestamp()))
    # defaults: the hub clock's local day and month (2026-04-02 12:00 in Berlin)
    assert bounds(period="day")[0] == int(datetime(2026, 4, 1, 22, tzinfo=UTC).timestamp())
    assert bounds(period="month")[0] == int(datetime(2026, 3, 31, 22, tzinfo=UTC).timestamp())


# -- monthly report and tariffs ------------------------------------------------------------------

def test_monthly_report_json_csv_and_tariffs(client, hub, tokens):
    start, end = month_bounds(2026, 3, BERLIN)
    feed(hub.store, [*hourly_kwh(EUI[1], start, end - 3600), *hourly_kwh(EUI[2], start,
                                                                         end - 3600)])
    hub.store.update_device(EUI[1], name="Shop", tenant="Bakery")
    admin, viewer = bearer(tokens["admin"]), bearer(tokens["viewer"])

    # tariffs: validated, admin only, unique names
    assert client.post("/api/tariffs", json=TOU, headers=viewer).status_code == 403
    bad = client.post("/api/tariffs", json={**TOU, "bands": [{**TOU["bands"][0],
                                                              "end": "25:00"}]}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["detail"]["field"] == "bands[0].end"
    tou = client.post("/api/tariffs", json={**TOU, "standing_charge_per_month": 10},
                      headers=admin)
    assert tou.status_code == 201
    tou = tou.json()
    assert client.post("/api/tariffs", json=TOU, headers=admin).status_code == 409
    flat = client.post("/api/tariffs", json={"name": "Flat", "currency": "EUR", "kind": "flat",
                                             "price_per_kwh": 0.25}, headers=admin).json()
    renamed = client.put(f"/api/tariffs/{flat['id']}", headers=admin,
                         json={**flat, "price_per_kwh": 0.5})
    assert renamed.status_code == 200 and renamed.json()["price_per_kwh"] == 0.5
    assert client.put("/api/tariffs/999", json=flat, headers=admin).status_code == 404
    assert [t["name"] for t in client.get("/api/tariffs", headers=viewer).json()] == [
        "Flat", "Office"]

    r = client.get("/api/reports/energy", headers=viewer,
                   params={"month": "2026-03", "tariff_id": tou["id"]})
    assert r.status_code == 200
    doc = r.json()
    assert (doc["month"], doc["timezone"], doc["currency"]) == ("2026-03", "Europe/Berlin",
                                                                "EUR")
    assert (doc["start"], doc["end"]) == (start, end) and doc["tariff"]["id"] == tou["id"]
    ch1 = next(c for c in doc["channels"] if c["dev_eui"] == EUI[1] and c["channel"] == 1)
    # 743 hours of 1 kW in March (DST), 22 weekdays x 12 peak hours
    assert ch1 == {"dev_eui": EUI[1], "device_name": "Shop", "channel": 1, "circuit": None,
                   "tenant": "Bakery", "energy_kwh": 743, "source": "computed",
                   "cost": pytest.approx(264 * 0.3 + 479 * 0.2),
                   "bands": {"peak": 264, "*": 479}}
    tenants = {t["tenant"]: t for t in doc["tenants"]}
    assert tenants["Bakery"]["cost"] == pytest.approx(264 * 0.3 + 479 * 0.2 + 10)
    assert tenants["(unassigned)"]["energy_kwh"] == 743
    assert doc["total"]["energy_kwh"] == 2 * 743

    flat_doc = client.get("/api/reports/energy", headers=viewer, params={
        "month": "2026-03", "tariff_id": flat["id"], "dev_eui": EUI[2]}).json()
    assert {c["dev_eui"] for c in flat_doc["channels"]} == {EUI[2]}
    assert flat_doc["total"]["cost"] == pytest.approx(743 * 0.5)

    csv_r = client.get("/api/reports/energy.csv", headers=viewer,
                       params={"month": "2026-03", "tariff_id": tou["id"]})
    assert csv_r.status_code == 200
    assert csv_r.headers["content-disposition"] == \
        'attachment; filename="energy_report_2026-03.csv"'
    rows = list(csv.reader(io.StringIO(csv_r.text)))
    assert rows[0][:8] == ["kind", "month", "dev_eui", "device_name", "channel", "circuit",
                           "tenant", "energy_kwh"] and rows[0][-1] == "kwh_peak"
    kinds = [r[0] for r in rows[1:]]
    assert kinds == ["channel"] * len(doc["channels"]) + ["tenant"] * 2 + ["total"]
    assert float(rows[-1][7]) == 2 * 743

    for params, status in (({"month": "2026-13"}, 422), ({"tariff_id": 999}, 404),
                           ({"dev_eui": "ffffffffffffffff"}, 404)):
        assert client.get("/api/reports/energy", headers=viewer,
                          params=params).status_code == status, params
    assert client.delete(f"/api/tariffs/{flat['id']}", headers=admin).status_code == 204
    assert client.delete(f"/api/tariffs/{flat['id']}", headers=admin).status_code == 404


# -- templates -----------------------------------------------------------------------------------

def test_templates_save_copy_and_apply(client, hub, tokens):
    store, admin = hub.store, bearer(tokens["admin"])
    feed(store, [(EUI[1], T - 60, encode_uplink([items.AlarmSettings(
                     repeat_interval_min=7, repeat_count=2, report_cleared=True)])),
                 (EUI[2], T - 60, ab_energy(1, 1, 1, 1)), (EUI[3], T - 60, ab_energy(1, 1, 1, 1))])
    hub.queue_downlink(EUI[1], "set_reporting_interval", {"minutes": 5}, user="admin")
    before = store.query("SELECT count(*) FROM downlink")[0][0]

    copied = client.post("/api/templates", headers=admin,
                         json={"name": "Shop", "from_device": EUI[1]})
    assert copied.status_code == 201
    assert copied.json()["settings"] == [  # desired (61) and reported (7c), by setting id
        {"command": "set_reporting_interval", "params": {"minutes": 5}},
        {"command": "set_alarm_settings", "params": {"repeat_interval_min": 7,
                                                     "repeat_count": 2,
                                                     "report_cleared": True}}]
    assert client.post("/api/templates", headers=admin, json={
        "name": "Nothing", "from_device": EUI[2]}).status_code == 422
    bad = client.post("/api/templates", headers=admin, json={"name": "Bad", "settings": [
        {"command": "set_data_storage", "params": {"enabled": True}},
        {"command": "set_reporting_interval", "params": {"minutes": 5000}}]})
    assert bad.status_code == 422
    assert bad.json()["detail"]["index"] == 1 and "out of range" in bad.json()["detail"]["reason"]
    assert client.post("/api/templates", headers=admin, json={
        "name": "Shop", "settings": [{"command": "reboot"}]}).status_code == 409
    assert [t["name"] for t in client.get("/api/templates",
                                          headers=bearer(tokens["viewer"])).json()] == ["Shop"]

    tid = copied.json()["id"]
    # an unknown device: 404 and nothing queued
    assert client.post(f"/api/templates/{tid}/apply", headers=admin, json={
        "dev_euis": [EUI[2], "ffffffffffffffff"]}).status_code == 404
    assert store.query("SELECT count(*) FROM downlink")[0][0] == before
    applied = client.post(f"/api/templates/{tid}/apply", headers=admin,
                          json={"dev_euis": [EUI[2], EUI[3]]})
    assert applied.status_code == 202
    queued = applied.json()["queued"]
    assert [(q["dev_eui"], q["command"]) for q in queued] == [
        (EUI[2], "set_reporting_interval"), (EUI[2], "set_alarm_settings"),
        (EUI[3], "set_reporting_interval"), (EUI[3], "set_alarm_settings")]
    for q in queued:
        row = store.downlink(q["downlink_id"])
        assert (row["dev_eui"], row["command"], row["status"]) == (q["dev_eui"], q["command"],
                                                                   "queued")
    assert store.downlink(queued[0]["downlink_id"])["payload_hex"] == "61010500"
    # a stored command the encoder refuses (written around the API): 422, nothing queued
    broken = store.create_template("Broken", [
        {"command": "set_data_storage", "params": {"enabled": True}},
        {"command": "set_reporting_interval", "params": {"minutes": 0}}], created_by="x")
    count = store.query("SELECT count(*) FROM downlink")[0][0]
    r = client.post(f"/api/templates/{broken['id']}/apply", headers=admin,
                    json={"dev_euis": [EUI[2]]})
    assert r.status_code == 422 and r.json()["detail"]["command"] == "set_reporting_interval"
    assert store.query("SELECT count(*) FROM downlink")[0][0] == count
    assert client.delete(f"/api/templates/{tid}", headers=admin).status_code == 204
    assert client.post(f"/api/templates/{tid}/apply", headers=admin,
                       json={"dev_euis": [EUI[2]]}).status_code == 404


# -- latest values and overview ------------------------------------------------------------------

def test_latest_and_overview(client, hub, tokens):
    viewer = bearer(tokens["viewer"])
    power = items.ActivePowerAb(active_power_w=(
        GroupReading(group="a", phase="single", channels=(100, 200, 300)),
        GroupReading(group="b", phase="three", total=4000)))
    feed(hub.store, [(EUI[1], T - 300, encode_uplink([power])),
                     (EUI[1], T - 270, encode_uplink([items.Temperature(temperature_c=21.25)]))])
    hub.store.update_device(EUI[1], channels={4: {"circuit": "Pump", "tenant": "Plant"}})
    r = client.get(f"/api/devices/{EUI[1].upper()}/latest", headers=viewer)
    assert r.status_code == 200
    doc = r.json()
    assert doc["ts"] == T - 270 and doc["values"]["temperature_c"] == 21.25
    assert doc["values"]["c4_active_power_w"] == 4000
    assert doc["channels"][3] == {"channel": 4, "circuit": "Pump", "tenant": "Plant",
                                  "group": "b", "phase": "three"}
    assert doc["channels"][0]["phase"] == "single" and doc["channels"][9]["group"] == "d"
    assert doc["channels"][9]["phase"] is None  # group d never reported
    assert client.get("/api/devices/ffffffffffffffff/latest", headers=viewer).status_code == 404
    rows = client.get("/api/overview", headers=viewer).json()
    assert [(x["dev_eui"], x["status"], x["total_power_w"]) for x in rows] == [
        (EUI[1], "online", 4600)]
    assert set(rows[0]) >= {"dev_eui", "name", "site", "tenant", "status", "last_seen",
                            "total_power_w", "today_kwh", "active_alarms", "completeness"}
    assert client.get("/api/overview").status_code == 401


# -- the event stream ----------------------------------------------------------------------------

@pytest.fixture
def server(hub, monkeypatch):
    """The app on a real uvicorn server (port chosen by the OS) with the hub running."""
    monkeypatch.setattr(api, "SSE_PING_S", 0.2)
    hub.start()
    app = create_app(hub)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                        log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield app, f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)
    hub.stop()


def next_event(lines) -> tuple[str, str]:
    """(event, data) of the next event, skipping comments (pings) and the retry line."""
    event = data = None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event is not None:
            return event, data
    raise AssertionError("stream ended")


def test_stream_delivers_what_the_hub_emits(server, hub, tokens):
    server = server[1]
    feed(hub.store, [(EUI[2], T - 600, ab_energy(1, 2, 3, 4))])  # a known device
    baseline = len(hub.listeners)
    with httpx.Client(base_url=server, timeout=10) as http:
        login = http.post("/api/session", json={"token": tokens["viewer"]})
        assert login.status_code == 200
        with http.stream("GET", "/api/stream", headers=bearer(tokens["admin"])) as everything, \
                http.stream("GET", "/api/stream", params={"dev_eui": EUI[2]}) as one:  # cookie
            assert everything.status_code == one.status_code == 200
            assert everything.headers["content-type"].startswith("text/event-stream")
            lines_all, lines_one = everything.iter_lines(), one.iter_lines()
            assert next(lines_all) == next(lines_one) == "retry: 5000"  # both listening
            assert len(hub.listeners) == baseline + 2
            hub.submit(envelope(EUI[1], T, ab_energy(1, 2, 3, 4)))
            assert next_event(lines_all) == ("readings", f'{{"devices": ["{EUI[1]}"]}}')
            hub.submit(envelope(EUI[2], T + 1, encode_uplink([items.TemperatureAlarm(
                alarm="above_threshold", temperature_c=65.5)])))
            # the filtered stream skipped device 1's readings: its first event is device 2's
            event, data = next_event(lines_one)
            assert event == "alarm" and f'"dev_eui": "{EUI[2]}"' in data
            assert '"change": "raised"' in data
            assert next_event(lines_all)[0] == "alarm"
            # a client that does not read never holds the worker back
            t0 = time.monotonic()
            for k in range(3000):
                hub._emit("readings", {"devices": [f"{k:016x}"]})
            assert time.monotonic() - t0 < 1.0
        deadline = time.monotonic() + 5
        while len(hub.listeners) != baseline:  # both clients left: listeners removed
            assert time.monotonic() < deadline, "stream listeners not removed"
            time.sleep(0.05)
        assert http.get("/api/stream", params={"dev_eui": "ffffffffffffffff"},
                        headers=bearer(tokens["admin"])).status_code == 404
    forged = httpx.get(f"{server}/api/stream", headers={"Cookie": "cth01_session=forged"})
    assert forged.status_code == 401


def test_open_streams_end_when_the_server_stops(server, hub, tokens):
    """uvicorn waits for open responses before it shuts down: end_streams ends them."""
    app, server = server
    with httpx.stream("GET", f"{server}/api/stream", headers=bearer(tokens["viewer"]),
                      timeout=10) as r:
        lines = r.iter_lines()
        assert next(lines) == "retry: 5000"
        threading.Timer(0.3, app.state.end_streams).start()  # from another thread, as a signal
        rest = list(lines)  # returns only when the server ends the response
    assert all(line in ("", ": ping") for line in rest)
