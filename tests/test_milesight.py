"""The vendor-compatible view (`cth01.milesight`) against the vendor codec's recorded outputs
(tests/fixtures/vendor), plus properties over random valid frames.

Every reference frame / input either matches the vendor exactly, or is listed below with the
reason our strict codec rejects it or deliberately differs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

from cth01 import milesight
from cth01.protocol import (
    COMMANDS,
    DecodeError,
    EncodeError,
    Item,
    Uplink,
    encode_downlink,
    encode_uplink,
)
from cth01.protocol.schema import Dialect

from .protocol.strategies import items, uplinks

FIXTURES = Path(__file__).parent / "fixtures" / "vendor"
DECODER = json.loads((FIXTURES / "decoder_reference.json").read_text(encoding="utf-8"))
ENCODER = json.loads((FIXTURES / "encoder_reference.json").read_text(encoding="utf-8"))


def dumps(obj: object) -> str:
    """JSON exactly as the vendor's JSON.stringify prints it (key order included)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def key(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


# --- decoding ----------------------------------------------------------------------------------

_DOWNLINK = "a downlink command, not an uplink (decode_downlink reads it, see below)"

# Valid-looking vendor frames our strict decoder rejects, and why.
DECODE_REFUSED: dict[str, str] = {
    "4001": "40 (monthly record kind) outside a history record",
    "4003": "40 (monthly record kind) outside a history record",
    "340300": "thdv alarm channel is a voltage phase, wire 0-2; 3 is phase 4",
    "340412b004": "thdv alarm channel is a voltage phase, wire 0-2; 4 is phase 5",
    "340b13f609": "thdv alarm channel is a voltage phase, wire 0-2; 11 is phase 12",
    "ed01a1b185690188ff070f5a5b5c5d5e5f606162636465080301000000feffffff0300000004000000"
    "fbffffff06000000": "power factor 1.01 (101 %) is outside 0-100 %",
    **dict.fromkeys(
        ("bf", "be", "b9", "b8", "b6", "57", "5d01", "5b01a1b18569", "5c0221608469a1b18569",
         "b7a1b18569", "5f03", "5e00"), _DOWNLINK),
}

# Frames we decode, deliberately not as the vendor does: hex -> our output.
DECODE_DIFFERENT: dict[str, dict] = {
    # the no-data sentinel of 0x35 is "error" like every other sentinel (vendor: 655.35)
    "3513ffff": {"voltage_unbalance_alarm": {
        "type": 19, "over_range_alarm_trigger": {"voltage_unbalance": "error"}}},
}

FRAMES = DECODER["frames"]


@pytest.mark.parametrize("entry", FRAMES, ids=[e["hex"][:40] for e in FRAMES])
def test_decode_reference_frame(entry):
    payload = bytes.fromhex(entry["hex"])
    if entry["hex"] in DECODE_REFUSED:
        with pytest.raises(DecodeError):
            milesight.decode(payload)
        return
    got = milesight.decode(payload)
    want = DECODE_DIFFERENT.get(entry["hex"], entry["output"])
    assert got == want
    assert dumps(got) == dumps(want)  # key order as well


@pytest.mark.parametrize("entry", [e for e in FRAMES if DECODE_REFUSED.get(e["hex"]) == _DOWNLINK],
                         ids=lambda e: e["hex"])
def test_decode_downlink_reference_frame(entry):
    got = milesight.decode_downlink(bytes.fromhex(entry["hex"]))
    assert dumps(got) == dumps(entry["output"])


def test_decode_coverage():
    """Nearly all reference frames match the vendor exactly; the rest are listed above."""
    assert set(DECODE_REFUSED) | set(DECODE_DIFFERENT) <= {e["hex"] for e in FRAMES}
    assert len(FRAMES) - len(DECODE_REFUSED) - len(DECODE_DIFFERENT) == 234


# Quirk frames (truncated, malformed) the vendor misreads: we raise, except these.
QUIRKS_OURS: dict[str, dict] = {
    # `fe` carries the order byte; the vendor leaves it unread and takes it for an id
    "fe01": {"check_order_reply": {"order": 1}},
}
# Quirk frames that are valid after all: we decode them exactly like the vendor.
QUIRKS_AS_VENDOR = {
    # UTF-8 product name
    "dee4b8ad0000000000000000000000000000000000000000000000000000000000",
    # UTF-8 Bluetooth name ("éA"): decoded as UTF-8 although we only send ASCII names
    "6403c3a941",
}


