"""What real sensors do to ideal waveforms: CT ratio error and phase displacement, the voltage
divider's error, ADC full scale, resolution, noise and clipping.

Owns: the `SensorModel` (a documented default, `DEFAULT_SENSORS`) and `apply`, a pure function
from an ideal `Capture` to the capture a CTH01 would digitise. Reproducible: all randomness
comes from `np.random.Generator`s seeded by `(seed, stream, …)`.

Never: measures (no RMS/power results leave this module), touches global random state, or
imports anything of ours outside `cth01.metering.capture`.

Default model (`DEFAULT_SENSORS`)
---------------------------------
Split-core CTs 100 / 300 / 500 / 1000 A (`SPLIT_CORE`): a typical IEC 61869-2 class 0.5 unit,
errors about a third to a half of the class limits and the same sign as a real core's
(magnetising current: reads low, secondary leads), after the factory phase calibration a
metering device applies:

    current, % of rated          5      20     100    120
    ratio error, %            −0.50  −0.30  −0.20  −0.20   (class 0.5 limit ±1.5/0.75/0.5/0.5)
    phase displacement, min     +15    +10     +5     +5   (class 0.5 limit ±90/45/30/30)

Rogowski coil 4000 A (`ROGOWSKI`, IEC 61869-10 spirit): air-cored, so linear — a positional
ratio error of −0.5 % (−0.6 % at 5 %) and a small integrator phase lead of 4′ (8′ at 5 %).
Between points the errors are interpolated in log(current); below 5 % and above 120 % they
hold the end values. Each CT unit adds its own offset: ratio N(0, 0.05 %), phase N(0, 1′),
clipped at 3 σ, drawn from `seed` (`ct_errors` returns them).

Phase displacement is applied as a time advance of δ/(2π·f_nominal) (f_nominal 50 or 60 Hz,
detected from the voltage unless given): exact at the fundamental, h·δ at harmonic h (more
than a real CT shows there — conservative). Ratio error and displacement are evaluated per
one-second block from that block's RMS current.

Voltage: ratio error +0.1 %, no phase displacement. ADC: 16 bits; current full scale ±(2 × the
range's rated RMS × √2) (crest factor 2.83 at rated current), voltage full scale ±800 V;
Gaussian noise of 1 LSB RMS on every channel; samples beyond full scale clip, as an ADC does.
The NTC temperature passes through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .capture import CURRENT_CHANNELS, Capture, LocatedError

SPLIT_CORE_RANGES_A = (100, 300, 500, 1000)
ROGOWSKI_RANGE_A = 4000
CT_RANGES_A = (*SPLIT_CORE_RANGES_A, ROGOWSKI_RANGE_A)
_STREAM_UNITS, _STREAM_NOISE = 0, 1


class SensorError(LocatedError):
    """A sensor model that makes no sense (bad range, tables of different lengths, ...)."""


@dataclass(frozen=True)
class CtAccuracy:
    """A current sensor's ratio error (%, + reads high) and phase displacement (minutes of arc,
    + secondary leads) at `current_pct` of its rated current."""

    current_pct: tuple[float, ...]
    ratio_error_pct: tuple[float, ...]
    phase_displacement_min: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.current_pct)
        if n == 0 or len(self.ratio_error_pct) != n or len(self.phase_displacement_min) != n:
            raise SensorError("current_pct, ratio_error_pct and phase_displacement_min need "
                              "the same, non-zero length", where="CtAccuracy")
        values = (*self.current_pct, *self.ratio_error_pct, *self.phase_displacement_min)
        if not all(math.isfinite(v) for v in values):
            raise SensorError("all values must be finite", where="CtAccuracy")
        if any(p <= 0 for p in self.current_pct) or list(self.current_pct) != sorted(
                set(self.current_pct)):
            raise SensorError("current_pct must be positive and strictly increasing",
                              where="CtAccuracy")

    def at(self, current_pct: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(ratio error %, phase displacement min) at `current_pct` of rated current."""
        x = np.log(np.maximum(np.asarray(current_pct, dtype=float), 1e-12))
        points = np.log(np.array(self.current_pct))
        return (np.interp(x, points, self.ratio_error_pct),
                np.interp(x, points, self.phase_displacement_min))


SPLIT_CORE = CtAccuracy((5.0, 20.0, 100.0, 120.0), (-0.5, -0.3, -0.2, -0.2),
                        (15.0, 10.0, 5.0, 5.0))
ROGOWSKI = CtAccuracy((5.0, 20.0, 100.0, 120.0), (-0.6, -0.5, -0.5, -0.5), (8.0, 4.0, 4.0, 4.0))


