"""The virtual CTH01: identity, joining, periodic reports, replies to every command.

Each test runs simulated time and checks the exact frames, decoded back with cth01.protocol.
"""

from __future__ import annotations

import itertools

import pytest

from cth01.device import Measurements, VirtualCTH01
from cth01.device.settings import Identity, LorawanSettings
from cth01.protocol import GroupReading, commands, decode, encode_uplink, items

from .harness import T0, Bench, of_kind


def items_bytes(item) -> bytes:
    return encode_uplink([item])


def test_identity_and_factory_defaults():
    dev = VirtualCTH01(Identity.numbered(0x1809))
    ident = dev.identity
    assert ident.serial_number == "6527000180900000"
    assert ident.dev_eui == "24e1240001809000" and ident.app_eui == "24e124c0002a0001"
    assert dev.settings.get("bluetooth_name").name == "CTH01-0001809"  # model + SN digits 5-11
    names = {Identity.numbered(n).default_bluetooth_name for n in range(4096)}
    assert len(names) == 4096
    assert dev.settings.password == "123456" and dev.settings.lorawan.app_port == 85
    s = dev.settings
    assert s.reporting_interval_s == 600
    assert s.report_parameters == ("temperature", "power_factor", "active_power",
                                   "imported_active_energy")
    assert s.retransmission_interval_s == 600 and s.retrieval_interval_s == 120
    assert (s.get("monthly_summary_time").day, s.get("monthly_summary_time").hour) == (1, 0)
    assert s.get("alarm_settings").repeat_interval_min == 5
    assert s.get("alarm_settings").repeat_count == 3
    assert not s.storage_enabled and not s.retransmission_enabled
    assert len(s.items) == 51  # every setting of chapter 4/5, per channel where it applies


def test_join_then_basic_information_four_times_with_device_request_only_after_reset():
    dev = VirtualCTH01(Identity.numbered(1))
    assert dev.led == "off"
    b = Bench(device=dev)
    out = dev.power_on(T0)
    assert [type(o).__name__ for o in out] == ["JoinRequest"]
    assert dev.led == "joining"
    b._handle(out)
    rx = b.run(70)
    info = of_kind(rx, "info")
    assert [r.t - T0 for r in info] == [5, 15, 25, 35]
    for r in info:
        assert r.names() == ["tsl_version", "config_request", "serial_number", "version",
                             "oem_id", "device_status", "lorawan_version"]
        assert r.up.get("serial_number").serial_number == "6527000000100000"
        assert r.up.get("version").firmware_minor == 1
    assert dev.led == "normal"
    # a reboot is not a reset: the next burst has no device-request item
    rx = b.downlink(commands.reboot().payload, wait=60)
    assert rx[0].up.replies[0].result == "success"
    info = of_kind(rx, "info")
    assert len(info) == 4 and all("config_request" not in r.names() for r in info)
    # a factory reset is
    rx = b.downlink(commands.factory_reset().payload, wait=60)
    assert all("config_request" in r.names() for r in of_kind(rx, "info"))


@pytest.mark.parametrize("parameters", [
    ("temperature", "power_factor", "active_power", "imported_active_energy"),
    ("current", "voltage"),
    ("thdi", "thdv", "voltage_unbalance", "apparent_energy"),
    ("temperature", "current", "voltage", "power_factor", "active_power", "reactive_power",
     "apparent_power", "imported_active_energy", "exported_active_energy",
     "imported_reactive_energy", "exported_reactive_energy", "apparent_energy", "thdi", "thdv",
     "voltage_unbalance"),
])
def test_periodic_report_carries_exactly_the_enabled_parameters(parameters):
    b = Bench.joined(settings=[items.ReportParameters(parameters=parameters)],
                     three_phase="b")
    rx = of_kind(b.run(1800), "periodic")
    assert [r.t - rx[0].t for r in rx] == [0, 600, 1200] or \
        len({r.t for r in rx}) < len(rx)  # split reports share their instant
    seen = {name for r in rx[:6] for name in r.names()}
    expected = set()
    for p in parameters:
        if p in ("temperature", "current", "voltage", "power_factor", "thdi", "thdv",
                 "voltage_unbalance"):
            expected.add(p)
        else:
            expected |= {f"{p}_ab", f"{p}_cd"}
    assert seen == expected
    groups = [g for r in rx for item in r.up.items for f in item.__struct_fields__
              if isinstance(getattr(item, f), tuple)
              for g in getattr(item, f) if isinstance(g, GroupReading)]
    for g in groups:
        if g.group == "b":  # three-phase: one value for the whole group
            assert g.phase == "three" and g.channels is None and g.total is not None
        else:
            assert g.phase == "single" and len(g.channels) == 3 and g.total is None


