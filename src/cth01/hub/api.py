"""The hub's HTTP API: the read side, the registry, alarms, downlinks and the ingest webhooks.

Owns: `create_app(hub)`, the FastAPI application with every route under `/api`, `/metrics` and
the dashboard's pages (`web.mount_web`); who may call what; turning query parameters into store
calls (defaults, time windows, validation with clear 422s) and store answers into JSON or CSV.

Auth: `Authorization: Bearer <token>`, or the session cookie `cth01_session` a browser gets
from `POST /api/session {"token"}` (an EventSource cannot send headers); tokens are made with
`store.create_token`, tokens and sessions are stored hashed. Roles: `read` (GET routes) and
`admin` (everything, including writes). GET routes need a valid token unless the hub runs with
`anonymous_read`; `PATCH /api/devices/…`, downlinks, alarm acknowledgements, tariffs and
templates need `admin`. A write authenticated by the cookie must carry `X-CTH01-CSRF: 1` (a
header another site's form cannot send): 403 without it. The ingest webhooks (`/api/uplinks/…`)
also need an `admin` token, which may be given as `?token=` because some network servers cannot
set headers. 401: no token or an unknown one; 403: a valid token whose role is not enough.
`/api/health`, `/metrics`, `/docs` and `/openapi.json` are anonymous.

Calendar days and months (`period=day|month`, the monthly report, "today") are those of the
hub's time zone (`timezone`, IANA; DST followed).

Threads: every route that touches the store is a plain `def` (FastAPI runs it in a thread
pool, so a slow query never blocks the event loop); only the webhooks are `async`, because they
await `hub.ingest_http` — the HTTP answer is the acknowledgement, sent after the commit — and
the event stream (`/api/stream`), whose hub listener is called on the ingest worker's thread and
only hands each event to the loop (`call_soon_threadsafe`) into the client's bounded queue.
`app.state.end_streams()` ends the open streams: call it when the server stops (uvicorn waits
for open responses before it shuts down).

Errors: `StoreError` -> 503 `database unavailable: …`; a message that does not parse -> dead
letter and 400; a refused downlink -> 422 with the command and the reason, nothing queued.

Must never: decode payloads (the pipeline does), decide alarm or downlink lifecycles (alarms,
downlinks, store), or call the store from the event loop. Its only SQL is the SELECT of the raw
CSV export.
"""

import asyncio
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from . import downlinks as dl
from . import reports
from .envelope import Envelope, MessageError, NetworkEvent, parse_chirpstack, parse_tts
from .readings import CHANNEL_COLUMNS, DEVICE_COLUMNS, ENERGY_COLUMNS, UNITS
from .service import Hub
from .store import NameTaken, StoreError
from .tariff import (
    TariffError,
    day_bounds,
    local_date,
    month_bounds,
    parse_month,
    parse_tariff,
    zone_of,
)
from .templates import TemplateError, commands_from_config, validate_settings
from .web import mount_web

DAY_S = 86400
SESSION_COOKIE = "cth01_session"
CSRF_HEADER = "X-CTH01-CSRF"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
SSE_PING_S = 15.0  # a `: ping` comment this often keeps proxies from closing the stream
SSE_QUEUE_MAX = 256  # events a slow stream client may fall behind; then its oldest are dropped
_EUI = re.compile(r"[0-9a-f]{16}")
_QUANTITIES = (*DEVICE_COLUMNS, *CHANNEL_COLUMNS)

# TTS webhook path suffixes (the console's usual names) -> parse_tts events
_TTS_SUFFIXES = {"uplink": "up", "uplink-message": "up", "join-accept": "join",
                 "downlink/ack": "down/ack", "downlink/nack": "down/nack",
                 "downlink/sent": "down/sent", "downlink/failed": "down/failed"}
# TTS ApplicationUp JSON: the message's one payload field -> parse_tts event
_TTS_FIELDS = {"uplink_message": "up", "join_accept": "join", "downlink_ack": "down/ack",
               "downlink_nack": "down/nack", "downlink_sent": "down/sent",
               "downlink_failed": "down/failed"}

_bearer = HTTPBearer(auto_error=False, description="An API token: `Bearer cth01_…`")
_query_token = APIKeyQuery(name="token", auto_error=False,
                           description="The token as a query parameter (webhooks only)")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called: the token's name and role (both None for an anonymous read)."""

    name: str | None
    role: str | None


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    circuit: str | None = None
    tenant: str | None = None


