"""The hub's web dashboard: HTML pages and the files they load.

Owns: the page routes (`/`, `/devices/{eui}`, `/devices/{eui}/history`, `/devices/{eui}/config`,
`/alarms`, `/templates`, `/reports/energy`, `/login`), their Jinja2 shells, and the static
files under `/static` (the stylesheet, one small ES module per page, and the front-end
libraries that `make vendor` copies into `static/vendor/` from package-lock.json: the dashboard
needs no internet and no build step).

Pages carry no data and need no login: each page's module fetches the JSON API with the
session cookie (`POST /api/session`), sends `X-CTH01-CSRF: 1` on every write and goes to
`/login` when the API answers 401. Who may see or change what is decided by the API alone.

Must never: read the store or the hub's state — the API is the dashboard's only way to data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import Scope

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
#: The vendored files the pages load (`make vendor`), by the pages that need them.
VENDOR_FILES = {"history": ("uPlot.iife.min.js", "uPlot.min.css")}
_EUI = re.compile(r"[0-9a-fA-F]{16}")
#: (path, template, title): every page of the dashboard.
PAGES = (
    ("/", "overview", "Fleet"),
    ("/login", "login", "Sign in"),
    ("/devices/{dev_eui}", "device", "Device {eui}"),
    ("/devices/{dev_eui}/history", "history", "History {eui}"),
    ("/devices/{dev_eui}/config", "config", "Configuration {eui}"),
    ("/alarms", "alarms", "Alarms"),
    ("/templates", "templates", "Configuration templates"),
    ("/reports/energy", "report", "Energy report"),
)
# The pages' own policy: scripts only from here; styles may be set inline (uPlot positions its
# cursor and legend with style attributes); images from data:/blob: (PNG export).
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


class _Static(StaticFiles):
    """Static files that the browser revalidates (ETag) on each use: a hub upgrade is seen at
    once, also by modules imported from other modules."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def missing_vendor_files(page: str) -> list[str]:
    """The vendored files `page` needs that are not installed (run `make vendor`)."""
    return [f for f in VENDOR_FILES.get(page, ()) if not (VENDOR_DIR / f).is_file()]


def mount_web(app: FastAPI) -> None:
    """Add the dashboard's pages and `/static` to `app`."""
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    app.mount("/static", _Static(directory=STATIC_DIR), name="static")

    def page(request: Request, name: str, title: str, *, nav: str = "", eui: str = "",
             **extra: Any) -> HTMLResponse:
        response = templates.TemplateResponse(request, f"{name}.html", {
            "page": name, "title": title, "nav": nav or name, "eui": eui,
            "missing_vendor": missing_vendor_files(name), **extra})
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def device_eui(dev_eui: str) -> str:
        if not _EUI.fullmatch(dev_eui):
            raise HTTPException(404, f"not a DevEUI: {dev_eui!r} (16 hex digits)")
        return dev_eui.lower()

    def route(path: str, name: str, title: str) -> None:
        if "{dev_eui}" in path:  # a device's page: under "Fleet" in the navigation
            async def device_page(request: Request, dev_eui: str) -> HTMLResponse:
                eui = device_eui(dev_eui)
                return page(request, name, title.format(eui=eui), nav="overview", eui=eui)
            handler: Any = device_page
        else:
            async def fleet_page(request: Request) -> HTMLResponse:
                return page(request, name, title)
            handler = fleet_page
        app.add_api_route(path, handler, methods=["GET"], response_class=HTMLResponse,
                          include_in_schema=False, name=f"{name}_page")

    for path, name, title in PAGES:
        route(path, name, title)

__all__ = ["missing_vendor_files", "mount_web"]
