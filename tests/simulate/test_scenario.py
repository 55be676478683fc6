"""Scenario files: durations, good and bad documents (every error names the event and the
field), JSON/TOML files, and applying events to a fleet changes exactly what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cth01.device import Fleet
from cth01.simulate import (
    ScenarioError,
    apply_scenario,
    demo_scenario,
    load_scenario,
    parse_duration,
    parse_scenario,
)
from cth01.simulate.scenario import EVENT_FIELDS, select_devices

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("0s", 0), (" 2H ", 7200), (45, 45), ("45", 45), ("1d2h3m4s", 93784),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "-5m", "1.5h", "h", "5 minutes", True, -1, None,
                                  2.5, "m5"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def ev(**kw):
    return {"type": "outage", "devices": "all", "start": "0s", "duration": "1m", **kw}


GOOD = [
    (ev(), ("outage", "all", 0, 60, {})),
    (ev(type="blackout", devices=[3, 0, 3], start="15m", duration="1h"),
     ("blackout", (0, 3), 900, 3600, {})),
    (ev(type="overload", devices="10%", channels=[2, 1], factor=1.5),
     ("overload", 10.0, 0, 60, {"channels": (1, 2), "factor": 1.5})),
    (ev(type="voltage", factor=0.8), ("voltage", "all", 0, 60, {"factor": 0.8})),
    (ev(type="voltage", factor=1.1, phases=[1]),
     ("voltage", "all", 0, 60, {"factor": 1.1, "phases": (1,)})),
    (ev(type="harmonics", thdi_pct=40), ("harmonics", "all", 0, 60, {"thdi_pct": 40.0})),
    (ev(type="temperature", rise_c=-5, comment="a cold draught", start=120),
     ("temperature", "all", 120, 60, {"rise_c": -5.0})),
    (ev(devices="100%"), ("outage", 100.0, 0, 60, {})),
]


@pytest.mark.parametrize(("event", "expected"), GOOD)
def test_good_events(event, expected):
    (e,) = parse_scenario({"events": [event]}).events
    assert (e.type, e.devices, e.start_s, e.duration_s, dict(e.params)) == expected


BAD = [  # (document, event index, field, words in the reason)
    ([], None, None, "object with an 'events' list"),
    ({}, None, "events", "missing"),
    ({"events": {}}, None, "events", "must be a list"),
    ({"events": [], "extra": 1}, None, "extra", "unknown top-level field"),
    ({"events": ["outage"]}, 0, None, "an event is an object"),
    ({"events": [ev(), {"devices": "all"}]}, 1, "type", "missing"),
    ({"events": [ev(type="flood")]}, 0, "type", "unknown event type 'flood'"),
    ({"events": [ev(factor=2)]}, 0, "factor", "unknown field for a outage event"),
    ({"events": [ev(type="overload", factor=2)]}, 0, "channels", "missing"),
    ({"events": [ev(type="overload", channels=[1])]}, 0, "factor", "missing"),
    ({"events": [ev(type="harmonics")]}, 0, "thdi_pct", "missing"),
    ({"events": [ev(type="temperature")]}, 0, "rise_c", "missing"),
    ({"events": [{"type": "outage", "start": "1m", "duration": "1m"}]}, 0, "devices",
     "missing"),
    ({"events": [{"type": "outage", "devices": "all", "duration": "1m"}]}, 0, "start",
     "missing"),
    ({"events": [ev(duration="soon")]}, 0, "duration", "expected a duration"),
    ({"events": [ev(duration="0s")]}, 0, "duration", "longer than 0"),
    ({"events": [ev(start="-1m")]}, 0, "start", "expected a duration"),
    ({"events": [ev(devices="some")]}, 0, "devices", "percentage"),
    ({"events": [ev(devices="0%")]}, 0, "devices", "above 0 %"),
    ({"events": [ev(devices="150%")]}, 0, "devices", "at most 100 %"),
    ({"events": [ev(devices=[])]}, 0, "devices", "selects no device"),
    ({"events": [ev(devices=[1, -2])]}, 0, "devices", "whole numbers"),
    ({"events": [ev(devices=[1.5])]}, 0, "devices", "whole numbers"),
    ({"events": [ev(devices=7)]}, 0, "devices", "percentage"),
    ({"events": [ev(type="overload", channels=[0], factor=1)]}, 0, "channels", "1-12"),
    ({"events": [ev(type="overload", channels=[13], factor=1)]}, 0, "channels", "1-12"),
    ({"events": [ev(type="overload", channels=[], factor=1)]}, 0, "channels", "non-empty"),
    ({"events": [ev(type="overload", channels=[1], factor=-1)]}, 0, "factor", "≥ 0"),
    ({"events": [ev(type="overload", channels=[1], factor="big")]}, 0, "factor",
     "expected a number"),
    ({"events": [ev(type="voltage", factor=True)]}, 0, "factor", "expected a number"),
    ({"events": [ev(type="voltage", factor=1, phases=[4])]}, 0, "phases", "1-3"),
    ({"events": [ev(type="harmonics", thdi_pct=float("nan"))]}, 0, "thdi_pct",
     "expected a number"),
]


@pytest.mark.parametrize(("doc", "event", "field", "reason"), BAD)
def test_bad_documents_name_the_event_and_field(doc, event, field, reason):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc)
    e = info.value
    assert (e.event, e.field) == (event, field)
    assert reason in e.reason
    if event is not None:
        assert f"event {event}" in str(e)
    if field is not None:
        assert repr(field) in str(e)


def test_device_index_beyond_the_fleet_is_refused_and_nothing_is_applied():
    fleet = Fleet(3, seed=1)
    scenario = parse_scenario({"events": [ev(devices=[0]), ev(type="blackout", devices=[1, 3])]})
    with pytest.raises(ScenarioError) as info:
        apply_scenario(scenario, fleet, T0)
    assert (info.value.event, info.value.field) == (1, "devices")
    assert "device index 3 out of range" in str(info.value)
    assert fleet.network.covered(fleet.devices[0].dev_eui, T0 + 10)  # event 0 not applied


def test_percentages_pick_at_least_one_device_reproducibly():
    (e,) = parse_scenario({"events": [ev(devices="5%")]}).events
    assert len(select_devices(e, 0, 3)) == 1
    assert len(select_devices(e, 0, 100)) == 5
    assert select_devices(e, 0, 100) == select_devices(e, 0, 100)
    assert select_devices(e, 0, 100) != select_devices(e, 1, 100)  # per event
    assert all(0 <= d < 100 for d in select_devices(e, 0, 100))


def test_outage_and_blackout_reach_the_network_and_the_mains():
    fleet = Fleet(4, seed=1)
    apply_scenario(parse_scenario({"events": [
        ev(devices=[1], start="1m", duration="10m"),
        ev(type="blackout", devices=[2], start="2m", duration="5m"),
        ev(devices="all", start="1h", duration="1m"),
    ]}), fleet, T0)
    eui = [d.dev_eui for d in fleet.devices]
    assert fleet.network.covered(eui[1], T0 + 59)
    assert not fleet.network.covered(eui[1], T0 + 60)
    assert not fleet.network.covered(eui[1], T0 + 659)
    assert fleet.network.covered(eui[1], T0 + 660)
    assert fleet.network.covered(eui[0], T0 + 300)
    assert not fleet.network.covered(eui[0], T0 + 3600)  # the fleet-wide outage
    assert fleet.loads.blackout_mask(T0 + 200).tolist() == [False, False, True, False]
    assert not fleet.loads.blackout_mask(T0 + 420).any()


@pytest.mark.parametrize(("event", "check"), [
    (ev(type="overload", devices=[1], channels=[2, 3], factor=2.0),
     lambda a, b: np.allclose(b.current_a[1, 1:3], 2 * a.current_a[1, 1:3])
     and np.allclose(b.current_a[1, [0, *range(3, 12)]], a.current_a[1, [0, *range(3, 12)]])
     and np.allclose(b.current_a[0], a.current_a[0])),
    (ev(type="voltage", devices=[0], factor=0.5, phases=[1]),
     lambda a, b: np.isclose(b.voltage_v[0, 0], 0.5 * a.voltage_v[0, 0])
     and np.allclose(b.voltage_v[0, 1:], a.voltage_v[0, 1:])),
    (ev(type="temperature", devices="all", rise_c=30),
     lambda a, b: np.allclose(b.temperature_c, a.temperature_c + 30, equal_nan=True)),
    (ev(type="harmonics", devices=[1], thdi_pct=45),
     lambda a, b: np.allclose(b.thdi_pct[1][a.current_a[1] > 0], 45)
     and np.allclose(b.thdi_pct[0], a.thdi_pct[0])),
])
def test_load_events_change_the_inputs_of_the_selected_devices_only(event, check):
    plain, scripted = Fleet(2, seed=7), Fleet(2, seed=7)
    apply_scenario(parse_scenario({"events": [{**event, "start": "10s", "duration": "1m"}]}),
                   scripted, T0)
    for t in range(T0, T0 + 30):  # same call sequence: same noise
        a, b = plain.loads.second(t), scripted.loads.second(t)
        if t < T0 + 10:
            assert np.array_equal(a.current_a, b.current_a)
    assert check(a, b)


def test_json_and_toml_files(tmp_path):
    doc = {"description": "x", "events": [ev(type="overload", devices=[0], channels=[1],
                                             factor=1.5, start="15m", duration="1h")]}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    (tmp_path / "s.toml").write_text(
        'description = "x"\n[[events]]\ntype = "overload"\ndevices = [0]\nchannels = [1]\n'
        'factor = 1.5\nstart = "15m"\nduration = "1h"\n')
    assert load_scenario(tmp_path / "s.json") == load_scenario(tmp_path / "s.toml")


@pytest.mark.parametrize(("name", "text", "words"), [
    ("bad.json", '{"events": [', "not valid JSON (line 1"),
    ("bad.toml", "events = [", "not valid TOML"),
    ("wrong.json", '{"events": [{"type": "outage", "devices": "all", "start": "1m", '
                   '"duration": "1y"}]}', "event 0, field 'duration'"),
])
def test_file_errors_name_the_file(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / name)
    assert str(info.value).startswith(str(tmp_path / name))
    assert words in str(info.value)


def test_missing_file():
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/scenario.json")


@pytest.mark.parametrize("devices", [1, 3, 40])
def test_demo_scenario_fits_any_fleet_and_the_first_two_hours(devices):
    demo = demo_scenario()
    assert {e.type for e in demo.events} == set(EVENT_FIELDS)
    assert demo.span_s <= 2 * 3600
    fleet = Fleet(devices, seed=2)
    apply_scenario(demo, fleet, T0)
    outage = next(e for e in demo.events if e.type == "outage")
    cut = [d for d in fleet.devices if not fleet.network.covered(d.dev_eui, T0 + outage.start_s)]
    assert 1 <= len(cut) <= max(1, round(0.05 * devices + 0.5))
    assert fleet.loads.blackout_mask(T0 + 40 * 60).sum() == 1
