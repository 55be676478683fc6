"""Fast per-second load model: realistic, varied electrical values for a whole fleet of CTH01s.

Owns: `LoadModel`, which turns (seed, profile per device, UTC second) into one `Measurements`
for all D devices at once, and `Interface`, the wiring (voltage interface, group circuits, CT
ranges, circuit names) an integrator would have configured for each simulated site, with CT
ranges that suit its loads. Every per-second step is vectorised over devices with numpy: the
only Python loops in `second()` are over the profile specials, the four burst layers and the
scripted events, never over devices. 10,000 devices cost about 2 ms per simulated second on one
core, 50,000 about 12 ms (`bench/bench_loads.py`).

Must never: do I/O, read a clock (time is the `t_unix` argument), know about frames, uplinks or
device settings other than the `Interface` it recommends. Values are what the inputs see
*before* the device's own settings (see `measurements.py`); a PV inverter's export shows as
negative active power.

Model, per device and channel k (1-12, group g = (k-1)//3, voltage phase (k-1) % 3):

* **Current** I = base_k · shape_g(t) (+ bursts) · y_k(t) ≥ 0. `base_k` (A) is drawn per
  circuit; `shape_g` is a smooth weekly curve (minute table, linearly interpolated within the
  minute) read at the device's local time — t + utc_offset_s, in whole minutes — shifted by a
  per-device and per-group jitter of up to ±70 min (offices ±35, datacentres 0), or a profile
  special: PV output, workshop motors, welders. Motors switch on or off per 10-minute slot
  (probability following the shift pattern, 55-95 % load) with a 2.5-6x inrush decaying over
  4 s; welders arc per 5-s slot; apartments get appliance bursts (4-14 A for 1-40 min, likelier
  at the morning and evening peaks). All of this is a *pure function of (seed, t)*: its
  randomness is a splitmix64 hash of (seed, device, stream, time slot), not a generator, and
  the slowly changing parts are computed once per slot (minute, 5 s, 2 min, 20 min) and
  cached by slot number, so any second can be asked for in any order at the same cost.
* **Fast noise** y_k = 1 + x_k, x_k an AR(1)/Ornstein-Uhlenbeck process (time constant 20 s,
  stationary s.d. 0.6 % (datacentre PDUs) to 6 % (flats, welders)) driven by bytes from a numpy
  Generator seeded by `seed`. This and the temperature filter are the only state: `second()`
  advances them by dt = t - t_previous (exact OU transition for any dt ≥ 1; a repeated or
  earlier t counts as dt = 1). Same seed and the same sequence of t give bit-identical output;
  call with increasing t. The innovations are uniform bytes, so |x| ≤ 10.9 σ, and σ ≤ 0.08
  keeps y positive: currents are never negative by construction.
* **PV**: clear-sky output ∝ sin(solar elevation)^1.2 for a per-device latitude of 35-60° N,
  declination of the day, and local solar time = local clock time + a per-device shift of
  -24..+36 min; times a cloud factor per local day (45 % clear, 35 % broken clouds passing every
  few minutes, 20 % overcast at 12-37 %). Zero at night.
* **Voltages** (per phase) = nominal · (1 + device offset (≤ ±2 %) + phase offset (±0.4 %)
  + slow drift (≤ ±1 %, smooth through random 20-minute knots) + white noise (s.d. 0.2 %)).
  Phases are ideal 120° apart. In 3P3W (30 % of workshops) `voltage_v` reports the line
  voltages |V_a - V_b|, |V_b - V_c|, |V_c - V_a| (≈ 400 V), as the device's voltage inputs see
  them, and every channel (all groups are three-phase there) is referred to the artificial star
  point: |V_k - V_0|, V_0 the zero-sequence voltage (≈ line voltage / √3).
* **Powers** per channel: S = V_k · I (V_k = voltage of its phase), P = S · DF · cos φ₁,
  Q = S · DF · sin φ₁ with cos φ₁ the displacement power factor of the fundamental (drawn per
  circuit from the profile's range) and DF = 1 / sqrt(1 + THDi²) the distortion factor. So
  |P| ≤ S and P² + Q² = DF² · S² ≤ S² (the rest is distortion power). Q > 0 is inductive.
  Channels whose CT range is "none" carry exactly 0.
* **THDi** is fixed per circuit (LED/IT 8-25 %, PDUs 5-12 %, welders 30-60 %, motors 3-8 %)
  and 0 while the circuit's group is off. **THDv** 1-4 % per phase, varying with the drift.
* **Unbalance** is the IEC 61000-4-30 ratio |V₂| / |V₁| · 100 of negative- to positive-sequence
  voltage, computed exactly from the three magnitudes for the model's ideal 120° phasors (for
  small deviations it is close to the NEMA-style max deviation from the mean / mean). The line
  voltages of 3P3W have the same ratio.
* **Temperature** (wire probe): ambient (20-28 °C, daily swing peaking at 15:00 local) plus a
  rise proportional to the device's load (Σ I / Σ CT range), low-pass filtered with a 15-minute
  time constant, ±0.05 °C noise; within 20-45 °C without events. About 10 % of devices have no
  probe: NaN.

Device layouts are drawn from hashes of (seed, device index): device d of a given profile and
seed has the same interface and loads whatever the rest of the fleet is; only the fast noise
(one generator for the fleet) depends on the fleet.

Scripted events act on the selected devices during [start, end) and cost nothing while
inactive. After the normal model: overloads multiply current and powers, sags/swells multiply
the phase voltage and with it S, P, Q (the load's current is kept; a factor 0 is a lost phase
and drops that phase's currents too), both in the order scripted; then blackouts zero
voltages, currents, powers, THD and unbalance (the probe keeps reading); harmonics set THDi of
every loaded channel and rescale P and Q through DF (the last one scripted wins); temperature
adds to the probe reading. Daylight-saving time is not modelled: utc_offset_s is fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cth01.device.measurements import CHANNELS, PHASES, Measurements

PROFILES: tuple[str, ...] = ("office", "apartment", "datacentre", "workshop", "pv")
CT_RANGES: tuple[str, ...] = ("none", "100A", "300A", "500A", "1000A", "4000A")
GROUPS = 4
_CT_AMPS = np.array([0.0, 100.0, 300.0, 500.0, 1000.0, 4000.0])

DeviceSelection = Sequence[int] | np.ndarray  # device indices, or a (D,) boolean mask

_OFFICE, _APARTMENT, _DATACENTRE, _WORKSHOP, _PV = range(5)

# ---------------------------------------------------------------------------------------------
# hashing: counter-based randomness, a pure function of (seed, device, stream, slot)

_U64 = np.uint64
_GOLD = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S16, _S32, _S48 = (_U64(s) for s in (30, 27, 31, 11, 16, 32, 48))
_MASK16 = _U64(0xFFFF)
_TWO53 = 2.0 ** -53
_TWO16 = 2.0 ** -16


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wraps silently)."""
    z = z ^ (z >> _S30)
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def _u01(h: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 from the top 53 bits of a hash."""
    return (h >> _S11) * _TWO53


def _field(h: np.ndarray, shift: np.uint64) -> np.ndarray:
    """Uniform [0, 1) from 16 bits of a hash starting at bit `shift`."""
    return ((h >> shift) & _MASK16) * _TWO16


def _keys(seed: int, rows: np.ndarray, stream: int, cols: int | None = None) -> np.ndarray:
    """Hash keys for (seed, device rows, stream[, column]): (n,) or (n, cols) uint64."""
    s = np.array([seed & 0xFFFFFFFFFFFFFFFF, stream], dtype=np.uint64)
    s = _mix(s[:1] ^ _mix(s[1:] * _GOLD))
    k = _mix(rows.astype(np.uint64) * _M2 + s)
    if cols is not None:
        k = _mix(k[:, None] + np.arange(1, cols + 1, dtype=np.uint64) * _GOLD)
    return k


def _uniform(seed: int, rows: np.ndarray, stream: int, cols: int | None = None) -> np.ndarray:
    return _u01(_mix(_keys(seed, rows, stream, cols) ^ _M1))


# ---------------------------------------------------------------------------------------------
# weekly shapes: one row per usage pattern, one value per minute of the week (Monday 00:00 = 0),
# each row padded with _PAD minutes of the previous/next week on both sides (group jitter) and
# one more minute for the linear interpolation

_WEEK = 7 * 1440
_PAD = 120
_WIDTH = _WEEK + 2 * _PAD + 1
_MONDAY = 3 * 1440  # 1970-01-01 was a Thursday
(_R_ONE, _R_LIGHT, _R_SOCKETS, _R_HVAC, _R_SERVER, _R_FLAT, _R_PDU, _R_SHIFT1, _R_SHIFT2,
 _R_AMBIENT) = range(10)


def _weekly_table() -> np.ndarray:
    m = np.arange(-_PAD, _WEEK + _PAD + 1) % _WEEK
    day = m // 1440
    h = (m % 1440) / 60.0
    weekday, saturday = day < 5, day == 5

    def bump(on: float, off: float, width: float) -> np.ndarray:
        return 1.0 / ((1.0 + np.exp(-(h - on) / width)) * (1.0 + np.exp(-(off - h) / width)))

    rows = np.zeros((10, _WIDTH))
    rows[_R_ONE] = 1.0
    rows[_R_LIGHT] = 0.06 + np.where(weekday, 0.86 * bump(7.5, 18.5, 0.3)
                                     + 0.25 * bump(18.5, 20.0, 0.15), 0.0)
    rows[_R_SOCKETS] = 0.18 + np.where(weekday, 0.66 * bump(8.0, 18.0, 0.4)
                                       - 0.12 * bump(12.0, 13.2, 0.2), 0.0)
    rows[_R_HVAC] = 0.12 + np.where(weekday, bump(6.5, 18.0, 0.5)
                                    * (0.55 + 0.3 * bump(12.0, 17.0, 1.5)), 0.0)
    rows[_R_SERVER] = 0.8 + np.where(weekday, 0.05 * bump(9.0, 18.0, 1.0), 0.0)
    rows[_R_FLAT] = 0.12 + np.where(
        weekday,
        0.45 * bump(6.3, 8.6, 0.25) + 0.15 * bump(8.6, 17.0, 0.8) + 0.72 * bump(17.5, 22.8, 0.45),
        0.35 * bump(7.8, 10.5, 0.5) + 0.3 * bump(10.5, 17.5, 1.0) + 0.7 * bump(17.5, 23.0, 0.5))
    rows[_R_PDU] = 0.97 + np.where(weekday, 0.03 * bump(9.0, 19.0, 1.5), 0.0)
    # workshop activity (probability that a machine runs): one shift, or two shifts + Saturday
    rows[_R_SHIFT1] = 0.03 + np.where(weekday, 0.85 * bump(7.0, 16.0, 0.1)
                                      - 0.5 * bump(12.0, 12.5, 0.05), 0.0)
    rows[_R_SHIFT2] = 0.03 + np.where(weekday, 0.85 * bump(6.0, 22.0, 0.1)
                                      - 0.5 * bump(12.0, 12.5, 0.05), 0.0) \
        + np.where(saturday, 0.5 * bump(7.0, 13.0, 0.1), 0.0)
    rows[_R_AMBIENT] = 0.5 - 0.5 * np.cos(2 * np.pi * (h - 3.0) / 24.0)  # 0 at 03:00, 1 at 15:00
    for r in (_R_LIGHT, _R_SOCKETS, _R_HVAC, _R_SERVER, _R_FLAT, _R_PDU):
        rows[r] /= rows[r].max()
    return rows.ravel()


_TABLE = _weekly_table()
_TABLE_NEXT = np.append(_TABLE[1:], 0.0)  # _TABLE_NEXT[i] = value one minute after _TABLE[i]


def _week_index(row: np.ndarray | int, local_minute: np.ndarray) -> np.ndarray:
    """Flat table index of `row` at a local minute (minutes since the epoch, local clock)."""
    return (local_minute + _MONDAY) % _WEEK + (np.asarray(row) * _WIDTH + _PAD)


# ---------------------------------------------------------------------------------------------
# usage classes of a group of three channels

@dataclass(frozen=True)
class _Use:
    circuit: str
    row: int  # weekly table row (-1: the device's workshop shift)
    pf: tuple[float, float]  # displacement power factor range (cos φ of the fundamental)
    thdi: tuple[float, float]  # %
    sigma: float  # stationary s.d. of the fast relative noise
    peak: tuple[float, float]  # peak current per channel (A), log-uniform
    headroom: float  # CT range chosen so that peak ≤ headroom · range


(_SPARE, _LIGHTING, _SOCKETS, _HVAC, _SERVER, _FLAT, _PDU, _MOTOR, _WELDER, _PVINV) = range(10)
_USES = (
    _Use("single_phase", _R_ONE, (1.0, 1.0), (0.0, 0.0), 0.0, (0.0, 0.0), 1.0),
    _Use("single_phase", _R_LIGHT, (0.90, 0.97), (12.0, 25.0), 0.01, (4.0, 25.0), 0.8),
    _Use("single_phase", _R_SOCKETS, (0.92, 0.98), (8.0, 22.0), 0.04, (6.0, 35.0), 0.8),
    _Use("three_phase", _R_HVAC, (0.90, 0.95), (5.0, 12.0), 0.04, (25.0, 500.0), 0.8),
    _Use("single_phase", _R_SERVER, (0.95, 0.98), (8.0, 15.0), 0.01, (8.0, 30.0), 0.8),
    _Use("single_phase", _R_FLAT, (0.95, 1.0), (5.0, 15.0), 0.06, (3.0, 9.0), 0.8),
    _Use("three_phase", _R_PDU, (0.97, 0.99), (5.0, 12.0), 0.006, (0.0, 0.0), 1.0),
    _Use("three_phase", -1, (0.75, 0.85), (3.0, 8.0), 0.03, (8.0, 90.0), 0.35),
    _Use("three_phase", -1, (0.70, 0.85), (30.0, 60.0), 0.06, (15.0, 70.0), 0.7),
    _Use("three_phase", _R_ONE, (0.98, 1.0), (2.0, 5.0), 0.005, (0.0, 0.0), 0.9),
)
_SIGMA_MAX = 0.08
_TAU_NOISE_S = 20.0
_TAU_TEMP_S = 900.0
_BYTE_SD = float(np.sqrt((256.0 ** 2 - 1.0) / 12.0))  # s.d. of (byte - 127.5)
_A1 = np.exp(-1.0 / _TAU_NOISE_S)
_NOISE_BOUND = 127.5 / _BYTE_SD * np.sqrt((1 + _A1) / (1 - _A1))  # max |x| / σ (dt = 1 worst)
assert _NOISE_BOUND * _SIGMA_MAX < 1.0  # y = 1 + x > 0: currents never negative
_DECAY = np.array([1.0, 0.55, 0.3, 0.12, 0.0])  # motor inrush, seconds 0..3 after a start

_MOTOR_NAMES = ("Compressor", "Lathe", "Saw", "Extraction fan", "CNC mill", "Pump", "Press")
_HVAC_NAMES = ("HVAC", "Chiller", "AHU", "Heat pump")

# apartment appliance bursts: (period s, duration s lo-hi, current A lo-hi, probability scale)
_BURSTS = ((300, 60.0, 240.0, 8.0, 13.0, 0.35), (420, 60.0, 300.0, 4.0, 9.0, 0.3),
           (2400, 900.0, 2200.0, 6.0, 14.0, 0.45), (3000, 900.0, 2400.0, 6.0, 12.0, 0.35))


@dataclass(frozen=True)
class Interface:
    """How the integrator wired the device for this site (names as in `cth01.protocol`)."""

    wiring: str  # "3P4W" or "3P3W"
    circuits: tuple[str, str, str, str]  # per group a-d: "single_phase" | "three_phase"
    ct_ranges: tuple[str, ...]  # 12 entries from CT_RANGES; "4000A" fills its whole group
    circuit_names: tuple[str, ...]  # 12 human names, "spare" where nothing is connected


@dataclass
class _Event:
    kind: str
    rows: np.ndarray  # device indices
    start: int
    end: int
    value: float = 1.0
    flat: np.ndarray | None = None  # flat indices into (D, 12) currents or (D, 3) voltages
    flat_ch: np.ndarray | None = None  # voltage factor 0: the channels of the lost phases


class LoadModel:
    """Per-second loads of `len(profiles)` devices; see the module docstring for the model."""

    def __init__(self, profiles: Sequence[str], *, seed: int = 0,
                 utc_offset_s: Sequence[int] | int = 0, nominal_voltage_v: float = 230.0) -> None:
        if isinstance(profiles, str):
            raise TypeError("profiles must be a sequence of profile names, one per device")
        self.profiles: tuple[str, ...] = tuple(profiles)
        n = self.devices = len(self.profiles)
        if n == 0:
            raise ValueError("LoadModel needs at least one device")
        lut = {p: i for i, p in enumerate(PROFILES)}
        try:
            prof = np.fromiter((lut[p] for p in self.profiles), np.int8, n)
        except KeyError as e:
            raise ValueError(f"unknown profile {e.args[0]!r}; expected one of {PROFILES}") from None
        if not nominal_voltage_v > 0:
            raise ValueError("nominal_voltage_v must be positive")
        offset = np.broadcast_to(np.asarray(utc_offset_s, dtype=np.int64), (n,))
        self.seed = int(seed)
        self.nominal_voltage_v = float(nominal_voltage_v)
        self._prof = prof
        self._layout(prof, offset)
        s64 = self.seed & 0xFFFFFFFFFFFFFFFF
        self._rng = np.random.default_rng(np.random.SeedSequence([s64 & 0xFFFFFFFF, s64 >> 32,
                                                                  0x10AD]))
        x0 = np.clip(self._rng.standard_normal((n, CHANNELS)), -_NOISE_BOUND, _NOISE_BOUND)
        self._y = 1.0 + x0 * self._sigma
        self._t_last: int | None = None
        self._temp_state: np.ndarray | None = None
        self._events: list[_Event] = []

    # -----------------------------------------------------------------------------------------
    # layout: classes, loads and CT ranges per device, all from hashes of (seed, device)

    def _layout(self, prof: np.ndarray, offset: np.ndarray) -> None:
        n, seed = self.devices, self.seed
        rows_all = np.arange(n)
        cls = np.zeros((n, GROUPS), np.int8)
        wiring3 = np.zeros(n, bool)
        shift_row = np.full(n, _R_SHIFT1, np.int64)
        label = (_uniform(seed, rows_all, 1, GROUPS) * 10_000).astype(np.int16)
        peak_override = np.full((n, GROUPS), np.nan)
        ct_override = np.zeros((n, GROUPS), np.int8)
        pick = _uniform(seed, rows_all, 2, 8)  # free draws for the profile layouts
        perm = np.argsort(_uniform(seed, rows_all, 3, GROUPS), axis=1)

        def shuffled(r: np.ndarray, base: np.ndarray) -> np.ndarray:
            return np.take_along_axis(base, perm[r], axis=1)

        r = np.flatnonzero(prof == _OFFICE)
        x = np.select([pick[r, 0] < 0.3, pick[r, 0] < 0.55, pick[r, 0] < 0.7],
                      [_SERVER, _SOCKETS, _LIGHTING], _SPARE)
        base = np.stack([np.full(r.size, _LIGHTING), np.full(r.size, _SOCKETS),
                         np.full(r.size, _HVAC), x], axis=1)
        cls[r] = shuffled(r, base)
        big = pick[r, 1] < 0.03  # a chiller plant on Rogowski coils
        hv = cls[r] == _HVAC
        peak_override[r[big], np.argmax(hv[big], axis=1)] = 1200.0 + 1200.0 * pick[r[big], 2]

        r = np.flatnonzero(prof == _APARTMENT)
        cls[r] = _FLAT

        r = np.flatnonzero(prof == _DATACENTRE)
        cls[r] = _PDU
        cls[r[pick[r, 0] < 0.25], 3] = _SPARE
        code = np.where(_uniform(seed, r, 4, GROUPS) < 0.6, 2, 3)  # 300 A or 500 A
        ct_override[r] = code
        peak_override[r] = (0.6 + 0.2 * _uniform(seed, r, 5, GROUPS)) * _CT_AMPS[code]

        r = np.flatnonzero(prof == _WORKSHOP)
        w3 = pick[r, 0] < 0.3
        wiring3[r] = w3
        shift_row[r] = np.where(pick[r, 1] < 0.5, _R_SHIFT1, _R_SHIFT2)
        x = np.where(pick[r, 2] < 0.4, _MOTOR, np.where(w3, _SPARE, _LIGHTING))
        base = np.stack([np.full(r.size, _WELDER), np.full(r.size, _MOTOR),
                         np.full(r.size, _MOTOR), x], axis=1)
        cls[r] = shuffled(r, base)

        r = np.flatnonzero(prof == _PV)
        others = np.select([pick[r, 3:6] < 0.3, pick[r, 3:6] < 0.6, pick[r, 3:6] < 0.8],
                           [_LIGHTING, _SOCKETS, _HVAC], _SPARE)
        base = np.concatenate([np.full((r.size, 1), _PVINV), others], axis=1)
        cls[r] = shuffled(r, base)
        kw = 8.0 * (150.0 / 8.0) ** pick[r, 6]
        pv_group = np.argmax(cls[r] == _PVINV, axis=1)
        peak_override[r, pv_group] = kw * 1000.0 / (3.0 * self.nominal_voltage_v)

        # ---- per channel: loads, CT ranges, power factors, THDi, noise
        use = [_USES[c] for c in range(len(_USES))]
        lo = np.array([u.peak[0] for u in use])
        hi = np.array([u.peak[1] for u in use])
        three = np.array([u.circuit == "three_phase" for u in use])
        cls12 = np.repeat(cls, 3, axis=1).astype(np.intp)
        ug, uc = _uniform(seed, rows_all, 6, GROUPS), _uniform(seed, rows_all, 7, CHANNELS)
        with np.errstate(divide="ignore", invalid="ignore"):
            peak_g = np.where(lo[cls] > 0, lo[cls] * (hi[cls] / np.maximum(lo[cls], 1e-9)) ** ug,
                              0.0)
        peak_g = np.where(np.isnan(peak_override), peak_g, peak_override)
        peak = np.where(three[cls12], np.repeat(peak_g, 3, axis=1) * (0.97 + 0.06 * uc),
                        lo[cls12] * (hi[cls12] / np.maximum(lo[cls12], 1e-9)) ** uc)
        single_spare_p = np.where(cls12 == _FLAT, 0.12, 0.1)
        spare = (cls12 == _SPARE) | (~three[cls12] & (_uniform(seed, rows_all, 8, CHANNELS)
                                                       < single_spare_p))
        # every apartment keeps at least one flat
        flat_rows = np.flatnonzero(prof == _APARTMENT)
        if flat_rows.size:
            none_left = spare[flat_rows].all(axis=1)
            spare[flat_rows[none_left], 0] = False
        # a PV site's own building is small next to its roof (it exports around noon)
        peak = np.where(spare, 0.0, peak * np.where(prof == _PV, 0.3, 1.0)[:, None])
        peak = np.where(cls12 == _PVINV, np.repeat(peak_g, 3, axis=1) * (0.99 + 0.02 * uc), peak)
        headroom = np.array([u.headroom for u in use])[cls12]
        code = 1 + np.searchsorted(_CT_AMPS[1:], peak / headroom, side="left")
        code = np.minimum(code, 5)
        ctg = code.reshape(n, GROUPS, 3)
        gmax = ctg.max(axis=2, keepdims=True)
        ctg = np.where(three[cls][:, :, None] | (gmax == 5), gmax, ctg)
        ctg = np.where(ct_override[:, :, None] > 0, ct_override[:, :, None], ctg)
        ct = np.where(spare & ~(ctg.reshape(n, CHANNELS) == 5), 0, ctg.reshape(n, CHANNELS))
        ct = np.where(cls12 == _SPARE, 0, ct)
        self._ct = ct.astype(np.int8)
        self._cls = cls
        self._label = label
        self._wiring3 = wiring3
        self._base = np.where(self._ct > 0, peak, 0.0)

        pf_lo = np.array([u.pf[0] for u in use])[cls12]
        pf_hi = np.array([u.pf[1] for u in use])[cls12]
        cos1 = pf_lo + (pf_hi - pf_lo) * _uniform(seed, rows_all, 9, CHANNELS)
        th_lo = np.array([u.thdi[0] for u in use])[cls12]
        th_hi = np.array([u.thdi[1] for u in use])[cls12]
        thd = np.where(self._base > 0,
                       th_lo + (th_hi - th_lo) * _uniform(seed, rows_all, 10, CHANNELS), 0.0)
        sin1 = np.sqrt(np.maximum(0.0, 1.0 - cos1 ** 2))
        pv12 = cls12 == _PVINV
        qsign = np.where(pv12 & (np.repeat(pick[:, 7:8], CHANNELS, axis=1) < 0.5), -1.0, 1.0)
        df = 1.0 / np.sqrt(1.0 + (thd / 100.0) ** 2)
        self._thd = thd
        self._kp = np.where(pv12, -1.0, 1.0) * cos1 * df
        self._kq = qsign * sin1 * df
        self._sigma = np.array([u.sigma for u in use])[cls12]
        assert self._sigma.max() <= _SIGMA_MAX
        self._coef_cache: tuple[int, float, np.ndarray, np.ndarray] | None = None

        # ---- time: local minute per device, shape jitter per group (whole minutes)
        jit_dev = np.array([20, 40, 0, 10, 20])[prof]
        jit_grp = np.array([15, 30, 0, 5, 15])[prof]
        jit = ((2 * _uniform(seed, rows_all, 11) - 1) * jit_dev)[:, None] \
            + (2 * _uniform(seed, rows_all, 12, GROUPS) - 1) * jit_grp[:, None]
        assert np.abs(jit).max() <= _PAD
        off_min = offset.astype(np.int64) // 60
        self._off_min = off_min
        row = np.array([u.row for u in use])[cls]
        row = np.where(row < 0, shift_row[:, None], row)
        self._gidx = row * _WIDTH + _PAD + np.round(jit).astype(np.int64)
        self._expand = np.zeros((GROUPS, CHANNELS))  # (D, 4) @ expand -> (D, 12), exact
        self._expand[np.repeat(np.arange(GROUPS), 3), np.arange(CHANNELS)] = 1.0
        self._pair = np.zeros((PHASES, CHANNELS))  # (D, 3) @ pair -> voltage of each channel
        self._pair[np.tile(np.arange(PHASES), GROUPS), np.arange(CHANNELS)] = 1.0
        self._phase12 = np.tile(np.arange(PHASES), GROUPS)

        # ---- voltages
        uv = _uniform(seed, rows_all, 13, 4)
        self._vbase = 1.0 + np.clip((uv[:, :1] - 0.5) * 0.04, -0.02, 0.02) \
            + (_uniform(seed, rows_all, 14, PHASES) - 0.5) * 0.008
        self._vamp = 0.004 + 0.006 * uv[:, 1]
        self._vkey = _keys(seed, rows_all, 15)
        self._thdv = 1.3 + 2.0 * uv[:, 3:4] + (_uniform(seed, rows_all, 16, PHASES) - 0.5) * 0.4
        w3rows = np.flatnonzero(wiring3)
        self._w3 = w3rows if w3rows.size else None

        # ---- temperature
        ut = _uniform(seed, rows_all, 17, 4)
        self._probe = ut[:, 0] >= 0.1
        amb = np.where(prof == _DATACENTRE, 22.0 + 4.0 * ut[:, 1], 20.1 + 7.9 * ut[:, 1])
        self._amb = amb
        self._swing = 0.5 + 2.5 * ut[:, 2]
        self._rise = 6.0 + (44.9 - amb - self._swing - 6.0) * ut[:, 3]
        rsum = _CT_AMPS[self._ct].sum(axis=1)
        self._inv_rsum = np.where(rsum > 0, 1.0 / np.maximum(rsum, 1.0), 0.0)
        self._ones12 = np.ones(CHANNELS)

        # ---- workshops: one entry per motor or welder group
        wd, wg = np.nonzero((cls == _MOTOR) | (cls == _WELDER))
        self._ws: dict[str, Any] | None = None
        if wd.size:
            self._ws = {
                "flat": wd * GROUPS + wg, "motor": cls[wd, wg] == _MOTOR,
                "phase": (_uniform(seed, wd * GROUPS + wg, 18) * 10).astype(np.int64),
                "key": _keys(seed, wd * GROUPS + wg, 19), "key2": _keys(seed, wd * GROUPS + wg, 20),
                "inrush": 2.5 + 3.5 * _uniform(seed, wd * GROUPS + wg, 21),
                "row": shift_row[wd], "off": off_min[wd],
            }
        # ---- PV
        r = np.flatnonzero(prof == _PV)
        self._pv: dict[str, Any] | None = None
        if r.size:
            upv = _uniform(seed, r, 22, 3)
            lat = np.radians(35.0 + 25.0 * upv[:, 0])
            self._pv = {
                "flat": r * GROUPS + np.argmax(cls[r] == _PVINV, axis=1),
                "shift": offset[r] + ((upv[:, 1] - 0.4) * 3600).astype(np.int64),
                "sinlat": np.sin(lat), "coslat": np.cos(lat), "eff": 0.88 + 0.14 * upv[:, 2],
                "key": _keys(seed, r, 23), "key2": _keys(seed, r, 24),
            }
        # ---- apartments: appliance bursts
        r = np.flatnonzero(prof == _APARTMENT)
        self._ap: dict[str, Any] | None = None
        if r.size:
            occ_mask = self._ct[r] > 0
            order = np.argsort(~occ_mask, axis=1, kind="stable")  # occupied channels first
            self._ap = {
                "rows": r, "occ": order.astype(np.int8),
                "cnt": occ_mask.sum(axis=1).astype(np.uint64), "off": off_min[r],
                "keys": [_keys(seed, r, 30 + i) for i in range(len(_BURSTS))],
            }
        # caches of the slowly changing, time-derived parts (pure functions of the slot key)
        self._cache: dict[str, tuple[int, Any]] = {}

    # -----------------------------------------------------------------------------------------
    # public API

    @property
    def nbytes(self) -> int:
        """Bytes of numpy state held by the model (all devices; the shared tables excluded)."""

        def size(obj: object) -> int:
            if isinstance(obj, np.ndarray):
                return obj.nbytes
            if isinstance(obj, dict):
                return sum(size(v) for v in obj.values())
            if isinstance(obj, list | tuple):
                return sum(size(v) for v in obj)
            if isinstance(obj, _Event):
                return sum(size(getattr(obj, f.name)) for f in dataclasses.fields(obj))
            return 0

        return size(vars(self))

    def interface(self, d: int) -> Interface:
        """The wiring recommended for device d (its CT ranges suit its loads)."""
        d = int(d)
        if not 0 <= d < self.devices:
            raise IndexError(f"device {d} out of range 0..{self.devices - 1}")
        cls = [int(c) for c in self._cls[d]]
        ct = [CT_RANGES[int(c)] for c in self._ct[d]]
        first = int(self._label[d, 0])
        seen: dict[int, int] = {}
        names: list[str] = []
        for g, c in enumerate(cls):
            j = seen[c] = seen.get(c, -1) + 1  # how many groups of this class came before
            names.extend(self._names(c, first, g, j))
        names = [nm if ct[k] != "none" else "spare" for k, nm in enumerate(names)]
        circuits = tuple(_USES[c].circuit for c in cls)
        return Interface(wiring="3P3W" if self._wiring3[d] else "3P4W",
                         circuits=(circuits[0], circuits[1], circuits[2], circuits[3]),
                         ct_ranges=tuple(ct), circuit_names=tuple(names))

    @staticmethod
    def _names(c: int, label: int, g: int, j: int) -> list[str]:
        """Names of group g of class c; label is the device's, j counts earlier groups of c."""
        phases = ("L1", "L2", "L3")
        floor = label % 4 + 3 * j + 1
        if c == _LIGHTING:
            if label % 3 == 0 and j == 0:
                return [f"Lighting {p}" for p in phases]
            return [f"Lighting floor {floor + k}" for k in range(3)]
        if c == _SOCKETS:
            return [f"Sockets floor {floor + k}" for k in range(3)]
        if c == _HVAC:
            return [f"{_HVAC_NAMES[(label + j) % len(_HVAC_NAMES)]} {p}" for p in phases]
        if c == _SERVER:
            return [f"Server room {3 * j + k + 1}" for k in range(3)]
        if c == _FLAT:
            return [f"Flat {label % 40 + 3 * g + k + 1}" for k in range(3)]
        if c == _PDU:
            rack = label % 40 + 1 + g // 2
            return [f"Rack {rack} PDU-{'AB'[g % 2]} {p}" for p in phases]
        if c == _MOTOR:
            return [f"{_MOTOR_NAMES[(label + j) % len(_MOTOR_NAMES)]} {p}" for p in phases]
        if c == _WELDER:
            return [f"Welder {p}" for p in phases]
        if c == _PVINV:
            return [f"PV inverter {p}" for p in phases]
        return ["spare"] * 3

    def second(self, t_unix: int) -> Measurements:
        """All devices at one UTC second. Advances the fast noise: call with increasing t."""
        t = int(t_unix)
        n = self.devices
        dt = 1 if self._t_last is None or t <= self._t_last else t - self._t_last
        self._t_last = t

        # group shapes (D, 4): weekly curves, interpolated within the minute, and the specials
        v0, dv = self._cached("shape", t // 60, self._shape_minute)
        g = dv * ((t % 60) / 60.0)
        g += v0
        if self._ws is not None:
            self._workshop(g, t)
        if self._pv is not None:
            self._solar(g, t)
        cur = g @ self._expand  # (D, 12), each group's value copied to its three channels
        cur *= self._base
        if self._ap is not None:
            self._bursts(cur, t)

        # fast noise: y = 1 + x, x an OU process driven by uniform bytes; cur *= y
        buf = np.frombuffer(self._rng.bytes(n * 17), np.uint8)
        a, k0, coef = self._noise_coef(dt)
        y = self._y
        y *= a
        y += k0
        y += buf[: n * CHANNELS].reshape(n, CHANNELS) * coef
        cur *= y

        v, drift = self._voltages(t, buf[n * CHANNELS: n * 15].reshape(n, PHASES))
        active = [e for e in self._events if e.start <= t < e.end]
        dark: np.ndarray | None = None
        for e in active:
            if e.kind == "overload":
                cur.reshape(-1)[e.flat] *= e.value
            elif e.kind == "voltage":
                v.reshape(-1)[e.flat] *= e.value
                if e.flat_ch is not None:
                    cur.reshape(-1)[e.flat_ch] = 0.0
            elif e.kind == "blackout":
                dark = e.rows if dark is None else np.union1d(dark, e.rows)
        if dark is not None:
            v[dark] = 0.0
            cur[dark] = 0.0
        vch = v_out = v
        if self._w3 is not None:
            vch, v_out = v.copy(), v.copy()
            self._three_wire(v, vch, v_out)

        s = vch @ self._pair  # voltage of each channel's phase
        s *= cur
        p = s * self._kp
        q = s * self._kq
        thd = self._thd
        for e in active:
            if e.kind == "harmonics":
                if thd is self._thd:
                    thd = thd.copy()
                r = e.rows
                scale = np.sqrt((1.0 + (thd[r] / 100.0) ** 2) / (1.0 + (e.value / 100.0) ** 2))
                p[r] *= scale
                q[r] *= scale
                thd[r] = np.where(self._base[r] > 0, e.value, 0.0)
        thdi = np.sign(g) @ self._expand  # 0 where the group's shape is 0 (motor off, night PV)
        thdi *= thd
        for e in active:
            if e.kind == "voltage" and e.flat_ch is not None:
                thdi.reshape(-1)[e.flat_ch] = 0.0
        if dark is not None:
            thdi[dark] = 0.0

        # THDv, unbalance
        thdv = self._thdv * (1.0 + 0.12 * drift)[:, None]
        thdv += ((buf[n * 15: n * 16] - 127.5) * (0.05 / 127.5))[:, None]
        np.clip(thdv, 1.0, 4.0, out=thdv)
        va, vb, vc = v[:, 0], v[:, 1], v[:, 2]
        v1 = va + vb + vc
        re = va - 0.5 * (vb + vc)
        im = (np.sqrt(3.0) / 2.0) * (vb - vc)
        with np.errstate(divide="ignore", invalid="ignore"):
            unb = np.where(v1 > 0, np.sqrt(re * re + im * im) * 100.0 / v1, 0.0)
        if dark is not None:
            thdv[dark] = 0.0

        temp = self._temperature(cur, t, dt, buf[n * 16:])
        for e in active:
            if e.kind == "temperature":
                temp[e.rows] += e.value
        return Measurements(current_a=cur, voltage_v=v_out, active_power_w=p,
                            reactive_power_var=q, apparent_power_va=s, thdi_pct=thdi,
                            thdv_pct=thdv, unbalance_pct=unb, temperature_c=temp)

    # ---- scripted events

    def overload(self, devices: DeviceSelection, channels: Sequence[int], factor: float, start: int,
                 end: int) -> None:
        """Multiply current and powers of `channels` (1-12) by `factor` during [start, end)."""
        cols = np.asarray(channels, dtype=np.int64).ravel()
        if cols.size == 0 or cols.min() < 1 or cols.max() > CHANNELS:
            raise ValueError("channels must be 1-12")
        if not factor >= 0:
            raise ValueError("factor must be ≥ 0")
        rows = self._rows(devices)
        flat = (rows[:, None] * CHANNELS + np.unique(cols - 1)).ravel()
        self._add(_Event("overload", rows, int(start), int(end), float(factor), flat))

    def voltage(self, devices: DeviceSelection, factor: float, start: int, end: int,
                phases: Sequence[int] = (1, 2, 3)) -> None:
        """Sag (factor < 1) or swell (> 1) of the phase voltages `phases` (1-3) in [start, end)."""
        cols = np.asarray(phases, dtype=np.int64).ravel()
        if cols.size == 0 or cols.min() < 1 or cols.max() > PHASES:
            raise ValueError("phases must be 1-3")
        if not factor >= 0:
            raise ValueError("factor must be ≥ 0")
        rows = self._rows(devices)
        cols = np.unique(cols - 1)
        flat = (rows[:, None] * PHASES + cols).ravel()
        flat_ch = None
        if factor == 0.0:  # the phase is lost: its loads draw nothing either
            ch = np.flatnonzero(np.isin(self._phase12, cols))
            flat_ch = (rows[:, None] * CHANNELS + ch).ravel()
        self._add(_Event("voltage", rows, int(start), int(end), float(factor), flat, flat_ch))

    def harmonics(self, devices: DeviceSelection, thdi_pct: float, start: int, end: int) -> None:
        """Set the THDi of every loaded channel to `thdi_pct` during [start, end)."""
        if not thdi_pct >= 0:
            raise ValueError("thdi_pct must be ≥ 0")
        self._add(_Event("harmonics", self._rows(devices), int(start), int(end), float(thdi_pct)))

    def temperature(self, devices: DeviceSelection, rise_c: float, start: int, end: int) -> None:
        """Add `rise_c` to the probe reading during [start, end) (no probe stays NaN)."""
        self._add(_Event("temperature", self._rows(devices), int(start), int(end), float(rise_c)))

    def blackout(self, devices: DeviceSelection, start: int, end: int) -> None:
        """Mains gone during [start, end): voltages, currents and powers 0."""
        self._add(_Event("blackout", self._rows(devices), int(start), int(end)))

    def blackout_mask(self, t_unix: int) -> np.ndarray:
        """(D,) bool: devices whose mains is out at t."""
        t = int(t_unix)
        mask = np.zeros(self.devices, bool)
        for e in self._events:
            if e.kind == "blackout" and e.start <= t < e.end:
                mask[e.rows] = True
        return mask

    def _add(self, event: _Event) -> None:
        if event.end <= event.start:
            raise ValueError("end must be after start (end is exclusive)")
        self._events.append(event)

    def _rows(self, devices: DeviceSelection) -> np.ndarray:
        a = np.asarray(devices)
        if a.dtype == bool:
            if a.shape != (self.devices,):
                raise ValueError(f"device mask must have shape ({self.devices},)")
            return np.flatnonzero(a)
        a = a.astype(np.int64).ravel()
        if a.size and (a.min() < 0 or a.max() >= self.devices):
            raise IndexError("device index out of range")
        return np.unique(a)

    # ---- parts of second()

    def _cached(self, name: str, key: int, make: Any) -> Any:
        """make(key), recomputed only when the slot key changes (a pure function of the key)."""
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = self._cache[name] = (key, make(key))
        return hit[1]

    def _shape_minute(self, minute: int) -> tuple[np.ndarray, np.ndarray]:
        i0 = ((minute + self._off_min + _MONDAY) % _WEEK)[:, None] + self._gidx
        v0 = _TABLE.take(i0)
        return v0, _TABLE_NEXT.take(i0) - v0

    def _noise_coef(self, dt: int) -> tuple[float, np.ndarray, np.ndarray]:
        cache = self._coef_cache
        if cache is None or cache[0] != dt:
            a = float(np.exp(-dt / _TAU_NOISE_S))
            coef = self._sigma * (np.sqrt(1.0 - a * a) / _BYTE_SD)
            k0 = (1.0 - a) - 127.5 * coef  # centres the bytes: y = a·y + (1 - a) + c·(b - 127.5)
            cache = self._coef_cache = (dt, a, k0, coef)
        return cache[1], cache[2], cache[3]

    def _drift_knots(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        u0 = _u01(_mix(_U64(slot) + self._vkey))
        u1 = _u01(_mix(_U64(slot + 1) + self._vkey))
        return 2.0 * u0 - 1.0, 2.0 * (u1 - u0)

    def _voltages(self, t: int, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d0, dd = self._cached("drift", t // 1200, self._drift_knots)
        f = (t % 1200) / 1200.0
        drift = dd * (f * f * (3.0 - 2.0 * f))
        drift += d0  # in [-1, 1]
        # uniform bytes: (b - 127.5) / 127.5 · 0.0034641 has s.d. 0.2 %
        v = noise * (0.0034641 / 127.5)
        v += self._vbase - 0.0034641
        v += (self._vamp * drift)[:, None]
        v *= self.nominal_voltage_v
        return v, drift

    def _three_wire(self, v: np.ndarray, vch: np.ndarray, v_out: np.ndarray) -> None:
        r = self._w3
        va, vb, vc = v[r, 0], v[r, 1], v[r, 2]
        # phasors va∠0, vb∠-120°, vc∠+120°: line voltages and the star-point-referred phases
        v_out[r] = np.stack([np.sqrt(va * va + vb * vb + va * vb),
                             np.sqrt(vb * vb + vc * vc + vb * vc),
                             np.sqrt(vc * vc + va * va + vc * va)], axis=1)
        h = np.sqrt(3.0) / 2.0
        re0 = (va - 0.5 * vb - 0.5 * vc) / 3.0  # zero-sequence voltage V0
        im0 = h * (vc - vb) / 3.0
        vch[r] = np.stack([np.hypot(va - re0, -im0), np.hypot(-0.5 * vb - re0, -h * vb - im0),
                           np.hypot(-0.5 * vc - re0, h * vc - im0)], axis=1)

    def _motors_minute(self, minute: int) -> tuple[np.ndarray, np.ndarray, bool]:
        w = self._ws
        assert w is not None
        q = minute + w["phase"]  # each group switches on its own 10-minute grid
        pos = q % 10
        lm = minute - pos + w["off"]  # local minute at which the current slot began
        p_now = _TABLE.take(_week_index(w["row"], lm))
        p_prev = _TABLE.take(_week_index(w["row"], lm - 10))
        su = (q // 10).astype(np.uint64) + w["key"]
        h_now = _mix(su)
        on_now = _u01(h_now) < 0.9 * p_now
        started = on_now & (_u01(_mix(su - _U64(1))) >= 0.9 * p_prev) & (pos == 0) & w["motor"]
        level = on_now * (0.55 + 0.4 * _field(h_now, _U64(0)))
        return level, started, bool(started.any())

    def _welders_slot(self, slot: int) -> np.ndarray:
        w = self._ws
        assert w is not None
        act = _TABLE.take(_week_index(w["row"], (slot * 5) // 60 + w["off"]))
        h = _mix(_U64(slot) + w["key2"])
        return np.where(_u01(h) < 0.65 * act, 0.5 + 0.5 * _field(h, _U64(0)), 0.03 * act)

    def _workshop(self, g: np.ndarray, t: int) -> None:
        w = self._ws
        assert w is not None
        level, started, any_started = self._cached("motors", t // 60, self._motors_minute)
        val = np.where(w["motor"], level, self._cached("welders", t // 5, self._welders_slot))
        sec = t % 60
        if any_started and sec < 4:  # inrush of the motors that started this minute
            val *= 1.0 + (w["inrush"] - 1.0) * (_DECAY[sec] * started)
        g.reshape(-1)[w["flat"]] = val

    def _cloud_knots(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        pv = self._pv
        assert pv is not None
        day = (slot * 120 + pv["shift"]) // 86400
        kind = _u01(_mix(day.astype(np.uint64) + pv["key"]))  # clear, broken clouds, overcast

        def cover(h: np.ndarray) -> np.ndarray:
            broken = np.where(_field(h, _U64(0)) < 0.45, 1.0, 0.3 + 0.45 * _field(h, _S16))
            c = np.where(kind < 0.8, broken, 0.12 + 0.25 * _field(h, _S32))
            return np.where(kind < 0.45, 1.0, c)

        c0 = cover(_mix(_U64(slot) + pv["key2"]))
        return c0, cover(_mix(_U64(slot + 1) + pv["key2"])) - c0

    def _solar(self, g: np.ndarray, t: int) -> None:
        pv = self._pv
        assert pv is not None
        c0, dc = self._cached("clouds", t // 120, self._cloud_knots)
        f = (t % 120) / 120.0
        decl = np.radians(23.44) * np.sin(2.0 * np.pi * (t / 86400.0 - 79.0) / 365.2422)
        hour_angle = ((t + pv["shift"]) % 86400) * (2.0 * np.pi / 86400.0) - np.pi
        sin_el = pv["coslat"] * (np.cos(decl) * np.cos(hour_angle))
        sin_el += pv["sinlat"] * np.sin(decl)
        out = np.maximum(sin_el, 0.0) ** 1.2
        out *= c0 + dc * (f * f * (3.0 - 2.0 * f))
        out *= pv["eff"]
        g.reshape(-1)[pv["flat"]] = np.minimum(out, 1.0)

    def _burst_slot(self, layer: int, slot: int) -> tuple[np.ndarray, ...]:
        """The bursts of one layer in one slot: flat channel index, start, end (s), current."""
        ap = self._ap
        assert ap is not None
        period, dlo, dhi, alo, ahi, pscale = _BURSTS[layer]
        h = _mix(_U64(slot) + ap["keys"][layer])
        ch = ap["occ"][np.arange(h.size), ((h >> _S16) % ap["cnt"]).astype(np.intp)]
        dur = dlo + (dhi - dlo) * _field(h, _S32)
        start = (period - dur) * _field(h, _S48)
        lm = (slot * period + start.astype(np.int64)) // 60 + ap["off"]
        fire = _field(h, _U64(0)) < pscale * _TABLE.take(_week_index(_R_FLAT, lm))
        amp = alo + (ahi - alo) * _u01(_mix(h ^ _M1))
        idx = ap["rows"][fire] * CHANNELS + ch[fire]
        return idx, start[fire], (start + dur)[fire], amp[fire]

    def _bursts(self, cur: np.ndarray, t: int) -> None:
        flat = cur.reshape(-1)
        for layer, burst in enumerate(_BURSTS):
            period = burst[0]
            idx, start, end, amp = self._cached(
                f"burst{layer}", t // period, lambda k, i=layer: self._burst_slot(i, k))
            sec = t % period
            on = (start <= sec) & (sec < end)
            flat[idx[on]] += amp[on]

    def _ambient_minute(self, minute: int) -> np.ndarray:
        day = _TABLE.take(_week_index(_R_AMBIENT, minute + self._off_min))
        return self._amb + self._swing * day

    def _temperature(self, cur: np.ndarray, t: int, dt: int, noise: np.ndarray) -> np.ndarray:
        lf = (cur @ self._ones12) * self._inv_rsum
        np.minimum(lf, 1.0, out=lf)
        target = self._rise * lf
        target += self._cached("ambient", t // 60, self._ambient_minute)
        state = self._temp_state
        if state is None:
            state = self._temp_state = target
        else:
            state += (target - state) * (1.0 - np.exp(-dt / _TAU_TEMP_S))
        temp = (noise - 127.5) * (0.05 / 127.5)
        temp += state
        temp[~self._probe] = np.nan
        return temp
