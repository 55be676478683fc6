"""The metering engine against analytic signals synthesised here (ideal sensors).

Accuracy targets (issue 3): 0.05 % for RMS, power and energy; 0.05 percentage points for THD
and unbalance. Each test states the analytic value it checks; phasors are RMS phasors and
x(t) = √2 |X| cos(2π f t + arg X).
"""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cth01.metering import (
    REGISTERS,
    Capture,
    CaptureError,
    ConfigError,
    EnergyRegisterError,
    EnergyRegisters,
    Meter,
    MeterConfig,
    meter_batch,
)

FS = 8000
REL = 5e-4  # 0.05 %
PP = 0.05  # percentage points
A = np.exp(2j * np.pi / 3)
DEG = np.pi / 180


def wave(f: float, seconds: float, phasors: dict[int, complex], fs: int = FS,
         start_s: float = 0.0) -> np.ndarray:
    """√2 Σ_h |X_h| cos(h 2π f t + arg X_h), X_h an RMS phasor of harmonic order h."""
    t = start_s + np.arange(round(seconds * fs)) / fs
    out = np.zeros_like(t)
    for h, x in phasors.items():
        out += np.sqrt(2) * abs(x) * np.cos(h * 2 * np.pi * f * t + np.angle(x))
    return out


def balanced(vrms: float = 230.0, angle: float = 0.3) -> list[complex]:
    """Positive-sequence L1, L2, L3 phasors."""
    return [vrms * np.exp(1j * (angle - k * 2 * np.pi / 3)) for k in range(3)]


def capture(f: float, voltages: list[dict[int, complex]], currents: list[dict[int, complex]],
            seconds: float = 1, fs: int = FS) -> tuple[np.ndarray, np.ndarray]:
    v = np.stack([wave(f, seconds, p, fs) for p in voltages])
    i = np.stack([wave(f, seconds, p, fs) for p in currents]
                 + [np.zeros(v.shape[1])] * (12 - len(currents)))
    return v, i


def meter(v: np.ndarray, i: np.ndarray, config: MeterConfig | None = None, fs: int = FS,
          nominal: int = 50, **kw):
    return meter_batch(v[None], i[None], fs, config, nominal, **kw)


def close(measured: float, expected: float, rel: float = REL, scale: float | None = None) -> bool:
    return abs(measured - expected) <= rel * (abs(expected) if scale is None else scale)


# -- RMS, power, power factor -----------------------------------------------------------------

FREQUENCIES = [(50, 50.0), (50, 49.5), (50, 50.5), (50, 49.77), (60, 60.0), (60, 59.5),
               (60, 60.5)]
ANGLES = [("PF 1", 0.0), ("PF 0.5 lagging", 60.0), ("PF 0.8 leading", -np.degrees(np.arccos(0.8))),
          ("PF 0.8 lagging", np.degrees(np.arccos(0.8)))]


@pytest.mark.parametrize(("nominal", "f"), FREQUENCIES)
@pytest.mark.parametrize(("name", "lag_deg"), ANGLES)
def test_sine_rms_power_and_power_factor(nominal, f, name, lag_deg):
    vp = balanced(230.0)
    irms = [5.0, 42.0, 99.0]  # 5 % .. ~100 % of a 100 A CT
    ip = [irms[k] * vp[k] / abs(vp[k]) * np.exp(-1j * lag_deg * DEG) for k in range(3)]
    v, i = capture(f, [{1: x} for x in vp], [{1: x} for x in ip] * 4)
    a = meter(v, i, nominal=nominal)
    assert abs(a.frequency_hz[0, 0] - f) < 1e-3
    for k in range(3):
        assert close(a.voltage_rms_v[0, 0, k], 230.0)
    for ch in range(12):
        k = ch % 3
        s = 230.0 * irms[k]
        p = s * np.cos(lag_deg * DEG)
        q = s * np.sin(lag_deg * DEG)  # > 0 lagging (inductive)
        assert close(a.current_rms_a[0, 0, ch], irms[k])
        assert close(a.active_power_w[0, 0, ch], p, scale=s)
        assert close(a.reactive_power_var[0, 0, ch], q, scale=s)
        assert close(a.apparent_power_va[0, 0, ch], s)
        assert abs(a.power_factor_pct[0, 0, ch] - abs(p) / s * 100) <= 0.05
        assert a.thdi_pct[0, 0, ch] < 0.01
    assert np.all(a.thdv_pct[0, 0] < 0.01)
    assert a.unbalance_pct[0, 0] < 0.01


