"""Energy accuracy of the whole chain: generator -> sensor model -> engine -> energy registers.

1. IEC 62053-21 class 1 (active energy) and IEC 62053-23 class 2 (reactive energy) with the
   documented default sensor model (`DEFAULT_SENSORS`, only the CT range changed) at the
   standards' test points, for 100 A and 1000 A split-core CTs and the 4000 A Rogowski coil,
   each with several draws of the CT units' own errors (seeds).
2. A simulated day of changing load (86,400 s, ideal sensors): the active energy registers
   equal the integral of the generator's known power to 0.05 % (issue 3's ideal-sensor target),
   export included.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cth01.metering import (
    DEFAULT_SENSORS,
    REGISTERS,
    EnergyRegisters,
    MeterConfig,
    SensorModel,
    apply_sensor_model,
    generate,
    generate_seconds,
    meter_batch,
)
from cth01.metering.sensors import ct_errors
from cth01.metering.signals import (
    Harmonic,
    Inrush,
    Load,
    LoadKind,
    LoadStep,
    Sag,
    Scenario,
    VoltageSource,
    heater,
    motor,
    single_phase,
    three_phase,
)

IMPORTED_P, EXPORTED_P, IMPORTED_Q, EXPORTED_Q = (REGISTERS.index(r) for r in (
    "imported_active", "exported_active", "imported_reactive", "exported_reactive"))

# =============================================================================================
# 1. IEC 62053-21 class 1 / IEC 62053-23 class 2 with the default sensor model
# =============================================================================================
#
# Limits: IEC 62053-21:2020 (static meters for AC active energy, classes 0,5, 1 and 2) and
# IEC 62053-23:2020 (static meters for reactive energy, classes 2 and 3), 7.9 "Limits of error
# due to variation of the current", table of acceptable percentage error limits for
# single-phase meters and polyphase meters with balanced loads (Ed. 1, 2003: 8.1, Table 6).
# Ed. 2 writes the current bands with Imin / Itr instead of Ib; for a directly connected
# class 1 (class 2) meter they are the Ed. 1 bands below, Imin = 5 % and Itr = 10 % of Ib.
#
# Why the directly connected rows: the CTH01 is tested *with* its CTs (the sensor model puts
# the CT errors into the samples). The 2020 editions' scope: meters designed for low-power
# instrument transformers (LPITs, IEC 61869 series: Rogowski coils, mV-output CTs) may be
# tested only together with them, against the requirements for directly connected meters.
# Mapping: Ib (Iref) = the CT's rated current, Imax = 120 % of it (the issue's range). Test
# points: 5, 10, 20, 50, 100, 120 % of rated; a point no row covers (e.g. 5 % at PF 0.5 L) is
# not a test point of the standard and is not tested. Not tested either: the rows for
# PF 0.25 L / 0.5 C (62053-21, on request) and sin φ 0.25 (62053-23).
#
# Each row: (load, from % of rated, to % of rated, limit ±%); from ≤ I < to, and the last
# band of each load runs up to and including Imax.

CURRENT_POINTS_PCT = (5, 10, 20, 50, 100, 120)
IMAX_PCT = 120

ACTIVE_CLASS_1 = (  # IEC 62053-21 class 1
    ("PF1", 5, 10, 1.5),
    ("PF1", 10, IMAX_PCT, 1.0),
    ("PF0.5L", 10, 20, 1.5),
    ("PF0.5L", 20, IMAX_PCT, 1.0),
    ("PF0.8C", 10, 20, 1.5),
    ("PF0.8C", 20, IMAX_PCT, 1.0),
)
REACTIVE_CLASS_2 = (  # IEC 62053-23 class 2; sin φ inductive (L) or capacitive (C)
    ("sin1L", 5, 10, 2.5),
    ("sin1L", 10, IMAX_PCT, 2.0),
    ("sin1C", 5, 10, 2.5),
    ("sin1C", 10, IMAX_PCT, 2.0),
    ("sin0.5L", 10, 20, 2.5),
    ("sin0.5L", 20, IMAX_PCT, 2.0),
    ("sin0.5C", 10, 20, 2.5),
    ("sin0.5C", 20, IMAX_PCT, 2.0),
)

#: Displacement φ of the current behind its voltage, degrees (negative: leading, capacitive).
DISPLACEMENT_DEG = {
    "PF1": 0.0,
    "PF0.5L": 60.0,
    "PF0.8C": -math.degrees(math.acos(0.8)),
    "sin1L": 90.0,
    "sin1C": -90.0,
    "sin0.5L": 30.0,
    "sin0.5C": -30.0,
}
#: CT under test -> rated current (A); the sensor model picks split-core or Rogowski by range.
CTS = {"split100A": 100, "split1000A": 1000, "rogowski4000A": 4000}
#: Draws of the CT units' own ratio / phase offsets (`sensors.unit_offsets`). Run `seed` meters
#: the points on DEVICES devices, device d with sensor seed `unit_seed(seed, d)`: every point
#: sees a different CT unit in every run.
UNIT_SEEDS = tuple(range(6))
V_RMS = 230.0  # reference voltage, 50 Hz, sinusoidal: the standards' reference conditions
FS = 8000
SECONDS = 4  # energy integrated over 4 s: 200 whole cycles a point
IDEAL_TARGET_PCT = 0.05  # issue 3, ideal sensors
MODEL_AGREEMENT_PP = 0.02  # measured error vs the error the sensor model predicts


def limit_pct(table: tuple, load: str, pct: float) -> float | None:
    """The table's limit for `load` at `pct` % of rated current; None if no row covers it."""
    for name, lo, hi, lim in table:
        if name == load and (lo <= pct < hi or (hi == IMAX_PCT and pct == IMAX_PCT)):
            return lim
    return None


