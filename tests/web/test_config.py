"""Configuration: every setting with the device's ranges (from GET /api/commands), saving sends
typed downlinks, the virtual device confirms them, templates carry a configuration to other
devices."""

from __future__ import annotations

from cth01.hub import downlinks

from .conftest import screenshot, visit, wait


def _read_all(page, web_hub, eui):
    """Ask the device for every setting through the page; wait until the shadow has them."""
    page.get_by_role("button", name="Read all settings from the device").click()
    wait(lambda: len(web_hub.api(f"/api/devices/{eui}/config")) >= 40, 30,
         "the device's settings in the shadow")
    page.wait_for_selector("[data-state-for='c7'] .badge[data-state=reported_only]",
                           timeout=20000)


def test_every_setting_has_the_ranges_of_the_command_catalogue(admin_page, web_hub):
    page = admin_page
    visit(page, f"/devices/{web_hub.euis[2]}/config")
    page.wait_for_selector("[data-setting='61'] input")
    catalogue = {c["command"]: {p["name"]: p for p in c["parameters"]}
                 for c in web_hub.api("/api/commands")}
    inputs = page.evaluate("""() => [...document.querySelectorAll('[data-setting] [data-param]')]
        .map(n => ({command: n.closest('[data-command]').dataset.command,
                    param: n.dataset.param, index: n.dataset.index ?? null, tag: n.tagName,
                    type: n.type, min: n.min, max: n.max, step: n.step,
                    maxLength: n.maxLength, options: n.tagName === 'SELECT' ?
                      [...n.options].map(o => o.value) : null}))""")
    commands = {i["command"] for i in inputs}
    # every setting of the guide's chapter 4 is there
    for command in ("set_reporting_interval", "set_report_parameters",
                    "set_temperature_threshold", "set_current_threshold",
                    "set_voltage_threshold", "set_thdi_threshold", "set_thdv_threshold",
                    "set_voltage_unbalance_threshold", "set_alarm_settings",
                    "set_voltage_interface", "set_current_interface", "set_time_zone",
                    "set_daylight_saving", "set_monthly_summary_time", "set_data_storage",
                    "set_retransmission", "set_retransmission_interval",
                    "set_retrieval_interval", "set_temperature_calibration",
                    "set_bluetooth_name"):
        assert command in commands, command
    assert sum(i["command"] == "set_current_threshold" and i["param"] == "max_a"
               for i in inputs) == 12
    checked = 0
    for i in inputs:
        spec = catalogue[i["command"]][i["param"]]
        if i["index"] is not None and "items" in spec:
            spec = spec["items"][int(i["index"])]
        if i["type"] == "number":
            assert (float(i["min"]), float(i["max"])) == (spec["min"], spec["max"]), i
            assert float(i["step"]) == spec.get("step", 1), i
            checked += 1
        elif i["tag"] == "SELECT" and "choices" in spec:
            assert i["options"] == [str(c) for c in spec["choices"]], i
            checked += 1
        elif i["type"] == "text":
            assert i["maxLength"] == spec["max_length"], i
            checked += 1
    assert checked > 60
    page.errors.check()