class DevicePatch(BaseModel):
    """Registry fields to set; a field left out (or null) keeps its value."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    site: str | None = None
    tenant: str | None = None
    channels: dict[Annotated[int, Field(ge=1, le=12)], ChannelPatch] | None = None


class DownlinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(description="A command of GET /api/commands")
    params: dict[str, Any] = Field(default_factory=dict)


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for k, row in enumerate(rows, 1):
        writer.writerow(row)
        if k % 1000 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _csv_response(header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str
                  ) -> StreamingResponse:
    return StreamingResponse(_csv_lines(header, rows), media_type="text/csv",
                             headers={"Content-Disposition":
                                      f'attachment; filename="{filename}"'})


# the columns of the lists' CSV exports
DEVICE_CSV = ("dev_eui", "name", "site", "tenant", "source", "first_seen", "last_seen",
              "last_f_cnt", "joined_at", "reporting_interval_s", "wiring", "active_alarms")
ALARM_CSV = ("id", "dev_eui", "item", "channel", "condition", "status", "first_at", "last_at",
             "count", "last_value", "cleared_at", "cleared_by", "acknowledged_at",
             "acknowledged_by")
DOWNLINK_CSV = ("id", "dev_eui", "created_at", "created_by", "command", "params", "status",
                "attempts", "max_attempts", "sent_at", "done_at", "result", "payload_hex",
                "reference")
DEAD_LETTER_CSV = ("id", "received_at", "source", "topic", "dev_eui", "reason",
                   "body_encoding", "body")


def _records_csv(records: list[dict[str, Any]], header: Sequence[str], filename: str
                 ) -> StreamingResponse:
    """A list the API returns as JSON, as CSV: times (`*_at`, `*_seen`, `ts`) in ISO 8601
    UTC, nested values as JSON."""
    def cell(key: str, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                key.endswith(("_at", "_seen")) or key == "ts"):
            return _iso(value)
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return value

    return _csv_response(header, ([cell(k, r.get(k)) for k in header] for r in records),
                         filename)


def _window(start: int | None, end: int | None, now: float, default_s: int) -> tuple[int, int]:
    end = int(now) if end is None else end
    start = end - default_s if start is None else start
    if start > end:
        raise HTTPException(422, f"start ({start}) is after end ({end})")
    return start, end


def _period(period: str, month: str | None, day: str | None, now: float, zone: ZoneInfo
            ) -> tuple[int, int]:
    """[start, end) of a calendar month or day in `zone` (the one containing `now` by
    default); a day is 23 or 25 hours long when the clocks change."""
    try:
        if period == "month":
            if month:
                year, mon = parse_month(month)
            else:
                today = local_date(now, zone)
                year, mon = today.year, today.month
            return month_bounds(year, mon, zone)
        first = datetime.strptime(day, "%Y-%m-%d").date() if day else local_date(now, zone)
    except ValueError:
        raise HTTPException(422, "month must be YYYY-MM and day YYYY-MM-DD") from None
    return day_bounds(first, zone)


def _tts_event_of(body: bytes) -> str:
    """The event of a TTS webhook body, from the one message field it carries ("up" when
    unsure: the parser then says what is wrong)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return "up"
    if isinstance(doc, dict):
        for field, event in _TTS_FIELDS.items():
            if field in doc:
                return event
    return "up"