def class_points(table: tuple) -> list:
    """pytest params (ct, load, pct, limit) for every CT and every covered standard point."""
    loads = dict.fromkeys(row[0] for row in table)
    return [pytest.param(ct, load, pct, lim, id=f"{ct}-{load}-I{pct}%")
            for ct in CTS for load in loads for pct in CURRENT_POINTS_PCT
            if (lim := limit_pct(table, load, pct)) is not None]


ACTIVE_POINTS = class_points(ACTIVE_CLASS_1)
REACTIVE_POINTS = class_points(REACTIVE_CLASS_2)

# Every (load, current) pair is one single-phase circuit on its own channel: 7 × 6 = 42
# channels, i.e. four devices of twelve channels, each channel paired with its own phase.
LAYOUT = [(load, pct) for load in DISPLACEMENT_DEG for pct in CURRENT_POINTS_PCT]
DEVICES = math.ceil(len(LAYOUT) / 12)


def unit_seed(seed: int, device: int) -> int:
    return DEVICES * seed + device


def slot(load: str, pct: float) -> tuple[int, int]:
    """(device, channel index 0-11) carrying the point."""
    k = LAYOUT.index((load, pct))
    return k // 12, k % 12


def current_source(current_a: float, displacement_deg: float) -> Load:
    """A sinusoidal current at any displacement: a non-linear load kind without harmonics
    (the linear kinds restrict the angle: a motor cannot reach 90°)."""
    return Load(LoadKind.SWITCH_MODE, current_a, displacement_deg)


def analytic(load: str, rated_a: float, pct: float) -> tuple[float, float]:
    """(active Wh, reactive varh, signed: + lagging) of the point over `SECONDS`."""
    s = V_RMS * rated_a * pct / 100
    phi = math.radians(DISPLACEMENT_DEG[load])
    return (s * math.cos(phi) * SECONDS / 3600, s * math.sin(phi) * SECONDS / 3600)


def config(rated_a: int) -> MeterConfig:
    ct = f"{rated_a}A"
    return MeterConfig.from_dict(
        {"groups": {g: {"channels": [{"ct_range": ct}] * 3} for g in "abcd"}})


def class_capture(rated_a: int) -> list:
    """The four devices' ideal `Generated` captures (230 V, 50 Hz, SECONDS long)."""
    out = []
    for d in range(DEVICES):
        circuits = tuple(
            single_phase(c + 1, current_source(rated_a * pct / 100, DISPLACEMENT_DEG[load]))
            for c, (load, pct) in enumerate(LAYOUT[12 * d:12 * d + 12]))
        scenario = Scenario(source=VoltageSource(phase_voltage_v=V_RMS), circuits=circuits,
                            temperature_c=None, name=f"iec-points-{rated_a}A-{d}")
        out.append(generate(scenario, SECONDS, sample_rate_hz=FS))
    return out


def register_hours(captures: list, rated_a: int) -> np.ndarray:
    """Meter the devices together and return their registers in Wh / varh, (D, 16, 5)."""
    arrays = meter_batch(np.stack([c.voltage for c in captures]),
                         np.stack([c.current for c in captures]), FS, config(rated_a))
    registers = EnergyRegisters((len(captures), 16, len(REGISTERS)))
    registers.add_seconds(arrays.energy_ws.swapaxes(0, 1))
    return registers.hours()


