"""`cth01 simulate`: run a virtual CTH01 fleet and stream its uplinks (JSON lines or ChirpStack
MQTT).

Owns: turning options into a `Fleet`, a scenario, a sink and a paced `cth01.simulate.run`, and
presenting progress and statistics on stderr (stdout carries only data: one JSON object per
uplink in `jsonl` mode). Expected failures (bad option, bad scenario, no broker) print one
`error: ...` line on stderr and exit 2; Ctrl-C stops cleanly, prints the statistics and exits
130. Registered by `cth01.cli` as `app.command("simulate")(simulate)`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from .device import PROFILES, Fleet
from .simulate import (
    ChirpStackMqttSink,
    JsonLinesSink,
    RunStats,
    Scenario,
    ScenarioError,
    Sink,
    SinkError,
    apply_scenario,
    demo_scenario,
    load_scenario,
    parse_duration,
    run,
)
from .simulate.sinks import DEFAULT_APPLICATION_ID, iso_utc

if TYPE_CHECKING:
    from rich.console import Console

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class OutputKind(StrEnum):
    jsonl = "jsonl"
    mqtt = "mqtt"


def _fail(message: object) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


def parse_start(text: str | None) -> int:
    """Unix seconds of `--start`: ISO 8601 (no offset = UTC) or Unix seconds; now when None."""
    if text is None:
        return round(time.time())
    text = text.strip()
    try:
        if re.fullmatch(r"\d+", text):
            return int(text)
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start {text!r} is neither ISO 8601 nor Unix seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp())


def parse_speed(text: str) -> float | None:
    """`max` (unpaced) -> None, else simulated seconds per wall second (> 0)."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"--speed must be a number > 0 or 'max', got {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"--speed must be a number > 0 or 'max', got {text!r}")
    return speed


def parse_profiles(text: str | None) -> tuple[str, ...]:
    if text is None:
        return PROFILES
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in PROFILES]
    if unknown or not names:
        raise ValueError(f"--profiles: unknown profile(s) {', '.join(unknown) or '(none)'}; "
                         f"known: {', '.join(PROFILES)}")
    return names


def _check_uuid(text: str) -> None:
    try:
        uuid.UUID(text)
    except ValueError:
        raise ValueError(f"--application-id must be a UUID, got {text!r}") from None


