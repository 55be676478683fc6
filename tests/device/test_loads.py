"""The fast load model: layouts, physics invariants over a simulated day, profile behaviour,
reproducibility and scripted events."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cth01.device.loads import CT_RANGES, PROFILES, Interface, LoadModel
from cth01.device.measurements import Measurements

AMPS = {"none": 0.0, "100A": 100.0, "300A": 300.0, "500A": 500.0, "1000A": 1000.0,
        "4000A": 4000.0}
PER_PROFILE = 200
OFFSET = 7200  # CEST
MIDNIGHT = 1_718_143_200  # 2024-06-12 00:00 local (a Wednesday), in UTC seconds
STEP = 60
STEPS = 1440
FIELDS = [f.name for f in dataclasses.fields(Measurements)]


def fleet(seed: int = 3, per_profile: int = PER_PROFILE) -> LoadModel:
    return LoadModel([p for p in PROFILES for _ in range(per_profile)], seed=seed,
                     utc_offset_s=OFFSET)


def rows_of(model: LoadModel, profile: str) -> np.ndarray:
    return np.array([d for d, p in enumerate(model.profiles) if p == profile])


def same(a: Measurements, b: Measurements) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in FIELDS)


@pytest.fixture(scope="module")
def day() -> dict:
    """One day at 60-s steps for 200 devices of every profile; invariants checked every step
    (worst values kept), a few series recorded for the profile tests."""
    model = fleet()
    n = model.devices
    faces = [model.interface(d) for d in range(n)]
    rng_a = np.array([[AMPS[c] for c in f.ct_ranges] for f in faces])
    none = rng_a == 0.0
    three_wire = np.array([f.wiring == "3P3W" for f in faces])
    pv_ch = np.array([[nm.startswith("PV inverter") for nm in f.circuit_names] for f in faces])
    dc = rows_of(model, "datacentre")
    phase = np.arange(12) % 3
    worst = dict.fromkeys(["s_vs_vi_4w", "s_vs_vi_3w", "p_over_s", "pq_over_s2", "neg_current",
                           "none_nonzero", "over_range", "v_dev_4w", "v_dev_3w", "unb_formula"],
                          0.0)
    lo = {"thdv": np.inf, "temp": np.inf, "thdi": np.inf, "unb": np.inf}
    hi = {"thdv": -np.inf, "temp": -np.inf, "thdi": -np.inf, "unb": -np.inf}
    nan_other = 0
    temp_nan = None
    total_p = np.empty((STEPS, n))
    pv_p = np.empty((STEPS, n))
    dc_cur = np.empty((STEPS, dc.size, 12))
    first = None
    for k in range(STEPS):
        m = model.second(MIDNIGHT + k * STEP)
        if first is None:
            first = m
        cur, s, p, q, v = (m.current_a, m.apparent_power_va, m.active_power_w,
                           m.reactive_power_var, m.voltage_v)
        for name in FIELDS:
            if name != "temperature_c":
                nan_other += int(np.isnan(getattr(m, name)).sum())
        nan_t = np.isnan(m.temperature_c)
        temp_nan = nan_t if temp_nan is None else temp_nan | nan_t
        assert temp_nan is not None
        # S = V_phase · I (3P4W: the reported phase voltage; 3P3W: line voltage / √3 ± 1 %)
        vi = v[:, phase] * cur
        w4 = ~three_wire
        worst["s_vs_vi_4w"] = max(worst["s_vs_vi_4w"],
                                  float(np.max(np.abs(s[w4] - vi[w4]) / np.maximum(vi[w4], 1.0))))
        if three_wire.any():
            loaded = cur[three_wire] > 1.0
            ratio = s[three_wire][loaded] / (cur[three_wire][loaded]
                                             * v[three_wire][:, phase][loaded] / np.sqrt(3.0))
            worst["s_vs_vi_3w"] = max(worst["s_vs_vi_3w"],
                                      float(np.max(np.abs(ratio - 1.0), initial=0.0)))
        worst["p_over_s"] = max(worst["p_over_s"], float(np.max(np.abs(p) - s)))
        worst["pq_over_s2"] = max(worst["pq_over_s2"],
                                  float(np.max((p * p + q * q - s * s) / np.maximum(s * s, 1.0))))
        worst["neg_current"] = max(worst["neg_current"], float(-cur.min()))
        worst["none_nonzero"] = max(worst["none_nonzero"], float(np.abs(
            np.stack([cur, p, q, s, m.thdi_pct])[:, none]).max(initial=0.0)))
        worst["over_range"] += float(np.sum(cur > rng_a) / cur.size / STEPS)
        worst["v_dev_4w"] = max(worst["v_dev_4w"], float(np.abs(v[w4] / 230.0 - 1).max()))
        if three_wire.any():
            worst["v_dev_3w"] = max(worst["v_dev_3w"],
                                    float(np.abs(v[three_wire] / (230.0 * np.sqrt(3)) - 1).max()))
        va, vb, vc = v[w4, 0], v[w4, 1], v[w4, 2]
        neg = np.hypot(va - (vb + vc) / 2, np.sqrt(3) / 2 * (vb - vc))
        worst["unb_formula"] = max(worst["unb_formula"], float(np.max(np.abs(
            m.unbalance_pct[w4] - 100 * neg / (va + vb + vc)))))
        for key, arr in (("thdv", m.thdv_pct), ("temp", m.temperature_c[~nan_t]),
                         ("thdi", m.thdi_pct), ("unb", m.unbalance_pct)):
            lo[key] = min(lo[key], float(arr.min()))
            hi[key] = max(hi[key], float(arr.max()))
        total_p[k] = p.sum(axis=1)
        pv_p[k] = np.where(pv_ch, p, 0.0).sum(axis=1)
        dc_cur[k] = cur[dc]
    return {"model": model, "faces": faces, "worst": worst, "lo": lo, "hi": hi,
            "nan_other": nan_other, "temp_nan": temp_nan, "total_p": total_p, "pv_p": pv_p,
            "dc": dc, "dc_cur": dc_cur, "rng_a": rng_a, "first": first, "pv_ch": pv_ch}


# ---- shapes, layouts -------------------------------------------------------------------------

def test_shapes_and_dtypes() -> None:
    model = LoadModel(["office", "pv", "apartment"], seed=1)
    assert model.devices == 3
    assert model.profiles == ("office", "pv", "apartment")
    m = model.second(1_718_186_400)
    m.check()
    assert m.devices == 3
    for name in FIELDS:
        arr = getattr(m, name)
        assert arr.dtype == np.float64, name
        assert arr.flags.c_contiguous, name
    assert m.current_a.shape == (3, 12) and m.voltage_v.shape == (3, 3)
    assert m.unbalance_pct.shape == (3,) and m.temperature_c.shape == (3,)
    # every call returns fresh arrays
    m2 = model.second(1_718_186_401)
    assert not np.shares_memory(m.current_a, m2.current_a)
    assert not np.shares_memory(m.voltage_v, m2.voltage_v)


def test_interfaces_are_valid_and_fit_the_profile(day: dict) -> None:
    model: LoadModel = day["model"]
    for d, face in enumerate(day["faces"]):
        assert isinstance(face, Interface)
        assert face.wiring in ("3P4W", "3P3W")
        assert len(face.circuits) == 4 and set(face.circuits) <= {"single_phase", "three_phase"}
        assert len(face.ct_ranges) == 12 and set(face.ct_ranges) <= set(CT_RANGES)
        assert len(face.circuit_names) == 12 and all(face.circuit_names)
        for k in range(12):
            assert (face.ct_ranges[k] == "none") == (face.circuit_names[k] == "spare")
        for g in range(4):
            rngs = face.ct_ranges[3 * g: 3 * g + 3]
            if "4000A" in rngs:  # the Rogowski rule
                assert set(rngs) == {"4000A"}
            if face.circuits[g] == "three_phase" and "none" not in rngs:
                assert len(set(rngs)) == 1
        loaded = [c for c in face.ct_ranges if c != "none"]
        profile = model.profiles[d]
        assert loaded, d
        if profile == "datacentre":
            assert set(loaded) <= {"300A", "500A"}
            assert all(c == "three_phase" for c, r in zip(face.circuits, face.ct_ranges[::3],
                                                           strict=True) if r != "none")
        if profile == "apartment":
            assert set(face.circuits) == {"single_phase"}
            assert all(nm.startswith("Flat ") for nm in face.circuit_names if nm != "spare")
        if profile == "workshop":
            assert sum(nm.startswith("Welder") for nm in face.circuit_names) == 3
            if face.wiring == "3P3W":
                for g in range(4):
                    assert (face.circuits[g] == "three_phase"
                            or set(face.ct_ranges[3 * g: 3 * g + 3]) == {"none"})
        if profile == "pv":
            assert sum(nm.startswith("PV inverter") for nm in face.circuit_names) == 3
        if profile == "office":
            assert face.circuits.count("three_phase") == 1
    wirings = {f.wiring for f in day["faces"]}
    assert wirings == {"3P4W", "3P3W"}  # both occur in a fleet this size
    names = {nm for f in day["faces"] for nm in f.circuit_names}
    assert len(names) > 50  # varied


def test_layout_of_a_device_does_not_depend_on_the_rest_of_the_fleet() -> None:
    alone = LoadModel(["workshop", "office"], seed=9)
    crowd = LoadModel(["workshop", "office", "pv", "datacentre", "apartment"], seed=9)
    assert alone.interface(0) == crowd.interface(0)
    assert alone.interface(1) == crowd.interface(1)
    a, b = LoadModel(["office"] * 20, seed=9), LoadModel(["office"] * 20, seed=10)
    assert [a.interface(d) for d in range(20)] != [b.interface(d) for d in range(20)]


# ---- physics over a day ----------------------------------------------------------------------

def test_apparent_power_is_voltage_times_current(day: dict) -> None:
    assert day["worst"]["s_vs_vi_4w"] < 1e-12
    assert day["worst"]["s_vs_vi_3w"] < 0.01  # star-point phase vs line / √3


def test_active_reactive_within_apparent(day: dict) -> None:
    assert day["worst"]["p_over_s"] <= 1e-9
    assert day["worst"]["pq_over_s2"] <= 1e-12


def test_currents_never_negative_and_none_channels_carry_nothing(day: dict) -> None:
    assert day["worst"]["neg_current"] <= 0.0
    assert day["worst"]["none_nonzero"] == 0.0


def test_ct_ranges_suit_the_loads(day: dict) -> None:
    assert day["worst"]["over_range"] < 0.002  # natural over-range is rare


def test_voltages_thd_unbalance_temperature_in_range(day: dict) -> None:
    w = day["worst"]
    assert w["v_dev_4w"] < 0.05 and w["v_dev_3w"] < 0.05
    assert day["lo"]["thdv"] >= 1.0 and day["hi"]["thdv"] <= 4.0
    assert day["lo"]["thdi"] >= 0.0 and day["hi"]["thdi"] <= 60.0
    assert day["lo"]["unb"] >= 0.0 and day["hi"]["unb"] < 3.0
    assert w["unb_formula"] < 1e-9
    assert day["lo"]["temp"] >= 20.0 and day["hi"]["temp"] <= 45.0


def test_no_nan_except_temperature_of_probe_less_devices(day: dict) -> None:
    assert day["nan_other"] == 0
    frac = day["temp_nan"].mean()
    assert 0.05 < frac < 0.16
    # the same devices every second
    assert np.array_equal(np.isnan(day["first"].temperature_c), day["temp_nan"])


# ---- profiles --------------------------------------------------------------------------------

def at(hour: float) -> int:
    return int(hour * 3600 // STEP)


def test_office_lower_at_night_than_in_the_morning(day: dict) -> None:
    office = rows_of(day["model"], "office")
    p3, p11 = day["total_p"][at(3), office], day["total_p"][at(11), office]
    assert np.all(p3 < p11)
    assert np.median(p11 / p3) > 3


def test_apartments_peak_in_the_evening(day: dict) -> None:
    flats = rows_of(day["model"], "apartment")
    p3, p20 = day["total_p"][at(3), flats], day["total_p"][at(20), flats]
    assert np.mean(p20 > p3) > 0.9


def test_pv_exports_by_day_and_not_at_night(day: dict) -> None:
    pv = rows_of(day["model"], "pv")
    pv_p = day["pv_p"][:, pv]
    noon = pv_p[at(11): at(15)]
    night = np.concatenate([pv_p[: at(2)], pv_p[at(23):]])  # June, latitudes 35-60°
    assert np.all(noon.max(axis=0) < 0)  # every inverter exports around midday
    assert np.all(night == 0.0)
    # the site as a whole exports at midday for most PV sites
    assert np.mean(day["total_p"][at(13), pv] < 0) > 0.5
    # a bell: mid-morning exports less than noon on average
    assert np.mean(pv_p[at(13)]) < np.mean(pv_p[at(8)]) < 0


def test_datacentre_is_flat_and_highly_loaded(day: dict) -> None:
    cur = day["dc_cur"]  # (steps, devices, 12)
    rng_a = day["rng_a"][day["dc"]]
    loaded = rng_a > 0
    mean, sd = cur.mean(axis=0), cur.std(axis=0)
    cv = sd[loaded] / mean[loaded]
    assert cv.max() < 0.05
    frac = mean[loaded] / rng_a[loaded]
    assert frac.min() > 0.55 and frac.max() < 0.85


def test_workshop_motors_power_factor_and_inrush() -> None:
    model = LoadModel(["workshop"] * 60, seed=5, utc_offset_s=OFFSET)
    motors = np.array([[not (nm.startswith("Welder") or nm.startswith("Lighting")
                             or nm == "spare") for nm in model.interface(d).circuit_names]
                       for d in range(60)])
    welders = np.array([[nm.startswith("Welder") for nm in model.interface(d).circuit_names]
                        for d in range(60)])
    t0 = MIDNIGHT + 10 * 3600  # 10:00 local, on shift
    cur = np.empty((1800, 60, 12))
    pf, thdi_w = [], []
    for k in range(1800):
        m = model.second(t0 + k)
        cur[k] = m.current_a
        on = motors & (m.current_a > 1.0)
        thd = m.thdi_pct[on] / 100
        pf.append(m.active_power_w[on] / m.apparent_power_va[on] * np.sqrt(1 + thd ** 2))
        thdi_w.append(m.thdi_pct[welders & (m.current_a > 0)])
    pf_all = np.concatenate(pf)
    assert pf_all.size and pf_all.min() > 0.75 - 0.01 and pf_all.max() < 0.85 + 0.01
    assert np.concatenate(thdi_w).min() >= 30.0
    # starts: a motor channel goes from 0 to more than twice its running current, then settles
    mc = cur[:, motors]
    starts = (mc[:-5] == 0) & (mc[1:-4] > 0)
    assert starts.sum() > 5
    k, c = np.nonzero(starts)
    peak, running = mc[k + 1, c], mc[k + 5, c]
    assert np.median(peak / running) > 2.0


# ---- reproducibility -------------------------------------------------------------------------

def test_same_seed_identical_different_seed_different() -> None:
    profiles = [p for p in PROFILES for _ in range(20)]
    a, b = LoadModel(profiles, seed=11), LoadModel(profiles, seed=11)
    c = LoadModel(profiles, seed=12)
    t0 = 1_718_186_400
    for k in range(0, 300, 7):
        ma, mb, mc = a.second(t0 + k), b.second(t0 + k), c.second(t0 + k)
        assert same(ma, mb)
        assert not np.array_equal(ma.current_a, mc.current_a)
        assert not np.array_equal(ma.voltage_v, mc.voltage_v)


def test_slow_part_is_a_function_of_time() -> None:
    # two models of the same seed reach the same second along different paths: the noise
    # differs, everything slow (shapes, voltage drift, PV, events) agrees within the noise
    profiles = ["datacentre"] * 30
    a, b = LoadModel(profiles, seed=4), LoadModel(profiles, seed=4)
    t = 1_718_186_400
    b.second(t - 50_000)
    ma, mb = a.second(t), b.second(t)
    assert not np.array_equal(ma.current_a, mb.current_a)
    loaded = ma.current_a > 0
    assert np.allclose(ma.current_a[loaded], mb.current_a[loaded], rtol=0.08)
    assert np.allclose(ma.voltage_v, mb.voltage_v, rtol=0.01)


# ---- events ----------------------------------------------------------------------------------

T_EV = 1_718_186_400


def pair(seed: int = 21) -> tuple[LoadModel, LoadModel]:
    profiles = [p for p in PROFILES for _ in range(6)]
    return LoadModel(profiles, seed=seed), LoadModel(profiles, seed=seed)


def test_overload_multiplies_within_the_window_only() -> None:
    ev, ref = pair()
    devs, chans = [0, 7, 13, 26], [1, 5, 12]
    ev.overload(devs, chans, 1.7, T_EV + 5, T_EV + 10)
    sel = np.zeros((30, 12), bool)
    sel[np.ix_(devs, np.array(chans) - 1)] = True
    for t in range(T_EV, T_EV + 15):
        me, mr = ev.second(t), ref.second(t)
        inside = T_EV + 5 <= t < T_EV + 10
        for name in ("current_a", "active_power_w", "reactive_power_var", "apparent_power_va"):
            e, r = getattr(me, name), getattr(mr, name)
            if inside:
                np.testing.assert_allclose(e[sel], 1.7 * r[sel], rtol=1e-12)
                assert np.array_equal(e[~sel], r[~sel])
            else:
                assert np.array_equal(e, r), (t, name)
        assert np.array_equal(me.voltage_v, mr.voltage_v)


def test_blackout_zeroes_mains_and_mask_reports_it() -> None:
    ev, ref = pair()
    mask = np.zeros(30, bool)
    mask[[2, 3, 19]] = True
    ev.blackout(mask, T_EV + 3, T_EV + 6)
    for t in range(T_EV, T_EV + 9):
        me, mr = ev.second(t), ref.second(t)
        inside = T_EV + 3 <= t < T_EV + 6
        assert np.array_equal(ev.blackout_mask(t), mask if inside else np.zeros(30, bool))
        for name in FIELDS:
            if name == "temperature_c":
                continue
            e, r = getattr(me, name), getattr(mr, name)
            if inside:
                assert np.all(e[mask] == 0.0), name
                assert np.array_equal(e[~mask], r[~mask]), name
            else:
                assert np.array_equal(e, r), name


def test_voltage_sag_changes_voltage_and_power() -> None:
    ev, ref = pair()
    devs = [1, 4, 9]
    ev.voltage(devs, 0.8, T_EV + 2, T_EV + 4, phases=(1, 3))
    for t in range(T_EV, T_EV + 6):
        me, mr = ev.second(t), ref.second(t)
        if T_EV + 2 <= t < T_EV + 4:
            for d in devs:
                face = ev.interface(d)
                if face.wiring == "3P4W":
                    np.testing.assert_allclose(me.voltage_v[d, [0, 2]],
                                               0.8 * mr.voltage_v[d, [0, 2]], rtol=1e-12)
                    assert me.voltage_v[d, 1] == mr.voltage_v[d, 1]
                    np.testing.assert_allclose(me.apparent_power_va[d, 0::3],
                                               0.8 * mr.apparent_power_va[d, 0::3], rtol=1e-12)
                else:
                    assert np.all(me.voltage_v[d] < mr.voltage_v[d])
                assert me.unbalance_pct[d] > mr.unbalance_pct[d]
            others = np.setdiff1d(np.arange(30), devs)
            assert np.array_equal(me.voltage_v[others], mr.voltage_v[others])
            assert np.array_equal(me.current_a, mr.current_a)
        else:
            assert same(me, mr)


def test_phase_loss_drops_its_currents() -> None:
    ev = pair()[0]
    ev.voltage([0, 5], 0.0, T_EV, T_EV + 2, phases=(2,))
    me = ev.second(T_EV)
    assert np.all(me.voltage_v[[0, 5], 1] == 0.0)
    assert np.all(me.current_a[[0, 5]][:, 1::3] == 0.0)
    assert np.all(me.thdi_pct[[0, 5]][:, 1::3] == 0.0)


def test_harmonics_sets_thdi_and_keeps_power_consistent() -> None:
    ev, ref = pair()
    devs = [0, 6, 18]
    ev.harmonics(devs, 45.0, T_EV + 1, T_EV + 3)
    for t in range(T_EV, T_EV + 4):
        me, mr = ev.second(t), ref.second(t)
        if T_EV + 1 <= t < T_EV + 3:
            loaded = me.current_a[devs] > 0
            assert np.all(me.thdi_pct[devs][loaded] == 45.0)
            assert np.all(me.thdi_pct[devs][~loaded] == 0.0)
            s, p, q = (me.apparent_power_va[devs], me.active_power_w[devs],
                       me.reactive_power_var[devs])
            assert np.all(p * p + q * q <= s * s * (1 + 1e-12))
            np.testing.assert_allclose(np.hypot(p, q), s / np.sqrt(1 + 0.45 ** 2), rtol=1e-9,
                                       atol=1e-9)
            # the fundamental's share of S changes from 1/√(1 + THDi²) to 1/√(1 + 0.45²)
            scale = np.sqrt(1 + (mr.thdi_pct[devs] / 100) ** 2) / np.sqrt(1 + 0.45 ** 2)
            np.testing.assert_allclose(p, mr.active_power_w[devs] * scale, rtol=1e-12)
            assert np.array_equal(me.current_a, mr.current_a)
        else:
            assert same(me, mr)


def test_temperature_event_adds_to_the_probe() -> None:
    ev, ref = pair()
    ev.temperature(np.arange(30), 12.5, T_EV + 1, T_EV + 2)
    for t in range(T_EV, T_EV + 3):
        me, mr = ev.second(t), ref.second(t)
        if t == T_EV + 1:
            np.testing.assert_allclose(me.temperature_c, mr.temperature_c + 12.5, rtol=1e-12)
            assert np.array_equal(np.isnan(me.temperature_c), np.isnan(mr.temperature_c))
        else:
            assert same(me, mr)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        LoadModel(["office", "castle"])
    with pytest.raises(ValueError):
        LoadModel([])
    with pytest.raises(TypeError):
        LoadModel("office")
    model = LoadModel(["office", "pv"])
    with pytest.raises(ValueError):
        model.overload([0], [0], 2.0, 0, 10)
    with pytest.raises(ValueError):
        model.overload([0], [13], 2.0, 0, 10)
    with pytest.raises(ValueError):
        model.voltage([0], 0.9, 0, 10, phases=(4,))
    with pytest.raises(ValueError):
        model.blackout([0], 10, 10)
    with pytest.raises(IndexError):
        model.blackout([2], 0, 10)
    with pytest.raises(ValueError):
        model.blackout(np.ones(3, bool), 0, 10)
    with pytest.raises(IndexError):
        model.interface(2)
