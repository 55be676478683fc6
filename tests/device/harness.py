"""A bench for one virtual CTH01: the device, a Network, and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cth01.device import Measurements, Network, UplinkFrame, VirtualCTH01
from cth01.device.settings import Identity, default_item
from cth01.protocol import Item, Uplink, decode, items

T0 = 1767225600  # 2026-01-01T00:00:00Z


@dataclass
class Rx:
    """A delivered uplink, decoded."""

    frame: UplinkFrame
    up: Uplink

    @property
    def t(self) -> int:
        return self.frame.time

    @property
    def kind(self) -> str:
        return self.frame.kind

    def names(self) -> list[str]:
        return [i.command_name for i in self.up.items]


@dataclass
class Bench:
    device: VirtualCTH01
    network: Network = field(default_factory=Network)
    now: int = T0
    measurements: Measurements = field(default_factory=lambda: Measurements.constant(
        current_a=10.0, temperature_c=25.0))
    received: list[Rx] = field(default_factory=list)
    other: list = field(default_factory=list)

    @classmethod
    def joined(cls, *, settings: Iterable[Item] = (), storage: bool = False,
               ct: str = "100A", three_phase: str = "", start: int = T0, **kw) -> Bench:
        """A device wired with `ct` CTs on every channel (groups in `three_phase` three-phase),
        configured with `settings`, powered and joined at `start`."""
        dev = VirtualCTH01(Identity.numbered(1))
        for g in "abcd":
            dev.settings.apply(default_item(
                f"current_interface_{g}", circuit="three_phase" if g in three_phase
                else "single_phase", ct_range_1=ct, ct_range_2=ct, ct_range_3=ct))
        if storage:
            dev.settings.apply(items.DataStorage(enabled=True))
            dev.settings.apply(items.Retransmission(enabled=True))
        for item in settings:
            dev.settings.apply(item)
        dev._sync_bank()
        bench = cls(device=dev, now=start, **kw)
        bench._handle(dev.power_on(start))
        bench.run(40)  # joined at +5 s, the four basic-information packets until +35 s
        assert dev.state == "joined"
        return bench

    def _handle(self, outputs: list) -> None:
        for f in self.network.handle(outputs):
            self.received.append(Rx(f, decode(f.payload, dialect="firmware")))
        self.other += [o for o in outputs if not isinstance(o, UplinkFrame)]

    def run(self, seconds: int, step: int = 1, m: Measurements | None = None) -> list[Rx]:
        """Advance the clock; returns the uplinks delivered meanwhile."""
        if m is not None:
            self.measurements = m
        first = len(self.received)
        end = self.now + seconds
        while self.now < end:
            self.now = min(self.now + step, end)
            self._handle(self.network.deliver(self.now, {self.device.dev_eui: self.device}))
            self._handle(self.device.tick(self.now, self.measurements))
        return self.received[first:]

    def downlink(self, payload: bytes | str, wait: int = 5) -> list[Rx]:
        raw = bytes.fromhex(payload) if isinstance(payload, str) else bytes(payload)
        self.network.downlink(self.now, self.device.dev_eui, raw, 85)
        return self.run(wait)


def of_kind(rxs: list[Rx], kind: str) -> list[Rx]:
    return [r for r in rxs if r.kind == kind]
