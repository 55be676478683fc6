"""Threshold and passive alarms of the virtual CTH01, read against the user guide ch. 4
("Threshold Alarms", "Passive Alarms") and ch. 5 ("Alarm Report", 30-36) and the firmware
rules: a raised alarm is sent at once and repeated every 7c interval until 7c count packets
in all while the condition holds; the dismiss packet only with 7c report_cleared; over-range
3 times 5 min apart then always cleared; power failure twice, then silence; LED "alarm"
while a threshold alarm is active. Every check reads the delivered frames back with
cth01.protocol."""

from __future__ import annotations

import numpy as np
import pytest

from cth01.device import JoinRequest, Measurements, UplinkFrame
from cth01.protocol import commands, decode, items

from .harness import Bench, Rx, of_kind

MIN = 60
NORMAL = dict(current_a=10.0, voltage_v=230.0, temperature_c=25.0)


def m(**over: object) -> Measurements:
    return Measurements.constant(**{**NORMAL, **over})


def per_channel(default: float, **channels: float) -> np.ndarray:
    """12 channel values: per_channel(10.0, ch5=60.0) -> channel 5 at 60, the others at 10."""
    out = np.full(12, default)
    for k, v in channels.items():
        out[int(k[2:]) - 1] = v
    return out


def phases(default: float, **ph: float) -> np.ndarray:
    """3 phase values: phases(230.0, ph2=520.0) -> L2 at 520, L1 and L3 at 230."""
    out = np.full(3, default)
    for k, v in ph.items():
        out[int(k[2:]) - 1] = v
    return out


def configure(bench: Bench, *downlinks: commands.Downlink) -> None:
    """Send the downlinks in one frame; every command must be acknowledged with success."""
    rx = bench.downlink(commands.payload(*downlinks).payload)
    replies = [i for r in of_kind(rx, "reply") for i in r.up.replies]
    assert len(replies) == len(downlinks), replies
    assert all(i.result == "success" for i in replies), replies


def alarms(rxs: list[Rx]) -> list[tuple[int, object]]:
    """(time, alarm item) of every alarm item delivered, in order."""
    return [(r.t, a) for r in rxs for a in r.up.alarms]


def only_alarm_frames(rxs: list[Rx]) -> list[Rx]:
    out = of_kind(rxs, "alarm")
    for r in out:  # an alarm uplink carries alarm items and nothing else
        assert r.up.alarms == r.up.items, r.up.items
    return out


def settle(bench: Bench, measurements: Measurements) -> None:
    """Hold normal measurements long enough that the info burst is over."""
    bench.run(40, m=measurements)


# --- threshold alarms: temperature, every condition ----------------------------------------

TEMPERATURE_CASES = [
    # condition, min, max, normal value, alarm value, raised code
    ("below", 20, 0, 25.0, 15.5, "below_threshold"),
    ("above", 0, 30, 25.0, 35.25, "above_threshold"),
    ("within", 20, 30, 35.0, 25.5, "within_threshold"),
    ("outside", 20, 30, 25.0, 31.0, "outside_threshold"),
    ("outside", 20, 30, 25.0, 18.0, "outside_threshold"),
]


@pytest.mark.parametrize("report_cleared", [True, False], ids=["cleared_on", "cleared_off"])
@pytest.mark.parametrize(("condition", "lo", "hi", "normal", "bad", "code"), TEMPERATURE_CASES)
def test_temperature_threshold_raise_and_clear(condition, lo, hi, normal, bad, code,
                                               report_cleared):
    bench = Bench.joined()
    settle(bench, m(temperature_c=normal))
    configure(bench,
              commands.set_temperature_threshold(enabled=True, condition=condition,
                                                 min_c=lo, max_c=hi),
              commands.set_alarm_settings(report_cleared=report_cleared))
    quiet = bench.run(30)
    assert only_alarm_frames(quiet) == []  # the normal value raises nothing

    t_raise = bench.now + 1
    rx = bench.run(2 * MIN, m=m(temperature_c=bad))
    frames = only_alarm_frames(rx)
    assert [(r.t, r.up.items) for r in frames] == [
        (t_raise, (items.TemperatureAlarm(alarm=code, temperature_c=bad),))]
    assert bench.device.led == "alarm"

    t_clear = bench.now + 1
    rx = bench.run(20 * MIN, m=m(temperature_c=normal))
    expected = [(t_clear, (items.TemperatureAlarm(alarm=f"{code}_cleared",
                                                  temperature_c=normal),))] \
        if report_cleared else []
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == expected
    assert bench.device.led == "normal"


