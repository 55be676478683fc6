"""A poison message must not stall ingest: bad input gets a clear error and loses nothing.

Two layers: the parsers refuse numbers out of range (a dead letter with the reason), and the
hub splits a batch the store keeps refusing for a non-transient reason, so the good messages
are stored and acknowledged and the offending one alone becomes a dead letter. Real SQLite
and PostgreSQL throughout; where a store must refuse one message on purpose, a subclass of
the real store refuses it (the database itself is never mocked).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import pytest

from cth01.hub.config import HubConfig
from cth01.hub.envelope import (
    Envelope,
    MessageError,
    NetworkEvent,
    parse_chirpstack,
    parse_tts,
    uplink_key,
)
from cth01.hub.pipeline import Batch, DeadLetter
from cth01.hub.service import Hub
from cth01.hub.store import PostgresStore, SqliteStore, Store, StoreError
from cth01.protocol import encode_uplink, items

T0 = 1_790_000_000  # 2026-09-21 14:13:20 UTC
EUI = "24e1240000000001"
POISON_EUI = "24e12400000000ff"
PAYLOAD = encode_uplink([items.Temperature(temperature_c=21.0)])


def wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def count(store: Store, sql: str, params=()) -> int:
    return store.query(sql, params)[0][0]


def cs_up(f_cnt, t: float, *, f_port=85, eui: str = EUI, time_text: str | None = None
          ) -> bytes:
    stamp = time_text or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return json.dumps({"time": stamp, "deviceInfo": {"devEui": eui, "applicationId": "app"},
                       "fCnt": f_cnt, "fPort": f_port,
                       "data": base64.b64encode(PAYLOAD).decode()}).encode()


def tts_up(f_cnt, t: float, *, f_port=85) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return json.dumps({"end_device_ids": {"device_id": "meter", "dev_eui": EUI},
                       "received_at": stamp,
                       "uplink_message": {"f_port": f_port, "f_cnt": f_cnt,
                                          "frm_payload": base64.b64encode(PAYLOAD).decode(),
                                          "received_at": stamp}}).encode()


def envelope(t: float, *, eui: str = EUI, f_cnt: int | None = None) -> Envelope:
    return Envelope(source="fleet", dev_eui=eui, received_at=float(t), f_port=85, f_cnt=f_cnt,
                    payload=PAYLOAD, key=uplink_key(eui, f_cnt, t, PAYLOAD))


class Acks:
    """`done` callbacks that record which message was acknowledged, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str):
        def done() -> None:
            with self._lock:
                self.order.append(name)
        return done


# -- layer 1: the parsers refuse numbers out of range -------------------------------------------

@pytest.mark.parametrize(("body", "reason"), [
    (cs_up(2**70, T0), "bad fCnt: 1180591620717411303424"),
    (cs_up(2**32, T0), "bad fCnt: 4294967296 is not an integer 0..4294967295"),
    (cs_up(-1, T0), "bad fCnt: -1"),
    (cs_up(1.5, T0), "bad fCnt: 1.5"),
    (cs_up(True, T0), "bad fCnt: True"),
    (cs_up("7", T0), "bad fCnt: '7'"),
    (cs_up(1, T0, f_port=256), "bad fPort: 256 is not an integer 0..255"),
    (cs_up(1, T0, f_port=-1), "bad fPort: -1"),
    (cs_up(1, T0, time_text="9999-12-31T23:59:59Z"), "bad time: '9999-12-31T23:59:59Z' is not "
                                                      "between 2000 and 2099"),
    (cs_up(1, T0, time_text="0001-01-01T00:00:00Z"), "bad time: '0001-01-01T00:00:00Z'"),
    (cs_up(1, T0, time_text="1970-01-01T00:00:00Z"), "bad time: '1970-01-01T00:00:00Z'"),
])
def test_chirpstack_uplink_with_a_number_out_of_range_is_refused(body, reason):
    with pytest.raises(MessageError) as caught:
        parse_chirpstack(body, topic="t")
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert caught.value.dev_eui == EUI


def test_the_largest_frame_counter_and_port_are_taken():
    env = parse_chirpstack(cs_up(2**32 - 1, T0, f_port=255))
    assert isinstance(env, Envelope) and (env.f_cnt, env.f_port) == (2**32 - 1, 255)
    no_counter = json.loads(cs_up(0, T0))
    del no_counter["fCnt"]
    env = parse_chirpstack(json.dumps(no_counter))
    assert isinstance(env, Envelope) and env.f_cnt is None


@pytest.mark.parametrize(("f_cnt", "reason"), [(2**70, "bad f_cnt: 1180591620717411303424"),
                                               (-5, "bad f_cnt: -5"), (None, None)])
def test_tts_uplink_frame_counter_out_of_range_is_refused(f_cnt, reason):
    if reason is None:  # null: no counter
        env = parse_tts(tts_up(f_cnt, T0))
        assert isinstance(env, Envelope) and env.f_cnt is None
        return
    with pytest.raises(MessageError) as caught:
        parse_tts(tts_up(f_cnt, T0))
    assert caught.value.reason.startswith(reason) and caught.value.dev_eui == EUI


