"""cth01.simulate — run a virtual CTH01 fleet in (scaled) real time and send its uplinks out.

Public surface:
  run(fleet, sink, start=, duration_s=, speed=)   the paced loop -> RunStats
  RunStats                                        what a run did
  Sink, JsonLinesSink, ChirpStackMqttSink, CallbackSink, Downlink, SinkError
  Scenario, ScenarioError, load_scenario, parse_scenario, apply_scenario, demo_scenario,
  parse_duration                                  scripted events (outages, blackouts, ...)

Uses `cth01.device` for the fleet; the devices stay sans-IO — pacing, wall clock, threads and
sockets live here. The `cth01 simulate` command is `cth01.cli_simulate`.
"""

from .runner import RunStats, run
from .scenario import Scenario, ScenarioError, demo_scenario, parse_duration
from .scenario import apply as apply_scenario
from .scenario import load as load_scenario
from .scenario import parse as parse_scenario
from .sinks import (
    CallbackSink,
    ChirpStackMqttSink,
    Downlink,
    JsonLinesSink,
    Sink,
    SinkError,
)

__all__ = [
    "CallbackSink", "ChirpStackMqttSink", "Downlink", "JsonLinesSink", "RunStats", "Scenario",
    "ScenarioError", "Sink", "SinkError", "apply_scenario", "demo_scenario", "load_scenario",
    "parse_duration", "parse_scenario", "run",
]
