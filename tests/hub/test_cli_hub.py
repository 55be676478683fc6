"""`cth01 demo` and `cth01 serve` as a user runs them: a real process, real HTTP, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from cth01.hub.config import ConfigError, HubConfig, load_config

from .broker import free_port


def test_demo_serves_the_dashboard_and_health_with_data_flowing_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cth01", "demo", "--port", str(port),
                             "--devices", "4", "--speed", "600", "--db",
                             str(tmp_path / "demo.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                if health["stored_uplinks"] > 4:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert health is not None and health["status"] == "ok", health
        assert health["stored_uplinks"] > 4 and health["sources"] == ["fleet", "http"]
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        devices = httpx.get(f"http://127.0.0.1:{port}/api/devices", timeout=5).json()
        assert len(devices) == 4
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert f"http://127.0.0.1:{port}/" in err and "admin token cth01_" in err
    assert "cth01 demo stopped." in err


def test_every_option_comes_from_the_command_line_the_environment_or_a_file(tmp_path):
    file = tmp_path / "hub.toml"
    file.write_text('db = "from-file.db"\nport = 9000\nanonymous_read = true\n')
    env = {"CTH01_PORT": "9100", "CTH01_BACKFILL": "false"}
    config = load_config(file, env=env, overrides={"db": None, "fleet_devices": 3})
    assert (config.db, config.port, config.anonymous_read, config.backfill,
            config.fleet_devices) == ("from-file.db", 9100, True, False, 3)
    for bad_env, name in (({"CTH01_PORT": "eighty"}, "port"),
                          ({"CTH01_FLEET_SPEED": "-1"}, "fleet_speed"),
                          ({"CTH01_BACKFILL": "maybe"}, "backfill")):
        try:
            load_config(env=bad_env)
        except ConfigError as exc:
            assert exc.name == name
        else:
            raise AssertionError(f"{bad_env} accepted")
    (tmp_path / "bad.toml").write_text("no_such_option = 1\n")
    try:
        load_config(tmp_path / "bad.toml", env={})
    except ConfigError as exc:
        assert exc.name == "no_such_option"
    else:
        raise AssertionError("unknown option accepted")


def test_serve_help_documents_every_option_with_its_environment_variable():
    from cth01.hub.config import HELP, env_name

    out = subprocess.run([sys.executable, "-m", "cth01", "serve", "--help"],
                         capture_output=True, text=True, env={"COLUMNS": "300",
                                                              "PATH": "/usr/bin:/bin"},
                         check=True).stdout
    for name in HELP:
        assert f"--{name.replace('_', '-')}" in out, name
        assert env_name(name) in out, name
    # the defaults too: "[default: X]" must not be taken for Rich markup and vanish
    defaults = HubConfig()
    assert out.count("[default: ") == len(HELP)
    for name in ("port", "host", "batch_max", "downlink_timeout_s", "log_format"):
        assert f"[default: {getattr(defaults, name)}]" in out, name