@dataclass(frozen=True)
class SensorModel:
    """Sensor chain of one CTH01. `current_range_a`: CT range per channel 1–12 (100, 300, 500,
    1000 A split-core or 4000 A Rogowski). Everything else: see the module docstring."""

    current_range_a: tuple[int, ...] = (100,) * CURRENT_CHANNELS
    split_core: CtAccuracy = SPLIT_CORE
    rogowski: CtAccuracy = ROGOWSKI
    ratio_spread_pct: float = 0.05
    phase_spread_min: float = 1.0
    voltage_ratio_error_pct: float = 0.1
    voltage_phase_displacement_min: float = 0.0
    adc_bits: int = 16
    current_full_scale_multiple: float = 2.0
    voltage_full_scale_v: float = 800.0
    noise_lsb: float = 1.0
    nominal_frequency_hz: float | None = None

    def __post_init__(self) -> None:
        where = "SensorModel"
        ranges = tuple(self.current_range_a)
        if len(ranges) != CURRENT_CHANNELS or any(r not in CT_RANGES_A for r in ranges):
            raise SensorError(f"current_range_a needs 12 values from {CT_RANGES_A}",
                              where=where)
        object.__setattr__(self, "current_range_a", ranges)
        if not (isinstance(self.adc_bits, int) and 8 <= self.adc_bits <= 32):
            raise SensorError("adc_bits must be a whole number within 8–32", where=where)
        positive = {"current_full_scale_multiple": self.current_full_scale_multiple,
                    "voltage_full_scale_v": self.voltage_full_scale_v}
        non_negative = {"ratio_spread_pct": self.ratio_spread_pct,
                        "phase_spread_min": self.phase_spread_min,
                        "noise_lsb": self.noise_lsb}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise SensorError(f"{name} must be positive", where=where)
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise SensorError(f"{name} must be ≥ 0", where=where)
        for name in ("voltage_ratio_error_pct", "voltage_phase_displacement_min"):
            if not math.isfinite(getattr(self, name)):
                raise SensorError(f"{name} must be finite", where=where)
        if self.nominal_frequency_hz not in (None, 50.0, 60.0):
            raise SensorError("nominal_frequency_hz must be 50, 60 or None (detect)",
                              where=where)

    def accuracy(self, channel: int) -> CtAccuracy:
        """Error curve of channel 1–12's CT."""
        rng = self.current_range_a[channel - 1]
        return self.rogowski if rng == ROGOWSKI_RANGE_A else self.split_core

    def current_full_scale_a(self, channel: int) -> float:
        """ADC full scale (peak amperes) of channel 1–12."""
        return self.current_range_a[channel - 1] * math.sqrt(2) * self.current_full_scale_multiple

    def current_lsb_a(self, channel: int) -> float:
        return 2 * self.current_full_scale_a(channel) / 2 ** self.adc_bits

    @property
    def voltage_lsb_v(self) -> float:
        return 2 * self.voltage_full_scale_v / 2 ** self.adc_bits


DEFAULT_SENSORS = SensorModel()