@pytest.mark.parametrize("entry", DECODER["quirks"], ids=[e["hex"][:40] for e in DECODER["quirks"]])
def test_decode_quirk_frame(entry):
    payload = bytes.fromhex(entry["hex"])
    if entry["hex"] in QUIRKS_AS_VENDOR:
        assert dumps(milesight.decode(payload)) == dumps(entry["output"])
        return
    if entry["hex"] in QUIRKS_OURS:
        assert milesight.decode(payload) == QUIRKS_OURS[entry["hex"]]
        return
    with pytest.raises(DecodeError):
        milesight.decode(payload)


def test_every_command_has_a_vendor_rendering():
    structural = {"history_header", "monthly_kind"}
    names = {c.name for c in COMMANDS if Dialect.FIRMWARE in c.dialects} - structural
    assert names <= set(milesight.RENDER)


def test_merge_rules():
    # repeated alarm ids merge (type overwritten, both named objects kept), replies append,
    # threshold lists upsert by channel, interval objects merge
    got = milesight.decode(bytes.fromhex("30139e0a30129e0a" "ef0161ef0160"
                                         "770201010a001400770200021e002800" "61010a0061005802"))
    assert dumps(got) == dumps({
        "temperature_alarm": {"type": 18, "over_range_alarm_trigger": {"temperature": 27.18},
                              "over_range_alarm_deactivation": {"temperature": 27.18}},
        "ans": [{"result": 0, "length": 1, "id": "reporting_interval"},
                {"result": 0, "length": 1, "id": "collection_interval"}],
        "current_alarm_settings": [{"channel": 2, "enable": 0, "threshold_condition": 2,
                                    "threshold_min": 30, "threshold_max": 40}],
        "reporting_interval": {"unit": 0, "minutes_of_time": 10, "seconds_of_time": 600},
    })


# --- encoding ----------------------------------------------------------------------------------

# Vendor inputs our table refuses (EncodeError), and why.
ENCODE_REFUSED: dict[str, str] = {
    key({"data_storage_settings": {"retrieval_interval": 60}}):
        "retrieval interval 60 s: downlinks keep to 120-1200 s",
    key({"data_storage_settings": {"enable": 1, "retransmission_enable": 1,
                                   "retransmission_interval": 30, "retrieval_interval": 1200}}):
        "retransmission interval 30 s: downlinks keep to 120-1200 s",
    key({"data_storage_settings": {"retrieval_interval": 60, "enable": 1}}):
        "retrieval interval 60 s: downlinks keep to 120-1200 s",
    key({"daylight_saving_time": {
        "enable": 0, "daylight_saving_time_offset": 0, "start_month": 1, "start_week_num": 1,
        "start_week_day": 1, "start_hour_min": 0, "end_month": 1, "end_week_num": 1,
        "end_week_day": 1, "end_hour_min": 0}}): "DST offset 0: downlinks keep to 1-120 min",
    key({"thdi_alarm_settings": [
        {"channel": 0, "enable": 1, "threshold_condition": 2, "threshold_min": 0,
         "threshold_max": 5},
        {"channel": 11, "enable": 1, "threshold_condition": 3, "threshold_min": 1,
         "threshold_max": 100}]}): "THD threshold condition 3 (within): only 0 or 2",
    key({"thdv_alarm_settings": [
        {"channel": 0, "enable": 1, "threshold_condition": 2, "threshold_min": 0,
         "threshold_max": 5},
        {"channel": 1, "enable": 1, "threshold_condition": 2, "threshold_min": 0,
         "threshold_max": 6},
        {"channel": 2, "enable": 0, "threshold_condition": 0, "threshold_min": 0,
         "threshold_max": 0}]}):
        "THD threshold max 0 %: downlinks keep to 1-100 % (decoding accepts 0)",
    key({"req": ["no_such_thing", "reporting_interval"]}): "unknown query names raise",
    key({"history_type": {"type": 1}}): "40 only inside a history record",
    key({"device_info": 1}): "0xd7 is not in the command table",
}

# Inputs we encode, deliberately not as the vendor does: input key -> our hex.
ENCODE_DIFFERENT: dict[str, str] = {
    # 40 directly after the ed header (the vendor writes it after the measurements)
    key({"history": [{"timestamp": 1770369441, "history_type": {"type": 1},
                      "forward_active_energy1": {"mask1": 0, "mask2": 0,
                                                 "group1_value": 123.456,
                                                 "group2_value": 234.567}}]}):
        "ed01a1b1856940010e0040e2010047940300",
}

INPUTS = ENCODER["inputs"]


