"""The measurement chain of a CTH01: sampled waveforms in, what the device reports every second out.

Owns: per-second RMS, active / reactive / apparent power, power factor, THD, voltage unbalance,
frequency tracking, group totals, over-range flags, calibrated temperature (`meter_batch`,
vectorised across devices and seconds), the exact energy registers (`EnergyRegisters`), and
the streaming single-device `Meter` that buffers partial seconds and returns `SecondReport`s.
The definitions (and the standards they follow) are in docs/metering.md.

Must never: read files, clocks or the network; import anything of ours outside
`cth01.metering`; loop in Python over channels or devices on the per-sample path (numpy
batches over devices x seconds x channels); accumulate energy in floating point.

Theory of operation, per device-second of N = fs samples:
1. Spectra. Each second is cut into 5 frames of 200 ms — 10 nominal cycles at 50 Hz, 12 at
   60 Hz (IEC 61000-4-7's window) — and every channel of every frame goes through one batched
   `rfft` (5 Hz bins).
2. Frequency. The strongest voltage channel (else current channel) gives the frequency by
   Hann-window interpolated DFT (two-bin ratio) in each frame, averaged over the second.
3. Harmonic phasors at the *tracked* frequencies h*f (h = 1..50): the Hann window is applied
   in the frequency domain (a 3-tap kernel on the rectangular bins) and the complex amplitude
   of each harmonic is the least-squares fit of the window's exact response to the two bins
   around h*f/5 Hz. This synchronises the analysis in frequency instead of in time, so every
   device keeps one FFT length and one batched call.
4. Time domain over the largest whole number of cycles in the second (the tracked frequency
   gives its length): sums of v*v, v*i and i*i (BLAS), from which RMS, P, S per channel; the
   full-second sum of v*i is the active energy, so energy integrates every sample.
5. Per-channel voltage = a fixed linear combination of the three measured voltages (the
   pairing matrix): the paired phase for single-phase channels, the phase (3P4W) or the
   artificial star-point voltage (3P3W) for three-phase groups. Everything per channel is
   then a tiny einsum on the sums and phasors above.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .capture import CURRENT_CHANNELS, VOLTAGE_CHANNELS, Capture, CaptureError
from .config import GROUPS, ConfigError, MeterConfig

#: Frames per second of the harmonic analysis: 200 ms = 10 cycles at 50 Hz, 12 at 60 Hz.
FRAMES_PER_SECOND = 5
#: Highest harmonic order in THD (IEC 61000-4-7 / IEC 61000-4-30: 2..50).
HARMONIC_ORDERS = 50
#: Upper end of the voltage measuring range, V RMS. The guide gives no figure; 500 V is the
#: range of the firmware's voltage item (06) and voltage threshold (78) in the vendor codec.
VOLTAGE_RANGE_V = 500.0
#: Range of the reported temperature (guide: item 01, INT16/100, -20..100 °C).
TEMPERATURE_RANGE_C = (-20.0, 100.0)
#: Below these fundamental RMS values THD, unbalance and frequency tracking are not defined
#: (reported as 0, and the nominal frequency is assumed).
MIN_VOLTAGE_V = 1.0
MIN_CURRENT_A = 0.01
#: Frequency tracking range around the nominal frequency (IEC 61000-4-30: ±15 %), Hz.
FREQUENCY_SPAN_HZ = 7.5
NOMINAL_FREQUENCIES_HZ = (50, 60)
UNBALANCE_METHODS = ("iec", "nema")

#: The five energy registers (last axis of `EnergyRegisters` and `SecondArrays.energy_ws`).
REGISTERS = ("imported_active", "exported_active", "imported_reactive", "exported_reactive",
             "apparent")
#: Rows of the register block: channels 1-12, then groups a-d (three-phase groups only).
REGISTER_ROWS = 16
_REGISTER_UNITS = ("wh", "wh", "varh", "varh", "vah")
_PICO_PER_MILLI = 1_000_000_000
#: A register increment above this (Ws in one second, i.e. 1 GW) is not a plausible reading.
MAX_INCREMENT_WS = 1e9
_A = np.exp(2j * np.pi / 3)  # the 120° rotation operator of symmetrical components


class EnergyRegisterError(ValueError):
    """An energy increment the registers refuse (negative, not finite, implausibly large)."""

    def __init__(self, reason: str, *, index: tuple[int, ...] | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(reason)

    def __str__(self) -> str:
        return self.reason if self.index is None else f"{self.reason} (index={self.index})"


# ---------------------------------------------------------------------------------------------
# Energy registers


class EnergyRegisters:
    """Cumulative energy that never drifts: exact integer arithmetic.

    Each register holds an int64 count of whole milli-units·seconds (`milli`: mWs = mJ for
    active energy, mvar·s, mVA·s) and an int64 remainder in pico-units·seconds (`pico`,
    0..999,999,999). Every per-second increment is rounded once, to 1 pWs, and from then on
    only added as integers: the content is independent of order and batching, and a year of
    seconds accumulates with no drift (bias ≤ 0.5 pWs a second, 16 µWs a year).
    Capacity: 2**63 mWs ≈ 2.56 TWh per register (146 years at 2 MW).

    `shape` is the shape of the register block, e.g. (16, 5) for one device (rows channels
    1-12 then groups a-d; columns `REGISTERS`) or (D, 16, 5) for a fleet.
    """

    def __init__(self, shape: tuple[int, ...] = (REGISTER_ROWS, len(REGISTERS))) -> None:
        self.shape = tuple(shape)
        self.milli = np.zeros(self.shape, np.int64)
        self.pico = np.zeros(self.shape, np.int64)

    def add(self, increments: np.ndarray) -> None:
        """Add one increment (in Ws, var·s or VA·s, ≥ 0) to every register; shaped `shape`."""
        self.add_seconds(np.asarray(increments, np.float64)[None])

    def add_seconds(self, increments: np.ndarray, *, chunk: int = 1 << 20) -> None:
        """Add a run of increments shaped (S, *shape) — S seconds at once."""
        inc = np.asarray(increments, np.float64)
        if inc.shape[1:] != self.shape:
            raise EnergyRegisterError(f"increments shaped {inc.shape}, need (S, *{self.shape})")
        step = max(1, min(chunk, 1 << 20))
        for start in range(0, inc.shape[0], step):
            self._add_chunk(inc[start:start + step])

    def _add_chunk(self, inc: np.ndarray) -> None:
        bad = ~np.isfinite(inc) | (inc < 0) | (inc > MAX_INCREMENT_WS)
        if bad.any():
            where = tuple(int(k) for k in np.argwhere(bad)[0])
            raise EnergyRegisterError(f"increment {inc[where]!r} is not in 0..{MAX_INCREMENT_WS:g}",
                                      index=where)
        milli = inc * 1e3
        whole = np.floor(milli)
        pico = np.rint((milli - whole) * 1e9).astype(np.int64)  # exact fraction, 0..1e9
        # ≤ 2**20 seconds a chunk: pico sums stay below 2**50, whole below 2**60 — no overflow
        carry, self.pico = np.divmod(self.pico + pico.sum(axis=0), _PICO_PER_MILLI)
        self.milli += whole.astype(np.int64).sum(axis=0) + carry

    def clear(self, index: Any = ...) -> None:
        """Zero the registers selected by a numpy index (all by default)."""
        self.milli[index] = 0
        self.pico[index] = 0

    def total_pico(self, index: tuple[int, ...]) -> int:
        """The exact content of one register in pico-units·seconds (pWs), as a Python int."""
        return int(self.milli[index]) * _PICO_PER_MILLI + int(self.pico[index])

    def hours(self) -> np.ndarray:
        """All registers in Wh / varh / VAh (float64, i.e. to 16 significant digits)."""
        return self.milli / 3.6e6 + self.pico / 3.6e15

    def copy(self) -> EnergyRegisters:
        other = EnergyRegisters(self.shape)
        other.milli[...] = self.milli
        other.pico[...] = self.pico
        return other


# ---------------------------------------------------------------------------------------------
# Configuration -> arrays


@dataclass(frozen=True)
class _Plan:
    """A configuration as arrays, leading axis devices (1 when shared)."""

    pairing: np.ndarray  # (D, 12, 3) the channel's voltage as a combination of V1..V3
    sign: np.ndarray  # (D, 12) +1 forward, -1 reverse
    range_a: np.ndarray  # (D, 12) rated CT current, inf for "none"
    active: np.ndarray  # (D, 12) a CT is configured
    three_phase: np.ndarray  # (D, 4)
    three_wire: np.ndarray  # (D,) 3P3W
    offset_c: np.ndarray  # (D,) temperature offset applied (0 when disabled)


@lru_cache(maxsize=256)
def _plan_one(config: MeterConfig) -> _Plan:
    pairing = np.zeros((12, 3))
    sign = np.ones(12)
    range_a = np.full(12, np.inf)
    active = np.zeros(12, bool)
    three_phase = np.array([g.circuit == "three_phase" for g in config.groups])
    three_wire = config.wiring == "3P3W"
    for ch in range(1, 13):
        c = config.channel(ch)
        sign[ch - 1] = c.sign
        active[ch - 1] = c.ct_range_a is not None
        range_a[ch - 1] = c.ct_range_a if c.ct_range_a is not None else np.inf
        phase = config.voltage_phase_of(ch) - 1
        if three_phase[(ch - 1) // 3] and three_wire:
            # artificial star point: V_kN' = (V_k,k+1 - V_k-1,k) / 3 from the line voltages
            pairing[ch - 1, phase] += 1 / 3
            pairing[ch - 1, (phase - 1) % 3] -= 1 / 3
        else:
            pairing[ch - 1, phase] = 1.0
    cal = config.temperature_calibration
    for a in (pairing, sign, range_a, active, three_phase):
        a.flags.writeable = False
    return _Plan(pairing[None], sign[None], range_a[None], active[None], three_phase[None],
                 np.array([three_wire]), np.array([cal.offset_c if cal.enabled else 0.0]))


def _plan(config: MeterConfig | Sequence[MeterConfig], devices: int) -> _Plan:
    if isinstance(config, MeterConfig):
        return _plan_one(config)
    configs = list(config)
    if len(configs) != devices:
        raise ConfigError(f"{len(configs)} configs for {devices} devices", field="config")
    for k, c in enumerate(configs):
        if not isinstance(c, MeterConfig):
            raise ConfigError(f"config {k} is a {type(c).__name__}, not a MeterConfig",
                              field="config")
    plans = [_plan_one(c) for c in configs]
    return _Plan(*(np.concatenate([getattr(p, f) for p in plans])
                   for f in _Plan.__dataclass_fields__))


# ---------------------------------------------------------------------------------------------
# The vectorised core


@dataclass(frozen=True)
class SecondArrays:
    """What `meter_batch` measures: per device (axis 0) and second (axis 1).

    Channel axes are channels 1-12 / voltage channels L1-L3 / groups a-d. Group totals are
    NaN for single-phase groups. `energy_ws` holds each second's increments of the five
    `REGISTERS` (Ws, var·s, VA·s; ≥ 0) for the 16 register rows (channels 1-12, groups a-d);
    feed them to `EnergyRegisters.add_seconds`. `temperature_c` is NaN without a reading.
    """

    frequency_hz: np.ndarray  # (D, S)
    voltage_rms_v: np.ndarray  # (D, S, 3)
    thdv_pct: np.ndarray  # (D, S, 3)
    unbalance_pct: np.ndarray  # (D, S)
    current_rms_a: np.ndarray  # (D, S, 12)
    thdi_pct: np.ndarray  # (D, S, 12)
    active_power_w: np.ndarray  # (D, S, 12)
    reactive_power_var: np.ndarray  # (D, S, 12)
    apparent_power_va: np.ndarray  # (D, S, 12)
    power_factor_pct: np.ndarray  # (D, S, 12)
    group_active_power_w: np.ndarray  # (D, S, 4)
    group_reactive_power_var: np.ndarray  # (D, S, 4)
    group_apparent_power_va: np.ndarray  # (D, S, 4)
    group_power_factor_pct: np.ndarray  # (D, S, 4)
    energy_ws: np.ndarray  # (D, S, 16, 5)
    current_over_range: np.ndarray  # (D, S, 12) bool
    voltage_over_range: np.ndarray  # (D, S, 3) bool
    temperature_c: np.ndarray  # (D, S)
    temperature_out_of_range: np.ndarray  # (D, S) bool

    @property
    def devices(self) -> int:
        return int(self.frequency_hz.shape[0])

    @property
    def seconds(self) -> int:
        return int(self.frequency_hz.shape[1])


_FIELDS_TAIL = {  # name -> (trailing shape, dtype)
    "frequency_hz": ((), np.float64),
    "voltage_rms_v": ((3,), np.float64),
    "thdv_pct": ((3,), np.float64),
    "unbalance_pct": ((), np.float64),
    "current_rms_a": ((12,), np.float64),
    "thdi_pct": ((12,), np.float64),
    "active_power_w": ((12,), np.float64),
    "reactive_power_var": ((12,), np.float64),
    "apparent_power_va": ((12,), np.float64),
    "power_factor_pct": ((12,), np.float64),
    "group_active_power_w": ((4,), np.float64),
    "group_reactive_power_var": ((4,), np.float64),
    "group_apparent_power_va": ((4,), np.float64),
    "group_power_factor_pct": ((4,), np.float64),
    "energy_ws": ((REGISTER_ROWS, len(REGISTERS)), np.float64),
    "current_over_range": ((12,), np.bool_),
    "voltage_over_range": ((3,), np.bool_),
}


def _check_sample_rate(sample_rate_hz: float) -> int:
    """The sample rate as an int: whole Hz, a multiple of 5 (200 ms frames), 1-100 kHz."""
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int | float | np.number):
        raise ConfigError(f"sample rate must be a number, got {sample_rate_hz!r}",
                          field="sample_rate_hz")
    rate = float(sample_rate_hz)
    fs = round(rate) if np.isfinite(rate) else 0
    if fs != rate or fs % FRAMES_PER_SECOND or not 1000 <= fs <= 100_000:
        raise ConfigError(f"sample rate must be whole Hz, a multiple of {FRAMES_PER_SECOND} and "
                          f"1000-100000 Hz, got {sample_rate_hz!r}", field="sample_rate_hz")
    return fs


def _check_nominal(nominal_frequency_hz: float) -> int:
    if nominal_frequency_hz not in NOMINAL_FREQUENCIES_HZ:
        raise ConfigError(f"nominal frequency must be 50 or 60 Hz, got {nominal_frequency_hz!r}",
                          field="nominal_frequency_hz")
    return int(nominal_frequency_hz)


def _check_unbalance(unbalance: str) -> str:
    if unbalance not in UNBALANCE_METHODS:
        raise ConfigError(f"unbalance must be one of {list(UNBALANCE_METHODS)}, got "
                          f"{unbalance!r}", field="unbalance")
    return unbalance


def meter_batch(
    voltage: np.ndarray,
    current: np.ndarray,
    sample_rate_hz: float,
    config: MeterConfig | Sequence[MeterConfig] | None = None,
    nominal_frequency_hz: int = 50,
    *,
    unbalance: str = "iec",
    temperature_c: np.ndarray | None = None,
    block: int = 16,
) -> SecondArrays:
    """Meter D devices at once: `voltage` (D, 3, N) in V and `current` (D, 12, N) in A (as the
    CTs deliver them, before the configured direction), sampled together at `sample_rate_hz`.

    Processes the floor(N / fs) complete seconds (trailing samples are ignored; `Meter` keeps
    them for the next call). `config` is one `MeterConfig` for all devices or one per device
    (default: `MeterConfig.default()`). `temperature_c` (D, S) holds raw NTC readings (NaN =
    none). `block` is the number of device-seconds processed together (memory ≈ 2.5 MB each).
    """
    fs = _check_sample_rate(sample_rate_hz)
    fnom = _check_nominal(nominal_frequency_hz)
    unbalance = _check_unbalance(unbalance)
    v = np.asarray(voltage)
    i = np.asarray(current)
    if v.ndim != 3 or v.shape[1] != VOLTAGE_CHANNELS:
        raise CaptureError(f"voltage must be shaped (devices, 3, samples), got {v.shape}")
    if i.ndim != 3 or i.shape[1] != CURRENT_CHANNELS:
        raise CaptureError(f"current must be shaped (devices, 12, samples), got {i.shape}")
    if v.shape[0] != i.shape[0] or v.shape[2] != i.shape[2]:
        raise CaptureError(f"voltage {v.shape} and current {i.shape} do not match")
    devices, seconds = v.shape[0], v.shape[2] // fs
    plan = _plan(MeterConfig.default() if config is None else config, devices)
    out = {name: np.empty((devices, seconds, *tail), dtype)
           for name, (tail, dtype) in _FIELDS_TAIL.items()}
    if seconds:
        ss = min(seconds, max(1, block))
        dd = max(1, block // ss)
        for d0 in range(0, devices, dd):
            d1 = min(devices, d0 + dd)
            p = _slice_plan(plan, d0, d1)
            for s0 in range(0, seconds, ss):
                s1 = min(seconds, s0 + ss)
                vb = _second_view(v, d0, d1, s0, s1, fs)
                ib = _second_view(i, d0, d1, s0, s1, fs)
                res = _meter_block(vb, ib, fs, fnom, p, unbalance)
                for name, value in res.items():
                    out[name][d0:d1, s0:s1] = value
    temp, out_of_range = _temperature(temperature_c, plan, devices, seconds)
    return SecondArrays(**out, temperature_c=temp, temperature_out_of_range=out_of_range)


def _second_view(x: np.ndarray, d0: int, d1: int, s0: int, s1: int, fs: int) -> np.ndarray:
    """(devices, seconds, channels, fs) float64 view (a copy only if the input needs a cast)."""
    block = np.asarray(x[d0:d1, :, s0 * fs:s1 * fs], dtype=np.float64)
    return block.reshape(d1 - d0, x.shape[1], s1 - s0, fs).transpose(0, 2, 1, 3)


def _slice_plan(plan: _Plan, d0: int, d1: int) -> _Plan:
    if plan.sign.shape[0] == 1:
        return _Plan(*(getattr(plan, f)[:, None] for f in _Plan.__dataclass_fields__))
    return _Plan(*(getattr(plan, f)[d0:d1, None] for f in _Plan.__dataclass_fields__))


def _temperature(raw: np.ndarray | None, plan: _Plan, devices: int, seconds: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    if raw is None:
        return np.full((devices, seconds), np.nan), np.zeros((devices, seconds), bool)
    t = np.asarray(raw, np.float64)
    if t.shape != (devices, seconds):
        raise CaptureError(f"temperature_c must be shaped ({devices}, {seconds}), got {t.shape}")
    t = t + plan.offset_c[:, None]
    lo, hi = TEMPERATURE_RANGE_C
    with np.errstate(invalid="ignore"):
        out_of_range = (t < lo) | (t > hi)
    return np.clip(t, lo, hi), out_of_range


def _fit_weights(pos: np.ndarray, n: int) -> np.ndarray:
    """Least-squares weights (..., H, 4) on the rectangular bins k0-1..k0+2 (k0 = floor(pos))
    that return the complex amplitude of a tone at bin position `pos`, Hann-windowed in the
    frequency domain, from the two windowed bins k0 and k0+1 around it."""
    nu = (np.floor(pos) - pos)[..., None] + np.arange(-1, 3)  # offsets of bins k0-1..k0+2
    # Dirichlet kernel: the n-point DFT of exp(j 2π pos m / n) at a bin ν away
    s = np.sin(np.pi * nu / n)
    tiny = np.abs(s) < 1e-12
    d = np.where(tiny, float(n), np.sin(np.pi * nu) / np.where(tiny, 1.0, s))
    d = d * np.exp(-1j * np.pi * (n - 1) / n * nu)
    # periodic Hann = 0.5 - 0.25 e^{+} - 0.25 e^{-}: responses at the windowed bins k0, k0+1
    h0 = 0.5 * d[..., 1] - 0.25 * (d[..., 0] + d[..., 2])
    h1 = 0.5 * d[..., 2] - 0.25 * (d[..., 1] + d[..., 3])
    norm = np.abs(h0) ** 2 + np.abs(h1) ** 2
    a0 = np.conj(h0) / norm
    a1 = np.conj(h1) / norm
    # windowed bin k = 0.5 X[k] - 0.25 (X[k-1] + X[k+1]): fold into weights on X[k0-1..k0+2]
    return np.stack([-0.25 * a0, 0.5 * a0 - 0.25 * a1, -0.25 * a0 + 0.5 * a1, -0.25 * a1], -1)


def _hann_bins(x: np.ndarray) -> np.ndarray:
    """Hann-windowed bins from rectangular ones (3-tap kernel); drops the two edge bins."""
    return 0.5 * x[..., 1:-1] - 0.25 * (x[..., :-2] + x[..., 2:])


def _frequency(bv: np.ndarray, bi: np.ndarray, active: np.ndarray, knom: int, nf: int,
               fnom: int, bin_hz: float) -> np.ndarray:
    """Tracked frequency per device-second (..., ): interpolated DFT (Hann, two-bin ratio) on
    the strongest voltage channel, else the strongest current channel, else nominal.
    bv (..., 3, F, 7), bi (..., 12, F, 7): rectangular bins knom-3..knom+3."""
    wv = np.abs(_hann_bins(bv))  # (..., 3, F, 5): windowed bins knom-2..knom+2
    wi = np.abs(_hann_bins(bi))  # (..., 12, F, 5)
    peak_v = wv[..., 1:4].max(-1).mean(-1)  # (..., 3)
    peak_i = wi[..., 1:4].max(-1).mean(-1) * active
    # a tone of RMS r peaks at ≥ 0.849 * (√2 r / 2) * (nf / 2) in a Hann bin: r * nf * 0.3
    scale = 0.28 * nf
    use_v = peak_v.max(-1) >= MIN_VOLTAGE_V * scale
    use_i = ~use_v & (peak_i.max(-1) >= MIN_CURRENT_A * scale)
    ref_v = np.take_along_axis(wv, peak_v.argmax(-1)[..., None, None, None], -3)[..., 0, :, :]
    ref_i = np.take_along_axis(wi, peak_i.argmax(-1)[..., None, None, None], -3)[..., 0, :, :]
    ref = np.where(use_v[..., None, None], ref_v, ref_i)  # (..., F, 5)
    centre = 1 + ref[..., 1:4].sum(-2).argmax(-1)  # (...,) index into the 5 windowed bins
    m0 = np.take_along_axis(ref, centre[..., None, None], -1)[..., 0]  # (..., F)
    mp = np.take_along_axis(ref, centre[..., None, None] + 1, -1)[..., 0]
    mm = np.take_along_axis(ref, centre[..., None, None] - 1, -1)[..., 0]
    right = mp >= mm
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where(right, mp, mm) / m0
        delta = (2 * alpha - 1) / (alpha + 1)
        delta = np.where(right, delta, -delta)
        weights = m0.sum(-1)
        k = (knom - 2 + centre)[..., None] + np.nan_to_num(delta)
        f = (k * m0).sum(-1) / weights * bin_hz
    tracked = (use_v | use_i) & (weights > 0) & np.isfinite(f)
    f = np.where(tracked, f, float(fnom))
    return np.clip(f, fnom - FREQUENCY_SPAN_HZ, fnom + FREQUENCY_SPAN_HZ)


def _harmonic_phasors(x: np.ndarray, first: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Complex amplitudes (B, H, R) from bin-major spectra x (B, K, R) (R = channels x
    frames): harmonic h is the weighted sum of the four bins first[b, h] .. first[b, h] + 3
    (weights (B, H, 4)); each bin is one contiguous row of R values."""
    windows = sliding_window_view(x, 4, axis=1)  # (B, K-3, R, 4)
    g = windows[np.arange(x.shape[0])[:, None], first]  # (B, H, R, 4)
    return (g @ weights[..., None])[..., 0]


