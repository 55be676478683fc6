"""`cth01 simulate`: JSON lines on stdout and nothing else there, statistics on stderr, one
error line and exit 2 for bad input, exit 130 with statistics on Ctrl-C."""

from __future__ import annotations

import json
import socket

import pytest
import typer
from typer.testing import CliRunner

import cth01.cli_simulate as cli_simulate
from cth01.protocol import decode
from cth01.simulate import run as real_run

runner = CliRunner()
app = typer.Typer()
app.command("simulate")(cli_simulate.simulate)
START = ["--start", "2025-01-01T00:00:00Z"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_jsonl_run():
    result = invoke("--devices", "2", "--duration", "10m", "--speed", "max", *START)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines
    for line in lines:
        doc = json.loads(line)
        assert doc["time"] >= "2025-01-01T00:00:00Z"
        decode(bytes.fromhex(doc["payload_hex"]), dialect="firmware")
    assert len({json.loads(line)["dev_eui"] for line in lines}) == 2
    assert f"uplinks {len(lines)} " in result.stderr
    assert "simulated 600 s of 2 device(s)" in result.stderr


def test_demo_events_and_a_scenario_file(tmp_path):
    result = invoke("--devices", "3", "--duration", "5m", "--speed", "max", "--demo-events",
                    "--profiles", "office,pv", "--seed", "3", "--time-zone-min", "60", *START)
    assert result.exit_code == 0, result.output
    assert "6 scripted event(s)" in result.stderr
    path = tmp_path / "s.toml"
    path.write_text('[[events]]\ntype = "outage"\ndevices = "all"\nstart = "0s"\n'
                    'duration = "1h"\n')
    result = invoke("--devices", "2", "--duration", "5m", "--speed", "max", "--scenario",
                    str(path), *START)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # nobody could join
    assert "1 scripted event(s)" in result.stderr


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


BAD = [
    (["--duration", "2x"], "--duration: expected a duration"),
    (["--duration", "0s"], "--duration must be longer than 0 s"),
    (["--speed", "0"], "--speed must be a number > 0 or 'max'"),
    (["--speed", "fast"], "--speed must be a number > 0 or 'max'"),
    (["--devices", "0"], "--devices must be at least 1"),
    (["--profiles", "office,castle"], "unknown profile(s) castle"),
    (["--start", "yesterday"], "neither ISO 8601 nor Unix seconds"),
    (["--time-zone-min", "7"], "time_zone"),
    (["--scenario", "/nonexistent.json"], "cannot read the scenario"),
    (["--scenario", "{bad}", "--demo-events"], "exclude each other"),
    (["--scenario", "{bad}"], "event 0, field 'factor'"),
    (["--output", "mqtt", "--application-id", "nope"], "--application-id must be a UUID"),
    (["--output", "mqtt", "--mqtt-port", "{port}"], "cannot connect to the MQTT broker"),
]


@pytest.mark.parametrize(("args", "words"), BAD)
def test_errors_are_one_line_and_exit_2(tmp_path, args, words):
    bad = tmp_path / "bad.json"
    bad.write_text('{"events": [{"type": "overload", "devices": "all", "start": "0s", '
                   '"duration": "1m", "channels": [1], "factor": -2}]}')
    args = [a.format(bad=bad, port=closed_port() if "{port}" in a else "") for a in args]
    result = invoke("--duration", "1m", "--speed", "max", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert words in lines[0]
    assert result.stdout == ""


def test_ctrl_c_stops_with_the_statistics(monkeypatch):
    calls = []

    def interrupting_sleep(s):
        calls.append(s)
        if len(calls) == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_simulate, "run",
                        lambda *a, **k: real_run(*a, **k, sleep=interrupting_sleep))
    result = invoke("--devices", "1", "--duration", "1h", "--speed", "60", *START)
    assert result.exit_code == 130, result.output
    assert "interrupted after 19 s of 1 device(s)" in result.stderr  # 20th second unsent
    assert all(json.loads(line) for line in result.stdout.splitlines())
