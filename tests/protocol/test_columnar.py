"""decode_many: every row equals what `decode` gives for that payload — values bit for bit,
sentinel masks, dialect labels, ambiguity, warnings — or carries the same DecodeError; and
batches of one layout really take the vectorised path."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cth01.protocol import (
    DecodeError,
    GroupReading,
    HistoryRecord,
    Uplink,
    columnar,
    decode,
    encode_uplink,
    items,
)
from cth01.protocol.columnar import Columns, decode_many
from cth01.protocol.schema import Dialect
from cth01.protocol.table import COMMANDS

from .strategies import uplinks

DIALECTS = ("auto", "firmware", "guide")


def frame(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# wire-format.md section D (uplinks; D3 with its missing nibble restored) and E.4
MONTHLY = ("ed{m}00277e69 4003 01 2e0b ed{m}00277e69 4003 02 1027 "
           "ed{m}00277e69 4003 03 d40e04057d23ff11081d46177c268309c4174916370e310a "
           "ed{m}00277e69 4003 04 000000000000 ed{m}00277e69 4003 06 5aa8fc81d331")
GUIDE_EXAMPLES = [frame(h) for h in (
    "df0100 ee db6527f41809380000 da0100010100000000 d90000 c801 cf0002",  # D1
    "df0102",  # D2
    "019d0a 022926 0c0008020000df0300008f000000a1000000b80000007e000000 "
    "0d0083050000b743010009010000cf010000450100002c000000",  # D3 restored
    "019d0a 022926 0c000802000df0300008f000000a1000000b80000007e000000 "
    "0d0083050000b743010009010000cf010000450100002c00000",  # D3 as printed, nibble dropped
    MONTHLY.format(m="01"),  # D4
    "36",  # D5
    "30139e0a",  # D6
    "3104023c28",  # D7
    "ed01a1b1856901360a",  # D8
    MONTHLY.format(m="02"),  # D9
    "61010a00",  # D23
    "760103e803b80b",  # D25
    "07005a5a5a5a0610271027102736",  # E.4: ambiguous
    "070f5a5a5a5a5a5a5a5a5a5a5a5a",  # E.4: common
    "0c03" + "01000000" * 6,  # E.4: common
    "3000", "3500", "310000", "30000000", "310000000000", "3200000000", "30003636",  # E.4
)]


# --- the reference: one row of Columns against decode --------------------------------------

def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return isinstance(value, float) and value != value


def _py(x: object) -> object:
    if isinstance(x, np.integer):
        return int(x)
    return float(x) if isinstance(x, np.floating) else x


def _same_cell(cell: object, value: object, dtype: np.dtype) -> bool:
    if dtype.kind in "iu":  # exact integers: decode's int, or 0 where it gives None
        return type(cell) is int and (cell == 0 if value is None
                                      else type(value) is int and cell == value)
    if value is None:
        return _missing(cell)
    if isinstance(value, datetime):
        return cell == np.datetime64(int(value.timestamp()), "s")
    if isinstance(value, bool | str | tuple):
        return type(cell) is type(value) and cell == value
    # other numbers: decode's float, the same float64 bit for bit
    return (dtype == np.float64 and type(value) is float
            and np.float64(value).tobytes() == np.float64(cell).tobytes())


class _Row:
    """Walks one Uplink the way the docs describe the paths, checking every cell."""

    def __init__(self, cols: Columns, i: int, valid: dict[str, np.ndarray]) -> None:
        self.cols, self.i, self.valid = cols, i, valid
        self.seen: set[str] = set()
        self.masks: set[str] = set()
        self.present: set[str] = set()

    def cell(self, path: str, value: object) -> None:
        assert path in self.cols.columns, path
        col = self.cols.columns[path]
        if col.ndim == 2:
            assert len(value) == col.shape[1], path
            values = list(value)
        else:
            values = [value]
        cells = col[self.i].tolist() if col.ndim == 2 else [col[self.i]]
        for c, v in zip(cells, values, strict=True):
            assert _same_cell(_py(c), v, col.dtype), (self.i, path, col[self.i], value)
        valid = self.valid[path][self.i]
        assert np.atleast_1d(valid).tolist() == [v is not None for v in values], \
            (self.i, path, valid, value)
        self.seen.add(path)

    def mask(self, path: str, expected: bool | list[bool]) -> None:
        got = self.cols.unavailable.get(path)
        if got is None:
            assert not np.any(expected), (self.i, path)
            return
        assert got[self.i].tolist() == expected, (self.i, path, got[self.i], expected)
        self.masks.add(path)

    def item(self, prefix: str, it: object) -> None:
        self.present.add(prefix)
        una = set(it.unavailable)
        for name in it.__struct_fields__:
            if name == "unavailable":
                continue
            v = getattr(it, name)
            path = f"{prefix}.{name}"
            if isinstance(v, tuple) and v and isinstance(v[0], GroupReading):
                for g in v:
                    gp = f"{path}.{g.group}"
                    self.cell(gp + ".phase", g.phase)
                    if g.channels is not None:
                        self.cell(gp, g.channels)
                        self.mask(gp, [f"{name}.{g.group}[{k}]" in una for k in range(3)])
                    else:
                        self.cell(gp + ".total", g.total)
                        self.mask(gp + ".total", f"{name}.{g.group}" in una)
            elif path in self.cols.columns and self.cols.columns[path].ndim == 2:
                self.cell(path, v)
                self.mask(path, [f"{name}[{k}]" in una for k in range(len(v))])
            else:
                self.cell(path, v)
                self.mask(path, name in una)

    def uplink(self, u: Uplink) -> None:
        def walk(base: str, its: tuple) -> None:
            counts: dict[str, int] = {}
            for it in its:
                k = counts.get(it.command_name, 0)
                counts[it.command_name] = k + 1
                name = it.command_name if k == 0 else f"{it.command_name}[{k}]"
                self.item(f"{base}{name}", it)

        walk("", u.items)
        for r, rec in enumerate(u.history):
            base = f"history[{r}]"
            self.present.add(base)
            self.cell(base + ".mode", rec.mode)
            self.cell(base + ".timestamp", rec.timestamp)
            self.cell(base + ".kind", rec.kind)
            walk(base + ".", rec.items)

    def rest_is_empty(self) -> None:
        i = self.i
        for path, col in self.cols.columns.items():
            if path not in self.seen:
                cells = col[i] if col.ndim == 2 else [col[i]]
                assert all(_same_cell(_py(c), None, col.dtype) for c in cells), \
                    (i, path, col[i])
                assert not np.any(self.valid[path][i]), (i, path)
        for path, m in self.cols.unavailable.items():
            if path not in self.masks:
                assert not np.any(m[i]), (i, path)
        for path, p in self.cols.present.items():
            assert bool(p[i]) == (path in self.present), (i, path)
        assert self.present <= set(self.cols.present), self.present - set(self.cols.present)


def assert_matches_decode(cols: Columns, payloads: list, dialect: str = "auto",
                          strict_ranges: bool = True) -> None:
    assert cols.n == len(cols) == len(payloads)
    for name in ("ok", "dialect", "ambiguous", "vectorised"):
        assert getattr(cols, name).shape == (cols.n,)
    valid = {}
    for path, col in cols.columns.items():
        valid[path] = cols.valid(path)
        assert valid[path].shape == col.shape and valid[path].dtype == bool, path
    for i, p in enumerate(payloads):
        row = _Row(cols, i, valid)
        try:
            up = decode(p, dialect=dialect, strict_ranges=strict_ranges)
        except DecodeError as exc:
            err = cols.errors.get(i)
            assert err is not None, (i, p, exc)
            assert (str(err), err.offset, err.command, err.dialect) == \
                (str(exc), exc.offset, exc.command, exc.dialect)
            assert not cols.ok[i] and cols.dialect[i] is None and i not in cols.warnings
        else:
            assert i not in cols.errors, (i, p.hex(), cols.errors.get(i))
            assert cols.ok[i]
            assert (cols.dialect[i], bool(cols.ambiguous[i])) == (up.dialect, up.ambiguous), \
                (i, p.hex(), cols.dialect[i], up.dialect, cols.vectorised[i])
            assert cols.warnings.get(i, ()) == up.warnings
            row.uplink(up)
        row.rest_is_empty()


# --- frames built from items -----------------------------------------------------------------

GROUPED = {c.name: c for c in COMMANDS if 0x07 <= c.id <= 0x17}


def _cls(name: str) -> type:
    return getattr(items, "".join(p.title() for p in name.split("_")))


def _pct(rng: random.Random, k: int, na: float = 0.0) -> tuple:
    return tuple(None if rng.random() < na else rng.randint(0, 10000) / 100 for _ in range(k))


def periodic(rng: random.Random, masks: dict[str, int], na: float = 0.0,
             dialect: str = "firmware") -> bytes:
    """Items 01-06 and the grouped items named in `masks` (bit = 1: single-phase)."""
    def num(lo: int, hi: int) -> int | None:
        return None if rng.random() < na else rng.randint(lo, hi)

    top = 400000 if dialect == "firmware" else 65534
    its = [
        items.Temperature(temperature_c=rng.randint(-2000, 10000) / 100),
        items.VoltageUnbalance(unbalance_pct=_pct(rng, 1, na)[0]),
        items.Thdi(thdi_pct=_pct(rng, 12, na)),
        items.Thdv(thdv_pct=_pct(rng, 3, na)),
        items.Current(current_a=tuple(None if rng.random() < na else rng.randint(0, top) / 100
                                      for _ in range(12))),
        items.Voltage(voltage_v=tuple(None if rng.random() < na else rng.randint(0, 50000) / 100
                                      for _ in range(3))),
    ]
    for name in (n for n in GROUPED if n in masks):  # in id order
        mask = masks[name]
        f = GROUPED[name].fields[0]
        lo, hi = {"u8": (0, 100), "s32": (-10**6, 10**6), "u32": (0, 10**9)}[f.wire]
        groups = []
        for k, g in enumerate(f.groups):
            if mask >> k & 1 or dialect == "guide":
                phase = "single" if mask >> k & 1 else "three"
                groups.append(GroupReading(group=g, phase=phase,
                                           channels=(num(lo, hi), num(lo, hi), num(lo, hi))))
            else:
                groups.append(GroupReading(group=g, phase="three", total=num(lo, hi)))
        its.append(_cls(name)(**{f.name: tuple(groups)}))
    return encode_uplink(its, dialect=dialect)


PF_AT = 82  # offset of the power-factor item in `periodic` frames (firmware)
CURRENT_AT = 38

ALL_SINGLE = {"power_factor": 0x0F, **{n: 0x03 for n in GROUPED if n != "power_factor"}}
ALL_THREE = {n: 0 for n in GROUPED}


# --- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", DIALECTS)
def test_guide_examples_in_a_mixed_batch(dialect):
    rng = random.Random(1)
    payloads = GUIDE_EXAMPLES * 3 + [periodic(rng, {"active_power_ab": 1}) for _ in range(5)]
    rng.shuffle(payloads)
    cols = decode_many(payloads, dialect=dialect)
    assert_matches_decode(cols, payloads, dialect)
    assert cols.vectorised.any()


@pytest.mark.parametrize("masks", [ALL_SINGLE, ALL_THREE], ids=["single", "three"])
@pytest.mark.parametrize("dialect", ["auto", "firmware"])
def test_one_layout_is_decoded_in_bulk(masks, dialect):
    rng = random.Random(2)
    payloads = [periodic(rng, masks) for _ in range(60)]
    assert len(set(payloads)) == 60 and len({len(p) for p in payloads}) == 1
    cols = decode_many(payloads, dialect=dialect)
    assert cols.vectorised.all() and cols.ok.all()
    assert_matches_decode(cols, payloads, dialect)
    assert cols["current.current_a"].shape == (60, 12)
    assert cols["temperature.temperature_c"].shape == (60,)
    if masks is ALL_SINGLE:
        assert cols["active_power_ab.active_power_w.a"].shape == (60, 3)
        assert set(cols["active_power_ab.active_power_w.a.phase"]) == {"single"}
    else:
        assert cols["active_power_ab.active_power_w.a.total"].shape == (60,)
        assert "active_power_ab.active_power_w.a" not in cols
    assert set(cols.dialect) == {"firmware"}


def test_guide_dialect_layouts_in_bulk():
    rng = random.Random(3)
    payloads = [periodic(rng, ALL_THREE, dialect="guide") for _ in range(30)]
    for dialect in ("auto", "guide"):
        cols = decode_many(payloads, dialect=dialect)
        assert cols.vectorised.all()
        assert set(cols.dialect) == {"guide"}
        assert_matches_decode(cols, payloads, dialect)


def test_sentinels_are_nan_and_masked():
    rng = random.Random(4)
    payloads = [periodic(rng, {"power_factor": 0x05, "active_power_ab": 0x01,
                               "imported_active_energy_cd": 0x02}, na=0.3) for _ in range(40)]
    cols = decode_many(payloads, dialect="firmware")
    assert cols.vectorised.all()
    assert_matches_decode(cols, payloads, "firmware")
    current, na = cols["current.current_a"], cols.unavailable["current.current_a"]
    assert na.any() and np.isnan(current[na]).all() and not np.isnan(current[~na]).any()
    assert cols.unavailable["active_power_ab.active_power_w.b.total"].any()
    assert "temperature.temperature_c" not in cols.unavailable  # no sentinel defined


def test_same_length_different_structure():
    t, u = items.Temperature(temperature_c=21.5), items.VoltageUnbalance(unbalance_pct=1.25)
    a, b = encode_uplink([t, u]), encode_uplink([u, t])
    pf = [encode_uplink([items.PowerFactor(power_factor_pct=tuple(
        GroupReading(group=g, phase="single" if k < n else "three",
                     channels=(k, k, k) if k < n else None, total=None if k < n else 50)
        for k, g in enumerate("abcd")))]) for n in (0, 2, 4)]
    payloads = [a, b, a, b, pf[0], pf[1], pf[2], a]
    # same length as `a`, different items; and `a` with an out-of-range temperature
    payloads += [frame("0300") + b"\x00" * 4, frame("01ff7f022926")]
    for dialect in DIALECTS:
        cols = decode_many(payloads, dialect=dialect)
        assert_matches_decode(cols, payloads, dialect)


def test_corrupted_and_truncated_frames():
    rng = random.Random(5)
    good = [periodic(rng, {"active_power_ab": 0x01, "power_factor": 0x0F}) for _ in range(20)]
    bad = []
    for p in good[:10]:
        buf = bytearray(p)
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        bad.append(bytes(buf))
    bad += [p[:rng.randrange(1, len(p))] for p in good[10:15]]
    bad += [p + b"\x01" for p in good[15:18]]
    # a reserved mask bit, and an over-range current (4000.01 A) in an otherwise good frame
    assert good[0][PF_AT:PF_AT + 2] == b"\x07\x0f" and good[1][CURRENT_AT] == 0x05
    bad.append(good[0][:PF_AT + 1] + b"\x1f" + good[0][PF_AT + 2:])
    cur = CURRENT_AT + 1
    bad.append(good[1][:cur] + (400001).to_bytes(3, "little") + good[1][cur + 3:])
    payloads = good + bad
    random.Random(6).shuffle(payloads)
    for dialect in DIALECTS:
        for strict in (True, False):
            cols = decode_many(payloads, dialect=dialect, strict_ranges=strict)
            assert_matches_decode(cols, payloads, dialect, strict)
            assert cols.errors
            assert dialect == "guide" or cols.vectorised.sum() >= 10  # firmware frames


def test_out_of_range_values_fall_back_per_frame():
    rng = random.Random(7)
    payloads = [periodic(rng, {"power_factor": 0x0F}) for _ in range(10)]
    pf = PF_AT + 2
    assert payloads[3][PF_AT:pf] == b"\x07\x0f"
    payloads[3] = payloads[3][:pf] + b"\x65" + payloads[3][pf + 1:]  # 101 %
    strict = decode_many(payloads, dialect="firmware")
    assert not strict.ok[3] and "power_factor_pct" in str(strict.errors[3])
    assert strict.vectorised.sum() == 9
    lax = decode_many(payloads, dialect="firmware", strict_ranges=False)
    assert lax.ok.all() and list(lax.warnings) == [3] and not lax.vectorised[3]
    assert lax["power_factor.power_factor_pct.a"][3, 0] == 101
    assert_matches_decode(lax, payloads, "firmware", strict_ranges=False)


def test_auto_labels_per_row_when_values_decide_them():
    """One firmware layout (07 three-phase, 06, 36): whether the guide reads a frame too
    depends on its values, so rows of one layout get different labels."""
    ambiguous = frame("07005a5a5a5a0610271027102736")
    firmware_only = frame("07005a5a5a5a06 c8af 1027 1027 36")  # 0xc8: 200 % for the guide
    payloads = [firmware_only, ambiguous, firmware_only, ambiguous]
    payloads += [frame("07005a5a5a5a06") + bytes([v, 0x27, 0x10, 0x27, 0x10, 0x27, 0x36])
                 for v in (0x10, 0x90, 0x64, 0x65)]
    cols = decode_many(payloads)
    assert_matches_decode(cols, payloads)
    assert set(cols.dialect) == {"firmware"}  # ambiguous frames report the firmware reading
    assert cols.ambiguous.tolist() == [False, True, False, True, True, False, True, False]
    assert cols.row(1).alternative is not None


def test_history_records_become_columns():
    rng = random.Random(8)
    ts = datetime(2026, 2, 1, tzinfo=UTC)
    payloads = []
    for k in range(12):
        recs = (HistoryRecord(mode="historical", timestamp=ts, kind="maximum", items=(
                    items.Temperature(temperature_c=rng.randint(0, 5000) / 100),)),
                HistoryRecord(mode="historical", timestamp=ts, items=(
                    items.Voltage(voltage_v=(230.0, None, 229.5)),
                    items.TemperatureAlarm(alarm="above_threshold", temperature_c=30 + k),)))
        payloads.append(encode_uplink(Uplink(dialect="firmware", history=recs)))
    cols = decode_many(payloads, dialect="firmware")
    assert cols.vectorised.all()
    assert_matches_decode(cols, payloads, "firmware")
    assert cols["history[0].timestamp"].dtype == np.dtype("datetime64[s]")
    assert list(cols["history[0].kind"]) == ["maximum"] * 12
    assert list(cols["history[1].kind"]) == [None] * 12
    assert cols.unavailable["history[1].voltage.voltage_v"][:, 1].all()


def test_non_bytes_and_empty_payloads_are_errors():
    good = frame("019d0a022926")
    payloads = [good, None, 5, "019d0a", b"", bytearray(good), memoryview(good), good]
    cols = decode_many(payloads)
    assert cols.ok.tolist() == [True, False, False, False, False, True, True, True]
    assert sorted(cols.errors) == [1, 2, 3, 4]
    assert_matches_decode(cols, payloads)
    with pytest.raises(DecodeError):
        cols.row(1)
    assert cols.row(0) == decode(good)


def test_empty_batch_and_bad_arguments():
    cols = decode_many([])
    assert cols.n == 0 and cols.columns == {} and cols.ok.shape == (0,)
    with pytest.raises(ValueError, match="dialect"):
        decode_many([b"\x36"], dialect="vendor")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decode_many(b"\x36")
    assert decode_many(iter([b"\x36"])).ok.all()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_small_chunks_and_few_templates(monkeypatch, dialect):
    """The chunked passes and the template limit, with batches small enough to check."""
    monkeypatch.setattr(columnar, "_CHUNK", 5)
    monkeypatch.setattr(columnar, "_MAX_TEMPLATES", 2)
    monkeypatch.setattr(columnar, "_MIN_NODE", 1)
    rng = random.Random(10)
    payloads = [periodic(rng, {"power_factor": 0x0F, "active_power_ab": k % 2}, na=0.05)
                for k in range(40)]
    t, u = items.Temperature(temperature_c=20.0), items.VoltageUnbalance(unbalance_pct=2.0)
    payloads += [encode_uplink([t, u]), encode_uplink([u, t]), frame("01ff7f022926")] * 3
    payloads[7] = payloads[7][:PF_AT + 2] + b"\x65" + payloads[7][PF_AT + 3:]  # 101 %
    for strict in (True, False):
        cols = decode_many(payloads, dialect=dialect, strict_ranges=strict)
        assert_matches_decode(cols, payloads, dialect, strict)


def test_column_dtypes():
    """Scaled numbers are float64; unscaled integers keep an exact integer dtype, whichever
    path (bulk or per frame) created the column."""
    rng = random.Random(11)
    bulk = decode_many([periodic(rng, ALL_SINGLE) for _ in range(5)], dialect="firmware")
    assert bulk.vectorised.all()
    one_by_one = decode_many([frame("07005a5a5a5a0610271027102736")] * 3)  # ambiguous
    assert not one_by_one.vectorised.any()
    expected = {
        "temperature.temperature_c": np.float64,
        "current.current_a": np.float64,
        "voltage.voltage_v": np.float64,
        "power_factor.power_factor_pct.a": np.uint8,
        "active_power_ab.active_power_w.a": np.int32,
        "imported_active_energy_ab.energy_wh.b": np.uint32,
    }
    for path, dt in expected.items():
        assert bulk[path].dtype == dt, path
    assert one_by_one["power_factor.power_factor_pct.a.total"].dtype == np.uint8
    assert one_by_one["voltage.voltage_v"].dtype == np.float64
    # integer columns in the schema: the wire type's dtype (u24 / u32: uint32; a channel
    # number, 1-12, fits its u8)
    assert columnar._FIELD[("current_alarm", "channel")].kind == "|u1"
    assert columnar._FIELD[("current_threshold", "min_a")].kind == "<i2"
    assert columnar._FIELD[("current_alarm", "current_a")].kind == "f"  # scaled
    for c in COMMANDS:
        if 0x08 <= c.id <= 0x17:
            assert columnar._FIELD[(c.name, c.fields[0].name)].kind == {
                "s32": "<i4", "u32": "<u4"}[c.fields[0].wire]


def test_integer_columns_hold_zero_where_there_is_no_value():
    power = items.ActivePowerAb(active_power_w=(
        GroupReading(group="a", phase="single", channels=(5, None, -7)),
        GroupReading(group="b", phase="three", total=None)))
    with_power = encode_uplink([items.Temperature(temperature_c=20.5), power])
    payloads = [with_power, encode_uplink([items.Temperature(temperature_c=1.0)]), b"\x08"]
    payloads += [with_power] * 3
    cols = decode_many(payloads, dialect="firmware")
    assert_matches_decode(cols, payloads, "firmware")
    chans = cols["active_power_ab.active_power_w.a"]
    total = cols["active_power_ab.active_power_w.b.total"]
    assert chans.dtype == np.int32 and total.dtype == np.int32
    assert chans[:3].tolist() == [[5, 0, -7], [0, 0, 0], [0, 0, 0]]
    assert cols.valid("active_power_ab.active_power_w.a")[:3].tolist() == [
        [True, False, True], [False] * 3, [False] * 3]
    assert cols.unavailable["active_power_ab.active_power_w.a"][0].tolist() == [
        False, True, False]
    assert total[0] == 0 and cols.unavailable["active_power_ab.active_power_w.b.total"][0]
    assert not cols.valid("active_power_ab.active_power_w.b.total")[0]
    assert cols.valid("temperature.temperature_c")[:3].tolist() == [True, True, False]
    filled = np.where(cols.valid("active_power_ab.active_power_w.a"), chans, np.nan)
    assert np.isnan(filled[0, 1]) and filled[0, 2] == -7.0


@pytest.mark.parametrize("chunk", [3, 4, 5, 2048])
def test_bulk_pass_edges(monkeypatch, chunk):
    """The whole-batch pass: a template found after leading bad rows, rows of other types
    and lengths in the middle, a u24 value at the very end of the frame (read past the last
    row), partial last chunks, in every dialect."""
    monkeypatch.setattr(columnar, "_CHUNK", chunk)
    rng = random.Random(13)

    def tail_current() -> bytes:  # 05 last: its last u24 ends the frame
        return encode_uplink([items.Temperature(temperature_c=rng.randint(0, 5000) / 100),
                              items.Current(current_a=tuple(
                                  rng.choice([None, rng.randint(0, 400000) / 100])
                                  for _ in range(12)))])

    good = [tail_current() for _ in range(11)]
    L = len(good[0])
    broken = bytearray(good[0])
    broken[0] = 0x00  # unknown id
    payloads = [bytes(broken), None, *good[:4], good[4][:-1], bytearray(good[5]), "x" * L,
                good[6] + b"\x36", *good[6:], bytes(broken)]
    payloads[9] = good[9][:L - 3] + (0x400000).to_bytes(3, "little")  # 41943.04 A
    for dialect in DIALECTS:
        for strict in (True, False):
            cols = decode_many(payloads, dialect=dialect, strict_ranges=strict)
            assert_matches_decode(cols, payloads, dialect, strict)
            if dialect != "guide":
                assert cols.vectorised.sum() >= 8


def test_columns_are_read_only():
    rng = random.Random(9)
    cols = decode_many([periodic(rng, ALL_SINGLE) for _ in range(5)])
    with pytest.raises(ValueError):
        cols["temperature.temperature_c"][0] = 0.0
    with pytest.raises(ValueError):
        cols.ok[0] = False


# --- properties --------------------------------------------------------------------------------

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@given(data=st.data())
@PROPERTY
def test_any_valid_frames(data):
    """Random valid frames of any commands (history records included), either dialect."""
    payloads = []
    for _ in range(data.draw(st.integers(1, 6))):
        d = data.draw(st.sampled_from(list(Dialect)))
        live, records = data.draw(uplinks(d))
        payloads.append(encode_uplink(Uplink(dialect=d.value, items=live, history=records)))
    payloads += data.draw(st.lists(st.sampled_from(payloads), max_size=4))
    dialect = data.draw(st.sampled_from(DIALECTS))
    assert_matches_decode(decode_many(payloads, dialect=dialect), payloads, dialect)


_MASK_CHOICES = [
    {"power_factor": 0x0F, "active_power_ab": 0x03},
    {"power_factor": 0x00, "active_power_ab": 0x00, "apparent_energy_cd": 0x01},
    {"power_factor": 0x06, "reactive_power_cd": 0x02},
    {},
]


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40),
       dialect=st.sampled_from(DIALECTS), mutate=st.floats(0, 0.3),
       encoding=st.sampled_from(["firmware", "guide"]))
@settings(PROPERTY, max_examples=150)
def test_many_frames_of_few_layouts(seed, n, dialect, mutate, encoding):
    """Lists where layouts repeat (the bulk path), with sentinels and some corrupted rows."""
    rng = random.Random(seed)
    payloads = []
    for _ in range(n):
        p = periodic(rng, rng.choice(_MASK_CHOICES), na=rng.choice([0, 0.1]), dialect=encoding)
        if rng.random() < mutate:
            buf = bytearray(p)
            buf[rng.randrange(len(buf))] = rng.randrange(256)
            p = bytes(buf[:rng.randrange(len(buf))] if rng.random() < 0.3 else buf)
        payloads.append(p)
    strict = rng.random() < 0.8
    cols = decode_many(payloads, dialect=dialect, strict_ranges=strict)
    assert_matches_decode(cols, payloads, dialect, strict)
