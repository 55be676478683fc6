"""The monthly energy report: per channel and per tenant as the hub computes it, priced with a
tariff made on the page; CSV export; a printable page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from .conftest import screenshot, visit


def _shown_table(page, table):
    return page.evaluate(f"""() => [...document.querySelectorAll('#{table} tbody tr')].map(
        tr => ({{key: tr.dataset.tenant ?? `${{tr.dataset.eui}}:${{tr.dataset.channel}}`,
                 energy: tr.querySelector('[data-col=energy_kwh]').innerText,
                 cost: tr.querySelector('[data-col=cost]').innerText.split('\\n')[0]}}))""")


def _compare(page, report):
    tenants = {r["key"]: r for r in _shown_table(page, "tenants")}
    assert set(tenants) == {t["tenant"] or "" for t in report["tenants"]}
    assert {"Café", "Bookshop"} <= set(tenants)
    for t in report["tenants"]:
        shown = tenants[t["tenant"] or ""]
        assert shown["energy"] == f"{t['energy_kwh']:.3f}"
        assert shown["cost"] == f"{t['cost']:.2f}"
    channels = {r["key"]: r for r in _shown_table(page, "channels")}
    assert len(channels) == len(report["channels"])
    for c in report["channels"]:
        shown = channels[f"{c['dev_eui']}:{c['channel']}"]
        assert shown["energy"] == f"{c['energy_kwh']:.3f}"
        assert shown["cost"] == f"{c['cost']:.2f}"
    assert page.locator("#total-kwh").inner_text() == f"{report['total']['energy_kwh']:.3f} kWh"
    assert page.locator("#total-cost").inner_text() == f"{report['total']['cost']:.2f} EUR"


def test_energy_report_per_tenant_with_a_tariff_exports_csv_and_prints(admin_page, web_hub):
    page = admin_page
    eui = web_hub.euis[0]
    web_hub.admin.patch(f"/api/devices/{eui}", json={"channels": {
        "1": {"circuit": "Kitchen", "tenant": "Café"},
        "3": {"circuit": "Lights", "tenant": "Bookshop"}}}).raise_for_status()
    month = datetime.fromtimestamp(web_hub.api("/api/health")["time"], UTC).strftime("%Y-%m")
    visit(page, f"/reports/energy?month={month}")
    page.wait_for_selector("#channels tbody tr")

    # a flat tariff, made with the page's form
    page.get_by_label("Name", exact=True).fill("Flat 0.25")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_label("Price per kWh", exact=True).fill("0.25")
    page.get_by_role("button", name="Save tariff").click()
    page.locator("#tariff-list tr:has-text('Flat 0.25')").wait_for()
    tariff = next(t for t in web_hub.api("/api/tariffs") if t["name"] == "Flat 0.25")
    assert (tariff["kind"], tariff["price_per_kwh"], tariff["currency"]) == ("flat", 0.25, "EUR")
    page.get_by_label("Tariff", exact=True).select_option(str(tariff["id"]))
    page.wait_for_url(lambda url: f"tariff_id={tariff['id']}" in url)
    page.wait_for_selector("#total-cost:not(:has-text('—'))")

    # the fleet keeps reporting, so this month's energy grows while the test reads it: compare
    # a page load with the API read right after it, again until the two meet
    for _ in range(8):
        page.get_by_role("button", name="Show").click()
        page.wait_for_selector("#report-msg:text-is('')", state="attached")
        try:
            _compare(page, web_hub.api("/api/reports/energy", month=month,
                                       tariff_id=tariff["id"]))
            break
        except AssertionError as exc:
            mismatch = exc
    else:
        raise mismatch
    screenshot(page, "report")

    # CSV: the download is the hub's CSV of the same report
    params = {"month": month, "tariff_id": tariff["id"]}
    for _ in range(8):
        with page.expect_download() as dl:
            page.get_by_role("button", name="Export CSV").click()
        got = Path(dl.value.path()).read_text(encoding="utf-8")
        if got == web_hub.admin.get("/api/reports/energy.csv", params=params).text:
            break
    else:
        raise AssertionError("the CSV downloaded is not the hub's")
    assert dl.value.suggested_filename == f"energy_report_{month}.csv"
    assert "Café" in got and got.startswith("kind,month,dev_eui")

    # printable: no navigation or controls on paper, the report itself stays
    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible()
    assert not page.locator("#report-form").is_visible()
    assert page.locator("#channels").is_visible() and page.locator("#printed-at").is_visible()
    screenshot(page, "report-print")
    page.emulate_media(media="screen")
    page.errors.check()


def test_a_time_of_use_tariff_is_made_with_bands(admin_page, web_hub):
    page = admin_page
    visit(page, "/reports/energy")
    page.get_by_label("Name", exact=True).fill("Day and night")
    page.get_by_label("Price per kWh", exact=True).fill("0.12")
    page.get_by_label("Kind").select_option("tou")
    page.get_by_label("Band 1 name").fill("Day")
    page.get_by_label("Band 1 price per kWh").fill("0.31")
    page.get_by_label("Band 1 from").fill("07:00")
    page.get_by_label("Band 1 to").fill("22:00")
    page.get_by_role("group", name="Band 1 days").get_by_label("Sat").check()
    page.get_by_role("button", name="Save tariff").click()
    page.locator("#tariff-list tr:has-text('Day and night')").wait_for()
    tariff = next(t for t in web_hub.api("/api/tariffs") if t["name"] == "Day and night")
    assert tariff["kind"] == "tou" and tariff["price_per_kwh"] == 0.12
    band = tariff["bands"][0]
    assert (band["name"], band["price_per_kwh"], band["start"], band["end"]) == \
        ("Day", 0.31, "07:00", "22:00")
    assert band["days"] == [0, 1, 2, 3, 4, 5]
    page.errors.check()
