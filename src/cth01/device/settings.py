"""Who a virtual CTH01 is and how it is configured.

Owns: the device's identity (serial number, DevEUI, versions, default Bluetooth name), its
LoRaWAN settings (the ToolBox "LoRaWAN" page) and its configuration: every setting the device
reports or accepts by downlink, held as the protocol's own configuration items, keyed by the
identifier the device echoes in its `ef` replies ("61", "c502", "7704" ...). Defaults and
ranges come from the command table (`cth01.protocol.table`), so a setting is described once.
Also owns the device's own consistency rules (the Rogowski group rule, min <= max thresholds,
alarm interval shorter than the reporting interval) and configuration templates (JSON).

Must never: encode bytes by hand, read a clock, or know about scheduling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from cth01.protocol import COMMANDS, Item, encode_uplink, item_class
from cth01.protocol.commands import ECHO_WITH_SUB_ID
from cth01.protocol.commands import echo_identifier as identifier
from cth01.protocol.errors import EncodeError
from cth01.protocol.schema import Dialect, Echo, Flags, Nibbles, Num, Text

MODEL = "CTH01"
DEFAULT_PASSWORD = "123456"
DEFAULT_APP_EUI = "24e124c0002a0001"
APPLICATION_PORT = 85
GROUPS = ("a", "b", "c", "d")

# Maximum application payload (bytes) per region and data rate (LoRaWAN RP002-1.0.3, no
# repeater, FOpts empty). The firmware splits a report that does not fit (firmware.py).
MAX_PAYLOAD: dict[str, tuple[int, ...]] = {
    "EU868": (51, 51, 51, 115, 222, 222, 222, 222),
    "IN865": (51, 51, 51, 115, 222, 222, 222, 222),
    "RU864": (51, 51, 51, 115, 222, 222, 222, 222),
    "KR920": (51, 51, 51, 115, 222, 222),
    "AS923": (51, 51, 115, 222, 222, 222, 222, 222),
    "CN470": (51, 51, 51, 115, 222, 222),
    "US915": (11, 53, 125, 242, 242),
    "AU915": (51, 51, 51, 115, 222, 222, 222),
}

# The settings a CTH01 holds, in the order it reports them (query-all answers, templates).
_PER_CHANNEL = {"current_threshold": 12, "voltage_threshold": 3, "thdi_threshold": 12,
                "thdv_threshold": 3}
SETTING_COMMANDS: tuple[str, ...] = (
    "reporting_interval", "report_parameters", "data_storage", "retransmission",
    "retransmission_interval", "retrieval_interval", "time_zone", "daylight_saving_time",
    "monthly_summary_time", "bluetooth_name", "bluetooth_enable", "voltage_interface",
    "current_interface_a", "current_interface_b", "current_interface_c", "current_interface_d",
    "temperature_calibration", "temperature_threshold", "current_threshold",
    "voltage_threshold", "thdi_threshold", "thdv_threshold", "voltage_unbalance_threshold",
    "alarm_settings", "lorawan_version",
)
# Item names that replace one another under the same identifier (61 in minutes or seconds).
_ALIASES = {"reporting_interval_seconds": "reporting_interval"}

_COMMANDS = {c.name: c for c in COMMANDS
             if Dialect.FIRMWARE in c.dialects and c.is_downlink}
_ALL_COMMANDS = {**{c.name: c for c in COMMANDS if c.is_downlink}, **_COMMANDS}
#: Command ids whose ef echo is two bytes (id + sub-id or channel).
TWO_BYTE_ECHO_IDS = frozenset((*ECHO_WITH_SUB_ID, *(_COMMANDS[n].id for n in _PER_CHANNEL)))


class SettingError(ValueError):
    """A setting the device refuses (the firmware answers it with a parameter error).

    `setting` is the identifier or name, `reason` says why."""

    def __init__(self, reason: str, *, setting: str | None = None) -> None:
        self.reason = reason
        self.setting = setting
        super().__init__(f"{setting}: {reason}" if setting else reason)


def default_item(command: str, /, **values: Any) -> Item:
    """A configuration item with the table's defaults, overridden by `values`."""
    cmd = _COMMANDS[command]
    kw: dict[str, Any] = {}
    for f in cmd.fields:
        for spec in (f.high, f.low) if isinstance(f, Nibbles) else (f,):
            if isinstance(spec, Echo):
                continue
            if isinstance(spec, Num | Flags) and spec.default is not None:
                kw[spec.name] = spec.default
            elif isinstance(spec, Num) and spec.base:
                kw[spec.name] = spec.base
            elif isinstance(spec, Num) and spec.range is not None:
                kw[spec.name] = spec.range[0]
            elif isinstance(spec, Num):
                kw[spec.name] = 0
            elif isinstance(spec, Text):
                kw[spec.name] = MODEL
    kw.update(values)
    return item_class(command)(**kw)


