"""The signal generator: reproducible, each load with its intended character, events doing what
they say, and a truth that agrees with the samples it describes."""

import math

import numpy as np
import pytest

from cth01.metering.signals import (
    PROFILES,
    Circuit,
    Harmonic,
    Inrush,
    Load,
    LoadKind,
    LoadStep,
    Outage,
    PhaseLoss,
    Sag,
    Scenario,
    ScenarioError,
    Swell,
    Truth,
    VoltageSource,
    Wiring,
    capacitor_bank,
    generate,
    generate_seconds,
    heater,
    led_driver,
    motor,
    profile,
    pv_inverter,
    single_phase,
    switch_mode,
    three_phase,
    vsd,
)

RATE = 8000
TRUTH_FIELDS = [f for f in Truth.__dataclass_fields__ if f != "start_s"]


def per_second(x, rate=RATE):
    """(channels, S·rate) → (S, channels, rate)"""
    return x.reshape(x.shape[0], -1, rate).transpose(1, 0, 2)


def measured_power(capture, reference_channels, rate=RATE):
    """mean(v·i) per second and channel, v = the given voltage channel per current channel."""
    v = per_second(capture.voltage, rate)[:, reference_channels]
    i = per_second(capture.current, rate)
    return (v * i).mean(axis=2)


def rms(x, rate=RATE):
    return np.sqrt((per_second(x, rate) ** 2).mean(axis=2))


def fundamental_phasors(x, f0=50, rate=RATE):
    """RMS phasors of order h (array of orders) per channel over a 1-s window."""
    spectrum = np.fft.rfft(x, axis=-1) * math.sqrt(2) / x.shape[-1]
    return spectrum[..., f0]


def thd_by_fft(i, f0=50, max_order=50):
    spectrum = np.abs(np.fft.rfft(i))
    fundamental = spectrum[f0]
    harmonics = spectrum[[f0 * h for h in range(2, max_order + 1)]]
    return 100 * math.sqrt((harmonics ** 2).sum()) / fundamental


def each_kind():
    """One load of each kind on a clean 230 V / 50 Hz supply (sinusoidal, no drift)."""
    return Scenario(circuits=(
        single_phase(1, heater(10.0)),
        single_phase(2, motor(8.0)),
        single_phase(3, led_driver(2.0)),
        single_phase(4, switch_mode(3.0, thdi_pct=60.0)),
        single_phase(5, switch_mode(3.0, thdi_pct=120.0)),
        single_phase(6, vsd(12.0)),
        single_phase(7, pv_inverter(9.0)),
        single_phase(8, capacitor_bank(5.0)),
        three_phase("d", motor(20.0, power_factor=0.85)),
    ))


def distorted_site(wiring=Wiring.THREE_PHASE_FOUR_WIRE):
    """Voltage harmonics and imbalance, every load kind, no frequency drift."""
    source = VoltageSource(
        harmonics=(Harmonic(3, 2.0, 30.0), Harmonic(5, 4.0, 180.0), Harmonic(7, 3.0, 10.0),
                   Harmonic(11, 1.5, 75.0), Harmonic(13, 1.0)),
        magnitude_imbalance_pct=(2.0, -1.5, 0.5), angle_error_deg=(0.0, 1.0, -2.0))
    return Scenario(source=source, wiring=wiring, circuits=(
        single_phase(1, heater(10.0)),
        single_phase(2, led_driver(4.0)),
        single_phase(3, capacitor_bank(6.0), voltage_channel=1),
        three_phase("b", motor(15.0)),
        three_phase("c", vsd(25.0)),
        single_phase(10, pv_inverter(7.0)),
        single_phase(11, motor(3.0, power_factor=0.6)),
        single_phase(12, switch_mode(2.0, thdi_pct=110.0)),
    ))


# --- reproducibility -----------------------------------------------------------------------------


def test_same_seed_same_samples_and_truth():
    a = generate("office", 2, seed=7)
    b = generate("office", 2, seed=7)
    assert np.array_equal(a.capture.voltage, b.capture.voltage)
    assert np.array_equal(a.capture.current, b.capture.current)
    for name in TRUTH_FIELDS:
        assert np.array_equal(getattr(a.truth, name), getattr(b.truth, name), equal_nan=True)


