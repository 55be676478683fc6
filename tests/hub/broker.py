"""A private Mosquitto broker for the hub's end-to-end tests and benchmarks: its own port,
configuration and persistence directory, so tests can stop, kill and restart it without
touching the machine's broker on 1883; and reading a hub database from outside the hub."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path


def db_rows(db: str, sql: str) -> list[tuple]:
    """Rows of a query on a hub database (a SQLite path or a postgresql:// URL), through a
    connection of its own (what another process sees)."""
    if db.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(db) as conn:
            return conn.execute(sql).fetchall()
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class PrivateBroker:
    """mosquitto on 127.0.0.1:<port> with persistence in `directory` (sessions and queued QoS 1
    messages survive a restart) and no per-client queue limit."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (apt install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {directory}/\n"
            f"autosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {directory}/mosquitto.log\n"
            # started as root, mosquitto drops to the `mosquitto` user, which could not write
            # its persistence file into this (private) directory
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateBroker:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not listening(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"mosquitto did not start on {self.port}: "
                                   f"{(self.directory / 'mosquitto.log').read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """A clean stop (SIGTERM): the broker saves its sessions and queues."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