@settings(max_examples=25, deadline=None)
@given(f=st.floats(49.5, 50.5), vrms=st.floats(90, 480), irms=st.floats(0.5, 1000),
       lag=st.floats(-180, 180), phase=st.floats(-np.pi, np.pi))
def test_any_sine_power_is_exact_to_0_05_pct(f, vrms, irms, lag, phase):
    v = vrms * np.exp(1j * phase)
    i = irms * np.exp(1j * (phase - lag * DEG))
    vv, ii = capture(f, [{1: v}, {1: v * A * A}, {1: v * A}], [{1: i}])
    a = meter(vv, ii, MeterConfig.default().with_ct_range(1, "1000A"))
    s = vrms * irms
    assert close(a.voltage_rms_v[0, 0, 0], vrms)
    assert close(a.current_rms_a[0, 0, 0], irms)
    assert close(a.active_power_w[0, 0, 0], s * np.cos(lag * DEG), scale=s)
    assert close(a.reactive_power_var[0, 0, 0], s * np.sin(lag * DEG), scale=s)
    assert close(a.apparent_power_va[0, 0, 0], s)


# -- harmonics --------------------------------------------------------------------------------


@pytest.mark.parametrize(("nominal", "f"), FREQUENCIES)
def test_thd_and_power_with_known_harmonic_content(nominal, f):
    # voltage: 4 % 5th, 3 % 7th; current: 30 % 3rd, 20 % 5th, fundamental lagging 30°
    v1 = 230.0
    vph = {1: v1, 5: 0.04 * v1 * np.exp(0.7j), 7: 0.03 * v1 * np.exp(-1.1j)}
    i1 = 20.0 * np.exp(-30j * DEG)
    iph = {1: i1, 3: 0.3 * 20.0 * np.exp(1j), 5: 0.2 * 20.0 * np.exp(2.5j)}
    v, i = capture(f, [vph, vph, vph], [iph])
    a = meter(v, i, nominal=nominal)
    thdv = np.hypot(4, 3)  # 5 %
    thdi = np.hypot(30, 20)  # 36.06 %
    assert np.all(np.abs(a.thdv_pct[0, 0] - thdv) <= PP)
    assert abs(a.thdi_pct[0, 0, 0] - thdi) <= PP
    vrms = v1 * np.sqrt(1 + 0.04**2 + 0.03**2)
    irms = 20.0 * np.sqrt(1 + 0.3**2 + 0.2**2)
    assert close(a.voltage_rms_v[0, 0, 0], vrms)
    assert close(a.current_rms_a[0, 0, 0], irms)
    # P = Σ_h V_h I_h cos(φ_h): fundamental + the 5th (present in both)
    p = (np.real(vph[1] * np.conj(iph[1])) + np.real(vph[5] * np.conj(iph[5])))
    q1 = np.imag(vph[1] * np.conj(iph[1]))  # IEEE 1459 fundamental reactive power
    s = vrms * irms
    assert close(a.active_power_w[0, 0, 0], p, scale=s)
    assert close(a.reactive_power_var[0, 0, 0], q1, scale=s)
    assert close(a.apparent_power_va[0, 0, 0], s)
    assert abs(a.power_factor_pct[0, 0, 0] - abs(p) / s * 100) <= 0.05


@pytest.mark.parametrize("f", [49.5, 50.0, 50.5])
def test_thd_of_a_square_wave_up_to_the_49th(f):
    # odd harmonics 1/h up to h = 49: THD = sqrt(Σ_{h=3,5..49} 1/h²)
    ph = {h: 10.0 / h * np.exp(1j * 0.1 * h) for h in range(1, 50, 2)}
    v, i = capture(f, [{1: 230}, {1: 230 * A * A}, {1: 230 * A}], [ph])
    a = meter(v, i)
    expected = 100 * np.sqrt(sum(1 / h**2 for h in range(3, 50, 2)))
    assert abs(a.thdi_pct[0, 0, 0] - expected) <= PP


@pytest.mark.parametrize(("nominal", "f"), [(50, 49.5), (50, 50.5), (60, 59.5)])
def test_even_harmonics_and_order_50_count(nominal, f):
    # half-wave-rectifier-like: 2nd 10 %, 4th 5 %, and the highest order, 50th, 2 %
    ph = {1: 10.0, 2: 1.0 * np.exp(0.3j), 4: 0.5 * np.exp(-2j), 50: 0.2}
    v, i = capture(f, [{1: 230}, {1: 230 * A * A}, {1: 230 * A}], [ph])
    a = meter(v, i, nominal=nominal)
    assert abs(a.thdi_pct[0, 0, 0] - 100 * np.sqrt(0.01 + 0.0025 + 0.0004)) <= PP


