"""A private Mosquitto broker for the hub's end-to-end tests and benchmarks: its own port,
configuration and persistence directory, so tests can stop, kill and restart it without
touching the machine's broker on 1883; and reading a hub database from outside the hub."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cth01.cli_hub import build, run_hub


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


# --- helpers of the notification and network-event tests ---------------------------------------

def wait_until(predicate, timeout_s: float = 15.0, what: str = "condition", every_s: float = 0.02):
    """Poll `predicate` until it returns something truthy (returned); AssertionError after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


class Subscriber:
    """A paho MQTT client subscribed (QoS 1) to `topics` on a broker, keeping every message it
    receives as (topic, payload, retain, qos), in order."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, bytes, bool, int]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"test-sub-{uuid.uuid4().hex[:8]}")

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            client.subscribe([(t, 1) for t in topics])

        def on_message(client, userdata, msg) -> None:
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError(f"could not subscribe to {topics} on port {port}")

    def received(self, prefix: str = "") -> list[tuple[str, bytes, bool, int]]:
        with self._lock:
            return [m for m in self.messages if m[0].startswith(prefix)]

    def wait(self, prefix: str = "", count: int = 1, timeout_s: float = 15.0
             ) -> list[tuple[str, bytes, bool, int]]:
        """The messages whose topic starts with `prefix`, once there are at least `count`."""
        return wait_until(lambda: (m := self.received(prefix)) and len(m) >= count and m,
                          timeout_s, f"{count} message(s) on {prefix}*")

    def publish(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookServer:
    """A real HTTP server (http.server in a thread) on 127.0.0.1:`port` that records every POST
    as (path, parsed JSON body, status answered) and its headers. `statuses` are answered in
    turn (then 200); while `hold` is clear, requests wait (a server that hangs). `start()` /
    `stop()` can be called again: a server that is down, then comes back on the same port."""

    def __init__(self, port: int | None = None, statuses: list[int] | None = None) -> None:
        self.port = port or free_port()
        self.statuses = list(statuses or [])
        self.requests: list[tuple[str, object, int]] = []
        self.headers: list[dict[str, str]] = []  # each request's headers (names lower case)
        self.hold = threading.Event()
        self.hold.set()
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alarms"

    def start(self) -> WebhookServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                owner.hold.wait(30)
                with owner._lock:
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    owner.requests.append((self.path, json.loads(body), status))
                    owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.hold.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[object]:
        """The bodies answered with a 2xx, in order."""
        with self._lock:
            return [body for _, body, status in self.requests if status < 300]


class HubThread:
    """The hub as `cth01 serve` wires it (`cli_hub.build` + `run_hub`: sources, listeners,
    loops, API on `config.port`) running in a thread of the test process; `api()` calls its
    HTTP API with `token`; `stop()` stops it as Ctrl-C does."""

    def __init__(self, config, token: str, setup=None) -> None:
        self.token = token
        self.hub = build(config)
        if setup is not None:  # setup(hub): before it starts (add a listener...)
            setup(self.hub)
        self.server = None
        ready = threading.Event()

        def on_ready(server) -> None:
            self.server = server
            ready.set()

        self.thread = threading.Thread(
            target=lambda: asyncio.run(run_hub(self.hub, ready=on_ready)), daemon=True,
            name="test-hub")
        self.thread.start()
        if not ready.wait(20):
            raise RuntimeError("the hub's API did not start")
        for source in {id(s): s for s in self.hub.sources.values()}.values():
            if hasattr(source, "wait_connected") and not source.wait_connected(10):
                raise RuntimeError("the hub did not connect to the broker")

    def api(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs):
        return httpx.request(method, f"http://127.0.0.1:{self.hub.config.port}{path}",
                             headers={"Authorization": f"Bearer {self.token}",
                                      **(headers or {})}, timeout=10, **kwargs)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)
