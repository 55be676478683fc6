"""The command line: decode, encode (byte-exact with the user guide), commands, docs, demo."""

import base64
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cth01.cli import app, cli_name, downlink_commands, encode_argv, parse_payload, to_json
from cth01.protocol import COMMANDS

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


# --- decode ------------------------------------------------------------------------------------

def test_decode_hex_spaces_and_case():
    result = run("decode", "DF 01 02")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["items"] == [{"type": "tsl_version", "major": 1, "minor": 2}]
    assert doc["dialect"] == "common"


def test_decode_base64():
    result = run("decode", "3wEC")  # base64 of df0102
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"][0] == {"type": "tsl_version", "major": 1,
                                                     "minor": 2}


def test_decode_history_datetimes_are_json():
    result = run("decode", "ed01a1b1856901360a", "--pretty")
    assert result.exit_code == 0, result.output
    assert "\n  " in result.stdout  # indented
    doc = json.loads(result.stdout)
    assert doc["history"][0]["timestamp"] == "2026-02-06T09:17:21Z"
    assert doc["history"][0]["items"] == [{"type": "temperature", "temperature_c": 26.14}]


def test_decode_guide_dialect_detected():
    result = run("decode", "3104023c28")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dialect"] == "guide"
    assert doc["items"] == [{"type": "current_alarm", "channel": 5, "alarm": "above_range",
                             "current_a": 103.0}]


def test_decode_dialect_option_forces_firmware():
    line = one_error_line(run("decode", "3104023c28", "--dialect", "firmware"))
    assert "truncated current_alarm" in line and "dialect=firmware" in line


def test_decode_stdin_json_lines_with_a_bad_line():
    result = run("decode", input="df0102\n\n0500\n36\n")
    assert result.exit_code == 2
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["items"][0]["type"] for d in docs] == ["tsl_version", "power_failure_alarm"]
    assert result.stderr.count("error: ") == 1
    assert "line 3" in result.stderr and "truncated current" in result.stderr


def test_decode_stdin_dash_all_good():
    result = run("decode", "-", input="df0102\n30139e0a\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_decode_odd_number_of_hex_digits():
    printed_d3 = ("019d0a 022926 0c000802000df0300008f000000a1000000b80000007e000000 "
                  "0d0083050000b743010009010000cf010000450100002c000000")
    line = one_error_line(run("decode", printed_d3))
    assert "odd number of hex digits (115)" in line


def test_decode_not_hex_nor_base64():
    assert "not a hex or base64 payload" in one_error_line(run("decode", "zz!"))


def test_decode_error_exit_code_and_message():
    line = one_error_line(run("decode", "05"))
    assert "truncated current" in line and "command=0x05" in line


def test_decode_lenient_turns_range_errors_into_warnings():
    one_error_line(run("decode", "011127"))  # 100.01 °C, above the 100 °C range
    result = run("decode", "011127", "--lenient")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["items"] == [{"type": "temperature", "temperature_c": 100.01}]
    assert doc["warnings"]


def test_decode_downlink():
    result = run("decode", "7704010200007803 5800", "--downlink")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"type": "current_threshold", "channel": 5, "enabled": True, "condition": "above",
         "min_a": 0, "max_a": 888},
        {"type": "threshold_query", "threshold": "temperature"},
    ]  # 5800 exists only in the guide dialect, so auto picks the guide


def test_decode_downlink_guide_only():
    result = run("decode", "5800", "--downlink")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"type": "threshold_query",
                                          "threshold": "temperature"}]


def test_decode_format_milesight():
    milesight = pytest.importorskip("cth01.milesight")
    payload = "019d0a022926"
    result = run("decode", payload, "--format", "milesight")
    assert result.exit_code == 0, result.output
    expected = json.loads(to_json(milesight.decode(bytes.fromhex(payload))))
    assert json.loads(result.stdout) == expected


