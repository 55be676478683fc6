"""THE command table: the single source of truth for the CTH01 wire format.

Owns: every command id (and sub-id) the device or its network server may send, with its
direction, dialects, and fields (width, signedness, scale, unit, range, enums, defaults,
sentinels). The decoder, the encoder, validation, the typed item classes, `docs/protocol.md`
and the property tests are all derived from `COMMANDS`. An erratum or a new command is a
change here and nowhere else.

Sources: user guide v1.0 chapters 4-5 (the *guide* dialect) and the vendor's firmware codec
(the *firmware* dialect); `docs/errata.md` lists every place they disagree and what we chose.
Ranges where the sources disagree follow wire-format.md E.6 (their intersection).
Channels and voltage phases are presented 1-based (people count channel 1-12, L1-L3); the
wire counts from 0.
"""

from __future__ import annotations

from types import MappingProxyType

from .schema import (
    FIRMWARE_ONLY,
    GUIDE_ONLY,
    Command,
    Direction,
    Echo,
    Flags,
    Grouped,
    Hex,
    Nibbles,
    Num,
    Text,
)

UP, DOWN, BOTH = Direction.UPLINK, Direction.DOWNLINK, Direction.BOTH


def _enum(**names: int) -> MappingProxyType:
    return MappingProxyType({v: k for k, v in names.items()})


BOOL = MappingProxyType({0: False, 1: True})

# --- enumerations ------------------------------------------------------------------------------

ALARM_TYPES = MappingProxyType({
    0x00: "collection_error",
    0x01: "below_range",
    0x02: "above_range",
    0x03: "no_data",
    0x04: "above_range_cleared",
    0x10: "below_threshold_cleared",
    0x11: "below_threshold",
    0x12: "above_threshold_cleared",
    0x13: "above_threshold",
    0x14: "within_threshold_cleared",
    0x15: "within_threshold",
    0x16: "outside_threshold_cleared",
    0x17: "outside_threshold",
})
THRESHOLD_ALARMS = frozenset(range(0x10, 0x18))


def _alarm_types(*codes: int) -> MappingProxyType:
    return MappingProxyType({c: ALARM_TYPES[c] for c in codes})


CONDITIONS = _enum(disabled=0, below=1, above=2, within=3, outside=4)
ABOVE_ONLY = _enum(disabled=0, above=2)
HISTORY_TYPES = _enum(alarm=0, periodic=1, monthly_energy=2, monthly_extremes=3)
HISTORY_MODES = _enum(target_time=0, historical=1, monthly=2)
MONTHLY_KINDS = _enum(energy=1, minimum=2, maximum=3)
CT_RANGES = MappingProxyType({0: "none", 1: "100A", 2: "300A", 3: "500A", 4: "1000A", 5: "4000A"})
REPLY_RESULTS_FIRMWARE = _enum(
    success=0, unknown_command=1, wrong_order=2, wrong_password=3, read_parameter_error=4,
    write_parameter_error=5, read_error=6, write_error=7, read_apply_error=8,
    write_apply_error=9,
)
# The guide names 5 "parameter error" and 7 "execution error"; we use the firmware's names for
# the same codes so that a reply reads the same in both dialects.
REPLY_RESULTS_GUIDE = _enum(success=0, write_parameter_error=5, write_error=7,
                            association_error=10)
# UTC offsets (minutes) the firmware's time-zone list offers.
TIME_ZONES_MIN = frozenset({
    -720, -660, -600, -570, -540, -480, -420, -360, -300, -240, -210, -180, -120, -60, 0, 60,
    120, 180, 210, 240, 270, 300, 330, 345, 360, 390, 420, 480, 540, 570, 600, 630, 660, 720,
    765, 780, 840,
})
REPORT_PARAMETERS = (
    "temperature", "current", "voltage", "power_factor", "active_power", "reactive_power",
    "apparent_power", "imported_active_energy", "exported_active_energy",
    "imported_reactive_energy", "exported_reactive_energy", "apparent_energy", "thdi", "thdv",
    "voltage_unbalance", None,
)

# --- sentinels (firmware "no data / error" values, A.6) --------------------------------------
NA_U8, NA_U16, NA_U24, NA_U32, NA_S32 = 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF, -1

# --- reusable fields ---------------------------------------------------------------------------


