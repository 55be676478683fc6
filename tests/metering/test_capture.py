"""Capture files: round trips through .npz, .wav and .csv (with scale factors), and every
malformed file answered by a CaptureError naming the file — never another exception."""

import os
import struct
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cth01.metering.capture import (
    CHANNEL_NAMES,
    Capture,
    CaptureError,
    load_capture,
    save_csv,
    save_npz,
    save_wav,
)
from cth01.metering.signals import generate

RATE = 6000
SCALES = [400.0, 400.0, 400.0, *[250.0] * 6, *[60.0] * 6]
SCALE_MAP = {name.upper(): value for name, value in zip(CHANNEL_NAMES, SCALES, strict=True)}


@pytest.fixture(scope="module")
def capture():
    """Two seconds of the office profile (harmonics, drift, temperature)."""
    return generate("office", 2, sample_rate_hz=RATE, seed=1).capture


def small_capture(samples=40, rate=RATE):
    rng = np.random.default_rng(0)
    return Capture(rng.uniform(-300, 300, (3, samples)), rng.uniform(-50, 50, (12, samples)),
                   rate)


# --- round trips ---------------------------------------------------------------------------------


def test_npz_round_trip_is_exact(capture, tmp_path):
    path = tmp_path / "office.capture"  # any name: save_npz writes exactly there
    save_npz(capture, path)
    assert path.exists() and not (tmp_path / "office.capture.npz").exists()
    back = load_capture(path.rename(tmp_path / "office.npz"))
    assert np.array_equal(back.voltage, capture.voltage)
    assert np.array_equal(back.current, capture.current)
    assert back.sample_rate_hz == RATE
    assert np.array_equal(back.temperature_c, capture.temperature_c)


def test_npz_written_by_hand_with_integers_and_scales(tmp_path):
    path = tmp_path / "raw.npz"
    np.savez(path, voltage=np.full((3, 10), 2, dtype=np.int16),
             current=np.ones((12, 10), dtype=np.int32), sample_rate=np.array([7000]))
    back = load_capture(path, scales={"v2": 100.0, "i12": -3.0})
    assert back.voltage[1, 0] == 200.0 and back.voltage[0, 0] == 2.0
    assert back.current[11, 0] == -3.0 and back.current[0, 0] == 1.0
    assert back.temperature_c is None and back.sample_rate_hz == 7000


@pytest.mark.parametrize(("sample_format", "tolerance"), [
    ("pcm16", 0.5 / 2 ** 15), ("pcm24", 0.5 / 2 ** 23), ("pcm32", 0.5 / 2 ** 31),
    ("float32", 2 ** -24), ("float64", 1e-15)])
@pytest.mark.parametrize("scales", [SCALES, SCALE_MAP], ids=["list", "mapping"])
def test_wav_round_trip(capture, tmp_path, sample_format, tolerance, scales):
    path = tmp_path / "office.wav"
    save_wav(capture, path, scales, sample_format)
    back = load_capture(path, scales=scales)
    scale = np.array(SCALES)[:, None]
    original = np.concatenate([capture.voltage, capture.current])
    restored = np.concatenate([back.voltage, back.current])
    assert np.abs(restored - original).max() <= (tolerance * scale).max() * 1.0001
    assert np.all(np.abs(restored - original) <= tolerance * scale * 1.0001 + 1e-12)
    assert back.sample_rate_hz == RATE and back.samples == capture.samples


@pytest.mark.parametrize("width", [2, 3, 4])
def test_wav_written_by_the_stdlib_wave_module(tmp_path, width):
    """An independent writer: integer codes we choose, read back through our RIFF parser."""
    frames = 50
    rng = np.random.default_rng(width)
    top = 2 ** (8 * width - 1)
    codes = rng.integers(-top, top, size=(frames, 15), dtype=np.int64)
    raw = b"".join(int(c).to_bytes(width, "little", signed=True) for c in codes.ravel())
    path = tmp_path / "stdlib.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(15)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(raw)
    back = load_capture(path, scales=SCALES)
    expected = codes.T / top * np.array(SCALES)[:, None]
    assert np.array_equal(np.concatenate([back.voltage, back.current]), expected)
    assert back.sample_rate_hz == 8000


