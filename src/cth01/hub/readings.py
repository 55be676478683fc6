"""Where each measured value of a CTH01 lands in the store.

Owns: the one table that maps a measurement item of the protocol to the columns of the
`reading` table, and the function that turns the items of one report (or one history record)
into one row. Everything else in the hub (SQL, API, CSV, Home Assistant) reads the column lists
from here.

  reading          one row per device and report: temperature, voltages, THDv, unbalance, and
                   for each channel n = 1-12 its current, THDi, PF, power and energy counters
                   in columns `c<n>_<quantity>` (c3_active_power_w). One wide row per report
                   is ~5x cheaper to store than twelve narrow ones (bench/bench_hub_ingest.py).
  channel_reading  a view: the same values as one row per device, channel and time

Three-phase groups: the firmware sends one value per three-phase group (a-d) for power factor,
power and energy — the circuit's total. It is stored on the group's first channel (1, 4, 7, 10);
the group's other two channels keep their own current and THDi, with those columns empty.
Must never: know SQL, a transport or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cth01.protocol import Item

DEVICE_COLUMNS = ("temperature_c", "voltage_unbalance_pct", "voltage_l1_v", "voltage_l2_v",
                  "voltage_l3_v", "thdv_l1_pct", "thdv_l2_pct", "thdv_l3_pct")
CHANNEL_COLUMNS = ("current_a", "thdi_pct", "power_factor_pct", "active_power_w",
                   "reactive_power_var", "apparent_power_va", "imported_active_wh",
                   "exported_active_wh", "imported_reactive_varh", "exported_reactive_varh",
                   "apparent_vah")
ENERGY_COLUMNS = CHANNEL_COLUMNS[6:]
CHANNELS = tuple(range(1, 13))
GROUP_FIRST_CHANNEL = {"a": 1, "b": 4, "c": 7, "d": 10}

#: Units of every column (API, CSV headers, Home Assistant).
UNITS = {"temperature_c": "°C", "voltage_unbalance_pct": "%", "current_a": "A", "thdi_pct": "%",
         "power_factor_pct": "%", "active_power_w": "W", "reactive_power_var": "var",
         "apparent_power_va": "VA", "imported_active_wh": "Wh", "exported_active_wh": "Wh",
         "imported_reactive_varh": "varh", "exported_reactive_varh": "varh",
         "apparent_vah": "VAh", **{f"voltage_l{k}_v": "V" for k in (1, 2, 3)},
         **{f"thdv_l{k}_pct": "%" for k in (1, 2, 3)}}

# item name -> (shape, field, column)
#   device   one value              -> reading.<column>
#   phases   three values (L1-L3)   -> reading.<column with l1..l3>
#   channels twelve values          -> channel_reading.<column>, channels 1-12
#   grouped  GroupReadings          -> channel_reading.<column>, see the module note
MEASUREMENTS: dict[str, tuple[str, str, str]] = {
    "temperature": ("device", "temperature_c", "temperature_c"),
    "voltage_unbalance": ("device", "unbalance_pct", "voltage_unbalance_pct"),
    "voltage": ("phases", "voltage_v", "voltage_l{}_v"),
    "thdv": ("phases", "thdv_pct", "thdv_l{}_pct"),
    "current": ("channels", "current_a", "current_a"),
    "thdi": ("channels", "thdi_pct", "thdi_pct"),
    "power_factor": ("grouped", "power_factor_pct", "power_factor_pct"),
}
for _pair in ("ab", "cd"):
    for _item, _field, _column in (
            ("active_power", "active_power_w", "active_power_w"),
            ("reactive_power", "reactive_power_var", "reactive_power_var"),
            ("apparent_power", "apparent_power_va", "apparent_power_va"),
            ("imported_active_energy", "energy_wh", "imported_active_wh"),
            ("exported_active_energy", "energy_wh", "exported_active_wh"),
            ("imported_reactive_energy", "energy_varh", "imported_reactive_varh"),
            ("exported_reactive_energy", "energy_varh", "exported_reactive_varh"),
            ("apparent_energy", "energy_vah", "apparent_vah")):
        MEASUREMENTS[f"{_item}_{_pair}"] = ("grouped", _field, _column)

#: The wide columns of the `reading` table: c1_current_a ... c12_apparent_vah.
WIDE_CHANNEL_COLUMNS = tuple(f"c{ch}_{c}" for ch in CHANNELS for c in CHANNEL_COLUMNS)
READING_COLUMNS = DEVICE_COLUMNS + WIDE_CHANNEL_COLUMNS
_N_DEV, _N_CH = len(DEVICE_COLUMNS), len(CHANNEL_COLUMNS)
_DEVICE_INDEX = {c: k for k, c in enumerate(DEVICE_COLUMNS)}
_CHANNEL_INDEX = {c: k for k, c in enumerate(CHANNEL_COLUMNS)}


def wide_column(column: str, channel: int) -> str:
    """The `reading` column of a channel quantity: ("active_power_w", 3) -> c3_active_power_w."""
    return f"c{channel}_{column}"


def channel_index(column: str, channel: int) -> int:
    """Index of a channel quantity in a row of READING_COLUMNS values."""
    return _N_DEV + (channel - 1) * _N_CH + _CHANNEL_INDEX[column]


class Rows:
    """The values of one report or record, in READING_COLUMNS order (None where the report
    has no value), which of them it carries (`present`), and each group's wiring seen."""

    __slots__ = ("phases", "present", "values")

    def __init__(self) -> None:
        self.values: list[Any] = [None] * len(READING_COLUMNS)
        self.present: list[int] = []
        self.phases: dict[str, str] = {}

    def add(self, item: Item) -> bool:
        """Take one item; False when it is not a measurement."""
        spec = MEASUREMENTS.get(item.command_name)
        if spec is None:
            return False
        shape, field, column = spec
        value = getattr(item, field)
        vals, present = self.values, self.present
        if shape == "device":
            k = _DEVICE_INDEX[column]
            vals[k] = value
            present.append(k)
        elif shape == "phases":
            for k, v in enumerate(value, 1):
                vals[_DEVICE_INDEX[column.format(k)]] = v
                present.append(_DEVICE_INDEX[column.format(k)])
        elif shape == "channels":
            span = range(_N_DEV + _CHANNEL_INDEX[column], len(READING_COLUMNS), _N_CH)
            vals[span.start::_N_CH] = value
            present += span
        else:
            col = _N_DEV + _CHANNEL_INDEX[column]
            for g in value:
                k = col + (GROUP_FIRST_CHANNEL[g.group] - 1) * _N_CH
                self.phases[g.group] = g.phase
                if g.channels is not None:
                    vals[k:k + 3 * _N_CH:_N_CH] = g.channels
                    present += (k, k + _N_CH, k + 2 * _N_CH)
                else:
                    vals[k] = g.total
                    present.append(k)
        return True

    def compact(self) -> tuple[tuple[int, ...], tuple[Any, ...]]:
        """(indices of the carried columns, their values): what the store writes."""
        idx = tuple(sorted(self.present))
        vals = self.values
        return idx, tuple([vals[k] for k in idx])


def rows_of(items: Iterable[Item]) -> Rows:
    """The values of a report's (or a record's) measurement items; other items are ignored."""
    rows = Rows()
    for item in items:
        rows.add(item)
    return rows
