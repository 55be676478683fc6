"""Browser tests of the dashboard: a real hub fed by its virtual fleet, real headless Chromium.

`web_hub` (one per test process) runs the hub in-process — store, fleet, API and pages behind
uvicorn in a thread — with anonymous reads OFF, an admin and a read token, and waits until
every device has reported a few times. `browser` is Debian's /usr/bin/chromium driven by
Playwright (never a downloaded browser); every test that needs it is skipped, with the reason,
when it is not installed. `admin_page` / `viewer_page` are pages of a browser context signed in
through the login page. Screenshots go to test-artifacts/screenshots/.

The tests compare what a page shows with what the API or the store holds at that moment: the
fleet keeps reporting while they run, so they compare the reading the page says it shows.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cth01.cli_hub import build, run_hub
from cth01.hub.config import HubConfig
from cth01.hub.web import VENDOR_DIR, VENDOR_FILES
from cth01.protocol.table import REPORT_PARAMETERS

from ..hub.broker import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ADMIN_TOKEN = "cth01_web-test-admin-token-0123456789"
READ_TOKEN = "cth01_web-test-read-token-0123456789"
DEVICES = 4  # 0: reports every quantity · 1: alarms · 2: configuration · 3: template target
SPEED = 300.0  # a report every 2 s of wall time (10 min reporting interval)
READINGS_BEFORE_TESTS = 2
ALL_REPORT_ITEMS = [p for p in REPORT_PARAMETERS if p]


@dataclass
class WebHub:
    url: str
    hub: Any
    admin: httpx.Client
    euis: list[str]

    def api(self, path: str, **params: Any) -> Any:
        r = self.admin.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def store_row(self, dev_eui: str, ts: int) -> dict[str, Any]:
        """The stored reading of a device at `ts` (wide columns), read from the store."""
        did = self.hub.store.device_id(dev_eui)
        rows = self.hub.store.query_dicts("SELECT * FROM reading WHERE device_id = ? AND ts = ?",
                                          (did, ts))
        assert rows, f"no stored reading of {dev_eui} at {ts}"
        return rows[0]


def wait(predicate: Any, timeout: float, what: str, step: float = 0.2) -> Any:
    """Poll `predicate` until it returns something true (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)



@pytest.fixture(scope="session")
def web_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    port = free_port()
    config = HubConfig(db=str(tmp_path_factory.mktemp("web") / "hub.db"), host="127.0.0.1",
                       port=port, fleet_devices=DEVICES, fleet_speed=SPEED,
                       fleet_events=False, anonymous_read=False, admin_token=ADMIN_TOKEN,
                       log_level="error", log_format="json", backfill_settle_s=1800)
    hub = build(config)
    hub.store.create_token("viewer", "read", token=READ_TOKEN)
    servers: list[Any] = []
    started = threading.Event()

    def ready(server: Any) -> None:
        servers.append(server)
        started.set()

    thread = threading.Thread(target=lambda: asyncio.run(run_hub(hub, ready=ready)),
                              name="web-hub", daemon=True)
    thread.start()
    assert started.wait(60), "the hub did not start"
    url = f"http://127.0.0.1:{port}"
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=10)

    def fleet_reported() -> list[str] | None:
        devices = admin.get("/api/devices").json()
        counts = [hub.store.query("SELECT count(*) FROM reading WHERE device_id = ?",
                                  (d["id"],))[0][0] for d in devices]
        if len(devices) == DEVICES and min(counts) >= READINGS_BEFORE_TESTS:
            return [d["dev_eui"] for d in devices]
        return None

    try:
        euis = wait(fleet_reported, 60, "the virtual fleet's first readings")
        # device 0 reports every quantity, so that every cell of the device page has a value
        admin.post(f"/api/devices/{euis[0]}/downlinks", json={
            "command": "set_report_parameters", "params": {"parameters": ALL_REPORT_ITEMS}}
                   ).raise_for_status()
        did = hub.store.device_id(euis[0])
        wait(lambda: hub.store.query("SELECT count(*) FROM reading WHERE device_id = ? AND "
                                      "voltage_l1_v IS NOT NULL AND c1_current_a IS NOT NULL",
                                      (did,))[0][0], 60, "a reading with every quantity")
        yield WebHub(url, hub, admin, euis)
    finally:
        admin.close()
        if servers:
            servers[0].should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package `chromium`); the browser "
                    f"tests need it and never download a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def vendored() -> None:
    missing = [f for files in VENDOR_FILES.values() for f in files
               if not (VENDOR_DIR / f).is_file()]
    if missing:
        pytest.fail(f"front-end libraries not installed ({', '.join(missing)} missing in "
                    f"{VENDOR_DIR}): run `make vendor`", pytrace=False)


