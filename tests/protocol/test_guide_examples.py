"""Every example frame printed in the user guide (wire-format.md section D), with the correct
values — the guide's arithmetic slips are called out where they matter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cth01.protocol import DecodeError, commands, decode, decode_downlink

MONTHLY = ("ed{m}00277e69 4003 01 2e0b ed{m}00277e69 4003 02 1027 "
           "ed{m}00277e69 4003 03 d40e04057d23ff11081d46177c268309c4174916370e310a "
           "ed{m}00277e69 4003 04 000000000000 ed{m}00277e69 4003 06 5aa8fc81d331")
D3_RESTORED = ("019d0a 022926 0c0008020000df0300008f000000a1000000b80000007e000000 "
               "0d0083050000b743010009010000cf010000450100002c000000")
D3_PRINTED = ("019d0a 022926 0c000802000df0300008f000000a1000000b80000007e000000 "
              "0d0083050000b743010009010000cf010000450100002c000000")


def frame(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_d1_basic_information_packet():
    up = decode(frame("df0100 ee db6527f41809380000 da0100010100000000 d90000 c801 cf0002"))
    assert up.dialect == "guide"  # cf 00 (class) exists only in the guide's tables
    by = {i.command_name: i.to_dict() for i in up.items}
    assert by["tsl_version"] == {"type": "tsl_version", "major": 1, "minor": 0}
    assert "config_request" in by
    assert by["serial_number"]["serial_number"] == "6527f41809380000"
    v = by["version"]
    assert (v["hardware_major"], v["hardware_minor"], v["firmware_major"],
            v["firmware_minor"]) == (1, 0, 1, 1)
    assert by["oem_id"]["oem_id"] == "0000"
    assert by["device_status"]["status"] == "on"
    assert by["lorawan_class"]["lorawan_class"] == "C"
    with pytest.raises(DecodeError, match="unknown sub-id 0x00") as err:
        decode(frame("df0100eedb6527f41809380000da0100010100000000d90000c801cf0002"),
               dialect="firmware")
    assert err.value.offset == 28 and err.value.command == 0xCF


def test_d2_tsl_version():
    assert decode(frame("df0102")).items[0].to_dict() == {"type": "tsl_version", "major": 1,
                                                          "minor": 2}


def test_d3_periodic_packet_restored():
    up = decode(frame(D3_RESTORED))
    assert up.dialect == "guide"  # mask 00 with six values per item: the guide's layout
    assert up.get("temperature").temperature_c == 27.17  # the guide prints 27.12
    assert up.get("voltage_unbalance").unbalance_pct == 97.69
    ab = up.get("apparent_power_ab").apparent_power_va
    cd = up.get("apparent_power_cd").apparent_power_va
    assert [g.phase for g in ab + cd] == ["three"] * 4
    assert [c for g in ab for c in g.channels] == [520, 991, 143, 161, 184, 126]
    assert [c for g in cd for c in g.channels] == [1411, 82871, 265, 463, 325, 44]
    with pytest.raises(DecodeError) as err:  # firmware: three-phase mask -> one value per group
        decode(frame(D3_RESTORED), dialect="firmware")
    assert err.value.offset == 16 and "0x8f" in str(err.value)


def test_d3_as_printed_has_an_odd_number_of_hex_digits():
    assert len(D3_PRINTED.replace(" ", "")) % 2 == 1
    with pytest.raises(ValueError):
        frame(D3_PRINTED)


@pytest.mark.parametrize("mode,mode_name", [("01", "historical"), ("02", "monthly")])
def test_d4_d9_monthly_maximum_records(mode, mode_name):
    up = decode(frame(MONTHLY.format(m=mode)))
    assert up.dialect == "common" and not up.items
    assert len(up.history) == 5
    when = datetime(2026, 1, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 Feb 2026 at UTC+8
    assert all(r.timestamp == when and r.kind == "maximum" and r.mode == mode_name
               for r in up.history)
    temp, unb, thdi, thdv, volt = (r.items[0] for r in up.history)
    assert temp.temperature_c == 28.62
    assert unb.unbalance_pct == 100.0
    assert thdi.thdi_pct == (37.96, 12.84, 90.85, 46.07, 74.32, 59.58, 98.52, 24.35, 60.84,
                             57.05, 36.39, 26.09)
    assert thdv.thdv_pct == (0.0, 0.0, 0.0)
    assert volt.voltage_v == (430.98, 332.76, 127.55)  # the guide prints 33.276 and 12.755


def test_d5_power_failure_alarm():
    up = decode(frame("36"))
    assert up.dialect == "common" and up.alarms[0].command_name == "power_failure_alarm"


def test_d6_temperature_alarm():
    a = decode(frame("30139e0a")).alarms[0]
    assert (a.alarm, a.temperature_c) == ("above_threshold", 27.18)


def test_d7_current_over_range_alarm_reads_u16_in_the_guide_dialect():
    up = decode(frame("3104023c28"))
    assert up.dialect == "guide"
    a = up.alarms[0]
    assert (a.channel, a.alarm, a.current_a) == (5, "above_range", 103.0)
    with pytest.raises(DecodeError, match="truncated"):
        decode(frame("3104023c28"), dialect="firmware")
    fw = decode(frame("3104023c2800"), dialect="firmware").alarms[0]  # the firmware's form
    assert fw.current_a == 103.0


def test_d8_historical_periodic_record():
    up = decode(frame("ed01a1b1856901360a"))
    (rec,) = up.history
    assert rec.timestamp == datetime(2026, 2, 6, 9, 17, 21, tzinfo=UTC)
    assert rec.mode == "historical" and rec.kind is None
    assert rec.items[0].temperature_c == 26.14
    assert up.to_dict()["history"][0]["timestamp"] == "2026-02-06T09:17:21Z"


DOWNLINKS = [
    ("D10", "61011400", lambda: commands.set_reporting_interval(minutes=20)),
    ("D11", "be", commands.reboot),
    ("D12", "64094d696c657369676874", lambda: commands.set_bluetooth_name("Milesight")),
    ("D13", "c710ff", lambda: commands.set_time_zone(-240)),
    ("D14", "c6013c03573c000a573c00", lambda: commands.set_daylight_saving(
        enabled=True, bias_min=60, start=(3, 5, 7, 60), end=(10, 5, 7, 60))),
    ("D15", "6d0f0900", lambda: commands.set_monthly_summary_time(day=15, hour=9)),
    ("D16", "6b01e2ff", lambda: commands.set_temperature_calibration(enabled=True,
                                                                     offset_c=-0.3)),
    ("D17", "7601020000c409", lambda: commands.set_temperature_threshold(
        enabled=True, condition="above", max_c=25)),
    ("D18", "7704010200007803 7708010301002c01 770a0104de009a02", lambda: commands.payload(
        commands.set_current_threshold(5, enabled=True, condition="above", max_a=888),
        commands.set_current_threshold(9, enabled=True, condition="within", min_a=1,
                                       max_a=300),
        commands.set_current_threshold(11, enabled=True, condition="outside", min_a=222,
                                       max_a=666))),
    ("D19", "7c0a00020000", lambda: commands.set_alarm_settings(repeat_interval_min=10,
                                                                repeat_count=2)),
    ("D20", "6801010400010200000100", lambda: commands.set_current_interface(
        "b", circuit="three_phase", ct_ranges=("1000A", "300A", "100A"),
        reversed_channels=(1, 2))),
    ("D21", "6900010000010100010000", lambda: commands.set_current_interface(
        "c", circuit="single_phase", ct_ranges=("none", "100A", "none"),
        reversed_channels=(1, 2, 3))),
    ("D22", "b9", commands.enquire_periodic_report),
    ("D24", "5800", lambda: commands.query_thresholds("temperature")),
    ("D26", "5c0100847b6980048a69", lambda: commands.query_history_range(
        "periodic", datetime(2026, 1, 29, 16, tzinfo=UTC), datetime(2026, 2, 9, 16,
                                                                    tzinfo=UTC))),
]


@pytest.mark.parametrize("ref,hex_,build", DOWNLINKS, ids=[d[0] for d in DOWNLINKS])
def test_downlink_examples_are_byte_exact(ref, hex_, build):
    downlink = build()
    assert downlink.payload == frame(hex_)
    dialect = "guide" if ref == "D24" else "firmware"
    assert decode_downlink(frame(hex_), dialect=dialect) == downlink.items


def test_d18_values():
    items = decode_downlink(frame("7704010200007803 7708010301002c01 770a0104de009a02"))
    assert [(i.channel, i.condition, i.min_a, i.max_a) for i in items] == [
        (5, "above", 0, 888), (9, "within", 1, 300), (11, "outside", 222, 666)]


def test_d24_threshold_query_is_guide_only():
    with pytest.raises(DecodeError, match="only in the guide dialect"):
        decode_downlink(frame("5800"), dialect="firmware")
    assert decode_downlink(frame("5800"))[0].threshold == "temperature"


def test_d23_d25_query_replies():
    assert decode(frame("61010a00")).items[0].to_dict() == {"type": "reporting_interval",
                                                            "minutes": 10}
    t = decode(frame("760103e803b80b")).items[0]
    assert (t.enabled, t.condition, t.min_c, t.max_c) == (True, "within", 10.0, 30.0)
