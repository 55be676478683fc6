"""Managing what the hub keeps: past alarms (cleared by the device itself), tariffs edited and
deleted on the energy report page, configuration templates deleted on the templates page."""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import screenshot, visit, wait

CALIBRATION = "6b"  # the configuration shadow's setting ids
TEMPERATURE_THRESHOLD = "76"
ALARM_SETTINGS = "7c"


def _send(web_hub, eui, command, **params):
    web_hub.admin.post(f"/api/devices/{eui}/downlinks",
                       json={"command": command, "params": params}).raise_for_status()


def _confirmed(web_hub, eui, setting, **reported):
    """The device has confirmed `setting` with (at least) these values."""
    row = {r["setting"]: r for r in web_hub.api(f"/api/devices/{eui}/config")}.get(setting)
    return bool(row and row["state"] == "in_sync"
                and reported.items() <= (row.get("reported") or {}).items())


def _active_temperature_alarm(web_hub, eui):
    found = [a for a in web_hub.api("/api/alarms", dev_eui=eui, item="temperature_alarm")
             if a["status"] != "dismissed"]
    return found[0] if found else None


def _delete_confirmed(page, item, question, item_id, stored_ids):
    """Delete `item` (a row or card with a Delete button) through the page's confirmation:
    "Cancel" keeps it, on the page and in the API (`stored_ids()`); "OK" removes it."""
    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    item.get_by_role("button", name="Delete").click()
    assert asked == [question]
    assert item_id in stored_ids() and item.count() == 1
    page.once("dialog", lambda d: d.accept())
    item.get_by_role("button", name="Delete").click()
    item.wait_for(state="detached")


def test_an_alarm_the_device_clears_moves_to_the_past_alarms(admin_page, web_hub):
    page = admin_page
    eui = web_hub.euis[1]
    # the device reports clearing (off by default), with its temperature as measured, and a
    # threshold below that temperature: it raises a temperature alarm
    _send(web_hub, eui, "set_alarm_settings", repeat_interval_min=5, repeat_count=3,
          report_cleared=True)
    _send(web_hub, eui, "set_temperature_calibration", enabled=False, offset_c=0)
    _send(web_hub, eui, "set_temperature_threshold", enabled=True, condition="above", max_c=5)
    wait(lambda: _confirmed(web_hub, eui, ALARM_SETTINGS, report_cleared=True)
         and _confirmed(web_hub, eui, CALIBRATION, enabled=False)
         and _confirmed(web_hub, eui, TEMPERATURE_THRESHOLD, condition="above"), 40,
         "the device's alarm settings")
    alarm = wait(lambda: _active_temperature_alarm(web_hub, eui), 40, "a temperature alarm")
    try:
        visit(page, f"/alarms?dev_eui={eui}")
        active = page.locator(f"#active-alarms tr[data-alarm-id='{alarm['id']}']")
        past = page.locator(f"#past-alarms tr[data-alarm-id='{alarm['id']}']")
        active.wait_for()
        assert past.count() == 0
        assert "Cleared" not in page.locator("#active-alarms thead").inner_text()

        # 80 °C off its probe: the temperature falls below the threshold, the device reports the
        # alarm cleared, and the page (live) moves it from the active list to the past one
        _send(web_hub, eui, "set_temperature_calibration", enabled=True, offset_c=-80)
        past.wait_for(timeout=20000)  # before the 30 s poll
        assert active.count() == 0
        cleared = next(a for a in web_hub.api("/api/alarms", dev_eui=eui)
                       if a["id"] == alarm["id"])
        assert cleared["status"] == "dismissed" and cleared["cleared_by"] == "device"
        assert cleared["cleared_at"] >= alarm["last_at"]
        assert past.get_attribute("data-status") == "dismissed"
        assert "Cleared" in page.locator("#past-alarms thead").inner_text()
        cell = past.locator("[data-col=cleared]")
        assert cell.locator("time").get_attribute("data-ts") == \
            str(cleared["cleared_at"]).removesuffix(".0")
        assert cell.locator("small").inner_text() == "device"
        assert past.locator("[data-col=first] time").get_attribute("data-ts") == \
            str(alarm["first_at"]).removesuffix(".0")

        # "Past only" hides the active list and keeps the past one
        page.get_by_label("Show").select_option("dismissed")
        page.wait_for_selector("#active-section", state="hidden")
        past.wait_for()
        screenshot(page, "alarms-past")
        page.errors.check()
    finally:
        _send(web_hub, eui, "set_temperature_calibration", enabled=False, offset_c=0)
        wait(lambda: _confirmed(web_hub, eui, CALIBRATION, enabled=False), 40,
             "the calibration undone")


def _month(web_hub):
    return datetime.fromtimestamp(web_hub.api("/api/health")["time"], UTC).strftime("%Y-%m")


def _new_tariff(web_hub, name, price):
    r = web_hub.admin.post("/api/tariffs", json={"name": name, "currency": "EUR",
                                                 "kind": "flat", "price_per_kwh": price})
    r.raise_for_status()
    return r.json()


def _shown_report(page):
    """Energy and cost of every tenant and channel row as the page holds them (full values),
    and the total cost as shown."""
    rows = page.evaluate("""() => [...document.querySelectorAll(
        '#tenants tbody tr, #channels tbody tr')].map(tr => ({
            energy: tr.querySelector('[data-col=energy_kwh]').dataset.value,
            cost: tr.querySelector('[data-col=cost]').dataset.value,
            shown: tr.querySelector('[data-col=cost]').innerText.split('\\n')[0]}))""")
    return rows, page.locator("#total-cost").inner_text()