def test_seed_changes_drift_and_load_variability():
    a = generate("office", 2, seed=1)
    b = generate("office", 2, seed=2)
    assert not np.array_equal(a.capture.current, b.capture.current)
    assert not np.array_equal(a.truth.frequency_hz, b.truth.frequency_hz)


@pytest.mark.parametrize(("name", "start_s", "seconds"), [("workshop", 4, 3), ("office", 0, 2)])
def test_generate_seconds_concatenated_equals_generate(name, start_s, seconds):
    whole = generate(name, seconds, seed=3, start_s=start_s, sample_rate_hz=6000)
    parts = list(generate_seconds(name, seconds, seed=3, start_s=start_s, sample_rate_hz=6000))
    assert len(parts) == seconds
    assert [p.truth.start_s for p in parts] == list(range(start_s, start_s + seconds))
    voltage = np.concatenate([p.capture.voltage for p in parts], axis=1)
    current = np.concatenate([p.capture.current for p in parts], axis=1)
    assert np.array_equal(voltage, whole.capture.voltage)
    assert np.array_equal(current, whole.capture.current)
    joined = Truth.concatenate([p.truth for p in parts])
    for field in TRUTH_FIELDS:
        assert np.array_equal(getattr(joined, field), getattr(whole.truth, field))


def test_any_second_can_be_generated_alone():
    whole = generate("workshop", 4, seed=9)
    late = generate("workshop", 2, seed=9, start_s=2)
    assert np.array_equal(whole.capture.current[:, 2 * RATE:], late.capture.current)


# --- truth agrees with the samples ---------------------------------------------------------------


@pytest.mark.parametrize("scenario", [profile("sine"), distorted_site(), each_kind()],
                         ids=["sine", "distorted", "each-kind"])
def test_mean_of_v_times_i_is_the_truth_active_power(scenario):
    g = generate(scenario, 2)
    reference = [scenario.circuit_on(c + 1).paired_voltage_channel - 1
                 if scenario.circuit_on(c + 1) and not scenario.circuit_on(c + 1).three_phase
                 else c % 3 for c in range(12)]
    measured = measured_power(g.capture, reference)
    truth = g.truth
    assert np.all(np.abs(measured - truth.active_power_w) <= 1e-4 * truth.apparent_power_va
                  + 1e-9)
    loaded = truth.active_power_w != 0
    rel = np.abs(measured[loaded] / truth.active_power_w[loaded] - 1)
    assert rel.max() < 1e-4  # 0.01 %
    assert np.allclose(rms(g.capture.current), truth.current_rms_a, rtol=1e-4, atol=1e-9)
    assert np.allclose(rms(g.capture.voltage), truth.voltage_rms_v, rtol=1e-4)


def test_truth_reactive_power_is_the_fundamental_q1():
    g = generate(distorted_site(), 1)
    v = fundamental_phasors(g.capture.voltage)
    i = fundamental_phasors(g.capture.current)
    reference = [0, 1, 0, 0, 1, 2, 0, 1, 2, 0, 1, 2]  # channel 3 is paired with V1
    q1 = (v[reference] * i.conj()).imag
    assert np.allclose(q1, g.truth.reactive_power_var[0], rtol=1e-6, atol=1e-6)


def test_truth_thd_matches_an_fft_of_the_samples():
    g = generate(distorted_site(), 1)
    for c in range(12):
        if g.truth.current_rms_a[0, c]:
            assert thd_by_fft(g.capture.current[c]) == pytest.approx(g.truth.thdi_pct[0, c],
                                                                     abs=1e-6)
    for k in range(3):
        assert thd_by_fft(g.capture.voltage[k]) == pytest.approx(g.truth.thdv_pct[0, k],
                                                                 abs=1e-6)