@pytest.mark.parametrize(("condition", "lo", "hi", "value"), [
    ("above", 0, 30, 30.0),  # "falls to the Above threshold value" is released
    ("below", 20, 0, 20.0),
])
def test_temperature_at_the_threshold_value_is_no_alarm(condition, lo, hi, value):
    bench = Bench.joined()
    settle(bench, m(temperature_c=25.0))
    configure(bench, commands.set_temperature_threshold(enabled=True, condition=condition,
                                                        min_c=lo, max_c=hi))
    assert alarms(bench.run(10 * MIN, m=m(temperature_c=value))) == []


# --- repeats ------------------------------------------------------------------------------

@pytest.mark.parametrize("report_cleared", [False, True], ids=["cleared_off", "cleared_on"])
def test_current_channel_5_above_repeats_at_t_plus_5_and_10_min_and_no_fourth(report_cleared):
    bench = Bench.joined()
    settle(bench, m())
    configure(bench,
              commands.set_current_threshold(5, enabled=True, condition="above", max_a=50),
              commands.set_alarm_settings(report_cleared=report_cleared))
    t = bench.now + 1
    rx = bench.run(40 * MIN, m=m(current_a=per_channel(10.0, ch5=60.0)))
    frames = only_alarm_frames(rx)
    raised = items.CurrentAlarm(channel=5, alarm="above_threshold", current_a=60.0)
    assert [(r.t, r.up.items) for r in frames] == [
        (t, (raised,)), (t + 5 * MIN, (raised,)), (t + 10 * MIN, (raised,))]
    # the periodic reports go on meanwhile, and carry no alarm
    assert len(of_kind(rx, "periodic")) == 4
    assert all(r.up.alarms == () for r in of_kind(rx, "periodic"))
    # back to normal long after the last repeat: the dismiss packet only if enabled
    t_clear = bench.now + 1
    rx = bench.run(10 * MIN, m=m())
    cleared = items.CurrentAlarm(channel=5, alarm="above_threshold_cleared", current_a=10.0)
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == \
        ([(t_clear, (cleared,))] if report_cleared else [])


def test_alarm_settings_count_2_interval_1_min():
    bench = Bench.joined()
    settle(bench, m())
    configure(bench,
              commands.set_alarm_settings(repeat_interval_min=1, repeat_count=2),
              commands.set_current_threshold(5, enabled=True, condition="above", max_a=50))
    t = bench.now + 1
    rx = bench.run(15 * MIN, m=m(current_a=per_channel(10.0, ch5=75.5)))
    raised = items.CurrentAlarm(channel=5, alarm="above_threshold", current_a=75.5)
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [
        (t, (raised,)), (t + MIN, (raised,))]


def test_alarm_dismissed_before_the_next_repeat_is_not_repeated():
    bench = Bench.joined()
    settle(bench, m())
    configure(bench, commands.set_current_threshold(5, enabled=True, condition="above",
                                                    max_a=50))
    high, low = m(current_a=per_channel(10.0, ch5=60.0)), m()
    t = bench.now + 1
    rx = bench.run(MIN, m=high)
    rx += bench.run(20 * MIN, m=low)  # back before the first repeat (t + 5 min)
    assert [a for _, a in alarms(rx)] == [
        items.CurrentAlarm(channel=5, alarm="above_threshold", current_a=60.0)]
    assert alarms(rx)[0][0] == t


def test_second_alarm_dismissed_while_the_first_repeats_is_not_repeated():
    bench = Bench.joined()
    settle(bench, m())
    configure(bench,
              commands.set_current_threshold(5, enabled=True, condition="above", max_a=50),
              commands.set_current_threshold(6, enabled=True, condition="above", max_a=50))
    ch5 = per_channel(10.0, ch5=60.0)
    both = per_channel(10.0, ch5=60.0, ch6=70.0)
    t5 = bench.now + 1
    rx = bench.run(MIN, m=m(current_a=ch5))
    t6 = bench.now + 1
    rx += bench.run(MIN, m=m(current_a=both))  # ch6 raised while ch5's repeats are pending
    rx += bench.run(20 * MIN, m=m(current_a=ch5))  # ch6 back before its first repeat
    a5 = items.CurrentAlarm(channel=5, alarm="above_threshold", current_a=60.0)
    a6 = items.CurrentAlarm(channel=6, alarm="above_threshold", current_a=70.0)
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [
        (t5, (a5,)), (t6, (a6,)), (t5 + 5 * MIN, (a5,)), (t5 + 10 * MIN, (a5,))]