@dataclass(frozen=True)
class Identity:
    """What is printed on the label and burnt into the device."""

    serial_number: str  # 16 hex digits
    dev_eui: str  # 16 hex digits
    app_eui: str = DEFAULT_APP_EUI
    hardware_version: tuple[int, int] = (1, 0)
    firmware_version: tuple[int, int] = (1, 1)
    tsl_version: tuple[int, int] = (1, 0)
    oem_id: str = "0000"

    @classmethod
    def numbered(cls, n: int) -> Identity:
        """A plausible identity for the n-th virtual device (0 <= n < 16**7): serial
        6527nnnnnnn00000 (n in digits 5-11, so the default Bluetooth names differ) and DevEUI
        24e124 + digits 5-14 of the serial (Milesight's OUI)."""
        if not 0 <= n < 16 ** 7:
            raise ValueError(f"device number must be 0..{16 ** 7 - 1}, got {n}")
        sn = f"6527{n:07x}00000"
        return cls(serial_number=sn, dev_eui=f"24e124{sn[4:14]}")

    @property
    def default_bluetooth_name(self) -> str:
        """Guide ch. 4: model + "-" + the 5th to 11th digits of the serial number."""
        return f"{MODEL}-{self.serial_number[4:11]}"

    @property
    def dev_addr(self) -> str:
        """ABP default: the 5th to 12th digits of the serial number."""
        return self.serial_number[4:12]


@dataclass(frozen=True)
class LorawanSettings:
    """The ToolBox LoRaWAN page. The device always runs Class C."""

    join_type: str = "OTAA"
    app_port: int = APPLICATION_PORT
    region: str = "EU868"
    data_rate: int = 5
    adr: bool = True
    confirmed: bool = False
    rejoin_mode: bool = True
    link_checks: int = 4  # "number of detection signals"; the device sends this + 1

    def __post_init__(self) -> None:
        if self.join_type not in ("OTAA", "ABP"):
            raise SettingError(f"must be OTAA or ABP, got {self.join_type!r}",
                               setting="join_type")
        if self.region not in MAX_PAYLOAD:
            raise SettingError(f"must be one of {sorted(MAX_PAYLOAD)}, got {self.region!r}",
                               setting="region")
        rates = len(MAX_PAYLOAD[self.region])
        if not 0 <= self.data_rate < rates:
            raise SettingError(f"{self.region} has data rates 0..{rates - 1}, got "
                               f"{self.data_rate}", setting="data_rate")
        if not 1 <= self.app_port <= 223:
            raise SettingError(f"must be 1..223, got {self.app_port}", setting="app_port")
        if not 1 <= self.link_checks <= 32:
            raise SettingError(f"must be 1..32, got {self.link_checks}", setting="link_checks")

    @property
    def max_payload(self) -> int:
        return MAX_PAYLOAD[self.region][self.data_rate]