def test_three_wire_group_total_by_two_wattmeters_and_line_connected_channels():
    scenario = distorted_site(Wiring.THREE_PHASE_THREE_WIRE)
    g = generate(scenario, 1)
    v12, v23, v31 = g.capture.voltage
    i = g.capture.current
    for first in (3, 6):  # groups b and c (0-based channel index)
        total = (-v31 * i[first] + v23 * i[first + 1]).mean()
        assert total == pytest.approx(g.truth.active_power_w[0, first:first + 3].sum(),
                                      rel=1e-4)
        assert np.abs(i[first:first + 3].sum(axis=0)).max() < 1e-9  # no neutral current
    # single-phase circuits sit across their line-to-line voltage channel
    assert (v12 * i[0]).mean() == pytest.approx(g.truth.active_power_w[0, 0], rel=1e-4)
    assert (v23 * i[10]).mean() == pytest.approx(g.truth.active_power_w[0, 10], rel=1e-4)
    assert rms(g.capture.voltage)[0] == pytest.approx(g.truth.voltage_rms_v[0], rel=1e-4)
    assert g.truth.voltage_rms_v[0, 0] == pytest.approx(230 * math.sqrt(3), rel=0.05)


def test_energy_of_a_drifting_supply_over_whole_cycles_equals_the_integral_of_truth():
    """f = 50.2 Hz: 251 whole cycles every 5 s, so mean(v·i) over 5 s is exact."""
    scenario = Scenario(source=VoltageSource(frequency_offset_hz=0.2,
                                             harmonics=(Harmonic(5, 3.0),)),
                        circuits=each_kind().circuits)
    g = generate(scenario, 5, sample_rate_hz=RATE)
    v = g.capture.voltage[[c % 3 for c in range(12)]]
    energy_ws = (v * g.capture.current).sum(axis=1) / RATE
    truth_ws = g.truth.active_power_w.sum(axis=0)
    assert np.allclose(energy_ws, truth_ws, rtol=1e-4, atol=1e-6)
    assert np.allclose(g.truth.frequency_hz, 50.2)


def test_frequency_wander_stays_within_bounds_and_matches_zero_crossings():
    scenario = Scenario(source=VoltageSource(frequency_wander_hz=0.5),
                        circuits=(single_phase(1, heater(1.0)),))
    truth = generate(scenario, 300, sample_rate_hz=1000, seed=4).truth
    assert np.all(np.abs(truth.frequency_hz - 50) <= 0.5)
    assert np.ptp(truth.frequency_hz) > 0.01  # it does wander
    g = generate(scenario, 3, sample_rate_hz=RATE, seed=4, start_s=100)
    v = g.capture.voltage[0]
    up = np.flatnonzero((v[:-1] < 0) & (v[1:] >= 0))
    crossings = (up + v[up] / (v[up] - v[up + 1])) / RATE
    for s in range(3):
        inside = crossings[(crossings >= s) & (crossings < s + 1)]
        estimate = (len(inside) - 1) / (inside[-1] - inside[0])
        assert estimate == pytest.approx(g.truth.frequency_hz[s], abs=2e-3)
    # phase is continuous across the seconds: no step larger than the largest slope allows
    assert np.abs(np.diff(v)).max() < 2 * math.pi * 50.5 * 230 * math.sqrt(2) / RATE * 1.01


# --- each load has its intended character --------------------------------------------------------


@pytest.fixture(scope="module")
def kinds():
    return generate(each_kind(), 1)


def power_factor(truth, channel):
    return truth.active_power_w[0, channel - 1] / truth.apparent_power_va[0, channel - 1]


