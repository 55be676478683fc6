"""The firmware of one virtual CTH01: a sans-IO state machine driven by an injected clock.

Theory of operation
-------------------
Inputs are method calls that carry the time they happen at (Unix seconds, UTC): `power_on`,
`power_off`, `tick(now, measurements)`, `receive_downlink`, and the network's answers
`join_accept`, `link_check_answer`, `device_time_answer`. Every call returns the outputs the
device produces (`UplinkFrame`, `JoinRequest`, `LinkCheckRequest`, `DeviceTimeRequest`), each
stamped with the instant it is sent, in time order. Nothing here sleeps, reads a clock, or
touches a socket, so a test can run a year of firmware life in seconds and a `Fleet` can run
ten thousand devices in one process.

Per-second work (settings applied to the measurements, energy registers, monthly extremes,
threshold and over-range evaluation) happens in a `Bank` row, vectorised across a fleet. The
firmware runs only when its row wakes it: a timer is due or an alarm condition changed.
Timers live in a heap of (time, seq, kind, token, data); a timer whose token is stale was
cancelled. Ticks may be coarse (a year in 10-minute steps): every timer due up to `now` fires
at its own instant, with the latest measurement.

State kept across reboots and power cuts ("flash"): settings, stored records, energy
registers, the retransmission window, the clock (an RTC). Lost: timers, the network session,
alarm repeat counters.

Rules and their sources (guide chapters 4 and 5): docs/device.md.

Must never: encode bytes by hand (every frame goes through `cth01.protocol`), read the wall
clock, or do I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cth01.protocol import (
    DecodeError,
    GroupReading,
    Item,
    decode_downlink,
    encode_uplink,
    item_class,
    items,
)

from . import storage as st
from .bank import (
    CONDITION_CODES,
    CT_RANGE_A,
    EXTREME_COLUMNS,
    NEVER,
    OVER_RANGE_SLOTS,
    THRESHOLD_SLOTS,
    Bank,
)
from .clock import DstRule, LocalClock
from .measurements import Measurements
from .settings import (
    _ALIASES,
    GROUPS,
    SETTING_COMMANDS,
    TWO_BYTE_ECHO_IDS,
    Identity,
    SettingError,
    Settings,
    identifier,
    setting_items,
    threshold_bounds,
)

INFO_PACKETS = 4  # the basic-information packet is reported four times after joining
INFO_SPACING_S = 10
FIRST_REPORT_AFTER_JOIN_S = 60
JOIN_RETRY_S = 60
LINK_CHECK_SPACING_S = 10
TIME_SYNC_PERIOD_S = 5 * 86400  # DeviceTimeReq every 5 days since the last sync
OVER_RANGE_REPEATS, OVER_RANGE_INTERVAL_S = 3, 300  # passive alarms: 3 times, 5 min apart
POWER_FAILURE_REPORTS = 2
RANGE_QUERY_LIMIT = 300
MONTHLY_POINT_TOLERANCE_S = 16 * 86400

# ef result codes (firmware names, table REPLY_RESULTS_FIRMWARE)
SUCCESS, UNKNOWN, PARAMETER_ERROR, EXECUTE_ERROR = (
    "success", "unknown_command", "write_parameter_error", "write_error")

_THRESHOLD_ITEMS = {"temperature": "temperature_threshold", "current": "current_threshold",
                    "voltage": "voltage_threshold", "thdi": "thdi_threshold",
                    "thdv": "thdv_threshold", "voltage_unbalance": "voltage_unbalance_threshold"}
_ALARM_OF = {"temperature": ("temperature_alarm", "temperature_c"),
             "current": ("current_alarm", "current_a"),
             "voltage": ("voltage_alarm", "voltage_v"),
             "thdi": ("thdi_alarm", "thdi_pct"), "thdv": ("thdv_alarm", "thdv_pct"),
             "voltage_unbalance": ("voltage_unbalance_alarm", "unbalance_pct")}
# the bank array an alarm reports and what its wire field can carry
_ALARM_VALUE = {"temperature": ("temperature_c", -327, 327), "current": ("current_a", 0, 167772),
                "voltage": ("voltage_v", 0, 655), "thdi": ("thdi_pct", 0, 655),
                "thdv": ("thdv_pct", 0, 655), "voltage_unbalance": ("unbalance_pct", 0, 655)}
_ALARM_CODES = {"below": ("below_threshold", "below_threshold_cleared"),
                "above": ("above_threshold", "above_threshold_cleared"),
                "within": ("within_threshold", "within_threshold_cleared"),
                "outside": ("outside_threshold", "outside_threshold_cleared")}
_HISTORY_TYPE = {"alarm": st.ALARM, "periodic": st.PERIODIC,
                 "monthly_energy": st.MONTHLY_ENERGY, "monthly_extremes": st.MONTHLY_EXTREMES}
_ENERGY = ("imported_active_energy", "exported_active_energy", "imported_reactive_energy",
           "exported_reactive_energy", "apparent_energy")
_POWER = (("active_power", "active_power_w"), ("reactive_power", "reactive_power_var"),
          ("apparent_power", "apparent_power_va"))
_ENERGY_FIELD = {"imported_active_energy": "energy_wh", "exported_active_energy": "energy_wh",
                 "imported_reactive_energy": "energy_varh",
                 "exported_reactive_energy": "energy_varh", "apparent_energy": "energy_vah"}


# --- outputs -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UplinkFrame:
    """An application uplink. `kind` says why it was sent: info, periodic, alarm, reply,
    history (answer to 5b/5c), retransmission, monthly, config."""

    dev_eui: str
    time: int
    f_port: int
    payload: bytes
    kind: str


@dataclass(frozen=True, slots=True)
class JoinRequest:
    dev_eui: str
    time: int


@dataclass(frozen=True, slots=True)
class LinkCheckRequest:
    dev_eui: str
    time: int


@dataclass(frozen=True, slots=True)
class DeviceTimeRequest:
    dev_eui: str
    time: int


Output = UplinkFrame | JoinRequest | LinkCheckRequest | DeviceTimeRequest


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _r2(x: float, lo: float, hi: float) -> float:
    return round(min(max(float(x), lo), hi), 2)


# --- the device ----------------------------------------------------------------------------------

class VirtualCTH01:
    """One CTH01. Construct it, call `power_on(now)`, answer its `JoinRequest` with
    `join_accept`, then `tick` it with measurements. Pass `bank`/`row` to share a fleet's
    arrays (the `Fleet` does this); alone, the device owns a one-row bank."""

    def __init__(self, identity: Identity | None = None, *, settings: Settings | None = None,
                 bank: Bank | None = None, row: int = 0, clock_offset_s: int = 0,
                 storage_capacity: int = st.CAPACITY) -> None:
        self.identity = identity or Identity.numbered(0)
        self.settings = settings or Settings.factory(self.identity)
        self.dev_eui = self.identity.dev_eui
        self.bank = bank or Bank(1)
        self.row = row
        self.storage = st.RecordStore(storage_capacity)
        self.clock_offset_s = clock_offset_s  # device clock minus true time (RTC error)
        self.state = "off"  # off | joining | joined
        self.request_config = True  # ee in the basic-information packets (fresh or reset)
        self.last_sync: int | None = None
        self.last_link_ok: int | None = None
        self.lost_at: int | None = None  # data-lost time point while the link is down
        self.retransmit_window: tuple[int, int] | None = None
        self.retransmit_records: list[st.Record] = []
        self.retransmit_cursor = 0
        self.retrieval: dict[str, Any] | None = None
        self.month_start_energy = np.zeros_like(self.bank.energy_wh[row])
        self.month_start: int | None = None
        self.alarms: dict[tuple, dict[str, Any]] = {}  # active alarms by (quantity, channel, kind)
        self.joined_at: int | None = None
        self.fcnt = 0
        self._heap: list[tuple[int, int, str, int, Any]] = []
        self._seq = 0
        self._tokens: dict[str, int] = {}
        self._awaiting_link: int | None = None
        self._awaiting_call = 0
        self._calls = 0  # inputs handled so far: a MAC answer needs a later input to arrive
        self._now = 0
        self._clock_key: tuple | None = None
        self._clock: LocalClock | None = None
        self._sync_bank()

    # -- inputs ---------------------------------------------------------------------------

    def power_on(self, now: int) -> list[Output]:
        """Supply restored (or first installed): boot and start joining."""
        if self.state != "off":
            return []
        self._now = now
        self.bank.powered[self.row] = True
        self.bank.last_t[self.row] = -1
        return self._boot(now)

    def power_off(self, now: int) -> list[Output]:
        """The 12 V supply collapses: the power-failure alarm twice, then silence."""
        if self.state == "off":
            return []
        out: list[Output] = []
        body = encode_uplink([items.PowerFailureAlarm()])
        if self.settings.storage_enabled:
            self.storage.add(self._stamp(now), st.ALARM, (body,))
        if self.state == "joined":
            for k in range(POWER_FAILURE_REPORTS):
                out.append(self._frame(now + k, body, "alarm"))
        self._shutdown()
        return out

    def tick(self, now: int, measurements: Measurements | None = None) -> list[Output]:
        """Advance to `now`. `measurements` (one row) is what the inputs see from the previous
        tick to this one; None keeps the previous values."""
        if self.state == "off":
            return []
        self._now = now
        if measurements is None:
            measurements = self._held()
        rows, thr, over = self.bank.step(now, measurements, slice(self.row, self.row + 1))
        if rows.size == 0:
            return []
        return self.run(now, thr[0], over[0])

    def receive_downlink(self, now: int, payload: bytes, f_port: int | None = None
                         ) -> list[Output]:
        """A downlink frame from the network server (Class C: any time)."""
        if self.state != "joined":
            return []
        if f_port is not None and f_port != self.settings.lorawan.app_port:
            return []
        self._now = now
        out: list[Output] = []
        try:
            commands = decode_downlink(bytes(payload), dialect="auto")
        except DecodeError as e:
            answer = [_reply(UNKNOWN if "unknown id" in e.reason else PARAMETER_ERROR,
                             _echo_of_error(bytes(payload), e))]
            out += self._send(now, answer, "reply")
            return out
        answers: list[Item] = []
        after: list[tuple[str, Any]] = []
        for item in commands:
            answers += self._handle(now, item, after)
        out += self._send(now, answers, "reply")
        for action, arg in after:
            out += self._act(now, action, arg)
        self._reschedule_bank()
        return out

    def join_accept(self, now: int) -> list[Output]:
        """The network accepted a join request."""
        if self.state != "joining":
            return []
        self._now = now
        self.state = "joined"
        self.joined_at = now
        self.fcnt = 0
        self._cancel("join_retry")
        out: list[Output] = [DeviceTimeRequest(self.dev_eui, now)]
        for k in range(INFO_PACKETS):
            self._at(now + k * INFO_SPACING_S, "info", k, token=False)
        self._at(now + TIME_SYNC_PERIOD_S, "time_sync")
        if "report" not in self._tokens:
            self._at(now + FIRST_REPORT_AFTER_JOIN_S, "report")
        if self.lost_at is not None:
            self._start_retransmission(now)
        elif self.retransmit_window is not None:  # rebooted during a retransmission
            self._at(now + self.settings.retransmission_interval_s, "retransmit")
        out += self._due(now)
        self._reschedule_bank()
        return out

    def link_check_answer(self, now: int) -> list[Output]:
        """The network answered a LinkCheckReq."""
        if self._awaiting_link is not None:
            self.last_link_ok = self._stamp(self._awaiting_link)  # device clock, like records
            self._awaiting_link = None
            self._cancel("link_retry")
        return []

    def device_time_answer(self, now: int, network_time: int) -> list[Output]:
        """DeviceTimeAns: the network's GPS/UTC time at `now`."""
        self.clock_offset_s = int(network_time) - int(now)
        self.last_sync = now
        self._at(now + TIME_SYNC_PERIOD_S, "time_sync")
        self._schedule_monthly(now)
        self._reschedule_bank()
        return []

    # -- derived state ------------------------------------------------------------------

    @property
    def led(self) -> str:
        """The status LED (guide ch. 2): off, joining (red blinks once per join request),
        joined (red slow blink, the first minute after joining), alarm (red fast blink while a
        threshold alarm is active), normal (green)."""
        if self.state == "off":
            return "off"
        if self.state == "joining":
            return "joining"
        if any(k[2] == "threshold" for k in self.alarms):
            return "alarm"
        if self.joined_at is not None and self._now - self.joined_at < 60:
            return "joined"
        return "normal"

    @property
    def clock(self) -> LocalClock:
        """The device's local time (c7 time zone + c6 DST rule), rebuilt when they change."""
        key = (self.settings.items["c7"], self.settings.items["c6"])
        if self._clock_key != key:
            self._clock = LocalClock(key[0].offset_min, DstRule.from_item(key[1]))
            self._clock_key = key
        return self._clock

    def device_time(self, now: int) -> int:
        return now + self.clock_offset_s

    @property
    def next_due(self) -> int:
        return int(self.bank.next_due[self.row])

    # -- the run loop -----------------------------------------------------------------------

    def run(self, now: int, thr_changed: np.ndarray, over_changed: np.ndarray) -> list[Output]:
        """Called when the bank wakes this device: alarm transitions, then due timers."""
        self._now = now
        self._calls += 1
        out: list[Output] = []
        if thr_changed.any() or over_changed.any():
            out += self._alarm_transitions(now, thr_changed, over_changed)
        out += self._due(now)
        self._reschedule_bank()
        return out

    def _due(self, now: int) -> list[Output]:
        out: list[Output] = []
        while self._heap and self._heap[0][0] <= now and self.state != "off":
            t, _, kind, token, data = heapq.heappop(self._heap)
            if token and self._tokens.get(kind) != token:
                continue
            if token:
                del self._tokens[kind]
            out += getattr(self, f"_on_{kind}")(t, data)
        return out

    def _at(self, t: int, kind: str, data: Any = None, *, token: bool = True) -> None:
        self._seq += 1
        tok = 0
        if token:
            tok = self._seq
            self._tokens[kind] = tok
        heapq.heappush(self._heap, (int(t), self._seq, kind, tok, data))

    def _cancel(self, kind: str) -> None:
        self._tokens.pop(kind, None)

    def _reschedule_bank(self) -> None:
        while self._heap and self._heap[0][3] and \
                self._tokens.get(self._heap[0][2]) != self._heap[0][3]:
            heapq.heappop(self._heap)
        self.bank.next_due[self.row] = self._heap[0][0] if self._heap else NEVER

    # -- boot, session, link ---------------------------------------------------------------

    def _boot(self, now: int) -> list[Output]:
        self.state = "joining"
        self._heap.clear()
        self._tokens.clear()
        self._awaiting_link = None
        self.alarms.clear()
        self.bank.thr_state[self.row] = False
        self.bank.over_state[self.row] = False
        if self.retransmit_window is not None:
            self.retransmit_cursor = 0  # a reboot during retransmission resends the whole set
        self._schedule_monthly(now)
        self._at(now + JOIN_RETRY_S, "join_retry")
        self._reschedule_bank()
        return [JoinRequest(self.dev_eui, now)]

    def _shutdown(self) -> None:
        self.state = "off"
        self.bank.powered[self.row] = False
        self.bank.next_due[self.row] = NEVER
        self._heap.clear()
        self._tokens.clear()
        self.alarms.clear()
        self.retrieval = None

    def _on_join_retry(self, t: int, _: Any) -> list[Output]:
        if self.state != "joining":
            return []
        self._at(t + JOIN_RETRY_S, "join_retry")
        return [JoinRequest(self.dev_eui, t)]

    def _on_link_retry(self, t: int, remaining: int) -> list[Output]:
        if self._awaiting_link is None:
            return []
        if self._awaiting_call == self._calls:
            # the request went out during this very input (a coarse tick): the network cannot
            # have answered yet, so the next check waits for the next input
            self._at(max(t, self._now) + 1, "link_retry", remaining)
            return []
        if remaining > 0:
            self._awaiting_call = self._calls
            self._at(t + LINK_CHECK_SPACING_S, "link_retry", remaining - 1)
            return [LinkCheckRequest(self.dev_eui, t)]
        # no answer to any of the link checks: the network is gone
        self._awaiting_link = None
        self.state = "joining"
        if self.settings.storage_enabled and self.settings.retransmission_enabled:
            # a new outage during a retransmission: only the newest outage is sent afterwards
            self.lost_at = self.last_link_ok if self.last_link_ok is not None else \
                self._stamp(self.joined_at or t)
            self.retransmit_window = None
            self._cancel("retransmit")
        self._cancel("retrieve")
        self.retrieval = None
        self._at(t + JOIN_RETRY_S, "join_retry")
        return [JoinRequest(self.dev_eui, t)]

    def _on_time_sync(self, t: int, _: Any) -> list[Output]:
        self._at(t + TIME_SYNC_PERIOD_S, "time_sync")
        return [DeviceTimeRequest(self.dev_eui, t)] if self.state == "joined" else []

    def _on_info(self, t: int, k: int) -> list[Output]:
        if self.state != "joined":
            return []
        ident = self.identity
        info = [items.TslVersion(major=ident.tsl_version[0], minor=ident.tsl_version[1])]
        if self.request_config:
            info.append(items.ConfigRequest())
        info += [
            items.SerialNumber(serial_number=ident.serial_number),
            items.Version(hardware_major=ident.hardware_version[0],
                          hardware_minor=ident.hardware_version[1],
                          firmware_major=ident.firmware_version[0],
                          firmware_minor=ident.firmware_version[1], firmware_release=0,
                          firmware_alpha=0, firmware_unit_test=0, firmware_test=0),
            items.OemId(oem_id=ident.oem_id),
            items.DeviceStatus(status="on"),
            self.settings.items["cfd8"],
        ]
        if k == INFO_PACKETS - 1:
            self.request_config = False
        return self._send(t, info, "info")

    # -- periodic reports ---------------------------------------------------------------

    def _on_report(self, t: int, _: Any) -> list[Output]:
        self._at(t + self.settings.reporting_interval_s, "report")
        encoded = _parts(self.report_items())  # laid out once: stored and sent as is
        out: list[Output] = []
        if encoded and self.settings.storage_enabled:
            self.storage.add(self._stamp(t), st.PERIODIC, encoded)
        if self.state == "joined":
            out += self._send_encoded(t, encoded, "periodic")
            if self.settings.lorawan.rejoin_mode and self._awaiting_link is None:
                self._awaiting_link = t
                self._awaiting_call = self._calls
                self._at(t + LINK_CHECK_SPACING_S, "link_retry", self.settings.lorawan.link_checks)
                out.append(LinkCheckRequest(self.dev_eui, t))
        return out

    def report_items(self, parameters: Sequence[str] | None = None) -> list[Item]:
        """The items of a periodic report now (firmware layout, id order): exactly the
        parameters enabled in 6c."""
        b, r = self.bank, self.row
        enabled = set(self.settings.report_parameters if parameters is None else parameters)
        circuits = self.settings.circuits()
        out: list[Item] = []
        if "temperature" in enabled and not np.isnan(b.temperature_c[r]):
            out.append(items.Temperature(temperature_c=_r2(b.temperature_c[r], -20, 100)))
        if "voltage_unbalance" in enabled:
            out.append(items.VoltageUnbalance(unbalance_pct=_r2(b.unbalance_pct[r], 0, 100)))
        if "thdi" in enabled:
            out.append(items.Thdi(thdi_pct=tuple(_r2(x, 0, 100) for x in b.thdi_pct[r])))
        if "thdv" in enabled:
            out.append(items.Thdv(thdv_pct=tuple(_r2(x, 0, 100) for x in b.thdv_pct[r])))
        if "current" in enabled:
            out.append(items.Current(current_a=tuple(_r2(x, 0, 4000) for x in b.current_a[r])))
        if "voltage" in enabled:
            out.append(items.Voltage(voltage_v=tuple(_r2(x, 0, 500) for x in b.voltage_v[r])))
        if "power_factor" in enabled:
            out.append(items.PowerFactor(power_factor_pct=_groups(
                "abcd", circuits, b.power_factor_pct[r], b.group_power_factor_pct[r],
                lambda x: round(min(max(x, 0), 100)))))
        for name, field in _POWER:
            if name in enabled:
                values = getattr(b, field)[r]
                totals = getattr(b, f"group_{field}")[r]
                for half in ("ab", "cd"):
                    out.append(item_class(f"{name}_{half}")(
                        **{field: _groups(half, circuits, values, totals, _s32)}))
        energy = b.energy_wh[r]
        for k, name in enumerate(_ENERGY):
            if name in enabled:
                out += _energy_items(name, circuits, energy[:, k])
        return out

    # -- alarms -------------------------------------------------------------------------------

    def _alarm_transitions(self, now: int, thr_changed: np.ndarray, over_changed: np.ndarray
                           ) -> list[Output]:
        b, r = self.bank, self.row
        raised: list[Item] = []
        for slot in np.flatnonzero(thr_changed):
            quantity, channel = THRESHOLD_SLOTS[slot]
            setting = self._threshold_setting(quantity, channel)
            condition = setting.condition
            key = (quantity, channel, "threshold")
            if b.thr_state[r, slot]:
                code = _ALARM_CODES[condition][0]
                self.alarms[key] = {"code": code, "sent": 1, "since": now, "condition": condition}
                raised.append(self._alarm_item(quantity, channel, code))
                self._schedule_repeat(now, key)
            else:
                state = self.alarms.pop(key, None)
                if state is not None and self.settings.items["7c"].report_cleared:
                    raised.append(self._alarm_item(quantity, channel,
                                                   _ALARM_CODES[state["condition"]][1]))
        for slot in np.flatnonzero(over_changed):
            quantity, channel = OVER_RANGE_SLOTS[slot]
            key = (quantity, channel, "range")
            if b.over_state[r, slot]:
                self.alarms[key] = {"code": "above_range", "sent": 1, "since": now}
                raised.append(self._alarm_item(quantity, channel, "above_range"))
                self._schedule_repeat(now, key)
            elif self.alarms.pop(key, None) is not None:
                raised.append(self._alarm_item(quantity, channel, "above_range_cleared"))
        return self._emit_alarms(now, raised)

    def _schedule_repeat(self, now: int, key: tuple) -> None:
        interval = OVER_RANGE_INTERVAL_S if key[2] == "range" else \
            self.settings.items["7c"].repeat_interval_min * 60
        self._at(now + interval, "alarm_repeat", (key, self.alarms[key]["since"]), token=False)

    def _on_alarm_repeat(self, t: int, data: tuple) -> list[Output]:
        key, since = data
        state = self.alarms.get(key)
        if state is None or state["since"] != since:
            return []  # dismissed (or re-raised) since this repeat was planned
        times = OVER_RANGE_REPEATS if key[2] == "range" else self.settings.items["7c"].repeat_count
        if state["sent"] >= times:
            return []
        state["sent"] += 1
        if state["sent"] < times:
            self._schedule_repeat(t, key)
        return self._emit_alarms(t, [self._alarm_item(key[0], key[1], state["code"])])

    def _alarm_item(self, quantity: str, channel: int | None, code: str) -> Item:
        b, r = self.bank, self.row
        name, field = _ALARM_OF[quantity]
        source, low, high = _ALARM_VALUE[quantity]
        values = getattr(b, source)[r]
        kw: dict[str, Any] = {"alarm": code}
        if channel is None:
            kw[field] = _r2(values, low, high)
        else:
            kw["channel"] = channel
            kw[field] = _r2(values[channel - 1], low, high)
        return item_class(name)(**kw)

    def _emit_alarms(self, t: int, alarm_items: list[Item]) -> list[Output]:
        encoded = _parts(alarm_items)
        if self.settings.storage_enabled:
            for raw in encoded:  # one record per alarm
                self.storage.add(self._stamp(t), st.ALARM, (raw,))
        return self._send_encoded(t, encoded, "alarm")

    def _threshold_setting(self, quantity: str, channel: int | None) -> Item:
        return self.settings.get(_THRESHOLD_ITEMS[quantity], channel)

    # -- monthly summary ------------------------------------------------------------------

    def _schedule_monthly(self, now: int) -> None:
        m = self.settings.items["6d"]
        dev_now = self.device_time(now)
        t_dev = self.clock.next_monthly(dev_now, m.day, m.hour, m.minute)
        if self.month_start is None:
            self.month_start = dev_now
        self._at(t_dev - self.clock_offset_s, "monthly")

    def _on_monthly(self, t: int, _: Any) -> list[Output]:
        stamp = self._stamp(t)
        b, r = self.bank, self.row
        circuits = self.settings.circuits()
        energy = b.energy_wh[r] - self.month_start_energy
        energy_items: list[Item] = []
        for k, name in enumerate(_ENERGY):
            energy_items += _energy_items(name, circuits, energy[:, k])
        records = [(st.MONTHLY_ENERGY, "energy", energy_items)]
        if np.isfinite(b.month_max[r]).any():
            records += [(st.MONTHLY_EXTREMES, "minimum", self._extreme_items(b.month_min[r])),
                        (st.MONTHLY_EXTREMES, "maximum", self._extreme_items(b.month_max[r]))]
        for type_, kind, parts in records:
            self.storage.add(stamp, type_, _parts(parts), kind)
        self.month_start_energy = b.energy_wh[r].copy()
        self.month_start = stamp
        b.reset_month(r)
        self._schedule_monthly(t + 1)
        if self.state != "joined":
            return []
        recs = [st.Record(stamp, type_, _parts(parts), kind) for type_, kind, parts in records]
        return self._send_records(t, recs, "monthly", "monthly")

    def _extreme_items(self, row: np.ndarray) -> list[Item]:
        def col(name: str) -> np.ndarray:
            v = row[EXTREME_COLUMNS[name]]
            return np.where(np.isfinite(v), v, 0.0)

        circuits = self.settings.circuits()
        out: list[Item] = []
        t = row[EXTREME_COLUMNS["temperature_c"]][0]
        if np.isfinite(t):
            out.append(items.Temperature(temperature_c=_r2(t, -20, 100)))
        out.append(items.VoltageUnbalance(unbalance_pct=_r2(col("unbalance_pct")[0], 0, 100)))
        out.append(items.Thdi(thdi_pct=tuple(_r2(x, 0, 100) for x in col("thdi_pct"))))
        out.append(items.Thdv(thdv_pct=tuple(_r2(x, 0, 100) for x in col("thdv_pct"))))
        out.append(items.Current(current_a=tuple(_r2(x, 0, 4000) for x in col("current_a"))))
        out.append(items.Voltage(voltage_v=tuple(_r2(x, 0, 500) for x in col("voltage_v"))))
        out.append(items.PowerFactor(power_factor_pct=_groups(
            "abcd", circuits, col("power_factor_pct"), col("group_power_factor_pct"),
            lambda x: round(min(max(x, 0), 100)))))
        for name, field in _POWER:
            for half in ("ab", "cd"):
                out.append(item_class(f"{name}_{half}")(
                    **{field: _groups(half, circuits, col(field), col(f"group_{field}"), _s32)}))
        return out

    # -- retransmission and history queries ----------------------------------------------------

    def _start_retransmission(self, now: int) -> None:
        """The records to resend are fixed when the device rejoins: the periodic records
        stamped after the data-lost point up to now (a later clock change cannot move them)."""
        if self.lost_at is None:
            return
        self.retransmit_window = (self.lost_at, self._stamp(now))
        self.retransmit_records = self.storage.after(st.PERIODIC, *self.retransmit_window)
        self.retransmit_cursor = 0
        self.lost_at = None
        self._at(now + self.settings.retransmission_interval_s, "retransmit")

    def _on_retransmit(self, t: int, _: Any) -> list[Output]:
        if self.retransmit_window is None or self.state != "joined":
            return []
        pending = self.retransmit_records
        payloads, used = self._batch(pending[self.retransmit_cursor:], "historical")
        self.retransmit_cursor += used
        if self.retransmit_cursor >= len(pending):
            self.retransmit_window, self.retransmit_records = None, []
        else:
            self._at(t + self.settings.retransmission_interval_s, "retransmit")
        return [self._frame(t + k, p, "retransmission") for k, p in enumerate(payloads)]

    def _on_retrieve(self, t: int, _: Any) -> list[Output]:
        q = self.retrieval
        if q is None or self.state != "joined":
            return []
        payloads, used = self._batch(q["records"][q["cursor"]:], "historical")
        q["cursor"] += used
        if q["cursor"] < len(q["records"]):
            self._at(t + self.settings.retrieval_interval_s, "retrieve")
        else:
            self.retrieval = None
        return [self._frame(t + k, p, "history") for k, p in enumerate(payloads)]

    def _batch(self, records: list[st.Record], mode: str) -> tuple[list[bytes], int]:
        """The next uplink(s) of a record stream: as many whole ed records as fit one payload;
        a record too large for one payload goes alone, split at item boundaries into several
        records with the same header over consecutive uplinks. Returns (payloads, records
        consumed)."""
        limit = self.settings.lorawan.max_payload
        payload, used = b"", 0
        for rec in records:
            chunks = _record_chunks(rec, mode, limit)
            if len(chunks) > 1:
                return (chunks, 1) if used == 0 else ([payload], used)
            if payload and len(payload) + len(chunks[0]) > limit:
                break
            payload += chunks[0]
            used += 1
        return ([payload], used) if used else ([], 0)

    def _send_records(self, t: int, records: list[st.Record], mode: str, kind: str
                      ) -> list[Output]:
        """Send records now, in as many uplinks as they need (one second apart)."""
        out: list[Output] = []
        while records:
            payloads, used = self._batch(records, mode)
            for p in payloads:
                out.append(self._frame(t + len(out), p, kind))
            records = records[used:]
        return out

    # -- downlink commands -------------------------------------------------------------------

    def _handle(self, now: int, item: Item, after: list[tuple[str, Any]]) -> list[Item]:
        name = item.command_name
        base = _ALIASES.get(name, name)
        if base in SETTING_COMMANDS:
            try:
                key, _stored = self.settings.apply(item)
            except SettingError:
                return [_reply(PARAMETER_ERROR, identifier(item))]
            after.append(("applied", base))
            return [_reply(SUCCESS, key)]
        handler = getattr(self, f"_cmd_{name}", None)
        if handler is None:
            return [_reply(UNKNOWN, identifier(item))]
        return handler(now, item, after)

    def _cmd_config_query(self, now: int, item: Item, after: list) -> list[Item]:
        found = self.settings.items.get(item.identifier)
        if found is None and item.identifier[:2] == "61":
            found = self.settings.items.get("61")
        return [found] if found is not None else [_reply(UNKNOWN, item.identifier)]

    def _cmd_query_all_config(self, now: int, item: Item, after: list) -> list[Item]:
        return setting_items(self.settings.items.values())

    def _cmd_query_storage_settings(self, now: int, item: Item, after: list) -> list[Item]:
        return [self.settings.items[k] for k in ("c500", "c501", "c502", "c503")]

    def _cmd_threshold_query(self, now: int, item: Item, after: list) -> list[Item]:
        name = _THRESHOLD_ITEMS[item.threshold]
        return setting_items(i for i in self.settings.items.values() if i.command_name == name)

    def _cmd_enquire_periodic_report(self, now: int, item: Item, after: list) -> list[Item]:
        after.append(("report_now", None))
        return []

    def _cmd_sync_time(self, now: int, item: Item, after: list) -> list[Item]:
        after.append(("time_request", None))
        return [_reply(SUCCESS, "b8")]

    def _cmd_set_time(self, now: int, item: Item, after: list) -> list[Item]:
        self.clock_offset_s = int(item.time.timestamp()) - now
        after.append(("applied", "time"))
        return [_reply(SUCCESS, "b7")]

    def _cmd_reboot(self, now: int, item: Item, after: list) -> list[Item]:
        after.append(("reboot", None))
        return [_reply(SUCCESS, "be")]

    def _cmd_factory_reset(self, now: int, item: Item, after: list) -> list[Item]:
        after.append(("factory_reset", None))
        return [_reply(SUCCESS, "bf")]

    def _cmd_rejoin(self, now: int, item: Item, after: list) -> list[Item]:
        after.append(("rejoin", None))
        return [_reply(SUCCESS, "b6")]

    def _cmd_sequence_number_check(self, now: int, item: Item, after: list) -> list[Item]:
        return [item]

    def _cmd_order_check(self, now: int, item: Item, after: list) -> list[Item]:
        return [item]

    def _cmd_clear_history(self, now: int, item: Item, after: list) -> list[Item]:
        self.storage.clear(_HISTORY_TYPE[item.record_type])
        return [_reply(SUCCESS, "5e")]

    def _cmd_clear_energy(self, now: int, item: Item, after: list) -> list[Item]:
        self.clear_energy(item.channel)
        return [_reply(SUCCESS, "5f")]

    def _cmd_history_query_point(self, now: int, item: Item, after: list) -> list[Item]:
        type_ = _HISTORY_TYPE[item.record_type]
        tolerance = MONTHLY_POINT_TOLERANCE_S if type_ >= st.MONTHLY_ENERGY \
            else self.settings.reporting_interval_s
        found = self.storage.nearest(type_, int(item.time.timestamp()), tolerance) \
            if self.settings.storage_enabled else []
        if not found:
            return [_reply(EXECUTE_ERROR, "5b")]
        after.append(("send_records", (found, "target_time")))
        return [_reply(SUCCESS, "5b")]

    def _cmd_history_query_range(self, now: int, item: Item, after: list) -> list[Item]:
        start, end = int(item.start.timestamp()), int(item.end.timestamp())
        if start > end:
            return [_reply(PARAMETER_ERROR, "5c")]
        found = self.storage.range(_HISTORY_TYPE[item.record_type], start, end,
                                   RANGE_QUERY_LIMIT) if self.settings.storage_enabled else []
        if not found:
            return [_reply(EXECUTE_ERROR, "5c")]
        self.retrieval = {"type": item.record_type, "records": found, "cursor": 0}
        self._at(now + 1, "retrieve")
        return [_reply(SUCCESS, "5c")]

    def _cmd_history_query_stop(self, now: int, item: Item, after: list) -> list[Item]:
        if self.retrieval is not None and self.retrieval["type"] == item.record_type:
            self.retrieval = None
            self._cancel("retrieve")
        return [_reply(SUCCESS, "5d")]

    def _act(self, now: int, action: str, arg: Any) -> list[Output]:
        if action == "applied":
            self._sync_bank()
            if arg == "reporting_interval" and "report" in self._tokens:
                self._at(now + self.settings.reporting_interval_s, "report")
            if arg in ("monthly_summary_time", "time_zone", "daylight_saving_time", "time"):
                self._schedule_monthly(now)
            return []
        if action == "report_now":
            parts = [*self.report_items(), self.settings.items["61"]]
            return self._send(now + 1, parts, "periodic")
        if action == "time_request":
            return [DeviceTimeRequest(self.dev_eui, now)]
        if action == "send_records":
            records, mode = arg
            return self._send_records(now + 1, records, mode, "history")
        if action == "reboot":
            return self.reboot(now + 1)
        if action == "factory_reset":
            return self.factory_reset(now + 1)
        if action == "rejoin":
            self.state = "off"
            return self._boot(now + 1)
        raise AssertionError(action)

    # -- maintenance (also used by the ToolBox interface) ------------------------------------

    def reboot(self, now: int) -> list[Output]:
        """Restart the firmware: the session and timers are lost, flash is kept. A device
        without power does nothing."""
        if self.state == "off":
            return []
        self._now = now
        self.state = "off"
        return self._boot(now)

    def factory_reset(self, now: int) -> list[Output]:
        """Settings back to the defaults, stored records and energy registers erased; the
        next basic-information packets carry the device-request item (ee)."""
        self.settings = Settings.factory(self.identity)
        self.storage.clear()
        self.clear_energy(0)
        self.retransmit_window, self.lost_at, self.retrieval = None, None, None
        self.request_config = True
        self.bank.reset_month(self.row)
        self.month_start = None
        self._sync_bank()
        return self.reboot(now)

    def clear_energy(self, channel: int) -> None:
        """5f: 0 clears every register; 1-12 that channel (and its group's total when the
        group is three-phase)."""
        e = self.bank.energy_wh[self.row]
        if channel == 0:
            e[:] = 0
            self.month_start_energy[:] = 0
            return
        rows = [channel - 1]
        g = (channel - 1) // 3
        if self.settings.circuits()[g] == "three_phase":
            rows.append(12 + g)
        e[rows] = 0
        self.month_start_energy[rows] = 0

    # -- helpers --------------------------------------------------------------------------------

    def _stamp(self, t: int) -> int:
        return int(t + self.clock_offset_s)

    def _held(self) -> Measurements:
        """The previous second's raw inputs are not kept; holding means re-feeding the values
        the device shows, with the direction undone."""
        b, r = self.bank, slice(self.row, self.row + 1)
        sign = np.where(b.sign[r] == 0, 1, b.sign[r])
        return Measurements(
            current_a=b.current_a[r].copy(), voltage_v=b.voltage_v[r].copy(),
            active_power_w=b.active_power_w[r] * sign,
            reactive_power_var=b.reactive_power_var[r] * sign,
            apparent_power_va=b.apparent_power_va[r].copy(), thdi_pct=b.thdi_pct[r].copy(),
            thdv_pct=b.thdv_pct[r].copy(), unbalance_pct=b.unbalance_pct[r].copy(),
            temperature_c=b.temperature_c[r] - b.temp_offset_c[r])

    def _sync_bank(self) -> None:
        """Copy the settings the per-second work needs into this device's bank row."""
        s = self.settings
        signs, ranges = [], []
        for ch in range(1, 13):
            direction, ct = s.channel_interface(ch)
            signs.append(-1.0 if direction == "reverse" else 1.0)
            ranges.append(CT_RANGE_A[ct])
        cal = s.items["6b"]
        self.bank.set_interface(self.row, signs=signs, ranges_a=ranges,
                                three_phase=[c == "three_phase" for c in s.circuits()],
                                temp_offset_c=cal.offset_c if cal.enabled else 0.0)
        cond, lo, hi = [], [], []
        for quantity, channel in THRESHOLD_SLOTS:
            item = self._threshold_setting(quantity, channel)
            c = CONDITION_CODES[item.condition] if item.enabled else 0
            low, high = threshold_bounds(item)
            cond.append(c)
            lo.append(float(low))
            hi.append(float(high))
        old = (self.bank.thr_cond[self.row].tolist(), self.bank.thr_lo[self.row].tolist(),
               self.bank.thr_hi[self.row].tolist())
        if old != (cond, lo, hi):
            self.bank.set_thresholds(self.row, cond, lo, hi)
            for key in [k for k in self.alarms if k[2] == "threshold"]:
                del self.alarms[key]
            self.bank.poke[self.row] = True

    def _frame(self, t: int, payload: bytes, kind: str) -> UplinkFrame:
        self.fcnt += 1
        return UplinkFrame(self.dev_eui, int(t), self.settings.lorawan.app_port, payload, kind)

    def _send(self, t: int, parts: Iterable[Item], kind: str) -> list[Output]:
        """Split items at command boundaries into payloads the data rate allows."""
        return self._send_encoded(t, _parts(list(parts)), kind)

    def _send_encoded(self, t: int, encoded: tuple[bytes, ...], kind: str) -> list[Output]:
        """`_send` for items already laid out one by one."""
        if not encoded or self.state != "joined":
            return []
        limit = self.settings.lorawan.max_payload
        out: list[Output] = []
        current = b""
        for raw in encoded:
            if current and len(current) + len(raw) > limit:
                out.append(self._frame(t, current, kind))
                current = b""
            current += raw
        out.append(self._frame(t, current, kind))
        return out