def _bin_major_rfft(x: np.ndarray, frames: int) -> np.ndarray:
    """rfft of each 1/frames-second frame of x (dd, ss, C, N) -> (dd * ss, K, C * frames),
    laid out bin-major so that the few bins around each harmonic are contiguous."""
    *lead, c, n = x.shape
    nf = n // frames
    out = np.empty((*lead, nf // 2 + 1, c, frames), np.complex128)
    np.fft.rfft(x.reshape(*lead, c, frames, nf).transpose(0, 1, 4, 2, 3), axis=-3, out=out)
    return out.reshape(-1, nf // 2 + 1, c * frames)


def _meter_block(v: np.ndarray, i: np.ndarray, fs: int, fnom: int, plan: _Plan,
                 unbalance: str) -> dict[str, np.ndarray]:
    """v (dd, ss, 3, N), i (dd, ss, 12, N); plan arrays shaped (dd or 1, 1, ...)."""
    frames = FRAMES_PER_SECOND
    n = fs
    nf = n // frames
    kmax = nf // 2
    bin_hz = fs / nf
    lead = v.shape[:-2]

    # 1. spectra of the 200 ms frames
    xv = _bin_major_rfft(v, frames)  # (B, K, 3 * F), B = dd * ss
    xi = _bin_major_rfft(i, frames)  # (B, K, 12 * F)

    # 2. frequency
    knom = round(fnom / bin_hz)  # the nominal frequency's bin: 10 (50 Hz) or 12 (60 Hz)

    def band(x: np.ndarray, c: int) -> np.ndarray:  # bins knom-3..knom+3 as (..., C, F, 7)
        return np.moveaxis(x[:, knom - 3:knom + 4].reshape(*lead, 7, c, frames), -3, -1)

    f = _frequency(band(xv, 3), band(xi, 12), plan.active, knom, nf, fnom, bin_hz)  # (dd, ss)

    # 3. harmonic phasors at h*f
    orders = np.arange(1, HARMONIC_ORDERS + 1)
    pos = f[..., None] * orders / bin_hz  # (dd, ss, H) position in bins
    k0 = np.floor(pos).astype(np.intp)
    valid = k0 + 2 <= kmax  # the fit reads bins k0-1..k0+2, below Nyquist
    k0 = np.where(valid, k0, 1)
    weights = _fit_weights(pos, nf) * valid[..., None]
    first = (k0 - 1).reshape(-1, HARMONIC_ORDERS)  # (B, H) with B = dd * ss
    w = weights.reshape(-1, HARMONIC_ORDERS, 4)
    cv = _harmonic_phasors(xv, first, w)
    ci = _harmonic_phasors(xi, first, w)
    cv = cv.reshape(*lead, HARMONIC_ORDERS, 3, frames)  # (dd, ss, H, C, F)
    ci = ci.reshape(*lead, HARMONIC_ORDERS, 12, frames)
    # mean square of each harmonic over the frames (RMS² of harmonic h = 2 |c|²): (..., H, C)
    msv = 2 * (cv.real ** 2 + cv.imag ** 2).mean(-1)
    msi = 2 * (ci.real ** 2 + ci.imag ** 2).mean(-1)
    thdv = _thd(msv, MIN_VOLTAGE_V)
    thdi = _thd(msi, MIN_CURRENT_A)
    v1 = cv[..., 0, :, :]  # (dd, ss, 3, F) fundamental phasors (peak / 2)
    i1 = ci[..., 0, :, :]

    # 4. time domain: the full second [0, n) and, centred in it, the longest whole number of
    # cycles [a, a + w) (a = (n - w) / 2; the edge samples count with fractional weights).
    # Centred, the window's mean equals the second's for loads that change linearly.
    w_len = np.minimum(float(n), np.floor(f + 1e-9) * fs / f)  # (dd, ss) samples
    start = (n - w_len) / 2
    edge = int(np.ceil(fs / (fnom - FREQUENCY_SPAN_HZ) / 2)) + 2  # fixed: batch-independent
    # (BLAS: a copy keeps numpy from taking its syrk path for v @ v.T, 4x slower here)
    gvv = v @ v.copy().swapaxes(-1, -2)  # (dd, ss, 3, 3)
    cvi = v @ i.swapaxes(-1, -2)  # (dd, ss, 3, 12)
    sii = np.vecdot(i, i)  # (dd, ss, 12)
    if not (np.isfinite(sii).all() and np.isfinite(gvv).all()):  # cheaper than every sample
        raise CaptureError("samples must be finite numbers (and below 1e150)")
    # the first and last `edge` samples, and how much of each lies *outside* the window
    ve = np.concatenate([v[..., :edge], v[..., n - edge:]], axis=-1)
    ie = np.concatenate([i[..., :edge], i[..., n - edge:]], axis=-1)
    pos = np.concatenate([np.arange(edge), np.arange(n - edge, n)]).astype(np.float64)
    inside = (np.minimum(pos + 1, (start + w_len)[..., None])
              - np.maximum(pos, start[..., None]))
    drop = (1.0 - np.clip(inside, 0.0, 1.0))[..., None, :]  # (dd, ss, 1, 2 * edge)
    vd = ve * drop
    gvv_w = gvv - vd @ ve.swapaxes(-1, -2)
    cvi_w = cvi - vd @ ie.swapaxes(-1, -2)
    sii_w = sii - np.vecdot(ie * drop, ie)
    ncf = w_len[..., None]

    # 5. per channel
    pair, sign, active = plan.pairing, plan.sign, plan.active
    vrms = np.sqrt(np.maximum(np.einsum("...pp->...p", gvv_w), 0) / ncf)
    irms = np.sqrt(np.maximum(sii_w, 0) / ncf) * active
    p = sign * np.einsum("...cp,...pc->...c", pair, cvi_w) / ncf * active
    veff = np.sqrt(np.maximum(np.einsum("...cp,...pq,...cq->...c", pair, gvv_w, pair), 0) / ncf)
    s = veff * irms
    v1eff = np.einsum("...cp,...pf->...cf", pair, v1)
    q = sign * 2 * (v1eff * np.conj(i1)).imag.mean(-1) * active
    pf = _power_factor(p, s)
    thdi = thdi * active
    energy_p = sign * np.einsum("...cp,...pc->...c", pair, cvi) / fs * active

    # 6. three-phase groups: totals (arithmetic apparent power) and group energy
    tp = plan.three_phase  # (dd|1, 1, 4)
    gp = p.reshape(*lead, 4, 3).sum(-1)
    gq = q.reshape(*lead, 4, 3).sum(-1)
    gs = s.reshape(*lead, 4, 3).sum(-1)
    gpf = _power_factor(gp, gs)
    nan = np.float64(np.nan)
    ge = energy_p.reshape(*lead, 4, 3).sum(-1) * tp
    energy = np.empty((*lead, REGISTER_ROWS, len(REGISTERS)))
    _split_energy(energy[..., :12, :], energy_p, q, s)
    _split_energy(energy[..., 12:, :], ge, gq * tp, gs * tp)

    # 7. unbalance
    if unbalance == "iec":
        unb = _unbalance_iec(v1)
    else:
        unb = _unbalance_nema(gvv_w, ncf[..., 0], plan.three_wire)

    return {
        "frequency_hz": f,
        "voltage_rms_v": vrms,
        "thdv_pct": thdv,
        "unbalance_pct": unb,
        "current_rms_a": irms,
        "thdi_pct": thdi,
        "active_power_w": p,
        "reactive_power_var": q,
        "apparent_power_va": s,
        "power_factor_pct": pf,
        "group_active_power_w": np.where(tp, gp, nan),
        "group_reactive_power_var": np.where(tp, gq, nan),
        "group_apparent_power_va": np.where(tp, gs, nan),
        "group_power_factor_pct": np.where(tp, gpf, nan),
        "energy_ws": energy,
        "current_over_range": active & (irms > plan.range_a),
        "voltage_over_range": vrms > VOLTAGE_RANGE_V,
    }


def _thd(ms: np.ndarray, minimum_rms: float) -> np.ndarray:
    """THD in % from mean-square harmonic magnitudes (..., H, C): orders 2..H over order 1."""
    fundamental = ms[..., 0, :]
    ok = fundamental >= minimum_rms ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        thd = np.sqrt(ms[..., 1:, :].sum(-2) / fundamental) * 100
    return np.where(ok, thd, 0.0)


def _power_factor(p: np.ndarray, s: np.ndarray) -> np.ndarray:
    """|P| / S in %, 0 when there is no apparent power."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pf = np.abs(p) / s * 100
    return np.where(s > 0, np.minimum(pf, 100.0), 0.0)


def _split_energy(out: np.ndarray, e: np.ndarray, q: np.ndarray, s: np.ndarray) -> None:
    """One second's register increments: signed active energy (Ws) and reactive / apparent
    power (over one second) split into the five non-negative registers."""
    out[..., 0] = np.maximum(e, 0)
    out[..., 1] = np.maximum(-e, 0)
    out[..., 2] = np.maximum(q, 0)
    out[..., 3] = np.maximum(-q, 0)
    out[..., 4] = s


def _unbalance_iec(v1: np.ndarray) -> np.ndarray:
    """IEC 61000-4-30 u2 = |negative sequence| / |positive sequence| of the fundamental
    phasors (..., 3, F), aggregated over the frames as RMS; in %."""
    va, vb, vc = v1[..., 0, :], v1[..., 1, :], v1[..., 2, :]
    pos = (va + _A * vb + _A * _A * vc) / 3
    neg = (va + _A * _A * vb + _A * vc) / 3
    pos_ms = (np.abs(pos) ** 2).mean(-1)
    neg_ms = (np.abs(neg) ** 2).mean(-1)
    ok = 2 * pos_ms >= MIN_VOLTAGE_V ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        u2 = np.sqrt(neg_ms / pos_ms) * 100
    return np.where(ok, u2, 0.0)


def _unbalance_nema(gvv: np.ndarray, nc: np.ndarray, three_wire: np.ndarray) -> np.ndarray:
    """NEMA MG-1 line-voltage unbalance: max deviation from the mean over the mean, in %.
    3P3W measures the line voltages; for 3P4W they are formed from the phase-voltage sums."""
    d = np.einsum("...pp->...p", gvv)
    phase_to_phase = np.stack([d[..., 0] + d[..., 1] - 2 * gvv[..., 0, 1],
                               d[..., 1] + d[..., 2] - 2 * gvv[..., 1, 2],
                               d[..., 2] + d[..., 0] - 2 * gvv[..., 2, 0]], -1)
    lines = np.sqrt(np.maximum(np.where(three_wire[..., None], d, phase_to_phase), 0)
                    / nc[..., None])
    mean = lines.mean(-1)
    ok = mean >= MIN_VOLTAGE_V
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.abs(lines - mean[..., None]).max(-1) / mean * 100
    return np.where(ok, u, 0.0)


# ---------------------------------------------------------------------------------------------
# One device, streaming


@dataclass(frozen=True)
class GroupReport:
    """One group a-d. For a three-phase group: the totals the firmware reports (P, Q summed
    over L1-L3; S the arithmetic sum of the phases' S; PF = |P| / S) and the group's
    cumulative energy registers; all None for a single-phase group (its channels are the
    per-circuit values). Per-phase values are the channel values of the `SecondReport`."""

    group: str
    circuit: str
    channels: tuple[int, int, int]
    active_power_w: float | None = None
    reactive_power_var: float | None = None
    apparent_power_va: float | None = None
    power_factor_pct: float | None = None
    imported_active_energy_wh: float | None = None
    exported_active_energy_wh: float | None = None
    imported_reactive_energy_varh: float | None = None
    exported_reactive_energy_varh: float | None = None
    apparent_energy_vah: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"group": self.group, "circuit": self.circuit,
                             "channels": list(self.channels)}
        if self.circuit == "three_phase":
            d.update({k: getattr(self, k) for k in _GROUP_VALUES})
        return d


_GROUP_VALUES = ("active_power_w", "reactive_power_var", "apparent_power_va", "power_factor_pct",
                 "imported_active_energy_wh", "exported_active_energy_wh",
                 "imported_reactive_energy_varh", "exported_reactive_energy_varh",
                 "apparent_energy_vah")
_ENERGY_KEYS = ("imported_active_energy_wh", "exported_active_energy_wh",
                "imported_reactive_energy_varh", "exported_reactive_energy_varh",
                "apparent_energy_vah")


@dataclass(frozen=True)
class SecondReport:
    """Everything one CTH01 measures in one second. Lists are indexed by channel (1-12 at
    index 0-11) or voltage channel (L1-L3); energies are the cumulative registers after this
    second. `temperature_c` is None without an NTC reading."""

    second: int
    frequency_hz: float
    voltage_rms_v: tuple[float, ...]
    thdv_pct: tuple[float, ...]
    unbalance_pct: float
    current_rms_a: tuple[float, ...]
    thdi_pct: tuple[float, ...]
    active_power_w: tuple[float, ...]
    reactive_power_var: tuple[float, ...]
    apparent_power_va: tuple[float, ...]
    power_factor_pct: tuple[float, ...]
    imported_active_energy_wh: tuple[float, ...]
    exported_active_energy_wh: tuple[float, ...]
    imported_reactive_energy_varh: tuple[float, ...]
    exported_reactive_energy_varh: tuple[float, ...]
    apparent_energy_vah: tuple[float, ...]
    temperature_c: float | None
    temperature_out_of_range: bool
    current_over_range: tuple[bool, ...]
    voltage_over_range: tuple[bool, ...]
    groups: tuple[GroupReport, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (the `cth01 meter --format json` object)."""
        d: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "groups":
                d[name] = [g.to_dict() for g in value]
            elif isinstance(value, tuple):
                d[name] = list(value)
            else:
                d[name] = value
        return d


class Meter:
    """One CTH01's measurement chain, fed with samples in chunks of any size.

    `feed` appends the samples to a buffer, meters every complete second and keeps the rest
    for the next call, so any chunking gives the same reports as one call. The energy
    registers (`registers`, shape (16, 5): channels 1-12 then groups a-d, `REGISTERS`)
    persist across calls; `clear_energy` is the device's 5f command.
    """

    def __init__(self, config: MeterConfig | None = None, sample_rate_hz: float = 8000,
                 nominal_frequency_hz: int = 50, *, unbalance: str = "iec") -> None:
        self.config = MeterConfig.default() if config is None else config
        if not isinstance(self.config, MeterConfig):
            raise ConfigError(f"config must be a MeterConfig, got {type(config).__name__}",
                              field="config")
        self.sample_rate_hz = _check_sample_rate(sample_rate_hz)
        self.nominal_frequency_hz = _check_nominal(nominal_frequency_hz)
        self.unbalance = _check_unbalance(unbalance)
        self.registers = EnergyRegisters()
        self.seconds = 0  # complete seconds metered so far
        self._voltage = np.empty((VOLTAGE_CHANNELS, 0))
        self._current = np.empty((CURRENT_CHANNELS, 0))
        self._temperatures: deque[float] = deque()

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next complete second."""
        return int(self._voltage.shape[1])

    def feed(self, data: Capture | tuple[np.ndarray, np.ndarray], *,
             temperature_c: Iterable[float] | None = None) -> list[SecondReport]:
        """Meter a chunk: a `Capture` (its sample rate must be the meter's) or a tuple
        (voltage (3, n) V, current (12, n) A). Raw NTC readings (the capture's or
        `temperature_c`) are queued and used one per completed second, in order; a second
        without one reports `temperature_c=None`. Returns the reports of the seconds this
        chunk completed, oldest first."""
        if isinstance(data, Capture):
            if data.sample_rate_hz != self.sample_rate_hz:
                raise CaptureError(f"capture sampled at {data.sample_rate_hz} Hz, meter at "
                                   f"{self.sample_rate_hz} Hz")
            if data.temperature_c is not None and temperature_c is not None:
                raise CaptureError("temperature given twice: in the capture and as an argument")
            capture = data
            temps = data.temperature_c if temperature_c is None else temperature_c
        else:
            try:
                voltage, current = data
            except (TypeError, ValueError):
                raise CaptureError("feed takes a Capture or a (voltage, current) tuple") from None
            capture = Capture(voltage, current, self.sample_rate_hz)
            temps = temperature_c
        if temps is not None:
            self._temperatures.extend(float(t) for t in np.ravel(np.asarray(temps, float)))
        self._voltage = np.concatenate([self._voltage, capture.voltage], axis=1)
        self._current = np.concatenate([self._current, capture.current], axis=1)
        fs = self.sample_rate_hz
        seconds = self.pending_samples // fs
        if not seconds:
            return []
        used = seconds * fs
        raw = np.array([[self._temperatures.popleft() if self._temperatures else np.nan
                         for _ in range(seconds)]])
        arrays = meter_batch(self._voltage[None, :, :used], self._current[None, :, :used], fs,
                             self.config, self.nominal_frequency_hz, unbalance=self.unbalance,
                             temperature_c=raw)
        self._voltage = self._voltage[:, used:].copy()
        self._current = self._current[:, used:].copy()
        reports = []
        for s in range(seconds):
            self.registers.add(arrays.energy_ws[0, s])
            reports.append(self._report(arrays, s))
            self.seconds += 1
        return reports

    def clear_energy(self, channel: int = 0) -> None:
        """The 5f command: 0 clears every register; 1-12 clears that channel's registers and,
        if the channel belongs to a three-phase group, the group's totals too (the device
        reports one value for such a group)."""
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel <= 12:
            raise ConfigError(f"channel must be 0 (all) or 1-12, got {channel!r}",
                              field="channel")
        if channel == 0:
            self.registers.clear()
            return
        self.registers.clear(channel - 1)
        g = (channel - 1) // 3
        if self.config.groups[g].circuit == "three_phase":
            self.registers.clear(12 + g)

    def _report(self, a: SecondArrays, s: int) -> SecondReport:
        hours = self.registers.hours()

        def row(name: str) -> tuple[Any, ...]:
            return tuple(getattr(a, name)[0, s].tolist())

        groups = []
        for g, name in enumerate(GROUPS):
            circuit = self.config.groups[g].circuit
            values: dict[str, Any] = {}
            if circuit == "three_phase":
                values = {
                    "active_power_w": float(a.group_active_power_w[0, s, g]),
                    "reactive_power_var": float(a.group_reactive_power_var[0, s, g]),
                    "apparent_power_va": float(a.group_apparent_power_va[0, s, g]),
                    "power_factor_pct": float(a.group_power_factor_pct[0, s, g]),
                    **{k: float(hours[12 + g, r]) for r, k in enumerate(_ENERGY_KEYS)},
                }
            groups.append(GroupReport(name, circuit, (3 * g + 1, 3 * g + 2, 3 * g + 3),
                                      **values))
        temp = float(a.temperature_c[0, s])
        return SecondReport(
            second=self.seconds,
            frequency_hz=float(a.frequency_hz[0, s]),
            voltage_rms_v=row("voltage_rms_v"),
            thdv_pct=row("thdv_pct"),
            unbalance_pct=float(a.unbalance_pct[0, s]),
            current_rms_a=row("current_rms_a"),
            thdi_pct=row("thdi_pct"),
            active_power_w=row("active_power_w"),
            reactive_power_var=row("reactive_power_var"),
            apparent_power_va=row("apparent_power_va"),
            power_factor_pct=row("power_factor_pct"),
            **{k: tuple(hours[:12, r].tolist()) for r, k in enumerate(_ENERGY_KEYS)},
            temperature_c=None if np.isnan(temp) else temp,
            temperature_out_of_range=bool(a.temperature_out_of_range[0, s]),
            current_over_range=row("current_over_range"),
            voltage_over_range=row("voltage_over_range"),
            groups=tuple(groups),
        )