def test_harmonics_above_order_50_are_not_in_thd():
    ph = {1: 10.0, 51: 3.0}  # 2550 Hz, below Nyquist at 8 kHz
    v, i = capture(50.0, [{1: 230}, {1: 230 * A * A}, {1: 230 * A}], [ph])
    a = meter(v, i)
    assert a.thdi_pct[0, 0, 0] < 0.05
    assert close(a.current_rms_a[0, 0, 0], np.hypot(10, 3))  # RMS is true RMS


def test_six_khz_sampling_at_60_hz_stays_below_nyquist():
    fs = 6000
    ph = {1: 10.0, 3: 2.0, 49: 0.5}  # 49 x 60.5 Hz = 2964.5 Hz, just below 3 kHz
    v = np.stack([wave(60.5, 1, {1: 120 * A ** -k}, fs) for k in range(3)])
    i = np.zeros((12, fs))
    i[0] = wave(60.5, 1, ph, fs)
    a = meter(v, i, fs=fs, nominal=60)
    assert abs(a.frequency_hz[0, 0] - 60.5) < 1e-3
    assert abs(a.thdi_pct[0, 0, 0] - 100 * np.hypot(2, 0.5) / 10) <= PP


# -- unbalance --------------------------------------------------------------------------------


def unbalanced(u2_pct: float, vrms: float = 230.0, neg_angle: float = 0.4) -> list[complex]:
    """Phase voltages with positive sequence vrms and negative sequence u2 % of it."""
    pos = balanced(vrms, 0.2)
    neg_l1 = vrms * u2_pct / 100 * np.exp(1j * neg_angle)
    neg = [neg_l1, neg_l1 * A, neg_l1 * A * A]  # L1, L2 leads by 120°, L3
    return [p + n for p, n in zip(pos, neg, strict=True)]


@pytest.mark.parametrize("f", [49.5, 50.0, 50.5])
@pytest.mark.parametrize("u2", [0.0, 0.5, 2.0, 5.0])
def test_iec_unbalance_from_phase_or_line_voltages(f, u2):
    ph = unbalanced(u2)
    v, i = capture(f, [{1: x} for x in ph], [])
    assert abs(meter(v, i).unbalance_pct[0, 0] - u2) <= PP
    lines = [ph[0] - ph[1], ph[1] - ph[2], ph[2] - ph[0]]  # 3P3W: L1-L2, L2-L3, L3-L1
    v, i = capture(f, [{1: x} for x in lines], [])
    three_wire = MeterConfig.from_dict({"wiring": "3P3W"})
    assert abs(meter(v, i, three_wire).unbalance_pct[0, 0] - u2) <= PP


def test_unbalance_with_zero_sequence_is_not_counted():
    zero = 20.0 * np.exp(0.5j)  # a zero-sequence component adds the same phasor to each phase
    ph = [x + zero for x in unbalanced(2.0)]
    v, i = capture(50.0, [{1: x} for x in ph], [])
    assert abs(meter(v, i).unbalance_pct[0, 0] - 2.0) <= PP


def test_nema_unbalance_is_max_deviation_of_line_voltages():
    # phase voltages of different size at 120°: line voltages by phasor subtraction
    ph = [230.0, 220.0 * A * A, 240.0 * A]
    lines = np.abs([ph[0] - ph[1], ph[1] - ph[2], ph[2] - ph[0]])
    expected = np.max(np.abs(lines - lines.mean())) / lines.mean() * 100
    v, i = capture(50.3, [{1: x} for x in ph], [])
    assert abs(meter(v, i, unbalance="nema").unbalance_pct[0, 0] - expected) <= PP
    lv, li = capture(50.3, [{1: ph[0] - ph[1]}, {1: ph[1] - ph[2]}, {1: ph[2] - ph[0]}], [])
    three_wire = MeterConfig.from_dict({"wiring": "3P3W"})
    got = meter(lv, li, three_wire, unbalance="nema").unbalance_pct[0, 0]
    assert abs(got - expected) <= PP


# -- sign conventions, direction, pairing -----------------------------------------------------


