"""The ToolBox (Bluetooth) configuration interface and `cth01 toolbox`, read against the user
guide chapter 4: login and the 3-minute session, the password rule, writes that follow the
downlink rules all or nothing, templates between devices of the same model, the history
export of stored records as CSV (14 days at most), time sync and factory reset."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from cth01.cli_toolbox import toolbox_app
from cth01.device import Identity, Measurements, Settings, VirtualCTH01
from cth01.device.toolbox import (
    AuthError,
    ExportError,
    SettingRefused,
    ToolBox,
    ToolBoxError,
)
from cth01.protocol import decode, items

T0 = int(datetime(2024, 3, 5, 8, 0, tzinfo=UTC).timestamp())
DAY = 86_400


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def fresh(n: int = 0, power_at: int | None = T0 - 100) -> tuple[VirtualCTH01, ToolBox]:
    """A factory-new device, powered on (Bluetooth needs the supply) but not joined."""
    device = VirtualCTH01(Identity.numbered(n))
    if power_at is not None:
        device.power_on(power_at)
    return device, ToolBox(device)


def drive(device: VirtualCTH01, start: int, end: int, m: Measurements | None = None,
          step: int = 60) -> list:
    """Tick from start to end (inclusive) in `step`s. Link checks go unanswered at this
    pace, so tests that need the device to stay joined switch rejoin mode off first."""
    out = []
    m = m if m is not None else Measurements.constant()
    for now in range(start, end + 1, step):
        out += device.tick(now, m)
    return out


def settings_of(device: VirtualCTH01) -> dict:
    t = device.settings.template()
    return {"lorawan": t["lorawan"], "settings": t["settings"],
            "password": device.settings.password}


# --- login and the session ---------------------------------------------------------------------

def test_login_with_the_default_password_opens_a_session():
    device, tb = fresh()
    session = tb.login("123456", T0)
    assert session.basic_information(T0)["serial_number"] == device.identity.serial_number


def test_wrong_password_is_refused_with_a_typed_error():
    _, tb = fresh()
    with pytest.raises(AuthError) as e:
        tb.login("654321", T0)
    assert isinstance(e.value, ToolBoxError)
    assert "wrong password" in e.value.reason


def test_five_wrong_passwords_lock_the_login_for_ten_minutes():
    _, tb = fresh()
    for k in range(5):
        with pytest.raises(AuthError):
            tb.login("000000", T0 + k)
    with pytest.raises(AuthError, match="locked"):
        tb.login("123456", T0 + 10)  # even the right password
    with pytest.raises(AuthError, match="locked"):
        tb.login("123456", T0 + 4 + 599)
    assert tb.login("123456", T0 + 4 + 600) is not None


def test_a_good_login_resets_the_failure_count():
    _, tb = fresh()
    for k in range(4):
        with pytest.raises(AuthError):
            tb.login("000000", T0 + k)
    tb.login("123456", T0 + 5)
    for k in range(4):
        with pytest.raises(AuthError, match="wrong password"):
            tb.login("000000", T0 + 10 + k)
    tb.login("123456", T0 + 20)  # not locked: only four failures in a row


def test_session_ends_after_three_minutes_without_interaction():
    _, tb = fresh()
    session = tb.login("123456", T0)
    session.read_settings(T0 + 180)  # exactly three minutes: still connected
    with pytest.raises(AuthError, match="session expired"):
        session.read_settings(T0 + 180 + 181)
    with pytest.raises(AuthError, match="session expired"):
        session.read_settings(T0 + 180 + 182)  # and it stays ended


def test_interaction_keeps_the_session_alive():
    _, tb = fresh()
    session = tb.login("123456", T0)
    for k in range(1, 11):
        session.basic_information(T0 + 170 * k)  # 28 minutes in all


def test_bluetooth_needs_the_supply():
    device, tb = fresh(power_at=None)
    with pytest.raises(ToolBoxError, match="off"):
        tb.login("123456", T0)
    device.power_on(T0)
    session = tb.login("123456", T0 + 1)
    device.power_off(T0 + 2)
    with pytest.raises(AuthError, match="power"):
        session.read_settings(T0 + 3)


def test_bluetooth_switched_off_refuses_logins():
    _, tb = fresh()
    tb.login("123456", T0).write(T0, {"type": "bluetooth_enable", "enabled": False})
    with pytest.raises(ToolBoxError, match="Bluetooth"):
        tb.login("123456", T0 + 1)


def test_a_new_login_replaces_the_previous_session():
    _, tb = fresh()
    first = tb.login("123456", T0)
    second = tb.login("123456", T0 + 1)
    with pytest.raises(AuthError):
        first.read_settings(T0 + 2)
    second.read_settings(T0 + 2)


def test_default_password_warning_until_the_password_is_changed():
    _, tb = fresh()
    session = tb.login("123456", T0)
    assert any("default" in w and "123456" in w for w in session.warnings)
    session.change_password(T0, "abc_12", "abc_12")
    assert session.warnings == []
    assert tb.login("abc_12", T0 + 1).warnings == []
    with pytest.raises(AuthError):
        tb.login("123456", T0 + 2)


@pytest.mark.parametrize(("new", "confirm", "why"), [
    ("12345", "12345", "6 characters"),
    ("1234567", "1234567", "6 characters"),
    ("abc 12", "abc 12", "letters, digits"),
    ("abc-12", "abc-12", "letters, digits"),
    ("abcdé1", "abcdé1", "letters, digits"),
    ("١٢٣٤٥٦", "١٢٣٤٥٦", "letters, digits"),  # Arabic-Indic digits are not ASCII digits
    ("abc_12", "abc_13", "confirmation"),
])
def test_password_rule_refusals(new, confirm, why):
    device, tb = fresh()
    session = tb.login("123456", T0)
    with pytest.raises(SettingRefused, match=why) as e:
        session.change_password(T0, new, confirm)
    assert e.value.setting == "password"
    assert device.settings.password == "123456"


def test_password_rule_accepts_letters_digits_underscore():
    device, tb = fresh()
    tb.login("123456", T0).change_password(T0, "abc_12", "abc_12")
    assert device.settings.password == "abc_12"


# --- basic information and time ------------------------------------------------------------

def test_basic_information_page():
    device, tb = fresh(0x1234)
    info = tb.login("123456", T0).basic_information(T0)
    assert info["model"] == "CTH01"
    assert info["dev_eui"] == device.dev_eui and info["app_eui"] == "24e124c0002a0001"
    assert info["bluetooth_name"] == "CTH01-" + device.identity.serial_number[4:11]
    assert info["firmware_version"] == "V1.1" and info["hardware_version"] == "V1.0"
    assert info["device_time_utc"] == "2024-03-05T08:00:00Z"
    assert info["device_time_local"] == "2024-03-05T08:00:00"
    assert info["joined"] is False and info["status_led"] == "joining"
    device.join_accept(T0 + 5)
    info = tb.login("123456", T0 + 10).basic_information(T0 + 10)
    assert info["joined"] is True and info["network_state"] == "joined"


def test_sync_time_sets_the_clock_and_the_time_zone():
    device, tb = fresh()
    session = tb.login("123456", T0)
    session.sync_time(T0, phone_time=T0 + 3600, phone_offset_min=330)
    assert device.clock_offset_s == 3600
    assert device.settings.items["c7"].offset_min == 330
    info = session.basic_information(T0 + 60)
    assert info["device_time_utc"] == "2024-03-05T09:01:00Z"
    assert info["device_time_local"] == "2024-03-05T14:31:00"
    assert info["time_zone"] == "UTC+05:30"


def test_sync_time_with_an_offset_the_device_lacks_changes_nothing():
    device, tb = fresh()
    session = tb.login("123456", T0)
    with pytest.raises(SettingRefused):
        session.sync_time(T0, phone_time=T0 + 3600, phone_offset_min=61)
    assert device.clock_offset_s == 0 and device.settings.items["c7"].offset_min == 0


def test_sync_time_moves_the_monthly_summary_to_local_midnight():
    # the monthly summary (day 1, 00:00 local) is due at 22:00 UTC in UTC+2
    t = ts(2024, 1, 31, 20, 0)
    device, tb = fresh(power_at=t)
    device.join_accept(t + 1)
    session = tb.login("123456", t + 2)
    session.write_lorawan(t + 2, rejoin_mode=False)
    session.sync_time(t + 2, phone_time=t + 2, phone_offset_min=120)
    out = drive(device, t + 60, t + 3 * 3600)
    assert [o.time for o in out if getattr(o, "kind", None) == "monthly"][:1] == \
        [ts(2024, 1, 31, 22, 0)]
    assert {r.timestamp for r in device.storage if r.type == 2} == {ts(2024, 1, 31, 22, 0)}


# --- settings ----------------------------------------------------------------------------------

def test_write_then_read_round_trip():
    device, tb = fresh()
    session = tb.login("123456", T0)
    written = session.write(
        T0,
        items.ReportingInterval(minutes=20),
        {"type": "data_storage", "enabled": True},
        {"type": "current_threshold", "channel": 5, "enabled": True, "condition": "above",
         "max_a": 50},
        {"type": "bluetooth_name", "name": "Plant-7"},
    )
    assert written == ["61", "c500", "7704", "64"]
    by_type = {}
    for d in session.read_settings(T0)["settings"]:
        by_type.setdefault(d["type"], []).append(d)
    assert by_type["reporting_interval"] == [{"type": "reporting_interval", "minutes": 20}]
    assert by_type["data_storage"] == [{"type": "data_storage", "enabled": True}]
    ch5 = next(d for d in by_type["current_threshold"] if d["channel"] == 5)
    assert ch5 == {"type": "current_threshold", "channel": 5, "enabled": True,
                   "condition": "above", "min_a": 0, "max_a": 50}
    assert by_type["bluetooth_name"][0]["name"] == "Plant-7"
    assert device.settings.reporting_interval_s == 1200


def test_out_of_range_write_is_refused_and_nothing_changes():
    device, tb = fresh()
    session = tb.login("123456", T0)
    before = session.read_settings(T0)
    with pytest.raises(SettingRefused) as e:
        session.write(T0, {"type": "data_storage", "enabled": True},  # valid, comes first
                      {"type": "reporting_interval", "minutes": 0})
    assert e.value.setting == "reporting_interval"
    assert "range" in e.value.reason
    assert session.read_settings(T0) == before
    assert device.settings.storage_enabled is False


@pytest.mark.parametrize("bad", [
    {"type": "alarm_settings", "repeat_interval_min": 30},  # not shorter than the reports
    {"type": "current_threshold", "channel": 2, "condition": "within", "min_a": 9, "max_a": 3},
    {"type": "current_threshold", "min_a": 1},  # which channel?
    {"type": "reboot"},  # not a setting
    {"type": "no_such_setting", "x": 1},
    {"minutes": 5},
    "61",
])
def test_refused_writes(bad):
    device, tb = fresh()
    session = tb.login("123456", T0)
    before = settings_of(device)
    with pytest.raises(SettingRefused):
        session.write(T0, {"type": "reporting_interval", "minutes": 30}, bad)
    assert settings_of(device) == before


def test_rogowski_rule_through_write():
    device, tb = fresh()
    session = tb.login("123456", T0)
    session.write(T0, {"type": "current_interface_b", "ct_range_1": "100A",
                       "ct_range_2": "300A", "ct_range_3": "100A"})
    session.write(T0, {"type": "current_interface_b", "ct_range_2": "4000A"})
    assert [device.settings.channel_interface(ch)[1] for ch in (4, 5, 6)] == ["4000A"] * 3
    # and back: moving one channel of a Rogowski group moves all three
    session.write(T0, {"type": "current_interface_b", "ct_range_3": "500A"})
    assert [device.settings.channel_interface(ch)[1] for ch in (4, 5, 6)] == ["500A"] * 3
    assert device.bank.range_a[0, 3:6].tolist() == [500.0] * 3  # the per-second work follows


def test_a_written_reporting_interval_reschedules_the_reports():
    device, tb = fresh()
    tb.login("123456", T0).write_lorawan(T0, rejoin_mode=False)
    device.join_accept(T0)
    out = drive(device, T0 + 30, T0 + 60, step=30)
    assert [o.time for o in out if getattr(o, "kind", "") == "periodic"] == [T0 + 60]
    tb.login("123456", T0 + 90).write(T0 + 90, {"type": "reporting_interval", "minutes": 2})
    out = drive(device, T0 + 120, T0 + 600, step=30)
    times = [o.time for o in out if getattr(o, "kind", "") == "periodic"]
    assert times == [T0 + 90 + 120 * k for k in range(1, 5)]


def test_write_lorawan():
    device, tb = fresh()
    session = tb.login("123456", T0)
    session.write_lorawan(T0, region="US915", data_rate=3, adr=False)
    lw = device.settings.lorawan
    assert (lw.region, lw.data_rate, lw.adr) == ("US915", 3, False)
    assert session.read_settings(T0)["lorawan"]["region"] == "US915"


@pytest.mark.parametrize("fields", [
    {"data_rate": 5},  # US915 has DR0-4
    {"region": "XX000"},
    {"app_port": 0},
    {"join_type": "LoRa"},
    {"link_checks": 33},
    {"adr": "yes"},
    {"app_port": "85"},
    {"class_b": True},
])
def test_write_lorawan_refusals_change_nothing(fields):
    device, tb = fresh()
    session = tb.login("123456", T0)
    session.write_lorawan(T0, region="US915", data_rate=3)
    before = device.settings.lorawan
    with pytest.raises(SettingRefused):
        session.write_lorawan(T0, **fields)
    assert device.settings.lorawan == before


# --- templates ----------------------------------------------------------------------------------

def test_template_export_import_gives_identical_settings():
    source, tb1 = fresh(1)
    s1 = tb1.login("123456", T0)
    s1.write(T0, {"type": "reporting_interval", "minutes": 15},
             {"type": "current_interface_c", "circuit": "three_phase", "ct_range_1": "300A",
              "ct_range_2": "300A", "ct_range_3": "300A", "direction_2": "reverse"},
             {"type": "voltage_threshold", "channel": 2, "enabled": True,
              "condition": "outside", "min_v": 200, "max_v": 250})
    s1.write_lorawan(T0, region="AU915", data_rate=2)
    s1.change_password(T0, "secret", "secret")
    template = s1.export_template(T0, "plant 7")
    assert template["name"] == "plant 7" and template["model"] == "CTH01"
    assert "secret" not in json.dumps(template)

    target, tb2 = fresh(2)
    tb2.login("123456", T0).import_template(T0, json.dumps(template))
    assert target.settings.template()["settings"] == source.settings.template()["settings"]
    assert target.settings.lorawan == source.settings.lorawan
    assert target.settings.password == "123456"  # passwords do not travel in templates
    assert target.settings.circuits()[2] == "three_phase"
    assert target.bank.sign[0, 7] == -1.0  # channel 8 reversed in the per-second work


def test_template_of_another_model_is_refused():
    device, tb = fresh()
    session = tb.login("123456", T0)
    template = session.export_template(T0, "x")
    template["model"] = "CT101"
    template["settings"][0] = {"type": "reporting_interval", "minutes": 30}
    before = settings_of(device)
    with pytest.raises(SettingRefused, match="CT101"):
        session.import_template(T0, template)
    assert settings_of(device) == before


def test_any_configuration_the_device_accepted_can_be_imported():
    source, tb1 = fresh(1)
    s1 = tb1.login("123456", T0)
    s1.write(T0, {"type": "reporting_interval", "minutes": 20},
             {"type": "alarm_settings", "repeat_interval_min": 15})
    s1.write(T0, {"type": "reporting_interval", "minutes": 5})  # accepted today
    target, tb2 = fresh(2)
    tb2.login("123456", T0).import_template(T0, s1.export_template(T0, "x"))
    assert target.settings.template()["settings"] == source.settings.template()["settings"]


def test_template_with_a_refused_value_changes_nothing():
    device, tb = fresh()
    session = tb.login("123456", T0)
    template = session.export_template(T0, "x")
    template["settings"][0] = {"type": "reporting_interval", "minutes": 30}
    template["settings"][1] = {"type": "reporting_interval", "minutes": 0}
    before = settings_of(device)
    with pytest.raises(SettingRefused):
        session.import_template(T0, template)
    assert settings_of(device) == before


# --- history export -----------------------------------------------------------------------------

def stored_device(hours: int = 4) -> tuple[VirtualCTH01, ToolBox]:
    """Storage on, report every 10 min, group b three-phase, a few hours of steady load."""
    device, tb = fresh()
    session = tb.login("123456", T0 - 10)
    session.write(
        T0 - 10, items.DataStorage(enabled=True),
        {"type": "report_parameters",
         "parameters": ["temperature", "current", "voltage", "power_factor", "active_power",
                        "imported_active_energy"]},
        {"type": "current_interface_a", "ct_range_1": "100A", "ct_range_2": "100A",
         "ct_range_3": "100A"},
        {"type": "current_interface_b", "circuit": "three_phase", "ct_range_1": "100A",
         "ct_range_2": "100A", "ct_range_3": "100A"},
    )
    device.join_accept(T0 + 2)
    m = Measurements.constant(current_a=[5, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0, 0],
                              power_factor=0.9, temperature_c=31.5)
    drive(device, T0 + 60, T0 + hours * 3600, m)
    return device, tb


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_history_export_rows_match_the_stored_records():
    device, tb = stored_device()
    start, end = T0 + 3600, T0 + 3 * 3600
    text = tb.login("123456", T0 + 5 * 3600).export_history(T0 + 5 * 3600, "periodic",
                                                           start, end)
    records = [r for r in device.storage if r.type == 1 and start <= r.timestamp <= end]
    got = rows(text)
    assert len(records) >= 10 and len(got) == len(records)
    header = next(csv.reader(io.StringIO(text)))
    assert header[:4] == ["time_utc", "time_local", "type", "kind"]
    for rec, row in zip(records, got, strict=True):
        assert row["time_utc"] == datetime.fromtimestamp(rec.timestamp, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        assert row["type"] == "periodic" and row["kind"] == ""
        up = decode(b"".join(rec.body), dialect="firmware")
        assert float(row["temperature_c"]) == up.get("temperature").temperature_c == 31.5
        for ch, value in enumerate(up.get("current").current_a, start=1):
            assert float(row[f"current_a_ch{ch}"]) == value
        assert [float(row[f"voltage_v_l{k}"]) for k in (1, 2, 3)] == [230.0] * 3
        pf = {g.group: g for g in up.get("power_factor").power_factor_pct}
        assert [int(row[f"power_factor_pct_ch{c}"]) for c in (1, 2, 3)] == list(
            pf["a"].channels)
        assert int(row["power_factor_pct_group_b"]) == pf["b"].total
        ab = {g.group: g for g in up.get("active_power_ab").active_power_w}
        assert int(row["active_power_w_ch2"]) == ab["a"].channels[1] == round(230 * 6 * 0.9)
        assert int(row["active_power_w_group_b"]) == ab["b"].total == round(230 * 27 * 0.9)
        assert "active_power_w_ch4" not in row  # group b is three-phase: a total only
        energy = {g.group: g for g in up.get("imported_active_energy_ab").energy_wh}
        assert int(row["imported_active_energy_wh_group_b"]) == energy["b"].total
        assert int(row["imported_active_energy_wh_ch1"]) == energy["a"].channels[0]
    # the energy register grows from row to row
    assert int(got[-1]["imported_active_energy_wh_ch1"]) > int(got[0][
        "imported_active_energy_wh_ch1"])


def test_history_export_uses_the_device_local_time():
    _, tb = stored_device(hours=1)
    session = tb.login("123456", T0 + 2 * 3600)
    session.sync_time(T0 + 2 * 3600, phone_time=T0 + 2 * 3600, phone_offset_min=-300)
    row = rows(session.export_history(T0 + 2 * 3600, "periodic", T0, T0 + 3600))[0]
    utc = datetime.strptime(row["time_utc"], "%Y-%m-%dT%H:%M:%SZ")
    local = datetime.fromisoformat(row["time_local"])
    assert (utc - local).total_seconds() == 5 * 3600


def test_history_export_of_alarms():
    device, tb = fresh()
    session = tb.login("123456", T0 - 10)
    session.write(T0 - 10, items.DataStorage(enabled=True),
                  {"type": "current_interface_a", "ct_range_1": "100A"},
                  {"type": "current_threshold", "channel": 1, "enabled": True,
                   "condition": "above", "max_a": 3})
    device.join_accept(T0 + 2)
    drive(device, T0 + 60, T0 + 1800, Measurements.constant(current_a=5.0))
    got = rows(tb.login("123456", T0 + 1800).export_history(T0 + 1800, "alarm", T0,
                                                           T0 + 1800))
    assert got and len(got) == sum(1 for r in device.storage if r.type == 0)
    assert got[0]["alarm"] == "current_alarm"
    assert got[0]["alarm_condition"] == "above_threshold"
    assert got[0]["alarm_channel"] == "1"
    assert float(got[0]["alarm_value"]) == 5.0 and got[0]["alarm_unit"] == "A"


def test_history_export_window_rules():
    device, tb = stored_device(hours=1)
    session = tb.login("123456", T0 + 7200)
    with pytest.raises(ExportError, match="14 days"):
        session.export_history(T0 + 7200, "periodic", T0 - 14 * DAY, T0 + DAY)  # 15 days
    with pytest.raises(ExportError):
        session.export_history(T0 + 7200, "periodic", T0 + 10, T0)
    with pytest.raises(ExportError):
        session.export_history(T0 + 7200, "history", T0, T0 + 10)
    exactly = session.export_history(T0 + 7200, "periodic", T0 - 13 * DAY, T0 + DAY)
    assert len(rows(exactly)) == sum(1 for r in device.storage if r.type == 1) > 0


def test_history_export_with_storage_disabled_or_empty_is_a_header():
    _, tb = stored_device(hours=1)
    session = tb.login("123456", T0 + 7200)
    assert session.export_history(T0 + 7200, "monthly_energy", T0, T0 + DAY) == \
        "time_utc,time_local,type,kind\n"
    session.write(T0 + 7200, {"type": "data_storage", "enabled": False})
    assert session.export_history(T0 + 7200, "periodic", T0, T0 + DAY) == \
        "time_utc,time_local,type,kind\n"


# --- reset ----------------------------------------------------------------------------------------

def test_reset_restores_the_defaults_and_ends_the_session():
    device, tb = stored_device(hours=1)
    session = tb.login("123456", T0 + 7200)
    session.write(T0 + 7200, {"type": "reporting_interval", "minutes": 45})
    session.write_lorawan(T0 + 7200, region="KR920", data_rate=1)
    session.change_password(T0 + 7200, "abc_12", "abc_12")
    assert len(device.storage) > 0
    session.reset(T0 + 7200)
    factory = Settings.factory(device.identity)
    assert device.settings.template() == factory.template()
    assert device.settings.password == "123456"
    assert len(device.storage) == 0
    assert device.state == "joining" and device.bank.powered[0]  # rebooted, still supplied
    with pytest.raises(AuthError):
        session.read_settings(T0 + 7201)
    again = tb.login("123456", T0 + 7210)
    assert again.warnings  # the default password is back
    assert any(type(o).__name__ == "JoinRequest" for o in tb.outputs)


# --- the CLI -------------------------------------------------------------------------------------

runner = CliRunner()


def run(*args: str):
    return runner.invoke(toolbox_app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "dev.json"
    result = run("new", path, "--serial-number-index", 7)
    assert result.exit_code == 0, result.output
    return path


def read_json(path, *extra):
    result = run("read", path, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def setting(data, type_, channel=None):
    return next(d for d in data["settings"]
                if d["type"] == type_ and d.get("channel") == channel)


def test_cli_new_and_info(state):
    result = run("info", state, "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["serial_number"] == Identity.numbered(7).serial_number
    assert "default" in result.stderr and "123456" in result.stderr
    assert one_error_line(run("new", state)).startswith("error: ")  # no silent overwrite


def test_cli_write_key_value_item_and_json(state, tmp_path):
    extra = tmp_path / "more.json"
    extra.write_text(json.dumps([{"type": "retrieval_interval", "seconds": 300}]))
    result = run("write", state, "reporting_interval.minutes=20", "67.ct_range_1=4000A",
                 "7704.max_a=50", "lorawan.region=US915", "lorawan.data_rate=2",
                 "--item", '{"type":"data_storage","enabled":true}', "--json", extra)
    assert result.exit_code == 0, result.output
    data = read_json(state)
    assert setting(data, "reporting_interval")["minutes"] == 20
    assert setting(data, "data_storage")["enabled"] is True
    assert setting(data, "retrieval_interval")["seconds"] == 300
    assert setting(data, "current_threshold", 5)["max_a"] == 50
    group_a = setting(data, "current_interface_a")
    assert [group_a[f"ct_range_{k}"] for k in (1, 2, 3)] == ["4000A"] * 3  # Rogowski rule
    assert (data["lorawan"]["region"], data["lorawan"]["data_rate"]) == ("US915", 2)


@pytest.mark.parametrize("args", [
    ("reporting_interval.minutes=0",),
    ("data_storage.enabled=true", "reporting_interval.minutes=0"),
    ("current_threshold.max_a=3",),  # twelve channels: which one?
    ("lorawan.data_rate=9",),
    ("nonsense",),
    ("--item", "{not json"),
    (),
])
def test_cli_refused_write_leaves_the_state_file_alone(state, args):
    before = state.read_bytes()
    one_error_line(run("write", state, *args))
    assert state.read_bytes() == before


def test_cli_password_change(state):
    one_error_line(run("password", state, "--new", "abc-12"))
    result = run("password", state, "--new", "abc_12")
    assert result.exit_code == 0, result.output
    assert "wrong password" in one_error_line(run("info", state))
    result = run("info", state, "--password", "abc_12")
    assert result.exit_code == 0, result.output
    assert "123456" not in result.stderr


def test_cli_template_between_devices(state, tmp_path):
    run("write", state, "reporting_interval.minutes=25", "66.wiring=3P3W")
    template = tmp_path / "t.json"
    result = run("template-export", state, template)
    assert result.exit_code == 0, result.output
    other = tmp_path / "other.json"
    assert run("new", other, "--serial-number-index", 8).exit_code == 0
    result = run("template-import", other, template)
    assert result.exit_code == 0, result.output

    def without_name(path):  # a template never copies the device's Bluetooth name
        return [x for x in read_json(path)["settings"] if x["type"] != "bluetooth_name"]

    assert without_name(other) == without_name(state)
    names = {x["name"] for p in (state, other) for x in read_json(p)["settings"]
             if x["type"] == "bluetooth_name"}
    assert len(names) == 2

    foreign = json.loads(template.read_text())
    foreign["model"] = "WT101"
    template.write_text(json.dumps(foreign))
    before = other.read_bytes()
    assert "WT101" in one_error_line(run("template-import", other, template))
    assert other.read_bytes() == before


def test_cli_reset(state):
    run("write", state, "reporting_interval.minutes=25")
    run("password", state, "--new", "abc_12")
    result = run("reset", state, "--password", "abc_12")
    assert result.exit_code == 0, result.output
    data = read_json(state)
    factory = Settings.factory(Identity.numbered(7)).template(include_name=True)
    assert data["settings"] == json.loads(json.dumps(factory["settings"]))


def test_cli_sync_time_and_read_table(state):
    result = run("sync-time", state, "--offset-min", "120", "--time", str(T0))
    assert result.exit_code == 0, result.output
    assert setting(read_json(state), "time_zone")["offset_min"] == 120
    result = run("read", state)
    assert result.exit_code == 0 and "reporting_interval" in result.stdout


def test_cli_unreadable_state(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    one_error_line(run("info", bad))
    bad.write_text(json.dumps({"format": "cth01-toolbox-state", "version": 1,
                               "identity": {"serial_number": 5}}))
    one_error_line(run("info", bad))
    one_error_line(run("info", tmp_path / "missing.json"))
