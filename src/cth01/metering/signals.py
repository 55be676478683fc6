"""Synthetic CTH01 waveforms, reproducible from a seed, and the truth they were built from.

Owns: describing a site (`Scenario`: a three-phase `VoltageSource`, `Circuit`s of `Load`s on the
12 CT channels, timed events), the named ready-made profiles, and turning a scenario into
`Capture`s one second at a time together with the analytic `Truth` of every second.

Never: reads or writes files, touches global random state (each second draws from its own
`np.random.Generator` seeded by `(seed, stream, second)`), imports anything of ours outside
`cth01.metering.capture`, or measures its own samples — the truth is computed from the phasors
and envelopes the waveforms were built from, never from the waveforms.

Model
-----
Every waveform is a sum of terms  x(t) = √2 · Σ_m e_m(t) · Re Σ_h C_mh · exp(j·h·θ(t)),
with C_mh an RMS phasor of harmonic order h, e_m(t) a real envelope (events, load steps, inrush,
slow load variability) and θ(t) the tracked fundamental phase. The frequency is
`nominal + offset + wander(t)`, with `wander` a sum of three slow sinusoids (periods 97 s,
613 s, 3607 s) of random phase whose amplitudes add up to `frequency_wander_hz`; θ is its exact
integral, so the phase is continuous across seconds and any second can be generated alone.

Truth, per second: with G_mn = mean over the second's samples of e_m·e_n,
  active power   P  = Σ_h Σ_mn G_mn · Re(V_mh · conj I_nh)     (W, signed; Σ_h Vh·Ih·cos φh)
  reactive power Q1 = Σ_mn G_mn · Im(V_m1 · conj I_n1)          (var, fundamental, + = lagging)
  RMS²           X² = Σ_h Σ_mn G_mn · Re(X_mh · conj X_nh)
This is the time average of the steady-state phasor quantities under the envelopes. Over a
second holding a whole number of cycles with constant envelopes it equals mean(v·i) and
mean(x²) of the samples exactly; otherwise they differ by the partial-cycle ripple (below
S/(2π·f·1 s), i.e. ≤ 0.32 % of S at 50 Hz), which averages out over many seconds.

Loads. Linear loads (heater, motor, capacitor bank) are admittances applied to the actual
voltage, harmonics included: heater R; motor series R–L (Z_h = R + j·h·X); capacitor bank
parallel G–C (Y_h = G + j·h·B). Their `current_a` is the fundamental current at nominal voltage
and level 1. Non-linear loads (switch-mode / LED driver, variable-speed drive, PV inverter) are
current sources: a fixed spectrum referred to the fundamental angle of their nominal supply,
drawing constant power through sags and swells (current × 1/level, limited to 2× below 50 %
voltage, off below 10 %). Inrush scales the current magnitude only.

Wiring. 3P4W: voltage channels are L1-N, L2-N, L3-N. 3P3W: L1-L2, L2-L3, L3-L1. A single-phase
circuit is paired with one voltage channel (default: its position in its group, 1st→1, 2nd→2,
3rd→3) and connected across it. A three-phase circuit occupies a group's three channels as
L1, L2, L3 (star-equivalent; in 3P3W its zero-sequence current is removed). Its per-channel
truth is referred to the source's phase-to-neutral voltage, so in 3P3W only the group total is
observable from line-to-line voltages (two-wattmeter: −v31·i1 + v23·i2).

Events. Sag/Swell scale phase voltages; Outage zeroes every voltage and current; PhaseLoss
zeroes one phase's voltage and every current on it (a three-phase motor single-phases: its
remaining phases carry √3×); LoadStep sets a circuit's level (multiple of `current_a`); Inrush
multiplies a circuit's current by 1 + (peak_ratio − 1)·exp(−(t − at_s)/time_constant_s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from .capture import CURRENT_CHANNELS, VOLTAGE_CHANNELS, Capture, LocatedError

MAX_FREQUENCY_DEVIATION_HZ = 0.5
GROUPS = "abcd"
_WANDER_PERIODS_S = (97.0, 613.0, 3607.0)
_WANDER_SHARES = (0.2, 0.3, 0.5)
_STREAM_WANDER, _STREAM_VARIABILITY = 0, 1


class ScenarioError(LocatedError):
    """A scenario that cannot be generated; `where` names the offending part."""


# --- description -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Harmonic:
    """One harmonic: `magnitude_pct` of the fundamental RMS, `phase_deg` relative to h × the
    fundamental's angle (0 for every order = a waveform peaking with the fundamental)."""

    order: int
    magnitude_pct: float
    phase_deg: float = 0.0


class Wiring(StrEnum):
    THREE_PHASE_FOUR_WIRE = "3P4W"  # voltage channels phase-to-neutral
    THREE_PHASE_THREE_WIRE = "3P3W"  # voltage channels line-to-line


@dataclass(frozen=True)
class VoltageSource:
    """The supply: phase-to-neutral RMS `phase_voltage_v` (230 V/50 Hz, 120 V/60 Hz, ...),
    L1/L2/L3 at 0/−120/+120° plus `angle_error_deg`, magnitudes × (1 + imbalance/100), and
    `harmonics` applied to each phase (phase h × the phase's angle + phase_deg, so the 5th is
    negative-sequence and the 3rd zero-sequence, as in a real network)."""

    phase_voltage_v: float = 230.0
    nominal_frequency_hz: float = 50.0
    frequency_offset_hz: float = 0.0
    frequency_wander_hz: float = 0.0
    magnitude_imbalance_pct: tuple[float, float, float] = (0.0, 0.0, 0.0)
    angle_error_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    harmonics: tuple[Harmonic, ...] = ()

    def __post_init__(self) -> None:
        where = "source"
        if not (math.isfinite(self.phase_voltage_v) and self.phase_voltage_v > 0):
            raise ScenarioError("phase_voltage_v must be positive", where=where)
        if self.nominal_frequency_hz not in (50.0, 60.0):
            raise ScenarioError("nominal_frequency_hz must be 50 or 60", where=where)
        deviation = abs(self.frequency_offset_hz) + abs(self.frequency_wander_hz)
        if not deviation <= MAX_FREQUENCY_DEVIATION_HZ:
            raise ScenarioError(
                f"|offset| + wander is {deviation} Hz, more than ±{MAX_FREQUENCY_DEVIATION_HZ}",
                where=where)
        for label, triple in (("magnitude_imbalance_pct", self.magnitude_imbalance_pct),
                              ("angle_error_deg", self.angle_error_deg)):
            if len(triple) != 3 or not all(math.isfinite(x) for x in triple):
                raise ScenarioError(f"{label} needs three finite numbers", where=where)
        if not all(-50 < x < 50 for x in self.magnitude_imbalance_pct):
            raise ScenarioError("magnitude imbalance must stay within ±50 %", where=where)
        _check_harmonics(self.harmonics, where)


