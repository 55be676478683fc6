"""The sensor error model: deterministic, errors as documented, noise with the stated statistics,
and a default that keeps a simple meter inside the IEC energy-class limits."""

import math

import numpy as np
import pytest

from cth01.metering.capture import Capture
from cth01.metering.sensors import (
    DEFAULT_SENSORS,
    ROGOWSKI,
    SPLIT_CORE,
    CtAccuracy,
    SensorError,
    SensorModel,
    apply,
    ct_errors,
    unit_offsets,
)
from cth01.metering.signals import (
    Load,
    LoadKind,
    Scenario,
    VoltageSource,
    generate,
    heater,
    motor,
    single_phase,
)

RATE = 8000


def ideal(loads, seconds=1, rate=RATE, source=None):
    scenario = Scenario(source=source or VoltageSource(),
                        circuits=tuple(single_phase(c, load) for c, load in loads.items()))
    return generate(scenario, seconds, sample_rate_hz=rate)


def phasor(x, bin_=50):
    return np.fft.rfft(x)[..., bin_]


def test_same_seed_same_output_other_seed_other_output():
    capture = ideal({1: heater(10.0)}).capture
    a, b = apply(capture, seed=3), apply(capture, seed=3)
    assert np.array_equal(a.current, b.current) and np.array_equal(a.voltage, b.voltage)
    assert not np.array_equal(a.current, apply(capture, seed=4).current)
    assert a.sample_rate_hz == capture.sample_rate_hz
    assert capture.current[0].max() == pytest.approx(10 * math.sqrt(2))  # input untouched


def test_table_points_and_interpolation():
    ratio, phase = SPLIT_CORE.at(np.array([5.0, 20.0, 100.0, 120.0, 1.0, 500.0]))
    assert list(ratio) == [-0.5, -0.3, -0.2, -0.2, -0.5, -0.2]  # ends held
    assert list(phase) == [15.0, 10.0, 5.0, 5.0, 15.0, 5.0]
    r10, p10 = SPLIT_CORE.at(10.0)  # halfway between 5 and 20 in log(current)
    assert float(r10) == pytest.approx(-0.4) and float(p10) == pytest.approx(12.5)


@pytest.mark.parametrize(("channel", "current_a", "range_a"), [
    (1, 5.0, 100), (2, 20.0, 100), (3, 100.0, 100), (4, 60.0, 300), (5, 200.0, 4000)])
def test_ratio_error_and_phase_displacement_are_applied(channel, current_a, range_a):
    ranges = [100] * 12
    ranges[channel - 1] = range_a
    model = SensorModel(current_range_a=tuple(ranges), noise_lsb=0.0, adc_bits=24)
    capture = ideal({channel: heater(current_a)}).capture
    out = apply(capture, model, seed=11)
    ratio, phase = ct_errors(np.full(12, current_a), model, seed=11)
    expected_ratio = ((ROGOWSKI if range_a == 4000 else SPLIT_CORE).at(100 * current_a / range_a)[0]
                      + unit_offsets(model, seed=11)[0][channel - 1])
    assert ratio[channel - 1] == pytest.approx(expected_ratio)
    before, after = phasor(capture.current[channel - 1]), phasor(out.current[channel - 1])
    assert abs(after) / abs(before) - 1 == pytest.approx(ratio[channel - 1] / 100, abs=2e-5)
    lead_min = math.degrees(np.angle(after / before)) * 60
    assert lead_min == pytest.approx(phase[channel - 1], abs=0.05)
    v_ratio = abs(phasor(out.voltage[0])) / abs(phasor(capture.voltage[0])) - 1
    assert v_ratio == pytest.approx(0.001, abs=1e-6)


def test_phase_displacement_at_60_hz_is_detected_from_the_voltage():
    source = VoltageSource(phase_voltage_v=120.0, nominal_frequency_hz=60.0)
    capture = ideal({1: heater(20.0)}, rate=6000, source=source).capture
    out = apply(capture, SensorModel(noise_lsb=0.0, adc_bits=24), seed=0)
    lead_min = math.degrees(np.angle(phasor(out.current[0], 60) / phasor(capture.current[0],
                                                                         60))) * 60
    assert lead_min == pytest.approx(ct_errors(20.0, seed=0)[1][0], abs=0.05)


def test_errors_follow_the_current_second_by_second():
    low = ideal({1: heater(5.0)}).capture
    high = ideal({1: heater(100.0)}).capture
    both = Capture(np.concatenate([low.voltage, high.voltage], axis=1),
                   np.concatenate([low.current, high.current], axis=1), RATE)
    out = apply(both, SensorModel(noise_lsb=0.0, adc_bits=24), seed=2)
    inner = [slice(k * RATE + 160, (k + 1) * RATE - 160) for k in (0, 1)]  # 48 whole cycles
    ratio = [abs(phasor(out.current[0, w], 48)) / abs(phasor(both.current[0, w], 48)) - 1
             for w in inner]
    expected = ct_errors(np.array([[5.0] * 12, [100.0] * 12]), seed=2)[0][:, 0] / 100
    assert ratio == pytest.approx(list(expected), abs=2e-5)


