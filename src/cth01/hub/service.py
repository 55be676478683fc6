"""The running hub: sources in, one ingest pipeline, downlinks, backfill, notifications.

Owns: ingest in two threads — the worker takes envelopes from every source, drops duplicates
and runs the pipeline; the writer commits one transaction per batch, in order, and only then
acknowledges (MQTT PUBACK, HTTP 200) — so the next batch is prepared while one is committed;
the downlink loop (send queued downlinks through the device's own network, resend on timeout,
bounded), the backfill loop (gaps -> history range queries), alarm notifications, metrics, and
the life cycle (`start` / `stop`).

Nothing is acknowledged before it is committed. A transient database failure (server away,
database locked) keeps the batch and retries it with backoff, acknowledging nothing meanwhile;
the sources keep their messages (MQTT: the broker redelivers unacknowledged QoS 1 messages).
A batch that keeps failing for another reason (a value the database refuses, a bug) is poisoned
by some message in it: it is split in halves, each prepared again and committed on its own, down
to the message that cannot be stored, which goes to dead letters with the error and is then
acknowledged (a dead letter is stored: nothing is lost, and the rest of ingest goes on).

Time: the hub reads time only through `clock` (the in-process fleet injects its simulated time).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import backfill
from . import downlinks as dl
from .config import HubConfig
from .envelope import Envelope, MessageError, NetworkEvent
from .pipeline import Batch, DeadLetter, Pipeline
from .store import Store, StoreError, WriteResult

log = structlog.get_logger("cth01.hub")

POISON_ATTEMPTS = 3  # a step failing this often for a non-transient reason: its batch is split


def _plain(text: str) -> str:
    """Text any database takes: no NUL, no lone surrogates (escaped instead)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _json(message: Envelope | NetworkEvent) -> bytes:
    """A message as JSON (bytes base64) for its dead letter; its repr if even that fails."""
    try:
        return msgspec.json.encode(message)
    except Exception:
        return repr(message).encode("utf-8", "backslashreplace")


class Poisoned(Exception):
    """A store step failed `POISON_ATTEMPTS` times for a reason retrying cannot help
    (`error`: a non-transient StoreError or any other exception)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


class NoDownlinkPath(Exception):
    """A downlink that can never go the way asked (no application known for the device, the
    network server refused it for good): the hub marks it failed with this reason. Any other
    exception from `send_downlink` is taken as passing (broker away): it stays queued."""


class Source(Protocol):
    """A transport adapter: feeds `hub.submit*`; sends downlinks for the devices it carries
    (raising NoDownlinkPath, or another exception to be tried again next round)."""

    names: tuple[str, ...]  # the `source` of the envelopes it submits

    def start(self, hub: Hub) -> None: ...

    def stop(self) -> None: ...

    def send_downlink(self, dev_eui: str, payload: bytes, f_port: int,
                      network: dict[str, str], reference: str) -> None: ...


@dataclass(slots=True)
class _Work:
    envelope: Envelope | None = None
    dead: DeadLetter | None = None
    event: NetworkEvent | None = None
    done: Callable[[], None] | None = None
    submitted_at: float = 0.0


class Metrics:
    """Prometheus metrics of one hub (own registry, so several hubs can live in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("cth01_uplinks_received_total", "Uplinks received", ["source"],
                                registry=r)
        self.stored = Counter("cth01_uplinks_stored_total", "Uplinks stored", registry=r)
        self.duplicates = Counter("cth01_uplinks_duplicate_total",
                                  "Uplinks dropped as already stored", registry=r)
        self.dead = Counter("cth01_dead_letters_total", "Messages sent to dead letters",
                            ["source"], registry=r)
        self.events = Counter("cth01_network_events_total", "Network events", ["kind"],
                              registry=r)
        self.batches = Counter("cth01_ingest_batches_total", "Ingest transactions", registry=r)
        self.store_errors = Counter("cth01_store_errors_total", "Failed ingest transactions",
                                    ["transient"], registry=r)
        self.latency = Histogram("cth01_ingest_latency_seconds",
                                 "From submit to committed", registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                          5, 10))
        self.queue = Gauge("cth01_ingest_queue", "Messages waiting for the ingest worker",
                           registry=r)
        self.downlinks = Counter("cth01_downlinks_total", "Downlink state changes", ["status"],
                                 registry=r)
        self.alarms = Counter("cth01_alarm_changes_total", "Alarm changes", ["change"],
                              registry=r)
        self.backfill_queries = Counter("cth01_backfill_queries_total",
                                        "History range queries sent", registry=r)