def _channel(last: int, doc: str = "") -> Num:
    return Num("channel", "u8", base=1, range=(1, last), doc=doc or f"channel 1-{last}")


def _enabled(default: bool = False) -> Num:
    return Num("enabled", "u8", enum=BOOL, default=default)


def _grouped(cid: int, name: str, title: str, field: str, wire: str, unit: str,
             sentinel: int, groups: tuple[str, ...]) -> Command:
    return Command(cid, name, title, UP, (Grouped(field, wire, groups, unit=unit,
                                                  sentinel=sentinel),),
                   kind="measurement", unique=True)


def _energy_and_power() -> list[Command]:
    out = []
    spec = [
        (0x08, "active_power", "Active power", "active_power_w", "s32", "W", NA_S32),
        (0x0A, "reactive_power", "Reactive power", "reactive_power_var", "s32", "var", NA_S32),
        (0x0C, "apparent_power", "Apparent power", "apparent_power_va", "s32", "VA", NA_S32),
        (0x0E, "imported_active_energy", "Imported active energy", "energy_wh", "u32", "Wh",
         NA_U32),
        (0x10, "exported_active_energy", "Exported active energy", "energy_wh", "u32", "Wh",
         NA_U32),
        (0x12, "imported_reactive_energy", "Imported reactive energy", "energy_varh", "u32",
         "varh", NA_U32),
        (0x14, "exported_reactive_energy", "Exported reactive energy", "energy_varh", "u32",
         "varh", NA_U32),
        (0x16, "apparent_energy", "Apparent energy", "energy_vah", "u32", "VAh", NA_U32),
    ]
    for cid, name, title, fname, wire, unit, na in spec:
        out.append(_grouped(cid, f"{name}_ab", f"{title}, groups a+b", fname, wire, unit, na,
                            ("a", "b")))
        out.append(_grouped(cid + 1, f"{name}_cd", f"{title}, groups c+d", fname, wire, unit, na,
                            ("c", "d")))
    return out


def _alarm(cid: int, name: str, title: str, codes: tuple[int, ...], value: Num | None,
           value_types: frozenset[int] | None, channel: Num | None, dialects: frozenset,
           examples: tuple[str, ...] = ()) -> Command:
    fields: list = [channel] if channel else []
    fields.append(Num("alarm", "u8", enum=_alarm_types(*codes)))
    if value is not None:
        fields.append(value if value_types is None else _when(value, value_types))
    return Command(cid, name, title, UP, tuple(fields), dialects=dialects, kind="alarm",
                   examples=examples)


def _when(num: Num, raw_types: frozenset[int]) -> Num:
    return Num(num.name, num.wire, scale=num.scale, unit=num.unit, sentinel=num.sentinel,
               when=("alarm", raw_types), doc=num.doc)


def _threshold(cid: int, name: str, title: str, channel: Num | None, unit_field: str,
               wire: str, scale: int, unit: str, rng: tuple[float, float],
               conditions: MappingProxyType, min_rng: tuple[float, float] | None = None,
               max_default: float = 0, example: tuple[str, ...] = (),
               accepts: tuple[float, float] | None = None) -> Command:
    fields = [channel] if channel else []
    fields += [
        _enabled(),
        Num("condition", "u8", enum=conditions,
            default="above" if conditions is ABOVE_ONLY else "disabled"),
        Num(f"min_{unit_field}", wire, scale=scale, unit=unit, range=min_rng or rng, default=0,
            accepts=accepts, doc="lower threshold (conditions below, within, outside)"),
        Num(f"max_{unit_field}", wire, scale=scale, unit=unit, range=rng, default=max_default,
            accepts=accepts, doc="upper threshold (conditions above, within, outside)"),
    ]
    return Command(cid, name, title, BOTH, tuple(fields), kind="threshold", reply="ef",
                   examples=example)


def _current_interface(cid: int, group: str, first: int, examples: tuple[str, ...] = ()
                       ) -> Command:
    fields: list = [Num("circuit", "u8", enum=_enum(single_phase=0, three_phase=1),
                        default="single_phase",
                        doc="0 single-phase, 1 three-phase (opposite polarity to the 07-17 masks)")]
    for k in range(3):
        fields.append(Num(f"direction_{k + 1}", "u8", enum=_enum(forward=0, reverse=1),
                          default="forward", doc=f"channel {first + k}"))
        fields.append(Num(f"ct_range_{k + 1}", "u16", enum=CT_RANGES, default="none",
                          doc=f"channel {first + k}"))
    return Command(cid, f"current_interface_{group}", f"Current interface, group {group}", BOTH,
                   tuple(fields), reply="ef", examples=examples,
                   doc=f"Circuit type and the CT of channels {first}-{first + 2}.")