def reading(hours: np.ndarray, load: str, pct: float) -> tuple[float, float]:
    """(registered energy, energy in the register of the wrong direction) for the point: the
    active registers for PF points, the reactive ones (inductive: imported, capacitive:
    exported) for sin φ points; energies signed like `analytic`."""
    d, c = slot(load, pct)
    row = hours[d, c]
    if load.startswith("PF"):
        return row[IMPORTED_P] - row[EXPORTED_P], row[EXPORTED_P]
    if DISPLACEMENT_DEG[load] > 0:
        return row[IMPORTED_Q] - row[EXPORTED_Q], row[EXPORTED_Q]
    return row[IMPORTED_Q] - row[EXPORTED_Q], row[IMPORTED_Q]


def predicted_error_pct(load: str, rated_a: int, pct: float, model: SensorModel,
                        seed: int) -> float:
    """The error the sensor model's documented errors imply for the point: CT ratio error ε
    and phase lead δ of its channel at its current (unit offset included), voltage ratio
    error εv: P ∝ (1 + ε)(1 + εv) cos(φ − δ), Q ∝ (1 + ε)(1 + εv) sin(φ − δ)."""
    d, c = slot(load, pct)
    ratio, lead = ct_errors(np.full(12, rated_a * pct / 100), model, seed=unit_seed(seed, d))
    gain = (1 + ratio[c] / 100) * (1 + model.voltage_ratio_error_pct / 100)
    phi = math.radians(DISPLACEMENT_DEG[load])
    shifted = phi - math.radians(lead[c] / 60)
    f = math.cos if load.startswith("PF") else math.sin
    return 100 * (gain * f(shifted) / f(phi) - 1)


@pytest.fixture(scope="module")
def measured() -> dict:
    """Per (ct, load, pct): percentage errors over the seeds (default sensors), the
    wrong-direction register content, the model's predicted errors, the ideal-sensor error
    and the generator's truth (Wh or varh)."""
    out: dict = {}
    for ct, rated in CTS.items():
        generated = class_capture(rated)
        model = replace(DEFAULT_SENSORS, current_range_a=(rated,) * 12)
        ideal = register_hours([g.capture for g in generated], rated)
        per_seed = [register_hours([apply_sensor_model(g.capture, model, seed=unit_seed(seed, d))
                                    for d, g in enumerate(generated)], rated)
                    for seed in UNIT_SEEDS]
        for load, pct in LAYOUT:
            p_wh, q_varh = analytic(load, rated, pct)
            expected = p_wh if load.startswith("PF") else q_varh
            d, c = slot(load, pct)
            truth = generated[d].truth
            kind = (truth.active_power_w if load.startswith("PF")
                    else truth.reactive_power_var)
            readings = [reading(h, load, pct) for h in per_seed]
            out[ct, load, pct] = {
                "expected": expected,
                "truth": kind[:, c].sum() / 3600,
                "errors": np.array([100 * (r / expected - 1) for r, _ in readings]),
                "wrong": np.array([w for _, w in readings]),
                "predicted": np.array([predicted_error_pct(load, rated, pct, model, seed)
                                       for seed in UNIT_SEEDS]),
                "ideal": 100 * (reading(ideal, load, pct)[0] / expected - 1),
            }
    return out


def describe(errors: np.ndarray) -> str:
    return ", ".join(f"seed {s}: {e:+.3f} %" for s, e in zip(UNIT_SEEDS, errors, strict=True))


@pytest.mark.parametrize(("ct", "load", "pct", "limit"), ACTIVE_POINTS)
def test_active_energy_within_iec_62053_21_class_1(measured, ct, load, pct, limit):
    m = measured[ct, load, pct]
    assert np.abs(m["errors"]).max() <= limit, (
        f"{ct} {load} at {pct} % of rated: {describe(m['errors'])}; class 1 allows ±{limit} %")
    assert np.all(m["wrong"] == 0.0), f"import registered as export: {m['wrong']} Wh"


@pytest.mark.parametrize(("ct", "load", "pct", "limit"), REACTIVE_POINTS)
def test_reactive_energy_within_iec_62053_23_class_2(measured, ct, load, pct, limit):
    m = measured[ct, load, pct]
    assert np.abs(m["errors"]).max() <= limit, (
        f"{ct} {load} at {pct} % of rated: {describe(m['errors'])}; class 2 allows ±{limit} %")
    assert np.all(m["wrong"] == 0.0), f"reactive energy in the wrong quadrant: {m['wrong']}"


