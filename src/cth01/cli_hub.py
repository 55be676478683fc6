"""`cth01 serve`, `cth01 demo` and `cth01 token`: the hub on the command line.

Owns: turning options into a `HubConfig` (every field of it is an option of `serve`, with its
environment variable, generated from the config so the two never drift), wiring the hub's parts
together (store, sources, notifiers, API, uvicorn) and stopping them cleanly on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.markup import escape

from .hub.config import HELP, ConfigError, HubConfig, env_name, load_config


def configure_logging(config: HubConfig) -> None:
    """Structured logs on stderr: one JSON object per line, or a readable console form."""
    level = getattr(logging, config.log_level.upper())
    renderer: Any = (structlog.processors.JSONRenderer() if config.log_format == "json"
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr), cache_logger_on_first_use=False)


def build(config: HubConfig) -> Any:
    """Store, hub, sources and listeners, ready to start. Returns the hub."""
    from .hub.notify import AlarmNotifier, HomeAssistant
    from .hub.service import Hub
    from .hub.sources import FleetSource, MqttSource, WebhookDownlinks
    from .hub.store import open_store

    kwargs = {"durable": True} if config.sqlite_durable and "://" not in config.db else {}
    store = open_store(config.db, **kwargs)
    fleet = None
    if config.fleet_devices:
        fleet = FleetSource(config.fleet_devices, speed=config.fleet_speed,
                            seed=config.fleet_seed, events=config.fleet_events)
    hub = Hub(config, store, clock=fleet.clock if fleet else time.time)
    mqtt = None
    if config.mqtt_url:
        mqtt = MqttSource(config.mqtt_url, chirpstack=config.chirpstack, tts=config.tts,
                          client_id=config.mqtt_client_id, username=config.mqtt_username,
                          password=config.mqtt_password, protocol=config.mqtt_protocol)
        hub.add_source(mqtt)
    hub.add_source(WebhookDownlinks(mqtt))  # the API's webhooks are always there
    if fleet is not None:
        hub.add_source(fleet)
    if config.admin_token:
        store.create_token("admin", "admin", token=config.admin_token)
    if config.alarm_webhook or (config.alarm_mqtt_topic and mqtt):
        hub.listeners.append(AlarmNotifier(webhook=config.alarm_webhook,
                                           publish=mqtt.publish if mqtt else None,
                                           topic=config.alarm_mqtt_topic))
    if config.ha_discovery:
        if mqtt is None:
            raise ConfigError("ha_discovery", "needs mqtt_url (the broker Home Assistant "
                              "listens to)", "options")
        hub.listeners.append(HomeAssistant(store, mqtt.publish, config.ha_prefix,
                                           energy_unit=config.ha_energy_unit))
    return hub


async def run_hub(hub: Any, *, ready: Any = None) -> None:
    """Serve the API and run the hub until Ctrl-C / SIGTERM; then stop everything in order."""
    import uvicorn

    from .hub.api import create_app

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            app.state.end_streams()  # uvicorn waits for open responses: end the event streams
            await super().shutdown(sockets)

    # The ingest writer waits on the database ~20 times a batch and then needs the GIL back
    # while the MQTT and pipeline threads compute: at CPython's default 5 ms switch interval
    # each wait could cost up to 5 ms more. 0.5 ms: PostgreSQL drain of 100,000 uplinks
    # 9,200 -> 10,200/s (mean of runs; ~10 % more hub CPU per uplink in switching).
    sys.setswitchinterval(0.0005)
    config = hub.config
    app = create_app(hub)
    server = Server(uvicorn.Config(app, host=config.host, port=config.port, log_config=None,
                                   access_log=False, lifespan="off"))
    hub.start()
    loops = asyncio.create_task(hub.run_loops())
    serving = asyncio.create_task(server.serve())
    if ready is not None:
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            ready(server)
    try:
        await serving
    finally:
        loops.cancel()
        await asyncio.gather(loops, return_exceptions=True)
        await asyncio.to_thread(hub.stop)
        for listener in hub.listeners:
            stop = getattr(listener, "stop", None)
            if stop is not None:
                stop()
        hub.store.close()


def _options_from_config(fn: Any) -> Any:
    """Give `fn(**options)` one typer option per HubConfig field (help text, env var, default;
    escaped, or Rich takes "[default: 8000]" for markup and drops it)."""
    params = []
    for name in HELP:
        default = getattr(HubConfig(), name)
        kind = type(default) if default is not None else str
        opt = typer.Option(f"--{name.replace('_', '-')}" if kind is not bool else
                           f"--{name.replace('_', '-')}/--no-{name.replace('_', '-')}",
                           help=escape(f"{HELP[name]} [default: {default}]"),
                           envvar=env_name(name),
                           show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind | None, opt]))
    params.insert(0, inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Path | None, typer.Option(
            "--config", help="TOML file with any of these options (same names).",
            envvar="CTH01_CONFIG")]))
    fn.__signature__ = inspect.Signature(params)
    return fn


def _load(file: Path | None, options: dict[str, Any]) -> HubConfig:
    try:
        return load_config(file, overrides=options)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@_options_from_config
def serve(**options: Any) -> None:
    """Run the hub: ingest (MQTT, webhooks, virtual fleet), store, backfill, API.

    Every option can also come from the environment variable shown, or from a TOML file given
    with --config; the command line wins over the environment, which wins over the file.
    """
    config = _load(options.pop("config"), options)
    configure_logging(config)
    try:
        hub = build(config)
    except Exception as exc:
        typer.echo(f"error: cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    with suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled gracefully
        asyncio.run(run_hub(hub))


def demo(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    db: Annotated[Path | None, typer.Option(help="SQLite file (default: a new file in the "
                                                 "temporary directory).")] = None,
    devices: Annotated[int, typer.Option(min=1, help="Virtual CTH01s in the fleet.")] = 12,
    speed: Annotated[float, typer.Option(min=0.01, help="Simulated seconds per second.")] = 60.0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """The hub with a virtual fleet: SQLite, varied loads, scripted events, the dashboard."""
    from rich.console import Console

    console = Console(stderr=True)
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="cth01-demo-")) / "cth01.db"
    config = HubConfig(db=str(db), host=host, port=port, fleet_devices=devices,
                       fleet_speed=speed, anonymous_read=True, log_format="console",
                       log_level="warning", backfill_settle_s=1800)
    configure_logging(config)
    hub = build(config)
    token = hub.store.create_token("admin", "admin")

    def ready(server: Any) -> None:
        url = f"http://{host}:{port}/"
        console.print(f"[bold green]cth01 demo[/] — {devices} virtual CTH01s at ×{speed:g}, "
                      f"database {db}")
        console.print(f"  dashboard   [link={url}]{url}[/link]")
        console.print(f"  API         {url}docs   health {url}api/health")
        console.print(f"  admin token {token}")
        console.print("  Ctrl-C stops the demo.")

    with suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled gracefully
        asyncio.run(run_hub(hub, ready=ready))
    console.print("cth01 demo stopped.")


def token(
    name: Annotated[str, typer.Argument(help="Who the token is for (shown in audit fields).")],
    role: Annotated[str, typer.Option(help="read or admin.")] = "read",
    db: Annotated[str, typer.Option(help="The hub's database.", envvar=env_name("db"))]
        = HubConfig().db,
) -> None:
    """Create (or replace) an API token; it is printed once and stored hashed."""
    from .hub.store import open_store

    store = open_store(db)
    try:
        typer.echo(store.create_token(name, role))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
