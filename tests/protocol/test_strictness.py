"""Where the vendor's decoder is lax, ours refuses (wire-format.md section F), with the byte
offset, the command id and the reason."""

from __future__ import annotations

import pytest

from cth01.protocol import DecodeError, EncodeError, commands, decode, decode_downlink, items

REJECT = [
    # (case, hex, dialect, offset, command, reason fragment)
    ("F1 unknown id", "019d0a99", "auto", 3, 0x99, "unknown id 0x99"),
    ("F1 guide-only id", "5800", "firmware", 0, 0x58, "downlink command"),
    ("F2 zero padding", "00019d0a", "firmware", 0, 0x00, "unknown id 0x00"),
    ("F3 truncated temperature", "019d", "firmware", 1, 0x01, "truncated"),
    ("F3 empty current", "05", "firmware", 1, 0x05, "needs 36 bytes, 0 left"),
    ("F3 short current", "0501", "firmware", 1, 0x05, "needs 36 bytes, 1 left"),
    ("F3 short history header", "ed01", "firmware", 1, 0xED, "truncated"),
    ("F3 alarm without value", "3013", "firmware", 2, 0x30, "truncated"),
    ("F3 cf without version", "cfd8", "firmware", 2, 0xCF, "truncated"),
    ("F4 guide currents as firmware", "05" + "1027" * 12, "firmware", 1, 0x05, "needs 36"),
    ("F5 short current alarm", "3104023c28", "firmware", 3, 0x31, "truncated"),
    ("F6 order check needs its byte", "fe", "firmware", 1, 0xFE, "truncated"),
    ("F7 d7 has no known layout", "d70102", "firmware", 0, 0xD7, "unknown id 0xd7"),
    ("F8 cf unknown sub-id", "cf0102", "firmware", 1, 0xCF, "unknown sub-id 0x01"),
    ("F9 reply length past end", "ef0f61", "firmware", 2, 0xEF, "truncated"),
    ("F9 reply length zero", "ef00", "firmware", 1, 0xEF, "invalid length=0"),
    ("F9 result 10 is guide-only", "efa161", "firmware", 1, 0xEF, "invalid result=10"),
    ("F10 name length 0", "6400", "firmware", 1, 0x64, "invalid length=0"),
    ("F10 name length 255", "64ff41", "firmware", 1, 0x64, "invalid length=255"),
    ("F10 name past end", "640d41", "firmware", 2, 0x64, "truncated"),
    ("F10 name not UTF-8", "6402ff41", "firmware", 2, 0x64, "not valid UTF-8"),
    ("F10 name with NUL inside", "640341004200"[:10], "firmware", 2, 0x64, "NUL byte"),
    ("F11 alarm type 5", "3005", "firmware", 1, 0x30, "invalid alarm=5"),
    ("F11 alarm type 255", "35ffff", "firmware", 1, 0x35, "invalid alarm=255"),
    ("F11 c5 sub-id 4", "c50401", "firmware", 1, 0xC5, "unknown sub-id 0x04"),
    ("F11 interval unit 2", "610214", "firmware", 1, 0x61, "unknown sub-id 0x02"),
    ("F11 monthly kind 9", "ed01a1b18569" "4009", "firmware", 7, 0x40, "invalid kind=9"),
    ("F12 reserved PF mask bits", "07f0", "firmware", 1, 0x07, "reserved bits"),
    ("F12 reserved power mask bits", "0cfc0000000000000000", "firmware", 1, 0x0C,
     "reserved bits"),
    ("F12 reserved 6c bit 15", "6cffff", "firmware", 1, 0x6C, "reserved bits"),
    ("F13 current alarm channel 33", "312002102700", "firmware", 1, 0x31, "invalid channel=33"),
    ("F13 threshold channel 33", "7720010900000000", "firmware", 1, 0x77,
     "invalid channel=33"),
    ("F13 circuit type 7", "670703090003090003090000", "firmware", 1, 0x67,
     "invalid circuit=7"),
    ("F13 DST enable 10", "c60aff0d99881300000000", "firmware", 1, 0xC6, "invalid enabled=10"),
    ("F13 time zone 32767 min", "c7ff7f", "firmware", 1, 0xC7, "invalid offset_min=32767"),
    ("F14 temperature 327.67", "01ff7f", "firmware", 1, 0x01, "327.67"),
    ("F14 current 10000 A", "05" + "40420f" * 12, "firmware", 1, 0x05, "10000"),
    ("F14 PF 200 %", "070fffc8c8c8c8c8c8c8c8c8c8c8", "firmware", 3, 0x07, "200"),
    ("F14 THDi 653.45 %", "0341" + "ffff" * 11 + "3075", "firmware", 1, 0x03, "653.45"),
    ("F14 THDi 125.43 %", "03" + "ffff" * 11 + "ff30", "firmware", 23, 0x03, "125.43"),
    ("F15 current 167772.14 A", "05" + "ffffff" * 11 + "feffff", "firmware", 34, 0x05,
     "167772.14"),
    ("F16 duplicate temperature", "019d0a019e0a", "firmware", 3, 0x01, "duplicate"),
    ("F17 history mode 5", "ed05a1b18569019e0a", "firmware", 1, 0xED, "invalid mode=5"),
    ("F17 downlink id in record", "ed01a1b18569be", "firmware", 6, 0xBE, "downlink command"),
    ("F17 empty record", "019d0aed01a1b18569", "firmware", 3, 0xED, "without items"),
    ("F18 reboot in an uplink", "be", "firmware", 0, 0xBE, "downlink command"),
    ("F19 40 outside a record", "4001", "firmware", 0, 0x40, "must directly follow"),
    ("40 after an item", "ed01a1b18569019e0a4001", "firmware", 9, 0x40, "must directly follow"),
]