class LoadKind(StrEnum):
    HEATER = "heater"
    MOTOR = "motor"
    SWITCH_MODE = "switch-mode"  # LED drivers, computers, chargers
    VSD = "variable-speed-drive"
    PV_INVERTER = "pv-inverter"
    CAPACITOR_BANK = "capacitor-bank"


LINEAR_KINDS = frozenset({LoadKind.HEATER, LoadKind.MOTOR, LoadKind.CAPACITOR_BANK})


@dataclass(frozen=True)
class Load:
    """A load's electrical character. Prefer the constructors (`heater`, `motor`, ...).

    `current_a`: fundamental RMS current per phase at nominal voltage and level 1.
    `displacement_deg`: angle by which the fundamental current lags its voltage (negative:
    leads; 180: exports at unity power factor). `harmonics`: current harmonics of non-linear
    kinds (linear kinds take theirs from the voltage). `variability_pct`: standard deviation of
    a slow random level wander (new value each second, linear in between). `initial_level`:
    level at t = 0 (a `LoadStep` changes it)."""

    kind: LoadKind
    current_a: float
    displacement_deg: float = 0.0
    harmonics: tuple[Harmonic, ...] = ()
    variability_pct: float = 0.0
    initial_level: float = 1.0

    def __post_init__(self) -> None:
        where = f"{self.kind} load"
        if not (math.isfinite(self.current_a) and self.current_a >= 0):
            raise ScenarioError("current_a must be a finite number ≥ 0", where=where)
        if not (math.isfinite(self.variability_pct) and 0 <= self.variability_pct <= 50):
            raise ScenarioError("variability_pct must be within 0–50", where=where)
        if not (math.isfinite(self.initial_level) and self.initial_level >= 0):
            raise ScenarioError("initial_level must be ≥ 0", where=where)
        phi = self.displacement_deg
        if self.kind in LINEAR_KINDS:
            if self.harmonics:
                raise ScenarioError("linear loads take their harmonics from the voltage",
                                    where=where)
            allowed = {LoadKind.HEATER: phi == 0, LoadKind.MOTOR: 0 < phi < 90,
                       LoadKind.CAPACITOR_BANK: -90 < phi < 0}[self.kind]
            if not allowed:
                raise ScenarioError(f"displacement {phi}° does not fit a {self.kind}",
                                    where=where)
        elif not (math.isfinite(phi) and -180 <= phi <= 180):
            raise ScenarioError("displacement_deg must be within ±180", where=where)
        _check_harmonics(self.harmonics, where)

    @property
    def total_harmonic_distortion_pct(self) -> float:
        """THDi of the load's own spectrum (non-linear kinds; 0 for linear loads)."""
        return math.sqrt(sum(h.magnitude_pct ** 2 for h in self.harmonics))


def _check_harmonics(harmonics: Sequence[Harmonic], where: str) -> None:
    orders = [h.order for h in harmonics]
    if len(set(orders)) != len(orders):
        raise ScenarioError("harmonic orders must be distinct", where=where)
    for h in harmonics:
        if not (isinstance(h.order, int) and 2 <= h.order <= 99):
            raise ScenarioError(f"harmonic order {h.order} is not within 2–99", where=where)
        if not (math.isfinite(h.magnitude_pct) and 0 <= h.magnitude_pct <= 200
                and math.isfinite(h.phase_deg)):
            raise ScenarioError(f"harmonic {h.order}: magnitude 0–200 %, finite phase",
                                where=where)


# A switch-mode supply with a capacitor-input rectifier: narrow current pulses at the voltage
# peaks, odd harmonics only, all in phase with the pulse (THDi 114 % as listed; scaled).
_SWITCH_MODE_SPECTRUM_PCT = {3: 86.0, 5: 62.0, 7: 36.0, 9: 15.0, 11: 9.0, 13: 8.0, 15: 5.5,
                             17: 3.5, 19: 3.0, 21: 2.5, 23: 2.0, 25: 1.5}
_PV_SPECTRUM_PCT = {3: 1.5, 5: 1.2, 7: 0.8, 11: 0.4, 13: 0.3}


def heater(current_a: float, *, variability_pct: float = 0.0,
           initial_level: float = 1.0) -> Load:
    """Resistive heater: power factor 1, current follows the voltage (harmonics included)."""
    return Load(LoadKind.HEATER, current_a, 0.0, (), variability_pct, initial_level)


def motor(current_a: float, *, power_factor: float = 0.8, variability_pct: float = 0.0,
          initial_level: float = 1.0) -> Load:
    """Induction motor as a series R–L: lagging `power_factor` at the fundamental."""
    if not 0 < power_factor < 1:
        raise ScenarioError("a motor's power factor must be within (0, 1)", where="motor")
    return Load(LoadKind.MOTOR, current_a, math.degrees(math.acos(power_factor)), (),
                variability_pct, initial_level)


def switch_mode(current_a: float, *, thdi_pct: float = 90.0, displacement_deg: float = -5.0,
                variability_pct: float = 0.0, initial_level: float = 1.0) -> Load:
    """Switch-mode supply / LED driver: odd harmonics 3–25 of a capacitor-input rectifier,
    scaled to `thdi_pct` (typically 60–120 %; ~5–15 % with active PFC), slightly leading."""
    if not (math.isfinite(thdi_pct) and 0 <= thdi_pct <= 150):
        raise ScenarioError("thdi_pct must be within 0–150", where="switch-mode")
    scale = thdi_pct / math.sqrt(sum(m * m for m in _SWITCH_MODE_SPECTRUM_PCT.values()))
    harmonics = tuple(Harmonic(h, m * scale) for h, m in _SWITCH_MODE_SPECTRUM_PCT.items())
    return Load(LoadKind.SWITCH_MODE, current_a, displacement_deg, harmonics, variability_pct,
                initial_level)


led_driver = switch_mode


def vsd(current_a: float, *, fifth_pct: float = 30.0, seventh_pct: float = 12.0,
        displacement_deg: float = 5.0, variability_pct: float = 0.0,
        initial_level: float = 1.0) -> Load:
    """Variable-speed drive (6-pulse rectifier with DC choke): 5th and 7th dominate, 11th and
    13th at 7 % / 5 %; signs of the ideal 6-pulse current (5th and 11th inverted)."""
    harmonics = (Harmonic(5, fifth_pct, 180.0), Harmonic(7, seventh_pct, 0.0),
                 Harmonic(11, 7.0, 180.0), Harmonic(13, 5.0, 0.0))
    return Load(LoadKind.VSD, current_a, displacement_deg, harmonics, variability_pct,
                initial_level)