def test_network_event_times_out_of_range_are_refused():
    join = {"time": "2999-01-01T00:00:00Z", "deviceInfo": {"devEui": EUI}, "devAddr": "01"}
    with pytest.raises(MessageError, match="bad time: '2999-01-01T00:00:00Z'"):
        parse_chirpstack(json.dumps(join), event="join")
    tts_join = {"end_device_ids": {"device_id": "meter", "dev_eui": EUI},
                "received_at": "1999-12-31T23:59:59Z", "join_accept": {}}
    with pytest.raises(MessageError, match="bad received_at: '1999-12-31T23:59:59Z'"):
        parse_tts(json.dumps(tts_join), event="join")


# -- hubs on both engines ------------------------------------------------------------------------

class _Refusing:
    """A real store that refuses (non-transient) every ingest batch holding an uplink of
    POISON_EUI, or the energy state of that device when `refuse_energy` is set; and fails
    transiently while `down` is set."""

    refuse_energy = False
    refusal: type[Exception] = StoreError
    down = False
    energy_failures = 0  # this many transient failures of `energy_states` first

    def write(self, batch: Batch, *, now: float | None = None):
        if self.down:
            raise StoreError("ingest", OSError("server closed the connection"), transient=True)
        if any(env.dev_eui == POISON_EUI for env, _, _ in batch.uplinks):
            cause = ValueError(f"value refused for device {POISON_EUI}")
            if self.refusal is StoreError:
                raise StoreError("ingest", cause, transient=False)
            raise cause
        return super().write(batch, now=now)  # type: ignore[misc]

    def energy_states(self, dev_euis):
        if self.energy_failures:
            self.energy_failures -= 1
            raise StoreError("energy state", OSError("database is locked"), transient=True)
        if self.refuse_energy and POISON_EUI in dev_euis:
            raise StoreError("energy state", ValueError("corrupt row"), transient=False)
        return super().energy_states(dev_euis)  # type: ignore[misc]


class RefusingSqlite(_Refusing, SqliteStore):
    pass


class RefusingPostgres(_Refusing, PostgresStore):
    pass


@pytest.fixture(params=["sqlite", "postgresql"])
def refusing(request: pytest.FixtureRequest, tmp_path) -> Iterator[_Refusing]:
    if request.param == "sqlite":
        store: Store = RefusingSqlite(str(tmp_path / "hub.db"))
    else:
        store = RefusingPostgres(request.getfixturevalue("pg_url"))
    store.migrate()
    try:
        yield store  # type: ignore[misc]
    finally:
        store.close()


def running_hub(store: Store) -> Hub:
    return Hub(HubConfig(backfill=False), store, clock=lambda: float(T0 + 3600))


def feed(hub: Hub, body: bytes, done) -> None:
    """What the MQTT source does with one ChirpStack `up` message."""
    try:
        message = parse_chirpstack(body, topic=f"application/app/device/{EUI}/event/up")
    except MessageError as exc:
        hub.reject(exc, body, done)
        return
    assert isinstance(message, Envelope)
    hub.submit(message, done)


# -- the audit's reproduction, end to end --------------------------------------------------------

def test_uplink_with_a_huge_frame_counter_is_a_dead_letter_and_ingest_goes_on(store):
    hub = running_hub(store)
    hub.start()
    acks = Acks()
    try:
        feed(hub, cs_up(2**70, T0 + 1), acks("poison"))
        feed(hub, cs_up(5, T0 + 2), acks("good"))
        wait_for(lambda: len(acks.order) == 2, "both messages acknowledged")
    finally:
        hub.stop()
    assert acks.order == ["poison", "good"]
    assert store.query("SELECT f_cnt FROM uplink") == [(5,)]
    ((source, dev_eui, reason, body),) = store.query(
        "SELECT source, dev_eui, reason, body FROM dead_letter")
    assert (source, dev_eui) == ("chirpstack", EUI)
    assert reason.startswith("bad fCnt: 1180591620717411303424 is not an integer")
    assert bytes(body) == cs_up(2**70, T0 + 1)


def test_envelope_the_database_refuses_is_a_dead_letter_and_the_rest_is_stored(store):
    # a source that builds envelopes itself skips the parser: the database refuses the
    # counter (SQLite: OverflowError; PostgreSQL: bigint out of range), not a transient error
    hub = running_hub(store)
    acks = Acks()
    for k in range(6):  # all queued before the worker starts: one batch
        env = envelope(T0 + k, f_cnt=2**70 if k == 3 else k)
        hub.submit(env, acks(f"up{k}"))
    hub.start()
    try:
        wait_for(lambda: len(acks.order) == 6, "every message acknowledged")
    finally:
        hub.stop()
    assert acks.order == [f"up{k}" for k in range(6)]
    assert sorted(r[0] for r in store.query("SELECT f_cnt FROM uplink")) == [0, 1, 2, 4, 5]
    ((dev_eui, reason, body),) = store.query("SELECT dev_eui, reason, body FROM dead_letter")
    assert dev_eui == EUI and reason.startswith("cannot be stored: ")
    kept = json.loads(bytes(body))  # the whole envelope: nothing is lost
    assert kept["f_cnt"] == 2**70 and base64.b64decode(kept["payload"]) == PAYLOAD
    assert hub._inflight == set()