def test_report_values_follow_the_measurements_and_the_interface():
    # 10 A at 230 V PF 0.8 on every channel; group a three-phase, channel 5 reversed
    m = Measurements.constant(current_a=10.0, voltage_v=230.0, power_factor=0.8,
                              temperature_c=31.5)
    b = Bench.joined(three_phase="a")
    b.downlink(commands.set_current_interface(
        "b", circuit="single_phase", ct_ranges=("100A", "100A", "none"),
        reversed_channels=(2,)).payload)
    rx = of_kind(b.run(700, m=m), "periodic")
    up = rx[-1].up
    assert up.get("temperature").temperature_c == 31.5
    pf = up.get("power_factor").power_factor_pct
    assert pf[0].total == 80 and pf[1].channels == (80, 80, 0)
    p = up.get("active_power_ab").active_power_w
    assert p[0].total == 3 * 1840  # 3 x 230 V x 10 A x 0.8
    assert p[1].channels == (1840, -1840, 0)  # reversed CT, unconnected channel


@pytest.mark.parametrize(("region", "dr", "limit"), [("EU868", 0, 51), ("EU868", 3, 115),
                                                     ("US915", 1, 53), ("AU915", 5, 222)])
def test_reports_larger_than_the_data_rate_allows_are_split_at_item_boundaries(region, dr,
                                                                               limit):
    everything = items.ReportParameters(parameters=(
        "temperature", "current", "voltage", "power_factor", "active_power", "reactive_power",
        "apparent_power", "imported_active_energy", "thdi"))
    b = Bench.joined(settings=[everything])
    b.device.settings.lorawan = LorawanSettings(region=region, data_rate=dr)
    full = [i.command_name for i in b.device.report_items()]
    rx = of_kind(b.run(600), "periodic")
    frames = [r for r in rx if r.t == rx[0].t]
    assert all(len(r.frame.payload) <= limit for r in frames)
    # nothing lost, nothing reordered, every frame decodes on its own
    assert [n for r in frames for n in r.names()] == full
    # greedy: no frame could have taken the next frame's first item
    for a, nxt in itertools.pairwise(frames):
        first = len(items_bytes(nxt.up.items[0]))
        assert len(a.frame.payload) + first > limit


def test_enquire_periodic_report_is_answered_at_once():
    b = Bench.joined()
    rx = b.downlink("b9", wait=3)
    assert len(rx) == 1 and rx[0].kind == "periodic"
    assert rx[0].names()[-1] == "reporting_interval"
    assert rx[0].up.get("reporting_interval").minutes == 10


def test_changing_the_reporting_interval_moves_the_next_report():
    b = Bench.joined()
    b.run(100)
    rx = b.downlink(commands.set_reporting_interval(minutes=1).payload, wait=200)
    assert rx[0].up.replies[0].echo == "61" and rx[0].up.replies[0].result == "success"
    times = [r.t for r in of_kind(rx, "periodic")]
    assert times[1] - times[0] == 60 and times[0] - rx[0].t == 60


@pytest.mark.parametrize(("downlink", "result", "echo"), [
    (commands.set_reporting_interval(minutes=20).payload, "success", "61"),
    ("61010000", "write_parameter_error", "61"),  # 0 min: out of range
    ("6101a105", "write_parameter_error", "61"),  # 1441 min
    (commands.set_current_threshold(5, enabled=True, condition="within", min_a=20,
                                    max_a=10).payload, "write_parameter_error", "7704"),
    (commands.set_alarm_settings(repeat_interval_min=10, repeat_count=2).payload,
     "write_parameter_error", "7c"),  # alarm interval not shorter than the 10-min report
    (commands.set_alarm_settings(repeat_interval_min=9, repeat_count=2).payload,
     "success", "7c"),
    (commands.set_retrieval_interval(300).payload, "success", "c503"),
    ("c50400", "write_parameter_error", "c504"),
    ("99", "unknown_command", "99"),
    ("6300", "unknown_command", "63"),  # firmware command the CTH01 does not support
    (commands.clear_history("alarm").payload, "success", "5e"),
    (commands.set_time_zone(-240).payload, "success", "c7"),
])
def test_every_command_gets_an_ef_reply_with_the_right_result(downlink, result, echo):
    b = Bench.joined()
    before = dict(b.device.settings.items)
    rx = b.downlink(downlink, wait=2)
    replies = [i for r in rx for i in r.up.replies]
    assert [(x.result, x.echo) for x in replies] == [(result, echo)]
    if result != "success":
        assert b.device.settings.items == before  # a refused parameter changes nothing


