"""Gap backfill: find missing periodic readings and ask the device for them.

Owns: what a gap is, and the rules of asking for it:
  * a gap is a stretch between two stored readings longer than 1.5 reporting intervals
    (or after the last one, up to `now - settle`); it starts half an interval after the
    reading before it and ends half an interval before the reading after it;
  * a gap is asked for only once it is older than `backfill_settle_s`, so that the device's
    own retransmission (after a network outage it replays what it could not send) goes first;
  * one history range query (5c, periodic records) per device at a time, covering at most
    300 reporting intervals (the device sends at most 300 records per query), and none while
    the device is still sending records (it paces them by its retrieval interval, c503):
    the next one waits until no record arrived for three retrieval intervals;
  * a gap whose period is now covered is `filled`; one asked for `MAX_ATTEMPTS` times, or that
    the device answers "nothing stored" (ef 7), is `unrecoverable`.
`find_gaps` is pure; `scan` applies the rules through the hub (store + downlink queue).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import Hub

MAX_RECORDS_PER_QUERY = 300
MAX_ATTEMPTS = 3
DEFAULT_RETRIEVAL_INTERVAL_S = 120  # the CTH01's factory c503


def find_gaps(times: list[int], interval_s: int, *, until: int | None = None
              ) -> list[tuple[int, int]]:
    """The gaps (start, end), Unix s, between sorted reading times (and after the last one, up
    to `until`)."""
    half = interval_s // 2
    out = []
    for a, b in itertools.pairwise(times):
        if b - a > 1.5 * interval_s:
            out.append((a + half, b - half))
    if times and until is not None and until - times[-1] > 1.5 * interval_s:
        out.append((times[-1] + half, until))
    return out


def query_span(gap: tuple[int, int], interval_s: int) -> tuple[int, int]:
    """The part of a gap one range query asks for (at most 300 records)."""
    start, end = gap
    return start, min(end, start + MAX_RECORDS_PER_QUERY * interval_s)


def _retrieval_interval(hub: Hub, dev_eui: str) -> int:
    for row in hub.store.config_shadow(dev_eui):
        if row["setting"] == "c503" and row["reported"]:
            return int(row["reported"].get("seconds") or DEFAULT_RETRIEVAL_INTERVAL_S)
    return DEFAULT_RETRIEVAL_INTERVAL_S


def scan(hub: Hub, now: float) -> int:
    """One backfill pass over every device the hub can send downlinks to; returns the number
    of queries queued."""
    cfg, store = hub.config, hub.store
    queued = 0
    for device in store.devices():
        if device.get("source") not in hub.sources or device.get("last_seen") is None:
            continue
        did, eui = int(device["id"]), device["dev_eui"]
        interval = int(device["reporting_interval_s"])
        until = int(now) - cfg.backfill_settle_s
        start = max(int(device["first_seen"]), int(now) - cfg.backfill_window_s)
        if until <= start:
            continue
        times = store.reading_times(did, start, until)
        current = find_gaps(times, interval, until=until)
        known = store.gaps(device_id=did)
        # close what is covered now
        for g in known:
            if g["status"] in ("open", "requested") and not any(
                    a < g["end_ts"] and b > g["start_ts"] for a, b in current):
                store.set_gap(did, g["start_ts"], status="filled")
        fresh = [(a, b) for a, b in current if not any(
            a < g["end_ts"] and b > g["start_ts"] for g in known)]
        store.save_gaps(did, fresh, now)
        pending = [d for d in store.downlinks(dev_eui=eui) if d["command"] ==
                   "query_history_range" and d["status"] in ("queued", "sent")]
        if pending:
            continue
        last = hub.last_history_at.get(eui)
        if last is not None and now - last < 3 * _retrieval_interval(hub, eui):
            continue
        for g in store.gaps(device_id=did):
            if g["status"] not in ("open", "requested"):
                continue
            if g["attempts"] >= MAX_ATTEMPTS or _refused(store, eui, g):
                store.set_gap(did, g["start_ts"], status="unrecoverable")
                continue
            # the part still missing inside this gap
            missing = [(a, b) for a, b in current if a < g["end_ts"] and b > g["start_ts"]]
            if not missing:
                continue
            a, b = query_span((max(missing[0][0], g["start_ts"]),
                               min(missing[0][1], g["end_ts"])), interval)
            hub.queue_downlink(eui, "query_history_range",
                               {"record_type": "periodic", "start": a, "end": b}, "backfill")
            store.set_gap(did, g["start_ts"], status="requested", requested_at=now,
                          attempts_add=1)
            queued += 1
            break
    return queued


def _refused(store: object, eui: str, gap: dict) -> bool:
    """Whether the device answered the last query for this gap with "nothing stored"."""
    for d in store.downlinks(dev_eui=eui, limit=20):  # type: ignore[attr-defined]
        if d["command"] == "query_history_range" and d["params"].get("start", -1) >= \
                gap["start_ts"] and d["params"].get("start", -1) < gap["end_ts"]:
            return d["status"] == "failed" and "history" in json.dumps(d["result"] or {})
    return False