def test_export_is_negative_power_and_exported_energy():
    vp = balanced()
    ip = [-30.0 * vp[0] / 230 * np.exp(-10j * DEG)]  # PV inverter: current opposite to V
    v, i = capture(50.0, [{1: x} for x in vp], [{1: x} for x in ip])
    a = meter(v, i)
    p = np.real(vp[0] * np.conj(ip[0]))
    assert p < 0 and close(a.active_power_w[0, 0, 0], p)
    e = a.energy_ws[0, 0, 0]
    assert e[REGISTERS.index("imported_active")] == 0
    assert close(e[REGISTERS.index("exported_active")], -p)
    assert close(a.power_factor_pct[0, 0, 0], abs(p) / (230 * 30) * 100)


def test_reverse_direction_flips_p_and_q_but_not_rms():
    vp = balanced()
    ip = [12.0 * vp[0] / 230 * np.exp(-40j * DEG)]
    v, i = capture(50.0, [{1: x} for x in vp], [{1: x} for x in ip])
    fwd = meter(v, i)
    rev = meter(v, i, MeterConfig.from_dict(
        {"groups": {"a": {"channels": [{"direction": "reverse"}, {}, {}]}}}))
    assert rev.current_rms_a[0, 0, 0] == pytest.approx(fwd.current_rms_a[0, 0, 0], rel=1e-12)
    assert rev.active_power_w[0, 0, 0] == pytest.approx(-fwd.active_power_w[0, 0, 0], rel=1e-12)
    assert rev.reactive_power_var[0, 0, 0] == pytest.approx(-fwd.reactive_power_var[0, 0, 0],
                                                            rel=1e-12)
    assert rev.power_factor_pct[0, 0, 0] == pytest.approx(fwd.power_factor_pct[0, 0, 0])
    assert fwd.energy_ws[0, 0, 0, 0] > 0 and rev.energy_ws[0, 0, 0, 1] > 0


def test_single_phase_channel_uses_its_paired_voltage():
    vp = [230.0, 210.0 * A * A, 250.0 * A]  # distinguishable phases
    ip = [10.0 * A]  # in phase with L3
    v, i = capture(50.0, [{1: x} for x in vp], [{1: x} for x in ip])
    default = meter(v, i)  # channel 1 -> L1: 120° apart
    assert close(default.active_power_w[0, 0, 0], np.real(vp[0] * np.conj(ip[0])), scale=2300)
    paired = meter(v, i, MeterConfig.from_dict(
        {"groups": {"a": {"channels": [{"voltage_phase": 3}, {}, {}]}}}))
    assert close(paired.active_power_w[0, 0, 0], 2500.0)
    assert close(paired.apparent_power_va[0, 0, 0], 2500.0)
    assert abs(paired.power_factor_pct[0, 0, 0] - 100) <= 0.05


# -- three-phase groups -----------------------------------------------------------------------

THREE_PHASE_A = MeterConfig.from_dict({"groups": {"a": {"circuit": "three_phase"}}})


@pytest.mark.parametrize("f", [49.5, 50.0, 50.5])
def test_three_phase_group_totals_3p4w(f):
    vp = unbalanced(1.0)
    ip = [30.0 * np.exp(1j * np.angle(vp[0]) - 25j * DEG),
          18.0 * np.exp(1j * np.angle(vp[1]) + 15j * DEG),
          -7.0 * np.exp(1j * np.angle(vp[2]))]  # phase 3 exporting
    v, i = capture(f, [{1: x} for x in vp], [{1: x} for x in ip])
    a = meter(v, i, THREE_PHASE_A)
    s_ph = np.abs(vp) * np.abs(ip)
    p_ph = np.real(np.array(vp) * np.conj(ip))
    q_ph = np.imag(np.array(vp) * np.conj(ip))
    for k in range(3):  # per-phase values kept
        assert close(a.active_power_w[0, 0, k], p_ph[k], scale=s_ph[k])
        assert close(a.reactive_power_var[0, 0, k], q_ph[k], scale=s_ph[k])
    assert close(a.group_active_power_w[0, 0, 0], p_ph.sum(), scale=s_ph.sum())
    assert close(a.group_reactive_power_var[0, 0, 0], q_ph.sum(), scale=s_ph.sum())
    assert close(a.group_apparent_power_va[0, 0, 0], s_ph.sum())  # arithmetic sum
    assert abs(a.group_power_factor_pct[0, 0, 0] - abs(p_ph.sum()) / s_ph.sum() * 100) <= 0.05
    assert np.isnan(a.group_active_power_w[0, 0, 1:]).all()  # single-phase groups: no total
    group_row = a.energy_ws[0, 0, 12]
    assert close(group_row[0], max(p_ph.sum(), 0), scale=s_ph.sum())
    assert group_row[1] == 0
    assert close(group_row[4], s_ph.sum())
    assert np.all(a.energy_ws[0, 0, 13:] == 0)


