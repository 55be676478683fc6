"""Many virtual CTH01s in one process: one Bank, one load model, one Network.

Owns: building a fleet (identities, the wiring of each site from the load model, the settings
an integrator would set), and the fleet's second: network deliveries, mains blackouts, one
vectorised `Bank.step` for every device, then the firmware of the few devices that woke up.
Sans-IO: `tick(now)` returns the uplinks that reached the network server; the runner decides
how fast time goes and where the uplinks go.

Must never: sleep, read the wall clock, or do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cth01.protocol import items

from .bank import Bank
from .firmware import Output, UplinkFrame, VirtualCTH01
from .loads import PROFILES, LoadModel
from .measurements import Measurements
from .network import Network
from .settings import GROUPS, Identity, default_item


class Fleet:
    """`devices` virtual CTH01s. Profiles cycle through `profiles` (office, apartment,
    datacentre, workshop, pv). `storage` switches on data storage and retransmission on every
    device, as an integrator who wants gap-free data does (the factory default is off)."""

    def __init__(self, devices: int, *, profiles: Sequence[str] = PROFILES, seed: int = 0,
                 first_number: int = 0, time_zone_min: int = 0, storage: bool = True,
                 reporting_interval_min: int = 10, network: Network | None = None) -> None:
        if devices < 1:
            raise ValueError(f"a fleet needs at least one device, got {devices}")
        unknown = set(profiles) - set(PROFILES)
        if unknown or not profiles:
            raise ValueError(f"unknown load profiles {sorted(unknown)}; known: {PROFILES}")
        self.bank = Bank(devices)
        self.loads = LoadModel([profiles[k % len(profiles)] for k in range(devices)],
                               seed=seed, utc_offset_s=time_zone_min * 60)
        self.devices = [VirtualCTH01(Identity.numbered(first_number + k), bank=self.bank,
                                     row=k) for k in range(devices)]
        self.by_eui = {d.dev_eui: d for d in self.devices}
        self.network = network or Network()
        self._blackout = np.zeros(devices, bool)
        self.started = False
        for k, dev in enumerate(self.devices):
            self._configure(dev, k, time_zone_min, storage, reporting_interval_min)

    def _configure(self, dev: VirtualCTH01, k: int, time_zone_min: int, storage: bool,
                   reporting_interval_min: int) -> None:
        iface = self.loads.interface(k)
        s = dev.settings
        s.apply(default_item("voltage_interface", wiring=iface.wiring))
        for g, group in enumerate(GROUPS):
            kw = {"circuit": iface.circuits[g]}
            for j in range(3):
                kw[f"ct_range_{j + 1}"] = iface.ct_ranges[3 * g + j]
            s.apply(default_item(f"current_interface_{group}", **kw))
        s.apply(items.TimeZone(offset_min=time_zone_min))
        s.apply(items.ReportingInterval(minutes=reporting_interval_min))
        if storage:
            s.apply(items.DataStorage(enabled=True))
            s.apply(items.Retransmission(enabled=True))
        dev._sync_bank()

    def __len__(self) -> int:
        return len(self.devices)

    def start(self, now: int) -> list[UplinkFrame]:
        """Power every device on (they start joining)."""
        self.started = True
        outputs: list[Output] = []
        for dev in self.devices:
            outputs += dev.power_on(now)
        return self.network.handle(outputs)

    def send_downlink(self, now: int, dev_eui: str, payload: bytes, f_port: int = 85) -> None:
        """Queue a downlink from the network server; unknown DevEUIs raise KeyError."""
        if dev_eui.lower() not in self.by_eui:
            raise KeyError(f"no device {dev_eui} in this fleet")
        self.network.downlink(now, dev_eui.lower(), payload, f_port)

    def tick(self, now: int, measurements: Measurements | None = None) -> list[UplinkFrame]:
        """One second of the whole fleet (coarser steps work: timers fire at their own time)."""
        if not self.started:
            self.start(now)
        outputs: list[Output] = self.network.deliver(now, self.by_eui)
        blackout = self.loads.blackout_mask(now)
        changed = np.flatnonzero(blackout != self._blackout)
        for k in changed:
            dev = self.devices[k]
            outputs += dev.power_off(now) if blackout[k] else dev.power_on(now)
        self._blackout = blackout
        m = measurements if measurements is not None else self.loads.second(now)
        rows, thr, over = self.bank.step(now, m)
        for i, row in enumerate(rows.tolist()):
            outputs += self.devices[row].run(now, thr[i], over[i])
        if len(outputs) > 1:
            outputs.sort(key=lambda o: o.time)
        return self.network.handle(outputs)

    @property
    def memory_bytes(self) -> int:
        """Bytes held in the bank arrays and the stored records (not Python object overhead)."""
        bank = sum(v.nbytes for v in vars(self.bank).values() if isinstance(v, np.ndarray))
        return bank + sum(d.storage.size_bytes for d in self.devices)
