"""Storage: one SQL store, two engines (SQLite embedded, PostgreSQL for scale).

Owns: every query of the hub — the ingest transaction (raw frames, readings, alarms, the
configuration shadow, downlink results), the registry, and the read side of the API. The SQL is
written once, with `?` placeholders, in the dialect both engines share (ON CONFLICT upserts,
no engine functions); `SqliteStore` and `PostgresStore` differ only in how they connect, their
placeholder and how they bulk-insert. Schema and migrations: `schema.py`, docs/storage.md.

Threads: one writer (the ingest worker) calls `ingest`/`write`; API handlers call the rest from
a thread pool. SQLite runs in WAL mode (readers never block the writer); each thread has its
own connection. PostgreSQL uses a connection pool.

Durability: `write` returns only after COMMIT. SQLite with synchronous=NORMAL in WAL mode
keeps every committed transaction through a crash of the process (kill -9); `durable=True`
(synchronous=FULL) also through a power cut. Errors of the database surface as `StoreError`
(transient=True when retrying can help: a lost connection, a locked database).
Must never: decode payloads (the pipeline does) or decide lifecycle rules (alarms, downlinks).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import alarms as alarm_rules
from . import downlinks as dl
from .envelope import Envelope
from .pipeline import Batch, DeadLetter
from .readings import (
    CHANNEL_COLUMNS,
    CHANNELS,
    DEVICE_COLUMNS,
    ENERGY_COLUMNS,
    READING_COLUMNS,
    wide_column,
)
from .schema import MIGRATIONS, migration_sql

DEFAULT_INTERVAL_S = 600  # the CTH01's factory reporting interval (10 min)
ROLES = ("read", "admin")


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
    def transaction(self, operation: str) -> Iterator[Any]:
        """A cursor inside one transaction, committed on success; database errors become
        StoreError."""
        conn = self._connection()
        try:
            cur = conn.cursor()
            yield cur
            conn.commit()
        except self._errors() as exc:
            try:
                conn.rollback()
            except self._errors():
                pass
            raise StoreError(operation, exc, transient=self._transient(exc)) from exc

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
        did = self._device_ids.get(dev_eui)
        if did is None:
            cur.execute(self._q("SELECT id, reporting_interval_s FROM device WHERE dev_eui = ?"),
                        (dev_eui,))
            row = cur.fetchone()
            if row is None:
                did = self._insert_id(cur, "INSERT INTO device (dev_eui, first_seen) "
                                      "VALUES (?, ?)", (dev_eui, now))
            else:
                did = int(row[0])
                if row[1]:
                    self._intervals[did] = int(row[1])
            self._device_ids[dev_eui] = did
        return did

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
            rows = self.query(f"SELECT dedup_key FROM uplink WHERE dedup_key IN "
                              f"({', '.join('?' * len(chunk))})", chunk, "dedup")
            stored.update(r[0] for r in rows)
        new = [e for e in unique if e.key not in stored]
        return new, len(envelopes) - len(new)

    def energy_state(self, dev_eui: str) -> dict[int, tuple[int, list[Any]]]:
        """Each channel's latest stored energy counters (for the pipeline after a restart),
        from the device's last few readings."""
        did = self.device_id(dev_eui)
        if did is None:
            return {}
        cols = [wide_column(c, ch) for ch in CHANNELS for c in ENERGY_COLUMNS]
        rows = self.query(f"SELECT ts, {', '.join(cols)} FROM reading WHERE device_id = ? "
                          f"ORDER BY ts DESC LIMIT 5", (did,), "energy state")
        out: dict[int, tuple[int, list[Any]]] = {}
        n = len(ENERGY_COLUMNS)
        for row in rows:
            for k, ch in enumerate(CHANNELS):
                values = list(row[1 + k * n:1 + (k + 1) * n])
                if ch not in out and any(v is not None for v in values):
                    out[ch] = (int(row[0]), values)
        return out

    def write(self, batch: Batch, *, now: float | None = None) -> WriteResult:
        """Store one pipeline batch in one transaction (see the module note on durability)."""
        now = time.time() if now is None else now
        result = WriteResult(live_devices=set(batch.live_devices))
        with self._write_lock, self.transaction("ingest") as cur:
            ids = {}
            for env, _, _ in batch.uplinks:
                if env.dev_eui not in ids:
                    ids[env.dev_eui] = self._device_id(cur, env.dev_eui, env.received_at)
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
        self._many(cur, "UPDATE device SET last_seen = ?, last_f_cnt = ?, source = ?, "
                        "network = ? WHERE id = ? AND (last_seen IS NULL OR last_seen <= ?)",
                   [(e.received_at, e.f_cnt, e.source, json.dumps(e.network), ids[eui],
                     e.received_at) for eui, e in last.items()])
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
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))

    def _write_alarms(self, cur: Any, batch: Batch, ids: dict[str, int],
                      result: WriteResult) -> None:
        for event in batch.alarms:
            did = ids[event.dev_eui]
            s = alarm_rules.step(event.item, event.alarm_type, event.channel)
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
        already sent stay sent."""
        to_send, timed_out = [], []
        with self._write_lock, self.transaction("due downlinks") as cur:
            cur.execute(self._q(
                "SELECT dl.id, dl.status, dl.attempts, dl.max_attempts, dl.sent_at, dl.expects "
                "FROM downlink dl WHERE dl.status = 'queued' OR (dl.status = 'sent' AND "
                "dl.sent_at <= ?)"), (now - timeout_s,))
            for dl_id, status, attempts, max_attempts, _sent_at, expects in cur.fetchall():
                if status == "queued":
                    to_send.append(dl_id)
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
        out["channels"] = [named.get(ch, {"channel": ch, "circuit": None, "tenant": None})
                           for ch in range(1, 13)]
        return out

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
        now = time.time() if now is None else now
        with self._write_lock, self.transaction("acknowledge alarm") as cur:
            cur.execute(self._q("UPDATE alarm SET acknowledged_at = ?, acknowledged_by = ? "
                                "WHERE id = ? AND acknowledged_at IS NULL"),
                        (now, user, alarm_id))
            cur.execute(self._q("SELECT id FROM alarm WHERE id = ?"), (alarm_id,))
            if cur.fetchone() is None:
                return None
            return self._alarm_row(cur, alarm_id)

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
        if column in CHANNEL_COLUMNS:
            if channel not in CHANNELS:
                raise ValueError(f"{column} is a per-channel quantity: give a channel 1-12")
            column = wide_column(column, channel)
        elif column not in DEVICE_COLUMNS:
            raise ValueError(f"unknown quantity {column!r}")
        bucket = max(1, -(-(end - start + 1) // max(1, points)))
        rows = self.query(
            f"SELECT ? + ((ts - ?) / ?) * ? AS t, avg({column}), min({column}), max({column}), "
            f"count({column}) FROM reading WHERE device_id = ? AND ts >= ? AND ts <= ? AND "
            f"{column} IS NOT NULL GROUP BY 1 ORDER BY 1",  # by position: PostgreSQL cannot
            # match `(ts - $2) / $3` to `(ts - $9) / $10` and refuses to group by the expression
            (start, start, bucket, bucket, did, start, end), "readings")
        return [{"ts": int(r[0]), "mean": r[1], "min": r[2], "max": r[3], "count": int(r[4])}
                for r in rows]

    def energy(self, *, start: int, end: int, column: str = "imported_active_wh",
               dev_euis: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Energy per device and channel over [start, end): each channel's counter in the last
        reading before `end` minus its counter in the last reading before `start` (or, for a
        device first heard in the period, its first reading), plus what counter resets in the
        period hid (`energy_reset`): a reset restarts the counter from 0, so the counter before
        it (`before_value`) is what the difference lost and `after_value` is new energy."""
        if column not in ENERGY_COLUMNS:
            raise ValueError(f"{column!r} is not an energy counter")
        cols = [wide_column(column, ch) for ch in CHANNELS]
        has = "(" + " OR ".join(f"r.{c} IS NOT NULL" for c in cols) + ")"
        filt, params = "", []
        if dev_euis:
            filt = f" WHERE d.dev_eui IN ({', '.join('?' * len(dev_euis))})"
            params = list(dev_euis)
        pick = ", ".join(f"{a}.{c}" for a in ("e", "s", "f") for c in cols)
        rows = self.query(
            f"""WITH k AS (SELECT d.id, d.dev_eui,
  (SELECT r.ts FROM reading r WHERE r.device_id = d.id AND r.ts < ? AND {has}
   ORDER BY r.ts DESC LIMIT 1) AS t_end,
  (SELECT r.ts FROM reading r WHERE r.device_id = d.id AND r.ts < ? AND {has}
   ORDER BY r.ts DESC LIMIT 1) AS t_start,
  (SELECT r.ts FROM reading r WHERE r.device_id = d.id AND r.ts >= ? AND {has}
   ORDER BY r.ts LIMIT 1) AS t_first
  FROM device d{filt})
SELECT k.id, k.dev_eui, {pick} FROM k
  LEFT JOIN reading e ON e.device_id = k.id AND e.ts = k.t_end
  LEFT JOIN reading s ON s.device_id = k.id AND s.ts = k.t_start
  LEFT JOIN reading f ON f.device_id = k.id AND f.ts = k.t_first
WHERE k.t_end IS NOT NULL ORDER BY k.dev_eui""", (end, start, start, *params), "energy")
        resets: dict[tuple[int, int], float] = {
            (int(d), int(c)): float(v) for d, c, v in self.query(
                "SELECT device_id, channel, sum(before_value) FROM energy_reset "
                "WHERE quantity = ? AND ts >= ? AND ts < ? GROUP BY device_id, channel",
                (column, start, end), "energy resets")}
        out = []
        for row in rows:
            did, eui, values = int(row[0]), row[1], row[2:]
            for k, ch in enumerate(CHANNELS):
                at_end, at_start, first_in = values[k], values[12 + k], values[24 + k]
                base = at_start if at_start is not None else first_in
                if at_end is None or base is None:
                    continue
                out.append({"dev_eui": eui, "channel": ch, "energy": float(
                    at_end - base + resets.get((did, ch), 0.0))})
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
        self.url = url
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                   kwargs={"autocommit": False})
        try:
            self.pool.open(wait=True, timeout=10)
        except Exception as exc:  # psycopg_pool.PoolTimeout: the server is not there
            self.pool.close()
            raise StoreError(f"connect {_redact(url)}", exc, transient=True) from exc

    @contextmanager
    def transaction(self, operation: str) -> Iterator[Any]:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except self._psycopg.Error as exc:
            raise StoreError(operation, exc, transient=self._transient(exc)) from exc
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise StoreError(operation, exc, transient=True) from exc
            raise

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error,)

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.OperationalError)

    def close(self) -> None:
        self.pool.close()


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