class Hub:
    """One hub: a store, sources, and the loops that connect them."""

    def __init__(self, config: HubConfig, store: Store, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.pipeline = Pipeline()
        self.metrics = Metrics()
        self._received: dict[str, Any] = {}  # source -> its received counter
        self.sources: dict[str, Source] = {}
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        # prepared batches (or why preparing failed) waiting for the writer (bounded:
        # back-pressure on stage 1)
        self._writes: queue.Queue[tuple[list[_Work], Batch | Poisoned] | None] = \
            queue.Queue(maxsize=2)
        self._send_errors: dict[int, str] = {}  # downlink id -> why it could not go (logged)
        self._inflight: set[int] = set()  # dedup keys of prepared, not yet committed uplinks
        self._inflight_lock = threading.Lock()
        self._stopping = threading.Event()
        self.last_history_at: dict[str, float] = {}  # device -> when its last record came
        self._tasks: list[asyncio.Task[Any]] = []
        self.stored_total = 0

    # -- life cycle ---------------------------------------------------------------------------

    def add_source(self, source: Source) -> None:
        for name in source.names:
            self.sources[name] = source

    def _unique_sources(self) -> list[Source]:
        return list({id(s): s for s in self.sources.values()}.values())

    def start(self) -> None:
        """Start the ingest worker and every source (not the async loops: `run_loops`)."""
        self._worker = threading.Thread(target=self._work, name="cth01-ingest", daemon=True)
        self._writer = threading.Thread(target=self._write, name="cth01-writer", daemon=True)
        self._worker.start()
        self._writer.start()
        for source in self._unique_sources():
            source.start(self)

    async def run_loops(self) -> None:
        """The downlink and backfill loops, until cancelled."""
        loops = [self._downlink_loop()]
        if self.config.backfill:
            loops.append(self._backfill_loop())
        await asyncio.gather(*loops)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the sources, then let the worker store what it holds, then stop it."""
        for source in self._unique_sources():
            try:
                source.stop()
            except Exception as exc:  # a source that fails to stop must not stop the others
                log.warning("source_stop_failed", source=source.names, error=str(exc))
        self._stopping.set()
        self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in (self._worker, self._writer):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- submitting (any thread) --------------------------------------------------------------

    def submit(self, envelope: Envelope, done: Callable[[], None] | None = None) -> None:
        """Queue an uplink; `done()` is called once it is durably stored (or was already)."""
        received = self._received.get(envelope.source)
        if received is None:
            received = self._received[envelope.source] = self.metrics.received.labels(
                envelope.source)
        received.inc()
        self._queue.put(_Work(envelope=envelope, done=done, submitted_at=time.monotonic()))

    def submit_dead(self, letter: DeadLetter, done: Callable[[], None] | None = None) -> None:
        self.metrics.dead.labels(letter.source).inc()
        self._queue.put(_Work(dead=letter, done=done, submitted_at=time.monotonic()))

    def submit_event(self, event: NetworkEvent, done: Callable[[], None] | None = None) -> None:
        self.metrics.events.labels(event.kind).inc()
        self._queue.put(_Work(event=event, done=done, submitted_at=time.monotonic()))

    def reject(self, error: MessageError, body: bytes, done: Callable[[], None] | None = None
               ) -> None:
        """A network message that did not parse: to dead letters, with the reason."""
        log.warning("message_rejected", source=error.source, topic=error.topic,
                    reason=error.reason)
        self.submit_dead(DeadLetter(self.clock(), error.source, error.reason, body,
                                    topic=error.topic, dev_eui=error.dev_eui), done)

    async def ingest_http(self, message: Envelope | NetworkEvent | MessageError,
                          body: bytes) -> None:
        """For webhooks: queue and wait until it is stored (the HTTP answer is the ack)."""
        fut: Future[None] = Future()
        loop = asyncio.get_running_loop()
        done = lambda: fut.set_result(None)  # noqa: E731
        if isinstance(message, MessageError):
            self.reject(message, body, done)
        elif isinstance(message, Envelope):
            self.submit(message, done)
        else:
            self.submit_event(message, done)
        await asyncio.wait_for(asyncio.wrap_future(fut, loop=loop), 30)

    # -- the ingest worker --------------------------------------------------------------------

    def _take(self) -> list[_Work] | None:
        first = self._queue.get()
        if first is None:
            return None
        items = [first]
        while len(items) < self.config.batch_max:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            items.append(nxt)
        return items

    def _work(self) -> None:
        """Stage 1: take a batch, drop duplicates, run the pipeline; hand it to the writer.
        The next batch is prepared while the writer commits this one (with PostgreSQL the
        commit is mostly waiting for the server). A batch that cannot be prepared goes to the
        writer as `Poisoned`, to be split there."""
        while True:
            items = self._take()
            if items is None:
                self._writes.put(None)
                return
            self.metrics.queue.set(self._queue.qsize())
            try:
                prepared: Batch | Poisoned = self._retrying(
                    lambda items=items: self._prepare(items), attempts=POISON_ATTEMPTS)
            except Poisoned as exc:
                prepared = exc
            self._writes.put((items, prepared))

    def _write(self) -> None:
        """Stage 2: commit each prepared batch in order, then acknowledge its messages."""
        while (job := self._writes.get()) is not None:
            items, prepared = job
            try:
                self._commit(items, prepared)
            finally:
                if isinstance(prepared, Batch):
                    with self._inflight_lock:
                        self._inflight.difference_update(env.key for env, _, _ in
                                                         prepared.uplinks)

    def _commit(self, items: list[_Work], prepared: Batch | Poisoned) -> None:
        """Commit one batch and acknowledge its messages. A poisoned batch is split in
        halves, each prepared again (its own scratch pipeline, as after a restart) and
        committed in order, down to the one message that cannot be stored (`_bury`)."""
        if isinstance(prepared, Batch):
            try:
                result = self._retrying(lambda: self.store.write(prepared, now=self.clock()),
                                        attempts=POISON_ATTEMPTS)
            except Poisoned as exc:
                prepared = exc
            else:
                self._after(items, result)
                return
        if len(items) == 1:
            self._bury(items[0], prepared.error)
            return
        log.warning("batch_split", messages=len(items), error=str(prepared))
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            scratch = Pipeline(dialect=self.pipeline.dialect)
            try:
                again: Batch | Poisoned = self._retrying(
                    lambda half=half, scratch=scratch: self._prepare(half, scratch),
                    attempts=POISON_ATTEMPTS)
            except Poisoned as exc:
                again = exc
            self._commit(half, again)

    def _bury(self, work: _Work, error: BaseException) -> None:
        """The message that poisons its batch: to dead letters with the error (an envelope or
        event as JSON), then acknowledged. A dead letter whose own fields are refused is kept
        as its body and reason alone; if even that fails, the database is at fault, not the
        message, and it is retried until it can be written."""
        reason = f"cannot be stored: {type(error).__name__}: {error}"
        now = self.clock()
        message = work.envelope if work.envelope is not None else work.event
        if message is not None:
            letter = DeadLetter(now, message.source, reason, _json(message),
                                dev_eui=message.dev_eui)
            self.metrics.dead.labels(message.source).inc()
        else:
            dead = work.dead
            assert dead is not None
            letter = DeadLetter(now, dead.source, f"{dead.reason}; {reason}", dead.body,
                                topic=dead.topic, dev_eui=dead.dev_eui)
        log.error("message_poisoned", source=letter.source, dev_eui=letter.dev_eui,
                  reason=reason)
        try:
            result = self._retrying(lambda: self.store.write(Batch(dead_letters=[letter]),
                                                             now=self.clock()),
                                    attempts=POISON_ATTEMPTS)
        except Poisoned:
            plain = DeadLetter(now, _plain(letter.source), _plain(letter.reason),
                               bytes(letter.body))
            result = self._retrying(lambda: self.store.write(Batch(dead_letters=[plain]),
                                                             now=self.clock()))
        self._after([_Work(done=work.done, submitted_at=work.submitted_at)], result)

    def _retrying(self, step: Callable[[], Any], *, attempts: int | None = None) -> Any:
        """Run one store step until it succeeds: a database failure keeps the data and
        retries with backoff (nothing is acknowledged meanwhile). With `attempts`, a step
        that fails that often for a reason retrying cannot help (a non-transient StoreError,
        any other exception) raises `Poisoned` instead; transient failures never count."""
        delay = 0.2
        failures = 0
        while True:
            try:
                return step()
            except StoreError as exc:
                self.metrics.store_errors.labels(str(exc.transient).lower()).inc()
                log.error("store_failed", operation=exc.operation, error=str(exc),
                          transient=exc.transient, retry_in_s=delay)
                error: BaseException | None = None if exc.transient else exc
            except Exception as exc:  # a bug must not kill ingest: log, keep the data
                log.exception("ingest_failed", error=repr(exc))
                error = exc
            if error is not None:
                failures += 1
                if attempts is not None and failures >= attempts:
                    raise Poisoned(error) from error
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _prepare(self, items: list[_Work], pipeline: Pipeline | None = None) -> Batch:
        """Drop duplicates (stored, or in a batch still being written) and run the pipeline:
        the batch to commit. With a scratch `pipeline` (a poisoned batch split by the writer),
        only stored duplicates are dropped: these uplinks are the ones still in flight."""
        envelopes = [w.envelope for w in items if w.envelope is not None]
        new, duplicates = self.store.new_envelopes(envelopes) if envelopes else ([], 0)
        if pipeline is not None:
            fresh = new
        else:
            pipeline = self.pipeline
            with self._inflight_lock:
                fresh = [env for env in new if env.key not in self._inflight]
                self._inflight.update(env.key for env in fresh)
            self.metrics.duplicates.inc(duplicates + len(new) - len(fresh))
        try:
            unknown = list(dict.fromkeys(e.dev_eui for e in fresh
                                         if not pipeline.known(e.dev_eui)))
            if unknown:
                for eui, state in self.store.energy_states(unknown).items():
                    pipeline.prime(eui, state)
            batch = pipeline.process(fresh)
        except BaseException:  # not prepared: a retry must not take them for in flight
            if pipeline is self.pipeline:
                with self._inflight_lock:
                    self._inflight.difference_update(env.key for env in fresh)
            raise
        batch.dead_letters += [w.dead for w in items if w.dead is not None]
        for w in items:
            if w.event is not None and w.event.kind == "join":
                batch.joins[w.event.dev_eui] = w.event.time
        return batch

    def _after(self, items: list[_Work], result: WriteResult) -> None:
        """After the commit: acknowledge, account, notify."""
        now = time.monotonic()
        for w in items:
            if w.done is not None:
                try:
                    w.done()
                except Exception as exc:
                    log.warning("ack_failed", error=repr(exc))
            self.metrics.latency.observe(now - w.submitted_at)
        self.metrics.batches.inc()
        self.metrics.stored.inc(result.stored)
        self.stored_total += result.stored
        t = self.clock()
        for eui in result.history_devices:
            self.last_history_at[eui] = t
        for w in items:
            if w.event is not None:
                self._network_event(w.event)
        self._notify(result)

    def _network_event(self, event: NetworkEvent) -> None:
        if event.kind in ("ack", "downlink_failed") and not event.ok and event.reference:
            try:
                rows = self.store.query("SELECT id FROM downlink WHERE reference = ? AND "
                                        "status IN ('queued', 'sent')", (event.reference,))
                for (dl_id,) in rows:
                    self.store.mark_failed(int(dl_id), event.time, event.detail or event.kind)
                    self.metrics.downlinks.labels("failed").inc()
            except StoreError as exc:
                log.error("network_event_failed", kind=event.kind, error=str(exc))
        log.info("network_event", kind=event.kind, dev_eui=event.dev_eui, ok=event.ok,
                 detail=event.detail)

    # -- notifications ------------------------------------------------------------------------

    def _notify(self, result: WriteResult) -> None:
        for change in result.alarm_changes:
            self.metrics.alarms.labels(change["change"]).inc()
            self._emit("alarm", change)
        for change in result.downlink_changes:
            self.metrics.downlinks.labels(change["status"]).inc()
            self._emit("downlink", change)
        if result.live_devices:
            self._emit("readings", {"devices": sorted(result.live_devices)})

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, data)
            except Exception as exc:
                log.warning("listener_failed", kind=kind, error=repr(exc))

    def acknowledge_alarm(self, alarm_id: int, user: str) -> dict[str, Any] | None:
        """A user acknowledges an alarm (None: no such alarm). The first acknowledgement is
        an alarm change for the listeners (webhook, MQTT, live views), as the device's are."""
        row = self.store.acknowledge_alarm(alarm_id, user=user, now=self.clock())
        if row is not None and row["change"] == "acknowledged":
            self.metrics.alarms.labels("acknowledged").inc()
            log.info("alarm_acknowledged", id=alarm_id, dev_eui=row["dev_eui"], user=user)
            self._emit("alarm", row)
        return row

    # -- downlinks ----------------------------------------------------------------------------

    def queue_downlink(self, dev_eui: str, command: str, params: dict[str, Any] | None,
                       user: str) -> dict[str, Any]:
        """Build (typed; CommandError if refused) and queue a downlink for a known device."""
        dev_eui = dev_eui.lower()
        if self.store.device_id(dev_eui) is None:
            raise KeyError(dev_eui)
        downlink = dl.build(command, params)
        row = self.store.create_downlink(dev_eui, command, params or {}, downlink,
                                         created_by=user,
                                         max_attempts=self.config.downlink_max_attempts,
                                         now=self.clock())
        self.metrics.downlinks.labels("queued").inc()
        log.info("downlink_queued", dev_eui=dev_eui, command=command, id=row["id"], user=user)
        return row

    def send_due_downlinks(self) -> int:
        """Send queued downlinks and resend overdue ones; mark exhausted ones timed out."""
        now = self.clock()
        to_send, timed_out = self.store.due_downlinks(now, self.config.downlink_timeout_s)
        for row in timed_out:
            self.metrics.downlinks.labels("timed_out").inc()
            self._emit("downlink", {**row, "status": "timed_out"})
        sent = 0
        for row in to_send:
            device = self.store.device(row["dev_eui"]) or {}
            source = self.sources.get(device.get("source") or "")
            if source is None:
                self.store.mark_failed(row["id"], now, f"no downlink path: the device's "
                                       f"uplinks come from {device.get('source')!r}")
                self.metrics.downlinks.labels("failed").inc()
                continue
            reference = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                       f"cth01:{row['id']}:{row['attempts'] + 1}"))
            try:
                source.send_downlink(row["dev_eui"], bytes.fromhex(row["payload_hex"]),
                                     row["f_port"], device.get("network") or {}, reference)
            except NoDownlinkPath as exc:
                self._send_errors.pop(row["id"], None)
                self.store.mark_failed(row["id"], now, str(exc))
                self.metrics.downlinks.labels("failed").inc()
                log.warning("downlink_refused", id=row["id"], error=str(exc))
                continue
            except Exception as exc:  # broker away: stays queued, retried next round
                if self._send_errors.get(row["id"]) != str(exc):  # once, not every second
                    self._send_errors[row["id"]] = str(exc)
                    log.warning("downlink_send_failed", id=row["id"], error=str(exc))
                continue
            self._send_errors.pop(row["id"], None)
            self.store.mark_sent(row["id"], now, reference)
            self.metrics.downlinks.labels("sent").inc()
            sent += 1
        return sent

    async def _downlink_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.send_due_downlinks)
            except StoreError as exc:
                log.error("downlink_loop_failed", error=str(exc))
            await asyncio.sleep(1.0)

    # -- backfill -----------------------------------------------------------------------------

    def backfill_once(self) -> int:
        """One scan: find gaps, request the oldest open one per device (one query at a time
        per device, never while it is still replaying records). Returns queries queued."""
        now = self.clock()
        return backfill.scan(self, now)

    async def _backfill_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.backfill_every_s)
            try:
                n = await asyncio.to_thread(self.backfill_once)
                self.metrics.backfill_queries.inc(n)
            except StoreError as exc:
                log.error("backfill_failed", error=str(exc))

    # -- operations ---------------------------------------------------------------------------

    def metrics_text(self) -> bytes:
        self.metrics.queue.set(self._queue.qsize())
        return generate_latest(self.metrics.registry)

    def health(self) -> dict[str, Any]:
        try:
            self.store.query("SELECT 1")
            db = "ok"
        except StoreError as exc:
            db = f"error: {exc}"
        return {"status": "ok" if db == "ok" else "degraded", "database": db,
                "engine": self.store.engine, "queue": self._queue.qsize(),
                "stored_uplinks": self.stored_total,
                "worker_alive": all(t is not None and t.is_alive()
                                    for t in (self._worker, self._writer)),
                "sources": sorted(self.sources), "time": self.clock()}