def test_parse_payload_rules():
    assert parse_payload("61 01 14 00") == b"\x61\x01\x14\x00"
    assert parse_payload("YQEUAA==") == b"\x61\x01\x14\x00"
    assert parse_payload("0x6101") == b"\x61\x01"
    with pytest.raises(ValueError, match="empty"):
        parse_payload("   ")


# --- encode ------------------------------------------------------------------------------------

GUIDE = [
    ("61011400", "reporting-interval --minutes 20"),
    ("be", "reboot"),
    ("64094d696c657369676874", "bluetooth-name --name Milesight"),
    ("c710ff", "time-zone --offset-min -240"),
    ("c6013c03573c000a573c00",
     "daylight-saving-time --enabled --bias-min 60 --start-month 3 --start-week 5 "
     "--start-weekday 7 --start-minute 60 --end-month 10 --end-week 5 --end-weekday 7 "
     "--end-minute 60"),
    ("6d0f0900", "monthly-summary-time --day 15 --hour 9 --minute 0"),
    ("6b01e2ff", "temperature-calibration --enabled --offset-c -0.3"),
    ("7601020000c409", "temperature-threshold --enabled --condition above --min-c 0 "
                       "--max-c 25"),
    ("760103e803b80b", "temperature-threshold --enabled --condition within --min-c 10 "
                       "--max-c 30"),
    ("7704010200007803", "current-threshold --channel 5 --enabled --condition above "
                         "--min-a 0 --max-a 888"),
    ("7708010301002c01", "current-threshold --channel 9 --enabled --condition within "
                         "--min-a 1 --max-a 300"),
    ("770a0104de009a02", "current-threshold --channel 11 --enabled --condition outside "
                         "--min-a 222 --max-a 666"),
    ("7c0a00020000", "alarm-settings --repeat-interval-min 10 --repeat-count 2 "
                     "--no-report-cleared"),
    ("6801010400010200000100",
     "current-interface-b --circuit three_phase --direction-1 reverse --ct-range-1 1000A "
     "--direction-2 reverse --ct-range-2 300A --direction-3 forward --ct-range-3 100A"),
    ("6900010000010100010000",
     "current-interface-c --circuit single_phase --direction-1 reverse --ct-range-1 none "
     "--direction-2 reverse --ct-range-2 100a --direction-3 reverse"),
    ("5c0100847b6980048a69",
     "history-query-range --record-type periodic --start 1769702400 "
     "--end 2026-02-09T16:00:00Z"),
    ("5c0100847b6980048a69",
     "history-query-range --record-type periodic --start 2026-01-30T00:00:00+08:00 "
     "--end 2026-02-09T16:00:00"),
    ("5800", "threshold-query --threshold temperature --dialect guide"),
    ("5800", "threshold-query --threshold temperature"),  # guide-only: guide by default
    ("b9", "enquire-periodic-report"),
]


@pytest.mark.parametrize(("expected", "args"), GUIDE, ids=[g[1].split()[0] for g in GUIDE])
def test_encode_matches_the_guide(expected, args):
    result = run("encode", *shlex.split(args))
    assert result.exit_code == 0, result.output
    data = bytes.fromhex(expected)
    assert result.stdout == f"hex: {expected}\nbase64: {base64.b64encode(data).decode()}\n"


def test_encode_json():
    result = run("encode", "reporting-interval", "--minutes", "20", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "command": "reporting_interval", "dialect": "firmware",
        "item": {"type": "reporting_interval", "minutes": 20},
        "hex": "61011400", "base64": "YQEUAA==",
    }


