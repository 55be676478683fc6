"""Storage: one SQL store, two engines (SQLite embedded, PostgreSQL for scale).

Owns: every query of the hub — the ingest transaction (raw frames, readings, alarms, the
configuration shadow, downlink results), the registry, and the read side of the API. The SQL is
written once, with `?` placeholders, in the dialect both engines share (ON CONFLICT upserts,
no engine functions); `SqliteStore` and `PostgresStore` differ only in how they connect, their
placeholder and how they bulk-insert. Schema and migrations: `schema.py`, docs/storage.md.

Threads: one writer (the ingest worker) calls `ingest`/`write`; API handlers call the rest from
a thread pool. SQLite runs in WAL mode (readers never block the writer); each thread has its
own connection. PostgreSQL uses a connection pool and sends the ingest transaction in pipeline
mode: its statements go without waiting for each one's result, so a batch waits on the server
only where the writer reads a result (device ids, alarms), not ~20 times.

Durability: `write` returns only after COMMIT. SQLite with synchronous=NORMAL in WAL mode
keeps every committed transaction through a crash of the process (kill -9); `durable=True`
(synchronous=FULL) also through a power cut. Errors of the database surface as `StoreError`
(transient=True when retrying can help: a lost connection, a locked database).
Must never: decode payloads (the pipeline does) or decide lifecycle rules (alarms, downlinks).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from . import alarms as alarm_rules
from . import downlinks as dl
from .envelope import Envelope
from .pipeline import AlarmEvent, Batch, DeadLetter
from .readings import (
    CHANNEL_COLUMNS,
    CHANNELS,
    DEVICE_COLUMNS,
    ENERGY_COLUMNS,
    READING_COLUMNS,
    wide_column,
)
from .schema import MIGRATIONS, migration_sql
from .tariff import slot_runs

DEFAULT_INTERVAL_S = 600  # the CTH01's factory reporting interval (10 min)
ROLES = ("read", "admin")
ENERGY_SAMPLE = 3  # readings read at each bound of an energy period (see Store.counters)
SUMMARY_TOLERANCE_S = 3600  # a device's monthly summary this close to the month's end is its
SESSION_S = 12 * 3600  # a login session lasts this long after its last use
SESSION_TOUCH_S = 60  # ... extended at most this often
TOKEN_TOUCH_S = 60  # api_token.last_used_at written at most this often per token


class StoreError(RuntimeError):
    """The database failed: `operation` names what the hub was doing; `transient` says whether
    retrying later can succeed (connection lost, database locked)."""

    def __init__(self, operation: str, cause: BaseException, *, transient: bool) -> None:
        super().__init__(f"{operation}: {cause}")
        self.operation = operation
        self.transient = transient


@dataclass
class WriteResult:
    """What one ingest transaction did. `alarm_changes` and `downlink_changes` are the rows
    (as dicts) whose state changed, for notifications and the API's live views."""

    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    readings: int = 0
    history_merged: int = 0
    history_skipped: int = 0
    alarm_changes: list[dict[str, Any]] = field(default_factory=list)
    downlink_changes: list[dict[str, Any]] = field(default_factory=list)
    live_devices: set[str] = field(default_factory=set)
    history_devices: set[str] = field(default_factory=set)


