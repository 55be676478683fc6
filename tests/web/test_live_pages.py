"""The fleet overview and the live device page show what the hub stores, and follow it."""

from __future__ import annotations

import re

from cth01.hub.readings import DEVICE_COLUMNS

from .conftest import assert_shows, screenshot, visit

_PAGE_ROWS = """() => [...document.querySelectorAll('#fleet tbody tr[data-eui]')].map(tr => {
    const cells = {};
    for (const td of tr.querySelectorAll('td[data-col]')) cells[td.dataset.col] = td.innerText;
    return {eui: tr.dataset.eui, status: tr.dataset.status, cells};
})"""


def _overview_matches(page, web_hub):
    """The overview as the page shows it and as the API has it, when both agree on every
    device (the fleet keeps reporting: retried until a page load and an API read meet)."""
    for _ in range(8):
        page.reload()
        page.wait_for_selector("#fleet tbody tr[data-eui]")
        shown_rows = page.evaluate(_PAGE_ROWS)
        api_rows = {r["dev_eui"]: r for r in web_hub.api("/api/overview")}
        try:
            assert sorted(r["eui"] for r in shown_rows) == sorted(api_rows)
            for row in shown_rows:
                want, cells = api_rows[row["eui"]], row["cells"]
                assert row["status"] == want["status"]
                assert_shows(cells["total_power_w"], want["total_power_w"], "total power")
                kwh = cells["today_kwh"]
                assert_shows(kwh.removesuffix(" kWh"), want["today_kwh"], "today's energy")
                assert int(cells["active_alarms"]) == want["active_alarms"]
                completeness = want["completeness"]
                if completeness is not None:
                    pct = completeness * 100 if completeness <= 1 else completeness
                    assert_shows(cells["completeness"].split("%")[0], pct, "completeness")
            return shown_rows
        except AssertionError as exc:
            last = exc
    raise last


def test_overview_lists_every_device_with_the_numbers_the_api_has(admin_page, web_hub):
    page = admin_page
    visit(page, "/")
    rows = _overview_matches(page, web_hub)
    assert len(rows) == len(web_hub.euis)
    # LED-style status with a text label
    led = page.locator("#fleet tbody tr[data-eui] .status .led").first
    assert led.is_visible()
    screenshot(page, "overview")

    # search: by part of a DevEUI
    target = web_hub.euis[2]
    page.get_by_label("Search").fill(target[-6:])
    page.wait_for_function("() => document.querySelectorAll('#fleet tbody tr[data-eui]')"
                           ".length === 1")
    assert page.locator("#fleet tbody tr[data-eui]").get_attribute("data-eui") == target
    assert target[-6:] in page.url
    page.get_by_label("Search").fill("")

    # sort: total power, largest first, then smallest first
    header = page.locator("#fleet thead th[data-key=total_power_w]")
    header.get_by_role("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    values = [float(v) for v in page.locator(
        "#fleet tbody td[data-col=total_power_w]").evaluate_all(
        "tds => tds.map(td => td.dataset.value || '-1')")]
    assert values == sorted(values, reverse=True)
    header.get_by_role("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    page.errors.check()


_DEVICE_CELLS = """() => {
    const cells = {};
    for (const n of document.querySelectorAll('[data-col]')) cells[n.dataset.col] = n.innerText;
    const ts = document.querySelector('#reading-time').dataset.ts;
    return {ts: ts ? Number(ts) : null, cells};
}"""


def _device_quantity(col: str) -> str:
    return re.sub(r"^c\d+_", "", col)


def _check_device_page(page, web_hub, eui):
    got = page.evaluate(_DEVICE_CELLS)
    assert got["ts"], "the page shows no reading"
    row = web_hub.store_row(eui, got["ts"])
    checked = 0
    for col, text in got["cells"].items():
        if col.endswith(("_circuit", "_tenant")):
            continue
        value = row[col]
        if _device_quantity(col) == "imported_active_wh" and value is not None:
            value, text = value / 1000, text.removesuffix(" kWh")
        assert_shows(text, value, f"{eui} {col} at {got['ts']}")
        checked += 1
    return got["ts"], checked


def test_device_page_shows_the_stored_reading_by_group_and_updates_live(admin_page, web_hub):
    page = admin_page
    eui = web_hub.euis[0]  # reports every quantity
    device = web_hub.api(f"/api/devices/{eui}")
    visit(page, f"/devices/{eui}")
    page.wait_for_selector("#reading-time[data-ts]")
    page.wait_for_selector("#groups section[data-group=d]")
    ts, checked = _check_device_page(page, web_hub, eui)
    # every device-wide quantity and the channels' current, power, PF, energy, THDi
    assert checked >= len(DEVICE_COLUMNS) + 12 * 2
    for col in (*DEVICE_COLUMNS, "c1_current_a", "c1_thdi_pct", "c1_active_power_w"):
        assert page.locator(f"[data-col={col}]").inner_text() != "—", col
    # the groups a-d as wired: a three-phase group shows one circuit total
    for group, phase in (p.split(":") for p in device["wiring"].split(",")):
        panel = page.locator(f"section[data-group={group}]")
        assert ("three-phase" in panel.locator(".kind").inner_text()) == (phase == "three")
        assert panel.locator("td[rowspan='3']").count() == (3 if phase == "three" else 0)
    screenshot(page, "device")

    # the next report appears without reloading the page
    page.evaluate("() => { window.__notReloaded = true; }")
    page.wait_for_function(f"() => Number(document.querySelector('#reading-time')"
                           f".dataset.ts) > {ts}", timeout=40000)
    assert page.evaluate("() => window.__notReloaded === true")
    newer, _ = _check_device_page(page, web_hub, eui)
    assert newer > ts
    page.errors.check()


def test_circuit_names_and_tenants_are_edited_on_the_device_page(admin_page, web_hub):
    page = admin_page
    eui = web_hub.euis[0]
    visit(page, f"/devices/{eui}")
    page.get_by_role("button", name="Edit names and tenants").click()
    page.get_by_label("Device name").fill("Main board")
    page.get_by_label("Channel 2 circuit").fill("Bakery ovens")
    page.get_by_label("Channel 2 tenant").fill("Bakery")
    page.get_by_role("button", name="Save names").click()
    page.wait_for_selector("[data-col=c2_circuit]:has-text('Bakery ovens')")
    assert page.locator("#dev-name").inner_text() == "Main board"
    device = web_hub.api(f"/api/devices/{eui}")
    assert device["name"] == "Main board"
    assert device["channels"][1] | {"circuit": "Bakery ovens", "tenant": "Bakery"} == \
        device["channels"][1]
    page.errors.check()
