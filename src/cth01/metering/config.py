"""The CTH01's interface settings as the metering engine needs them (guide chapter 4).

Owns: `MeterConfig` — voltage wiring, the four CT groups a-d (circuit type, and per channel the
CT range, the current direction and the voltage phase it is paired with), the temperature
calibration — its validation, the device's Rogowski synchronisation rule, and a JSON-friendly
dict form. Names are the codec's (`cth01.protocol.table`): "3P4W"/"3P3W", "single_phase"/
"three_phase", "100A".."4000A" (and "none"), "forward"/"reverse".

Must never: import the rest of the project (metering depends on nothing of ours, so the codec's
names are repeated here as plain strings), touch files or do any metering maths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

WIRINGS = ("3P4W", "3P3W")
CIRCUITS = ("single_phase", "three_phase")
DIRECTIONS = ("forward", "reverse")
GROUPS = ("a", "b", "c", "d")
CHANNELS = tuple(range(1, 13))
#: CT range name -> rated current in amperes. "none" is the codec's "no CT configured": the
#: device cannot scale that channel's signal, so the engine reports zeros for it.
CT_RANGES_A: dict[str, float | None] = {
    "none": None,
    "100A": 100.0,
    "300A": 300.0,
    "500A": 500.0,
    "1000A": 1000.0,
    "4000A": 4000.0,
}
ROGOWSKI = "4000A"
#: Temperature calibration offset accepted by the guide (command 6b), °C.
TEMPERATURE_OFFSET_RANGE_C = (-120.0, 120.0)


class ConfigError(ValueError):
    """An interface setting the device would not accept: names the field, the group and/or the
    channel (1-12), the offending value and what is allowed."""

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        group: str | None = None,
        channel: int | None = None,
    ) -> None:
        self.reason = reason
        self.field = field
        self.group = group
        self.channel = channel
        super().__init__(reason)

    def __str__(self) -> str:
        where = [f"{k}={v}" for k, v in (("field", self.field), ("group", self.group),
                                         ("channel", self.channel)) if v is not None]
        return f"{self.reason} ({', '.join(where)})" if where else self.reason

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (_rebuild_config_error, (self.reason, self.field, self.group, self.channel))


def _rebuild_config_error(
    reason: str, field: str | None, group: str | None, channel: int | None
) -> ConfigError:
    return ConfigError(reason, field=field, group=group, channel=channel)


def group_of_channel(channel: int) -> str:
    """"a" for channels 1-3, "b" for 4-6, "c" for 7-9, "d" for 10-12."""
    _check_channel(channel)
    return GROUPS[(channel - 1) // 3]


def _check_channel(channel: object) -> int:
    if not isinstance(channel, int) or isinstance(channel, bool) or channel not in CHANNELS:
        raise ConfigError(f"channel must be 1-12, got {channel!r}", field="channel")
    return channel


@dataclass(frozen=True)
class ChannelConfig:
    """One CT input. `voltage_phase` (1-3) is the voltage channel a single-phase channel is
    paired with; None means the default, its position in the group (1st -> L1, 2nd -> L2,
    3rd -> L3). In a three-phase group the phase is always the position."""

    ct_range: str = "100A"
    direction: str = "forward"
    voltage_phase: int | None = None

    @property
    def ct_range_a(self) -> float | None:
        """Rated current of the CT in amperes; None for "none"."""
        return CT_RANGES_A[self.ct_range]

    @property
    def rogowski(self) -> bool:
        return self.ct_range == ROGOWSKI

    @property
    def sign(self) -> int:
        """+1 forward, -1 reverse: the factor applied to the measured current."""
        return -1 if self.direction == "reverse" else 1


@dataclass(frozen=True)
class GroupConfig:
    """Three CT channels. Single-phase: three independent circuits; three-phase: L1, L2, L3 of
    one circuit on the group's 1st, 2nd and 3rd channel."""

    circuit: str = "single_phase"
    channels: tuple[ChannelConfig, ChannelConfig, ChannelConfig] = (
        ChannelConfig(), ChannelConfig(), ChannelConfig())


@dataclass(frozen=True)
class TemperatureCalibration:
    """Command 6b: when enabled, `offset_c` is added to the NTC reading before it is reported."""

    enabled: bool = False
    offset_c: float = 0.0

    def apply(self, raw_c: float) -> float:
        return raw_c + self.offset_c if self.enabled else raw_c


