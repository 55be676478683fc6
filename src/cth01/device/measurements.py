"""One second of what the CTH01's inputs see, for one device or a whole fleet.

Owns: `Measurements`, the value every measurement source hands to the firmware twin — the fast
load model (`loads.py`), the waveform metering engine (`from_second_arrays`) or a test. Arrays
are shaped (D, ...) for D devices. Values are what the device's inputs measure *before* the
device applies its own settings (current direction, CT range, grouping): a CT clamped against
its arrow shows negative power here, and the device's `direction = reverse` setting flips it.

Must never: know about frames, settings or time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

CHANNELS = 12
PHASES = 3


@dataclass
class Measurements:
    """Per-second RMS values of D devices (float64 arrays).

    current_a (D, 12) · voltage_v (D, 3) · active_power_w, reactive_power_var,
    apparent_power_va (D, 12) · thdi_pct (D, 12) · thdv_pct (D, 3) · unbalance_pct (D,) ·
    temperature_c (D,) NaN where no NTC probe is plugged in.
    """

    current_a: np.ndarray
    voltage_v: np.ndarray
    active_power_w: np.ndarray
    reactive_power_var: np.ndarray
    apparent_power_va: np.ndarray
    thdi_pct: np.ndarray
    thdv_pct: np.ndarray
    unbalance_pct: np.ndarray
    temperature_c: np.ndarray

    @property
    def devices(self) -> int:
        return int(self.current_a.shape[0])

    @classmethod
    def zeros(cls, devices: int = 1) -> Measurements:
        """A de-energised installation: no voltage, no current, no temperature probe."""
        z12, z3 = np.zeros((devices, CHANNELS)), np.zeros((devices, PHASES))
        return cls(current_a=z12, voltage_v=z3, active_power_w=z12.copy(),
                   reactive_power_var=z12.copy(), apparent_power_va=z12.copy(),
                   thdi_pct=z12.copy(), thdv_pct=z3.copy(), unbalance_pct=np.zeros(devices),
                   temperature_c=np.full(devices, np.nan))

    @classmethod
    def constant(cls, *, devices: int = 1, current_a: float | np.ndarray = 0.0,
                 voltage_v: float | np.ndarray = 230.0, power_factor: float = 1.0,
                 thdi_pct: float | np.ndarray = 0.0, thdv_pct: float | np.ndarray = 0.0,
                 unbalance_pct: float = 0.0, temperature_c: float = float("nan")
                 ) -> Measurements:
        """Steady sinusoidal loads: every channel paired with voltage phase (k mod 3), P = V·I·PF,
        Q = V·I·sin(acos PF) (inductive). Handy for tests and examples."""
        cur = np.broadcast_to(np.asarray(current_a, float), (devices, CHANNELS)).copy()
        volt = np.broadcast_to(np.asarray(voltage_v, float), (devices, PHASES)).copy()
        v_ch = volt[:, np.arange(CHANNELS) % PHASES]
        s = v_ch * np.abs(cur)
        p = s * power_factor * np.sign(cur)
        q = s * np.sqrt(max(0.0, 1.0 - power_factor ** 2)) * np.sign(cur)
        def full(x: float | np.ndarray, width: int) -> np.ndarray:
            return np.broadcast_to(np.asarray(x, float), (devices, width)).copy()

        return cls(current_a=np.abs(cur), voltage_v=volt, active_power_w=p,
                   reactive_power_var=q, apparent_power_va=s,
                   thdi_pct=full(thdi_pct, CHANNELS), thdv_pct=full(thdv_pct, PHASES),
                   unbalance_pct=np.full(devices, float(unbalance_pct)),
                   temperature_c=np.full(devices, float(temperature_c)))

    def row(self, d: int) -> Measurements:
        """Device d alone, as a one-device batch (views, not copies)."""
        return Measurements(**{f.name: getattr(self, f.name)[d:d + 1] for f in fields(self)})

    def check(self) -> None:
        """Raise ValueError when a shape does not match the device count."""
        n = self.devices
        shapes = {"current_a": (n, CHANNELS), "voltage_v": (n, PHASES),
                  "active_power_w": (n, CHANNELS), "reactive_power_var": (n, CHANNELS),
                  "apparent_power_va": (n, CHANNELS), "thdi_pct": (n, CHANNELS),
                  "thdv_pct": (n, PHASES), "unbalance_pct": (n,), "temperature_c": (n,)}
        for name, shape in shapes.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"Measurements.{name}: shape {got}, expected {shape}")


def from_second_arrays(arrays: object, second: int) -> Measurements:
    """One second of `cth01.metering.meter_batch` output as device inputs. The metering engine
    already applied the CT direction of its own MeterConfig; meter with every channel forward
    so that the twin's direction setting is the one that counts."""
    a = arrays
    return Measurements(
        current_a=np.asarray(a.current_rms_a[:, second]),
        voltage_v=np.asarray(a.voltage_rms_v[:, second]),
        active_power_w=np.asarray(a.active_power_w[:, second]),
        reactive_power_var=np.asarray(a.reactive_power_var[:, second]),
        apparent_power_va=np.asarray(a.apparent_power_va[:, second]),
        thdi_pct=np.asarray(a.thdi_pct[:, second]),
        thdv_pct=np.asarray(a.thdv_pct[:, second]),
        unbalance_pct=np.asarray(a.unbalance_pct[:, second]),
        temperature_c=np.asarray(a.temperature_c[:, second], float),
    )
