"""The per-second work of many virtual CTH01s at once, as numpy arrays (one row per device).

Owns: everything the firmware does every second, vectorised over devices — applying the
current-interface settings to the raw measurements (CT direction, "none" channels, three-phase
group totals, power factor), the energy registers, the monthly minimum / maximum of every
periodic quantity, and the evaluation of threshold and over-range conditions with the change
detection that wakes a device up. A lone `VirtualCTH01` owns a one-row bank; a `Fleet` shares
one bank between all its devices, so ten thousand devices cost one numpy pass per second.

Must never: build frames, schedule, or keep per-device Python state (that is firmware.py).
"""

from __future__ import annotations

import numpy as np

from cth01.metering.config import CT_RANGES_A
from cth01.metering.engine import REGISTERS, VOLTAGE_RANGE_V

from .measurements import CHANNELS, Measurements

NEVER = np.iinfo(np.int64).max
GROUP_COUNT = 4
REGISTER_ROWS = CHANNELS + GROUP_COUNT  # channels 1-12, then groups a-d (three-phase only)
# ranges in amperes; a channel with no CT ("none") counts as 0 A: nothing connected
CT_RANGE_A = {name: amps or 0.0 for name, amps in CT_RANGES_A.items()}

# Threshold slots: which quantity and channel each column of the threshold arrays watches.
THRESHOLD_SLOTS: tuple[tuple[str, int | None], ...] = (
    ("temperature", None),
    *(("current", ch) for ch in range(1, 13)),
    *(("voltage", ph) for ph in range(1, 4)),
    *(("thdi", ch) for ch in range(1, 13)),
    *(("thdv", ph) for ph in range(1, 4)),
    ("voltage_unbalance", None),
)
SLOT_OF = {key: k for k, key in enumerate(THRESHOLD_SLOTS)}
# Over-range slots: current channels 1-12, then voltage phases 1-3.
OVER_RANGE_SLOTS: tuple[tuple[str, int], ...] = (
    *(("current", ch) for ch in range(1, 13)), *(("voltage", ph) for ph in range(1, 4)))
CONDITION_CODES = {"disabled": 0, "below": 1, "above": 2, "within": 3, "outside": 4}

# Monthly extremes: the columns of `month_min` / `month_max`.
_EXTREME_LAYOUT = (("temperature_c", 1), ("unbalance_pct", 1), ("thdi_pct", 12), ("thdv_pct", 3),
                   ("current_a", 12), ("voltage_v", 3), ("power_factor_pct", 12),
                   ("active_power_w", 12), ("reactive_power_var", 12), ("apparent_power_va", 12),
                   ("group_power_factor_pct", 4), ("group_active_power_w", 4),
                   ("group_reactive_power_var", 4), ("group_apparent_power_va", 4))
EXTREME_COLUMNS: dict[str, slice] = {}
_c = 0
for _name, _n in _EXTREME_LAYOUT:
    EXTREME_COLUMNS[_name] = slice(_c, _c + _n)
    _c += _n
EXTREME_WIDTH = _c


