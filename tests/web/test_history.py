"""History charts: the hub's downsampled data for several channels, zoom and pan by asking the
hub again, CSV of the data shown and PNG of the chart."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cth01.hub import web

from .conftest import screenshot, visit


def _api_points(web_hub, eui, quantity, channel, start, end, points):
    params = {"quantity": quantity, "start": start, "end": end, "points": points}
    if channel:
        params["channel"] = channel
    return web_hub.api(f"/api/devices/{eui}/readings", **params)["points"]


def _table(page):
    """The data table under the chart: [ts, mean of each series...] per row."""
    return page.evaluate("""() => [
        ...document.querySelectorAll('#data-table tbody tr[data-ts]')].map(tr => [
            Number(tr.dataset.ts),
            ...[...tr.querySelectorAll('td[data-series]')].map(
                td => td.dataset.value === '' ? null : Number(td.dataset.value))])""")


def test_history_overlays_channels_from_the_hubs_downsampled_data(admin_page, web_hub,
                                                                   vendored):
    page = admin_page
    eui = web_hub.euis[0]
    end = int(web_hub.api("/api/health")["time"])
    did = web_hub.hub.store.device_id(eui)
    start = web_hub.hub.store.query("SELECT min(ts) FROM reading WHERE device_id = ?",
                                    (did,))[0][0] - 60
    visit(page, f"/devices/{eui}/history?quantity=active_power_w&series=1,2,4&start={start}"
              f"&end={end}&points=200")
    page.wait_for_selector("#chart canvas")
    page.wait_for_selector("#data-table tbody tr[data-ts]", state="attached")
    # one line per channel, in the legend
    legend = page.locator("#chart .u-legend .u-series").all_inner_texts()
    assert sum("Ch 1" in t for t in legend) == 1 and sum("Ch 4" in t for t in legend) == 1
    # the table under the chart holds exactly the hub's buckets
    rows = _table(page)
    api = {ch: {p["ts"]: p["mean"] for p in _api_points(web_hub, eui, "active_power_w", ch,
                                                          start, end, 200)}
           for ch in (1, 2, 4)}
    assert rows and len(rows) == len(set().union(*api.values()))
    for ts, *means in rows:
        assert means == [api[ch].get(ts) for ch in (1, 2, 4)], ts
    screenshot(page, "history")

    # zoom: drag across the middle of the chart -> the hub is asked for the narrower range
    box = page.locator("#chart .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_request(lambda r: "/readings?" in r.url) as request:
        page.mouse.move(box["x"] + box["width"] * 0.4, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
        page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
        page.mouse.up()
    asked = parse_qs(urlparse(request.value.url).query)
    z_start, z_end = int(asked["start"][0]), int(asked["end"][0])
    assert start < z_start < z_end < end and z_end - z_start < (end - start) / 2
    assert asked["points"] == ["200"]
    page.wait_for_url(lambda url: f"start={z_start}" in url)
    # pan: later by half the window (the hub is asked again for the window moved)
    with page.expect_request(lambda r: "/readings?" in r.url and f"start={z_start}&" not in
                             r.url) as request:
        page.get_by_role("button", name="Later").click()
    panned = parse_qs(urlparse(request.value.url).query)
    assert abs(int(panned["start"][0]) - (z_start + (z_end - z_start) / 2)) <= 1
    # keyboard: the chart takes focus; "-" zooms out
    page.locator("#chart").focus()
    with page.expect_request(lambda r: "/readings?" in r.url):
        page.keyboard.press("-")
    page.wait_for_selector("#data-table tbody tr[data-ts]", state="attached")

    # CSV: the data shown, with min / max / count
    page.wait_for_timeout(300)
    shown = _table(page)
    state = parse_qs(urlparse(page.url).query)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV").click()
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    assert dl.value.suggested_filename.endswith(".csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["ts"]) for r in parsed] == [r[0] for r in shown]
    points = {p["ts"]: p for p in _api_points(web_hub, eui, "active_power_w", 4,
                                               int(state["start"][0]), int(state["end"][0]),
                                               200)}
    for r in parsed:
        p = points.get(int(r["ts"]))
        if p:
            assert float(r["ch4_active_power_w_mean"]) == p["mean"]
            assert float(r["ch4_active_power_w_max"]) == p["max"]
            assert int(r["ch4_active_power_w_count"]) == p["count"]
    # PNG of the chart
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export PNG").click()
    assert dl.value.suggested_filename.endswith(".png")
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.errors.check()


def test_history_of_a_device_quantity_overlays_the_three_phases(admin_page, web_hub, vendored):
    page = admin_page
    eui = web_hub.euis[0]
    visit(page, f"/devices/{eui}/history")
    page.get_by_label("Quantity").select_option("voltage")
    assert page.locator("#series-picks input:checked").count() == 3
    page.get_by_role("button", name="24 h").click()
    page.wait_for_selector("#data-table td[data-series=L3]", state="attached")
    rows = _table(page)
    state = parse_qs(urlparse(page.url).query)
    api = _api_points(web_hub, eui, "voltage_l2_v", None, int(state["start"][0]),
                      int(state["end"][0]), int(state.get("points", ["500"])[0]))
    by_ts = {p["ts"]: p["mean"] for p in api}
    assert rows and all(r[2] == by_ts.get(r[0]) for r in rows)
    page.errors.check()


def test_history_says_so_when_the_chart_library_is_missing(admin_page, web_hub, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(web, "VENDOR_DIR", tmp_path)  # as if `make vendor` never ran
    page = admin_page
    visit(page, f"/devices/{web_hub.euis[0]}/history")
    message = page.locator("#vendor-missing")
    assert "make vendor" in message.inner_text() and message.is_visible()
    # the data is still there, as a table
    page.wait_for_selector("#data-table tbody tr[data-ts]", state="attached")
    assert page.locator("#data-details").get_attribute("open") is not None
    page.errors.check()
