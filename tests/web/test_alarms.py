"""Alarms: active and past, filtered, with the threshold that fired; acknowledged by an admin,
not by a reader."""

from __future__ import annotations

from .conftest import screenshot, visit, wait


def _temperature_alarm(web_hub, eui):
    """Make the virtual device raise a temperature alarm: a threshold below its temperature."""
    web_hub.admin.post(f"/api/devices/{eui}/downlinks", json={
        "command": "set_temperature_threshold",
        "params": {"enabled": True, "condition": "above", "max_c": 5}}).raise_for_status()

    def raised():
        found = [a for a in web_hub.api("/api/alarms", dev_eui=eui, item="temperature_alarm")
                 if a["status"] != "dismissed"]
        shadow = {r["setting"]: r for r in web_hub.api(f"/api/devices/{eui}/config")}
        return found and shadow.get("76", {}).get("state") == "in_sync" and found[0]

    return wait(raised, 40, "a temperature alarm")


def test_alarm_shows_the_threshold_that_fired_and_is_acknowledged(admin_page, web_hub):
    page = admin_page
    eui = web_hub.euis[1]
    alarm = _temperature_alarm(web_hub, eui)
    visit(page, f"/alarms?dev_eui={eui}")
    row = page.locator(f"#active-alarms tr[data-alarm-id='{alarm['id']}']")
    row.wait_for()
    assert row.locator("[data-col=item]").inner_text().startswith("Temperature")
    assert row.locator("[data-col=threshold]").inner_text() == "above 5 °C"
    # the value of its last report (the device repeats the alarm: the page may be a step behind)
    for _ in range(5):
        latest = next(a for a in web_hub.api("/api/alarms", dev_eui=eui)
                      if a["id"] == alarm["id"])
        if row.locator("[data-col=value]").inner_text() == f"{latest['last_value']} °C":
            break
        page.reload()
        row.wait_for()
    else:
        raise AssertionError("the alarm's value is not the stored one")
    assert row.locator("[data-col=first] time").get_attribute("data-ts") == \
        str(alarm["first_at"]).removesuffix(".0")
    # filter by type: no temperature alarm under "Voltage"
    page.get_by_label("Type").select_option("voltage_alarm")
    row.wait_for(state="detached")
    page.get_by_label("Type").select_option("temperature_alarm")
    row.wait_for()
    screenshot(page, "alarms")

    row.get_by_role("button", name="Acknowledge").click()
    row.locator("[data-col=ack]:has-text('admin')").wait_for()
    acked = next(a for a in web_hub.api("/api/alarms", dev_eui=eui) if a["id"] == alarm["id"])
    assert acked["acknowledged_by"] == "admin" and acked["acknowledged_at"]
    page.get_by_label("Acknowledged").select_option("no")
    row.wait_for(state="detached")
    page.errors.check()


def test_a_reader_sees_alarms_but_cannot_acknowledge_them(viewer_page, web_hub):
    page = viewer_page
    eui = web_hub.euis[1]
    alarm = _temperature_alarm(web_hub, eui)
    visit(page, f"/alarms?dev_eui={eui}")
    page.locator(f"tr[data-alarm-id='{alarm['id']}']").wait_for()
    buttons = page.locator("button[data-ack]")
    for k in range(buttons.count()):
        assert buttons.nth(k).is_disabled()
        assert "needs admin" in buttons.nth(k).get_attribute("title")
    assert "needs admin" in page.locator("[data-read-note]").inner_text()
    # and the API refuses the reader anyway (the page's own session, CSRF header and all)
    status = page.evaluate(f"""() => fetch('/api/alarms/{alarm['id']}/ack', {{method: 'POST',
        credentials: 'same-origin', headers: {{'X-CTH01-CSRF': '1'}}}}).then(r => r.status)""")
    assert status == 403
    page.errors.check(allow=r"HTTP 403 POST .*/ack$")