def pv_inverter(current_a: float, *, variability_pct: float = 0.0,
                initial_level: float = 1.0) -> Load:
    """Grid-tied PV inverter exporting at unity power factor (P < 0), THDi ≈ 2.2 %."""
    harmonics = tuple(Harmonic(h, m) for h, m in _PV_SPECTRUM_PCT.items())
    return Load(LoadKind.PV_INVERTER, current_a, 180.0, harmonics, variability_pct,
                initial_level)


def capacitor_bank(current_a: float, *, loss_pct: float = 0.3,
                   initial_level: float = 1.0) -> Load:
    """Power-factor-correction capacitors (parallel G–C): leading, `loss_pct` = G/B."""
    if not 0 < loss_pct < 100:
        raise ScenarioError("loss_pct must be within (0, 100)", where="capacitor bank")
    return Load(LoadKind.CAPACITOR_BANK, current_a, -math.degrees(math.atan(100 / loss_pct)),
                (), 0.0, initial_level)


@dataclass(frozen=True)
class Circuit:
    """A load on one channel (single-phase, paired with `voltage_channel`, default its position
    in its group) or on a group's three channels in order L1, L2, L3 (three-phase)."""

    load: Load
    channels: tuple[int, ...]
    voltage_channel: int | None = None
    name: str = ""

    @property
    def three_phase(self) -> bool:
        return len(self.channels) == 3

    @property
    def paired_voltage_channel(self) -> int:
        """Voltage channel (1–3) of a single-phase circuit."""
        if self.voltage_channel is not None:
            return self.voltage_channel
        return (self.channels[0] - 1) % 3 + 1


def single_phase(channel: int, load: Load, *, voltage_channel: int | None = None,
                 name: str = "") -> Circuit:
    return Circuit(load, (channel,), voltage_channel, name)


def three_phase(group: str, load: Load, *, name: str = "") -> Circuit:
    """A three-phase load on group a–d (channels 1–3, 4–6, 7–9, 10–12)."""
    if group not in tuple(GROUPS):
        raise ScenarioError(f"group {group!r} is not one of a, b, c, d", where="circuit")
    first = 3 * GROUPS.index(group) + 1
    return Circuit(load, (first, first + 1, first + 2), None, name)


@dataclass(frozen=True)
class Sag:
    """Phase voltages drop to `remaining_pct` of their value."""

    start_s: float
    duration_s: float
    remaining_pct: float = 70.0
    phases: tuple[int, ...] = (1, 2, 3)


@dataclass(frozen=True)
class Swell:
    """Phase voltages rise to `level_pct` of their value."""

    start_s: float
    duration_s: float
    level_pct: float = 115.0
    phases: tuple[int, ...] = (1, 2, 3)


@dataclass(frozen=True)
class Outage:
    """Every voltage and current is zero."""

    start_s: float
    duration_s: float


@dataclass(frozen=True)
class PhaseLoss:
    """One phase (1–3) is lost: its voltage and every current on it are zero."""

    start_s: float
    duration_s: float
    phase: int


@dataclass(frozen=True)
class LoadStep:
    """From `at_s` the circuit on `channel` runs at `level` × its `current_a` (0 = off)."""

    at_s: float
    channel: int
    level: float


@dataclass(frozen=True)
class Inrush:
    """Switch-on surge of the circuit on `channel`: current × peak_ratio decaying with τ."""

    at_s: float
    channel: int
    peak_ratio: float = 6.0
    time_constant_s: float = 0.1


Event = Sag | Swell | Outage | PhaseLoss | LoadStep | Inrush


@dataclass(frozen=True)
class Scenario:
    """A site: its supply, wiring, circuits, event timeline (seconds from the start) and the
    probe temperature (°C, per second: `temperature_c` + `temperature_swing_c`·sin(2π·t/1 day);
    None = no temperature in the capture)."""

    source: VoltageSource = field(default_factory=VoltageSource)
    wiring: Wiring = Wiring.THREE_PHASE_FOUR_WIRE
    circuits: tuple[Circuit, ...] = ()
    events: tuple[Event, ...] = ()
    temperature_c: float | None = 25.0
    temperature_swing_c: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "wiring", Wiring(self.wiring))
        used: dict[int, int] = {}
        for index, circuit in enumerate(self.circuits):
            where = f"circuit {index + 1}" + (f" ({circuit.name})" if circuit.name else "")
            chans = circuit.channels
            if len(chans) not in (1, 3) or not all(
                    isinstance(c, int) and 1 <= c <= CURRENT_CHANNELS for c in chans):
                raise ScenarioError("channels must be one channel or a group's three (1–12)",
                                    where=where)
            if len(chans) == 3 and (chans[0] % 3 != 1 or chans != (chans[0], chans[0] + 1,
                                                                    chans[0] + 2)):
                raise ScenarioError(f"three-phase channels {chans} are not one group's three",
                                    where=where)
            if circuit.three_phase and circuit.voltage_channel is not None:
                raise ScenarioError("a three-phase circuit takes no voltage_channel",
                                    where=where)
            if circuit.voltage_channel is not None and circuit.voltage_channel not in (1, 2, 3):
                raise ScenarioError("voltage_channel must be 1, 2 or 3", where=where)
            for c in chans:
                if c in used:
                    raise ScenarioError(f"channel {c} already carries circuit {used[c] + 1}",
                                        where=where)
                used[c] = index
        for index, event in enumerate(self.events):
            _check_event(event, used, f"event {index + 1} ({type(event).__name__})")
        if self.temperature_c is not None and not -40 <= self.temperature_c <= 125:
            raise ScenarioError("temperature_c must be within −40…125", where="scenario")
        if not math.isfinite(self.temperature_swing_c):
            raise ScenarioError("temperature_swing_c must be finite", where="scenario")

    def circuit_on(self, channel: int) -> Circuit | None:
        return next((c for c in self.circuits if channel in c.channels), None)