@pytest.mark.parametrize("f", [49.5, 50.0, 50.5])
def test_three_phase_group_3p3w_uses_the_artificial_star_point(f):
    vp = unbalanced(2.0)  # the (unmeasured) phase voltages, no zero sequence
    lines = [vp[0] - vp[1], vp[1] - vp[2], vp[2] - vp[0]]
    i1 = 40.0 * np.exp(1j * np.angle(vp[0]) - 36.87j * DEG)
    i2 = 25.0 * np.exp(1j * np.angle(vp[1]) - 10j * DEG)
    ip = [i1, i2, -i1 - i2]  # three wires: the currents sum to zero
    v, i = capture(f, [{1: x} for x in lines], [{1: x} for x in ip])
    cfg = MeterConfig.from_dict({"wiring": "3P3W", "groups": {"a": {"circuit": "three_phase"}}})
    a = meter(v, i, cfg)
    p_ph = np.real(np.array(vp) * np.conj(ip))
    q_ph = np.imag(np.array(vp) * np.conj(ip))
    scale = np.sum(np.abs(vp) * np.abs(ip))
    for k in range(3):
        assert close(a.active_power_w[0, 0, k], p_ph[k], scale=scale / 3)
        assert close(a.reactive_power_var[0, 0, k], q_ph[k], scale=scale / 3)
    assert close(a.group_active_power_w[0, 0, 0], p_ph.sum(), scale=scale)
    assert close(a.group_reactive_power_var[0, 0, 0], q_ph.sum(), scale=scale)
    # the voltage channels report the line voltages as measured
    assert np.allclose(a.voltage_rms_v[0, 0], np.abs(lines), rtol=REL)


def test_single_phase_channel_on_3p3w_uses_the_line_voltage():
    vp = balanced(230.0)
    lines = [vp[0] - vp[1], vp[1] - vp[2], vp[2] - vp[0]]
    ip = [5.0 * lines[0] / abs(lines[0])]  # resistive load across L1-L2
    v, i = capture(50.0, [{1: x} for x in lines], [{1: x} for x in ip])
    a = meter(v, i, MeterConfig.from_dict({"wiring": "3P3W"}))
    assert close(a.active_power_w[0, 0, 0], abs(lines[0]) * 5.0)


# -- frequency tracking, missing signals ------------------------------------------------------


@pytest.mark.parametrize(("nominal", "f"), FREQUENCIES)
def test_frequency_is_tracked(nominal, f):
    vp = balanced(230.0)
    v, i = capture(f, [{1: x, 3: 0.05 * x} for x in vp], [])
    a = meter(v, i, nominal=nominal)
    assert abs(a.frequency_hz[0, 0] - f) < 1e-4


def test_frequency_falls_back_to_other_phases_then_currents_then_nominal():
    vp = balanced()
    v, i = capture(50.4, [{1: 0}, {1: vp[1]}, {1: vp[2]}], [{1: 10}])  # L1 lost
    a = meter(v, i)
    assert abs(a.frequency_hz[0, 0] - 50.4) < 1e-3
    assert a.voltage_rms_v[0, 0, 0] == 0 and a.thdv_pct[0, 0, 0] == 0
    v, i = capture(50.4, [{1: 0}] * 3, [{}, {}, {1: 10}])  # outage, current still flows
    a = meter(v, i)
    assert abs(a.frequency_hz[0, 0] - 50.4) < 1e-3
    assert a.unbalance_pct[0, 0] == 0 and a.power_factor_pct[0, 0, 2] == 0
    v, i = capture(50.4, [{1: 0}] * 3, [])  # nothing at all
    a = meter(v, i, nominal=60)
    assert a.frequency_hz[0, 0] == 60.0
    assert np.all(a.power_factor_pct == 0) and np.all(a.thdi_pct == 0)
    assert np.all(a.energy_ws == 0)


def test_no_ct_configured_reports_zero():
    vp = balanced()
    v, i = capture(50.0, [{1: x} for x in vp], [{1: 10.0}, {1: 10.0}])
    cfg = MeterConfig.default().with_ct_range(2, "none")
    a = meter(v, i, cfg)
    assert a.current_rms_a[0, 0, 1] == 0 and a.active_power_w[0, 0, 1] == 0
    assert np.all(a.energy_ws[0, 0, 1] == 0) and not a.current_over_range[0, 0, 1]
    assert close(a.current_rms_a[0, 0, 0], 10.0)


# -- over-range and temperature ---------------------------------------------------------------