class Bank:
    """Arrays for `devices` rows. Settings-derived arrays are written by the firmware of each
    row (`set_interface`, `set_thresholds`); `step` advances every powered row by one
    measurement and says which rows need their firmware to run."""

    def __init__(self, devices: int) -> None:
        d = self.devices = devices
        # settings
        self.sign = np.ones((d, CHANNELS))
        self.range_a = np.zeros((d, CHANNELS))
        self.three_phase = np.zeros((d, GROUP_COUNT), bool)
        self.temp_offset_c = np.zeros(d)
        slots = len(THRESHOLD_SLOTS)
        self.thr_cond = np.zeros((d, slots), np.int8)
        self.thr_lo = np.zeros((d, slots))
        self.thr_hi = np.zeros((d, slots))
        # state
        self.powered = np.zeros(d, bool)
        self.last_t = np.full(d, -1, np.int64)
        self.next_due = np.full(d, NEVER, np.int64)
        self.energy_wh = np.zeros((d, REGISTER_ROWS, len(REGISTERS)))
        self.thr_state = np.zeros((d, slots), bool)
        self.over_state = np.zeros((d, len(OVER_RANGE_SLOTS)), bool)
        self.month_min = np.full((d, EXTREME_WIDTH), np.inf)
        self.month_max = np.full((d, EXTREME_WIDTH), -np.inf)
        # the latest values as the device presents them
        z12, z3, z4 = np.zeros((d, CHANNELS)), np.zeros((d, 3)), np.zeros((d, GROUP_COUNT))
        self.current_a, self.voltage_v = z12.copy(), z3.copy()
        self.active_power_w, self.reactive_power_var = z12.copy(), z12.copy()
        self.apparent_power_va, self.power_factor_pct = z12.copy(), z12.copy()
        self.thdi_pct, self.thdv_pct = z12.copy(), z3.copy()
        self.unbalance_pct = np.zeros(d)
        self.temperature_c = np.full(d, np.nan)
        self.group_active_power_w, self.group_reactive_power_var = z4.copy(), z4.copy()
        self.group_apparent_power_va, self.group_power_factor_pct = z4.copy(), z4.copy()
        # rows whose firmware asked to run at the next step regardless of the clock
        self.poke = np.zeros(d, bool)

    # -- settings ---------------------------------------------------------------------

    def set_interface(self, row: int, *, signs: list[float], ranges_a: list[float],
                      three_phase: list[bool], temp_offset_c: float) -> None:
        self.sign[row] = signs
        self.range_a[row] = ranges_a
        self.three_phase[row] = three_phase
        self.temp_offset_c[row] = temp_offset_c

    def set_thresholds(self, row: int, cond: list[int], lo: list[float], hi: list[float]
                       ) -> None:
        self.thr_cond[row] = cond
        self.thr_lo[row] = lo
        self.thr_hi[row] = hi
        # a changed threshold is evaluated afresh: an alarm still true fires again
        self.thr_state[row] = False

    # -- the second -------------------------------------------------------------------

    def step(self, now: int, m: Measurements, rows: slice = slice(None)
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance the rows `rows` (a slice of the bank) to `now` with measurement `m` (one row
        per bank row in the slice). Returns (rows needing their firmware, as absolute indices;
        the threshold-state change mask (n, 32); the over-range change mask (n, 15)) for those
        rows. Unpowered rows are left untouched."""
        idx = np.arange(self.devices)[rows]
        powered = self.powered[rows]
        if not powered.all():
            idx = idx[powered]
            m = _take(m, powered)
        if idx.size == 0:
            return idx, np.zeros((0, len(THRESHOLD_SLOTS)), bool), \
                np.zeros((0, len(OVER_RANGE_SLOTS)), bool)
        sel = idx if idx.size != self.devices else slice(None)
        dt = np.where(self.last_t[sel] < 0, 0, now - self.last_t[sel]).clip(0, None)
        self.last_t[sel] = now

        connected = self.range_a[sel] > 0
        sign = self.sign[sel] * connected
        cur = np.abs(m.current_a) * connected
        p = m.active_power_w * sign
        q = m.reactive_power_var * sign
        s = np.abs(m.apparent_power_va) * connected
        pf = _pf(p, s)
        three = self.three_phase[sel]
        gp = p.reshape(-1, GROUP_COUNT, 3).sum(2) * three
        gq = q.reshape(-1, GROUP_COUNT, 3).sum(2) * three
        gs = s.reshape(-1, GROUP_COUNT, 3).sum(2) * three
        gpf = _pf(gp, gs)
        temp = m.temperature_c + self.temp_offset_c[sel]

        for name, value in (("current_a", cur), ("voltage_v", m.voltage_v),
                            ("active_power_w", p), ("reactive_power_var", q),
                            ("apparent_power_va", s), ("power_factor_pct", pf),
                            ("thdi_pct", m.thdi_pct * connected), ("thdv_pct", m.thdv_pct),
                            ("unbalance_pct", m.unbalance_pct), ("temperature_c", temp),
                            ("group_active_power_w", gp), ("group_reactive_power_var", gq),
                            ("group_apparent_power_va", gs), ("group_power_factor_pct", gpf)):
            getattr(self, name)[sel] = value

        # energy registers (Wh): imported/exported active and reactive, apparent
        hours = (dt / 3600.0)[:, None]
        inc = np.empty((len(idx), REGISTER_ROWS, len(REGISTERS)))
        allp = np.concatenate([p, gp], 1)
        allq = np.concatenate([q, gq], 1)
        inc[:, :, 0] = np.maximum(allp, 0) * hours
        inc[:, :, 1] = np.maximum(-allp, 0) * hours
        inc[:, :, 2] = np.maximum(allq, 0) * hours
        inc[:, :, 3] = np.maximum(-allq, 0) * hours
        inc[:, :, 4] = np.concatenate([s, gs], 1) * hours
        self.energy_wh[sel] += inc

        # monthly extremes (NaN temperature = no probe: ignored by fmin/fmax)
        ext = np.concatenate([temp[:, None], m.unbalance_pct[:, None], m.thdi_pct * connected,
                              m.thdv_pct, cur, m.voltage_v, pf, p, q, s, gpf, gp, gq, gs], 1)
        self.month_min[sel] = np.fmin(self.month_min[sel], ext)
        self.month_max[sel] = np.fmax(self.month_max[sel], ext)

        # threshold conditions
        values = np.concatenate([temp[:, None], cur, m.voltage_v, m.thdi_pct * connected,
                                 m.thdv_pct, m.unbalance_pct[:, None]], 1)
        cond, lo, hi = self.thr_cond[sel], self.thr_lo[sel], self.thr_hi[sel]
        with np.errstate(invalid="ignore"):
            below, above = values < lo, values > hi
            state = np.where(cond == 1, below,
                             np.where(cond == 2, above,
                                      np.where(cond == 3, ~below & ~above & ~np.isnan(values),
                                               np.where(cond == 4, below | above, False))))
        thr_changed = state != self.thr_state[sel]
        self.thr_state[sel] = state
        # over-range (passive alarms)
        limits = np.concatenate([np.where(connected, self.range_a[sel], np.inf),
                                 np.full((len(idx), 3), VOLTAGE_RANGE_V)], 1)
        over = np.concatenate([cur, m.voltage_v], 1) > limits
        over_changed = over != self.over_state[sel]
        self.over_state[sel] = over

        wake = (self.next_due[sel] <= now) | thr_changed.any(1) | over_changed.any(1) \
            | self.poke[sel]
        self.poke[sel] = False
        return idx[wake], thr_changed[wake], over_changed[wake]

    def reset_month(self, row: int) -> None:
        self.month_min[row] = np.inf
        self.month_max[row] = -np.inf


def _pf(p: np.ndarray, s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 1e-9, np.minimum(np.abs(p) / s, 1.0) * 100.0, 0.0)


def _take(m: Measurements, mask: np.ndarray) -> Measurements:
    return Measurements(**{k: v[mask] for k, v in vars(m).items()})