# -- layer 2: a batch the store keeps refusing is split ------------------------------------------

@pytest.mark.parametrize("refusal", [StoreError, ValueError])
def test_batch_with_a_refused_envelope_is_split_and_only_that_one_is_dead(refusing, refusal):
    refusing.refusal = refusal
    hub = running_hub(refusing)
    acks = Acks()
    hub.submit(envelope(T0 + 1), acks("a"))
    hub.submit(envelope(T0 + 2, eui=POISON_EUI), acks("poison"))
    hub.submit(envelope(T0 + 3), acks("b"))
    hub.submit_dead(DeadLetter(T0 + 4, "chirpstack", "not JSON", b"{x"), acks("letter"))
    hub.submit_event(NetworkEvent(source="chirpstack", kind="join", dev_eui=EUI,
                                  time=T0 + 5.0), acks("join"))
    hub.submit(envelope(T0 + 600), acks("c"))
    hub.start()
    try:
        wait_for(lambda: len(acks.order) == 6, "every message acknowledged")
        # a redelivery of a stored uplink is still known as stored, the poison still refused
        hub.submit(envelope(T0 + 1), acks("a again"))
        wait_for(lambda: len(acks.order) == 7, "the redelivery acknowledged")
    finally:
        hub.stop()
    assert acks.order == ["a", "poison", "b", "letter", "join", "c", "a again"]
    assert [r[0] for r in refusing.query("SELECT received_at FROM uplink ORDER BY "
                                         "received_at")] == [T0 + 1, T0 + 3, T0 + 600]
    assert count(refusing, "SELECT count(*) FROM reading") == 3
    assert refusing.device(EUI)["joined_at"] == T0 + 5
    assert refusing.device(POISON_EUI) is None
    letters = refusing.query("SELECT dev_eui, reason FROM dead_letter ORDER BY id")
    assert [d for d, _ in letters] == [POISON_EUI, None]  # in the order they came
    name = "StoreError: ingest: " if refusal is StoreError else "ValueError: "
    assert letters[0][1] == f"cannot be stored: {name}value refused for device {POISON_EUI}"
    assert letters[1][1] == "not JSON"
    assert hub._inflight == set()


def test_batch_that_cannot_be_prepared_is_split_too(refusing):
    refusing.refuse_energy = True
    hub = running_hub(refusing)
    acks = Acks()
    for k, eui in enumerate((EUI, EUI, POISON_EUI, EUI)):
        hub.submit(envelope(T0 + 600 * k, eui=eui), acks(f"up{k}"))
    hub.start()
    try:
        wait_for(lambda: len(acks.order) == 4, "every message acknowledged")
    finally:
        hub.stop()
    assert acks.order == ["up0", "up1", "up2", "up3"]
    assert count(refusing, "SELECT count(*) FROM uplink") == 3
    ((dev_eui, reason),) = refusing.query("SELECT dev_eui, reason FROM dead_letter")
    assert dev_eui == POISON_EUI and "corrupt row" in reason
    assert hub._inflight == set()


def test_transient_failures_still_retry_and_acknowledge_nothing(refusing):
    refusing.down = True
    hub = running_hub(refusing)
    acks = Acks()
    hub.submit(envelope(T0 + 1), acks("a"))
    hub.submit(envelope(T0 + 2, eui=POISON_EUI), acks("poison"))
    hub.start()
    try:
        time.sleep(2.0)  # well past the attempts after which a non-transient error splits
        assert acks.order == []
        assert count(refusing, "SELECT count(*) FROM dead_letter") == 0
        refusing.down = False
        wait_for(lambda: len(acks.order) == 2, "both acknowledged once the database is back")
    finally:
        hub.stop()
    assert count(refusing, "SELECT count(*) FROM uplink") == 1
    assert count(refusing, "SELECT count(*) FROM dead_letter") == 1


def test_a_transient_failure_while_preparing_loses_nothing(refusing):
    # the first attempt had already marked the uplink as in flight: the retry must not take
    # it for a duplicate (acknowledged, never stored)
    refusing.energy_failures = 1
    hub = running_hub(refusing)
    acks = Acks()
    hub.submit(envelope(T0 + 1), acks("a"))
    hub.start()
    try:
        wait_for(lambda: acks.order == ["a"], "the uplink acknowledged")
    finally:
        hub.stop()
    assert count(refusing, "SELECT count(*) FROM uplink") == 1
    assert count(refusing, "SELECT count(*) FROM reading") == 1