def test_over_range_flags():
    cfg = (MeterConfig.default().with_ct_range(2, "300A").with_ct_range(4, "4000A"))
    vp = [230.0, 520.0 * A * A, 499.0 * A]
    currents = [{1: 100.5}, {1: 299.0}, {1: 0.0}, {1: 4001.0}, {1: 3999.0}]
    v, i = capture(50.0, [{1: x} for x in vp], currents)
    a = meter(v, i, cfg)
    assert a.current_over_range[0, 0].tolist() == [True, False, False, True, False] + [False] * 7
    assert a.voltage_over_range[0, 0].tolist() == [False, True, False]


def test_temperature_is_ntc_plus_offset_clipped_to_the_range():
    cfg = MeterConfig.from_dict({"temperature_calibration": {"enabled": True, "offset_c": -0.3}})
    v, i = capture(50.0, [{1: x} for x in balanced()], [], seconds=5)
    raw = np.array([[27.42, 130.0, -50.0, np.nan, 100.3]])
    a = meter_batch(v[None], i[None], FS, cfg, temperature_c=raw)
    assert a.temperature_c[0, 0] == pytest.approx(27.12)
    assert a.temperature_c[0, 1] == 100 and a.temperature_out_of_range[0, 1]
    assert a.temperature_c[0, 2] == -20 and a.temperature_out_of_range[0, 2]
    assert np.isnan(a.temperature_c[0, 3]) and not a.temperature_out_of_range[0, 3]
    assert a.temperature_c[0, 4] == 100 and not a.temperature_out_of_range[0, 4]  # 100.0 °C
    disabled = meter_batch(v[None], i[None], FS, MeterConfig.from_dict(
        {"temperature_calibration": {"enabled": False, "offset_c": -0.3}}), temperature_c=raw)
    assert disabled.temperature_c[0, 0] == pytest.approx(27.42)


def test_meter_reports_temperature_per_second_in_order():
    v, i = capture(50.0, [{1: x} for x in balanced()], [], seconds=3)
    m = Meter(MeterConfig.default(), FS)
    reports = m.feed(Capture(v, i, FS, temperature_c=np.array([21.0, 22.0])))
    assert [r.temperature_c for r in reports] == [21.0, 22.0, None]


# -- energy -----------------------------------------------------------------------------------


def test_constant_1000_w_for_an_hour_is_1000_wh():
    fs = 6000
    vp = 230.0 * np.exp(0.3j)
    one_second = capture(50.0, [{1: vp}, {1: vp * A * A}, {1: vp * A}],
                         [{1: 1000.0 / vp.conjugate()}], fs=fs)  # V·conj(I) = 1000 W exactly
    minute = tuple(np.tile(x, 60) for x in one_second)
    m = Meter(MeterConfig.default(), fs)
    expected_increments = []
    for _ in range(60):
        reports = m.feed(minute)
        expected_increments.append(m.registers.total_pico((0, 0)))
    last = reports[-1]
    assert m.seconds == 3600 and len(reports) == 60
    assert last.imported_active_energy_wh[0] == pytest.approx(1000.0, abs=1e-6)
    assert last.exported_active_energy_wh[0] == 0
    assert last.apparent_energy_vah[0] == pytest.approx(1000.0, abs=1e-6)
    assert last.imported_reactive_energy_varh[0] + last.exported_reactive_energy_varh[0] < 1e-6
    assert last.active_power_w[0] == pytest.approx(1000.0, rel=1e-9)
    # every minute added exactly the same integer count: no drift
    steps = np.diff([0, *expected_increments])
    assert len(set(steps.tolist())) == 1


def test_registers_over_a_simulated_year_do_not_drift():
    seconds = 365 * 24 * 3600
    power_w = 1000 / 3  # not representable: 333.333… W for a year is exactly 2,920,000 Wh
    regs = EnergyRegisters(shape=(2,))
    chunk = 1 << 20
    for start in range(0, seconds, chunk):
        n = min(chunk, seconds - start)
        regs.add_seconds(np.broadcast_to([power_w, 0.001], (n, 2)))
    exact = Fraction(power_w) * seconds  # the float increment, summed exactly
    error = Fraction(regs.total_pico((0,)), 10**12) - exact
    assert abs(error) <= Fraction(seconds, 10**12)  # ≤ 1 pWs a second, i.e. ≤ 32 µWs a year
    assert regs.hours()[0] == pytest.approx(2_920_000.0, abs=1e-8)
    assert regs.total_pico((1,)) == 10**9 * seconds  # 1 mWs a second: 31,536 Ws exactly
    naive = 0.0
    for _ in range(100_000):  # what float accumulation in Wh would do, over ~1 day
        naive += power_w / 3600
    assert naive != 100_000 * Fraction(power_w) / 3600  # …and it is not exact


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 2e6, allow_nan=False), min_size=1, max_size=200),
       st.integers(1, 50))
