"""The simulation loop: a sans-IO `Fleet`, paced against a wall clock, into a `Sink`.

Owns: turning simulated seconds into wall time (or none: unpaced), feeding the sink's
downlinks to the fleet, handing uplinks to the sink in time order, and the run's statistics.

Pacing: simulated second `start + i` is due at wall time `w0 + i / speed` (w0 = the clock
when the run began). The loop sleeps only until the next due time and never when it is behind;
since every due time is computed from w0, a late second is caught up by running the following
ones back to back, without drift. The clock and the sleep are injected, so tests run paced
without sleeping.

Order: an uplink stamped later than the second that produced it (the firmware sends some
frames one or more seconds apart) is held back until its second, so the sink sees every
uplink in time order; whatever is still held when the run ends is sent at the end.

Must never: decide what devices do (that is `cth01.device`) or know a transport (sinks do).
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cth01.device import Fleet, UplinkFrame

from .sinks import Sink


@dataclass
class RunStats:
    """What a run did. `lost_uplinks` are uplinks sent while out of coverage (this run)."""

    devices: int
    simulated_s: int = 0
    duration_s: int = 0
    uplinks_by_kind: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    lost_uplinks: int = 0
    downlinks: int = 0
    downlinks_rejected: int = 0
    interrupted: bool = False

    @property
    def uplinks(self) -> int:
        return sum(self.uplinks_by_kind.values())

    @property
    def dev_seconds_per_wall_s(self) -> float:
        """Device-seconds simulated per wall second (the throughput)."""
        return self.devices * self.simulated_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second actually achieved."""
        return self.simulated_s / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.uplinks_by_kind.items()))
        head = "interrupted after" if self.interrupted else "simulated"
        return (f"{head} {self.simulated_s} s of {self.devices} device(s) in "
                f"{self.wall_s:.2f} s wall (×{self.speed:,.0f}, "
                f"{self.dev_seconds_per_wall_s:,.0f} device-s/s); uplinks {self.uplinks}"
                f"{f' ({kinds})' if kinds else ''}; lost {self.lost_uplinks}; downlinks "
                f"{self.downlinks} (rejected {self.downlinks_rejected})")


def run(fleet: Fleet, sink: Sink, *, start: int, duration_s: int, speed: float | None = None,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[RunStats], None] | None = None, progress_every_s: float = 0.25,
        log: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> RunStats:
    """Run `fleet` from `start` (Unix s) for `duration_s` simulated seconds into `sink`.

    A fleet that has not started is powered on at `start`; the run then ticks `start + 1` ...
    `start + duration_s`, so consecutive runs (`start` = previous start + duration) continue
    one timeline. `speed` is simulated seconds per wall second (None: as fast as possible).
    `progress(stats)` is called at most every `progress_every_s` wall seconds and at the end.
    Ctrl-C (KeyboardInterrupt), or `should_stop()` turning true (checked every simulated
    second), ends the run early: the stats come back with `interrupted`.
    The sink is not closed.
    """
    if duration_s < 0:
        raise ValueError(f"duration_s must be ≥ 0, got {duration_s}")
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0 (or None for unpaced), got {speed}")
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    stats = RunStats(devices=len(fleet), duration_s=duration_s)
    lost0 = fleet.network.lost
    held: list[tuple[int, int, UplinkFrame]] = []
    seq = 0

    def hand_over(frames: list[UplinkFrame], until: int | None) -> None:
        nonlocal seq
        for f in frames:
            seq += 1
            heapq.heappush(held, (f.time, seq, f))
        while held and (until is None or held[0][0] <= until):
            f = heapq.heappop(held)[2]
            sink.send(f, fleet)
            stats.uplinks_by_kind[f.kind] += 1

    w0 = clock()
    last_progress = w0
    try:
        if not fleet.started:
            hand_over(fleet.start(start), start)
        for i in range(1, duration_s + 1):
            t = start + i
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt
            if speed is not None:
                delay = w0 + i / speed - clock()
                if delay > 0:
                    sleep(delay)
            for d in sink.poll_downlinks():
                try:
                    fleet.send_downlink(t, d.dev_eui, d.payload, d.f_port)
                    stats.downlinks += 1
                except KeyError:
                    stats.downlinks_rejected += 1
                    say(f"downlink for {d.dev_eui} rejected: no such device in the fleet")
            hand_over(fleet.tick(t), t)
            stats.simulated_s = i
            if progress is not None:
                now = clock()
                if now - last_progress >= progress_every_s:
                    last_progress = now
                    stats.wall_s = now - w0
                    stats.lost_uplinks = fleet.network.lost - lost0
                    progress(stats)
        hand_over([], None)
    except KeyboardInterrupt:
        stats.interrupted = True
        hand_over([], None)  # what already reached the network is not dropped
    stats.wall_s = clock() - w0
    stats.lost_uplinks = fleet.network.lost - lost0
    if progress is not None:
        progress(stats)
    return stats