def _dst_edge(edge: str) -> tuple:
    return (
        Num(f"{edge}_month", "u8", range=(1, 12), default=1),
        Nibbles(Num(f"{edge}_week", "u8", range=(1, 5), default=1, doc="5 = last"),
                Num(f"{edge}_weekday", "u8", range=(1, 7), default=1, doc="1 Monday..7 Sunday")),
        Num(f"{edge}_minute", "u16", unit="min", range=(0, 1439), default=0,
            doc="minute of the local day"),
    )


_CURRENT_A_FW = Num("current_a", "u24", scale=100, unit="A", range=(0, 4000), sentinel=NA_U24,
                    measured=True)
_CURRENT_A_GUIDE = Num("current_a", "u16", scale=100, unit="A", sentinel=NA_U16, measured=True)
_VOLTAGE_V = Num("voltage_v", "u16", scale=100, unit="V", range=(0, 500), sentinel=NA_U16,
                 measured=True)
_TEMPERATURE_C = Num("temperature_c", "s16", scale=100, unit="°C", range=(-20, 100),
                     measured=True)
_PCT = dict(wire="u16", scale=100, unit="%", range=(0, 100), sentinel=NA_U16, measured=True)

# Alarm types after which the firmware sends a value (B.4).
_T_VALUE = THRESHOLD_ALARMS
_CV_VALUE = THRESHOLD_ALARMS | {0x01, 0x02, 0x04}
_THD_VALUE = frozenset({0x12, 0x13})
_T_CODES_FW = (0x00, 0x01, 0x02, 0x03, *range(0x10, 0x18))
_CV_CODES_FW = (0x00, 0x01, 0x02, 0x03, 0x04, *range(0x10, 0x18))
_CV_CODES_GUIDE = (0x00, 0x02, 0x04, *range(0x10, 0x18))


def _alarms() -> list[Command]:
    fw, gd = FIRMWARE_ONLY, GUIDE_ONLY
    thdi = Num("thdi_pct", "u16", scale=100, unit="%", sentinel=NA_U16)
    thdv = Num("thdv_pct", "u16", scale=100, unit="%", sentinel=NA_U16)
    unb = Num("unbalance_pct", "u16", scale=100, unit="%", sentinel=NA_U16)
    temp = Num("temperature_c", "s16", scale=100, unit="°C")
    cur_fw = Num("current_a", "u24", scale=100, unit="A", sentinel=NA_U24)
    cur_gd = Num("current_a", "u16", scale=100, unit="A", sentinel=NA_U16)
    volt = Num("voltage_v", "u16", scale=100, unit="V", sentinel=NA_U16)
    ch12, ch3 = _channel(12), _channel(3, "voltage phase L1-L3")
    return [
        _alarm(0x30, "temperature_alarm", "Temperature alarm", _T_CODES_FW, temp, _T_VALUE,
               None, fw, ("30139e0a", "3000")),
        _alarm(0x30, "temperature_alarm", "Temperature alarm", (0x00, 0x03, *range(0x10, 0x18)),
               temp, None, None, gd),
        _alarm(0x31, "current_alarm", "Current alarm", _CV_CODES_FW, cur_fw, _CV_VALUE, ch12, fw,
               ("3104023c2800", "310300")),
        _alarm(0x31, "current_alarm", "Current alarm", _CV_CODES_GUIDE, cur_gd, None, ch12, gd,
               ("3104023c28",)),
        _alarm(0x32, "voltage_alarm", "Voltage alarm", _CV_CODES_FW, volt, _CV_VALUE, ch3, fw),
        _alarm(0x32, "voltage_alarm", "Voltage alarm", _CV_CODES_GUIDE, volt, None, ch3, gd),
        _alarm(0x33, "thdi_alarm", "Current THD alarm", (0x00, 0x12, 0x13), thdi, _THD_VALUE,
               ch12, fw),
        _alarm(0x33, "thdi_alarm", "Current THD alarm", (0x00, 0x12, 0x13), thdi, None, ch12, gd),
        _alarm(0x34, "thdv_alarm", "Voltage THD alarm", (0x00, 0x12, 0x13), thdv, _THD_VALUE,
               ch3, fw),
        _alarm(0x34, "thdv_alarm", "Voltage THD alarm", (0x00, 0x13), thdv, None, ch3, gd),
        _alarm(0x35, "voltage_unbalance_alarm", "Voltage unbalance alarm", (0x00, 0x12, 0x13),
               unb, _THD_VALUE, None, fw),
        _alarm(0x35, "voltage_unbalance_alarm", "Voltage unbalance alarm", (0x00, 0x12, 0x13),
               unb, None, None, gd),
        Command(0x36, "power_failure_alarm", "Power-failure alarm", UP, kind="alarm",
                doc="Sent twice when the 12 V supply collapses.", examples=("36",)),
    ]


