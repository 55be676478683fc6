"""Sampled waveforms of one CTH01: what the metering engine reads.

Owns: the `Capture` value (3 voltage and 12 current channels sampled together) and, later in
this module, loading and saving captures (.npz, .wav, .csv). No metering maths here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOLTAGE_CHANNELS = 3
CURRENT_CHANNELS = 12


class CaptureError(ValueError):
    """A capture that cannot be metered (wrong shape, rate, non-finite samples, bad file)."""


@dataclass(frozen=True)
class Capture:
    """Simultaneous samples: `voltage` (3, N) in volts (L1-L3 as wired: phase-to-neutral for
    3P4W, line-to-line for 3P3W), `current` (12, N) in amperes (channels 1-12 as the CTs
    deliver them, before the configured direction is applied), at `sample_rate_hz`
    (6000-8000 Hz on the device). `temperature_c` optionally holds one raw NTC reading per
    second (before the calibration offset)."""

    voltage: np.ndarray
    current: np.ndarray
    sample_rate_hz: float
    temperature_c: np.ndarray | None = None

    def __post_init__(self) -> None:
        v, i = np.asarray(self.voltage), np.asarray(self.current)
        if v.ndim != 2 or v.shape[0] != VOLTAGE_CHANNELS:
            raise CaptureError(f"voltage must be shaped (3, N), got {v.shape}")
        if i.ndim != 2 or i.shape[0] != CURRENT_CHANNELS:
            raise CaptureError(f"current must be shaped (12, N), got {i.shape}")
        if v.shape[1] != i.shape[1]:
            raise CaptureError(f"voltage has {v.shape[1]} samples, current {i.shape[1]}")
        if not 1000 <= self.sample_rate_hz <= 100_000:
            raise CaptureError(f"sample rate {self.sample_rate_hz} Hz is not plausible")
        if not (np.isfinite(v).all() and np.isfinite(i).all()):
            raise CaptureError("samples must be finite numbers")
        object.__setattr__(self, "voltage", v.astype(np.float64, copy=False))
        object.__setattr__(self, "current", i.astype(np.float64, copy=False))

    @property
    def samples(self) -> int:
        return int(self.voltage.shape[1])

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate_hz