@pytest.mark.parametrize("entry", INPUTS, ids=[dumps(e["input"])[:50] for e in INPUTS])
def test_encode_reference_input(entry):
    k = key(entry["input"])
    if k in ENCODE_REFUSED:
        with pytest.raises(EncodeError):
            milesight.encode(entry["input"])
        return
    assert milesight.encode(entry["input"]).hex() == ENCODE_DIFFERENT.get(k, entry["hex"])


def test_encode_coverage():
    keys = {key(e["input"]) for e in INPUTS}
    assert set(ENCODE_REFUSED) | set(ENCODE_DIFFERENT) <= keys
    assert len(INPUTS) - len(ENCODE_REFUSED) - len(ENCODE_DIFFERENT) == 145


# Inputs the vendor encoder rejects but our (wider) table accepts: input key -> our hex.
ENCODE_ACCEPTED: dict[str, str] = {
    key({"temperature": 61}): "01d417",  # measurement, table: -20..100 °C (vendor -20..60)
}


@pytest.mark.parametrize("entry", ENCODER["errors"],
                         ids=[dumps(e["input"])[:50] for e in ENCODER["errors"]])
def test_encode_reference_error(entry):
    k = key(entry["input"])
    if k in ENCODE_ACCEPTED:
        assert milesight.encode(entry["input"]).hex() == ENCODE_ACCEPTED[k]
        return
    with pytest.raises(EncodeError):
        milesight.encode(entry["input"])


def test_encode_error_coverage():
    assert set(ENCODE_ACCEPTED) <= {key(e["input"]) for e in ENCODER["errors"]}
    assert len(ENCODER["errors"]) - len(ENCODE_ACCEPTED) == 26


# Where a reference error states the vendor's range, ours is the same, except for these
# (our field -> our allowed values).
RANGE_DIFFERENT: dict[str, str] = {
    "data_storage_settings.retransmission_interval": "120..1200",  # vendor 30..1200
    "data_storage_settings.retrieval_interval": "120..1200",  # vendor 30..1200
    "daylight_saving_time.daylight_saving_time_offset": "1..120",  # vendor 0..120
    "bluetooth_name.content": "1-13 ASCII bytes",  # vendor: length 1..255 (UTF-8)
    "thdi_alarm_settings[0].threshold_max": "1..100",  # vendor 0..100
    "thdv_alarm_settings[0].threshold_max": "1..100",  # vendor 0..100
    "voltage_unbalance_alarm_settings.threshold_max": "1..100",  # vendor 0..100
}
_RANGE_ERRORS = [e for e in ENCODER["errors"] if " must be between " in e["error"]
                 and key(e["input"]) not in ENCODE_ACCEPTED]


@pytest.mark.parametrize("entry", _RANGE_ERRORS, ids=[e["error"] for e in _RANGE_ERRORS])
def test_encode_error_range_is_the_vendors(entry):
    lo, hi = re.fullmatch(r".* must be between (\S+) and (\S+)", entry["error"]).groups()
    with pytest.raises(EncodeError) as info:
        milesight.encode(entry["input"])
    assert info.value.allowed == RANGE_DIFFERENT.get(info.value.field, f"{lo}..{hi}")


def test_range_differences_are_all_used():
    fields = set()
    for entry in _RANGE_ERRORS:
        with pytest.raises(EncodeError) as info:
            milesight.encode(entry["input"])
        fields.add(info.value.field)
    assert set(RANGE_DIFFERENT) <= fields


def test_bluetooth_enable():
    # the vendor decoder drops the first byte (meaning unknown); its encoder repeats the value
    assert milesight.decode(bytes.fromhex("650701")) == {"ble_enable": 1}
    assert milesight.decode_downlink(bytes.fromhex("650001")) == {"ble_enable": 1}
    assert milesight.encode({"ble_enable": 0}).hex() == "650000"
    with pytest.raises(DecodeError):
        milesight.decode(bytes.fromhex("650102"))  # vendor: {"ble_enable": 2}


_CALIBRATION_100 = {"temperature_calibration_settings": {"enable": 1, "calibration_value": 100}}
_UTF8_NAME = {"bluetooth_name": {"length": 3, "content": "éA"}}


def test_uplink_shaped_objects_use_the_decoding_ranges():
    # next to a measurement a configuration echo is part of an uplink: what a device may report
    assert milesight.encode({"temperature": 25, **_CALIBRATION_100}).hex() == "01c4096b011027"
    assert milesight.encode({"temperature": 25, **_UTF8_NAME}).hex() == "01c4096403c3a941"
    # alone they are downlinks, which keep to the encoding ranges
    for obj, path in ((_CALIBRATION_100, "temperature_calibration_settings.calibration_value"),
                      (_UTF8_NAME, "bluetooth_name.content")):
        with pytest.raises(EncodeError) as info:
            milesight.encode(obj)
        assert info.value.field == path