def test_heater_has_unity_power_factor(kinds):
    assert power_factor(kinds.truth, 1) == pytest.approx(1.0, abs=1e-9)
    assert kinds.truth.reactive_power_var[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert kinds.truth.active_power_w[0, 0] == pytest.approx(2300.0)


def test_motor_is_0_8_lagging(kinds):
    assert power_factor(kinds.truth, 2) == pytest.approx(0.8, abs=1e-9)
    assert kinds.truth.reactive_power_var[0, 1] == pytest.approx(230 * 8 * 0.6)
    for c in (10, 11, 12):
        assert power_factor(kinds.truth, c) == pytest.approx(0.85)


@pytest.mark.parametrize(("channel", "thdi_pct"), [(3, 90.0), (4, 60.0), (5, 120.0)])
def test_switch_mode_thdi_by_fft(kinds, channel, thdi_pct):
    measured = thd_by_fft(kinds.capture.current[channel - 1])
    assert 60 - 1e-6 <= measured <= 120 + 1e-6
    assert measured == pytest.approx(thdi_pct, abs=1e-6)
    spectrum = np.abs(np.fft.rfft(kinds.capture.current[channel - 1]))
    even = spectrum[[100 * k for k in range(1, 25)]]
    assert even.max() < 1e-9 * spectrum[50]  # odd harmonics only


def test_variable_speed_drive_has_5th_and_7th(kinds):
    spectrum = np.abs(np.fft.rfft(kinds.capture.current[5]))
    harmonics = {h: spectrum[50 * h] / spectrum[50] for h in range(2, 26)}
    assert harmonics[5] == pytest.approx(0.30) and harmonics[7] == pytest.approx(0.12)
    top_two = sorted(harmonics, key=harmonics.get)[-2:]
    assert set(top_two) == {5, 7}
    assert harmonics[3] < 1e-9


def test_pv_inverter_exports(kinds):
    assert kinds.truth.active_power_w[0, 6] < 0
    assert power_factor(kinds.truth, 7) == pytest.approx(-1.0, abs=1e-3)
    assert measured_power(kinds.capture, [0] * 12)[0, 6] < 0
    assert 1.5 < kinds.truth.thdi_pct[0, 6] < 3


def test_capacitor_bank_leads(kinds):
    assert kinds.truth.reactive_power_var[0, 7] < 0
    assert abs(power_factor(kinds.truth, 8)) < 0.01
    v = fundamental_phasors(kinds.capture.voltage[1])
    i = fundamental_phasors(kinds.capture.current[7])
    assert 89 < math.degrees(np.angle(i / v)) < 90  # current leads by almost 90°


def test_linear_loads_take_their_harmonics_from_the_voltage():
    g = generate(distorted_site(), 1)
    assert g.truth.thdi_pct[0, 0] == pytest.approx(g.truth.thdv_pct[0, 0], rel=1e-9)  # heater
    assert g.truth.thdi_pct[0, 2] > 3 * g.truth.thdv_pct[0, 0]  # capacitor amplifies them
    assert g.truth.thdi_pct[0, 3] < g.truth.thdv_pct[0, 0]  # motor inductance damps them


def test_three_phase_drive_harmonics_follow_the_sequence():
    """A balanced three-phase 5th harmonic is negative-sequence: it rotates L1→L3→L2."""
    g = generate(Scenario(circuits=(three_phase("a", vsd(10.0)),)), 1)
    spectrum = np.fft.rfft(g.capture.current[0:3])
    fifth, first = spectrum[:, 250], spectrum[:, 50]
    assert np.allclose(first[1] / first[0], np.exp(-2j * math.pi / 3))
    assert np.allclose(fifth[1] / fifth[0], np.exp(+2j * math.pi / 3))


def test_voltage_imbalance_gives_the_analytic_unbalance():
    scenario = Scenario(source=VoltageSource(magnitude_imbalance_pct=(3.0, 0.0, 0.0)))
    truth = generate(scenario, 1).truth
    a = np.exp(2j * math.pi / 3)
    v = np.array([1.03, a * a, a])
    expected = abs(v[0] + a * a * v[1] + a * v[2]) / abs(v[0] + a * v[1] + a * a * v[2]) * 100
    assert truth.voltage_unbalance_pct[0] == pytest.approx(expected, rel=1e-9)


def test_sixty_hertz_source():
    scenario = Scenario(source=VoltageSource(phase_voltage_v=120.0, nominal_frequency_hz=60.0),
                        circuits=(single_phase(1, motor(5.0)),))
    g = generate(scenario, 1, sample_rate_hz=6000)
    assert rms(g.capture.voltage, 6000)[0, 0] == pytest.approx(120.0)
    assert np.argmax(np.abs(np.fft.rfft(g.capture.voltage[0]))) == 60
    assert g.truth.active_power_w[0, 0] == pytest.approx(120 * 5 * 0.8)


# --- events --------------------------------------------------------------------------------------


def event_scenario(*events):
    return Scenario(circuits=(single_phase(1, heater(10.0)), single_phase(2, led_driver(4.0)),
                              single_phase(3, motor(5.0)), three_phase("b", motor(10.0)),
                              single_phase(7, pv_inverter(5.0))), events=events)


def test_outage_zeroes_every_voltage_and_current():
    g = generate(event_scenario(Outage(1.25, 0.5)), 3)
    dead = slice(int(1.25 * RATE), int(1.75 * RATE))
    assert not g.capture.voltage[:, dead].any() and not g.capture.current[:, dead].any()
    assert g.capture.voltage[:, int(1.75 * RATE):].any()
    steady = g.truth.active_power_w[0]
    assert np.allclose(g.truth.active_power_w[1], steady / 2)
    assert np.allclose(g.truth.active_power_w[2], steady)


@pytest.mark.parametrize(("event", "factor"), [(Sag(1.0, 1.0, 50.0, (1,)), 0.5),
                                               (Swell(1.0, 1.0, 115.0, (1,)), 1.15)])
def test_sag_and_swell_scale_the_phase_and_its_loads(event, factor):
    g = generate(event_scenario(event), 2)
    before, during = g.truth.active_power_w
    assert g.truth.voltage_rms_v[1, 0] == pytest.approx(230 * factor)
    assert g.truth.voltage_rms_v[1, 1] == pytest.approx(230)
    assert during[0] == pytest.approx(before[0] * factor ** 2)  # heater: constant impedance
    assert during[1] == pytest.approx(before[1])  # LED driver: constant power
    assert during[6] == pytest.approx(before[6])  # PV inverter: constant power
    assert during[3] == pytest.approx(before[3] * factor ** 2)  # motor phase L1
    assert during[4] == pytest.approx(before[4])
    assert rms(g.capture.voltage)[1, 0] == pytest.approx(230 * factor, rel=1e-4)


def test_deep_sag_switches_electronics_off():
    g = generate(event_scenario(Sag(1.0, 1.0, 5.0)), 2)
    assert g.truth.active_power_w[1, 1] == 0 and g.truth.active_power_w[1, 6] == 0
    assert g.truth.active_power_w[1, 0] > 0


def test_phase_loss():
    g = generate(event_scenario(PhaseLoss(1.0, 1.0, 3)), 2)
    lost = slice(RATE, 2 * RATE)
    assert not g.capture.voltage[2, lost].any()
    assert not g.capture.current[[2, 5], lost].any()  # single-phase on L3, motor's L3
    assert g.truth.current_rms_a[1, 3] == pytest.approx(math.sqrt(3) * g.truth.current_rms_a[0, 3])
    assert g.truth.current_rms_a[1, 0] == pytest.approx(g.truth.current_rms_a[0, 0])


def test_load_steps_change_the_level():
    g = generate(event_scenario(LoadStep(1.0, 1, 0.0), LoadStep(2.0, 1, 2.0),
                                LoadStep(1.0, 5, 0.5)), 3)
    p = g.truth.active_power_w
    assert p[1, 0] == 0 and p[2, 0] == pytest.approx(2 * p[0, 0])
    assert np.allclose(p[1, 3:6], p[0, 3:6] / 2)  # a step on one channel moves the whole circuit
    assert not g.capture.current[0, RATE:2 * RATE].any()


def test_inrush_peaks_and_decays():
    g = generate(event_scenario(LoadStep(0.0, 3, 0.0), LoadStep(1.0, 3, 1.0),
                                Inrush(1.0, 3, 6.0, 0.1)), 3)
    i = g.capture.current[2]
    steady_peak = np.abs(i[2 * RATE:]).max()
    first_cycle = np.abs(i[RATE:RATE + RATE // 50]).max()
    assert first_cycle == pytest.approx(6 * steady_peak, rel=0.05)
    assert g.truth.current_rms_a[1, 2] > 1.5 * g.truth.current_rms_a[2, 2]
    assert g.truth.current_rms_a[0, 2] == 0
    late = i[int(1.9 * RATE):2 * RATE]
    assert np.abs(late).max() == pytest.approx(steady_peak, rel=1e-3)


# --- profiles and validation ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_generates(name):
    rate = 6000
    g = generate(name, 1, sample_rate_hz=rate)
    assert g.capture.current.shape == (12, rate) and g.capture.voltage.shape == (3, rate)
    assert g.truth.active_power_w.shape == (1, 12) and g.truth.voltage_rms_v.shape == (1, 3)
    assert np.all(np.isfinite(g.capture.current))
    scenario = profile(name)
    assert scenario.name == name
    assert (g.capture.temperature_c is None) == (scenario.temperature_c is None)
    assert np.all(g.truth.voltage_rms_v > 100)


def test_pv_site_exports_and_three_wire_profile_is_line_to_line():
    pv = generate("pv-site", 1).truth
    assert pv.active_power_w[0, 0:3].sum() < 0
    plant = generate("plant-3p3w", 1).truth
    assert plant.voltage_rms_v[0] == pytest.approx([400] * 3, rel=0.01)


def test_unknown_profile():
    with pytest.raises(ScenarioError, match=r"unknown profile 'nope'.*sine"):
        profile("nope")


@pytest.mark.parametrize(("build", "match"), [
    (lambda: Scenario(circuits=(single_phase(1, heater(1)), single_phase(1, heater(2)))),
     "already carries"),
    (lambda: Scenario(circuits=(Circuit(motor(1), (2, 3, 4)),)), "not one group's three"),
    (lambda: Scenario(circuits=(single_phase(13, heater(1)),)), "1–12"),
    (lambda: three_phase("e", motor(1)), "group"),
    (lambda: Scenario(events=(LoadStep(1.0, 4, 1.0),)), "no circuit on channel 4"),
    (lambda: Scenario(events=(Sag(1.0, 1.0, 120.0),)), "sag"),
    (lambda: Scenario(events=(PhaseLoss(1.0, 1.0, 4),)), "phase"),
    (lambda: VoltageSource(frequency_wander_hz=0.4, frequency_offset_hz=0.2), "±0.5"),
    (lambda: VoltageSource(nominal_frequency_hz=55.0), "50 or 60"),
    (lambda: Load(LoadKind.MOTOR, 5.0, -10.0), "does not fit"),
    (lambda: Load(LoadKind.HEATER, 5.0, 0.0, (Harmonic(3, 5.0),)), "linear"),
    (lambda: switch_mode(1.0, thdi_pct=200.0), "thdi"),
    (lambda: motor(1.0, power_factor=1.2), "power factor"),
])
def test_invalid_scenarios_are_rejected_with_context(build, match):
    with pytest.raises(ScenarioError, match=match):
        build()


def test_harmonics_above_nyquist_are_rejected():
    scenario = Scenario(circuits=(single_phase(1, led_driver(1.0)),))
    with pytest.raises(ScenarioError, match="Nyquist"):
        generate(scenario, 1, sample_rate_hz=2000)


@pytest.mark.parametrize("kwargs", [{"sample_rate_hz": 8000.5}, {"seed": -1}, {"start_s": -2},
                                    {"sample_rate_hz": 500}])
def test_bad_generation_arguments(kwargs):
    with pytest.raises(ScenarioError):
        generate("sine", 1, **kwargs)
    with pytest.raises(ScenarioError):
        generate_seconds("sine", 1, **kwargs)  # at the call, not at the first next()


def test_endless_iteration():
    seconds = generate_seconds("sine", None, sample_rate_hz=1000)
    first, second = next(seconds), next(seconds)
    assert (first.truth.start_s, second.truth.start_s) == (0, 1)