def riff(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def extensible_fmt(sub_format: int, bits: int, channels: int = 15, rate: int = 8000) -> bytes:
    guid = struct.pack("<H", sub_format) + bytes.fromhex("000000001000800000aa00389b71")
    align = channels * bits // 8
    return struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22,
                       bits, 0) + guid


def test_wave_format_extensible_float_with_an_unknown_chunk(tmp_path):
    values = np.linspace(-1, 1, 15 * 4).astype("<f4")
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(extensible_fmt(3, 32), values.tobytes(), extra=b"LIST" +
                          struct.pack("<I", 3) + b"abc\0"))
    back = load_capture(path, scales=[1.0] * 15)
    assert np.allclose(np.concatenate([back.voltage, back.current]),
                       values.reshape(4, 15).T.astype(float))


def test_csv_round_trip_is_exact(capture, tmp_path):
    path = tmp_path / "office.csv"
    save_csv(capture, path)
    assert path.read_text().splitlines()[0] == "t," + ",".join(CHANNEL_NAMES)
    back = load_capture(path)
    assert np.array_equal(back.voltage, capture.voltage)
    assert np.array_equal(back.current, capture.current)
    assert back.sample_rate_hz == RATE


def test_csv_columns_in_any_order_with_aliases_comments_and_scales(tmp_path):
    names = ["I12_A", "time_s", *[n.upper() for n in CHANNEL_NAMES[:14]]]
    rows = [[0.5 * k, k / 1000, *range(14)] for k in range(5)]
    text = "# recorded by hand\n" + ",".join(names) + "\n\n" + "\n".join(
        ",".join(str(x) for x in row) for row in rows) + "\n"
    path = tmp_path / "hand.csv"
    path.write_text(text)
    back = load_capture(path, scales={"i12": 2.0})
    assert back.sample_rate_hz == 1000
    assert list(back.current[11]) == [k * 1.0 for k in range(5)]
    assert list(back.voltage[2]) == [2.0] * 5 and list(back.current[10]) == [13.0] * 5


def test_csv_without_time_column_takes_the_given_rate(tmp_path):
    path = tmp_path / "no_t.csv"
    path.write_text(",".join(CHANNEL_NAMES) + "\n" + ",".join(["1"] * 15) + "\n")
    back = load_capture(path, sample_rate_hz=6400)
    assert back.sample_rate_hz == 6400 and back.samples == 1


# --- malformed files -----------------------------------------------------------------------------

HEADER = "t," + ",".join(CHANNEL_NAMES)


def good_row(k):
    return f"{k / 8000}," + ",".join(["1.0"] * 15)


PCM16 = struct.pack("<HHIIHH", 1, 15, 8000, 8000 * 30, 30, 16)

