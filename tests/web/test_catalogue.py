"""The ranges the configuration form enforces come from GET /api/commands, which reads them from
the protocol table: a value at either end of a range is accepted, one step outside refused."""

from __future__ import annotations

import pytest

from cth01.hub import downlinks
from cth01.protocol import table

CATALOGUE = {c["command"]: {p["name"]: p for p in c["parameters"]}
             for c in downlinks.describe()}

# (command, parameter, the other parameters it needs)
RANGED = [
    ("set_reporting_interval", "minutes", {}),
    ("set_reporting_interval", "seconds", {}),
    ("set_retransmission_interval", "seconds", {}),
    ("set_retrieval_interval", "seconds", {}),
    ("set_alarm_settings", "repeat_interval_min", {}),
    ("set_alarm_settings", "repeat_count", {}),
    ("set_current_threshold", "channel", {"enabled": True, "condition": "above", "max_a": 5}),
    ("set_current_threshold", "max_a", {"channel": 1, "enabled": True, "condition": "above"}),
    ("set_voltage_threshold", "phase", {"enabled": True, "condition": "above", "max_v": 250}),
    ("set_voltage_threshold", "max_v", {"phase": 1, "enabled": True, "condition": "above"}),
    ("set_thdi_threshold", "max_pct", {"channel": 1, "enabled": True}),
    ("set_thdv_threshold", "max_pct", {"phase": 1, "enabled": True}),
    ("set_voltage_unbalance_threshold", "max_pct", {"enabled": True}),
    ("set_temperature_threshold", "max_c", {"enabled": True, "condition": "above"}),
    ("set_temperature_calibration", "offset_c", {"enabled": True}),
    ("set_monthly_summary_time", "day", {}),
    ("set_monthly_summary_time", "minute", {}),
    ("set_daylight_saving", "bias_min", {"enabled": True}),
]


@pytest.mark.parametrize(("command", "param", "others"), RANGED,
                         ids=[f"{c}.{p}" for c, p, _ in RANGED])
def test_a_catalogue_range_is_exactly_what_the_hub_accepts(command, param, others):
    spec = CATALOGUE[command][param]
    step = spec.get("step", 1)
    for ok in (spec["min"], spec["max"]):
        downlinks.build(command, {**others, param: ok})
    for bad in (spec["min"] - step, spec["max"] + step):
        with pytest.raises(downlinks.CommandError):
            downlinks.build(command, {**others, param: round(bad, 2)})


def test_choices_tuples_and_text_come_from_the_table():
    assert CATALOGUE["set_reporting_interval"]["minutes"] | {"min": 1, "max": 1440,
                                                            "unit": "min"} == \
        CATALOGUE["set_reporting_interval"]["minutes"]
    assert CATALOGUE["set_time_zone"]["offset_min"]["choices"] == sorted(table.TIME_ZONES_MIN)
    assert CATALOGUE["set_report_parameters"]["parameters"]["choices"] == \
        [p for p in table.REPORT_PARAMETERS if p]
    assert CATALOGUE["set_current_interface"]["ct_ranges"]["items"] == \
        [{"choices": list(table.CT_RANGES.values())}] * 3
    start = CATALOGUE["set_daylight_saving"]["start"]["items"]
    assert [(i["min"], i["max"]) for i in start] == [(1, 12), (1, 5), (1, 7), (0, 1439)]
    assert CATALOGUE["set_bluetooth_name"]["name"]["max_length"] == 13
    assert CATALOGUE["set_current_threshold"]["condition"]["choices"] == \
        ["disabled", "below", "above", "within", "outside"]
    # booleans are plain checkboxes: no choices
    assert "choices" not in CATALOGUE["set_data_storage"]["enabled"]