def test_noise_statistics_on_a_silent_capture():
    silent = Capture(np.zeros((3, 4 * RATE)), np.zeros((12, 4 * RATE)), RATE)
    out = apply(silent, seed=5)
    lsb = DEFAULT_SENSORS.current_lsb_a(1)
    assert lsb == pytest.approx(2 * 100 * math.sqrt(2) * 2 / 2 ** 16)
    std = out.current.std(axis=1) / lsb
    # 1 LSB Gaussian noise, then rounding to whole LSBs: variance 1 + 1/12 (Sheppard)
    assert std == pytest.approx(np.full(12, math.sqrt(1 + 1 / 12)), rel=0.03)
    assert np.abs(out.current.mean(axis=1) / lsb).max() < 5 / math.sqrt(4 * RATE)
    codes = out.current / lsb
    assert np.allclose(codes, np.round(codes))  # quantised to the ADC's steps
    v_std = out.voltage.std(axis=1) / DEFAULT_SENSORS.voltage_lsb_v
    assert v_std == pytest.approx(np.full(3, math.sqrt(1 + 1 / 12)), rel=0.03)


def test_noise_is_keyed_by_second_so_streaming_matches_one_call():
    g = ideal({1: heater(10.0)}, seconds=3)
    whole = apply(g.capture, seed=8)
    for k in range(3):
        part = Capture(g.capture.voltage[:, k * RATE:(k + 1) * RATE],
                       g.capture.current[:, k * RATE:(k + 1) * RATE], RATE)
        streamed = apply(part, seed=8, start_s=k)
        inner = slice(k * RATE + 2, (k + 1) * RATE - 2)
        assert np.array_equal(streamed.current[:, 2:-2], whole.current[:, inner])


def test_unit_to_unit_spread_statistics():
    ratios = np.array([unit_offsets(seed=s)[0] for s in range(300)]).ravel()
    phases = np.array([unit_offsets(seed=s)[1] for s in range(300)]).ravel()
    assert ratios.std() == pytest.approx(DEFAULT_SENSORS.ratio_spread_pct, rel=0.1)
    assert phases.std() == pytest.approx(DEFAULT_SENSORS.phase_spread_min, rel=0.1)
    assert np.abs(ratios).max() <= 3 * DEFAULT_SENSORS.ratio_spread_pct
    assert abs(ratios.mean()) < 0.01


def test_samples_beyond_full_scale_clip():
    capture = ideal({1: heater(200.0)}).capture  # peak 283 A on a 100 A CT: full scale 283 A
    model = SensorModel(current_full_scale_multiple=1.0, noise_lsb=0.0)
    out = apply(capture, model)
    full_scale = 100 * math.sqrt(2)
    assert out.current[0].max() <= full_scale and out.current[0].min() >= -full_scale - 1e-9
    assert np.isclose(out.current[0], out.current[0].max()).sum() > 100  # flat tops


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"current_range_a": (100,) * 11}, "12 values"),
    ({"current_range_a": (200,) * 12}, "12 values"),
    ({"adc_bits": 4}, "adc_bits"),
    ({"noise_lsb": -1.0}, "noise_lsb"),
    ({"nominal_frequency_hz": 55.0}, "50, 60"),
])
def test_bad_models_are_rejected(kwargs, match):
    with pytest.raises(SensorError, match=match):
        SensorModel(**kwargs)


def test_bad_accuracy_tables_and_arguments():
    with pytest.raises(SensorError, match="same"):
        CtAccuracy((5.0, 100.0), (0.1,), (1.0, 2.0))
    with pytest.raises(SensorError, match="increasing"):
        CtAccuracy((100.0, 5.0), (0.1, 0.1), (1.0, 2.0))
    with pytest.raises(SensorError, match="seed"):
        apply(ideal({1: heater(1.0)}).capture, seed=-1)
    with pytest.raises(SensorError, match="Capture"):
        apply("not a capture")


# IEC 62053-21 class 1 (active) and IEC 62053-23 class 2 (reactive), directly-connected
# current bands (the engine-level class tests are in test_accuracy.py):
# (current % of rated, load, active limit %, reactive limit %)
CLASS_POINTS = [
    (5, "pf1", 1.5, None), (10, "pf1", 1.0, None), (20, "pf1", 1.0, None),
    (100, "pf1", 1.0, None), (120, "pf1", 1.0, None),
    (10, "0.5L", 1.5, 2.5), (20, "0.5L", 1.0, 2.0), (100, "0.5L", 1.0, 2.0),
    (120, "0.5L", 1.0, 2.0),
    (10, "0.8C", 1.5, 2.5), (20, "0.8C", 1.0, 2.0), (100, "0.8C", 1.0, 2.0),
    (120, "0.8C", 1.0, 2.0),
]


def load_for(kind, current_a):
    if kind == "pf1":
        return heater(current_a)
    if kind == "0.5L":
        return motor(current_a, power_factor=0.5)
    return Load(LoadKind.CAPACITOR_BANK, current_a, -math.degrees(math.acos(0.8)))


@pytest.mark.parametrize(("pct", "kind", "p_limit", "q_limit"), CLASS_POINTS)
def test_default_model_stays_inside_the_energy_classes(pct, kind, p_limit, q_limit):
    """A plain meter (mean v·i; Q1 from the fundamental) on the default sensors' output."""
    truth_capture = ideal({1: load_for(kind, pct * 1.0)})
    v, i = truth_capture.capture.voltage[0], truth_capture.capture.current[0]
    p_true = (v * i).mean()
    q_true = (phasor(v) * phasor(i).conj()).imag
    for seed in range(4):
        out = apply(truth_capture.capture, seed=seed)
        p = (out.voltage[0] * out.current[0]).mean()
        assert abs(p / p_true - 1) * 100 < p_limit
        if q_limit:
            q = (phasor(out.voltage[0]) * phasor(out.current[0]).conj()).imag
            assert abs(q / q_true - 1) * 100 < q_limit