class PageErrors:
    """Uncaught errors, console errors and failed requests of a page (a request to a route
    the hub lacks shows up here)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        # failed loads are reported with their URL by _response
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console error: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status} {response.request.method} "
                               f"{response.url}")

    def check(self, allow: str | None = None) -> None:
        bad = [e for e in self.errors if not (allow and re.search(allow, e))]
        assert not bad, "errors in the page:\n" + "\n".join(bad)


def sign_in(page: Any, token: str) -> None:
    """Sign in through the login page (the token becomes the session cookie)."""
    visit(page, "/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def _new_context(browser: Any, web_hub: WebHub, **kwargs: Any) -> Any:
    kwargs.setdefault("viewport", {"width": 1280, "height": 900})
    ctx = browser.new_context(base_url=web_hub.url, accept_downloads=True, **kwargs)
    ctx.set_default_timeout(15000)
    return ctx


def _signed_in_state(browser: Any, web_hub: WebHub, token: str) -> Any:
    ctx = _new_context(browser, web_hub)
    sign_in(ctx.new_page(), token)
    state = ctx.storage_state()
    ctx.close()
    return state


@pytest.fixture(scope="session")
def admin_state(browser: Any, web_hub: WebHub) -> Any:
    return _signed_in_state(browser, web_hub, ADMIN_TOKEN)


@pytest.fixture(scope="session")
def viewer_state(browser: Any, web_hub: WebHub) -> Any:
    return _signed_in_state(browser, web_hub, READ_TOKEN)


@pytest.fixture
def new_context(browser: Any, web_hub: WebHub) -> Iterator[Any]:
    """Make browser contexts (closed after the test): new_context(storage_state=..., ...)."""
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        made.append(_new_context(browser, web_hub, **kwargs))
        return made[-1]

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def admin_context(new_context: Any, admin_state: Any) -> Any:
    return new_context(storage_state=admin_state)


@pytest.fixture
def viewer_context(new_context: Any, viewer_state: Any) -> Any:
    return new_context(storage_state=viewer_state)


@pytest.fixture
def anonymous_context(new_context: Any) -> Any:
    return new_context()


@pytest.fixture
def admin_page(admin_context: Any) -> Any:
    page = admin_context.new_page()
    page.errors = PageErrors(page)
    return page


@pytest.fixture
def viewer_page(viewer_context: Any) -> Any:
    page = viewer_context.new_page()
    page.errors = PageErrors(page)
    return page


def visit(page: Any, path: str) -> None:
    """Open a page and wait until it has shown its first data (`body[data-ready]`)."""
    page.goto(path)
    page.wait_for_selector("body[data-ready]", state="attached")


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header at the top
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


_UNITS = {"W": 1.0, "kW": 1e3, "MW": 1e6, "var": 1.0, "kvar": 1e3, "VA": 1.0, "kVA": 1e3,
          "kWh": 1.0, "A": 1.0, "V": 1.0, "%": 1.0, "°C": 1.0, "": 1.0}


def shown(text: str) -> tuple[float, float] | None:
    """A number as a page shows it ("37.94 kW") -> (value in the base unit, the tolerance
    its rounding allows); None for "—" (no value)."""
    text = text.strip()
    if text in ("—", ""):
        return None
    m = re.fullmatch(r"(-?\d+(?:\.(\d+))?)\s*([^\d\s]*)", text)
    assert m, f"not a shown number: {text!r}"
    scale = _UNITS[m.group(3)]
    digits = len(m.group(2) or "")
    return float(m.group(1)) * scale, 0.5 * 10 ** -digits * scale + 1e-9


def assert_shows(text: str, value: float | None, what: str) -> None:
    got = shown(text)
    if value is None:
        assert got is None, f"{what}: shows {text!r}, stored nothing"
        return
    assert got is not None, f"{what}: shows nothing, stored {value}"
    assert abs(got[0] - value) <= got[1], f"{what}: shows {text!r}, stored {value}"
