"""The device's flash: up to 20,000 records, oldest overwritten.

Owns: the stored records (periodic snapshots, alarms, monthly energy, monthly minimum and
maximum) as the device keeps them — a timestamp, a record type and the record's items already
laid out on the wire (firmware dialect, without the `ed` header), so a record costs what it
costs in flash (~100-200 bytes) and is replayed byte for byte. Point and range look-ups for
history queries (5b/5c), retransmission windows, clearing per type (5e), the twelve-month cap
on monthly records.

Must never: read a clock, decide what is stored (the firmware does), or encode items itself.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass

CAPACITY = 20_000
MONTHS_KEPT = 12
# Record types, numbered like the history-query type byte (5b/5c/5d/5e).
ALARM, PERIODIC, MONTHLY_ENERGY, MONTHLY_EXTREMES = 0, 1, 2, 3
TYPE_NAMES = ("alarm", "periodic", "monthly_energy", "monthly_extremes")


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record: `timestamp` (Unix s, UTC, the device's clock), `type` (0-3),
    `kind` ("energy" / "minimum" / "maximum" for monthly records, else None), `body` (the
    record's items on the wire, one bytes object per item, so a record too large for one
    uplink can be split at item boundaries)."""

    timestamp: int
    type: int
    body: tuple[bytes, ...]
    kind: str | None = None
    seq: int = 0


class RecordStore:
    """Records in the order they were written; at most `capacity` of them in all and at most
    `months_kept` monthly records of each monthly kind. Timestamps usually increase with the
    write order; look-ups do not rely on it (the clock may be set back by a time sync)."""

    def __init__(self, capacity: int = CAPACITY, months_kept: int = MONTHS_KEPT) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.months_kept = months_kept
        self._records: deque[Record] = deque()
        self._seq = 0
        self.overwritten = 0  # records dropped because the flash was full

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self):
        return iter(self._records)

    def add(self, timestamp: int, type_: int, body: tuple[bytes, ...], kind: str | None = None
            ) -> Record:
        self._seq += 1
        rec = Record(int(timestamp), type_, tuple(body), kind, self._seq)
        self._records.append(rec)
        if kind is not None:
            same = [r for r in self._records if r.type == type_ and r.kind == kind]
            if len(same) > self.months_kept:
                drop = {r.seq for r in same[: len(same) - self.months_kept]}
                self._records = deque(r for r in self._records if r.seq not in drop)
        while len(self._records) > self.capacity:
            self._records.popleft()
            self.overwritten += 1
        return rec

    def clear(self, type_: int | None = None) -> int:
        """Remove every record of a type (all when None); returns how many."""
        before = len(self._records)
        if type_ is None:
            self._records.clear()
        else:
            self._records = deque(r for r in self._records if r.type != type_)
        return before - len(self._records)

    def of_type(self, type_: int) -> list[Record]:
        """Records of a type, sorted by (timestamp, write order)."""
        return sorted((r for r in self._records if r.type == type_),
                      key=lambda r: (r.timestamp, r.seq))

    def range(self, type_: int, start: int, end: int, limit: int | None = None) -> list[Record]:
        """Records of a type with start <= timestamp <= end, oldest first, at most `limit`.
        Monthly types keep their energy/minimum/maximum records of one month together."""
        recs = self.of_type(type_)
        keys = [r.timestamp for r in recs]
        out = recs[bisect_left(keys, start):bisect_right(keys, end)]
        return out if limit is None else out[:limit]

    def nearest(self, type_: int, t: int, tolerance_s: int) -> list[Record]:
        """The record nearest to t within ±tolerance (the earlier one on a tie); for monthly
        types every record sharing that timestamp (energy, minimum and maximum of the month).
        Empty when nothing is close enough."""
        recs = self.range(type_, t - tolerance_s, t + tolerance_s)
        if not recs:
            return []
        best = min(recs, key=lambda r: (abs(r.timestamp - t), r.timestamp))
        return [r for r in recs if r.timestamp == best.timestamp] \
            if type_ in (MONTHLY_ENERGY, MONTHLY_EXTREMES) else [best]

    def after(self, type_: int, start_exclusive: int, end_inclusive: int) -> list[Record]:
        """Records of a type with start < timestamp <= end (a retransmission window)."""
        return [r for r in self.range(type_, start_exclusive, end_inclusive)
                if r.timestamp > start_exclusive]

    @property
    def size_bytes(self) -> int:
        """Flash used by the stored records (body + 6-byte header each)."""
        return sum(sum(map(len, r.body)) + 6 for r in self._records)
