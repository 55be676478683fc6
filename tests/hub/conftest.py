"""Shared fixtures of the hub tests.

A real PostgreSQL server on 127.0.0.1:5432 (trust auth, user postgres) is required: `pg_url`
gives each test a fresh, uniquely named database and drops it afterwards; it FAILS (does not
skip) when the server is not there. `store` runs a test on both engines (a SQLite file in the
test's tmp_path, a PostgreSQL database from `pg_url`), opened and migrated.
`hub_fleet_frames` is the uplinks of a virtual fleet (3 devices, 6 hours), built once per
session. `client` (the API of the module's own `hub` fixture) and `viewer` (a read token's
header) serve the API tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cth01.device import Fleet
from cth01.hub.api import create_app
from cth01.hub.store import Store, open_store

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_ADMIN_URL = f"{PG_SERVER}/postgres"
PG_START_HINT = ("start it with: pg_ctlcluster --skip-systemctl-redirect "
                 "$(ls /etc/postgresql) main start")

HUB_FLEET_T0 = 1767225600  # 2026-01-01T00:00:00Z
HUB_FLEET_DEVICES = 3
HUB_FLEET_SECONDS = 6 * 3600
HUB_FLEET_STEP_S = 5  # `Fleet.tick` takes coarser steps (timers fire at their own second)


def _pg_admin():  # -> psycopg.Connection
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); {PG_START_HINT}",
                    pytrace=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test: its URL; dropped (connections terminated)
    after the test."""
    name = f"cth01_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    """An opened, migrated store on each engine; closed after the test."""
    if request.param == "sqlite":
        url = str(tmp_path / "hub.db")
    else:
        url = request.getfixturevalue("pg_url")
    s = open_store(url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def hub_fleet_frames() -> list:
    """Every uplink frame (dev_eui, time, f_port, payload) of a 3-device fleet (seed 1) over
    6 hours from HUB_FLEET_T0: a few information frames at start, then a report every 10 min.
    Stepped every 5 s (second by second takes 5x longer and gives the same frame times)."""
    fleet = Fleet(HUB_FLEET_DEVICES, seed=1)
    frames = list(fleet.start(HUB_FLEET_T0))
    for s in range(HUB_FLEET_STEP_S, HUB_FLEET_SECONDS + 1, HUB_FLEET_STEP_S):
        frames += fleet.tick(HUB_FLEET_T0 + s)
    return frames


@pytest.fixture
def client(hub) -> Iterator[TestClient]:  # `hub`: the requesting module's fixture
    with TestClient(create_app(hub)) as c:
        yield c


@pytest.fixture
def viewer(hub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.store.create_token('viewer', 'read')}"}