def test_a_changed_setting_is_sent_and_confirmed_by_the_device(admin_page, web_hub):
    page = admin_page
    eui = web_hub.euis[2]
    visit(page, f"/devices/{eui}/config")
    page.wait_for_selector("[data-setting='61'] input")
    _read_all(page, web_hub, eui)
    minutes = page.locator("[data-setting='61'] [data-param=minutes]")
    assert minutes.input_value() == "10"  # the device's default, as it reported it

    # out of the guide's range: refused in the form, nothing sent
    sent_before = len(web_hub.api("/api/downlinks", dev_eui=eui))
    minutes.fill("1441")
    page.get_by_role("button", name="Save reporting").click()
    assert "out of range" in page.locator("#section-reporting .msg").inner_text()
    assert not page.evaluate("() => document.querySelector(\"[data-setting='61'] "
                             "[data-param=minutes]\").checkValidity()")
    assert len(web_hub.api("/api/downlinks", dev_eui=eui)) == sent_before
    page.locator("#section-reporting [data-revert]").click()
    assert minutes.input_value() == "10"

    # a cross-setting rule: the alarm repeat interval must be shorter than the reporting one
    repeat = page.locator("[data-setting='7c'] [data-param=repeat_interval_min]")
    repeat.fill("10")
    page.get_by_role("button", name="Save thresholds and alarms").click()
    assert not page.evaluate("() => document.querySelector(\"[data-setting='7c'] "
                             "[data-param=repeat_interval_min]\").checkValidity()")
    page.locator("#section-thresholds [data-revert]").click()

    # in range: sent, pending, then confirmed by the virtual device
    minutes.fill("5")
    page.locator("[data-setting='6c'] input[value=voltage]").check()
    page.get_by_role("button", name="Save reporting").click()
    page.wait_for_selector("[data-state-for='61'] .badge[data-state=in_sync]", timeout=30000)
    page.wait_for_selector("[data-state-for='6c'] .badge[data-state=in_sync]", timeout=30000)
    shadow = {r["setting"]: r for r in web_hub.api(f"/api/devices/{eui}/config")}
    assert shadow["61"]["state"] == "in_sync" and shadow["61"]["reported"]["minutes"] == 5
    assert "voltage" in shadow["6c"]["reported"]["parameters"]
    sent = web_hub.api("/api/downlinks", dev_eui=eui)
    assert {"set_reporting_interval", "set_report_parameters"} <= {d["command"] for d in sent}
    assert page.locator("[data-state-for='61']").inner_text().count("5 min") >= 1

    # the guide's grouping rule: 4000 A on one channel moves the whole group
    ct = page.locator("[data-setting='68'] select[data-ct]")
    ct.nth(1).select_option("4000A")
    assert [ct.nth(k).input_value() for k in range(3)] == ["4000A"] * 3
    ct.nth(2).select_option("300A")
    assert [ct.nth(k).input_value() for k in range(3)] == ["300A"] * 3
    page.get_by_label("Reverse direction channel 5").check()
    # daylight saving time: the last Sunday of March 02:00 to the last Sunday of October 03:00
    dst = "[data-setting=c6]"
    page.locator(f"{dst} [data-param=enabled]").check()
    for edge, month, clock in (("start", "3", "02:00"), ("end", "10", "03:00")):
        page.locator(f"{dst} [data-param={edge}][data-index='0']").select_option(month)
        page.locator(f"{dst} [data-param={edge}][data-index='1']").select_option("5")
        page.locator(f"{dst} [data-param={edge}][data-index='2']").select_option("7")
        page.locator(f"{dst} [data-param={edge}][data-index='3']").fill(clock)
    page.get_by_role("button", name="Save interfaces").click()
    page.get_by_role("button", name="Save time").click()
    page.wait_for_selector("[data-state-for='68'] .badge[data-state=in_sync]", timeout=30000)
    page.wait_for_selector("[data-state-for='c6'] .badge[data-state=in_sync]", timeout=30000)
    shadow = {r["setting"]: r["reported"] for r in web_hub.api(f"/api/devices/{eui}/config")}
    assert [shadow["68"][f"ct_range_{k}"] for k in (1, 2, 3)] == ["300A"] * 3
    assert [shadow["68"][f"direction_{k}"] for k in (1, 2, 3)] == ["forward", "reverse",
                                                                    "forward"]
    assert shadow["c6"] | {"enabled": True, "start_month": 3, "start_week": 5,
                           "start_weekday": 7, "start_minute": 120, "end_month": 10,
                           "end_week": 5, "end_weekday": 7, "end_minute": 180} == shadow["c6"]
    screenshot(page, "config")
    page.errors.check()


def test_a_template_saved_from_one_device_is_applied_to_another(admin_page, web_hub):
    page = admin_page
    source, target = web_hub.euis[2], web_hub.euis[3]
    visit(page, f"/devices/{source}/config")
    page.wait_for_selector("[data-setting='61'] input")
    if len(web_hub.api(f"/api/devices/{source}/config")) < 40:
        _read_all(page, web_hub, source)
    page.get_by_label("Template name").fill("Shop floor")
    page.get_by_role("button", name="Save as template").click()
    page.wait_for_selector("#top-msg:has-text('Shop floor')")
    saved = [t for t in web_hub.api("/api/templates") if t["name"] == "Shop floor"]
    assert saved and saved[0]["settings"]
    assert all(s["command"] in downlinks.COMMANDS for s in saved[0]["settings"])

    visit(page, "/templates")
    card = page.locator(f"article[data-template-id='{saved[0]['id']}']")
    card.get_by_label(target).check()
    card.get_by_role("button", name="Apply").click()
    card.locator(".msg:has-text('Queued')").wait_for()
    screenshot(page, "templates")
    # the target device receives the settings and confirms them
    wanted = {s["command"] for s in saved[0]["settings"]}
    wait(lambda: wanted <= {d["command"] for d in web_hub.api("/api/downlinks",
                                                               dev_eui=target, limit=500)},
         20, "the template's downlinks")
    visit(page, f"/devices/{target}/config")
    page.wait_for_selector("[data-state-for='61'] .badge[data-state=in_sync]", timeout=30000)
    page.errors.check()
