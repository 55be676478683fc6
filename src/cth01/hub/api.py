"""The hub's HTTP API: the read side, the registry, alarms, downlinks and the ingest webhooks.

Owns: `create_app(hub)`, the FastAPI application with every route under `/api`, `/metrics` and
a minimal `/` page; who may call what; turning query parameters into store calls (defaults,
time windows, validation with clear 422s) and store answers into JSON or CSV.

Auth: `Authorization: Bearer <token>`; tokens are made with `store.create_token` and stored
hashed. Roles: `read` (GET routes) and `admin` (everything, including writes). GET routes need a
valid token unless the hub runs with `anonymous_read`; `PATCH /api/devices/…`, downlinks and
alarm acknowledgements need `admin`. The ingest webhooks (`/api/uplinks/…`) also need an
`admin` token, which may be given as `?token=` because some network servers cannot set headers.
401: no token or an unknown one; 403: a valid token whose role is not enough. `/api/health`,
`/metrics`, `/docs` and `/openapi.json` are anonymous.

Threads: every route that touches the store is a plain `def` (FastAPI runs it in a thread
pool, so a slow query never blocks the event loop); only the webhooks are `async`, because they
await `hub.ingest_http` — the HTTP answer is the acknowledgement, sent after the commit.

Errors: `StoreError` -> 503 `database unavailable: …`; a message that does not parse -> dead
letter and 400; a refused downlink -> 422 with the command and the reason, nothing queued.

Must never: decode payloads (the pipeline does), decide alarm or downlink lifecycles (alarms,
downlinks, store), or call the store from the event loop. Its only SQL is the SELECT of the raw
CSV export.
"""

import csv
import html
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from . import downlinks as dl
from .envelope import Envelope, MessageError, NetworkEvent, parse_chirpstack, parse_tts
from .readings import CHANNEL_COLUMNS, DEVICE_COLUMNS, ENERGY_COLUMNS, UNITS
from .service import Hub
from .store import StoreError

DAY_S = 86400
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


def _window(start: int | None, end: int | None, now: float, default_s: int) -> tuple[int, int]:
    end = int(now) if end is None else end
    start = end - default_s if start is None else start
    if start > end:
        raise HTTPException(422, f"start ({start}) is after end ({end})")
    return start, end


def _period(period: str, month: str | None, day: str | None, now: float) -> tuple[int, int]:
    """[start, end) of a calendar month or day in UTC (the one containing `now` by default)."""
    today = datetime.fromtimestamp(now, UTC)
    try:
        if period == "month":
            first = (datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC) if month
                     else today.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
            nxt = first.replace(year=first.year + first.month // 12,
                                month=first.month % 12 + 1)
            return int(first.timestamp()), int(nxt.timestamp())
        first = (datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) if day
                 else today.replace(hour=0, minute=0, second=0, microsecond=0))
    except ValueError:
        raise HTTPException(422, "month must be YYYY-MM and day YYYY-MM-DD") from None
    return int(first.timestamp()), int((first + timedelta(days=1)).timestamp())


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
        return Caller(*found)

    def _need_token() -> HTTPException:
        return HTTPException(401, "missing token: send Authorization: Bearer <token>",
                             headers={"WWW-Authenticate": "Bearer"})

    def reader(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
               ) -> Caller:
        caller = _caller(creds.credentials if creds else None)
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

    def admin(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
              ) -> Caller:
        return _admin(_caller(creds.credentials if creds else None))

    def webhook_admin(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                      token: Annotated[str | None, Depends(_query_token)]) -> Caller:
        return _admin(_caller(creds.credentials if creds else token))

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
            start, end = _period(period, month, day, hub.clock())
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
        """Energy over [start, end) (default: the last 24 h; or a UTC calendar `period`),
        per channel (with circuit and tenant), device or tenant (channel's tenant, else the
        device's, else "unassigned")."""
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

    @app.post("/api/alarms/{alarm_id}/ack", tags=["alarms"])
    def acknowledge(alarm_id: int, caller: Admin) -> dict[str, Any]:
        """Acknowledge an alarm (once: a second acknowledgement keeps the first)."""
        row = store.acknowledge_alarm(alarm_id, user=caller.name or "", now=hub.clock())
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

    async def _ingest(parse: Any, body: bytes, **kwargs: Any) -> JSONResponse:
        try:
            message: Envelope | NetworkEvent | MessageError = parse(body, **kwargs)
        except MessageError as error:
            message = error
        try:
            await hub.ingest_http(message, body)
        except TimeoutError:  # queued, not committed in 30 s: the network server must retry
            return JSONResponse({"detail": "not stored yet (database busy): retry"},
                                status_code=503, headers={"Retry-After": "5"})
        if isinstance(message, MessageError):
            return JSONResponse({"detail": message.reason}, status_code=400)
        return JSONResponse({"stored": True})

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
        return await _ingest(parse_tts, body, event=_tts_event_of(body), source="http",
                             topic=request.url.path)

    @app.post("/api/uplinks/tts/{event:path}", tags=["ingest"])
    async def tts_webhook_event(request: Request, event: str, caller: Webhook
                                ) -> JSONResponse:
        """The Things Stack v3 webhook with the event as path suffix (up, join, down/ack,
        down/nack, down/sent, down/failed; or uplink, join-accept, downlink/ack ...)."""
        body = await request.body()
        return await _ingest(parse_tts, body, event=_TTS_SUFFIXES.get(event, event),
                             source="http", topic=request.url.path)

    # -- a minimal page -----------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
              ) -> HTMLResponse:
        """Links and a table of devices (the table only for callers who may read)."""
        try:
            allowed = hub.config.anonymous_read or _caller(
                creds.credentials if creds else None) is not None
        except HTTPException:
            allowed = False
        rows = "".join(
            f"<tr><td>{html.escape(d['dev_eui'])}</td><td>{html.escape(d['name'] or '')}</td>"
            f"<td>{_iso(d['last_seen'])}</td><td>{d['active_alarms']}</td></tr>"
            for d in (store.devices() if allowed else []))
        table = (f"<table><tr><th>DevEUI</th><th>Name</th><th>Last seen (UTC)</th>"
                 f"<th>Active alarms</th></tr>{rows}</table>" if allowed
                 else "<p>Devices: use the API with a token.</p>")
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>cth01 hub</title></head>"
            "<body><h1>cth01 hub</h1><p><a href='/docs'>API docs</a> · "
            "<a href='/api/devices'>devices</a> · <a href='/api/alarms'>alarms</a></p>"
            f"{table}</body></html>")

    return app


__all__ = ["Caller", "DevicePatch", "DownlinkRequest", "create_app"]
