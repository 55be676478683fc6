"""What every page shares: sign-in with the hub's tokens and the roles, the dark theme, the
keyboard, narrow screens, pages that carry no data and work without the internet."""

from __future__ import annotations

import re

from .conftest import ADMIN_TOKEN, READ_TOKEN, screenshot, sign_in, visit

PAGES = ["/", "/devices/{eui}", "/devices/{eui}/history", "/devices/{eui}/config", "/alarms",
         "/templates", "/reports/energy", "/login"]


def test_signing_in_with_a_token_and_out_again(new_context, web_hub):
    page = new_context().new_page()
    visit(page, f"/devices/{web_hub.euis[0]}")  # the API says 401: the page goes to sign-in
    page.wait_for_url(re.compile(r"/login\?next="))
    page.locator("#current:has-text('needs a sign-in')").wait_for()
    screenshot(page, "login")
    page.get_by_label("API token").fill("cth01_not-a-token-of-this-hub")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#login-msg:has-text('not valid')").wait_for()
    page.get_by_label("API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/devices/{web_hub.euis[0]}")  # back where the user was going
    page.wait_for_selector("#reading-time[data-ts]")
    page.locator("#who:has-text('admin · admin')").wait_for()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["cth01_session"]["httpOnly"]
    assert ADMIN_TOKEN not in page.evaluate("() => document.cookie + JSON.stringify(localStorage)"
                                            " + JSON.stringify(sessionStorage)")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    visit(page, "/alarms")
    page.wait_for_url(re.compile(r"/login\?next=%2Falarms"))


def test_writes_need_the_csrf_header_and_the_admin_role(new_context, web_hub):
    ctx = new_context()
    sign_in(ctx.new_page(), ADMIN_TOKEN)
    path = f"/api/devices/{web_hub.euis[0]}"
    # a cookie alone (what a forged cross-site form would carry) does not write
    refused = ctx.request.patch(path, data={"site": "forged"})
    assert refused.status in (401, 403), refused.status
    assert ctx.request.patch(path, data={"site": "Hall 1"},
                             headers={"X-CTH01-CSRF": "1"}).ok
    reader = new_context()
    sign_in(reader.new_page(), READ_TOKEN)
    assert reader.request.patch(path, data={"site": "x"},
                                headers={"X-CTH01-CSRF": "1"}).status == 403
    assert web_hub.api(path)["site"] == "Hall 1"


def test_a_reader_sees_the_configuration_but_cannot_change_it(viewer_page, web_hub):
    page = viewer_page
    visit(page, f"/devices/{web_hub.euis[2]}/config")
    page.wait_for_selector("[data-setting='61'] input")
    page.locator("#who:has-text('viewer · read')").wait_for()
    for name in ("Save reporting", "Save interfaces", "Read all settings from the device"):
        assert page.get_by_role("button", name=name).is_disabled(), name
    assert page.locator("[data-setting='61'] [data-param=minutes]").is_disabled()
    visit(page, f"/devices/{web_hub.euis[0]}")
    page.wait_for_selector("#reading-time[data-ts]")
    assert not page.get_by_role("button", name="Edit names and tenants").is_visible()
    page.errors.check()


def test_dark_theme_by_default_light_on_request_and_remembered(admin_page):
    page = admin_page
    visit(page, "/alarms")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    dark_bg = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    toggle = page.get_by_role("button", name="Light theme")
    toggle.click()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    assert page.get_by_role("button", name="Dark theme").get_attribute("aria-pressed") == "true"
    page.reload()
    page.wait_for_selector("body[data-ready]", state="attached")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != dark_bg
    screenshot(page, "alarms-light")
    page.get_by_role("button", name="Dark theme").click()


def _luminance(rgb: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", rgb)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_every_page_is_labelled_keyboard_usable_fits_a_tablet_and_stays_local(
        new_context, admin_state, web_hub):
    ctx = new_context(storage_state=admin_state, viewport={"width": 768, "height": 1024})
    page = ctx.new_page()
    errors, outside = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith((web_hub.url, "data:", "blob:")) else None)
    for path in PAGES:
        visit(page, path.format(eui=web_hub.euis[0]))
        where = f"{path}: "
        # no sideways scrolling at 768 px (wide tables scroll inside their own box)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 768, where
        # every control has a name a screen reader can say
        unnamed = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button, a[href]')]
            .filter(n => n.offsetParent !== null)
            .filter(n => !((n.labels && n.labels.length) || n.getAttribute('aria-label') ||
                           n.getAttribute('aria-labelledby') || n.textContent.trim() ||
                           n.getAttribute('title') || n.placeholder))
            .map(n => n.outerHTML.slice(0, 120))""")
        assert not unnamed, where + str(unnamed)
        name = path.format(eui="device").strip("/").replace("/", "-") or "overview"
        screenshot(page, f"tablet-{name}")
        # the skip link is the first stop of the keyboard, visible and outlined when focused
        if path == "/login":  # here the token field has the focus; the skip link is before it
            assert page.evaluate("() => document.activeElement.id") == "token"
            for _ in range(20):
                page.keyboard.press("Shift+Tab")
                if page.evaluate("() => document.activeElement.className") == "skip-link":
                    break
        else:
            page.keyboard.press("Tab")
        focused = page.evaluate("""() => ({cls: document.activeElement.className,
            outline: getComputedStyle(document.activeElement).outlineStyle})""")
        assert focused["cls"] == "skip-link" and focused["outline"] != "none", where
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main", where
        # text is readable on the dark background (WCAG AA: 4.5:1)
        fg, bg = page.evaluate("""() => [getComputedStyle(document.body).color,
                                          getComputedStyle(document.body).backgroundColor]""")
        light, dark = sorted((_luminance(fg), _luminance(bg)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, where
    assert not errors, errors
    assert not outside, f"requests outside the hub: {outside}"


def test_pages_carry_no_data_and_unknown_devices_are_not_found(web_hub):
    anonymous = web_hub.admin.get("/", headers={"Authorization": ""})
    assert anonymous.status_code == 200 and "<title>Fleet" in anonymous.text
    assert not any(eui in anonymous.text for eui in web_hub.euis)
    assert web_hub.admin.get("/devices/not-an-eui").status_code == 404
    css = web_hub.admin.get("/static/css/app.css")
    assert css.status_code == 200 and css.headers["cache-control"] == "no-cache"
    page = web_hub.admin.get("/alarms")
    assert "script-src 'self'" in page.headers["content-security-policy"]