def simulate(
    devices: Annotated[int, typer.Option("--devices", help="Number of virtual devices.")] = 10,
    duration: Annotated[str, typer.Option(
        "--duration", help="Simulated time to run: 90s, 15m, 2h, 1d, 1h30m.")] = "2h",
    speed: Annotated[str, typer.Option(
        "--speed", help="Simulated seconds per wall second (60: a minute per second), or "
                        "'max' to run unpaced.")] = "60",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the load model.")] = 0,
    start: Annotated[str | None, typer.Option(
        "--start", help="Simulated start: ISO 8601 (no offset = UTC) or Unix seconds. "
                        "Default: now, rounded to the second.")] = None,
    output: Annotated[OutputKind, typer.Option(
        "--output", help="jsonl: one JSON object per uplink on stdout; mqtt: ChirpStack v4 "
                         "integration events on an MQTT broker.")] = OutputKind.jsonl,
    mqtt_host: Annotated[str, typer.Option("--mqtt-host", help="MQTT broker host.")
                         ] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option("--mqtt-port", help="MQTT broker port.")] = 1883,
    application_id: Annotated[str, typer.Option(
        "--application-id", help="ChirpStack application ID (UUID) in the MQTT topics.")
    ] = DEFAULT_APPLICATION_ID,
    profiles: Annotated[str | None, typer.Option(
        "--profiles", help=f"Load profiles, comma-separated, cycled over the devices "
                           f"({', '.join(PROFILES)}). Default: all.")] = None,
    scenario: Annotated[Path | None, typer.Option(
        "--scenario", help="Scripted events: a JSON or TOML scenario file.")] = None,
    demo_events: Annotated[bool, typer.Option(
        "--demo-events", help="Script the built-in demo events (outage, blackout, overload, "
                              "sag, heat, harmonics in the first two hours).")] = False,
    time_zone_min: Annotated[int, typer.Option(
        "--time-zone-min", help="Devices' time zone, minutes east of UTC.")] = 0,
) -> None:
    """Run a fleet of virtual CTH01s and stream their uplinks.

    [b]jsonl[/b]: one JSON object per uplink on stdout (dev_eui, time, payload_hex, kind, ...).

    [b]mqtt[/b]: ChirpStack v4 events on application/APP/device/DEVEUI/event/up (and /join).

    Downlinks (mqtt): application/APP/device/DEVEUI/command/down. Statistics go to stderr.
    """
    from rich.console import Console

    console = Console(file=sys.stderr)
    try:
        if devices < 1:
            raise ValueError(f"--devices must be at least 1, got {devices}")
        try:
            duration_s = parse_duration(duration)
        except ValueError as exc:
            raise ValueError(f"--duration: {exc}") from None
        if duration_s <= 0:
            raise ValueError("--duration must be longer than 0 s")
        pace = parse_speed(speed)
        start_unix = parse_start(start)
        profile_names = parse_profiles(profiles)
        if scenario is not None and demo_events:
            raise ValueError("--scenario and --demo-events exclude each other")
        if output is OutputKind.mqtt:
            _check_uuid(application_id)
        plan: Scenario | None = load_scenario(scenario) if scenario is not None else (
            demo_scenario() if demo_events else None)
        fleet = Fleet(devices, profiles=profile_names, seed=seed, time_zone_min=time_zone_min,
                      storage=True)
        if plan is not None:
            apply_scenario(plan, fleet, start_unix)
    except ScenarioError as exc:
        _fail(f"scenario {exc}")
    except ValueError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None

    def log(message: str) -> None:
        console.print(message, markup=False, highlight=False, style="yellow", soft_wrap=True)

    try:
        sink: Sink
        if output is OutputKind.mqtt:
            sink = ChirpStackMqttSink(mqtt_host, mqtt_port, application_id,
                                      dev_euis=fleet.by_eui, seed=seed, log=log)
        else:
            sink = JsonLinesSink(sys.stdout)
    except SinkError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None

    where = "stdout" if output is OutputKind.jsonl else \
        f"mqtt://{mqtt_host}:{mqtt_port} application {application_id}"
    pace_text = "unpaced" if pace is None else f"×{pace:g}"
    console.print(f"simulating {devices} device(s) for {duration} from {iso_utc(start_unix)} "
                  f"({pace_text}) → {where}"
                  + (f"; {len(plan.events)} scripted event(s)" if plan else ""),
                  highlight=False, markup=False, soft_wrap=True)
    for i, event in enumerate(plan.events if plan else ()):
        if event.start_s >= duration_s:
            log(f"scenario event {i} ({event.type}) starts after the end of the run: no effect")
    stats = _run_with_progress(console, fleet, sink, start_unix, duration_s, pace, log)
    if stats is None:
        console.print("stopped: stdout was closed", highlight=False, markup=False, soft_wrap=True)
        return
    console.print(stats.summary(), highlight=False, markup=False, soft_wrap=True)
    if isinstance(sink, ChirpStackMqttSink):
        console.print(f"mqtt: {sink.published} event(s) published ({sink.uplinks} up, "
                      f"{sink.joins} join), {sink.acknowledged} acknowledged; "
                      f"command/down received {sink.received}, rejected "
                      f"{sink.rejected_total}", highlight=False, markup=False, soft_wrap=True)
    if stats.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def _run_with_progress(console: Console, fleet: Fleet, sink: Sink, start_unix: int,
                       duration_s: int, pace: float | None, log: Callable[[str], None]
                       ) -> RunStats | None:
    """The run under a rich progress bar (only on a terminal); None when stdout was closed
    by its reader. Closes the sink."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    task = progress.add_task("simulating", total=duration_s, detail="")

    def show(stats: RunStats) -> None:
        progress.update(task, completed=stats.simulated_s,
                        detail=f"{stats.simulated_s}/{duration_s} s · {stats.uplinks} uplinks "
                               f"· lost {stats.lost_uplinks} · ×{stats.speed:,.0f}")

    stats: RunStats | None = None
    try:
        with progress:
            stats = run(fleet, sink, start=start_unix, duration_s=duration_s, speed=pace,
                        progress=show, log=log)
    except BrokenPipeError:
        # the reader of stdout went away (`| head`): stop quietly, like other filters, and
        # keep Python from complaining when it flushes stdout at exit
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        try:
            sink.close()
        except (OSError, ValueError):
            pass
        except KeyboardInterrupt:
            if stats is not None:
                stats.interrupted = True
    return stats