@pytest.mark.parametrize(("obj", "path"), [
    ({"current_alarm_settings": [{"channel": 0, "enable": 1, "threshold_condition": 2,
                                  "threshold_min": 0, "threshold_max": 4001}]},
     "current_alarm_settings[0].threshold_max"),
    ({"current_alarm": {"channel": 12, "info": {"type": 0}}}, "current_alarm.channel"),
    ({"temperature_alarm_settings": {"enable": 1, "threshold_condition": 2,
                                     "threshold_min": 0, "threshold_max": 10.005}},
     "temperature_alarm_settings.threshold_max"),
    ({"power_factor": {"mask1": 1, "mask2": 0, "mask3": 0, "mask4": 0,
                       "group1": {"chan1": 1, "chan2": 1.5, "chan3": 0},
                       "group2_value": 1, "group3_value": 1, "group4_value": 1}},
     "power_factor.group1.chan2"),
    ({"reporting_interval": {"unit": 1}}, "reporting_interval.minutes_of_time"),
    ({"reporting_interval": {"unit": 2, "minutes_of_time": 5}}, "reporting_interval.unit"),
    ({"time_zone": 481}, "time_zone"),
    ({"clear_data": {"type": 7}}, "clear_data.type"),
    ({"reboot": 0}, "reboot"),
    ({"rebot": 1}, "rebot"),
    ({"reboot": 1, "temperature": 25}, "reboot"),
    ({"bluetooth_name": {"length": 4, "content": "CTH01"}}, "bluetooth_name.length"),
    ({"ble_enable": 2}, "ble_enable"),
    ({"temperature": 25, "temperature_calibration_settings": {
        "enable": 1, "calibration_value": 120.01}},
     "temperature_calibration_settings.calibration_value"),
    ({"history": [{"timestamp": 1}]}, "history[0]"),
])
def test_encode_errors_name_the_vendor_path(obj, path):
    with pytest.raises(EncodeError) as info:
        milesight.encode(obj)
    assert info.value.field == path


def test_encode_error_ranges_in_vendor_units():
    with pytest.raises(EncodeError) as info:
        milesight.encode({"voltage_alarm_settings": [{
            "channel": 3, "enable": 1, "threshold_condition": 2, "threshold_min": 0,
            "threshold_max": 10}]})
    assert (info.value.field, info.value.value, info.value.allowed) == (
        "voltage_alarm_settings[0].channel", 3, "0..2")


# --- properties --------------------------------------------------------------------------------

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(uplinks(Dialect.FIRMWARE))
@PROPS
def test_any_valid_uplink_renders(frame):
    live, records = frame
    payload = encode_uplink(Uplink(dialect="firmware", items=live, history=records))
    out = milesight.decode(payload)
    assert isinstance(out, dict)
    json.dumps(out)


# Items whose vendor form is decoder output only (the vendor encoder has no key for it).
_DECODER_ONLY = {"sequence_number_check", "order_check", "command_reply", "config_query",
                 "config_request", "query_all_config", "tsl_version", "version"}


def _as_vendor_sends(item: Item) -> Item:
    """The item `encode` builds from the vendor form of `item`: `ble_enable` does not show
    65's first byte, and the vendor encoder writes the enable value there too."""
    if item.command_name == "bluetooth_enable":
        return msgspec.structs.replace(item, mode=int(item.enabled))  # type: ignore[attr-defined]
    return item


@given(items(Dialect.FIRMWARE, uplink=True,
             exclude=frozenset({"history_header", "monthly_kind"})))
@PROPS
def test_uplink_item_round_trips_through_the_vendor_model(item):
    payload = encode_uplink([item])
    out = milesight.decode(payload)
    json.dumps(out)
    if item.command_name not in _DECODER_ONLY:
        assert milesight.encode(out) == encode_uplink([_as_vendor_sends(item)])


@given(items(Dialect.FIRMWARE, uplink=False))
@PROPS
def test_downlink_item_round_trips_through_the_vendor_model(item):
    payload = encode_downlink(item)
    out = milesight.decode_downlink(payload)
    json.dumps(out)
    if item.command_name not in _DECODER_ONLY:
        assert milesight.encode(out) == encode_downlink(_as_vendor_sends(item))