@pytest.mark.parametrize("ct", CTS)
def test_the_errors_are_the_sensor_models(measured, ct):
    """The class tests above meter a live error model: at every point and seed the measured
    error is the one the model's documented CT / voltage errors predict (so a sensor model
    that did nothing, or an engine that hid its errors, would fail here)."""
    for load, pct in LAYOUT:
        m = measured[ct, load, pct]
        gap = np.abs(m["errors"] - m["predicted"])
        assert gap.max() <= MODEL_AGREEMENT_PP, (
            f"{ct} {load} {pct} %: measured {m['errors']}, model predicts {m['predicted']}")
        assert np.abs(m["predicted"]).max() >= 0.05  # the model's error is really there


@pytest.mark.parametrize("ct", CTS)
def test_same_points_with_ideal_sensors_meet_the_issue_target(measured, ct):
    """Without the sensor model every point is within 0.05 % (issue 3): the class margins
    above are the sensors' errors, not the engine's."""
    worst = max(abs(measured[ct, load, pct]["ideal"]) for load, pct in LAYOUT)
    assert worst <= IDEAL_TARGET_PCT


@pytest.mark.parametrize("ct", CTS)
def test_generator_truth_is_the_analytic_energy(measured, ct):
    """The reference of the class tests is V·I·cos φ·t (V·I·sin φ·t): the generator's truth
    for the same circuits agrees with it."""
    for load, pct in LAYOUT:
        m = measured[ct, load, pct]
        assert m["truth"] == pytest.approx(m["expected"], rel=1e-9, abs=1e-9)


# =============================================================================================
# 2. A day of changing load: the registers integrate the generator's known power
# =============================================================================================

DAY_S = 86_400
DAY_FS = 1000  # the lowest rate the engine accepts: harmonics up to the 9th at 50 Hz
DAY_CHUNK_S = 600  # metered in chunks of ten minutes (72 MB of samples)
DAY_REL = 5e-4  # 0.05 %, issue 3's ideal-sensor target
H = 3600.0


def day_scenario() -> Scenario:
    """230 V / 50 Hz with a wandering frequency, imbalance and 3rd/5th/7th voltage harmonics.
    Loads, switched mid-second (so steps fall inside seconds):
    1 water heater, on 02:00-05:30 and 18:10-18:55;
    2 pump motor (PF 0.8), a new level every two hours, off 12:10-14:10, restarted with
      inrush;
    3 IT switch-mode supplies (THDi ≈ 88 %, up to the 9th), slow variability;
    b three-phase PV inverter exporting from 06:00 to 20:00 in hourly steps of a bell-shaped
      day, plus clouds (8 % variability);
    c three-phase drive (5th, 7th) at six levels.
    A 70 % sag on L1 at 15:00 for 0.4 s."""
    source = VoltageSource(frequency_offset_hz=0.02, frequency_wander_hz=0.1,
                           magnitude_imbalance_pct=(0.5, -0.3, 0.2),
                           harmonics=(Harmonic(3, 1.0), Harmonic(5, 2.5, 180.0),
                                      Harmonic(7, 1.5)))
    it = Load(LoadKind.SWITCH_MODE, 6.0, -5.0, (Harmonic(3, 70.0), Harmonic(5, 45.0),
                                                Harmonic(7, 25.0), Harmonic(9, 12.0)),
              variability_pct=3.0)
    pv = Load(LoadKind.PV_INVERTER, 16.0, 180.0,
              (Harmonic(3, 1.5), Harmonic(5, 1.2), Harmonic(7, 0.8)),
              variability_pct=8.0, initial_level=0.0)
    drive = Load(LoadKind.VSD, 25.0, 5.0, (Harmonic(5, 30.0, 180.0), Harmonic(7, 12.0)),
                 variability_pct=2.0, initial_level=0.3)
    events: list = []
    for on, off in ((2.0, 5.5), (18.17, 18.92)):
        events += [LoadStep(on * H + 0.37, 1, 1.0), LoadStep(off * H + 0.81, 1, 0.0)]
    for k, level in enumerate((0.2, 0.6, 1.0, 0.8, 0.4, 1.0, 0.0, 0.7, 1.1, 0.5, 0.3, 0.2)):
        events.append(LoadStep(k * 2 * H + 600.25, 2, level))
    events.append(Inrush(7 * 2 * H + 600.25, 2, 5.0, 0.1))  # restart after 12:10-14:10 off
    for k in range(15):  # 06:00 .. 20:00
        level = round(math.sin(math.pi * k / 14), 3) if k < 14 else 0.0
        events.append(LoadStep((6 + k) * H + 0.123, 4, level))
    for hour, level in ((6, 0.7), (9, 1.0), (13, 1.2), (17, 0.8), (21, 0.4)):
        events.append(LoadStep(hour * H + 0.5, 7, level))
    events.append(Sag(15 * H + 0.3, 0.4, 70.0, (1,)))
    return Scenario(
        source=source,
        circuits=(single_phase(1, heater(12.0, initial_level=0.0), name="water heater"),
                  single_phase(2, motor(8.0, power_factor=0.8, variability_pct=2.0,
                                        initial_level=0.2), name="pump"),
                  single_phase(3, it, name="IT"),
                  three_phase("b", pv, name="PV"),
                  three_phase("c", drive, name="drive")),
        events=tuple(events), temperature_c=None, name="day")