def test_encode_defaults_from_the_table():
    result = run("encode", "report-parameters", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["item"]["parameters"] == [
        "temperature", "power_factor", "active_power", "imported_active_energy"]
    result = run("encode", "report-parameters", "--parameters", "current",
                 "--parameters", "THDI")
    assert result.stdout.startswith("hex: 6c0210\n")


@pytest.mark.parametrize(("args", "field"), [
    ("current-threshold --channel 13 --enabled --condition above --max-a 888", "channel"),
    ("reporting-interval --minutes 0", "minutes"),
    ("temperature-calibration --offset-c -0.301", "offset_c"),
    ("time-zone --offset-min 7", "offset_min"),
    ("bluetooth-name --name ThisNameIsTooLong", "name"),
])
def test_encode_out_of_range(args, field):
    line = one_error_line(run("encode", *shlex.split(args)))
    assert f".{field}:" in line


def test_encode_bad_choice_is_a_usage_error():
    result = run("encode", "current-threshold", "--channel", "1", "--condition", "sideways")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_encode_bad_time_is_a_usage_error():
    result = run("encode", "set-time", "--time", "yesterday")
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_every_downlink_has_an_encode_command_with_help():
    names = {c.name for c in COMMANDS if c.is_downlink()}
    assert set(downlink_commands()) == names
    for name, (cmd, _) in downlink_commands().items():
        result = run("encode", cli_name(name), "--help")
        assert result.exit_code == 0, (name, result.output)
        assert cmd.title in result.stdout and f"Wire key {cmd.key}" in result.stdout


def test_help_shows_unit_and_range():
    result = runner.invoke(app, ["encode", "reporting-interval", "--help"],
                           env={"COLUMNS": "200"})
    assert "Unit: min" in result.stdout and "Range: 1..1440" in result.stdout
    assert "default: 10" in result.stdout


def test_demo_command_lines_reproduce_the_demo():
    argv = encode_argv("current_threshold", {"channel": 5, "enabled": True,
                                             "condition": "above", "min_a": 0, "max_a": 888})
    assert argv == shlex.split("encode current-threshold --channel 5 --enabled "
                               "--condition above --min-a 0 --max-a 888")
    assert run(*argv).stdout.startswith("hex: 7704010200007803\n")


# --- commands, docs, demo ----------------------------------------------------------------------

def test_commands_json_lists_every_command():
    result = run("commands", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == len(COMMANDS)
    assert [(r["key"], r["name"]) for r in rows] == [(c.key, c.name) for c in COMMANDS]
    row = next(r for r in rows if r["name"] == "reporting_interval")
    assert row["key"] == "6101" and row["direction"] == "both"
    assert row["dialects"] == ["firmware", "guide"] and row["cli"] == "encode reporting-interval"


def test_commands_table():
    result = runner.invoke(app, ["commands"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "reporting_interval" in result.stdout and "61 01" in result.stdout


def test_docs(tmp_path):
    pytest.importorskip("cth01.protocol.docs")
    result = run("docs")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("#")
    target = tmp_path / "protocol.md"
    result = run("docs", "--write", "--path", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == run("docs").stdout


def test_demo():
    result = run("examples")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "odd number of hex digits (115)" in out
    assert "27.17 °C" in out and "332.76 V" in out
    assert "all encodings match the guide" in out


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("cth01 ")


# --- real processes: exit codes and no traceback ------------------------------------------------

def _entry_points() -> list[list[str]]:
    points = [[sys.executable, "-m", "cth01"]]
    script = Path(sys.executable).with_name("cth01")
    if script.exists():
        points.append([str(script)])
    return points


@pytest.mark.parametrize("cmd", _entry_points(), ids=lambda c: Path(c[-1]).name)
def test_subprocess_exit_codes(cmd):
    ok = subprocess.run([*cmd, "decode", "df0102"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["items"][0]["type"] == "tsl_version"
    bad = subprocess.run([*cmd, "decode", "05"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr
    enc = subprocess.run([*cmd, "encode", "current-threshold", "--channel", "13"],
                         capture_output=True, text=True, timeout=60)
    assert enc.returncode == 2 and "channel" in enc.stderr and "Traceback" not in enc.stderr
    stdin = subprocess.run([*cmd, "decode", "-"], input="36\nzz\n", capture_output=True,
                           text=True, timeout=60)
    assert stdin.returncode == 2 and len(stdin.stdout.splitlines()) == 1
    assert "Traceback" not in stdin.stderr