@dataclass(frozen=True)
class MeterConfig:
    """All interface settings of one CTH01. Construct with `MeterConfig.default()`,
    `MeterConfig.from_dict(...)` or directly; every constructor validates and raises
    `ConfigError` for a combination the device rejects (a group mixing Rogowski coils with
    split-core CTs, a voltage phase outside 1-3, a three-phase channel paired off-position,
    an offset outside -120..120 °C, an unknown name)."""

    wiring: str = "3P4W"
    groups: tuple[GroupConfig, GroupConfig, GroupConfig, GroupConfig] = (
        GroupConfig(), GroupConfig(), GroupConfig(), GroupConfig())
    temperature_calibration: TemperatureCalibration = field(
        default_factory=TemperatureCalibration)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def default(cls) -> MeterConfig:
        """What `cth01 meter` assumes without `--config`: 3P4W, all four groups single-phase,
        100 A CTs, forward, default pairing, no temperature calibration."""
        return cls()

    # -- lookups -------------------------------------------------------------------------

    def group(self, group: str) -> GroupConfig:
        if group not in GROUPS:
            raise ConfigError(f"group must be one of a-d, got {group!r}", field="group")
        return self.groups[GROUPS.index(group)]

    def channel(self, channel: int) -> ChannelConfig:
        _check_channel(channel)
        return self.groups[(channel - 1) // 3].channels[(channel - 1) % 3]

    def voltage_phase_of(self, channel: int) -> int:
        """The voltage phase (1-3) channel 1-12 is measured against: its position in the group
        unless a single-phase channel is configured otherwise."""
        position = (_check_channel(channel) - 1) % 3 + 1
        configured = self.channel(channel).voltage_phase
        return position if configured is None else configured

    def is_three_phase(self, group: str) -> bool:
        return self.group(group).circuit == "three_phase"

    # -- the device's rules ------------------------------------------------------------------

    def with_ct_range(self, channel: int, ct_range: str) -> MeterConfig:
        """Set one channel's CT range the way the device (ToolBox / command 67-6a) does:
        choosing 4000 A (Rogowski) on a channel sets all three channels of its group to
        4000 A; switching a Rogowski group's channel to another range switches the other two
        to that range as well. Other changes touch only the channel."""
        _check_channel(channel)
        if ct_range not in CT_RANGES_A:
            raise ConfigError(f"ct_range must be one of {list(CT_RANGES_A)}, got {ct_range!r}",
                              field="ct_range", channel=channel)
        g = (channel - 1) // 3
        group = self.groups[g]
        sync = ct_range == ROGOWSKI or any(c.rogowski for c in group.channels)
        channels = tuple(
            replace(c, ct_range=ct_range) if sync or k == (channel - 1) % 3 else c
            for k, c in enumerate(group.channels))
        groups = list(self.groups)
        groups[g] = replace(group, channels=channels)
        return replace(self, groups=tuple(groups))

    # -- dict form -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; `from_dict(to_dict())` round-trips. Pairing overrides appear as
        "voltage_phase"; defaults are written as null."""
        return {
            "wiring": self.wiring,
            "groups": {
                name: {
                    "circuit": g.circuit,
                    "channels": [
                        {"ct_range": c.ct_range, "direction": c.direction,
                         "voltage_phase": c.voltage_phase}
                        for c in g.channels
                    ],
                }
                for name, g in zip(GROUPS, self.groups, strict=True)
            },
            "temperature_calibration": {
                "enabled": self.temperature_calibration.enabled,
                "offset_c": self.temperature_calibration.offset_c,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeterConfig:
        """Build from the dict form (e.g. a parsed INTERFACES.json). Missing keys take the
        defaults of `MeterConfig.default()`; unknown keys and wrong types are a `ConfigError`
        (a misspelt setting must not be silently ignored). Groups are keyed "a".."d", each with
        an optional "circuit" and an optional list of exactly three channel dicts."""
        _expect_mapping(data, "config")
        _no_unknown(data, {"wiring", "groups", "temperature_calibration"}, "config")
        groups_data = data.get("groups", {})
        _expect_mapping(groups_data, "groups")
        _no_unknown(groups_data, set(GROUPS), "groups")
        groups = []
        for name in GROUPS:
            gd = groups_data.get(name, {})
            _expect_mapping(gd, f"groups.{name}", group=name)
            _no_unknown(gd, {"circuit", "channels"}, f"groups.{name}", group=name)
            chs_data = gd.get("channels", [{}, {}, {}])
            if not isinstance(chs_data, list | tuple) or len(chs_data) != 3:
                raise ConfigError("a group has exactly three channels: give a list of three",
                                  field=f"groups.{name}.channels", group=name)
            channels = []
            for k, cd in enumerate(chs_data):
                number = GROUPS.index(name) * 3 + k + 1
                _expect_mapping(cd, f"groups.{name}.channels[{k}]", group=name, channel=number)
                _no_unknown(cd, {"ct_range", "direction", "voltage_phase"},
                            f"groups.{name}.channels[{k}]", group=name, channel=number)
                channels.append(ChannelConfig(
                    ct_range=cd.get("ct_range", "100A"),
                    direction=cd.get("direction", "forward"),
                    voltage_phase=cd.get("voltage_phase"),
                ))
            groups.append(GroupConfig(circuit=gd.get("circuit", "single_phase"),
                                      channels=tuple(channels)))  # type: ignore[arg-type]
        td = data.get("temperature_calibration", {})
        _expect_mapping(td, "temperature_calibration")
        _no_unknown(td, {"enabled", "offset_c"}, "temperature_calibration")
        calibration = TemperatureCalibration(enabled=td.get("enabled", False),
                                             offset_c=td.get("offset_c", 0.0))
        return cls(wiring=data.get("wiring", "3P4W"), groups=tuple(groups),  # type: ignore[arg-type]
                   temperature_calibration=calibration)


def _expect_mapping(value: object, where: str, *, group: str | None = None,
                    channel: int | None = None) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected an object, got {type(value).__name__}", field=where,
                          group=group, channel=channel)


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str, *,
                group: str | None = None, channel: int | None = None) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; allowed: {sorted(known)}", field=where,
                          group=group, channel=channel)


def _validate(cfg: MeterConfig) -> None:
    if cfg.wiring not in WIRINGS:
        raise ConfigError(f"wiring must be one of {list(WIRINGS)}, got {cfg.wiring!r}",
                          field="wiring")
    if not isinstance(cfg.groups, tuple) or len(cfg.groups) != 4 or not all(
            isinstance(g, GroupConfig) for g in cfg.groups):
        raise ConfigError("groups must be a tuple of four GroupConfig (a-d)", field="groups")
    for g_index, (name, group) in enumerate(zip(GROUPS, cfg.groups, strict=True)):
        if group.circuit not in CIRCUITS:
            raise ConfigError(f"circuit must be one of {list(CIRCUITS)}, got {group.circuit!r}",
                              field="circuit", group=name)
        if not isinstance(group.channels, tuple) or len(group.channels) != 3 or not all(
                isinstance(c, ChannelConfig) for c in group.channels):
            raise ConfigError("a group has exactly three ChannelConfig", field="channels",
                              group=name)
        for k, ch in enumerate(group.channels):
            number = g_index * 3 + k + 1
            if not isinstance(ch.ct_range, str) or ch.ct_range not in CT_RANGES_A:
                raise ConfigError(
                    f"ct_range must be one of {list(CT_RANGES_A)}, got {ch.ct_range!r}",
                    field="ct_range", group=name, channel=number)
            if ch.direction not in DIRECTIONS:
                raise ConfigError(
                    f"direction must be one of {list(DIRECTIONS)}, got {ch.direction!r}",
                    field="direction", group=name, channel=number)
            vp = ch.voltage_phase
            if vp is not None and (not isinstance(vp, int) or isinstance(vp, bool)
                                   or vp not in (1, 2, 3)):
                raise ConfigError(f"voltage_phase must be 1, 2, 3 or null, got {vp!r}",
                                  field="voltage_phase", group=name, channel=number)
            if group.circuit == "three_phase" and vp is not None and vp != k + 1:
                raise ConfigError(
                    f"group {name} is three-phase, so channel {number} is L{k + 1} by its "
                    f"position; voltage_phase {vp} can only be set on single-phase channels",
                    field="voltage_phase", group=name, channel=number)
        rogowski = [c.rogowski for c in group.channels]
        if any(rogowski) and not all(rogowski):
            first = g_index * 3 + rogowski.index(True) + 1
            other = g_index * 3 + rogowski.index(False) + 1
            ranges = ", ".join(f"channel {g_index * 3 + k + 1}={c.ct_range}"
                               for k, c in enumerate(group.channels))
            raise ConfigError(
                f"group {name} mixes a Rogowski coil (4000A on channel {first}) with "
                f"channel {other} ({group.channels[rogowski.index(False)].ct_range}); a "
                f"Rogowski setting applies to all three channels of a group [{ranges}] — "
                f"use MeterConfig.with_ct_range to apply the device's synchronisation",
                field="ct_range", group=name, channel=other)
    cal = cfg.temperature_calibration
    if not isinstance(cal, TemperatureCalibration):
        raise ConfigError("temperature_calibration must be a TemperatureCalibration",
                          field="temperature_calibration")
    if not isinstance(cal.enabled, bool):
        raise ConfigError(f"enabled must be true or false, got {cal.enabled!r}",
                          field="temperature_calibration.enabled")
    lo, hi = TEMPERATURE_OFFSET_RANGE_C
    if (not isinstance(cal.offset_c, int | float) or isinstance(cal.offset_c, bool)
            or not lo <= cal.offset_c <= hi):
        raise ConfigError(f"offset_c must be a number in {lo:g}..{hi:g} °C, got "
                          f"{cal.offset_c!r}", field="temperature_calibration.offset_c")