# --- module helpers --------------------------------------------------------------------------

def _s32(x: float) -> int:
    value = round(min(max(float(x), -2 ** 31 + 2), 2 ** 31 - 1))
    return 0 if value == -1 else value  # -1 (0xFFFFFFFF) is the "no data" sentinel on the wire


def _u32(x: float) -> int:
    return int(x) % (2 ** 32 - 1)  # the register wraps before the no-data sentinel


def _groups(groups: str, circuits: Sequence[str], channels: np.ndarray, totals: np.ndarray,
            conv: Any) -> tuple[GroupReading, ...]:
    out = []
    for g in groups:
        k = GROUPS.index(g)
        if circuits[k] == "three_phase":
            out.append(GroupReading(group=g, phase="three", total=conv(totals[k])))
        else:
            out.append(GroupReading(group=g, phase="single",
                                    channels=tuple(conv(x) for x in channels[3 * k:3 * k + 3])))
    return tuple(out)


def _energy_items(name: str, circuits: Sequence[str], registers: np.ndarray) -> list[Item]:
    """Items of one energy register for groups a+b and c+d; registers (16,) Wh."""
    field = _ENERGY_FIELD[name]
    out = []
    for half in ("ab", "cd"):
        out.append(item_class(f"{name}_{half}")(
            **{field: _groups(half, circuits, registers[:12], registers[12:], _u32)}))
    return out