@pytest.mark.parametrize("case,hex_,dialect,offset,command,reason", REJECT,
                         ids=[r[0] for r in REJECT])
def test_lax_vendor_inputs_are_rejected(case, hex_, dialect, offset, command, reason):
    with pytest.raises(DecodeError) as err:
        decode(bytes.fromhex(hex_), dialect=dialect)
    e = err.value
    assert reason in str(e)
    assert (e.offset, e.command) == (offset, command)
    assert e.dialect == dialect


def test_error_message_names_offset_command_and_dialect():
    with pytest.raises(DecodeError) as err:
        decode(bytes.fromhex("05" + "00" * 12), dialect="firmware")
    assert str(err.value) == ("truncated current: needs 36 bytes, 12 left "
                              "(dialect=firmware, offset=1, command=0x05)")


def test_auto_reports_both_reasons():
    with pytest.raises(DecodeError) as err:
        decode(bytes.fromhex("0501"))
    assert "firmware:" in str(err.value) and "guide:" in str(err.value)
    assert err.value.dialect == "auto"


@pytest.mark.parametrize("payload", [b"", "019d0a", None, 42])
def test_not_a_payload(payload):
    with pytest.raises(DecodeError):
        decode(payload)


def test_sentinels_decode_to_none_and_are_listed():
    up = decode(bytes.fromhex("05" + "ffffff" + "10270000" * 0 + "102700" * 11 + "02ffff"
                              + "0c02ffffffff0100000002000000" "03000000"))
    cur = up.get("current")
    assert cur.current_a == (None,) + (100.0,) * 11
    assert up.get("voltage_unbalance").unbalance_pct is None
    power = up.get("apparent_power_ab").apparent_power_va
    assert power[0].total is None and power[1].channels == (1, 2, 3)
    assert {i.command_name: i.unavailable for i in up.items} == {
        "current": ("current_a[0]",), "voltage_unbalance": ("unbalance_pct",),
        "apparent_power_ab": ("apparent_power_va.a",)}
    assert up.get("current").to_dict()["unavailable"] == ["current_a[0]"]


def test_alarm_without_value_is_not_unavailable():
    a = decode(bytes.fromhex("3000"), dialect="firmware").alarms[0]
    assert a.temperature_c is None and a.unavailable == ()


def test_range_violations_can_be_downgraded_to_warnings():
    up = decode(bytes.fromhex("01ff7f"), dialect="firmware", strict_ranges=False)
    assert up.get("temperature").temperature_c == 327.67
    assert up.warnings and "out of range temperature_c=327.67" in up.warnings[0]


def test_values_are_exactly_as_scaled():
    up = decode(bytes.fromhex("019d0a"))
    assert repr(up.get("temperature").temperature_c) == "27.17"


