"""A LoRaWAN network as the virtual devices see it: coverage, joins, MAC answers, downlinks.

Owns: which uplinks reach the network server and which are lost (scripted outages per
device), the answers the network gives to a device's MAC requests (JoinAccept 5 s after a
JoinRequest, LinkCheckAns and DeviceTimeAns 1 s after the request — only while the device is
in coverage), and Class C downlinks waiting to be delivered. Sans-IO like the devices: it is
told the time and returns what happens.

Must never: decode payloads, sleep, or talk to a real network server (the runner's sinks do).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .firmware import DeviceTimeRequest, JoinRequest, LinkCheckRequest, Output, UplinkFrame

JOIN_ACCEPT_DELAY_S = 5
MAC_ANSWER_DELAY_S = 1


@dataclass(frozen=True, slots=True)
class Delivery:
    """Something the network does to a device at `time`: `action` is join_accept,
    link_check_answer, device_time_answer or downlink."""

    time: int
    dev_eui: str
    action: str
    payload: bytes = b""
    f_port: int = 0


class Network:
    """Coverage and MAC behaviour for many devices."""

    def __init__(self) -> None:
        self._outages: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._all_outages: list[tuple[int, int]] = []
        self._pending: list[tuple[int, int, Delivery]] = []
        self._seq = 0
        self.delivered = 0
        self.lost = 0

    def outage(self, start: int, end: int, dev_euis: Iterable[str] | None = None) -> None:
        """No coverage in [start, end) for these devices (all when None)."""
        if end <= start:
            raise ValueError(f"an outage must end after it starts ({start}..{end})")
        if dev_euis is None:
            self._all_outages.append((start, end))
        else:
            for eui in dev_euis:
                self._outages[eui].append((start, end))

    def covered(self, dev_eui: str, t: int) -> bool:
        for start, end in self._all_outages:
            if start <= t < end:
                return False
        return all(not start <= t < end for start, end in self._outages.get(dev_eui, ()))

    def handle(self, outputs: Iterable[Output]) -> list[UplinkFrame]:
        """Device outputs in; the uplinks that reach the network server out. MAC requests in
        coverage are answered later (see `due`)."""
        arrived: list[UplinkFrame] = []
        for o in outputs:
            if not self.covered(o.dev_eui, o.time):
                if isinstance(o, UplinkFrame):
                    self.lost += 1
                continue
            if isinstance(o, UplinkFrame):
                arrived.append(o)
                self.delivered += 1
            elif isinstance(o, JoinRequest):
                self._push(Delivery(o.time + JOIN_ACCEPT_DELAY_S, o.dev_eui, "join_accept"))
            elif isinstance(o, LinkCheckRequest):
                self._push(Delivery(o.time + MAC_ANSWER_DELAY_S, o.dev_eui,
                                    "link_check_answer"))
            elif isinstance(o, DeviceTimeRequest):
                self._push(Delivery(o.time + MAC_ANSWER_DELAY_S, o.dev_eui,
                                    "device_time_answer"))
        return arrived

    def downlink(self, now: int, dev_eui: str, payload: bytes, f_port: int) -> None:
        """Queue a Class C downlink; it is delivered at the next step if in coverage."""
        self._push(Delivery(now, dev_eui, "downlink", bytes(payload), f_port))

    def due(self, now: int) -> list[Delivery]:
        """Everything the network does up to `now`, in time order; deliveries to a device out
        of coverage at that time are lost."""
        out = []
        while self._pending and self._pending[0][0] <= now:
            d = heapq.heappop(self._pending)[2]
            if self.covered(d.dev_eui, d.time):
                out.append(d)
        return out

    @property
    def next_time(self) -> int | None:
        return self._pending[0][0] if self._pending else None

    def deliver(self, now: int, devices: dict) -> list[Output]:
        """Carry out everything due up to `now` on the devices (DevEUI → VirtualCTH01);
        returns what the devices emitted in response."""
        outputs: list[Output] = []
        for d in self.due(now):
            dev = devices[d.dev_eui]
            if d.action == "downlink":
                outputs += dev.receive_downlink(d.time, d.payload, d.f_port)
            elif d.action == "device_time_answer":
                outputs += dev.device_time_answer(d.time, d.time)
            else:
                outputs += getattr(dev, d.action)(d.time)
        return outputs

    def _push(self, d: Delivery) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (d.time, self._seq, d))