def test_two_channels_raised_together_share_one_uplink():
    bench = Bench.joined()
    settle(bench, m())
    configure(bench,
              commands.set_current_threshold(5, enabled=True, condition="above", max_a=50),
              commands.set_current_threshold(6, enabled=True, condition="above", max_a=50),
              commands.set_alarm_settings(repeat_count=1))
    t = bench.now + 1
    rx = bench.run(20 * MIN, m=m(current_a=per_channel(10.0, ch5=60.0, ch6=70.0)))
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [(t, (
        items.CurrentAlarm(channel=5, alarm="above_threshold", current_a=60.0),
        items.CurrentAlarm(channel=6, alarm="above_threshold", current_a=70.0)))]


def test_alarm_raised_again_repeats_from_the_new_raise_only():
    bench = Bench.joined()
    settle(bench, m())
    configure(bench, commands.set_current_threshold(5, enabled=True, condition="above",
                                                    max_a=50))
    high, low = m(current_a=per_channel(10.0, ch5=60.0)), m()
    t1 = bench.now + 1
    rx = bench.run(MIN, m=high)
    rx += bench.run(MIN, m=low)
    t2 = bench.now + 1
    rx += bench.run(30 * MIN, m=high)
    assert [t for t, _ in alarms(rx)] == [t1, t2, t2 + 5 * MIN, t2 + 10 * MIN]


# --- other quantities ----------------------------------------------------------------------

QUANTITY_CASES = [
    pytest.param(commands.set_thdi_threshold(3, enabled=True, max_pct=10),
                 dict(thdi_pct=per_channel(2.0, ch3=15.5)),
                 items.ThdiAlarm(channel=3, alarm="above_threshold", thdi_pct=15.5),
                 items.ThdiAlarm(channel=3, alarm="above_threshold_cleared", thdi_pct=2.0),
                 id="thdi_ch3_above"),
    pytest.param(commands.set_thdv_threshold(2, enabled=True, max_pct=5),
                 dict(thdv_pct=phases(1.0, ph2=8.25)),
                 items.ThdvAlarm(channel=2, alarm="above_threshold", thdv_pct=8.25),
                 items.ThdvAlarm(channel=2, alarm="above_threshold_cleared", thdv_pct=1.0),
                 id="thdv_l2_above"),
    pytest.param(commands.set_voltage_unbalance_threshold(enabled=True, max_pct=3),
                 dict(unbalance_pct=4.5),
                 items.VoltageUnbalanceAlarm(alarm="above_threshold", unbalance_pct=4.5),
                 items.VoltageUnbalanceAlarm(alarm="above_threshold_cleared",
                                             unbalance_pct=1.0),
                 id="unbalance_above"),
    pytest.param(commands.set_voltage_threshold(1, enabled=True, condition="below", min_v=200),
                 dict(voltage_v=phases(230.0, ph1=190.5)),
                 items.VoltageAlarm(channel=1, alarm="below_threshold", voltage_v=190.5),
                 items.VoltageAlarm(channel=1, alarm="below_threshold_cleared",
                                    voltage_v=230.0),
                 id="voltage_l1_below"),
    pytest.param(commands.set_current_threshold(12, enabled=True, condition="outside",
                                                min_a=5, max_a=20),
                 dict(current_a=per_channel(10.0, ch12=2.5)),
                 items.CurrentAlarm(channel=12, alarm="outside_threshold", current_a=2.5),
                 items.CurrentAlarm(channel=12, alarm="outside_threshold_cleared",
                                    current_a=10.0),
                 id="current_ch12_outside"),
]


@pytest.mark.parametrize(("downlink", "bad", "raised", "cleared"), QUANTITY_CASES)
def test_threshold_alarm_of_each_quantity(downlink, bad, raised, cleared):
    quality = dict(thdi_pct=2.0, thdv_pct=1.0, unbalance_pct=1.0)
    normal = m(**quality)
    bench = Bench.joined()
    settle(bench, normal)
    configure(bench, downlink, commands.set_alarm_settings(report_cleared=True))
    t = bench.now + 1
    rx = bench.run(12 * MIN, m=m(**{**quality, **bad}))
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [
        (t, (raised,)), (t + 5 * MIN, (raised,)), (t + 10 * MIN, (raised,))]
    t_clear = bench.now + 1
    rx = bench.run(10 * MIN, m=normal)
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [(t_clear, (cleared,))]


# --- passive alarms ------------------------------------------------------------------------