class NameTaken(ValueError):
    """A tariff or template name that is already used."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"a {kind} named {name!r} exists")
        self.kind, self.name = kind, name


@dataclass(frozen=True, slots=True)
class Counter:
    """One channel's energy counter over a period: `base` (its value in its last reading
    before the period, else in its first reading in it), `last` (in its last reading in the
    period) and `resets` (what counter resets in the period hid: the sum of their
    `before_value`). Its energy is last - base + resets."""

    device_id: int
    dev_eui: str
    channel: int
    base: float
    last: float
    resets: float = 0.0

    @property
    def energy(self) -> float:
        return self.last - self.base + self.resets


def hash_token(token: str) -> str:
    """API tokens are 32 random bytes, so one SHA-256 is enough to store them safely (a slow
    password hash protects guessable secrets; these are not)."""
    return hashlib.sha256(token.encode()).hexdigest()




@lru_cache(maxsize=512)
def _upsert(table: str, key: str, columns: tuple[int, ...]) -> str:
    """INSERT of the columns a report carries (by index into READING_COLUMNS). A report split
    across uplinks arrives as several rows with the same key: each part sets its own columns
    and leaves the others as they are."""
    names = [READING_COLUMNS[k] for k in columns]
    conflict = (f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in names)}"
                if names else "DO NOTHING")
    cols = "".join(f", {c}" for c in names)
    marks = ", ?" * len(names)
    first = "origin" if table == "reading" else "kind"
    return (f"INSERT INTO {table} (device_id, ts, {first}{cols}) VALUES (?, ?, ?{marks}) "
            f"ON CONFLICT ({key}) {conflict}")


_SQL_UPLINK = ("INSERT INTO uplink (device_id, received_at, stored_at, source, f_port, f_cnt, "
               "payload, dedup_key, kind, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (dedup_key) DO NOTHING")


class Store:
    """The hub's SQL store; use `open_store(url)` to get the right engine."""

    engine = ""
    placeholder = "?"

    def __init__(self) -> None:
        self._device_ids: dict[str, int] = {}
        self._intervals: dict[int, int] = {}
        self._write_lock = threading.RLock()
        self._sql_cache: dict[str, str] = {}
        self._power_failed: set[int] | None = None  # devices with an active power failure
        self._awaiting: set[int] | None = None  # devices with a downlink waiting for an answer
        self._token_used: dict[str, float] = {}  # token name -> last_used_at written

    # -- engine hooks -------------------------------------------------------------------------

    def _connection(self) -> Any:  # a DB-API connection for this thread
        raise NotImplementedError

    def _transient(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _insert_id(self, cur: Any, sql: str, params: Sequence[Any]) -> int:
        cur.execute(self._q(sql + " RETURNING id"), params)
        return int(cur.fetchone()[0])

    # -- plumbing -----------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        if self.placeholder == "?":
            return sql
        out = self._sql_cache.get(sql)
        if out is None:
            out = self._sql_cache[sql] = sql.replace("?", self.placeholder)
        return out

    @contextmanager
    def transaction(self, operation: str, *, pipelined: bool = False) -> Iterator[Any]:
        """A cursor inside one transaction, committed on success; database errors become
        StoreError. `pipelined`: the statements may be sent without waiting for each one's
        result (PostgreSQL; only for code that catches no database error itself)."""
        conn = self._connection()
        try:
            cur = conn.cursor()
            yield cur
            conn.commit()
        except BaseException as exc:
            # whatever failed (a database error, a value the driver refused, a bug), nothing
            # of the transaction may be committed later with the next one
            with suppress(*self._errors()):
                conn.rollback()
            if isinstance(exc, self._errors()):
                raise StoreError(operation, exc, transient=self._transient(exc)) from exc
            raise

    def query(self, sql: str, params: Sequence[Any] = (), operation: str = "query"
              ) -> list[tuple[Any, ...]]:
        with self.transaction(operation) as cur:
            cur.execute(self._q(sql), params)
            return list(cur.fetchall())

    def query_dicts(self, sql: str, params: Sequence[Any] = (), operation: str = "query"
                    ) -> list[dict[str, Any]]:
        with self.transaction(operation) as cur:
            cur.execute(self._q(sql), params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _many(self, cur: Any, sql: str, rows: list[Sequence[Any]]) -> None:
        if rows:
            cur.executemany(self._q(sql), rows)

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column IN (values)` as SQL and its parameters."""
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the migrations not yet applied; returns the schema version."""
        with self._write_lock, self.transaction("migrate") as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cur.execute("SELECT max(version) FROM schema_version")
            current = cur.fetchone()[0] or 0
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in migration_sql(version, self.engine):
                    cur.execute(statement)
                cur.execute(self._q("INSERT INTO schema_version (version) VALUES (?)"),
                            (version,))
            return len(MIGRATIONS)

    # -- devices ------------------------------------------------------------------------------

    def _device_id(self, cur: Any, dev_eui: str, now: float) -> int:
        return self._device_ids_of(cur, {dev_eui: now})[dev_eui]

    def _device_ids_of(self, cur: Any, first_seen: dict[str, float]) -> dict[str, int]:
        """The ids of these devices, registering the new ones (first seen at the time given):
        one lookup for those not cached yet and one insert for the new ones, not a round
        trip per device (a hub starting on a backlog of 500 devices: 1,000 round trips)."""
        unknown = [e for e in first_seen if e not in self._device_ids]
        self._cache_device_ids(cur, unknown)
        new = [e for e in unknown if e not in self._device_ids]
        if new:
            self._many(cur, "INSERT INTO device (dev_eui, first_seen) VALUES (?, ?) "
                            "ON CONFLICT (dev_eui) DO NOTHING", [(e, first_seen[e]) for e in new])
            self._cache_device_ids(cur, new)
        return {e: self._device_ids[e] for e in first_seen}

    def _cache_device_ids(self, cur: Any, dev_euis: list[str]) -> None:
        """Cache the ids (and reporting intervals) of those of these devices that are stored."""
        for k in range(0, len(dev_euis), 500):
            where, params = self._in("dev_eui", dev_euis[k:k + 500])
            cur.execute(self._q(f"SELECT dev_eui, id, reporting_interval_s FROM device "
                                f"WHERE {where}"), params)
            for eui, did, interval in cur.fetchall():
                self._device_ids[eui] = int(did)
                if interval:
                    self._intervals[int(did)] = int(interval)

    @contextmanager
    def _forgetting_new_devices(self) -> Iterator[None]:
        """Ids cached inside a transaction that fails are forgotten: a rolled-back insert
        leaves no device row, and a retry must not refer to it (a foreign key error)."""
        known = set(self._device_ids)
        try:
            yield
        except BaseException:
            for eui in set(self._device_ids) - known:
                del self._device_ids[eui]
            raise

    def device_id(self, dev_eui: str) -> int | None:
        did = self._device_ids.get(dev_eui)
        if did is None:
            rows = self.query("SELECT id FROM device WHERE dev_eui = ?", (dev_eui,))
            did = int(rows[0][0]) if rows else None
        return did

    def interval_s(self, device_id: int) -> int:
        return self._intervals.get(device_id, DEFAULT_INTERVAL_S)

    # -- ingest -------------------------------------------------------------------------------

    def new_envelopes(self, envelopes: Sequence[Envelope]) -> tuple[list[Envelope], int]:
        """The envelopes not stored yet (first of each key within the batch), and how many
        duplicates were dropped."""
        seen: set[int] = set()
        unique: list[Envelope] = []
        for env in envelopes:
            if env.key not in seen:
                seen.add(env.key)
                unique.append(env)
        if not unique:
            return [], len(envelopes)
        stored: set[int] = set()
        keys = [e.key for e in unique]
        for k in range(0, len(keys), 500):
            chunk = keys[k:k + 500]
            where, params = self._in("dedup_key", chunk)
            rows = self.query(f"SELECT dedup_key FROM uplink WHERE {where}", params, "dedup")
            stored.update(r[0] for r in rows)
        new = [e for e in unique if e.key not in stored]
        return new, len(envelopes) - len(new)

    def energy_states(self, dev_euis: Sequence[str]
                      ) -> dict[str, dict[int, tuple[int, list[Any]]]]:
        """Each device's channels' latest stored energy counters (for the pipeline after a
        restart: channel -> (time, counters in ENERGY_COLUMNS order)), from its last few
        readings; {} for a device the store does not know. One transaction for all: a hub
        starting on a backlog meets hundreds of devices in its first batch."""
        cols = [wide_column(c, ch) for ch in CHANNELS for c in ENERGY_COLUMNS]
        sql = self._q(f"SELECT ts, {', '.join(cols)} FROM reading WHERE device_id = ? "
                      f"ORDER BY ts DESC LIMIT 5")
        n = len(ENERGY_COLUMNS)
        states: dict[str, dict[int, tuple[int, list[Any]]]] = {e: {} for e in dev_euis}
        with self.transaction("energy state") as cur:
            self._cache_device_ids(cur, [e for e in dev_euis if e not in self._device_ids])
            for eui, out in states.items():
                if (did := self._device_ids.get(eui)) is None:
                    continue
                cur.execute(sql, (did,))
                for row in cur.fetchall():
                    for c, ch in enumerate(CHANNELS):
                        values = list(row[1 + c * n:1 + (c + 1) * n])
                        if ch not in out and any(v is not None for v in values):
                            out[ch] = (int(row[0]), values)
        return states

    def write(self, batch: Batch, *, now: float | None = None) -> WriteResult:
        """Store one pipeline batch in one transaction (see the module note on durability)."""
        now = time.time() if now is None else now
        result = WriteResult(live_devices=set(batch.live_devices))
        with self._write_lock, self._forgetting_new_devices(), \
                self.transaction("ingest", pipelined=True) as cur:
            first_seen: dict[str, float] = {}
            for env, _, _ in batch.uplinks:
                first_seen.setdefault(env.dev_eui, env.received_at)
            ids = self._device_ids_of(cur, first_seen)
            self._many(cur, _SQL_UPLINK, [
                (ids[e.dev_eui], e.received_at, now, e.source, e.f_port, e.f_cnt, e.payload,
                 e.key, kind, note) for e, kind, note in batch.uplinks])
            result.stored = len(batch.uplinks)
            self._write_devices(cur, batch, ids)
            self._write_readings(cur, "reading", batch.readings, ids)
            result.readings = len(batch.readings)
            self._write_history(cur, batch, ids, result)
            self._write_readings(cur, "monthly_reading", batch.monthly_readings, ids)
            self._many(cur, "INSERT INTO energy_reset (device_id, channel, ts, quantity, "
                            "before_value, after_value) VALUES (?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT DO NOTHING",
                       [(ids[r[0]], *r[1:]) for r in batch.energy_resets])
            self._write_dead(cur, batch.dead_letters)
            result.dead_letters = len(batch.dead_letters)
            self._write_alarms(cur, batch, ids, result)
            self._write_answers(cur, batch, ids, result, now)
        return result

    def _write_devices(self, cur: Any, batch: Batch, ids: dict[str, int]) -> None:
        last: dict[str, Envelope] = {}
        for env, _, _ in batch.uplinks:
            if env.dev_eui not in last or env.received_at >= last[env.dev_eui].received_at:
                last[env.dev_eui] = env
        self._touch_devices(cur, [(e.received_at, e.f_cnt, e.source, json.dumps(e.network),
                                   ids[eui]) for eui, e in last.items()])
        for eui, t in batch.joins.items():
            cur.execute(self._q("UPDATE device SET joined_at = ? WHERE id = ?"),
                        (t, self._device_id(cur, eui, t)))
        for eui, info in batch.info.items():
            did = ids.get(eui) or self._device_id(cur, eui, time.time())
            info = dict(info)
            wiring = info.pop("wiring", None)
            if wiring is not None:
                cur.execute(self._q("UPDATE device SET wiring = ? WHERE id = ? AND "
                                    "(wiring IS NULL OR wiring <> ?)"), (wiring, did, wiring))
            if info:
                cur.execute(self._q("SELECT info FROM device WHERE id = ?"), (did,))
                old = json.loads(cur.fetchone()[0] or "{}")
                old.update(info)
                cur.execute(self._q("UPDATE device SET info = ? WHERE id = ?"),
                            (json.dumps(old), did))

    def _touch_devices(self, cur: Any, rows: list[tuple[float, int | None, str, str, int]]
                       ) -> None:
        """Each device's last uplink of a batch — (received_at, f_cnt, source, network JSON,
        device id), a device once — unless a later one is stored already."""
        self._many(cur, "UPDATE device SET last_seen = ?, last_f_cnt = ?, source = ?, "
                        "network = ? WHERE id = ? AND (last_seen IS NULL OR last_seen <= ?)",
                   [(*row, row[0]) for row in rows])

    def _write_history(self, cur: Any, batch: Batch, ids: dict[str, int],
                       result: WriteResult) -> None:
        """Replayed records fill only periods with no live reading: a record within half a
        reporting interval of a live reading (same period, other timestamp) is skipped;
        one with exactly the same timestamp merges (another part of the same record)."""
        if not batch.history_readings:
            return
        records = {(r[0], r[1]) for r in batch.history_readings}
        keep = set()
        for eui, ts in records:
            did = ids[eui]
            tol = self.interval_s(did) // 2
            cur.execute(self._q("SELECT ts FROM reading WHERE device_id = ? AND ts >= ? AND "
                                "ts <= ? AND ts <> ? LIMIT 1"), (did, ts - tol, ts + tol, ts))
            if cur.fetchone() is None:
                keep.add((eui, ts))
        result.history_devices = {eui for eui, _ in records}
        result.history_merged = len(keep)
        result.history_skipped = len(records) - len(keep)
        self._write_readings(cur, "reading", [r for r in batch.history_readings
                                              if (r[0], r[1]) in keep], ids)

    def _write_readings(self, cur: Any, table: str, rows: list[tuple[Any, ...]],
                        ids: dict[str, int]) -> None:
        """Rows (dev_eui, ts, origin|kind, columns, values), one statement per column set."""
        key = "device_id, ts" if table == "reading" else "device_id, kind, ts"
        shapes: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for eui, ts, label, columns, values in rows:
            shapes.setdefault(columns, []).append((ids[eui], ts, label, *values))
        for columns, params in shapes.items():
            self._many(cur, _upsert(table, key, columns), params)

    def _write_dead(self, cur: Any, letters: Iterable[DeadLetter]) -> None:
        self._many(cur, "INSERT INTO dead_letter (received_at, source, topic, dev_eui, reason, "
                        "body) VALUES (?, ?, ?, ?, ?, ?)",
                   [(d.received_at, d.source, d.topic, d.dev_eui, d.reason, d.body)
                    for d in letters])

    def dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store messages that never became an envelope (bad JSON, bad base64...)."""
        with self._write_lock, self.transaction("dead letter") as cur:
            self._write_dead(cur, letters)

    def _alarm_row(self, cur: Any, alarm_id: int) -> dict[str, Any]:
        cur.execute(self._q("SELECT a.*, d.dev_eui FROM alarm a JOIN device d ON d.id = "
                            "a.device_id WHERE a.id = ?"), (alarm_id,))
        row = cur.fetchone()  # first: a pipelined cursor has no description until then
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def _replay_stored(self, cur: Any, did: int, key: str, event: AlarmEvent) -> bool:
        """A replayed alarm packet already stored (True: nothing to do), or older than the
        newest packet of its alarm (kept in that alarm's history; True); False: apply it."""
        cur.execute(self._q(
            "SELECT 1 FROM alarm_event e JOIN alarm a ON a.id = e.alarm_id WHERE "
            "a.device_id = ? AND a.alarm_key = ? AND e.alarm_type = ? AND e.ts >= ? AND "
            "e.ts <= ? LIMIT 1"), (did, key, event.alarm_type,
                                   event.time - alarm_rules.REPLAY_MATCH_S,
                                   event.time + alarm_rules.REPLAY_MATCH_S))
        if cur.fetchone() is not None:
            return True
        cur.execute(self._q("SELECT id FROM alarm WHERE device_id = ? AND alarm_key = ? AND "
                            "last_at > ? ORDER BY last_at DESC LIMIT 1"),
                    (did, key, event.time))
        newer = cur.fetchone()
        if newer is None:
            return False
        cur.execute(self._q("INSERT INTO alarm_event (alarm_id, ts, alarm_type, value) "
                            "VALUES (?, ?, ?, ?)"),
                    (int(newer[0]), event.time, event.alarm_type, event.value))
        return True

    def _write_alarms(self, cur: Any, batch: Batch, ids: dict[str, int],
                      result: WriteResult) -> None:
        for event in batch.alarms:
            did = ids[event.dev_eui]
            s = alarm_rules.step(event.item, event.alarm_type, event.channel)
            if event.replayed and self._replay_stored(cur, did, s.key, event):
                continue
            cur.execute(self._q("SELECT id FROM alarm WHERE device_id = ? AND alarm_key = ? AND "
                                "status = 'active' ORDER BY id DESC LIMIT 1"), (did, s.key))
            row = cur.fetchone()
            change = "raised"
            if s.action == "raise" and row is not None:
                alarm_id, change = int(row[0]), "repeated"
                cur.execute(self._q("UPDATE alarm SET count = count + 1, last_at = ?, "
                                    "last_value = ? WHERE id = ?"),
                            (event.time, event.value, alarm_id))
            elif s.action == "clear" and row is not None:
                alarm_id, change = int(row[0]), "dismissed"
                cur.execute(self._q("UPDATE alarm SET status = 'dismissed', cleared_at = ?, "
                                    "cleared_by = 'device', last_at = ?, last_value = ? "
                                    "WHERE id = ?"), (event.time, event.time, event.value,
                                                      alarm_id))
            else:
                dismissed = s.action == "clear"
                change = "dismissed" if dismissed else "raised"
                alarm_id = self._insert_id(
                    cur, "INSERT INTO alarm (device_id, alarm_key, item, channel, condition, "
                    "status, first_at, last_at, cleared_at, cleared_by, count, last_value) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                    (did, s.key, event.item, event.channel, s.condition,
                     "dismissed" if dismissed else "active", event.time, event.time,
                     event.time if dismissed else None, "device" if dismissed else None,
                     event.value))
            cur.execute(self._q("INSERT INTO alarm_event (alarm_id, ts, alarm_type, value) "
                                "VALUES (?, ?, ?, ?)"),
                        (alarm_id, event.time, event.alarm_type, event.value))
            result.alarm_changes.append({**self._alarm_row(cur, alarm_id), "change": change})
        # a power failure ends when the device is heard again
        if self._power_failed is None:
            cur.execute("SELECT DISTINCT device_id FROM alarm WHERE status = 'active' AND "
                        "condition = 'power_failure'")
            self._power_failed = {int(r[0]) for r in cur.fetchall()}
        self._power_failed |= {ids[e.dev_eui] for e in batch.alarms
                               if e.alarm_type == "power_failure"}
        if not self._power_failed:
            return
        heard: dict[int, float] = {}
        for env, _, _ in batch.uplinks:
            did = ids[env.dev_eui]
            if did in self._power_failed:
                heard[did] = max(heard.get(did, 0.0), env.received_at)
        for did, t in heard.items():
            cur.execute(self._q("SELECT id FROM alarm WHERE device_id = ? AND status = "
                                "'active' AND condition = 'power_failure' AND last_at <= ?"),
                        (did, t - alarm_rules.POWER_RESTORED_AFTER_S))
            for (alarm_id,) in cur.fetchall():
                cur.execute(self._q("UPDATE alarm SET status = 'dismissed', cleared_at = ?, "
                                    "cleared_by = 'power restored' WHERE id = ?"), (t, alarm_id))
                result.alarm_changes.append({**self._alarm_row(cur, alarm_id),
                                             "change": "dismissed"})
                self._power_failed.discard(did)

    # -- configuration shadow and downlink answers --------------------------------------------

    def _write_answers(self, cur: Any, batch: Batch, ids: dict[str, int], result: WriteResult,
                       now: float) -> None:
        if self._awaiting is None:
            cur.execute("SELECT DISTINCT device_id FROM downlink WHERE status = 'sent'")
            self._awaiting = {int(r[0]) for r in cur.fetchall()}
        for rep in batch.configs:
            did = ids[rep.dev_eui]
            value = json.dumps(rep.value, sort_keys=True)
            cur.execute(self._q("INSERT INTO config (device_id, setting, reported, reported_at) "
                                "VALUES (?, ?, ?, ?) ON CONFLICT (device_id, setting) DO UPDATE "
                                "SET reported = excluded.reported, reported_at = "
                                "excluded.reported_at"), (did, rep.setting, value, rep.time))
            cur.execute(self._q("INSERT INTO config_history (device_id, setting, ts, side, "
                                "value) VALUES (?, ?, ?, 'reported', ?)"),
                        (did, rep.setting, rep.time, value))
            if rep.setting == "61":
                self._set_interval(cur, did, rep.value)
            self._answer(cur, did, rep.time, result, setting=rep.setting)
        for rep in batch.replies:
            self._answer(cur, ids[rep.dev_eui], rep.time, result, reply=rep.setting,
                         code=rep.result)
        for eui in batch.live_devices:  # every report: only ask where a downlink waits
            if ids[eui] in self._awaiting:
                self._answer(cur, ids[eui], now, result, report=True)
        for eui in {r[0] for r in batch.history_readings}:
            self._answer(cur, ids[eui], now, result, history=True)

    def _set_interval(self, cur: Any, did: int, value: dict[str, Any]) -> None:
        seconds = value.get("seconds") or 60 * int(value.get("minutes") or 0)
        if seconds:
            self._intervals[did] = int(seconds)
            cur.execute(self._q("UPDATE device SET reporting_interval_s = ? WHERE id = ?"),
                        (int(seconds), did))

    def _answer(self, cur: Any, did: int, t: float, result: WriteResult, *,
                reply: str | None = None, code: str = "success", setting: str | None = None,
                report: bool = False, history: bool = False) -> None:
        """Give one device answer to the oldest sent downlink that waits for it."""
        cur.execute(self._q("SELECT id, expects, result, params FROM downlink WHERE device_id = "
                            "? AND status = 'sent' ORDER BY id"), (did,))
        waiting = cur.fetchall()
        if not waiting and self._awaiting is not None:
            self._awaiting.discard(did)
        for dl_id, expects_text, result_text, params_text in waiting:
            expects = json.loads(expects_text)
            results = json.loads(result_text or "{}")
            token = next((tok for tok in expects if tok not in results and dl.matches(
                tok, reply=reply, setting=setting, report=report, history=history)), None)
            if token is None:
                continue
            results[token] = code
            status = "sent"
            if code != "success":
                status = "failed"
            elif all(tok in results for tok in expects):
                status = "confirmed"
            cur.execute(self._q("UPDATE downlink SET result = ?, status = ?, done_at = ? "
                                "WHERE id = ?"),
                        (json.dumps(results), status, t if status != "sent" else None, dl_id))
            if token.startswith("ef:") and code == "success":
                written = json.loads(params_text).get("settings", {})
                if token[3:] in written:
                    value = json.dumps(written[token[3:]], sort_keys=True)
                    cur.execute(self._q("UPDATE config SET reported = ?, reported_at = ? WHERE "
                                        "device_id = ? AND setting = ?"),
                                (value, t, did, token[3:]))
                    cur.execute(self._q("INSERT INTO config_history (device_id, setting, ts, "
                                        "side, value) VALUES (?, ?, ?, 'reported', ?)"),
                                (did, token[3:], t, value))
                    if token[3:] == "61":
                        self._set_interval(cur, did, written["61"])
            if status != "sent":
                result.downlink_changes.append({"id": dl_id, "device_id": did,
                                                "status": status, "result": results})
            return

    # -- downlinks ----------------------------------------------------------------------------

    def create_downlink(self, dev_eui: str, command: str, params: dict[str, Any],
                        downlink: dl.Downlink, *, created_by: str, f_port: int = 85,
                        max_attempts: int = 3, now: float | None = None) -> dict[str, Any]:
        """Queue a built downlink; record the desired configuration it writes."""
        now = time.time() if now is None else now
        settings = dl.settings_written(downlink)
        with self._write_lock, self.transaction("create downlink") as cur:
            did = self._device_id(cur, dev_eui, now)
            dl_id = self._insert_id(
                cur, "INSERT INTO downlink (device_id, created_at, created_by, command, params, "
                "payload, f_port, expects, status, attempts, max_attempts) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
                (did, now, created_by, command, json.dumps({"params": params,
                                                            "settings": settings}),
                 downlink.payload, f_port, json.dumps(dl.expects(downlink)), max_attempts))
            for setting, value in settings.items():
                text = json.dumps(value, sort_keys=True)
                cur.execute(self._q(
                    "INSERT INTO config (device_id, setting, desired, desired_at, "
                    "desired_downlink) VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, setting) "
                    "DO UPDATE SET desired = excluded.desired, desired_at = excluded.desired_at, "
                    "desired_downlink = excluded.desired_downlink"),
                    (did, setting, text, now, dl_id))
                cur.execute(self._q("INSERT INTO config_history (device_id, setting, ts, side, "
                                    "value) VALUES (?, ?, ?, 'desired', ?)"),
                            (did, setting, now, text))
        return self.downlink(dl_id)

    def downlink(self, dl_id: int) -> dict[str, Any]:
        rows = self.query_dicts("SELECT dl.*, d.dev_eui FROM downlink dl JOIN device d ON "
                                "d.id = dl.device_id WHERE dl.id = ?", (dl_id,))
        if not rows:
            raise KeyError(dl_id)
        return _downlink_view(rows[0])

    def downlinks(self, *, dev_eui: str | None = None, status: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT dl.*, d.dev_eui FROM downlink dl JOIN device d ON d.id = dl.device_id"
        where, params = _where(("d.dev_eui = ?", dev_eui), ("dl.status = ?", status))
        rows = self.query_dicts(f"{sql}{where} ORDER BY dl.id DESC LIMIT ?", (*params, limit))
        return [_downlink_view(r) for r in rows]

    def due_downlinks(self, now: float, timeout_s: float) -> tuple[list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
        """(downlinks to send now: queued ones and sent ones whose answer is overdue with
        attempts left; downlinks that just timed out). Those with nothing to wait for and
        already sent stay sent. A downlink that could not be handed to the network (broker
        away, no downlink path yet) times out when all its attempts' time has passed since
        it was created: retries are bounded whatever fails."""
        to_send, timed_out = [], []
        with self._write_lock, self.transaction("due downlinks") as cur:
            cur.execute(self._q(
                "SELECT dl.id, dl.status, dl.attempts, dl.max_attempts, dl.created_at, "
                "dl.expects FROM downlink dl WHERE dl.status = 'queued' OR "
                "(dl.status = 'sent' AND dl.sent_at <= ?)"), (now - timeout_s,))
            for dl_id, status, attempts, max_attempts, created_at, expects in cur.fetchall():
                if status == "queued" and created_at > now - timeout_s * max_attempts:
                    to_send.append(dl_id)
                elif status == "queued":
                    cur.execute(self._q(
                        "UPDATE downlink SET status = 'timed_out', done_at = ?, result = ? "
                        "WHERE id = ?"), (now, json.dumps(
                            {"network": f"not handed to the network within "
                                        f"{timeout_s * max_attempts:.0f} s"}), dl_id))
                    timed_out.append(dl_id)
                elif json.loads(expects) == []:
                    continue
                elif attempts < max_attempts:
                    to_send.append(dl_id)
                else:
                    cur.execute(self._q("UPDATE downlink SET status = 'timed_out', done_at = ? "
                                        "WHERE id = ?"), (now, dl_id))
                    timed_out.append(dl_id)
        return [self.downlink(i) for i in to_send], [self.downlink(i) for i in timed_out]

    def mark_sent(self, dl_id: int, now: float, reference: str | None = None) -> None:
        with self._write_lock, self.transaction("downlink sent") as cur:
            cur.execute(self._q("UPDATE downlink SET status = 'sent', attempts = attempts + 1, "
                                "sent_at = ?, reference = ? WHERE id = ? AND status IN "
                                "('queued', 'sent') RETURNING device_id"),
                        (now, reference, dl_id))
            row = cur.fetchone()
            if row is not None and self._awaiting is not None:
                self._awaiting.add(int(row[0]))

    def mark_failed(self, dl_id: int, now: float, reason: str) -> None:
        with self._write_lock, self.transaction("downlink failed") as cur:
            cur.execute(self._q("UPDATE downlink SET status = 'failed', done_at = ?, result = ? "
                                "WHERE id = ? AND status IN ('queued', 'sent')"),
                        (now, json.dumps({"network": reason}), dl_id))

    def config_shadow(self, dev_eui: str) -> list[dict[str, Any]]:
        """Per setting: desired (what a user asked), reported (what the device confirmed), and
        state: in_sync, pending (desired not confirmed yet), failed, or reported_only."""
        rows = self.query_dicts(
            "SELECT c.setting, c.desired, c.desired_at, c.reported, c.reported_at, "
            "dl.status AS downlink_status, dl.id AS downlink_id, dl.result AS downlink_result "
            "FROM config c JOIN device d ON d.id = c.device_id LEFT JOIN downlink dl ON dl.id = "
            "c.desired_downlink WHERE d.dev_eui = ? ORDER BY c.setting", (dev_eui,))
        for r in rows:
            for k in ("desired", "reported", "downlink_result"):
                r[k] = json.loads(r[k]) if r[k] else None
            if r["desired"] is None:
                r["state"] = "reported_only"
            elif r["desired"] == r["reported"]:
                r["state"] = "in_sync"
            elif r["downlink_status"] in ("failed", "timed_out"):
                r["state"] = r["downlink_status"]
            else:
                r["state"] = "pending"
        return rows

    # -- registry -----------------------------------------------------------------------------

    def update_device(self, dev_eui: str, *, name: str | None = None, site: str | None = None,
                      tenant: str | None = None,
                      channels: dict[int, dict[str, str | None]] | None = None) -> None:
        """Set the registry fields given (None leaves a field as it is)."""
        with self._write_lock, self.transaction("update device") as cur:
            did = self._device_id(cur, dev_eui, time.time())
            for column, value in (("name", name), ("site", site), ("tenant", tenant)):
                if value is not None:
                    cur.execute(self._q(f"UPDATE device SET {column} = ? WHERE id = ?"),
                                (value, did))
            for ch, fields in (channels or {}).items():
                cur.execute(self._q("INSERT INTO channel (device_id, channel) VALUES (?, ?) "
                                    "ON CONFLICT (device_id, channel) DO NOTHING"), (did, ch))
                for column in ("circuit", "tenant"):
                    if fields.get(column) is not None:
                        cur.execute(self._q(f"UPDATE channel SET {column} = ? WHERE "
                                            f"device_id = ? AND channel = ?"),
                                    (fields[column], did, ch))

    def devices(self) -> list[dict[str, Any]]:
        rows = self.query_dicts(
            "SELECT d.*, (SELECT count(*) FROM alarm a WHERE a.device_id = d.id AND a.status = "
            "'active') AS active_alarms FROM device d ORDER BY d.dev_eui")
        return [_device_view(r) for r in rows]

    def device(self, dev_eui: str) -> dict[str, Any] | None:
        rows = self.query_dicts(
            "SELECT d.*, (SELECT count(*) FROM alarm a WHERE a.device_id = d.id AND a.status = "
            "'active') AS active_alarms FROM device d WHERE d.dev_eui = ?", (dev_eui,))
        if not rows:
            return None
        out = _device_view(rows[0])
        chans = self.query_dicts("SELECT channel, circuit, tenant FROM channel WHERE "
                                 "device_id = ? ORDER BY channel", (rows[0]["id"],))
        named = {c["channel"]: c for c in chans}
        out["channels"] = [{"channel": ch, "circuit": None, "tenant": None,
                            **named.get(ch, {})} for ch in range(1, 13)]
        # each channel's CT, from its group's current-interface setting (67-6a): what the
        # device confirmed, else what was asked of it (ct_confirmed False)
        shadow = {r["setting"]: r for r in self.config_shadow(dev_eui)
                  if r["setting"] in dl.CURRENT_INTERFACE_SETTINGS}
        for g, setting in enumerate(dl.CURRENT_INTERFACE_SETTINGS):
            r = shadow.get(setting, {})
            value = r.get("reported") or r.get("desired") or {}
            for k in range(1, 4):
                out["channels"][3 * g + k - 1].update(
                    ct_range=value.get(f"ct_range_{k}"), direction=value.get(f"direction_{k}"),
                    ct_confirmed=bool(r.get("reported")) if value else None)
        return out

    def channels(self) -> dict[tuple[str, int], dict[str, Any]]:
        """(dev_eui, channel) -> {"circuit", "tenant"} of every named channel."""
        return {(r[0], int(r[1])): {"circuit": r[2], "tenant": r[3]} for r in self.query(
            "SELECT d.dev_eui, c.channel, c.circuit, c.tenant FROM channel c JOIN device d ON "
            "d.id = c.device_id", (), "channels")}

    # -- tokens -------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, token: str | None = None) -> str:
        """A new API token for `name` (replacing its old one), returned once and stored
        hashed; `token` sets its value (an operator-chosen admin token)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if token is not None and len(token) < 16:
            raise ValueError("a token must have at least 16 characters")
        token = token or f"cth01_{secrets.token_urlsafe(32)}"
        with self._write_lock, self.transaction("create token") as cur:
            cur.execute(self._q("INSERT INTO api_token (name, role, token_hash, created_at) "
                                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                                "role = excluded.role, token_hash = excluded.token_hash, "
                                "created_at = excluded.created_at"),
                        (name, role, hash_token(token), time.time()))
        return token

    def token_role(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a valid token, else None."""
        rows = self.query("SELECT name, role FROM api_token WHERE token_hash = ?",
                          (hash_token(token),), "check token")
        return (rows[0][0], rows[0][1]) if rows else None

    def token_used(self, name: str, now: float | None = None) -> None:
        """Record that token `name` was used (`api_token.last_used_at`): written at most once
        every TOKEN_TOUCH_S per token, not on every request."""
        now = time.time() if now is None else now
        last = self._token_used.get(name)
        if last is not None and now - last < TOKEN_TOUCH_S:
            return
        self._token_used[name] = now
        with self._write_lock, self.transaction("token used") as cur:
            cur.execute(self._q("UPDATE api_token SET last_used_at = ? WHERE name = ?"),
                        (now, name))

    # -- login sessions -----------------------------------------------------------------------

    def create_session(self, token: str, now: float | None = None
                       ) -> tuple[str, str, str] | None:
        """Log in with an API token: (session id, token name, role), or None for an unknown
        token. The id is random, returned once and stored hashed; the session lasts
        SESSION_S after its last use, and ends when its token is replaced."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        with self._write_lock, self.transaction("create session") as cur:
            cur.execute(self._q("SELECT id, name, role, token_hash FROM api_token WHERE "
                                "token_hash = ?"), (hash_token(token),))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(self._q("DELETE FROM session WHERE expires_at <= ?"), (now,))
            cur.execute(self._q("INSERT INTO session (id_hash, token_id, token_hash, "
                                "created_at, expires_at) VALUES (?, ?, ?, ?, ?)"),
                        (hash_token(session_id), row[0], row[3], now, now + SESSION_S))
        return session_id, row[1], row[2]

    def session_caller(self, session_id: str, now: float | None = None
                       ) -> tuple[str, str] | None:
        """(token name, role) of a live session, else None. Using a session extends it to
        SESSION_S from now (written at most once every SESSION_TOUCH_S)."""
        now = time.time() if now is None else now
        rows = self.query("SELECT t.name, t.role, s.expires_at FROM session s JOIN api_token t "
                          "ON t.id = s.token_id AND t.token_hash = s.token_hash WHERE "
                          "s.id_hash = ? AND s.expires_at > ?", (hash_token(session_id), now),
                          "check session")
        if not rows:
            return None
        name, role, expires_at = rows[0]
        if expires_at - now < SESSION_S - SESSION_TOUCH_S:
            with self._write_lock, self.transaction("extend session") as cur:
                cur.execute(self._q("UPDATE session SET expires_at = ? WHERE id_hash = ?"),
                            (now + SESSION_S, hash_token(session_id)))
        return name, role

    def delete_session(self, session_id: str) -> None:
        with self._write_lock, self.transaction("delete session") as cur:
            cur.execute(self._q("DELETE FROM session WHERE id_hash = ?"),
                        (hash_token(session_id),))

    # -- tariffs and configuration templates --------------------------------------------------

    def tariffs(self) -> list[dict[str, Any]]:
        """Every stored tariff document (with its `id`), by name."""
        return [{**json.loads(spec), "id": int(i)} for i, spec in self.query(
            "SELECT id, spec FROM tariff ORDER BY name", (), "tariffs")]

    def tariff(self, tariff_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT id, spec FROM tariff WHERE id = ?", (tariff_id,), "tariff")
        return {**json.loads(rows[0][1]), "id": int(rows[0][0])} if rows else None

    def save_tariff(self, doc: dict[str, Any], tariff_id: int | None = None,
                    now: float | None = None) -> dict[str, Any]:
        """Store a (validated) tariff document: a new one, or replace tariff `tariff_id`
        (KeyError if there is none). NameTaken if another tariff has its name."""
        now = time.time() if now is None else now
        doc = {k: v for k, v in doc.items() if k != "id"}
        problem: Exception | None = None  # raised after the transaction has ended
        with self._write_lock, self.transaction("save tariff") as cur:
            if tariff_id is not None:
                cur.execute(self._q("SELECT id FROM tariff WHERE id = ?"), (tariff_id,))
                if cur.fetchone() is None:
                    problem = KeyError(tariff_id)
            cur.execute(self._q("SELECT id FROM tariff WHERE name = ?"), (doc["name"],))
            other = cur.fetchone()
            if problem is None and other is not None and other[0] != tariff_id:
                problem = NameTaken("tariff", doc["name"])
            if problem is None and tariff_id is None:
                tariff_id = self._insert_id(
                    cur, "INSERT INTO tariff (name, spec, created_at, updated_at) VALUES "
                    "(?, ?, ?, ?)", (doc["name"], json.dumps(doc), now, now))
            elif problem is None:
                cur.execute(self._q("UPDATE tariff SET name = ?, spec = ?, updated_at = ? "
                                    "WHERE id = ?"), (doc["name"], json.dumps(doc), now,
                                                      tariff_id))
        if problem is not None:
            raise problem
        return {**doc, "id": tariff_id}

    def delete_tariff(self, tariff_id: int) -> bool:
        with self._write_lock, self.transaction("delete tariff") as cur:
            cur.execute(self._q("DELETE FROM tariff WHERE id = ?"), (tariff_id,))
            return bool(cur.rowcount)

    def templates(self) -> list[dict[str, Any]]:
        """Every configuration template: id, name, settings (typed commands), created_at/by."""
        return [_template_view(r) for r in self.query_dicts(
            "SELECT * FROM config_template ORDER BY name", (), "templates")]

    def template(self, template_id: int) -> dict[str, Any] | None:
        rows = self.query_dicts("SELECT * FROM config_template WHERE id = ?", (template_id,),
                                "template")
        return _template_view(rows[0]) if rows else None

    def create_template(self, name: str, settings: list[dict[str, Any]], *, created_by: str,
                        now: float | None = None) -> dict[str, Any]:
        """Store a template of (validated) commands; NameTaken if the name is in use."""
        now = time.time() if now is None else now
        with self._write_lock, self.transaction("create template") as cur:
            cur.execute(self._q("SELECT id FROM config_template WHERE name = ?"), (name,))
            taken = cur.fetchone() is not None
            if not taken:
                template_id = self._insert_id(
                    cur, "INSERT INTO config_template (name, settings, created_at, "
                    "created_by) VALUES (?, ?, ?, ?)", (name, json.dumps(settings), now,
                                                       created_by))
        if taken:
            raise NameTaken("template", name)
        return {"id": template_id, "name": name, "settings": settings, "created_at": now,
                "created_by": created_by}

    def delete_template(self, template_id: int) -> bool:
        with self._write_lock, self.transaction("delete template") as cur:
            cur.execute(self._q("DELETE FROM config_template WHERE id = ?"), (template_id,))
            return bool(cur.rowcount)

    # -- gaps (backfill bookkeeping) ----------------------------------------------------------

    def reading_times(self, device_id: int, start: int, end: int) -> list[int]:
        return [int(r[0]) for r in self.query(
            "SELECT ts FROM reading WHERE device_id = ? AND ts >= ? AND ts <= ? ORDER BY ts",
            (device_id, start, end), "reading times")]

    def save_gaps(self, device_id: int, gaps: Iterable[tuple[int, int]], now: float) -> None:
        with self._write_lock, self.transaction("save gaps") as cur:
            self._many(cur, "INSERT INTO gap (device_id, start_ts, end_ts, status, found_at, "
                            "attempts) VALUES (?, ?, ?, 'open', ?, 0) ON CONFLICT "
                            "(device_id, start_ts) DO NOTHING",
                       [(device_id, a, b, now) for a, b in gaps])

    def gaps(self, *, device_id: int | None = None, status: str | None = None
             ) -> list[dict[str, Any]]:
        where, params = _where(("g.device_id = ?", device_id), ("g.status = ?", status))
        return self.query_dicts(f"SELECT g.*, d.dev_eui FROM gap g JOIN device d ON d.id = "
                                f"g.device_id{where} ORDER BY g.device_id, g.start_ts", params)

    def set_gap(self, device_id: int, start_ts: int, *, status: str,
                requested_at: float | None = None, attempts_add: int = 0) -> None:
        with self._write_lock, self.transaction("update gap") as cur:
            cur.execute(self._q("UPDATE gap SET status = ?, requested_at = COALESCE(?, "
                                "requested_at), attempts = attempts + ? WHERE device_id = ? "
                                "AND start_ts = ?"),
                        (status, requested_at, attempts_add, device_id, start_ts))

    # -- read side ----------------------------------------------------------------------------

    def alarms(self, *, dev_eui: str | None = None, status: str | None = None,
               item: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        where, params = _where(("d.dev_eui = ?", dev_eui), ("a.status = ?", status),
                               ("a.item = ?", item))
        return self.query_dicts(f"SELECT a.*, d.dev_eui FROM alarm a JOIN device d ON d.id = "
                                f"a.device_id{where} ORDER BY a.last_at DESC LIMIT ?",
                                (*params, limit))

    def acknowledge_alarm(self, alarm_id: int, user: str, now: float | None = None
                          ) -> dict[str, Any] | None:
        """The alarm (None if there is none), with `change` "acknowledged" when this call
        acknowledged it (None when it was acknowledged already: the first one stays)."""
        now = time.time() if now is None else now
        with self._write_lock, self.transaction("acknowledge alarm") as cur:
            cur.execute(self._q("UPDATE alarm SET acknowledged_at = ?, acknowledged_by = ? "
                                "WHERE id = ? AND acknowledged_at IS NULL"),
                        (now, user, alarm_id))
            changed = cur.rowcount == 1
            cur.execute(self._q("SELECT id FROM alarm WHERE id = ?"), (alarm_id,))
            if cur.fetchone() is None:
                return None
            return {**self._alarm_row(cur, alarm_id),
                    "change": "acknowledged" if changed else None}

    def dead_letter_list(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.query_dicts("SELECT * FROM dead_letter ORDER BY id DESC LIMIT ?", (limit,))
        for r in rows:
            body = bytes(r["body"])
            try:
                r["body"] = body.decode("utf-8")
                r["body_encoding"] = "utf-8"
            except UnicodeDecodeError:
                r["body"] = body.hex()
                r["body_encoding"] = "hex"
        return rows

    def readings(self, dev_eui: str, column: str, *, start: int, end: int,
                 channel: int | None = None, points: int = 1000) -> list[dict[str, Any]]:
        """One quantity over [start, end], downsampled to at most `points` buckets (mean,
        min, max and sample count per bucket; the bucket's start time)."""
        did = self.device_id(dev_eui)
        if did is None:
            return []
        rows = self.query(*self.readings_sql(did, column, start=start, end=end,
                                             channel=channel, points=points), "readings")
        return [{"ts": int(r[0]), "mean": r[1], "min": r[2], "max": r[3], "count": int(r[4])}
                for r in rows]

    @staticmethod
    def readings_sql(device_id: int, column: str, *, start: int, end: int,
                     channel: int | None = None, points: int = 1000
                     ) -> tuple[str, tuple[int, ...]]:
        """The query behind `readings` and its parameters (to EXPLAIN it)."""
        if column in CHANNEL_COLUMNS:
            if channel not in CHANNELS:
                raise ValueError(f"{column} is a per-channel quantity: give a channel 1-12")
            column = wide_column(column, channel)
        elif column not in DEVICE_COLUMNS:
            raise ValueError(f"unknown quantity {column!r}")
        bucket = max(1, -(-(end - start + 1) // max(1, points)))
        return (f"SELECT ? + ((ts - ?) / ?) * ? AS t, avg({column}), min({column}), "
                f"max({column}), count({column}) FROM reading WHERE device_id = ? AND "
                f"ts >= ? AND ts <= ? AND {column} IS NOT NULL GROUP BY 1 ORDER BY 1",
                # GROUP BY position: PostgreSQL cannot match `(ts - $2) / $3` to
                # `(ts - $9) / $10` and refuses to group by the expression
                (start, start, bucket, bucket, device_id, start, end))

    # -- energy -------------------------------------------------------------------------------

    def counters(self, *, start: int, end: int, column: str = "imported_active_wh",
                 dev_euis: Sequence[str] | None = None) -> list[Counter]:
        """Each channel's energy counter over [start, end), taken channel by channel: its last
        value in the period, its last value before `start` (else its first value in the
        period), and the counter resets in the period. A channel with no value in the period
        has no Counter (no data is not zero energy).

        Fast for any number of readings: per device it reads the ENERGY_SAMPLE readings at
        each end of the period and the ENERGY_SAMPLE before it (index seeks, no scan). A
        channel missing from those (a report split over two rows, a "no data" value) is sought
        further back, one seek per channel. A channel whose counter is in none of them is taken
        as not metering in the period — the second and third channel of a three-phase group,
        an item the reports do not carry — so a counter that appears only in the middle of the
        period (and not in its first or last readings) is not counted."""
        if column not in ENERGY_COLUMNS:
            raise ValueError(f"{column!r} is not an energy counter")
        where, filt = "", []
        if dev_euis is not None:
            if not dev_euis:
                return []
            cond, filt = self._in("d.dev_eui", dev_euis)
            where = f" WHERE {cond}"
        rows = self.query(_counter_sql(column).replace("/*where*/", where),
                          [*(start, end, start, end, start) * ENERGY_SAMPLE, *filt], "energy")
        resets = self._resets(start, end, column)
        out = []
        for row in rows:
            did, eui, e_far, f_far, b_far = int(row[0]), row[1], row[2], row[3], row[4]
            period_all = e_far is None or f_far is None or f_far >= e_far  # the samples hold
            before_all = b_far is None                                     # every reading
            for k, ch in enumerate(CHANNELS):
                last, first, before = row[5 + 3 * k:8 + 3 * k]
                col = wide_column(column, ch)
                if last is None:
                    if first is None and (period_all or before is None):
                        continue
                    last = self._seek(did, col, start, end, newest=True)
                    if last is None:
                        continue
                base = before
                if base is None and not before_all:
                    base = self._seek(did, col, None, start, newest=True)
                if base is None:
                    base = first if first is not None else self._seek(did, col, start, end,
                                                                      newest=False)
                out.append(Counter(did, eui, ch, float(base), float(last),
                                   resets.get((did, ch), 0.0)))
        return out

    def _resets(self, start: int, end: int, column: str) -> dict[tuple[int, int], float]:
        return {(int(d), int(c)): float(v) for d, c, v in self.query(
            "SELECT device_id, channel, sum(before_value) FROM energy_reset WHERE quantity = ? "
            "AND ts >= ? AND ts < ? GROUP BY device_id, channel", (column, start, end),
            "energy resets")}

    def _seek(self, device_id: int, column: str, lo: int | None, hi: int, *, newest: bool
              ) -> float | None:
        """The newest (or oldest) value of one column in [lo, hi) (lo None: no lower bound)."""
        bound = "" if lo is None else " AND ts >= ?"
        rows = self.query(f"SELECT {column} FROM reading WHERE device_id = ? AND ts < ?{bound} "
                          f"AND {column} IS NOT NULL ORDER BY ts {'DESC' if newest else 'ASC'} "
                          f"LIMIT 1", (device_id, hi) if lo is None else (device_id, hi, lo),
                          "energy seek")
        return float(rows[0][0]) if rows else None

    def energy(self, *, start: int, end: int, column: str = "imported_active_wh",
               dev_euis: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Energy per device and channel over [start, end): each channel's counter in its last
        reading before `end` minus its counter in its last reading before `start` (or its first
        reading in the period, when it has none before), plus what counter resets in the period
        hid (`energy_reset`): a reset restarts the counter from 0, so the counter before it
        (`before_value`) is what the difference lost. Channels (and devices) without a value in
        the period are left out. See `counters` for how the counters are found."""
        return [{"dev_eui": c.dev_eui, "channel": c.channel, "energy": c.energy}
                for c in sorted(self.counters(start=start, end=end, column=column,
                                              dev_euis=dev_euis),
                                key=lambda c: (c.dev_eui, c.channel))]

    def monthly_summaries(self, *, end: int, column: str = "imported_active_wh",
                          dev_euis: Sequence[str] | None = None,
                          tolerance_s: int = SUMMARY_TOLERANCE_S) -> dict[tuple[str, int], float]:
        """The devices' own monthly energy (`monthly_reading`, kind `energy`: each register's
        increase since the previous summary) of the month that ends at `end`: the summary the
        device stamped within `tolerance_s` of `end` (devices make it at local midnight of the
        1st by default). (dev_eui, channel) -> value; channels without one are left out."""
        if column not in ENERGY_COLUMNS:
            raise ValueError(f"{column!r} is not an energy counter")
        cols = ", ".join(f"m.{wide_column(column, ch)}" for ch in CHANNELS)
        cond, params = "", []
        if dev_euis is not None:
            if not dev_euis:
                return {}
            cond, params = self._in("d.dev_eui", dev_euis)
            cond = f" AND {cond}"
        rows = self.query(f"SELECT d.dev_eui, m.ts, {cols} FROM monthly_reading m JOIN device d "
                          f"ON d.id = m.device_id WHERE m.kind = 'energy' AND m.ts >= ? AND "
                          f"m.ts <= ?{cond}", (end - tolerance_s, end + tolerance_s, *params),
                          "monthly summaries")
        best: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            if row[0] not in best or abs(row[1] - end) < abs(best[row[0]][1] - end):
                best[row[0]] = row
        return {(eui, ch): float(v) for eui, row in best.items()
                for ch, v in zip(CHANNELS, row[2:], strict=True) if v is not None}

    def energy_by_week_slot(self, counters: Sequence[Counter], *, start: int, end: int,
                            column: str, offsets: Sequence[tuple[int, int]],
                            edges: Sequence[int]) -> dict[tuple[int, int], dict[int, float]]:
        """Split each counter's energy over [start, end) by slot of the local week.

        `offsets` are the UTC offsets in force ([(from_ts, offset_s)], the first from `start`),
        `edges` the ascending ends of the slots in minutes of the local week (Monday 00:00 =
        0; the last edge is 10080): slot i holds the minutes [edges[i-1], edges[i]). Every
        increase of a counter between two consecutive readings of the channel is given to the
        slot of the later reading's time (the end of the interval it was measured over), so
        the slots add up to the counter's energy. Returns (device_id, channel) -> {slot: Wh}.

        The period is cut into runs of one slot (`tariff.slot_runs`: a month of a weekday
        peak band has ~50); counters only grow, so a run's energy is the counter in the last
        reading before the run's end minus the one before its start, plus what counter resets
        in the run hid. That takes an index seek per device and cut, however many readings
        the month holds (10-minute data cost 6x hourly data when every reading was read). A
        channel without a value in any of the ENERGY_SAMPLE readings before a cut gives that
        run's energy to the next run where its counter is seen, as the reading-by-reading rule
        would give it to the next reading that carries it."""
        if not counters:
            return {}
        cuts, slots = slot_runs(start, end, offsets, edges)
        devices = sorted({c.device_id for c in counters})
        channels = sorted({c.channel for c in counters})
        samples = self._samples_before(devices, cuts, channels, column)
        # per counter: its base, its value at each cut (NaN: not seen), its last value
        row_of, col_of = {d: k for k, d in enumerate(devices)}, {c: k for k, c in
                                                                 enumerate(channels)}
        n, runs = len(counters), len(slots)
        values = np.empty((n, runs + 1))
        values[:, 0] = [c.base for c in counters]
        values[:, -1] = [c.last for c in counters]
        values[:, 1:-1] = samples[[row_of[c.device_id] for c in counters], :,
                                  [col_of[c.channel] for c in counters]]
        hidden = np.zeros((n, runs + 1))  # counter resets, by run (column k + 1: run k)
        index = {(c.device_id, c.channel): k for k, c in enumerate(counters)}
        for did, ch, ts, before in self.query(
                "SELECT device_id, channel, ts, before_value FROM energy_reset WHERE "
                "quantity = ? AND ts >= ? AND ts < ?", (column, start, end), "energy resets"):
            if (k := index.get((int(did), int(ch)))) is not None:
                hidden[k, 1 + bisect_right(cuts, int(ts))] += float(before)
        hidden = np.cumsum(hidden, axis=1)
        # a run's energy is booked where the counter is next seen: its value there minus the
        # last value seen before, plus the resets in between
        seen = ~np.isnan(values)
        last_seen = np.maximum.accumulate(np.where(seen, np.arange(runs + 1), 0), axis=1)
        before = last_seen[:, :-1]
        energy = (values[:, 1:] - np.take_along_axis(values, before, axis=1)
                  + hidden[:, 1:] - np.take_along_axis(hidden, before, axis=1))
        booked = seen[:, 1:]
        by_slot = np.zeros((runs, len(edges)))
        by_slot[np.arange(runs), slots] = 1.0
        sums = np.where(booked, energy, 0.0) @ by_slot
        present = booked.astype(float) @ by_slot > 0
        return {(c.device_id, c.channel): {int(s): float(sums[k, s])
                                           for s in np.flatnonzero(present[k])}
                for k, c in enumerate(counters)}

    def _samples_before(self, device_ids: list[int], cuts: list[int], channels: list[int],
                        column: str) -> np.ndarray:
        """[device, cut, channel] (in the order given) -> the channel's counter in the newest
        of the device's ENERGY_SAMPLE readings before that cut that has one, NaN for none:
        one seek per device and cut for the newest reading, joined by its key; the older
        ones are read only for a channel it lacks."""
        out = np.full((len(device_ids), len(cuts), len(channels)), np.nan)
        if not cuts:
            return out
        cols = [wide_column(column, ch) for ch in channels]
        # a few devices: only theirs; many (a fleet's report): all, the others ignored below
        cond, params = self._in("d.id", device_ids) if len(device_ids) <= 500 else ("1 = 1", [])
        older = [[f"(SELECT x.{c} FROM reading x WHERE x.device_id = k.id AND x.ts < k.t "
                  f"ORDER BY x.ts DESC LIMIT 1 OFFSET {n})" for n in range(1, ENERGY_SAMPLE)]
                 for c in cols]
        values = ", ".join(f"COALESCE(r.{c}, {', '.join(o)})"
                           for c, o in zip(cols, older, strict=True))
        cut_rows = ", ".join(f"({k}, {int(t)})" for k, t in enumerate(cuts))
        sql = (f"WITH b (j, t) AS (VALUES {cut_rows}), k AS MATERIALIZED ("
               f"SELECT d.id, b.j, b.t, (SELECT r.ts FROM reading r WHERE r.device_id = d.id "
               f"AND r.ts < b.t ORDER BY r.ts DESC LIMIT 1) AS ts FROM device d CROSS JOIN b "
               f"WHERE {cond}) SELECT k.id, k.j, {values} FROM k JOIN reading r ON "
               f"r.device_id = k.id AND r.ts = k.ts")
        with self.transaction("energy by slot") as cur:
            self._join_by_index(cur)
            cur.execute(self._q(sql), params)
            rows = cur.fetchall()
        row_of = {d: k for k, d in enumerate(device_ids)}
        rows = [(row_of[r[0]], *r[1:]) for r in rows if r[0] in row_of]
        if rows:
            table = np.array(rows, dtype=float)  # NULL -> NaN
            out[table[:, 0].astype(int), table[:, 1].astype(int)] = table[:, 2:]
        return out

    def _join_by_index(self, cur: Any) -> None:
        """Make this transaction join a few thousand keys to `reading` by index lookups."""

    # -- latest values and the fleet overview -------------------------------------------------

    def latest(self, dev_eui: str) -> dict[str, Any] | None:
        """A device's newest values: every column's latest value among its readings of the
        last two reporting intervals (a report split over two rows is whole again). None for
        an unknown device; `ts` None and no values when it has no reading."""
        rows = self.query("SELECT id, COALESCE(reporting_interval_s, ?) FROM device WHERE "
                          "dev_eui = ?", (DEFAULT_INTERVAL_S, dev_eui), "latest")
        if not rows:
            return None
        did, interval = int(rows[0][0]), int(rows[0][1])
        cols = ", ".join(READING_COLUMNS)
        recent = self.query(f"SELECT ts, {cols} FROM reading WHERE device_id = ? AND ts > "
                            f"(SELECT max(ts) FROM reading WHERE device_id = ?) - ? "
                            f"ORDER BY ts DESC", (did, did, 2 * interval), "latest")
        values: dict[str, Any] = {}
        for row in recent:
            for name, value in zip(READING_COLUMNS, row[1:], strict=True):
                if value is not None and name not in values:
                    values[name] = value
        return {"dev_eui": dev_eui, "ts": int(recent[0][0]) if recent else None,
                "values": values}

    def overview(self, *, now: float, day_start: int, window_s: int = 86400
                 ) -> list[dict[str, Any]]:
        """One row per device for the fleet view: registry, last_seen, joined_at,
        reporting interval, active alarms, `power_w` (the sum of every channel's latest active
        power, readings of the last two reporting intervals merged), `today_wh` (imported
        active energy since `day_start`, None without data) and completeness of the last
        `window_s` (readings stored against those expected)."""
        since = int(now) - window_s
        rows = self.query_dicts(_OVERVIEW_SQL, (since, int(now), since, int(now)), "overview")
        today: dict[str, float] = {}
        for c in self.counters(start=day_start, end=int(now) + 1):
            today[c.dev_eui] = today.get(c.dev_eui, 0.0) + c.energy
        out = []
        for r in rows:
            interval = int(r["interval_s"])
            powers = [r[f"p{ch}"] for ch in CHANNELS if r[f"p{ch}"] is not None]
            first = r["first_in_window"]
            expected = max(1, (int(now) - max(since, first)) // interval + 1) if first else 0
            out.append({
                "dev_eui": r["dev_eui"], "name": r["name"], "site": r["site"],
                "tenant": r["tenant"], "last_seen": r["last_seen"],
                "joined_at": r["joined_at"], "interval_s": interval,
                "active_alarms": int(r["active_alarms"]),
                "last_reading_ts": r["l0"],
                "power_w": float(sum(powers)) if powers else None,
                "today_wh": today.get(r["dev_eui"]),
                "readings_in_window": int(r["readings"]),
                "completeness": min(1.0, int(r["readings"]) / expected) if expected else None})
        return out

    def completeness(self, *, start: int, end: int) -> list[dict[str, Any]]:
        """Per device: readings stored in [start, end] against the number its reporting
        interval implies (counted from its first reading when that is later than `start`)."""
        rows = self.query(
            "SELECT d.dev_eui, d.id, count(r.ts), min(r.ts), max(r.ts) FROM device d LEFT JOIN "
            "reading r ON r.device_id = d.id AND r.ts >= ? AND r.ts <= ? GROUP BY d.dev_eui, "
            "d.id ORDER BY d.dev_eui", (start, end), "completeness")
        out = []
        for eui, did, count, first, _last in rows:
            interval = self.interval_s(int(did))
            span_start = max(start, first) if first is not None else end
            expected = max(1, (end - span_start) // interval + 1) if first is not None else 0
            out.append({"dev_eui": eui, "readings": int(count), "expected": int(expected),
                        "interval_s": interval,
                        "completeness": min(1.0, count / expected) if expected else None})
        return out


def _where(*conds: tuple[str, Any]) -> tuple[str, list[Any]]:
    parts = [(c, v) for c, v in conds if v is not None]
    if not parts:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in parts), [v for _, v in parts]


def _device_view(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["network"] = json.loads(r["network"]) if r.get("network") else {}
    r["info"] = json.loads(r["info"]) if r.get("info") else {}
    r["reporting_interval_s"] = r.get("reporting_interval_s") or DEFAULT_INTERVAL_S
    return r


def _downlink_view(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["payload_hex"] = bytes(r.pop("payload")).hex()
    params = json.loads(r.pop("params"))
    r["params"] = params.get("params", {})
    r["settings"] = params.get("settings", {})
    r["expects"] = json.loads(r["expects"])
    r["result"] = json.loads(r["result"]) if r["result"] else None
    return r


def _template_view(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "settings": json.loads(r["settings"])}


def _coalesce_rows(column: str, joined: str, times: Sequence[str], extra: str = "") -> str:
    """The first non-NULL `column` among device k.id's readings: the one joined as `joined`,
    then those at `times` (columns of k), newest first — one primary-key lookup each,
    evaluated only while no value is found."""
    return f"COALESCE({joined}.{column}, " + ", ".join(
        f"(SELECT r.{column} FROM reading r WHERE r.device_id = k.id AND r.ts = k.{t}{extra})"
        for t in times) + ")"


_SIDES = (("e", "re"), ("f", "rf"), ("b", "rb"))  # last in, first in, last before the period


@lru_cache(maxsize=16)
def _counter_sql(column: str) -> str:
    """Per device (`/*where*/` filters them): the times of its ENERGY_SAMPLE last and first
    readings in [start, end) and its last ones before start, then per channel its counter in
    the newest (oldest) of them that has one. The first of each three is joined by its key;
    the others are looked up only when it has no value. MATERIALIZED keeps each seek to one
    run (SQLite >= 3.35, PostgreSQL >= 12). Only the key joins and scalar subqueries: both
    engines run them as index lookups per device (a join on a range of times made PostgreSQL
    hash the whole table)."""
    seeks = []
    for k in range(ENERGY_SAMPLE):
        seeks += [f"(SELECT r.ts FROM reading r WHERE r.device_id = d.id AND r.ts >= ? AND "
                  f"r.ts < ? ORDER BY r.ts DESC LIMIT 1 OFFSET {k}) AS e{k}",
                  f"(SELECT r.ts FROM reading r WHERE r.device_id = d.id AND r.ts >= ? AND "
                  f"r.ts < ? ORDER BY r.ts LIMIT 1 OFFSET {k}) AS f{k}",
                  f"(SELECT r.ts FROM reading r WHERE r.device_id = d.id AND r.ts < ? "
                  f"ORDER BY r.ts DESC LIMIT 1 OFFSET {k}) AS b{k}"]
    values = [_coalesce_rows(wide_column(column, ch), alias,
                             [f"{side}{k}" for k in range(1, ENERGY_SAMPLE)])
              for ch in CHANNELS for side, alias in _SIDES]
    joins = "".join(f" LEFT JOIN reading {alias} ON {alias}.device_id = k.id AND "
                    f"{alias}.ts = k.{side}0" for side, alias in _SIDES)
    far = ENERGY_SAMPLE - 1
    return (f"WITH k AS MATERIALIZED (SELECT d.id, d.dev_eui, {', '.join(seeks)} FROM "
            f"device d/*where*/) SELECT k.id, k.dev_eui, k.e{far}, k.f{far}, k.b{far}, "
            f"{', '.join(values)} FROM k{joins} WHERE k.e0 IS NOT NULL")


def _overview_sql() -> str:
    latest = [f"(SELECT r.ts FROM reading r WHERE r.device_id = d.id ORDER BY r.ts DESC "
              f"LIMIT 1 OFFSET {k}) AS l{k}" for k in range(ENERGY_SAMPLE)]
    power = [_coalesce_rows(wide_column("active_power_w", ch), "rl",
                            [f"l{k}" for k in range(1, ENERGY_SAMPLE)],
                            " AND r.ts > k.l0 - 2 * k.interval_s") + f" AS p{ch}"
             for ch in CHANNELS]
    return (f"WITH k AS MATERIALIZED (SELECT d.id, d.dev_eui, d.name, d.site, d.tenant, "
            f"d.last_seen, d.joined_at, COALESCE(d.reporting_interval_s, {DEFAULT_INTERVAL_S}) "
            f"AS interval_s, (SELECT count(*) FROM alarm a WHERE a.device_id = d.id AND "
            f"a.status = 'active') AS active_alarms, (SELECT count(*) FROM reading r WHERE "
            f"r.device_id = d.id AND r.ts >= ? AND r.ts <= ?) AS readings, (SELECT min(r.ts) "
            f"FROM reading r WHERE r.device_id = d.id AND r.ts >= ? AND r.ts <= ?) AS "
            f"first_in_window, {', '.join(latest)} FROM device d) "
            f"SELECT k.*, {', '.join(power)} FROM k LEFT JOIN reading rl ON "
            f"rl.device_id = k.id AND rl.ts = k.l0 ORDER BY k.dev_eui")


_OVERVIEW_SQL = _overview_sql()


# --- engines -------------------------------------------------------------------------------------

class SqliteStore(Store):
    """SQLite in WAL mode; one connection per thread."""

    engine = "sqlite"

    def __init__(self, path: str, *, durable: bool = False, busy_timeout_s: float = 10.0
                 ) -> None:
        super().__init__()
        self.path = path
        self.durable = durable
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s,
                                   check_same_thread=False, isolation_level="DEFERRED")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc) or "disk I/O" in str(exc))

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


class PostgresStore(Store):
    """PostgreSQL through psycopg 3 and a connection pool (one connection per thread in use)."""

    engine = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8) -> None:
        super().__init__()
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self._types: dict[str, dict[str, str]] = {}  # table -> column -> PostgreSQL type
        # INSERT ... VALUES text -> (its array form, one Python cast per column)
        self._arrays: dict[str, tuple[str, list[Callable[[Any], Any]]]] = {}
        self.url = url
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                   kwargs={"autocommit": False}, configure=_configure)
        try:
            self.pool.open(wait=True, timeout=10)
        except Exception as exc:  # psycopg_pool.PoolTimeout: the server is not there
            self.pool.close()
            raise StoreError(f"connect {_redact(url)}", exc, transient=True) from exc

    @contextmanager
    def transaction(self, operation: str, *, pipelined: bool = False) -> Iterator[Any]:
        try:
            with self.pool.connection() as conn, \
                    conn.pipeline() if pipelined else nullcontext(), conn.cursor() as cur:
                yield cur
        except self._psycopg.Error as exc:
            raise StoreError(operation, exc, transient=self._transient(exc)) from exc
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise StoreError(operation, exc, transient=True) from exc
            raise

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error,)

    def _many(self, cur: Any, sql: str, rows: list[Sequence[Any]]) -> None:
        """Many rows of one INSERT as one statement over arrays (`unnest`): executemany costs
        a statement per row, 10x slower at ingest batch sizes. Rows that would hit the same
        conflict key twice (which one statement may not do) keep the row-by-row form."""
        shape = _insert_shape(sql) if len(rows) > 1 else None
        if shape is None or (shape.key is not None and len(
                {tuple(r[k] for k in shape.key) for r in rows}) < len(rows)):
            super()._many(cur, sql, rows)
            return
        statement = self._arrays.get(sql)
        if statement is None:
            types = self._column_types(cur, shape.table)
            unnest = ", ".join(f"%b::{types[c]}[]" for c in shape.columns)  # binary arrays
            statement = self._arrays[sql] = (
                f"INSERT INTO {shape.table} ({', '.join(shape.columns)}) SELECT * FROM "
                f"unnest({unnest}){shape.rest}", [_CASTS[types[c]] for c in shape.columns])
        text, casts = statement
        cur.execute(text, [[None if v is None else cast(v) for v in values]
                           for values, cast in zip(zip(*rows, strict=True), casts, strict=True)])

    def _touch_devices(self, cur: Any, rows: list[tuple[float, int | None, str, str, int]]
                       ) -> None:
        if not rows:
            return
        at, f_cnt, source, network, did = (list(c) for c in zip(*rows, strict=True))
        cur.execute("UPDATE device AS d SET last_seen = v.at, last_f_cnt = v.f_cnt, "
                    "source = v.source, network = v.network FROM unnest(%b::float8[], "
                    "%b::int8[], %b::text[], %b::text[], %b::int8[]) AS v(at, f_cnt, source, "
                    "network, id) WHERE d.id = v.id AND (d.last_seen IS NULL OR "
                    "d.last_seen <= v.at)", [[float(x) for x in at], f_cnt, source, network,
                                             did])

    def _join_by_index(self, cur: Any) -> None:
        # PostgreSQL hashed all of `reading` (840,000 rows, 430 ms) to join 48,000 keys
        cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute("SET LOCAL enable_mergejoin = off")

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]  # one array: one plan for any length

    def _column_types(self, cur: Any, table: str) -> dict[str, str]:
        types = self._types.get(table)
        if types is None:
            cur.execute("SELECT column_name, udt_name FROM information_schema.columns WHERE "
                        "table_schema = current_schema() AND table_name = %s", (table,))
            types = self._types[table] = dict(cur.fetchall())
        return types

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.OperationalError)

    def close(self) -> None:
        self.pool.close()


_INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \([?%s, ]+\)(.*)", re.S)
_CONFLICT = re.compile(r"ON CONFLICT \(([\w, ]+)\)")


class _InsertShape(NamedTuple):
    table: str
    columns: tuple[str, ...]
    rest: str  # what follows VALUES (...): the ON CONFLICT clause
    key: tuple[int, ...] | None  # positions of the conflict key when it updates


@lru_cache(maxsize=512)
def _insert_shape(sql: str) -> _InsertShape | None:
    """An INSERT ... VALUES statement taken apart (None for any other statement)."""
    m = _INSERT.fullmatch(sql)
    if m is None:
        return None
    columns = tuple(c.strip() for c in m[2].split(","))
    conflict = _CONFLICT.search(m[3])
    key = (tuple(columns.index(c.strip()) for c in conflict[1].split(","))
           if conflict and "DO UPDATE" in m[3] else None)
    return _InsertShape(m[1], columns, m[3], key)
# one Python type per array, as psycopg's binary arrays need (a float column may get an int)
_CASTS: dict[str, Callable[[Any], Any]] = {
    "int2": int, "int4": int, "int8": int, "float8": float, "text": str, "bytea": bytes,
    "bool": bool}


def _configure(conn: Any) -> None:
    """How each of the hub's connections plans its statements.

    - No JIT compilation: the hub's queries are short, and PostgreSQL (JIT on by default for
      plans it deems costly) spent 20 s compiling the energy query's many small subplans,
      which then ran in 0.15 s.
    - A plan for each execution's own parameters (`force_custom_plan`): psycopg prepares a
      statement after a few executions and PostgreSQL then keeps one generic plan for it,
      made from the table's size at that moment. The hub's tables start empty, so the dedup
      lookup (`dedup_key = ANY(...)`) kept a sequential scan planned over an empty `uplink`
      while the table grew: 131 ms a batch at 100,000 uplinks, and ingest fell from 10,000
      to 5,300 uplinks/s. Planning each execution costs ~0.1 ms a statement (a statement
      serves a whole batch)."""
    conn.execute("SET jit = off")
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.commit()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


def open_store(url: str, **kwargs: Any) -> Store:
    """`postgresql://...` -> PostgresStore; a path or `sqlite:///path` -> SqliteStore.
    The schema is migrated to the current version."""
    store: Store
    if url.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(url, **kwargs)
    else:
        path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
        store = SqliteStore(path, **kwargs)
    store.migrate()
    return store