def _parts(parts: list[Item]) -> tuple[bytes, ...]:
    return tuple(encode_uplink([i]) for i in parts)


def _record_chunks(rec: st.Record, mode: str, limit: int) -> list[bytes]:
    """One stored record as ed records no larger than `limit`; a record that does not fit is
    split at item boundaries into several records with the same header (and 40 marker).
    Monthly records replayed by a range query or retransmission carry the monthly mode."""
    if rec.kind is not None and mode == "historical":
        mode = "monthly"
    head = encode_uplink([items.HistoryHeader(mode=mode, timestamp=_utc(rec.timestamp))])
    if rec.kind is not None:
        head += encode_uplink([items.MonthlyKind(kind=rec.kind)])
    chunks: list[bytes] = []
    current = b""
    for part in rec.body:
        if current and len(head) + len(current) + len(part) > limit:
            chunks.append(head + current)
            current = b""
        current += part
    chunks.append(head + current)
    return chunks


def _reply(result: str, echo: str) -> Item:
    return items.CommandReply(result=result, echo=echo)


def _echo_of_error(payload: bytes, e: DecodeError) -> str:
    """The identifier of the command a refused frame failed in: the last position at or
    before the error offset that holds that command's id."""
    at = e.offset or 0
    if e.command is None or not payload:
        return payload[:1].hex() or "00"
    start = next((k for k in range(min(at, len(payload) - 1), -1, -1)
                  if payload[k] == e.command), 0)
    n = 2 if e.command in TWO_BYTE_ECHO_IDS and start + 1 < len(payload) else 1
    return payload[start:start + n].hex()
