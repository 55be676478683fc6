"""MeterConfig: the guide's interface settings (chapter 4), the Rogowski rule, the pairing rule,
the dict form and the errors for combinations the device rejects."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cth01.metering import ChannelConfig, ConfigError, GroupConfig, MeterConfig
from cth01.metering.config import CT_RANGES_A, group_of_channel

RANGES = ["none", "100A", "300A", "500A", "1000A", "4000A"]


def test_default_is_what_the_cli_assumes():
    cfg = MeterConfig.default()
    assert cfg.wiring == "3P4W"
    assert [g.circuit for g in cfg.groups] == ["single_phase"] * 4
    for ch in range(1, 13):
        c = cfg.channel(ch)
        assert (c.ct_range, c.direction, c.voltage_phase) == ("100A", "forward", None)
        assert c.ct_range_a == 100.0 and c.sign == 1
    assert not cfg.temperature_calibration.enabled
    assert cfg == MeterConfig()


@pytest.mark.parametrize(("channel", "group", "phase"), [
    (1, "a", 1), (2, "a", 2), (3, "a", 3), (4, "b", 1), (5, "b", 2), (6, "b", 3),
    (7, "c", 1), (8, "c", 2), (9, "c", 3), (10, "d", 1), (11, "d", 2), (12, "d", 3),
])
def test_default_pairing_is_the_position_in_the_group(channel, group, phase):
    cfg = MeterConfig.default()
    assert group_of_channel(channel) == group
    assert cfg.voltage_phase_of(channel) == phase


def test_single_phase_pairing_can_be_overridden():
    cfg = MeterConfig.from_dict({"groups": {"c": {"channels": [
        {"voltage_phase": 3}, {}, {"voltage_phase": 1}]}}})
    assert [cfg.voltage_phase_of(ch) for ch in (7, 8, 9)] == [3, 2, 1]
    assert cfg.voltage_phase_of(1) == 1


def test_three_phase_channels_are_l1_l2_l3_by_position():
    cfg = MeterConfig.from_dict({"groups": {"b": {"circuit": "three_phase", "channels": [
        {"voltage_phase": 1}, {"voltage_phase": 2}, {}]}}})  # positional values are fine
    assert cfg.is_three_phase("b") and not cfg.is_three_phase("a")
    assert [cfg.voltage_phase_of(ch) for ch in (4, 5, 6)] == [1, 2, 3]
    with pytest.raises(ConfigError) as e:
        MeterConfig.from_dict({"groups": {"b": {"circuit": "three_phase", "channels": [
            {}, {"voltage_phase": 3}, {}]}}})
    assert (e.value.group, e.value.channel, e.value.field) == ("b", 5, "voltage_phase")
    assert "three-phase" in str(e.value)


def test_guide_example_group_b():
    # guide ch. 4, command 68: three-phase, ch4 reverse 1000A, ch5 reverse 300A, ch6 fwd 100A
    cfg = MeterConfig.from_dict({"groups": {"b": {"circuit": "three_phase", "channels": [
        {"direction": "reverse", "ct_range": "1000A"},
        {"direction": "reverse", "ct_range": "300A"},
        {"direction": "forward", "ct_range": "100A"}]}}})
    assert [cfg.channel(c).ct_range_a for c in (4, 5, 6)] == [1000.0, 300.0, 100.0]
    assert [cfg.channel(c).sign for c in (4, 5, 6)] == [-1, -1, 1]


# -- Rogowski coils ---------------------------------------------------------------------------


def test_mixed_rogowski_group_is_rejected_naming_group_and_channel():
    with pytest.raises(ConfigError) as e:
        MeterConfig.from_dict({"groups": {"c": {"channels": [
            {"ct_range": "100A"}, {"ct_range": "4000A"}, {"ct_range": "4000A"}]}}})
    err = e.value
    assert err.group == "c" and err.channel == 7 and err.field == "ct_range"
    text = str(err)
    assert "group c" in text and "channel 8" in text and "channel 7" in text
    assert "with_ct_range" in text


def test_mixed_rogowski_given_directly_is_rejected():
    rog = ChannelConfig(ct_range="4000A")
    with pytest.raises(ConfigError, match="Rogowski"):
        MeterConfig(groups=(GroupConfig(), GroupConfig(), GroupConfig(),
                            GroupConfig(channels=(ChannelConfig(), ChannelConfig(), rog))))


def test_all_rogowski_group_is_fine():
    rog = ChannelConfig(ct_range="4000A", direction="reverse")
    cfg = MeterConfig(groups=(GroupConfig("three_phase", (rog, rog, rog)), GroupConfig(),
                              GroupConfig(), GroupConfig()))
    assert all(cfg.channel(c).rogowski for c in (1, 2, 3))


def test_4000a_on_one_channel_synchronises_the_other_two():
    cfg = MeterConfig.default().with_ct_range(1, "500A").with_ct_range(5, "4000A")
    assert [cfg.channel(c).ct_range for c in (4, 5, 6)] == ["4000A"] * 3
    assert cfg.channel(1).ct_range == "500A"  # other groups untouched
    # switching one channel of a Rogowski group away from 4000 A switches all three
    back = cfg.with_ct_range(6, "300A")
    assert [back.channel(c).ct_range for c in (4, 5, 6)] == ["300A"] * 3
    # ordinary changes touch one channel only
    one = back.with_ct_range(4, "1000A")
    assert [one.channel(c).ct_range for c in (4, 5, 6)] == ["1000A", "300A", "300A"]


def test_with_ct_range_keeps_directions_and_pairing():
    cfg = MeterConfig.from_dict({"groups": {"a": {"channels": [
        {"direction": "reverse", "voltage_phase": 3}, {}, {}]}}})
    out = cfg.with_ct_range(2, "4000A")
    assert out.channel(1) == ChannelConfig("4000A", "reverse", 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.sampled_from(RANGES)), max_size=20))
def test_any_sequence_of_range_changes_stays_valid(changes):
    cfg = MeterConfig.default()
    for channel, ct_range in changes:
        cfg = cfg.with_ct_range(channel, ct_range)
        assert cfg.channel(channel).ct_range == ct_range
    for g in cfg.groups:
        rog = [c.rogowski for c in g.channels]
        assert all(rog) or not any(rog)


def test_with_ct_range_rejects_bad_arguments():
    cfg = MeterConfig.default()
    with pytest.raises(ConfigError) as e:
        cfg.with_ct_range(13, "100A")
    assert e.value.field == "channel"
    with pytest.raises(ConfigError) as e:
        cfg.with_ct_range(2, "200A")
    assert e.value.channel == 2 and "200A" in str(e.value)


# -- dict form --------------------------------------------------------------------------------

channel_dicts = st.fixed_dictionaries({
    "ct_range": st.sampled_from([r for r in RANGES if r != "4000A"]),
    "direction": st.sampled_from(["forward", "reverse"]),
    "voltage_phase": st.sampled_from([None, 1, 2, 3]),
})


@st.composite
def config_dicts(draw):
    groups = {}
    for name in "abcd":
        circuit = draw(st.sampled_from(["single_phase", "three_phase"]))
        chans = draw(st.lists(channel_dicts, min_size=3, max_size=3))
        if draw(st.booleans()):
            chans = [{**c, "ct_range": "4000A"} for c in chans]
        if circuit == "three_phase":
            chans = [{**c, "voltage_phase": draw(st.sampled_from([None, k + 1]))}
                     for k, c in enumerate(chans)]
        groups[name] = {"circuit": circuit, "channels": chans}
    return {
        "wiring": draw(st.sampled_from(["3P4W", "3P3W"])),
        "groups": groups,
        "temperature_calibration": {
            "enabled": draw(st.booleans()),
            "offset_c": draw(st.floats(-120, 120, allow_nan=False)),
        },
    }


@settings(max_examples=150, deadline=None)
@given(config_dicts())
def test_dict_round_trip_through_json(data):
    cfg = MeterConfig.from_dict(data)
    assert cfg.to_dict() == data
    assert MeterConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_partial_dict_takes_defaults():
    cfg = MeterConfig.from_dict({"wiring": "3P3W", "groups": {"d": {"circuit": "three_phase"}}})
    assert cfg == replace(MeterConfig.default(), wiring="3P3W", groups=(
        GroupConfig(), GroupConfig(), GroupConfig(), GroupConfig("three_phase")))
    assert MeterConfig.from_dict({}) == MeterConfig.default()


@pytest.mark.parametrize(("data", "field", "group", "channel", "fragment"), [
    ({"wirin": "3P4W"}, "config", None, None, "unknown key"),
    ({"wiring": "3P5W"}, "wiring", None, None, "3P5W"),
    ({"wiring": "single_phase"}, "wiring", None, None, "3P4W"),
    ({"groups": {"e": {}}}, "groups", None, None, "unknown key"),
    ({"groups": []}, "groups", None, None, "expected an object"),
    ({"groups": {"a": {"circuit": "two_phase"}}}, "circuit", "a", None, "two_phase"),
    ({"groups": {"a": {"channels": [{}, {}]}}}, "groups.a.channels", "a", None, "three"),
    ({"groups": {"b": {"channels": [{}, {"range": "100A"}, {}]}}}, "groups.b.channels[1]", "b",
     5, "unknown key"),
    ({"groups": {"b": {"channels": [{}, {}, {"ct_range": 100}]}}}, "ct_range", "b", 6, "100"),
    ({"groups": {"c": {"channels": [{"direction": "backward"}, {}, {}]}}}, "direction", "c", 7,
     "backward"),
    ({"groups": {"d": {"channels": [{}, {}, {"voltage_phase": 4}]}}}, "voltage_phase", "d", 12,
     "4"),
    ({"groups": {"d": {"channels": [{"voltage_phase": 0}, {}, {}]}}}, "voltage_phase", "d", 10,
     "0"),
    ({"groups": {"d": {"channels": [{"voltage_phase": True}, {}, {}]}}}, "voltage_phase", "d",
     10, "True"),
    ({"temperature_calibration": {"enabled": True, "offset_c": 120.5}},
     "temperature_calibration.offset_c", None, None, "-120..120"),
    ({"temperature_calibration": {"enabled": True, "offset_c": float("nan")}},
     "temperature_calibration.offset_c", None, None, "nan"),
    ({"temperature_calibration": {"enabled": 1}}, "temperature_calibration.enabled", None,
     None, "true or false"),
    ({"temperature_calibration": {"offset": 1}}, "temperature_calibration", None, None,
     "unknown key"),
])
def test_invalid_dicts_are_rejected_with_context(data, field, group, channel, fragment):
    with pytest.raises(ConfigError) as e:
        MeterConfig.from_dict(data)
    err = e.value
    assert (err.field, err.group, err.channel) == (field, group, channel)
    assert fragment in str(err)


@pytest.mark.parametrize("offset", [-120, -0.3, 0, 80, 120])
def test_calibration_offset_range_is_the_guides(offset):
    cfg = MeterConfig.from_dict({"temperature_calibration": {"enabled": True, "offset_c": offset}})
    assert cfg.temperature_calibration.apply(25.0) == 25.0 + offset
    off = MeterConfig.from_dict({"temperature_calibration": {"offset_c": offset}})
    assert off.temperature_calibration.apply(25.0) == 25.0


def test_ct_range_names_match_the_codec():
    from cth01.protocol.table import CT_RANGES

    assert set(CT_RANGES.values()) == set(CT_RANGES_A)


def test_config_error_is_a_value_with_context_and_pickles():
    err = ConfigError("bad", field="ct_range", group="b", channel=5)
    assert str(err) == "bad (field=ct_range, group=b, channel=5)"
    again = pickle.loads(pickle.dumps(err))
    assert (again.reason, again.field, again.group, again.channel) == ("bad", "ct_range", "b", 5)
    assert isinstance(err, ValueError)


def test_lookups_reject_bad_names():
    cfg = MeterConfig.default()
    with pytest.raises(ConfigError):
        cfg.group("e")
    with pytest.raises(ConfigError):
        cfg.channel(0)
    with pytest.raises(ConfigError):
        cfg.voltage_phase_of(True)