def unit_offsets(model: SensorModel = DEFAULT_SENSORS, *,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each CT unit's own (ratio %, phase min) offsets, shape (12,), clipped at 3 σ."""
    z = np.clip(np.random.default_rng([_seed(seed), _STREAM_UNITS]).standard_normal(
        (2, CURRENT_CHANNELS)), -3, 3)
    return z[0] * model.ratio_spread_pct, z[1] * model.phase_spread_min


def ct_errors(current_rms_a: np.ndarray | float, model: SensorModel = DEFAULT_SENSORS, *,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ratio error %, phase displacement min) of the 12 CTs, unit offsets included, at
    `current_rms_a` (scalar or (12,) or (..., 12) amperes)."""
    current = np.asarray(current_rms_a, dtype=float)
    ratio = np.empty(np.broadcast_shapes(current.shape, (CURRENT_CHANNELS,)))
    phase = np.empty_like(ratio)
    ranges = np.array(model.current_range_a, dtype=float)
    pct = 100 * np.broadcast_to(current, ratio.shape) / ranges
    for c in range(CURRENT_CHANNELS):
        ratio[..., c], phase[..., c] = model.accuracy(c + 1).at(pct[..., c])
    d_ratio, d_phase = unit_offsets(model, seed=seed)
    return ratio + d_ratio, phase + d_phase


def apply(capture: Capture, model: SensorModel = DEFAULT_SENSORS, *, seed: int = 0,
          start_s: int = 0) -> Capture:
    """The capture as the device's sensors and ADC would deliver it (a new Capture).

    Noise for second k is drawn from `(seed, 1, start_s + k)`, so applying the model to
    consecutive one-second captures with `start_s = k` gives the same noise as one call on
    the whole (the interpolation differs only in the two samples at each cut)."""
    if not isinstance(capture, Capture):
        raise SensorError(f"expected a Capture, got {type(capture).__name__}", where="apply")
    if not isinstance(model, SensorModel):
        raise SensorError(f"expected a SensorModel, got {type(model).__name__}",
                          where="apply")
    seed = _seed(seed)
    rate = capture.sample_rate_hz
    block = max(1, round(rate))
    n = capture.samples
    f_nominal = model.nominal_frequency_hz or _nominal_frequency(capture)
    samples_per_min = rate / (2 * math.pi * f_nominal) * math.radians(1 / 60)

    starts = np.arange(0, n, block)
    current = capture.current
    if n:
        square = np.add.reduceat(current * current, starts, axis=1)
        lengths = np.diff(np.append(starts, n))
        rms = np.sqrt(square / lengths).T  # (blocks, 12)
        ratio_pct, phase_min = ct_errors(rms, model, seed=seed)
        gain = np.repeat((1 + ratio_pct / 100).T, lengths, axis=1)
        advance = np.repeat(phase_min.T * samples_per_min, lengths, axis=1)
        current = gain * _advance(current, advance)
        v_gain = 1 + model.voltage_ratio_error_pct / 100
        v_advance = np.full((1, n), model.voltage_phase_displacement_min * samples_per_min)
        voltage = v_gain * _advance(capture.voltage, v_advance)
    else:
        voltage = capture.voltage

    v_lsb = np.full((3, 1), model.voltage_lsb_v)
    i_lsb = np.array([[model.current_lsb_a(c + 1)] for c in range(CURRENT_CHANNELS)])
    lsb = np.concatenate([v_lsb, i_lsb])
    noisy = np.concatenate([voltage, current])
    if n and model.noise_lsb:
        noise = np.empty_like(noisy)
        for k, start in enumerate(starts):
            rng = np.random.default_rng([seed, _STREAM_NOISE, start_s + k])
            stop = min(start + block, n)
            noise[:, start:stop] = rng.standard_normal((15, stop - start))
        noisy += noise * (model.noise_lsb * lsb)
    top = 2 ** (model.adc_bits - 1)
    codes = np.clip(np.round(noisy / lsb), -top, top - 1)
    digitised = codes * lsb
    return Capture(digitised[:3], digitised[3:], rate, capture.temperature_c)


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SensorError(f"seed must be a whole number ≥ 0, got {seed!r}", where="apply")
    return int(seed)


def _advance(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """x(n + d[n]) per channel by 4-point Lagrange interpolation (|d| < a few samples)."""
    if not np.any(d):
        return x.copy()
    pad = 3 + int(np.ceil(np.abs(d).max()))
    xp = np.pad(x, ((0, 0), (pad, pad)), mode="reflect", reflect_type="odd") if x.shape[
        1] > pad else np.pad(x, ((0, 0), (pad, pad)), mode="edge")
    d = np.broadcast_to(d, x.shape)
    base = np.floor(d)
    f = d - base
    index = np.arange(x.shape[1]) + pad + base.astype(int)
    rows = np.arange(x.shape[0])[:, None]
    w = ((-f * (f - 1) * (f - 2) / 6), ((f + 1) * (f - 1) * (f - 2) / 2),
         (-(f + 1) * f * (f - 2) / 2), ((f + 1) * f * (f - 1) / 6))
    return sum(wk * xp[rows, index + k - 1] for k, wk in enumerate(w))


def _nominal_frequency(capture: Capture) -> float:
    """50 or 60 Hz: the nearer to the strongest voltage component within 40–70 Hz."""
    n = min(capture.samples, max(1, round(capture.sample_rate_hz)))
    if n < 16:
        return 50.0
    v = capture.voltage[:, :n]
    k = int(np.argmax((v * v).sum(axis=1)))
    spectrum = np.abs(np.fft.rfft(v[k] * np.hanning(n)))
    freqs = np.fft.rfftfreq(n, 1 / capture.sample_rate_hz)
    band = (freqs >= 40) & (freqs <= 70)
    if not band.any() or spectrum[band].max() == 0:
        return 50.0
    peak = freqs[band][np.argmax(spectrum[band])]
    return 50.0 if abs(peak - 50) <= abs(peak - 60) else 60.0