def create_app(hub: Hub) -> FastAPI:
    """The API of one hub (see the module note for routes, auth and errors)."""
    app = FastAPI(title="cth01 hub", version="1", openapi_tags=[
        {"name": "health", "description": "Liveness and Prometheus metrics (anonymous)"},
        {"name": "devices", "description": "Devices, their registry and configuration"},
        {"name": "readings", "description": "Measurements, downsampled or raw (CSV)"},
        {"name": "energy", "description": "Energy per channel, device or tenant"},
        {"name": "alarms", "description": "Alarms and their acknowledgement"},
        {"name": "downlinks", "description": "Typed commands to devices"},
        {"name": "operations", "description": "Dead letters, completeness, gaps"},
        {"name": "ingest", "description": "Network server webhooks (admin token)"},
    ])
    app.state.hub = hub
    store = hub.store
    zone = zone_of(hub.config.timezone)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"database unavailable: {exc}"}, status_code=503,
                            headers={"Retry-After": "5"})

    # -- auth ---------------------------------------------------------------------------------

    def _caller(token: str | None) -> Caller | None:
        if not token:
            return None
        found = store.token_role(token)
        if found is None:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
        store.token_used(found[0])
        return Caller(*found)

    def _session(request: Request) -> Caller | None:
        """The caller of a live session cookie (None: no cookie, or an expired one); a write
        must also carry the CSRF header."""
        session_id = request.cookies.get(SESSION_COOKIE)
        found = store.session_caller(session_id) if session_id else None
        if found is None:
            return None
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
            raise HTTPException(403, f"a write with the session cookie needs the header "
                                     f"{CSRF_HEADER}: 1")
        store.token_used(found[0])
        return Caller(*found)

    def _authenticate(request: Request, creds: HTTPAuthorizationCredentials | None,
                      token: str | None = None) -> Caller | None:
        """The bearer token (or `token`) if given, else the session cookie, else None."""
        bearer = creds.credentials if creds else token
        return _caller(bearer) if bearer else _session(request)

    def _need_token() -> HTTPException:
        return HTTPException(401, "missing token: send Authorization: Bearer <token>, or log "
                                  "in (POST /api/session)",
                             headers={"WWW-Authenticate": "Bearer"})

    def reader(request: Request,
               creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
               ) -> Caller:
        caller = _authenticate(request, creds)
        if caller is None:
            if hub.config.anonymous_read:
                return Caller(None, None)
            raise _need_token()
        return caller

    def _admin(caller: Caller | None) -> Caller:
        if caller is None:
            raise _need_token()
        if caller.role != "admin":
            raise HTTPException(403, f"token {caller.name!r} has role {caller.role!r}; "
                                     f"this needs 'admin'")
        return caller

    def admin(request: Request,
              creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
              ) -> Caller:
        return _admin(_authenticate(request, creds))

    def webhook_admin(request: Request,
                      creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                      token: Annotated[str | None, Depends(_query_token)]) -> Caller:
        return _admin(_authenticate(request, creds, token))

    Read = Annotated[Caller, Depends(reader)]
    Admin = Annotated[Caller, Depends(admin)]
    Webhook = Annotated[Caller, Depends(webhook_admin)]

    def _device_id(dev_eui: str) -> tuple[str, int]:
        eui = dev_eui.lower()
        did = store.device_id(eui) if _EUI.fullmatch(eui) else None
        if did is None:
            raise HTTPException(404, f"unknown device {dev_eui}")
        return eui, did

    def _quantity(quantity: str, channel: int | None) -> None:
        if quantity not in _QUANTITIES:
            raise HTTPException(422, f"unknown quantity {quantity!r}; device quantities: "
                                     f"{', '.join(DEVICE_COLUMNS)}; channel quantities: "
                                     f"{', '.join(CHANNEL_COLUMNS)}")
        if quantity in DEVICE_COLUMNS and channel is not None:
            raise HTTPException(422, f"{quantity} is a device-wide quantity: leave out channel")

    # -- health and metrics -------------------------------------------------------------------

    @app.get("/api/health", tags=["health"])
    def health() -> JSONResponse:
        """Database, ingest worker and queue; 200 when ok, 503 when degraded."""
        state = hub.health()
        return JSONResponse(state, status_code=200 if state["status"] == "ok" else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics of the hub."""
        return Response(hub.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    # -- devices ------------------------------------------------------------------------------

    @app.get("/api/devices", tags=["devices"])
    def devices(caller: Read, q: str | None = None) -> list[dict[str, Any]]:
        """Every device; `q` keeps those whose DevEUI, name, site or tenant contains it."""
        rows = store.devices()
        if q:
            needle = q.lower()
            rows = [r for r in rows if any(needle in str(r.get(k) or "").lower()
                                           for k in ("dev_eui", "name", "site", "tenant"))]
        return rows

    @app.get("/api/devices.csv", tags=["devices"], response_class=StreamingResponse)
    def devices_csv(caller: Read, q: str | None = None) -> StreamingResponse:
        """The device list as CSV, one row per device (the same filter)."""
        return _records_csv(devices(caller, q), DEVICE_CSV, "devices.csv")

    @app.get("/api/devices/{dev_eui}", tags=["devices"])
    def device(dev_eui: str, caller: Read) -> dict[str, Any]:
        """One device with its registry and its 12 channels (circuit, tenant)."""
        eui, _ = _device_id(dev_eui)
        found = store.device(eui)
        if found is None:
            raise HTTPException(404, f"unknown device {dev_eui}")
        return found

    @app.patch("/api/devices/{dev_eui}", tags=["devices"])
    def update_device(dev_eui: str, patch: DevicePatch, caller: Admin) -> dict[str, Any]:
        """Set a device's name, site, tenant and channel circuits / tenants."""
        eui, _ = _device_id(dev_eui)
        channels = None
        if patch.channels is not None:
            channels = {ch: c.model_dump() for ch, c in patch.channels.items()}
        store.update_device(eui, name=patch.name, site=patch.site, tenant=patch.tenant,
                            channels=channels)
        return store.device(eui) or {}

    @app.get("/api/devices/{dev_eui}/config", tags=["devices"])
    def config_shadow(dev_eui: str, caller: Read) -> list[dict[str, Any]]:
        """The configuration shadow: desired and reported value of every setting."""
        eui, _ = _device_id(dev_eui)
        return store.config_shadow(eui)

    # -- readings -----------------------------------------------------------------------------

    Channel = Annotated[int | None, Query(ge=1, le=12)]

    @app.get("/api/devices/{dev_eui}/readings", tags=["readings"])
    def readings(dev_eui: str, quantity: str, caller: Read, channel: Channel = None,
                 start: int | None = None, end: int | None = None,
                 points: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        """One quantity over [start, end] (default: the last 24 h), downsampled to at most
        `points` buckets: mean, min, max and count per bucket, `ts` the bucket's start."""
        eui, _ = _device_id(dev_eui)
        _quantity(quantity, channel)
        start, end = _window(start, end, hub.clock(), DAY_S)
        try:
            rows = store.readings(eui, quantity, start=start, end=end, channel=channel,
                                  points=points)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"dev_eui": eui, "quantity": quantity, "unit": UNITS[quantity],
                "channel": channel, "start": start, "end": end, "points": rows}

    @app.get("/api/devices/{dev_eui}/readings.csv", tags=["readings"],
             response_class=StreamingResponse)
    def readings_csv(dev_eui: str, quantity: str, caller: Read, channel: Channel = None,
                     start: int | None = None, end: int | None = None) -> StreamingResponse:
        """The stored rows of one quantity over [start, end] (not downsampled; rows where
        the quantity has a value). Channel quantities: every channel unless `channel`."""
        eui, did = _device_id(dev_eui)
        _quantity(quantity, channel)
        start, end = _window(start, end, hub.clock(), DAY_S)
        # `quantity` is one of the column names checked above
        if quantity in DEVICE_COLUMNS:
            rows = store.query(f"SELECT ts, {quantity} FROM reading WHERE device_id = ? AND "
                               f"ts >= ? AND ts <= ? AND {quantity} IS NOT NULL ORDER BY ts",
                               (did, start, end), "readings csv")
            header = ["time_utc", "ts", quantity]
            out: Iterable[Sequence[Any]] = ((_iso(ts), ts, v) for ts, v in rows)
        else:
            where, params = "", [did, start, end]
            if channel is not None:
                where, params = " AND channel = ?", [*params, channel]
            rows = store.query(f"SELECT ts, channel, {quantity} FROM channel_reading WHERE "
                               f"device_id = ? AND ts >= ? AND ts <= ?{where} AND {quantity} IS "
                               f"NOT NULL ORDER BY ts, channel", params, "readings csv")
            header = ["time_utc", "ts", "channel", quantity]
            out = ((_iso(ts), ts, ch, v) for ts, ch, v in rows)
        suffix = "" if channel is None else f"_ch{channel}"
        return _csv_response(header, out, f"{eui}_{quantity}{suffix}_{start}_{end}.csv")

    # -- energy -------------------------------------------------------------------------------

    def _energy(start: int | None, end: int | None, quantity: str, group_by: str,
                dev_eui: list[str] | None, period: str | None, month: str | None,
                day: str | None) -> dict[str, Any]:
        if quantity not in ENERGY_COLUMNS:
            raise HTTPException(422, f"{quantity!r} is not an energy counter; one of "
                                     f"{', '.join(ENERGY_COLUMNS)}")
        if period is not None:
            if start is not None or end is not None:
                raise HTTPException(422, "give either start/end or period, not both")
            start, end = _period(period, month, day, hub.clock(), zone)
        else:
            start, end = _window(start, end, hub.clock(), DAY_S)
        euis = [_device_id(e)[0] for e in dev_eui] if dev_eui else None
        try:
            rows = store.energy(start=start, end=end, column=quantity, dev_euis=euis)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        registry: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["dev_eui"] not in registry:
                registry[r["dev_eui"]] = store.device(r["dev_eui"]) or {}
            dev = registry[r["dev_eui"]]
            ch = next((c for c in dev.get("channels", []) if c["channel"] == r["channel"]), {})
            r["circuit"] = ch.get("circuit")
            r["tenant"] = ch.get("tenant") or dev.get("tenant")
        out: list[dict[str, Any]]
        if group_by == "channel":
            out = [{"dev_eui": r["dev_eui"], "channel": r["channel"], "circuit": r["circuit"],
                    "tenant": r["tenant"], "energy": r["energy"]} for r in rows]
        elif group_by == "device":
            sums: dict[str, float] = {}
            for r in rows:
                sums[r["dev_eui"]] = sums.get(r["dev_eui"], 0.0) + r["energy"]
            out = [{"dev_eui": eui, "name": registry[eui].get("name"),
                    "tenant": registry[eui].get("tenant"), "energy": total}
                   for eui, total in sums.items()]
        else:
            sums = {}
            for r in rows:
                key = r["tenant"] or "unassigned"
                sums[key] = sums.get(key, 0.0) + r["energy"]
            out = [{"tenant": t, "energy": total} for t, total in sorted(sums.items())]
        return {"start": start, "end": end, "quantity": quantity, "unit": UNITS[quantity],
                "group_by": group_by, "rows": out}

    GroupBy = Literal["channel", "device", "tenant"]
    Period = Literal["day", "month"] | None
    Euis = Annotated[list[str] | None, Query(description="Only these devices (repeatable)")]
    Month = Annotated[str | None, Query(description="YYYY-MM, with period=month")]
    Day = Annotated[str | None, Query(description="YYYY-MM-DD, with period=day")]

    @app.get("/api/energy", tags=["energy"])
    def energy(caller: Read, start: int | None = None, end: int | None = None,
               quantity: str = "imported_active_wh", group_by: GroupBy = "channel",
               dev_eui: Euis = None, period: Period = None, month: Month = None,
               day: Day = None) -> dict[str, Any]:
        """Energy over [start, end) (default: the last 24 h; or a calendar `period` of the
        hub's time zone), per channel (with circuit and tenant), device or tenant (channel's
        tenant, else the device's, else "unassigned"). Channels without a reading in the
        period are left out (no data is not 0)."""
        return _energy(start, end, quantity, group_by, dev_eui, period, month, day)

    @app.get("/api/energy.csv", tags=["energy"], response_class=StreamingResponse)
    def energy_csv(caller: Read, start: int | None = None, end: int | None = None,
                   quantity: str = "imported_active_wh", group_by: GroupBy = "channel",
                   dev_eui: Euis = None, period: Period = None, month: Month = None,
                   day: Day = None) -> StreamingResponse:
        """The same as GET /api/energy, as CSV."""
        doc = _energy(start, end, quantity, group_by, dev_eui, period, month, day)
        keys = {"channel": ["dev_eui", "channel", "circuit", "tenant"],
                "device": ["dev_eui", "name", "tenant"], "tenant": ["tenant"]}[group_by]
        rows = ([*(r[k] for k in keys), r["energy"]] for r in doc["rows"])
        return _csv_response([*keys, quantity], rows,
                             f"energy_{group_by}_{doc['start']}_{doc['end']}.csv")

    # -- alarms -------------------------------------------------------------------------------

    Limit = Annotated[int, Query(ge=1, le=10000)]

    @app.get("/api/alarms", tags=["alarms"])
    def alarms(caller: Read, status: str | None = None, dev_eui: str | None = None,
               item: str | None = None, limit: Limit = 200) -> list[dict[str, Any]]:
        """Alarms, most recent first (status: active or dismissed)."""
        return store.alarms(dev_eui=dev_eui.lower() if dev_eui else None, status=status,
                            item=item, limit=limit)

    @app.get("/api/alarms.csv", tags=["alarms"], response_class=StreamingResponse)
    def alarms_csv(caller: Read, status: str | None = None, dev_eui: str | None = None,
                   item: str | None = None, limit: Limit = 10000) -> StreamingResponse:
        """Alarms as CSV, most recent first (the same filters)."""
        return _records_csv(alarms(caller, status, dev_eui, item, limit), ALARM_CSV,
                            "alarms.csv")

    @app.post("/api/alarms/{alarm_id}/ack", tags=["alarms"])
    def acknowledge(alarm_id: int, caller: Admin) -> dict[str, Any]:
        """Acknowledge an alarm (once: a second acknowledgement keeps the first)."""
        row = hub.acknowledge_alarm(alarm_id, user=caller.name or "")
        if row is None:
            raise HTTPException(404, f"no alarm {alarm_id}")
        return row

    # -- downlinks ----------------------------------------------------------------------------

    @app.get("/api/commands", tags=["downlinks"])
    def commands(caller: Read) -> list[dict[str, Any]]:
        """The typed commands a downlink may carry, with their parameters."""
        return dl.describe()

    @app.post("/api/devices/{dev_eui}/downlinks", tags=["downlinks"], status_code=202)
    def queue_downlink(dev_eui: str, body: DownlinkRequest, caller: Admin
                       ) -> dict[str, Any]:
        """Build and queue a downlink; 422 with the reason when the command is refused."""
        try:
            return hub.queue_downlink(dev_eui, body.command, body.params,
                                      user=caller.name or "")
        except dl.CommandError as exc:
            raise HTTPException(422, {"command": exc.command, "reason": exc.reason}) from None
        except KeyError:
            raise HTTPException(404, f"unknown device {dev_eui}") from None

    @app.get("/api/downlinks", tags=["downlinks"])
    def downlinks(caller: Read, dev_eui: str | None = None, status: str | None = None,
                  limit: Limit = 100) -> list[dict[str, Any]]:
        """Downlinks, newest first."""
        return store.downlinks(dev_eui=dev_eui.lower() if dev_eui else None, status=status,
                               limit=limit)

    @app.get("/api/downlinks.csv", tags=["downlinks"], response_class=StreamingResponse)
    def downlinks_csv(caller: Read, dev_eui: str | None = None, status: str | None = None,
                      limit: Limit = 10000) -> StreamingResponse:
        """Downlinks as CSV, newest first (the same filters)."""
        return _records_csv(downlinks(caller, dev_eui, status, limit), DOWNLINK_CSV,
                            "downlinks.csv")

    @app.get("/api/downlinks/{downlink_id}", tags=["downlinks"])
    def downlink(downlink_id: int, caller: Read) -> dict[str, Any]:
        try:
            return store.downlink(downlink_id)
        except KeyError:
            raise HTTPException(404, f"no downlink {downlink_id}") from None

    # -- operations ---------------------------------------------------------------------------

    @app.get("/api/dead-letters", tags=["operations"])
    def dead_letters(caller: Read, limit: Limit = 100) -> list[dict[str, Any]]:
        """Messages the hub could not use, newest first, with the reason."""
        return store.dead_letter_list(limit)

    @app.get("/api/dead-letters.csv", tags=["operations"], response_class=StreamingResponse)
    def dead_letters_csv(caller: Read, limit: Limit = 10000) -> StreamingResponse:
        """Dead letters as CSV, newest first."""
        return _records_csv(dead_letters(caller, limit), DEAD_LETTER_CSV, "dead_letters.csv")

    @app.get("/api/completeness", tags=["operations"])
    def completeness(caller: Read, start: int | None = None, end: int | None = None
                     ) -> dict[str, Any]:
        """Readings stored per device against those expected (default: the last 7 days)."""
        start, end = _window(start, end, hub.clock(), 7 * DAY_S)
        return {"start": start, "end": end,
                "devices": store.completeness(start=start, end=end)}

    @app.get("/api/gaps", tags=["operations"])
    def gaps(caller: Read, dev_eui: str | None = None, status: str | None = None
             ) -> list[dict[str, Any]]:
        """Missing periods found by backfill, and their state."""
        did = _device_id(dev_eui)[1] if dev_eui else None
        return store.gaps(device_id=did, status=status)

    # -- ingest webhooks ----------------------------------------------------------------------

    async def _ingest(parse: Any, body: bytes, request: Request | None = None,
                      **kwargs: Any) -> JSONResponse:
        try:
            message: Envelope | NetworkEvent | MessageError = parse(body, **kwargs)
        except MessageError as error:
            message = error
        if request is not None and isinstance(message, Envelope):
            _downlink_path(request, message)
        try:
            await hub.ingest_http(message, body)
        except TimeoutError:  # queued, not committed in 30 s: the network server must retry
            return JSONResponse({"detail": "not stored yet (database busy): retry"},
                                status_code=503, headers={"Retry-After": "5"})
        if isinstance(message, MessageError):
            return JSONResponse({"detail": message.reason}, status_code=400)
        return JSONResponse({"stored": True})

    def _downlink_path(request: Request, message: Envelope) -> None:
        """A TTS webhook's downlink path (headers X-Downlink-Push / X-Downlink-Apikey): the
        URL goes with the device, the key to the webhook downlink path (memory only)."""
        push = request.headers.get("x-downlink-push", "")
        key = request.headers.get("x-downlink-apikey", "")
        if not push.startswith(("https://", "http://")) or not key:
            return
        message.network["downlink_push"] = push
        path = hub.sources.get("http")
        if path is not None and hasattr(path, "remember"):
            path.remember(push, key)

    @app.post("/api/uplinks/chirpstack", tags=["ingest"])
    async def chirpstack_webhook(request: Request, caller: Webhook, event: str = "up"
                                 ) -> JSONResponse:
        """ChirpStack v4 HTTP integration (JSON marshaler): `?event=up|join|ack|txack|...`."""
        body = await request.body()
        return await _ingest(parse_chirpstack, body, event=event, source="http",
                             topic=f"{request.url.path}?event={event}")

    @app.post("/api/uplinks/tts", tags=["ingest"])
    async def tts_webhook(request: Request, caller: Webhook) -> JSONResponse:
        """The Things Stack v3 webhook; the event is read from the body (uplink_message,
        join_accept, downlink_ack ...)."""
        body = await request.body()
        return await _ingest(parse_tts, body, request, event=_tts_event_of(body),
                             source="http", topic=request.url.path)

    @app.post("/api/uplinks/tts/{event:path}", tags=["ingest"])
    async def tts_webhook_event(request: Request, event: str, caller: Webhook
                                ) -> JSONResponse:
        """The Things Stack v3 webhook with the event as path suffix (up, join, down/ack,
        down/nack, down/sent, down/failed; or uplink, join-accept, downlink/ack ...)."""
        body = await request.body()
        return await _ingest(parse_tts, body, request,
                             event=_TTS_SUFFIXES.get(event, event), source="http",
                             topic=request.url.path)

    # -- login sessions -----------------------------------------------------------------------

    class Login(BaseModel):
        model_config = ConfigDict(extra="forbid")
        token: str = Field(description="An API token (cth01 token NAME)")

    @app.post("/api/session", tags=["session"])
    def login(body: Login, request: Request) -> JSONResponse:
        """Exchange a token for the session cookie `cth01_session` (HttpOnly, SameSite=Strict;
        valid 12 h after its last use). Writes with the cookie need `X-CTH01-CSRF: 1`."""
        found = store.create_session(body.token)
        if found is None:
            raise HTTPException(401, "invalid token")
        session_id, name, role = found
        store.token_used(name)
        response = JSONResponse({"name": name, "role": role})
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                            path="/", secure=request.url.scheme == "https")
        return response

    @app.get("/api/session", tags=["session"])
    def whoami(request: Request,
               creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
               ) -> dict[str, Any]:
        """The caller: {"name", "role"} (anonymous readers: name "anonymous", role "read")."""
        caller = _authenticate(request, creds)
        if caller is None:
            if hub.config.anonymous_read:
                return {"name": "anonymous", "role": "read"}
            raise _need_token()
        return {"name": caller.name, "role": caller.role}

    @app.delete("/api/session", tags=["session"], status_code=204)
    def logout(request: Request) -> Response:
        """End the cookie's session (and clear the cookie)."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            _session(request)  # a live session: the CSRF header is required
            store.delete_session(session_id)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- the dashboard's read side --------------------------------------------------------------

    @app.get("/api/overview", tags=["devices"])
    def overview(caller: Read) -> list[dict[str, Any]]:
        """One row per device: dev_eui, name, site, tenant, status (never | alarm | offline:
        unheard for 3 reporting intervals | online), last_seen, interval_s, total_power_w
        (sum of the channels' latest active power), today_kwh (since local midnight; null
        without readings), active_alarms, completeness (last 24 h, 0-1; null without data)."""
        return reports.overview(store, now=hub.clock(), zone=zone)

    @app.get("/api/devices/{dev_eui}/latest", tags=["readings"])
    def latest(dev_eui: str, caller: Read) -> dict[str, Any]:
        """The newest value of every column (readings of the last two reporting intervals
        merged, so a split report is whole), `ts` of the newest reading, and per channel its
        circuit, tenant, group (a-d) and phase (`single` / `three`, as last reported; null if
        not known yet)."""
        eui, _ = _device_id(dev_eui)
        doc = store.latest(eui)
        device = store.device(eui)
        if doc is None or device is None:
            raise HTTPException(404, f"unknown device {dev_eui}")
        wiring = dict(part.split(":", 1) for part in (device.get("wiring") or "").split(",")
                      if ":" in part)
        doc["channels"] = [{"channel": c["channel"], "circuit": c["circuit"],
                            "tenant": c["tenant"], "group": "abcd"[(c["channel"] - 1) // 3],
                            "phase": wiring.get("abcd"[(c["channel"] - 1) // 3])}
                           for c in device["channels"]]
        return doc

    # -- monthly energy report ------------------------------------------------------------------

    ReportMonth = Annotated[str | None, Query(description="YYYY-MM (default: this month)")]
    ReportEuis = Annotated[list[str] | None, Query(description="Only these devices")]

    def _report(month: str | None, tariff_id: int | None, dev_eui: list[str] | None
                ) -> dict[str, Any]:
        if month:
            try:
                year, mon = parse_month(month)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        else:
            today = local_date(hub.clock(), zone)
            year, mon = today.year, today.month
        tariff = None
        if tariff_id is not None:
            doc = store.tariff(tariff_id)
            if doc is None:
                raise HTTPException(404, f"no tariff {tariff_id}")
            tariff = parse_tariff(doc, tariff_id=tariff_id)
        euis = [_device_id(e)[0] for e in dev_eui] if dev_eui else None
        return reports.energy_report(store, year=year, month=mon, zone=zone, tariff=tariff,
                                     dev_euis=euis)

    @app.get("/api/reports/energy", tags=["energy"])
    def energy_report(caller: Read, month: ReportMonth = None, tariff_id: int | None = None,
                      dev_eui: ReportEuis = None) -> dict[str, Any]:
        """Imported active energy of a local calendar month per channel (the device's own
        monthly summary where it sent one, `source` device_summary; else from its readings,
        `computed`), per tenant (the channel's, else the device's, else "(unassigned)") and in
        total, priced with `tariff_id` (time-of-use: kWh per band, `bands`; the standing
        charge once per tenant)."""
        return _report(month, tariff_id, dev_eui)

    @app.get("/api/reports/energy.csv", tags=["energy"], response_class=StreamingResponse)
    def energy_report_csv(caller: Read, month: ReportMonth = None,
                          tariff_id: int | None = None, dev_eui: ReportEuis = None
                          ) -> StreamingResponse:
        """The monthly report as CSV: a row per channel, then per tenant, then the total."""
        doc = _report(month, tariff_id, dev_eui)
        header, rows = reports.report_csv_rows(doc)
        return _csv_response(header, rows, f"energy_report_{doc['month']}.csv")

    # -- tariffs --------------------------------------------------------------------------------

    TariffDoc = Annotated[dict[str, Any], Body(openapi_examples={"time of use": {"value": {
        "name": "Office", "currency": "EUR", "kind": "tou", "price_per_kwh": 0.24,
        "standing_charge_per_month": 12.5, "bands": [
            {"name": "peak", "price_per_kwh": 0.32, "days": [0, 1, 2, 3, 4],
             "start": "08:00", "end": "20:00"}]}}, "flat": {"value": {
                 "name": "Flat", "currency": "EUR", "kind": "flat", "price_per_kwh": 0.25}}})]

    def _valid_tariff(doc: dict[str, Any]) -> dict[str, Any]:
        try:
            tariff = parse_tariff(doc)
        except TariffError as exc:
            raise HTTPException(422, {"field": exc.field, "reason": exc.reason}) from None
        out = tariff.to_dict()
        out.pop("id")
        return out

    @app.get("/api/tariffs", tags=["tariffs"])
    def tariffs(caller: Read) -> list[dict[str, Any]]:
        """Every tariff (see tariff.py: flat, or time-of-use bands by local time)."""
        return store.tariffs()

    @app.post("/api/tariffs", tags=["tariffs"], status_code=201)
    def create_tariff(doc: TariffDoc, caller: Admin) -> dict[str, Any]:
        """Store a tariff; 422 {"field", "reason"} when it is not valid, 409 for a name in
        use."""
        try:
            return store.save_tariff(_valid_tariff(doc))
        except NameTaken as exc:
            raise HTTPException(409, str(exc)) from None

    @app.put("/api/tariffs/{tariff_id}", tags=["tariffs"])
    def replace_tariff(tariff_id: int, doc: TariffDoc, caller: Admin) -> dict[str, Any]:
        """Replace a tariff (same rules as POST)."""
        try:
            return store.save_tariff(_valid_tariff(doc), tariff_id)
        except NameTaken as exc:
            raise HTTPException(409, str(exc)) from None
        except KeyError:
            raise HTTPException(404, f"no tariff {tariff_id}") from None

    @app.delete("/api/tariffs/{tariff_id}", tags=["tariffs"], status_code=204)
    def delete_tariff(tariff_id: int, caller: Admin) -> Response:
        if not store.delete_tariff(tariff_id):
            raise HTTPException(404, f"no tariff {tariff_id}")
        return Response(status_code=204)

    # -- configuration templates ----------------------------------------------------------------

    class TemplateRequest(BaseModel):
        """Either `settings` (typed commands) or `from_device` (copy that device's
        configuration, desired where set, else reported)."""

        model_config = ConfigDict(extra="forbid")
        name: str = Field(min_length=1, max_length=100)
        settings: list[dict[str, Any]] | None = Field(
            default=None, description='[{"command": "set_reporting_interval", "params": '
                                      '{"minutes": 5}}, ...] (GET /api/commands)')
        from_device: str | None = Field(default=None, description="A DevEUI")

    class ApplyRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dev_euis: list[str] = Field(min_length=1, max_length=10000)

    @app.get("/api/templates", tags=["downlinks"])
    def templates(caller: Read) -> list[dict[str, Any]]:
        """Configuration templates: id, name, settings ([{command, params}]), created_at/by."""
        return store.templates()

    @app.post("/api/templates", tags=["downlinks"], status_code=201)
    def create_template(body: TemplateRequest, caller: Admin) -> dict[str, Any]:
        """Save a template; every command is built once to check it (422 {"index",
        "command", "reason"} for the first refused). With `from_device`, the answer lists the
        settings no command can set under `skipped`."""
        if (body.settings is None) == (body.from_device is None):
            raise HTTPException(422, "give either settings or from_device")
        skipped: list[dict[str, Any]] = []
        if body.from_device is not None:
            eui, _ = _device_id(body.from_device)
            settings, skipped = commands_from_config(store.config_shadow(eui))
            if not settings:
                raise HTTPException(422, f"the hub knows no configuration of {eui} to copy "
                                         f"(ask the device: command query_all_config)")
        else:
            try:
                settings = validate_settings(body.settings)
            except TemplateError as exc:
                raise HTTPException(422, {"index": exc.index, "command": exc.command,
                                          "reason": exc.reason}) from None
        try:
            row = store.create_template(body.name.strip(), settings,
                                        created_by=caller.name or "", now=hub.clock())
        except NameTaken as exc:
            raise HTTPException(409, str(exc)) from None
        return {**row, "skipped": skipped}

    @app.delete("/api/templates/{template_id}", tags=["downlinks"], status_code=204)
    def delete_template(template_id: int, caller: Admin) -> Response:
        if not store.delete_template(template_id):
            raise HTTPException(404, f"no template {template_id}")
        return Response(status_code=204)

    @app.post("/api/templates/{template_id}/apply", tags=["downlinks"], status_code=202)
    def apply_template(template_id: int, body: ApplyRequest, caller: Admin) -> dict[str, Any]:
        """Queue the template's commands for each device (one downlink per command). Every
        device and command is checked before anything is queued: an unknown device is 404, a
        refused command 422 {"index", "command", "reason"}, and then nothing is queued."""
        template = store.template(template_id)
        if template is None:
            raise HTTPException(404, f"no template {template_id}")
        euis = list(dict.fromkeys(_device_id(e)[0] for e in body.dev_euis))
        try:
            validate_settings(template["settings"])
        except TemplateError as exc:
            raise HTTPException(422, {"index": exc.index, "command": exc.command,
                                      "reason": exc.reason}) from None
        queued = []
        for eui in euis:
            for s in template["settings"]:
                row = hub.queue_downlink(eui, s["command"], s["params"], user=caller.name or "")
                queued.append({"dev_eui": eui, "downlink_id": row["id"], "command": s["command"]})
        return {"queued": queued}

    # -- live events ----------------------------------------------------------------------------

    open_streams: set[Callable[[tuple[str, dict[str, Any]] | None], None]] = set()

    def end_streams() -> None:
        """End every open event stream (clients reconnect by themselves). Call it when the
        server stops: uvicorn waits for open responses to finish before it shuts down."""
        for put in list(open_streams):
            put(None)

    app.state.end_streams = end_streams

    @app.get("/api/stream", tags=["devices"], response_class=StreamingResponse)
    async def stream(request: Request, caller: Read, dev_eui: str | None = None
                     ) -> StreamingResponse:
        """Server-sent events: `readings` {"devices": [eui...]} when new readings are stored,
        `alarm` (an alarm change), `downlink` (a downlink's new state); `: ping` every 15 s.
        `dev_eui` keeps one device's events. A client that falls behind loses its oldest
        events (at most SSE_QUEUE_MAX wait)."""
        device = await asyncio.to_thread(_device_id, dev_eui) if dev_eui else None
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(SSE_QUEUE_MAX)

        def put(event: tuple[str, dict[str, Any]] | None) -> None:  # on the event loop
            if events.full():
                events.get_nowait()  # the slow client loses its oldest event
            events.put_nowait(event)

        def put_threadsafe(event: tuple[str, dict[str, Any]] | None) -> None:  # any thread
            loop.call_soon_threadsafe(put, event)

        def listener(kind: str, data: dict[str, Any]) -> None:  # on the ingest worker thread
            if device is not None:
                eui, did = device
                if kind == "readings":
                    if eui not in data.get("devices", ()):
                        return
                    data = {"devices": [eui]}
                elif data.get("dev_eui") != eui and data.get("device_id") != did:
                    return
            put_threadsafe((kind, data))

        hub.listeners.append(listener)
        open_streams.add(put_threadsafe)

        async def body() -> Any:
            try:
                yield "retry: 5000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(events.get(), SSE_PING_S)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": ping\n\n"
                        continue
                    if event is None:  # end_streams
                        return
                    yield f"event: {event[0]}\ndata: {json.dumps(event[1], default=str)}\n\n"
            finally:
                open_streams.discard(put_threadsafe)
                with suppress(ValueError):
                    hub.listeners.remove(listener)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # -- the dashboard (pages and static files; their data comes from the routes above) -------

    mount_web(app)

    return app


__all__ = ["Caller", "DevicePatch", "DownlinkRequest", "create_app"]
