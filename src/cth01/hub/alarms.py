"""Alarm lifecycle rules: which alarm packet raises, repeats or clears which alarm.

Owns: turning one alarm packet (item + alarm type) into a lifecycle step on an alarm identified
by `key` (device item, channel, condition). The store applies the step:

  raise  -> a new alarm `active`, or the active one with the same key `repeated` (count + 1)
  clear  -> the active one `dismissed` by the device (cleared_at); a clear with no active
            alarm (raised while the hub was away) is kept as an already dismissed alarm
  power failure: the device sends it twice and falls silent, so it is dismissed by the first
            uplink that arrives `POWER_RESTORED_AFTER_S` or more after its last packet
  acknowledge (a user, through the API) is independent of the device's state.
  replayed  (a packet inside a stored record: retransmission after an outage, a history
            query) -> nothing when the same packet is stored already (within
            `REPLAY_MATCH_S` of it: the live packet carries the hub's reception time, the
            record the device's clock); a packet older than the newest one of its alarm is
            kept in that alarm's history without changing its state (a missed raise must not
            re-open an alarm the device cleared since); a newer one is applied as live.

Must never: touch storage or the clock.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

POWER_RESTORED_AFTER_S = 60.0
REPLAY_MATCH_S = 120.0


class Step(NamedTuple):
    key: str
    condition: str
    action: Literal["raise", "clear"]


_CLEARS = {
    "above_range_cleared": "above_range",
    "below_threshold_cleared": "below_threshold",
    "above_threshold_cleared": "above_threshold",
    "within_threshold_cleared": "within_threshold",
    "outside_threshold_cleared": "outside_threshold",
}


def step(item: str, alarm_type: str, channel: int | None) -> Step:
    """The lifecycle step of one alarm packet."""
    condition = _CLEARS.get(alarm_type, alarm_type)
    action: Literal["raise", "clear"] = "clear" if alarm_type in _CLEARS else "raise"
    return Step(f"{item}:{channel or 0}:{condition}", condition, action)