def _priced_at(page, price):
    """Every cost on the page is its energy x `price` (no standing charge): None if not."""
    rows, total = _shown_report(page)
    if not rows or total == "—" or any(r["cost"] == "" for r in rows):
        return None
    for r in rows:
        expected = float(r["energy"]) * price
        if abs(float(r["cost"]) - expected) > 1e-5 or abs(float(r["shown"]) - expected) > 0.0051:
            return None
    channels = page.evaluate("""() => [...document.querySelectorAll(
        '#channels tbody [data-col=energy_kwh]')].map(td => Number(td.dataset.value))""")
    expected_total = sum(channels) * price
    if abs(float(total.removesuffix(" EUR")) - expected_total) > 0.0051:
        return None
    return rows


def test_an_edited_tariff_prices_the_report_with_its_new_price(admin_page, web_hub):
    page = admin_page
    old, new = 0.2, 0.37
    tariff = _new_tariff(web_hub, "Edited flat", old)
    visit(page, f"/reports/energy?month={_month(web_hub)}&tariff_id={tariff['id']}")
    rows = wait(lambda: _priced_at(page, old), 10, f"the report priced at {old}")
    assert any(float(r["energy"]) * (new - old) > 0.01 for r in rows), \
        "no energy yet: the two prices would give the same costs"

    row = page.locator(f"#tariff-list tr[data-tariff-id='{tariff['id']}']")
    row.get_by_role("button", name="Edit").click()
    assert page.locator("#tariff-form-h").inner_text() == "Edit tariff “Edited flat”"
    assert page.get_by_label("Name", exact=True).input_value() == "Edited flat"
    price = page.get_by_label("Price per kWh", exact=True)
    assert float(price.input_value()) == old
    price.fill(str(new))
    page.get_by_role("button", name="Save tariff").click()
    row.locator(f"td:text-is('{new} EUR/kWh')").wait_for()

    # the same tariff, now at the new price (not a second one)
    stored = [t for t in web_hub.api("/api/tariffs") if t["name"] == "Edited flat"]
    assert [(t["id"], t["price_per_kwh"]) for t in stored] == [(tariff["id"], new)]
    # the report it prices follows, without being asked again
    wait(lambda: _priced_at(page, new), 10, f"the report priced at {new}")
    assert "tariff Edited flat" in page.locator("#report-period").inner_text()
    page.errors.check()


def test_a_deleted_tariff_is_gone_from_the_page_and_the_api(admin_page, web_hub):
    page = admin_page
    kept = _new_tariff(web_hub, "Kept flat", 0.3)
    doomed = _new_tariff(web_hub, "Doomed flat", 0.5)
    visit(page, f"/reports/energy?month={_month(web_hub)}&tariff_id={doomed['id']}")
    wait(lambda: _priced_at(page, 0.5), 10, "the report priced with the tariff")
    row = page.locator(f"#tariff-list tr[data-tariff-id='{doomed['id']}']")
    option = page.locator(f"#tariff option[value='{doomed['id']}']")
    assert row.count() == 1 and option.count() == 1

    _delete_confirmed(page, row, "Delete the tariff “Doomed flat”?", doomed["id"],
                      lambda: {t["id"] for t in web_hub.api("/api/tariffs")})
    assert option.count() == 0
    ids = {t["id"] for t in web_hub.api("/api/tariffs")}
    assert doomed["id"] not in ids and kept["id"] in ids
    assert page.locator(f"#tariff-list tr[data-tariff-id='{kept['id']}']").count() == 1
    # the report no longer claims a price from a tariff that is gone
    page.wait_for_selector("#total-cost:text-is('—')")
    assert "no tariff" in page.locator("#report-period").inner_text()
    assert web_hub.admin.get("/api/reports/energy", params={
        "month": _month(web_hub), "tariff_id": doomed["id"]}).status_code == 404
    page.errors.check()


def test_a_deleted_template_is_gone_from_the_page_and_the_api(admin_page, web_hub):
    page = admin_page
    made = {}
    for name, minutes in (("Kept template", 15), ("Doomed template", 20)):
        r = web_hub.admin.post("/api/templates", json={"name": name, "settings": [
            {"command": "set_reporting_interval", "params": {"minutes": minutes}}]})
        r.raise_for_status()
        made[name] = r.json()["id"]
    visit(page, "/templates")
    doomed = page.locator(f"article[data-template-id='{made['Doomed template']}']")
    kept = page.locator(f"article[data-template-id='{made['Kept template']}']")
    doomed.wait_for()
    assert doomed.locator("h3").inner_text().startswith("Doomed template")

    _delete_confirmed(page, doomed, "Delete the template “Doomed template”?",
                      made["Doomed template"],
                      lambda: {t["id"] for t in web_hub.api("/api/templates")})
    assert "Doomed template" not in page.locator("#template-list").inner_text()
    assert kept.count() == 1
    ids = {t["id"] for t in web_hub.api("/api/templates")}
    assert made["Doomed template"] not in ids and made["Kept template"] in ids
    # and it stays gone when the page is opened again
    visit(page, "/templates")
    kept.wait_for()
    assert doomed.count() == 0
    page.errors.check()