def _reply(results: MappingProxyType, dialects: frozenset) -> Command:
    return Command(0xEF, "command_reply", "Command reply", UP, (
        Nibbles(Num("result", "u8", enum=results, default="success"),
                Num("length", "u8", range=(1, 15))),
        Echo("echo", "length", doc="identifier of the acknowledged command"),
    ), dialects=dialects, kind="reply")


COMMANDS: tuple[Command, ...] = (
    # --- service, device information and framing ------------------------------------------
    Command(0xFF, "sequence_number_check", "Sequence-number check", BOTH,
            (Num("sequence_number", "u8"),), dialects=FIRMWARE_ONLY, kind="service"),
    Command(0xFE, "order_check", "Order check", BOTH, (Num("order", "u8"),),
            dialects=FIRMWARE_ONLY, kind="service",
            doc="The vendor decoder does not consume the byte; we read it (wire-format F6)."),
    _reply(REPLY_RESULTS_FIRMWARE, FIRMWARE_ONLY),
    _reply(REPLY_RESULTS_GUIDE, GUIDE_ONLY),
    Command(0xEF, "config_query", "Configuration query", DOWN, (
        Nibbles(Num("reserved", "u8", range=(0, 0), default=0),
                Num("length", "u8", range=(1, 15))),
        Echo("identifier", "length", doc="identifier of the configuration item to report"),
    ), dialects=FIRMWARE_ONLY, kind="query", reply="the queried item"),
    Command(0xEE, "config_request", "Device asks for its configuration", UP, kind="info",
            doc="Part of the basic-information burst after a reset.", unique=True),
    Command(0xEE, "query_all_config", "Report all configuration", DOWN,
            dialects=FIRMWARE_ONLY, kind="query", reply="every configuration item"),
    Command(0xED, "history_header", "History record header", UP, (
        Num("mode", "u8", enum=HISTORY_MODES),
        Num("timestamp", "u32", time=True, unit="s"),
    ), kind="history", doc="Starts a history record; the items up to the next ed belong to it.",
            examples=("ed01a1b1856901360a",)),
    Command(0x40, "monthly_kind", "Monthly record kind", UP,
            (Num("kind", "u8", enum=MONTHLY_KINDS),), kind="history",
            doc="Only directly after an ed header."),
    Command(0xCF, "lorawan_version", "LoRaWAN version", BOTH, (
        Num("version", "u8", enum=MappingProxyType(
            {1: "1.0.2", 2: "1.0.3", 3: "1.0.3-alt", 4: "1.0.4"}), default="1.0.3"),
    ), sub=0xD8, dialects=FIRMWARE_ONLY, reply="ef", unique=True),
    Command(0xCF, "lorawan_class", "LoRaWAN class (work mode)", UP, (
        Num("lorawan_class", "u8", enum=_enum(A=0, B=1, C=2, C_to_B=3)),
    ), sub=0x00, dialects=GUIDE_ONLY, kind="info", unique=True),
    Command(0xDF, "tsl_version", "Protocol (TSL) version", UP,
            (Num("major", "u8"), Num("minor", "u8")), kind="info", unique=True,
            examples=("df0100", "df0102")),
    Command(0xDE, "product_name", "Product name", UP, (Text("product_name", size=32),),
            dialects=FIRMWARE_ONLY, kind="info", unique=True),
    Command(0xDD, "part_number", "Part number", UP, (Text("part_number", size=32),),
            dialects=FIRMWARE_ONLY, kind="info", unique=True),
    Command(0xDB, "serial_number", "Serial number", UP, (Hex("serial_number", 8),),
            kind="info", unique=True),
    Command(0xDA, "version", "Hardware and firmware version", UP, (
        Num("hardware_major", "u8"), Num("hardware_minor", "u8"),
        Num("firmware_major", "u8"), Num("firmware_minor", "u8"),
        Num("firmware_release", "u8"), Num("firmware_alpha", "u8"),
        Num("firmware_unit_test", "u8"), Num("firmware_test", "u8"),
    ), dialects=FIRMWARE_ONLY, kind="info", unique=True),
    Command(0xDA, "version", "Hardware and firmware version", UP, (
        Num("hardware_major", "u8"), Num("hardware_minor", "u8"),
        Num("firmware_major", "u8"), Num("firmware_minor", "u8"),
        Num("firmware_release", "u8", range=(0, 0)), Num("firmware_alpha", "u8", range=(0, 0)),
        Num("firmware_unit_test", "u8", range=(0, 0)), Num("firmware_test", "u8", range=(0, 0)),
    ), dialects=GUIDE_ONLY, kind="info", unique=True),
    Command(0xD9, "oem_id", "OEM id", UP, (Hex("oem_id", 2),), kind="info", unique=True),
    Command(0xD8, "frequency_band", "Frequency band", UP, (Text("frequency_band", size=16),),
            dialects=FIRMWARE_ONLY, kind="info", unique=True),
    Command(0xC8, "device_status", "Device status", UP,
            (Num("status", "u8", enum=_enum(off=0, on=1)),), kind="info", unique=True),
    # --- periodic measurements --------------------------------------------------------------
    Command(0x01, "temperature", "Wire temperature", UP, (_TEMPERATURE_C,),
            kind="measurement", unique=True),
    Command(0x02, "voltage_unbalance", "Three-phase voltage unbalance", UP,
            (Num("unbalance_pct", **_PCT),), kind="measurement", unique=True),
    Command(0x03, "thdi", "Current THD per channel", UP,
            (Num("thdi_pct", count=12, **_PCT),), kind="measurement", unique=True),
    Command(0x04, "thdv", "Voltage THD per phase", UP,
            (Num("thdv_pct", count=3, **_PCT),), kind="measurement", unique=True),
    Command(0x05, "current", "RMS current per channel", UP,
            (Num("current_a", "u24", count=12, scale=100, unit="A", range=(0, 4000),
                 sentinel=NA_U24, measured=True),),
            dialects=FIRMWARE_ONLY, kind="measurement", unique=True),
    Command(0x05, "current", "RMS current per channel", UP,
            (Num("current_a", "u16", count=12, scale=100, unit="A", sentinel=NA_U16,
                 measured=True),),
            dialects=GUIDE_ONLY, kind="measurement", unique=True),
    Command(0x06, "voltage", "RMS voltage per phase", UP,
            (Num("voltage_v", "u16", count=3, scale=100, unit="V", range=(0, 500),
                 sentinel=NA_U16, measured=True),), kind="measurement", unique=True),
    Command(0x07, "power_factor", "Power factor", UP,
            (Grouped("power_factor_pct", "u8", ("a", "b", "c", "d"), unit="%",
                     range=(0, 100), sentinel=NA_U8),), kind="measurement", unique=True),
    *_energy_and_power(),
    # --- alarms -----------------------------------------------------------------------------
    *_alarms(),
    # --- configuration: set by downlink, reported back in query answers -------------------
    Command(0x60, "collection_interval", "Collection interval", BOTH,
            (Num("minutes", "u16", unit="min", range=(1, 1440), default=1),), sub=0x01,
            dialects=FIRMWARE_ONLY, reply="ef"),
    Command(0x60, "collection_interval_seconds", "Collection interval (seconds)", BOTH,
            (Num("seconds", "u16", unit="s", range=(10, 64800), default=30),), sub=0x00,
            dialects=FIRMWARE_ONLY, reply="ef"),
    Command(0x61, "reporting_interval", "Reporting interval", BOTH,
            (Num("minutes", "u16", unit="min", range=(1, 1440), default=10),), sub=0x01,
            reply="ef", examples=("61011400", "61010a00")),
    Command(0x61, "reporting_interval_seconds", "Reporting interval (seconds)", BOTH,
            (Num("seconds", "u16", unit="s", range=(10, 64800), default=600),), sub=0x00,
            dialects=FIRMWARE_ONLY, reply="ef"),
    Command(0x63, "temperature_unit", "Temperature unit", BOTH,
            (Num("unit", "u8", enum=_enum(celsius=0, fahrenheit=1), default="celsius"),),
            dialects=FIRMWARE_ONLY, reply="ef"),
    Command(0x64, "bluetooth_name", "Bluetooth name", BOTH,
            (Text("name", max_length=13, ascii_only=True),), reply="ef",
            examples=("64094d696c657369676874",)),
    Command(0x65, "bluetooth_enable", "Bluetooth on/off", BOTH, (
        Num("mode", "u8", doc="meaning unknown: the vendor codec ignores it on decode and "
                              "writes the enable value here too"),
        Num("enabled", "u8", enum=BOOL, default=True),
    ), dialects=FIRMWARE_ONLY, reply="ef", doc="Known from the vendor codec only."),
    Command(0x66, "voltage_interface", "Voltage interface", BOTH,
            (Num("wiring", "u8", enum=_enum(**{"3P4W": 0, "3P3W": 1}), default="3P4W",
                 doc="guide labels: 00 single-phase, 01 three-phase"),), reply="ef"),
    _current_interface(0x67, "a", 1),
    _current_interface(0x68, "b", 4, ("6801010400010200000100",)),
    _current_interface(0x69, "c", 7, ("6900010000010100010000",)),
    _current_interface(0x6A, "d", 10),
    Command(0x6B, "temperature_calibration", "Temperature calibration", BOTH, (
        _enabled(),
        # guide -120..120 °C, vendor encoder -80..80 °C: send the intersection, accept the union
        Num("offset_c", "s16", scale=100, unit="°C", range=(-80, 80), accepts=(-120, 120),
            default=0),
    ), reply="ef", examples=("6b01e2ff",)),
    Command(0x6C, "report_parameters", "Reported parameters", BOTH,
            (Flags("parameters", "u16", REPORT_PARAMETERS,
                   default=("temperature", "power_factor", "active_power",
                            "imported_active_energy")),), reply="ef"),
    Command(0x6D, "monthly_summary_time", "Monthly summary time", BOTH, (
        Num("day", "u8", range=(1, 28), default=1),
        Num("hour", "u8", range=(0, 23), default=0),
        Num("minute", "u8", range=(0, 59), default=0),
    ), reply="ef", examples=("6d0f0900",)),
    # guide -20..100 °C, vendor encoder -20..60 °C: send the intersection, accept the union
    _threshold(0x76, "temperature_threshold", "Temperature threshold", None, "c", "s16", 100,
               "°C", (-20, 60), CONDITIONS, accepts=(-20, 100),
               example=("7601020000c409", "760103e803b80b")),
    _threshold(0x77, "current_threshold", "Current threshold", _channel(12), "a", "s16", 1,
               "A", (0, 4000), CONDITIONS,
               example=("7704010200007803", "7708010301002c01", "770a0104de009a02")),
    _threshold(0x78, "voltage_threshold", "Voltage threshold", _channel(3), "v", "s16", 1,
               "V", (0, 500), CONDITIONS),
    _threshold(0x79, "thdi_threshold", "Current THD threshold", _channel(12), "pct", "u16", 1,
               "%", (1, 100), ABOVE_ONLY, min_rng=(0, 100), max_default=8, accepts=(0, 100)),
    _threshold(0x7A, "thdv_threshold", "Voltage THD threshold", _channel(3), "pct", "u16", 1,
               "%", (1, 100), ABOVE_ONLY, min_rng=(0, 100), max_default=5, accepts=(0, 100)),
    _threshold(0x7B, "voltage_unbalance_threshold", "Voltage unbalance threshold", None, "pct",
               "u16", 1, "%", (1, 100), ABOVE_ONLY, min_rng=(0, 100), max_default=3,
               accepts=(0, 100)),
    Command(0x7C, "alarm_settings", "Global alarm settings", BOTH, (
        Num("repeat_interval_min", "u16", unit="min", range=(1, 1440), default=5),
        # guide 1..1000, vendor encoder 1..100: send the intersection, accept the union
        Num("repeat_count", "u16", range=(1, 100), accepts=(1, 1000), default=3),
        Num("report_cleared", "u8", enum=BOOL, default=False),
    ), reply="ef", examples=("7c0a00020000",)),
    Command(0xC5, "data_storage", "Data storage", BOTH, (_enabled(),), sub=0x00, reply="ef"),
    Command(0xC5, "retransmission", "Data retransmission", BOTH, (_enabled(),), sub=0x01,
            reply="ef"),
    Command(0xC5, "retransmission_interval", "Retransmission interval", BOTH,
            (Num("seconds", "u16", unit="s", range=(120, 1200), accepts=(30, 1200), default=600),),
            sub=0x02,
            reply="ef"),
    Command(0xC5, "retrieval_interval", "History retrieval interval", BOTH,
            (Num("seconds", "u16", unit="s", range=(120, 1200), accepts=(30, 1200), default=120),),
            sub=0x03,
            reply="ef"),
    Command(0xC6, "daylight_saving_time", "Daylight saving time", BOTH, (
        _enabled(), Num("bias_min", "u8", unit="min", range=(1, 120), accepts=(0, 120),
                        default=60),
        *_dst_edge("start"), *_dst_edge("end"),
    ), reply="ef", examples=("c6013c03573c000a573c00",)),
    Command(0xC7, "time_zone", "Time zone", BOTH,
            (Num("offset_min", "s16", unit="min", choices=TIME_ZONES_MIN, default=0,
                 doc="minutes east of UTC"),), reply="ef", examples=("c710ff",)),
    Command(0xC8, "device_status", "Device status", DOWN,
            (Num("status", "u8", enum=_enum(off=0, on=1)),), dialects=FIRMWARE_ONLY,
            kind="action", doc="The vendor encoder can write it; the effect is undocumented."),
    # --- actions and queries (downlink only) ------------------------------------------------
    Command(0xBE, "reboot", "Reboot", DOWN, kind="action", reply="ef", examples=("be",)),
    Command(0xBF, "factory_reset", "Reset to factory settings", DOWN, kind="action",
            dialects=FIRMWARE_ONLY),
    Command(0xB6, "rejoin", "Rejoin the network", DOWN, kind="action"),
    Command(0xB8, "sync_time", "Synchronise time from the network server", DOWN,
            kind="action", doc="The device answers with a LoRaWAN DeviceTimeReq, not a frame."),
    Command(0xB9, "enquire_periodic_report", "Enquire periodic report", DOWN, kind="query",
            reply="61 (guide example 61010a00)", examples=("b9",)),
    Command(0xB7, "set_time", "Set device time", DOWN,
            (Num("time", "u32", time=True, unit="s"),), dialects=FIRMWARE_ONLY, kind="action",
            reply="ef"),
    Command(0x57, "query_storage_settings", "Query storage settings", DOWN,
            dialects=FIRMWARE_ONLY, kind="query", reply="c5 items"),
    Command(0x58, "threshold_query", "Query threshold configuration", DOWN,
            (Num("threshold", "u8", enum=_enum(temperature=0, current=1, voltage=2, thdi=3,
                                                thdv=4, voltage_unbalance=5)),),
            dialects=GUIDE_ONLY, kind="query", reply="76-7b items", examples=("5800",)),
    Command(0x5B, "history_query_point", "Fetch the record nearest to an instant", DOWN, (
        Num("record_type", "u8", enum=HISTORY_TYPES), Num("time", "u32", time=True, unit="s"),
    ), kind="query", reply="one ed record"),
    Command(0x5C, "history_query_range", "Fetch records in a time range", DOWN, (
        Num("record_type", "u8", enum=HISTORY_TYPES),
        Num("start", "u32", time=True, unit="s"), Num("end", "u32", time=True, unit="s"),
    ), kind="query", reply="ed records paced by the retrieval interval (at most 300)",
            examples=("5c0100847b6980048a69",)),
    Command(0x5D, "history_query_stop", "Stop a running history retrieval", DOWN,
            (Num("record_type", "u8", enum=HISTORY_TYPES),), kind="query", reply="ef"),
    Command(0x5E, "clear_history", "Clear stored history", DOWN,
            (Num("record_type", "u8", enum=HISTORY_TYPES),), kind="action", reply="ef"),
    Command(0x5F, "clear_energy", "Clear cumulative energy", DOWN,
            (Num("channel", "u8", range=(0, 12), doc="0 = all channels, 1-12 = that channel"),),
            kind="action", reply="ef"),
)