@dataclass
class Settings:
    """Every setting of one device. `items` maps identifier → configuration item."""

    identity: Identity
    items: dict[str, Item] = field(default_factory=dict)
    lorawan: LorawanSettings = field(default_factory=LorawanSettings)
    password: str = DEFAULT_PASSWORD

    @classmethod
    def factory(cls, identity: Identity) -> Settings:
        s = cls(identity=identity)
        for name in SETTING_COMMANDS:
            for kw in _instances(name):
                if name == "bluetooth_name":
                    kw["name"] = identity.default_bluetooth_name
                item = default_item(name, **kw)
                s.items[identifier(item)] = item
        return s

    def copy(self) -> Settings:
        return replace(self, items=dict(self.items))

    # -- typed views --------------------------------------------------------------------

    def get(self, name: str, channel: int | None = None) -> Item:
        for item in self.items.values():
            if _name(item) == name and getattr(item, "channel", channel) == channel:
                return item
        raise KeyError(name if channel is None else f"{name}[{channel}]")

    @property
    def reporting_interval_s(self) -> int:
        item = self.items["61"]
        return item.seconds if item.command_name == "reporting_interval_seconds" \
            else item.minutes * 60

    @property
    def report_parameters(self) -> tuple[str, ...]:
        return self.items["6c"].parameters

    @property
    def storage_enabled(self) -> bool:
        return bool(self.items["c500"].enabled)

    @property
    def retransmission_enabled(self) -> bool:
        return bool(self.items["c501"].enabled)

    @property
    def retransmission_interval_s(self) -> int:
        return self.items["c502"].seconds

    @property
    def retrieval_interval_s(self) -> int:
        return self.items["c503"].seconds

    def circuits(self) -> tuple[str, str, str, str]:
        """Per group a-d: "single_phase" or "three_phase"."""
        return tuple(self.get(f"current_interface_{g}").circuit for g in GROUPS)  # type: ignore[return-value]

    def channel_interface(self, channel: int) -> tuple[str, str]:
        """(direction, ct range) of channel 1-12."""
        item = self.get(f"current_interface_{GROUPS[(channel - 1) // 3]}")
        k = (channel - 1) % 3 + 1
        return getattr(item, f"direction_{k}"), getattr(item, f"ct_range_{k}")

    # -- changing settings (the device's rules) ---------------------------------------

    def apply(self, item: Item, *, cross_checks: bool = True) -> tuple[str, Item]:
        """Store one configuration item as the device would; returns (identifier, the item as
        stored — the Rogowski rule may have changed it). Raises `SettingError` and changes
        nothing when the device refuses it. `cross_checks=False` skips the rules between
        settings (templates: a configuration a device accepted imports as a whole)."""
        name = _name(item)
        if name not in SETTING_COMMANDS:
            raise SettingError("not a setting of the CTH01", setting=item.command_name)
        try:
            encode_uplink([item])  # every value within what the device can report back
        except EncodeError as e:
            raise SettingError(str(e), setting=item.command_name) from None
        key = identifier(item)
        item = _normalise(item, self.items.get(key))
        self._check(item, cross_checks)
        self.items[key] = item
        return key, item

    def _check(self, item: Item, cross_checks: bool) -> None:
        name = _name(item)
        if name.endswith("_threshold") and getattr(item, "condition", None) in ("within",
                                                                               "outside"):
            lo, hi = threshold_bounds(item)
            if lo > hi:
                raise SettingError(f"minimum {lo} above maximum {hi}", setting=name)
        # guide ch. 4: "alarm reporting interval must be shorter than the reporting interval"
        # — checked when 7c is written; a later reporting-interval change is accepted as is
        if cross_checks and name == "alarm_settings" and \
                item.repeat_interval_min * 60 >= self.reporting_interval_s:
            raise SettingError("the alarm reporting interval must be shorter than the reporting "
                               f"interval ({self.reporting_interval_s // 60} min)", setting=name)
        if name == "daylight_saving_time" and item.enabled and (
                (item.start_month, item.start_week, item.start_weekday, item.start_minute)
                == (item.end_month, item.end_week, item.end_weekday, item.end_minute)):
            raise SettingError("DST start and end are the same instant", setting=name)

    # -- templates (ToolBox "Set Template", same model only) -----------------------------

    def template(self, *, include_name: bool = False) -> dict[str, Any]:
        """The configuration as a JSON-ready template (no identity, no password; the
        Bluetooth name only with `include_name`, since it names one device)."""
        return {
            "model": MODEL,
            "firmware_version": "v{}.{}".format(*self.identity.firmware_version),
            "lorawan": {k: getattr(self.lorawan, k) for k in LorawanSettings.__dataclass_fields__},
            "settings": [i.to_dict() for k, i in self.items.items()
                         if include_name or k != "64"],
        }

    def apply_template(self, data: dict[str, Any] | str) -> list[str]:
        """Write a template (dict or JSON text) to this device: all or nothing. Returns the
        identifiers written. Raises `SettingError` for another model, an unknown setting or a
        value the device refuses; the settings are then unchanged."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as e:
                raise SettingError(f"not JSON: {e}", setting="template") from None
        if not isinstance(data, dict) or data.get("model") != MODEL:
            got = data.get("model") if isinstance(data, dict) else type(data).__name__
            raise SettingError(f"a template of model {got!r} cannot be written to a {MODEL}",
                               setting="template")
        trial = self.copy()
        try:
            trial.lorawan = LorawanSettings(**data.get("lorawan", {}))
        except TypeError as e:
            raise SettingError(str(e), setting="lorawan") from None
        written = []
        for k, raw in enumerate(data.get("settings", [])):
            try:
                item = msgspec.convert(raw, _SETTING_UNION)
            except msgspec.ValidationError as e:
                raise SettingError(f"settings[{k}]: {e}", setting="template") from None
            written.append(trial.apply(item, cross_checks=False)[0])
        self.items, self.lorawan = trial.items, trial.lorawan
        return written


def _name(item: Item) -> str:
    return _ALIASES.get(item.command_name, item.command_name)


def _instances(name: str) -> Iterator[dict[str, Any]]:
    count = _PER_CHANNEL.get(name)
    if count is None:
        yield {}
    else:
        for ch in range(1, count + 1):
            yield {"channel": ch}


def threshold_bounds(item: Item) -> tuple[float, float]:
    """(min, max) of a threshold item, whatever the unit suffix of its fields."""
    lo = next(getattr(item, f) for f in item.__struct_fields__ if f.startswith("min_"))
    hi = next(getattr(item, f) for f in item.__struct_fields__ if f.startswith("max_"))
    return lo, hi


def _normalise(item: Item, previous: Item | None) -> Item:
    """The Rogowski rule (guide ch. 4): coils and split-core CTs never mix in a group. Setting
    one channel of a split-core group to 4000 A sets all three to 4000 A; moving one channel of
    a Rogowski group to another range moves all three to that range."""
    if not item.command_name.startswith("current_interface_"):
        return item
    ranges = [getattr(item, f"ct_range_{k}") for k in (1, 2, 3)]
    if "4000A" not in ranges or set(ranges) == {"4000A"}:
        return item
    was_rogowski = previous is not None and all(
        getattr(previous, f"ct_range_{k}") == "4000A" for k in (1, 2, 3))
    target = next(r for r in ranges if r != "4000A") if was_rogowski else "4000A"
    return msgspec.structs.replace(item, ct_range_1=target, ct_range_2=target,
                                   ct_range_3=target)


_SETTING_UNION: Any = None


def _setting_union() -> Any:
    classes = [item_class(n) for n in (*SETTING_COMMANDS, *_ALIASES)]
    u = classes[0]
    for c in classes[1:]:
        u = u | c
    return u


_SETTING_UNION = _setting_union()


def setting_items(settings: Iterable[Item]) -> list[Item]:
    """Settings in report order (the order of `SETTING_COMMANDS`, channels ascending)."""
    order = {n: k for k, n in enumerate(SETTING_COMMANDS)}
    return sorted(settings, key=lambda i: (order[_name(i)], getattr(i, "channel", 0)))