def test_a_day_of_changing_load_integrates_the_known_power():
    """86,400 s generated second by second, metered in ten-minute chunks with `meter_batch`,
    accumulated in `EnergyRegisters`: every imported / exported active energy register
    (channels and three-phase groups) equals the generator's known power integrated second by
    second (split by the sign of each second's energy, as the registers are) to 0.05 %."""
    scenario = day_scenario()
    cfg = MeterConfig.from_dict(
        {"groups": {"b": {"circuit": "three_phase"}, "c": {"circuit": "three_phase"}}})
    registers = EnergyRegisters()
    truth_ws = np.zeros((16, 2))  # rows as the registers; imported, exported
    samples = np.empty((15, DAY_CHUNK_S * DAY_FS))
    power = np.empty((DAY_CHUNK_S, 16))
    seconds = generate_seconds(scenario, DAY_S, sample_rate_hz=DAY_FS, seed=7)
    lowest, highest = np.full(16, np.inf), np.full(16, -np.inf)  # W, per register row
    for start in range(0, DAY_S, DAY_CHUNK_S):
        for k in range(DAY_CHUNK_S):
            g = next(seconds)
            samples[:3, k * DAY_FS:(k + 1) * DAY_FS] = g.capture.voltage
            samples[3:, k * DAY_FS:(k + 1) * DAY_FS] = g.capture.current
            power[k, :12] = g.truth.active_power_w[0]
        power[:, 12:] = power[:, :12].reshape(-1, 4, 3).sum(axis=-1)
        power[:, [12, 15]] = 0.0  # groups a and d are single-phase: no group registers
        truth_ws[:, 0] += np.maximum(power, 0).sum(axis=0)
        truth_ws[:, 1] += np.maximum(-power, 0).sum(axis=0)
        lowest = np.minimum(lowest, power.min(axis=0))
        highest = np.maximum(highest, power.max(axis=0))
        arrays = meter_batch(samples[None, :3], samples[None, 3:], DAY_FS, cfg)
        assert arrays.seconds == DAY_CHUNK_S, start
        registers.add_seconds(arrays.energy_ws[0])
    assert next(seconds, None) is None

    measured = registers.hours()[:, [IMPORTED_P, EXPORTED_P]]
    truth = truth_ws / 3600
    rows = [f"ch{c}" for c in range(1, 13)] + [f"group {g}" for g in "abcd"]
    # the day really changes and exports: heater, pump and PV switch off and run at over
    # 1 kW, the drive runs at levels 0.3-1.2, the PV never imports and exports by day
    switched, pv, drive = [0, 1, 3, 4, 5, 13], [3, 4, 5, 13], [6, 7, 8, 14]
    assert np.all(np.minimum(np.abs(lowest), np.abs(highest))[switched] < 1.0)
    assert np.all(np.maximum(np.abs(lowest), np.abs(highest))[switched] > 1000.0)
    assert np.all(highest[drive] > 3 * lowest[drive]) and np.all(lowest[drive] > 0)
    assert np.all(highest[pv] == 0.0) and np.all(lowest[pv] < -2000.0)
    assert truth[[3, 4, 5, 13], 1].min() > 15_000  # Wh exported by the PV phases and group b
    assert truth[[0, 1, 2, 6, 7, 8, 14], 0].min() > 5_000  # Wh imported by the loads
    for r, name in enumerate(rows):
        total = truth[r].sum()
        for col, register in enumerate(("imported", "exported")):
            t, m = truth[r, col], measured[r, col]
            assert abs(m - t) <= DAY_REL * total, (
                f"{name} {register}: {m:.6f} Wh metered, {t:.6f} Wh known "
                f"({(m / t - 1) * 100 if t else math.inf:+.5f} %)")
    # export goes to the exported register: the PV phases and their group import nothing
    assert np.all(measured[[3, 4, 5, 13], 0] == 0.0)
    assert np.all(measured[[0, 1, 2, 6, 7, 8, 14], 1] == 0.0)