def test_configuration_queries_return_the_stored_settings():
    b = Bench.joined()
    b.downlink(commands.set_current_threshold(5, enabled=True, condition="above",
                                              max_a=888).payload)
    # firmware query (ef) for one identifier
    rx = b.downlink(commands.query_config("7704").payload)
    t = rx[0].up.get("current_threshold")
    assert (t.channel, t.enabled, t.condition, t.max_a) == (5, True, "above", 888)
    # guide query (58): every current threshold
    rx = b.downlink("5801")
    got = [i for r in rx for i in r.up.items]
    assert [i.channel for i in got] == list(range(1, 13))
    assert got[4].max_a == 888 and not got[0].enabled
    # all configuration (ee): every setting, split into frames that fit
    rx = b.downlink("ee")
    names = [i.command_name for r in rx for i in r.up.items]
    assert len(names) == 51 and all(len(r.frame.payload) <= 222 for r in rx)
    rx = b.downlink("57")
    assert [i.command_name for i in rx[0].up.items] == [
        "data_storage", "retransmission", "retransmission_interval", "retrieval_interval"]


def test_interface_rules_rogowski_group_and_calibration():
    b = Bench.joined()
    rx = b.downlink(commands.set_current_interface(
        "c", circuit="three_phase", ct_ranges=("4000A", "100A", "100A")).payload)
    assert rx[0].up.replies[0].result == "success"
    g = b.device.settings.get("current_interface_c")
    assert (g.ct_range_1, g.ct_range_2, g.ct_range_3) == ("4000A",) * 3
    b.downlink(commands.set_current_interface(
        "c", circuit="three_phase", ct_ranges=("4000A", "300A", "4000A")).payload)
    g = b.device.settings.get("current_interface_c")
    assert (g.ct_range_1, g.ct_range_2, g.ct_range_3) == ("300A",) * 3
    b.downlink(commands.set_temperature_calibration(enabled=True, offset_c=-0.3).payload)
    b.downlink(commands.set_report_parameters("temperature").payload)
    rx = b.downlink("b9")
    assert rx[0].up.get("temperature").temperature_c == 24.7


def test_bluetooth_name_storage_settings_and_rejoin():
    b = Bench.joined()
    rx = b.downlink("64094d696c657369676874")
    assert rx[0].up.replies[0].echo == "64"
    assert b.device.settings.get("bluetooth_name").name == "Milesight"
    b.downlink(commands.set_data_storage(True).payload)
    b.downlink(commands.set_retransmission_interval(900).payload)
    assert b.device.settings.storage_enabled and b.device.settings.retransmission_interval_s == 900
    rx = b.downlink(commands.rejoin().payload, wait=60)
    assert rx[0].up.replies[0].echo == "b6"
    assert any(type(o).__name__ == "JoinRequest" and o.time > T0 + 10 for o in b.other)
    assert len(of_kind(rx, "info")) == 4 and b.device.state == "joined"


def test_malformed_downlinks_change_nothing_and_are_answered():
    b = Bench.joined()
    before = dict(b.device.settings.items)
    for raw in ("", "61", "6101", "7c0a", "ff"):
        b.downlink(raw, wait=1)
    assert b.device.settings.items == before
    rx = b.downlink("ff2a", wait=1)  # sequence-number check echoes the number
    assert rx[0].up.get("sequence_number_check").sequence_number == 42


def test_downlinks_on_another_port_are_ignored():
    b = Bench.joined()
    b.network.downlink(b.now, b.device.dev_eui, bytes.fromhex("61011400"), 10)
    assert b.run(3) == [] and b.device.settings.reporting_interval_s == 600


def test_decoded_frames_never_need_the_guide_dialect():
    b = Bench.joined(settings=[items.ReportParameters(parameters=(
        "current", "power_factor", "apparent_power"))], three_phase="ac")
    for r in b.run(1300):
        assert decode(r.frame.payload, dialect="firmware") == r.up


def test_a_power_of_minus_one_watt_is_sent_as_zero_not_as_the_no_data_sentinel():
    """-1 W (a CT reversed on an idle circuit) would encode as 0xFFFFFFFF, which the wire
    reserves for "no data": the firmware sends 0 W instead (found by a 100,000-report run)."""
    b = Bench.joined()
    dev = b.device
    dev.bank.active_power_w[dev.row, :] = -1.0
    dev.bank.group_active_power_w[dev.row, :] = -1.0
    report = encode_uplink(dev.report_items())
    powers = [g for item in decode(report).items if item.command_name.startswith("active_power")
              for g in item.active_power_w]
    assert powers and all(v == 0 for g in powers
                          for v in (g.channels if g.channels is not None else (g.total,)))
