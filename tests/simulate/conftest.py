"""A real Mosquitto broker for the MQTT sink tests: use the one listening on 127.0.0.1:1883,
start it from /etc/mosquitto/mosquitto.conf when it is not running, skip only when the
mosquitto binary is missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

BROKER = ("127.0.0.1", 1883)


def _listening(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mosquitto() -> tuple[str, int]:
    if _listening(BROKER):
        return BROKER
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if shutil.which("/usr/sbin/mosquitto") else None)
    if binary is None:
        pytest.skip("mosquitto is not installed")
    conf = "/etc/mosquitto/mosquitto.conf"
    args = ["-c", conf] if os.path.exists(conf) else ["-p", str(BROKER[1])]
    subprocess.run([binary, "-d", *args], check=False, timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _listening(BROKER):
            return BROKER
        time.sleep(0.1)
    pytest.fail("mosquitto was started but does not listen on 127.0.0.1:1883")