def test_registers_are_independent_of_batching(increments, split):
    one = EnergyRegisters(shape=(1,))
    one.add_seconds(np.array(increments)[:, None])
    many = EnergyRegisters(shape=(1,))
    for k in range(0, len(increments), split):
        many.add_seconds(np.array(increments[k:k + split])[:, None])
    assert one.total_pico((0,)) == many.total_pico((0,))
    exact = sum(Fraction(x) * 10**12 for x in increments)
    # one rounding to 1 pWs per increment, after x * 1e3 (float: ≤ 1.2e-4 pWs per Ws of x)
    slack = sum(Fraction(1, 2) + Fraction(x) / 8000 for x in increments)
    assert abs(one.total_pico((0,)) - exact) <= slack
    assert 0 <= one.pico[0] < 10**9


def test_registers_refuse_impossible_increments():
    regs = EnergyRegisters()
    for bad in (-1.0, np.nan, np.inf, 2e9):
        inc = np.zeros((16, 5))
        inc[3, 2] = bad
        with pytest.raises(EnergyRegisterError) as e:
            regs.add(inc)
        assert e.value.index == (0, 3, 2)
    with pytest.raises(EnergyRegisterError):
        regs.add(np.zeros(5))
    assert regs.total_pico((3, 2)) == 0


def test_clear_energy_is_the_5f_command():
    cfg = MeterConfig.from_dict({"groups": {"b": {"circuit": "three_phase"}}})
    vp = balanced()
    v, i = capture(50.0, [{1: x} for x in vp],
                   [{1: 10 * x / 230} for x in vp] * 2, seconds=2)
    m = Meter(cfg, FS)
    m.feed((v, i))
    hours = m.registers.hours()
    assert np.all(hours[:6, 0] > 0) and hours[13, 0] > 0 and hours[12, 0] == 0
    m.clear_energy(2)
    after = m.registers.hours()
    assert np.all(after[1] == 0) and np.array_equal(after[[0, 2, 3, 4, 5]],
                                                    hours[[0, 2, 3, 4, 5]])
    assert after[13, 0] == hours[13, 0]  # group a is single-phase: nothing else cleared
    m.clear_energy(5)  # channel 5 is in three-phase group b: its total goes too
    after = m.registers.hours()
    assert np.all(after[4] == 0) and np.all(after[13] == 0) and after[3, 0] > 0
    report = m.feed((v[:, :FS], i[:, :FS]))[0]
    assert report.imported_active_energy_wh[4] == pytest.approx(2300 / 3600, rel=REL)
    m.clear_energy(0)
    assert np.all(m.registers.hours() == 0)
    for bad in (-1, 13, True, 2.0):
        with pytest.raises(ConfigError):
            m.clear_energy(bad)


# -- streaming and the two paths --------------------------------------------------------------


def test_streaming_in_odd_chunks_equals_one_call():
    cfg = MeterConfig.from_dict({"groups": {"a": {"circuit": "three_phase"},
                                            "c": {"channels": [{"direction": "reverse"}, {}, {}]}}})
    vp = unbalanced(1.5)
    ip = [{1: 12 * np.exp(-0.5j) * x / 230, 3: 2.0} for x in vp] * 3 + [{1: -20.0}] * 3
    v, i = capture(49.73, [{1: x, 5: 0.03 * x} for x in vp], ip, seconds=4.6)
    temps = [20.0, 21.0, 22.0, 23.0]
    whole = Meter(cfg, FS).feed((v, i), temperature_c=temps)
    chunked = Meter(cfg, FS)
    out = []
    bounds = [0, 1, 1234, 7777, 7778, 8001, 20000, 24011, 31999, v.shape[1]]
    for k, (a, b) in enumerate(pairwise(bounds)):
        out += chunked.feed((v[:, a:b], i[:, a:b]), temperature_c=temps[k:k + 1] if k < 4 else [])
    assert len(whole) == len(out) == 4
    assert chunked.pending_samples == v.shape[1] - 4 * FS
    for w, c in zip(whole, out, strict=True):
        dw, dc = w.to_dict(), c.to_dict()
        for key, value in dw.items():
            if key == "groups":
                assert value == dc[key]
            else:
                np.testing.assert_allclose(np.array(value, dtype=float),
                                           np.array(dc[key], dtype=float), rtol=1e-12, atol=1e-9)