@pytest.mark.parametrize(("bad", "raised", "cleared"), [
    pytest.param(dict(current_a=per_channel(10.0, ch5=120.0)),
                 items.CurrentAlarm(channel=5, alarm="above_range", current_a=120.0),
                 items.CurrentAlarm(channel=5, alarm="above_range_cleared", current_a=10.0),
                 id="current_120A_on_100A_ct"),
    pytest.param(dict(voltage_v=phases(230.0, ph2=520.0)),
                 items.VoltageAlarm(channel=2, alarm="above_range", voltage_v=520.0),
                 items.VoltageAlarm(channel=2, alarm="above_range_cleared", voltage_v=230.0),
                 id="voltage_520V"),
])
def test_over_range_three_times_five_min_apart_then_cleared(bad, raised, cleared):
    bench = Bench.joined(ct="100A")
    settle(bench, m())
    # dismiss reports are off (default): the over-range release is sent all the same
    assert bench.device.settings.items["7c"].report_cleared is False
    t = bench.now + 1
    rx = bench.run(20 * MIN, m=m(**bad))
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [
        (t, (raised,)), (t + 5 * MIN, (raised,)), (t + 10 * MIN, (raised,))]
    t_clear = bench.now + 1
    rx = bench.run(10 * MIN, m=m())
    assert [(r.t, r.up.items) for r in only_alarm_frames(rx)] == [(t_clear, (cleared,))]


def test_current_at_the_ct_range_is_not_over_range():
    bench = Bench.joined(ct="100A")
    settle(bench, m())
    assert alarms(bench.run(10 * MIN, m=m(current_a=per_channel(10.0, ch5=100.0)))) == []


def test_over_range_is_not_a_threshold_alarm_for_the_led():
    bench = Bench.joined(ct="100A")
    settle(bench, m())
    bench.run(30, m=m(current_a=per_channel(10.0, ch5=120.0)))
    assert bench.device.led == "normal"


def test_power_failure_twice_then_silence_then_rejoin_with_four_info_packets():
    bench = Bench.joined()
    bench.run(10 * MIN, m=m())
    assert bench.device.request_config is False  # the first burst carried config_request
    t_off = bench.now
    first = len(bench.received)
    outputs = bench.device.power_off(t_off)
    bench._handle(outputs)
    assert all(isinstance(o, UplinkFrame) for o in outputs)
    rx = bench.received[first:]
    assert [(r.t, r.kind, r.up.items) for r in rx] == [
        (t_off, "alarm", (items.PowerFailureAlarm(),)),
        (t_off + 1, "alarm", (items.PowerFailureAlarm(),))]
    assert [decode(r.frame.payload, dialect="firmware").items for r in rx] == \
        [(items.PowerFailureAlarm(),)] * 2
    assert bytes(rx[0].frame.payload) == bytes.fromhex("36")

    others = len(bench.other)
    assert bench.run(60 * MIN, m=m(current_a=150.0)) == []  # off: nothing at all
    assert bench.other[others:] == []

    t_on = bench.now
    bench._handle(bench.device.power_on(t_on))
    assert [o for o in bench.other[others:] if isinstance(o, JoinRequest)] == \
        [JoinRequest(bench.device.dev_eui, t_on)]
    rx = bench.run(50, m=m())
    info = of_kind(rx, "info")
    assert [r.t for r in info] == [t_on + 5 + 10 * k for k in range(4)]
    for r in info:
        assert r.names() == ["tsl_version", "serial_number", "version", "oem_id",
                             "device_status", "lorawan_version"]
        assert r.up.get("serial_number").serial_number == \
            bench.device.identity.serial_number
    assert [r for r in rx if r.kind != "info"] == []


def test_power_failure_alarm_is_stored_when_storage_is_on():
    bench = Bench.joined(storage=True)
    bench.run(10 * MIN, m=m())
    t_off = bench.now
    bench._handle(bench.device.power_off(t_off))
    bench.run(5 * MIN)
    bench._handle(bench.device.power_on(bench.now))
    bench.run(2 * MIN, m=m())
    rx = bench.downlink(commands.query_history_point("alarm", t_off).payload)
    assert [i for r in rx for i in r.up.replies] == [
        items.CommandReply(result="success", echo="5b", command="history_query_point")]
    hist = [h for r in of_kind(rx, "history") for h in r.up.history]
    assert [(h.mode, int(h.timestamp.timestamp()), h.items) for h in hist] == [
        ("target_time", t_off, (items.PowerFailureAlarm(),))]


# --- the LED -----------------------------------------------------------------------------------

def test_led_alarm_while_a_threshold_alarm_is_active_then_normal():
    bench = Bench.joined()
    bench.run(2 * MIN, m=m())
    assert bench.device.led == "normal"
    configure(bench, commands.set_temperature_threshold(enabled=True, condition="above",
                                                        max_c=40))
    bench.run(5, m=m(temperature_c=45.0))
    assert bench.device.led == "alarm"
    bench.run(20 * MIN)  # still above after every repeat: still the alarm LED
    assert bench.device.led == "alarm"
    bench.run(5, m=m(temperature_c=39.0))
    assert bench.device.led == "normal"
