"""Fuzzing: any input, however broken, yields a result or a DecodeError — never another
exception, never a hang (hypothesis drives random bytes and mutations of valid frames)."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cth01.protocol import DecodeError, decode, decode_downlink, encode_uplink
from cth01.protocol.schema import Dialect

from .strategies import uplinks

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_all_ways(payload: bytes) -> None:
    for dialect in ("auto", "firmware", "guide"):
        for strict in (True, False):
            try:
                up = decode(payload, dialect=dialect, strict_ranges=strict)
            except DecodeError as exc:
                assert exc.reason and (exc.offset is None or 0 <= exc.offset <= len(payload))
            else:
                up.to_dict()
        with contextlib.suppress(DecodeError):
            decode_downlink(payload, dialect=dialect)


@given(st.binary(max_size=600))
@FUZZ
def test_random_bytes(payload):
    _decode_all_ways(payload)


@given(st.binary(max_size=40).map(lambda b: bytes([0xED, 0x01, 0, 0, 0, 0]) + b))
@FUZZ
def test_random_history_records(payload):
    _decode_all_ways(payload)


def _mutate(data: st.DataObject, payload: bytes) -> bytes:
    buf = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[pos] = data.draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xED, 0x40, 0xEF]))
        elif op == "insert":
            buf.insert(pos, data.draw(st.integers(0, 255)))
        elif op == "delete" and buf:
            del buf[pos]
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


@given(data=st.data())
@FUZZ
def test_mutated_valid_frames(data):
    dialect = data.draw(st.sampled_from(list(Dialect)))
    live, records = data.draw(uplinks(dialect))
    from cth01.protocol import Uplink
    payload = encode_uplink(Uplink(dialect=dialect.value, items=live, history=records))
    _decode_all_ways(_mutate(data, payload))