def _check_event(event: object, used: Mapping[int, int], where: str) -> None:
    if not isinstance(event, Sag | Swell | Outage | PhaseLoss | LoadStep | Inrush):
        raise ScenarioError(f"{event!r} is not an event", where=where)
    start = event.at_s if isinstance(event, LoadStep | Inrush) else event.start_s
    if not (math.isfinite(start) and start >= 0):
        raise ScenarioError("start must be a finite time ≥ 0 s", where=where)
    if isinstance(event, Sag | Swell | Outage | PhaseLoss) and not (
            math.isfinite(event.duration_s) and event.duration_s >= 0):
        raise ScenarioError("duration_s must be ≥ 0", where=where)
    if isinstance(event, Sag | Swell) and not (
            event.phases and set(event.phases) <= {1, 2, 3}):
        raise ScenarioError("phases must be a non-empty subset of 1, 2, 3", where=where)
    if isinstance(event, Sag) and not 0 <= event.remaining_pct < 100:
        raise ScenarioError("a sag keeps 0–100 % of the voltage", where=where)
    if isinstance(event, Swell) and not 100 < event.level_pct <= 200:
        raise ScenarioError("a swell raises the voltage to 100–200 %", where=where)
    if isinstance(event, PhaseLoss) and event.phase not in (1, 2, 3):
        raise ScenarioError("phase must be 1, 2 or 3", where=where)
    if isinstance(event, LoadStep | Inrush) and event.channel not in used:
        raise ScenarioError(f"no circuit on channel {event.channel}", where=where)
    if isinstance(event, LoadStep) and not (math.isfinite(event.level) and event.level >= 0):
        raise ScenarioError("level must be ≥ 0", where=where)
    if isinstance(event, Inrush) and not (event.peak_ratio >= 1 and event.time_constant_s > 0):
        raise ScenarioError("peak_ratio must be ≥ 1 and time_constant_s > 0", where=where)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What the generator built, one row per second starting at `start_s`.

    Per current channel (S, 12): `active_power_w` (signed: + import), `reactive_power_var`
    (fundamental Q1, + lagging), `apparent_power_va` (= reference voltage RMS × current RMS),
    `current_rms_a`, `fundamental_current_rms_a`, `thdi_pct` (orders ≥ 2 over the
    fundamental; 0 without current). Per voltage channel as wired (S, 3): `voltage_rms_v`,
    `fundamental_voltage_rms_v`, `thdv_pct`. Per second (S,): `frequency_hz` (mean over the
    second), `voltage_unbalance_pct` (|V2|/|V1| of the mean fundamental phasors, IEC
    61000-4-30; 0 without voltage), `temperature_c` (NaN when the scenario has none).
    Powers are referred to each channel's reference voltage: the paired voltage channel for
    single-phase circuits, the phase-to-neutral voltage for three-phase circuits."""

    start_s: int
    frequency_hz: np.ndarray
    voltage_rms_v: np.ndarray
    fundamental_voltage_rms_v: np.ndarray
    thdv_pct: np.ndarray
    voltage_unbalance_pct: np.ndarray
    current_rms_a: np.ndarray
    fundamental_current_rms_a: np.ndarray
    thdi_pct: np.ndarray
    active_power_w: np.ndarray
    reactive_power_var: np.ndarray
    apparent_power_va: np.ndarray
    temperature_c: np.ndarray

    @property
    def seconds(self) -> int:
        return int(self.frequency_hz.shape[0])

    def active_energy_wh(self) -> np.ndarray:
        """Per channel, signed active energy over all seconds (Wh)."""
        return self.active_power_w.sum(axis=0) / 3600.0

    @classmethod
    def concatenate(cls, parts: Sequence[Truth]) -> Truth:
        if not parts:
            raise ScenarioError("nothing to concatenate", where="truth")
        names = [f for f in cls.__dataclass_fields__ if f != "start_s"]
        return cls(parts[0].start_s,
                   *(np.concatenate([getattr(p, n) for p in parts]) for n in names))


@dataclass(frozen=True)
class Generated:
    """A generated capture and the truth of each of its seconds."""

    capture: Capture
    truth: Truth


# --- synthesis ---------------------------------------------------------------------------------

_V_WAVES = range(0, 3)  # measured voltage channels
_I_WAVES = range(3, 15)  # current channels
_PN_WAVES = range(15, 18)  # phase-to-neutral source voltages (truth only)
_SQRT3 = math.sqrt(3.0)


class _Synthesiser:
    """Everything fixed for (scenario, sample rate, seed); `second(s)` builds one second."""

    def __init__(self, scenario: Scenario, sample_rate_hz: int, seed: int) -> None:
        self.scenario = scenario
        self.rate = sample_rate_hz
        self.seed = seed
        src = scenario.source
        self.n = np.arange(sample_rate_hz)
        self.f0 = src.nominal_frequency_hz + src.frequency_offset_hz
        orders = {1} | {h.order for h in src.harmonics}
        for circuit in scenario.circuits:
            orders |= {h.order for h in circuit.load.harmonics}
        self.orders = np.array(sorted(orders))
        f_max = src.nominal_frequency_hz + abs(src.frequency_offset_hz) + src.frequency_wander_hz
        if self.orders[-1] * f_max >= sample_rate_hz / 2:
            raise ScenarioError(
                f"harmonic {self.orders[-1]} at up to {f_max} Hz is above the Nyquist "
                f"frequency of {sample_rate_hz} Hz sampling", where="scenario")
        self.h_index = {int(h): k for k, h in enumerate(self.orders)}
        rng = np.random.default_rng([seed, _STREAM_WANDER])
        self.wander_phase = rng.uniform(0, 2 * math.pi, len(_WANDER_PERIODS_S))
        self.wander_amp = [src.frequency_wander_hz * s for s in _WANDER_SHARES]
        self.phase_phasors = self._source_phasors()  # (3, H) complex RMS
        self.any_variability = any(c.load.variability_pct > 0 for c in scenario.circuits)
        self._build_terms()

    # fixed parts ---------------------------------------------------------------------------

    def _source_phasors(self) -> np.ndarray:
        src = self.scenario.source
        a = np.zeros((3, len(self.orders)), dtype=complex)
        for p in range(3):
            alpha = math.radians([0.0, -120.0, 120.0][p] + src.angle_error_deg[p])
            magnitude = src.phase_voltage_v * (1 + src.magnitude_imbalance_pct[p] / 100)
            a[p, 0] = magnitude * np.exp(1j * alpha)
            for h in src.harmonics:
                a[p, self.h_index[h.order]] = src.phase_voltage_v * h.magnitude_pct / 100 * \
                    np.exp(1j * (h.order * alpha + math.radians(h.phase_deg)))
        return a

    def _env(self, key: tuple) -> int:
        if key not in self.env_index:
            self.env_index[key] = len(self.env_keys)
            self.env_keys.append(key)
        return self.env_index[key]

    def _add(self, wave: int, key: tuple, phasors: np.ndarray) -> None:
        self.terms.append((wave, self._env(key), phasors))

    def _build_terms(self) -> None:
        sc, a = self.scenario, self.phase_phasors
        three_wire = sc.wiring is Wiring.THREE_PHASE_THREE_WIRE
        self.env_keys: list[tuple] = []
        self.env_index: dict[tuple, int] = {}
        self.terms: list[tuple[int, int, np.ndarray]] = []
        # supply composition per voltage channel: [(phase, sign)]
        if three_wire:
            self.v_parts = [[(k, 1.0), ((k + 1) % 3, -1.0)] for k in range(3)]
        else:
            self.v_parts = [[(k, 1.0)] for k in range(3)]
        for k in range(3):
            for p, sign in self.v_parts[k]:
                self._add(k, ("v", p), sign * a[p])
            self._add(_PN_WAVES[k], ("v", k), a[k])
        self.ref_wave = [(c % 3) for c in range(CURRENT_CHANNELS)]
        self.channel_info: list[tuple[int, int, list[tuple[int, float]], bool]] = []
        for ci, circuit in enumerate(sc.circuits):
            load = circuit.load
            for pos, channel in enumerate(circuit.channels):
                wave = _I_WAVES[channel - 1]
                if circuit.three_phase:
                    parts = [(pos, 1.0)]
                    self.ref_wave[channel - 1] = _PN_WAVES[pos] if three_wire else pos
                    v_nominal = sc.source.phase_voltage_v
                else:
                    k = circuit.paired_voltage_channel - 1
                    parts = self.v_parts[k]
                    self.ref_wave[channel - 1] = k
                    v_nominal = sc.source.phase_voltage_v * (_SQRT3 if three_wire else 1.0)
                self.channel_info.append((ci, pos, parts, circuit.three_phase))
                cinfo = len(self.channel_info) - 1
                if load.kind in LINEAR_KINDS:
                    y = self._admittance(load, v_nominal)
                    if circuit.three_phase and three_wire:  # star with isolated neutral
                        for j in range(3):
                            weight = (1.0 if j == pos else 0.0) - 1 / 3
                            self._add(wave, ("lin", cinfo, j), weight * y * a[j])
                    else:
                        for p, sign in parts:
                            self._add(wave, ("lin", cinfo, p), sign * y * a[p])
                else:
                    supply = sum(sign * a[p] for p, sign in parts)
                    b = self._spectrum(load, float(np.angle(supply[0])))
                    if circuit.three_phase and three_wire:
                        b = b - sum(self._spectrum(load, float(np.angle(a[j, 0])))
                                    for j in range(3)) / 3
                    self._add(wave, ("nl", cinfo), b)
        n_env, n_h = len(self.env_keys), len(self.orders)
        self.coef = np.zeros((18, n_env, n_h), dtype=complex)
        for wave, m, phasors in self.terms:
            self.coef[wave, m] += phasors
        pairs = sorted({(w, m) for w, m, _ in self.terms if w < 15})
        self.pair_wave = np.array([w for w, _ in pairs])
        self.pair_env = np.array([m for _, m in pairs])
        c = np.array([self.coef[w, m] for w, m in pairs])
        self.pair_coef = np.concatenate([c.real, -c.imag], axis=1) * math.sqrt(2.0)
        self.i_ref = np.array(self.ref_wave)

    def _admittance(self, load: Load, v_nominal: float) -> np.ndarray:
        h = self.orders.astype(float)
        y1 = load.current_a / v_nominal * np.exp(-1j * math.radians(load.displacement_deg))
        if load.kind is LoadKind.HEATER or load.current_a == 0:
            return np.full(len(h), y1, dtype=complex)
        if load.kind is LoadKind.MOTOR:
            z1 = 1 / y1
            return 1 / (z1.real + 1j * h * z1.imag)
        return y1.real + 1j * h * y1.imag  # capacitor bank: G + j·h·B

    def _spectrum(self, load: Load, alpha: float) -> np.ndarray:
        b = np.zeros(len(self.orders), dtype=complex)
        base = alpha - math.radians(load.displacement_deg)
        b[0] = load.current_a * np.exp(1j * base)
        for h in load.harmonics:
            b[self.h_index[h.order]] = load.current_a * h.magnitude_pct / 100 * np.exp(
                1j * (h.order * base + math.radians(h.phase_deg)))
        return b

    # per second ----------------------------------------------------------------------------

    def _wander_cycles(self, t: np.ndarray | float) -> np.ndarray | float:
        total = 0.0
        for amp, period, psi in zip(self.wander_amp, _WANDER_PERIODS_S, self.wander_phase,
                                    strict=True):
            if amp:
                total = total - amp * period / (2 * math.pi) * (
                    np.cos(2 * math.pi * t / period + psi) - math.cos(psi))
        return total

    def _cycles(self, s: int) -> np.ndarray:
        t = s + self.n / self.rate
        return (self.f0 * s) % 1.0 + self.f0 * self.n / self.rate + self._wander_cycles(t)

    def _harmonic_basis(self, cycles: np.ndarray) -> np.ndarray:
        z = np.exp(2j * math.pi * cycles)
        basis = np.empty((len(self.orders), len(cycles)), dtype=complex)
        power, current = z.copy(), 1
        for k, h in enumerate(self.orders):
            while current < h:
                power *= z
                current += 1
            basis[k] = power
        return np.concatenate([basis.real, basis.imag])

    def _voltage_envelopes(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.ones((3, len(t)))
        present = np.ones((3, len(t)))
        for ev in self.scenario.events:
            if isinstance(ev, Sag | Swell | Outage | PhaseLoss):
                active = (t >= ev.start_s) & (t < ev.start_s + ev.duration_s)
                if not active.any():
                    continue
                if isinstance(ev, Sag | Swell):
                    pct = ev.remaining_pct if isinstance(ev, Sag) else ev.level_pct
                    for p in ev.phases:
                        e[p - 1, active] *= pct / 100
                else:
                    rows = [ev.phase - 1] if isinstance(ev, PhaseLoss) else [0, 1, 2]
                    for p in rows:
                        e[p, active] = 0.0
                        present[p, active] = 0.0
        return e, present

    def _variability(self, boundary: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _STREAM_VARIABILITY, boundary])
        z = rng.standard_normal(len(self.scenario.circuits))
        pct = np.array([c.load.variability_pct for c in self.scenario.circuits])
        return np.maximum(0.0, 1 + pct / 100 * np.clip(z, -3, 3))

    def _circuit_levels(self, s: int, t: np.ndarray) -> np.ndarray:
        sc = self.scenario
        levels = np.empty((len(sc.circuits), len(t)))
        if self.any_variability:
            start, end = self._variability(s), self._variability(s + 1)
            ramp = self.n / self.rate
        for ci, circuit in enumerate(sc.circuits):
            steps = sorted((ev.at_s, k, ev.level) for k, ev in enumerate(sc.events)
                           if isinstance(ev, LoadStep) and ev.channel in circuit.channels)
            values = np.array([circuit.load.initial_level] + [lv for _, _, lv in steps])
            idx = np.searchsorted(np.array([at for at, _, _ in steps]), t, side="right")
            row = values[idx]
            for ev in sc.events:
                if isinstance(ev, Inrush) and ev.channel in circuit.channels:
                    dt = t - ev.at_s
                    live = (dt >= 0) & (dt < 60 * ev.time_constant_s)
                    if live.any():
                        row[live] *= 1 + (ev.peak_ratio - 1) * np.exp(
                            -dt[live] / ev.time_constant_s)
            if self.any_variability:
                row = row * (start[ci] + (end[ci] - start[ci]) * ramp)
            levels[ci] = row
        return levels

    def _envelopes(self, s: int) -> np.ndarray:
        t = s + self.n / self.rate
        e, present = self._voltage_envelopes(t)
        levels = self._circuit_levels(s, t)
        lost = 3 - present.sum(axis=0)
        a1 = self.phase_phasors[:, 0]
        channel_env = []
        for ci, _pos, parts, is_three in self.channel_info:
            env = levels[ci].copy()
            for p, _ in parts:
                env *= present[p]
            load = self.scenario.circuits[ci].load
            if is_three and load.kind is LoadKind.MOTOR:
                env *= np.where(lost == 1, _SQRT3, 1.0)
            if load.kind not in LINEAR_KINDS:
                if len(parts) == 1:
                    level = e[parts[0][0]]
                else:
                    (p, sp), (q, sq) = parts
                    level = np.abs(sp * e[p] * a1[p] + sq * e[q] * a1[q]) / abs(
                        sp * a1[p] + sq * a1[q])
                env *= np.where(level >= 0.5, 1 / np.maximum(level, 0.5),
                                np.where(level >= 0.1, 2.0, 0.0))
            channel_env.append(env)
        rows = np.empty((len(self.env_keys), len(t)))
        for m, key in enumerate(self.env_keys):
            if key[0] == "v":
                rows[m] = e[key[1]]
            elif key[0] == "lin":
                rows[m] = channel_env[key[1]] * e[key[2]]
            else:
                rows[m] = channel_env[key[1]]
        return rows

    def second(self, s: int) -> tuple[np.ndarray, dict[str, np.ndarray | float]]:
        """Samples (15, rate) of second `s` and that second's truth values."""
        cycles = self._cycles(s)
        env = self._envelopes(s)
        basis = self._harmonic_basis(cycles)
        # einsum, not `@`: tiny inner dimensions, where BLAS threads only add contention
        terms = np.einsum("tk,kn->tn", self.pair_coef, basis) * env[self.pair_env]
        samples = np.zeros((15, len(cycles)))
        for row, wave in enumerate(self.pair_wave):
            samples[wave] += terms[row]
        return samples, self._truth(s, env)

    def _truth(self, s: int, env: np.ndarray) -> dict[str, np.ndarray | float]:
        gram = env @ env.T / env.shape[1]
        weighted = np.einsum("mn,wnh->wmh", gram, self.coef.conj())
        mean_square = np.einsum("wmh,wmh->wh", self.coef, weighted).real.clip(min=0)
        cross = np.einsum("cmh,cmh->ch", self.coef[self.i_ref], weighted[3:15])
        rms = np.sqrt(mean_square.sum(axis=1))
        fundamental = np.sqrt(mean_square[:, 0])
        distortion = np.sqrt(mean_square[:, 1:].sum(axis=1))
        thd = np.divide(100 * distortion, fundamental, out=np.zeros_like(fundamental),
                        where=fundamental > 1e-9 * np.maximum(rms, 1e-300))
        phasors = self.coef[0:3, :, 0] @ env.mean(axis=1)
        a = np.exp(2j * math.pi / 3)
        positive = (phasors[0] + a * phasors[1] + a * a * phasors[2]) / 3
        negative = (phasors[0] + a * a * phasors[1] + a * phasors[2]) / 3
        unbalance = 100 * abs(negative) / abs(positive) if abs(positive) > 1e-9 else 0.0
        sc = self.scenario
        temperature = math.nan if sc.temperature_c is None else (
            sc.temperature_c + sc.temperature_swing_c * math.sin(2 * math.pi * s / 86400))
        return {
            "frequency_hz": self.f0 + float(self._wander_cycles(s + 1.0)
                                            - self._wander_cycles(float(s))),
            "voltage_rms_v": rms[0:3],
            "fundamental_voltage_rms_v": fundamental[0:3],
            "thdv_pct": thd[0:3],
            "voltage_unbalance_pct": unbalance,
            "current_rms_a": rms[3:15],
            "fundamental_current_rms_a": fundamental[3:15],
            "thdi_pct": thd[3:15],
            "active_power_w": cross.real.sum(axis=1),
            "reactive_power_var": cross[:, 0].imag,
            "apparent_power_va": rms[self.i_ref] * rms[3:15],
            "temperature_c": temperature,
        }