BAD_FILES = {
    "csv-empty": ("x.csv", b""),
    "csv-comments-only": ("x.csv", b"# nothing\n\n"),
    "csv-header-only": ("x.csv", HEADER.encode()),
    "csv-unknown-column": ("x.csv", (HEADER + ",x\n" + good_row(0) + ",1").encode()),
    "csv-missing-column": ("x.csv", b"t,v1,v2,v3\n0,1,2,3\n"),
    "csv-duplicate-column": ("x.csv", (HEADER + ",v1\n" + good_row(0) + ",1").encode()),
    "csv-ragged": ("x.csv", (HEADER + "\n" + good_row(0) + "\n" + good_row(1) + ",9").encode()),
    "csv-not-numbers": ("x.csv", (HEADER + "\n" + good_row(0).replace("1.0", "one", 1)).encode()),
    "csv-nan": ("x.csv", (HEADER + "\n" + good_row(0) + "\n"
                          + good_row(1).replace("1.0", "nan", 1)).encode()),
    "csv-time-not-uniform": ("x.csv", (HEADER + "\n" + "\n".join(
        good_row(k) for k in (0, 1, 3, 4))).encode()),
    "csv-time-backwards": ("x.csv", (HEADER + "\n" + good_row(1) + "\n" + good_row(0)).encode()),
    "csv-single-row-no-rate": ("x.csv", (HEADER + "\n" + good_row(0)).encode()),
    "csv-rate-implausible": ("x.csv", (HEADER + "\n" + "\n".join(
        f"{k},1,1,1,1,1,1,1,1,1,1,1,1,1,1,1" for k in range(3))).encode()),
    "csv-not-utf8": ("x.csv", b"t,v1\xff\xfe\n"),
    "wav-empty": ("x.wav", b""),
    "wav-not-riff": ("x.wav", b"RIFX" + bytes(40)),
    "wav-no-fmt": ("x.wav", b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00"),
    "wav-no-data": ("x.wav", b"RIFF\x18\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + PCM16),
    "wav-truncated-data": ("x.wav", riff(PCM16, bytes(60))[:-10]),
    "wav-partial-frame": ("x.wav", riff(PCM16, bytes(61))),
    "wav-two-channels": ("x.wav", riff(struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16),
                                       bytes(8))),
    "wav-8-bit": ("x.wav", riff(struct.pack("<HHIIHH", 1, 15, 8000, 120000, 15, 8), bytes(15))),
    "wav-a-law": ("x.wav", riff(struct.pack("<HHIIHH", 6, 15, 8000, 120000, 15, 8), bytes(15))),
    "wav-bad-align": ("x.wav", riff(struct.pack("<HHIIHH", 1, 15, 8000, 240000, 31, 16),
                                    bytes(62))),
    "wav-short-fmt": ("x.wav", riff(b"\x01\x00", bytes(30))),
    "wav-extensible-unknown-guid": ("x.wav", riff(extensible_fmt(1, 16)[:-1] + b"\x00",
                                                  bytes(30))),
    "wav-rate-zero": ("x.wav", riff(struct.pack("<HHIIHH", 1, 15, 0, 0, 30, 16), bytes(30))),
    "wav-infinite-float": ("x.wav", riff(extensible_fmt(3, 32), np.full(15, np.inf, "<f4")
                                         .tobytes())),
    "npz-empty": ("x.npz", b""),
    "npz-text": ("x.npz", b"voltage,current\n"),
    "npz-truncated-zip": ("x.npz", b"PK\x03\x04" + bytes(20)),
    "unknown-suffix": ("x.flac", b"fLaC"),
    "no-suffix": ("capture", b""),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_files_raise_capture_error_with_the_path(tmp_path, name):
    filename, content = BAD_FILES[name]
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        load_capture(path, scales=SCALES)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert info.value.reason


def save_arrays(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


BAD_NPZ = {
    "missing-current": {"voltage": np.zeros((3, 4)), "sample_rate": 8000},
    "complex": {"voltage": np.zeros((3, 4), complex), "current": np.zeros((12, 4)),
                "sample_rate": 8000},
    "strings": {"voltage": np.array([["a"] * 4] * 3), "current": np.zeros((12, 4)),
                "sample_rate": 8000},
    "wrong-shape": {"voltage": np.zeros((4, 4)), "current": np.zeros((12, 4)),
                    "sample_rate": 8000},
    "lengths-differ": {"voltage": np.zeros((3, 4)), "current": np.zeros((12, 5)),
                       "sample_rate": 8000},
    "two-rates": {"voltage": np.zeros((3, 4)), "current": np.zeros((12, 4)),
                  "sample_rate": [8000, 6000]},
    "rate-nan": {"voltage": np.zeros((3, 4)), "current": np.zeros((12, 4)),
                 "sample_rate": np.nan},
    "temperature-2d": {"voltage": np.zeros((3, 4)), "current": np.zeros((12, 4)),
                       "sample_rate": 8000, "temperature_c": np.zeros((2, 2))},
    "infinite-sample": {"voltage": np.full((3, 4), np.inf), "current": np.zeros((12, 4)),
                        "sample_rate": 8000},
}


@pytest.mark.parametrize("name", sorted(BAD_NPZ))
def test_malformed_npz_contents(tmp_path, name):
    path = tmp_path / "bad.npz"
    save_arrays(path, **BAD_NPZ[name])
    with pytest.raises(CaptureError, match=r"bad\.npz"):
        load_capture(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickle.npz"
    with open(path, "wb") as f:
        np.savez(f, voltage=np.array([object()] * 3), current=np.zeros((12, 1)),
                 sample_rate=8000)
    with pytest.raises(CaptureError, match="pickle"):
        load_capture(path)


@pytest.mark.parametrize(("scales", "match"), [
    (None, "needs 15 scale factors"),
    ([1.0] * 14, "14 scale factors"),
    ([0.0] * 15, "non-zero"),
    ([float("nan")] * 15, "non-zero"),
    ({"v1": 1.0}, "no scale for v2"),
    ({"x9": 1.0}, "unknown channel"),
    ("abc", "15 numbers"),
])
def test_bad_wav_scales(capture, tmp_path, scales, match):
    path = tmp_path / "ok.wav"
    save_wav(capture, path, SCALES)
    with pytest.raises(CaptureError, match=match):
        load_capture(path, scales=scales)


def test_rate_argument_must_agree_with_the_file(capture, tmp_path):
    path = tmp_path / "ok.npz"
    save_npz(capture, path)
    assert load_capture(path, sample_rate_hz=RATE).sample_rate_hz == RATE
    with pytest.raises(CaptureError, match="8000"):
        load_capture(path, sample_rate_hz=8000)
    csv = tmp_path / "ok.csv"
    save_csv(small_capture(), csv)
    with pytest.raises(CaptureError, match="time column says 6000 Hz"):
        load_capture(csv, sample_rate_hz=7000)


def test_missing_file_and_unwritable_path(tmp_path, capture):
    with pytest.raises(CaptureError, match="cannot read"):
        load_capture(tmp_path / "absent.npz")
    with pytest.raises(CaptureError, match="cannot write"):
        save_npz(capture, tmp_path / "no" / "such" / "dir.npz")


def test_save_wav_refuses_to_clip_and_fractional_rates(tmp_path):
    loud = small_capture()
    with pytest.raises(CaptureError, match=r"channel v1 peaks at .* its scale"):
        save_wav(loud, tmp_path / "loud.wav", [1.0] * 15)
    fractional = small_capture(rate=6000.5)
    with pytest.raises(CaptureError, match="whole Hz"):
        save_wav(fractional, tmp_path / "frac.wav", [1000.0] * 15)
    with pytest.raises(CaptureError, match="sample_format"):
        save_wav(small_capture(), tmp_path / "x.wav", [1000.0] * 15, "pcm8")


def test_capture_error_keeps_its_context_and_pickles():
    import pickle

    error = CaptureError("bad", path=Path("a/b.wav"))
    again = pickle.loads(pickle.dumps(error))
    assert again.reason == "bad" and again.path == os.fspath(Path("a/b.wav"))
    assert str(again) == f"{Path('a/b.wav')}: bad"
    assert str(CaptureError("plain")) == "plain"


# --- fuzz ----------------------------------------------------------------------------------------


def load_bytes(suffix, content, **kwargs):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"fuzz{suffix}"
        path.write_bytes(content)
        try:
            result = load_capture(path, **kwargs)
        except CaptureError as exc:
            assert str(path) in str(exc)
            return None
        assert isinstance(result, Capture)
        return result


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([".wav", ".csv", ".npz"]))
def test_fuzz_random_bytes(content, suffix):
    load_bytes(suffix, content, scales=SCALES)


@FUZZ
@given(st.binary(max_size=120), st.integers(0, 2 ** 32 - 1), st.integers(0, 3))
def test_fuzz_wav_with_a_plausible_header(tail, number, field):
    fmt = bytearray(PCM16)
    offsets = [(4, "<I"), (2, "<H"), (12, "<H"), (14, "<H")]
    offset, code = offsets[field]
    struct.pack_into(code, fmt, offset, number % (2 ** (8 * struct.calcsize(code))))
    load_bytes(".wav", riff(bytes(fmt), tail), scales=SCALES)


csv_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.text(alphabet="0123456789.e-+ nafi,", max_size=6))


@FUZZ
@given(st.lists(st.lists(csv_cell, min_size=14, max_size=17), max_size=6),
       st.permutations(["t", *CHANNEL_NAMES]))
def test_fuzz_csv_with_a_valid_header(rows, header):
    text = ",".join(header) + "\n" + "\n".join(",".join(row) for row in rows)
    load_bytes(".csv", text.encode())