def test_ambiguous_frame_keeps_both_readings():
    up = decode(bytes.fromhex("07005a5a5a5a0610271027102736"))
    assert up.ambiguous and up.dialect == "firmware"
    assert [g.total for g in up.get("power_factor").power_factor_pct] == [90] * 4
    assert up.get("voltage").voltage_v == (100.0, 100.0, 100.0)
    guide = up.alternative.get("power_factor").power_factor_pct
    assert [c for g in guide for c in g.channels] == [90, 90, 90, 90, 6, 16, 39, 16, 39, 16,
                                                       39, 54]
    with pytest.raises(DecodeError, match="ambiguous"):
        decode(bytes.fromhex("07005a5a5a5a0610271027102736"), on_ambiguity="error")


def test_several_alarms_are_all_kept_in_order():
    up = decode(bytes.fromhex("30139e0a30129e0a"))
    assert [a.alarm for a in up.alarms] == ["above_threshold", "above_threshold_cleared"]


def test_reply_with_unknown_echo_is_kept_raw():
    r = decode(bytes.fromhex("ef0199")).replies[0]
    assert (r.result, r.echo, r.command) == ("success", "99", None)


# --- encoder validation ---------------------------------------------------------------------

ENCODE_ERRORS = [
    (lambda: commands.set_reporting_interval(minutes=0), "reporting_interval.minutes", "1..1440"),
    (lambda: commands.set_reporting_interval(minutes=1441), "minutes", "1..1440 min"),
    (lambda: commands.set_retransmission_interval(30), "seconds", "120..1200 s"),
    (lambda: commands.set_retrieval_interval(1201), "seconds", "120..1200 s"),
    (lambda: commands.set_bluetooth_name(""), "name", "1-13 ASCII"),
    (lambda: commands.set_bluetooth_name("A" * 14), "name", "1-13 ASCII"),
    (lambda: commands.set_bluetooth_name("Milesight™"), "name", "1-13 ASCII"),
    (lambda: commands.set_time_zone(5000), "offset_min", "one of"),
    (lambda: commands.set_daylight_saving(enabled=True, bias_min=0), "bias_min", "1..120"),
    (lambda: commands.set_daylight_saving(enabled=True, start=(13, 1, 1, 0)), "start_month",
     "1..12"),
    (lambda: commands.set_daylight_saving(enabled=True, start=(3, 9, 1, 0)), "start_week",
     "1..5"),
    (lambda: commands.set_monthly_summary_time(day=29), "day", "1..28"),
    (lambda: commands.set_temperature_calibration(enabled=True, offset_c=0.001), "offset_c",
     "precision"),
    (lambda: commands.set_temperature_threshold(enabled=True, condition="sideways"),
     "condition", "'above'"),
    (lambda: commands.set_current_threshold(13, enabled=True, condition="above", max_a=1),
     "channel", "1..12"),
    (lambda: commands.set_current_threshold(1, enabled=True, condition="above", max_a=4001),
     "max_a", "0..4000 A"),
    (lambda: commands.set_voltage_threshold(4, enabled=True, condition="above", max_v=250),
     "channel", "1..3"),
    (lambda: commands.set_thdi_threshold(1, enabled=True, max_pct=0), "max_pct", "1..100"),
    (lambda: commands.set_alarm_settings(repeat_count=101), "repeat_count", "1..100"),
    (lambda: commands.set_temperature_calibration(enabled=True, offset_c=-80.01), "offset_c",
     "-80..80"),
    (lambda: commands.set_temperature_threshold(enabled=True, condition="above", max_c=61),
     "max_c", "-20..60"),
    (lambda: commands.clear_energy(13), "channel", "0..12"),
    (lambda: commands.clear_history("everything"), "record_type", "'alarm'"),
    (lambda: commands.set_report_parameters("temperature", "humidity"), "parameters",
     "temperature"),
    (lambda: commands.query_history_point("periodic", -1), "time", "u32"),
    (lambda: commands.set_current_interface("a", circuit="single_phase",
                                            ct_ranges=("2000A", "none", "none")),
     "ct_range_1", "'4000A'"),
]


@pytest.mark.parametrize("build,field,allowed", ENCODE_ERRORS)
def test_encoder_names_field_value_and_range(build, field, allowed):
    with pytest.raises(EncodeError) as err:
        build()
    text = str(err.value)
    assert field in text and allowed in text and "got" in text


def test_uplink_items_are_refused_in_downlinks():
    from cth01.protocol import encode_downlink
    with pytest.raises(EncodeError, match="cannot be sent in a downlink"):
        encode_downlink(items.Temperature(temperature_c=20.0))


def test_downlink_decoder_refuses_uplink_items():
    with pytest.raises(DecodeError, match="uplink item"):
        decode_downlink(bytes.fromhex("019d0a"))