_TRUTH_SHAPES = {"frequency_hz": (), "voltage_rms_v": (3,), "fundamental_voltage_rms_v": (3,),
                 "thdv_pct": (3,), "voltage_unbalance_pct": (), "current_rms_a": (12,),
                 "fundamental_current_rms_a": (12,), "thdi_pct": (12,),
                 "active_power_w": (12,), "reactive_power_var": (12,),
                 "apparent_power_va": (12,), "temperature_c": ()}


def _prepare(scenario: Scenario | str, seconds: int, sample_rate_hz: float, seed: int,
             start_s: int) -> _Synthesiser:
    if isinstance(scenario, str):
        scenario = profile(scenario)
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"{scenario!r} is neither a Scenario nor a profile name")
    if isinstance(seconds, bool) or not isinstance(seconds, int | np.integer) or seconds < 0:
        raise ScenarioError(f"seconds must be a whole number ≥ 0, got {seconds!r}")
    if isinstance(start_s, bool) or not isinstance(start_s, int | np.integer) or start_s < 0:
        raise ScenarioError(f"start_s must be a whole number ≥ 0, got {start_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ScenarioError(f"seed must be a whole number ≥ 0, got {seed!r}")
    rate = float(sample_rate_hz)
    if not (rate.is_integer() and 1000 <= rate <= 100_000):
        raise ScenarioError(f"sample_rate_hz must be a whole number of Hz in 1000–100000, "
                            f"got {sample_rate_hz!r}")
    return _Synthesiser(scenario, int(rate), int(seed))


def _truth_from_rows(start_s: int, rows: Mapping[str, np.ndarray]) -> Truth:
    return Truth(start_s, **rows)


def generate(scenario: Scenario | str, seconds: int, *, sample_rate_hz: float = 8000,
             seed: int = 0, start_s: int = 0) -> Generated:
    """`seconds` seconds of `scenario` (or a profile name) from `start_s`, in one Capture.

    Memory: 15 × 8 bytes × rate per second (~1 MB per second at 8 kHz); for long runs iterate
    `generate_seconds`, which yields the very same samples one second at a time."""
    synth = _prepare(scenario, seconds, sample_rate_hz, seed, start_s)
    rate = synth.rate
    samples = np.empty((15, seconds * rate))
    rows = {k: np.empty((seconds, *shape)) for k, shape in _TRUTH_SHAPES.items()}
    for k in range(seconds):
        block, values = synth.second(start_s + k)
        samples[:, k * rate:(k + 1) * rate] = block
        for name, value in values.items():
            rows[name][k] = value
    return Generated(_capture(synth, samples, rows["temperature_c"]),
                     _truth_from_rows(start_s, rows))


def generate_seconds(scenario: Scenario | str, seconds: int | None = None, *,
                     sample_rate_hz: float = 8000, seed: int = 0,
                     start_s: int = 0) -> Iterator[Generated]:
    """Yield one-second `Generated` values (`seconds` of them; None = without end). Their
    concatenation equals `generate(...)` with the same arguments, sample for sample. Bad
    arguments raise `ScenarioError` here, not at the first `next()`."""
    synth = _prepare(scenario, 0 if seconds is None else seconds, sample_rate_hz, seed,
                     start_s)
    return _seconds(synth, seconds, start_s)


def _seconds(synth: _Synthesiser, seconds: int | None, start_s: int) -> Iterator[Generated]:
    k = 0
    while seconds is None or k < seconds:
        block, values = synth.second(start_s + k)
        rows = {name: np.asarray(value, dtype=float).reshape(1, *_TRUTH_SHAPES[name])
                for name, value in values.items()}
        yield Generated(_capture(synth, block, rows["temperature_c"]),
                        _truth_from_rows(start_s + k, rows))
        k += 1


def _capture(synth: _Synthesiser, samples: np.ndarray, temperature: np.ndarray) -> Capture:
    has_temperature = synth.scenario.temperature_c is not None
    return Capture(samples[:VOLTAGE_CHANNELS], samples[VOLTAGE_CHANNELS:], float(synth.rate),
                   temperature.copy() if has_temperature else None)


# --- ready-made profiles -----------------------------------------------------------------------


def _sine() -> Scenario:
    """Pure sinusoids at exactly 230 V / 50 Hz: heaters on 1–3 (5, 10, 15 A), a 3-phase 0.8 PF
    motor on b (20 A), a 3-phase capacitor bank on c (8 A), a heater (2 A), a 0.8 PF motor
    (4 A) and a PV inverter (6 A, export) on 10–12. No events, no distortion, no drift."""
    return Scenario(
        circuits=(single_phase(1, heater(5.0)), single_phase(2, heater(10.0)),
                  single_phase(3, heater(15.0)), three_phase("b", motor(20.0)),
                  three_phase("c", capacitor_bank(8.0)), single_phase(10, heater(2.0)),
                  single_phase(11, motor(4.0)),
                  single_phase(12, Load(LoadKind.PV_INVERTER, 6.0, 180.0))),
        name="sine")


_MILD_DISTORTION = (Harmonic(3, 1.0), Harmonic(5, 2.5, 180.0), Harmonic(7, 1.5), Harmonic(11, 0.7))


def _office() -> Scenario:
    """230 V/50 Hz, THDv ≈ 3 %: LED lighting on 1–3, computers (switch-mode) on 4–6, a 3-phase
    HVAC drive on c, a kettle on 10 (on 30–150 s), a lift motor on 11 (starts at 60 s with
    inrush), a PFC capacitor on 12. A 70 % sag on L1 at 90 s for 0.2 s."""
    return Scenario(
        source=VoltageSource(frequency_wander_hz=0.05, harmonics=_MILD_DISTORTION,
                             magnitude_imbalance_pct=(0.5, -0.3, 0.2)),
        circuits=(single_phase(1, led_driver(8.0, thdi_pct=90.0, variability_pct=2.0)),
                  single_phase(2, led_driver(7.0, thdi_pct=85.0, variability_pct=2.0)),
                  single_phase(3, led_driver(9.0, thdi_pct=95.0, variability_pct=2.0)),
                  single_phase(4, switch_mode(6.0, thdi_pct=110.0, variability_pct=5.0)),
                  single_phase(5, switch_mode(5.0, thdi_pct=105.0, variability_pct=5.0)),
                  single_phase(6, switch_mode(6.5, thdi_pct=115.0, variability_pct=5.0)),
                  three_phase("c", vsd(25.0, variability_pct=3.0), name="HVAC"),
                  single_phase(10, heater(12.0, initial_level=0.0), name="kettle"),
                  single_phase(11, motor(10.0, initial_level=0.0), name="lift"),
                  single_phase(12, capacitor_bank(4.0))),
        events=(LoadStep(30.0, 10, 1.0), LoadStep(150.0, 10, 0.0), LoadStep(60.0, 11, 1.0),
                Inrush(60.0, 11, 5.0, 0.2), Sag(90.0, 0.2, 70.0, (1,))),
        temperature_c=24.0, temperature_swing_c=3.0, name="office")


def _data_centre() -> Scenario:
    """230 V/50 Hz: IT load with active-PFC supplies (THDi ≈ 10 %) three-phase on a, b, c, CRAC
    fan drives on d. A 110 % swell at 120 s (0.5 s) and a 0.1 s outage at 200 s."""
    return Scenario(
        source=VoltageSource(frequency_wander_hz=0.02,
                             harmonics=(Harmonic(5, 1.5, 180.0), Harmonic(7, 1.0))),
        circuits=(three_phase("a", switch_mode(60.0, thdi_pct=8.0, variability_pct=1.0)),
                  three_phase("b", switch_mode(55.0, thdi_pct=10.0, variability_pct=1.0)),
                  three_phase("c", switch_mode(50.0, thdi_pct=12.0, variability_pct=1.0)),
                  three_phase("d", vsd(40.0, variability_pct=2.0), name="CRAC fans")),
        events=(Swell(120.0, 0.5, 110.0), Outage(200.0, 0.1)),
        temperature_c=22.0, name="data-centre")


def _workshop() -> Scenario:
    """230 V/50 Hz, THDv ≈ 4 %: a compressor motor on a (3-phase, starts at 5 s with 6× inrush
    and a 85 % sag, stops at 65 s), a lathe drive on b, an oven (7), chargers (8) and a drill
    motor switched on 20–35 s (9), PFC capacitors on d; phase L3 lost 40–42 s."""
    return Scenario(
        source=VoltageSource(frequency_wander_hz=0.1, magnitude_imbalance_pct=(1.0, -1.0, 0.0),
                             harmonics=(Harmonic(3, 1.5), Harmonic(5, 3.0, 180.0),
                                        Harmonic(7, 2.0), Harmonic(11, 1.0))),
        circuits=(three_phase("a", motor(30.0, power_factor=0.82, initial_level=0.0),
                              name="compressor"),
                  three_phase("b", vsd(20.0, variability_pct=10.0), name="lathe"),
                  single_phase(7, heater(15.0), name="oven"),
                  single_phase(8, switch_mode(3.0, thdi_pct=80.0), name="chargers"),
                  single_phase(9, motor(6.0, power_factor=0.75, initial_level=0.0),
                               name="drill"),
                  three_phase("d", capacitor_bank(8.0))),
        events=(LoadStep(5.0, 1, 1.0), Inrush(5.0, 1, 6.0, 0.15), Sag(5.0, 0.3, 85.0),
                LoadStep(65.0, 1, 0.0), LoadStep(20.0, 9, 1.0), Inrush(20.0, 9, 4.0, 0.05),
                LoadStep(35.0, 9, 0.0), PhaseLoss(40.0, 2.0, 3)),
        temperature_c=18.0, name="workshop")


def _pv_site() -> Scenario:
    """230 V/50 Hz house with PV: a 3-phase inverter exporting 25 A on a (clouds: 8 %
    variability), a heat-pump motor on b, a heater, electronics and LED lighting on 7–9, a
    micro-inverter (10) and a fridge (11, cycling at 30/90 s). A 60 % sag at 50 s (0.15 s)."""
    return Scenario(
        source=VoltageSource(frequency_wander_hz=0.05, harmonics=_MILD_DISTORTION),
        circuits=(three_phase("a", pv_inverter(25.0, variability_pct=8.0), name="PV"),
                  three_phase("b", motor(8.0, power_factor=0.85), name="heat pump"),
                  single_phase(7, heater(10.0)),
                  single_phase(8, switch_mode(2.0, thdi_pct=100.0)),
                  single_phase(9, led_driver(1.0, thdi_pct=70.0)),
                  single_phase(10, pv_inverter(6.0, variability_pct=8.0), name="micro-inverter"),
                  single_phase(11, motor(1.5, power_factor=0.7), name="fridge")),
        events=(LoadStep(30.0, 11, 0.0), LoadStep(90.0, 11, 1.0), Inrush(90.0, 11, 4.0, 0.05),
                Sag(50.0, 0.15, 60.0)),
        temperature_c=30.0, temperature_swing_c=8.0, name="pv-site")


def _apartment() -> Scenario:
    """120 V/60 Hz (208Y/120): fridge (1, cycling), LED lighting (2), TV/computer (3), space
    heater (4, on at 10 s), microwave (5, 20–50 s), window air conditioner (6), a 3-phase HVAC
    drive on c, a dryer (10), an EV charger with PFC (11). A 2 s outage at 100 s."""
    return Scenario(
        source=VoltageSource(phase_voltage_v=120.0, nominal_frequency_hz=60.0,
                             frequency_wander_hz=0.03, harmonics=_MILD_DISTORTION),
        circuits=(single_phase(1, motor(2.0, power_factor=0.75), name="fridge"),
                  single_phase(2, led_driver(1.0, thdi_pct=100.0)),
                  single_phase(3, switch_mode(1.5, thdi_pct=115.0, variability_pct=5.0)),
                  single_phase(4, heater(12.0, initial_level=0.0), name="space heater"),
                  single_phase(5, switch_mode(10.0, thdi_pct=60.0, initial_level=0.0),
                               name="microwave"),
                  single_phase(6, motor(8.0, power_factor=0.9), name="air conditioner"),
                  three_phase("c", vsd(10.0, variability_pct=3.0), name="HVAC"),
                  single_phase(10, heater(20.0), name="dryer"),
                  single_phase(11, switch_mode(16.0, thdi_pct=5.0, displacement_deg=-2.0),
                               name="EV charger")),
        events=(LoadStep(10.0, 4, 1.0), LoadStep(20.0, 5, 1.0), LoadStep(50.0, 5, 0.0),
                LoadStep(40.0, 1, 0.0), LoadStep(80.0, 1, 1.0), Inrush(80.0, 1, 5.0, 0.05),
                Outage(100.0, 2.0)),
        temperature_c=21.0, name="apartment")


def _plant_3p3w() -> Scenario:
    """400 V/50 Hz three-wire (voltage channels line-to-line): a 0.82 PF motor on a, a drive on
    b, capacitors on c, line-connected heaters on 10 (L1-L2), 11 (L2-L3), 12 (L3-L1). A 80 %
    sag on L1 at 20 s for 0.5 s."""
    return Scenario(
        source=VoltageSource(frequency_wander_hz=0.05,
                             harmonics=(Harmonic(5, 2.5, 180.0), Harmonic(7, 1.5))),
        wiring=Wiring.THREE_PHASE_THREE_WIRE,
        circuits=(three_phase("a", motor(50.0, power_factor=0.82)),
                  three_phase("b", vsd(40.0, variability_pct=5.0)),
                  three_phase("c", capacitor_bank(15.0)),
                  single_phase(10, heater(20.0)), single_phase(11, heater(10.0)),
                  single_phase(12, heater(15.0))),
        events=(Sag(20.0, 0.5, 80.0, (1,)),),
        temperature_c=35.0, name="plant-3p3w")


PROFILES: Mapping[str, Callable[[], Scenario]] = MappingProxyType({
    "sine": _sine, "office": _office, "data-centre": _data_centre, "workshop": _workshop,
    "pv-site": _pv_site, "apartment": _apartment, "plant-3p3w": _plant_3p3w,
})


def profile(name: str) -> Scenario:
    """The ready-made scenario called `name` (see `PROFILES`; each factory's docstring says
    what it holds)."""
    try:
        factory = PROFILES[name]
    except (KeyError, TypeError):
        raise ScenarioError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}",
                            where="profile") from None
    return factory()