def test_meter_equals_meter_batch_and_batches_mix_configs():
    vp = balanced()
    v, i = capture(50.2, [{1: x} for x in vp], [{1: 10 * x / 230} for x in vp] * 4, seconds=2)
    cfgs = [MeterConfig.default(), MeterConfig.from_dict(
        {"wiring": "3P3W", "groups": {"d": {"circuit": "three_phase"}}})]
    batch = meter_batch(np.stack([v, v]), np.stack([i, i]), FS, cfgs)
    for d, cfg in enumerate(cfgs):
        alone = meter(v, i, cfg)
        np.testing.assert_allclose(batch.active_power_w[d], alone.active_power_w[0], rtol=1e-12)
        np.testing.assert_array_equal(np.isnan(batch.group_active_power_w[d]),
                                      np.isnan(alone.group_active_power_w[0]))
        reports = Meter(cfg, FS).feed((v, i))
        np.testing.assert_allclose([r.active_power_w for r in reports],
                                   batch.active_power_w[d], rtol=1e-12)
    assert batch.devices == 2 and batch.seconds == 2


def test_report_json_has_the_cli_keys():
    cfg = MeterConfig.from_dict({"groups": {"b": {"circuit": "three_phase"}}})
    v, i = capture(50.0, [{1: x} for x in balanced()], [{1: 5.0}] * 12)
    report = Meter(cfg, FS).feed((v, i))[0]
    d = report.to_dict()
    for key, n in [("voltage_rms_v", 3), ("thdv_pct", 3), ("current_rms_a", 12),
                   ("thdi_pct", 12), ("active_power_w", 12), ("reactive_power_var", 12),
                   ("apparent_power_va", 12), ("power_factor_pct", 12),
                   ("imported_active_energy_wh", 12), ("exported_active_energy_wh", 12),
                   ("imported_reactive_energy_varh", 12), ("exported_reactive_energy_varh", 12),
                   ("apparent_energy_vah", 12)]:
        assert isinstance(d[key], list) and len(d[key]) == n
    assert isinstance(d["unbalance_pct"], float) and d["temperature_c"] is None
    groups = {g["group"]: g for g in d["groups"]}
    assert groups["a"] == {"group": "a", "circuit": "single_phase", "channels": [1, 2, 3]}
    assert groups["b"]["circuit"] == "three_phase" and "active_power_w" in groups["b"]
    assert groups["b"]["apparent_energy_vah"] > 0


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_is_a_typed_error():
    v, i = capture(50.0, [{1: 230}] * 3, [], seconds=1)
    with pytest.raises(CaptureError):
        meter_batch(v, i, FS)  # missing device axis
    with pytest.raises(CaptureError):
        meter_batch(v[None], i[None, :11], FS)
    with pytest.raises(CaptureError):
        meter_batch(v[None], i[None, :, :100], FS)
    bad = v.copy()
    bad[1, 17] = np.nan
    with pytest.raises(CaptureError):
        meter_batch(bad[None], i[None], FS)
    for rate in (8001, 7999.5, 500, float("nan"), "8000", True):
        with pytest.raises(ConfigError) as e:
            meter_batch(v[None], i[None], rate)
        assert e.value.field == "sample_rate_hz"
    with pytest.raises(ConfigError):
        meter_batch(v[None], i[None], FS, nominal_frequency_hz=55)
    with pytest.raises(ConfigError):
        meter_batch(v[None], i[None], FS, unbalance="ieee")
    with pytest.raises(ConfigError):
        meter_batch(v[None], i[None], FS, [MeterConfig.default()] * 2)
    with pytest.raises(CaptureError):
        Meter(MeterConfig.default(), 6000).feed(Capture(v, i, FS))
    with pytest.raises(CaptureError):
        Meter(MeterConfig.default(), FS).feed(v)
    with pytest.raises(CaptureError):
        meter_batch(v[None], i[None], FS, temperature_c=np.zeros((1, 2)))


def test_partial_seconds_wait_for_the_rest():
    v, i = capture(50.0, [{1: 230}] * 3, [], seconds=1.5)
    assert meter_batch(v[None], i[None], FS).seconds == 1
    m = Meter(MeterConfig.default(), FS)
    assert m.feed((v[:, :FS - 1], i[:, :FS - 1])) == []
    assert m.pending_samples == FS - 1
    assert len(m.feed((v[:, FS - 1:], i[:, FS - 1:]))) == 1
