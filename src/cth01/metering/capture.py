"""Sampled waveforms of one CTH01: what the metering engine reads.

Owns: the `Capture` value (3 voltage and 12 current channels sampled together) and loading and
saving captures. No metering maths here, and nothing but `CaptureError` leaves a loader: a bad
file is reported with its path and the reason, never as another exception or a wrong number.

Formats (`load_capture` picks one by suffix):
- `.npz`: arrays `voltage` (3, N) in volts, `current` (12, N) in amperes, scalar `sample_rate`
  (Hz), optional `temperature_c` (1-D, one NTC reading per second). Real numbers only.
- `.wav`: 15 channels in the order V1 V2 V3 I1 … I12; PCM 16/24/32-bit or IEEE float 32/64
  (format 1, 3 or WAVE_FORMAT_EXTENSIBLE of either), read by our own RIFF parser. Samples are
  normalised to full scale ±1.0 (PCM code / 2^(bits−1); float as stored) and multiplied by the
  caller's per-channel `scales` (volts or amperes at full scale) — required for WAV.
- `.csv`: a header row naming the columns (any order, case-insensitive): `t` (or `t_s`,
  `time`, `time_s`; seconds) and `v1`…`v3`, `i1`…`i12` (also `v1_v`, `i1_a`, …), all 15
  required; values in volts and amperes. Blank lines and lines starting with `#` are skipped.
  The sample rate comes from a uniform time column, or from `sample_rate_hz` (which must agree
  with the time column when both are present).
`scales` (15 floats, or a mapping from channel names `v1`…`i12` to floats; for a mapping,
channels left out keep 1.0 except in WAV, which needs all 15) multiply the file's numbers in
every format. WAV and CSV carry no temperature.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

VOLTAGE_CHANNELS = 3
CURRENT_CHANNELS = 12


class LocatedError(ValueError):
    """An error with a reason and, optionally, where it was found (`where: reason`)."""

    def __init__(self, reason: str, *, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


class CaptureError(ValueError):
    """A capture that cannot be metered (wrong shape, rate, non-finite samples, bad file).
    `path` names the file when there is one; `reason` says what is wrong."""

    def __init__(self, reason: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else os.fspath(path)
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path is not None else self.reason

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (_rebuild_capture_error, (self.reason, self.path))


def _rebuild_capture_error(reason: str, path: str | None) -> CaptureError:
    return CaptureError(reason, path=path)


@dataclass(frozen=True)
class Capture:
    """Simultaneous samples: `voltage` (3, N) in volts (L1-L3 as wired: phase-to-neutral for
    3P4W, line-to-line for 3P3W), `current` (12, N) in amperes (channels 1-12 as the CTs
    deliver them, before the configured direction is applied), at `sample_rate_hz`
    (6000-8000 Hz on the device). `temperature_c` optionally holds one raw NTC reading per
    second (before the calibration offset)."""

    voltage: np.ndarray
    current: np.ndarray
    sample_rate_hz: float
    temperature_c: np.ndarray | None = None

    def __post_init__(self) -> None:
        v, i = np.asarray(self.voltage), np.asarray(self.current)
        if v.ndim != 2 or v.shape[0] != VOLTAGE_CHANNELS:
            raise CaptureError(f"voltage must be shaped (3, N), got {v.shape}")
        if i.ndim != 2 or i.shape[0] != CURRENT_CHANNELS:
            raise CaptureError(f"current must be shaped (12, N), got {i.shape}")
        if v.shape[1] != i.shape[1]:
            raise CaptureError(f"voltage has {v.shape[1]} samples, current {i.shape[1]}")
        if not 1000 <= self.sample_rate_hz <= 100_000:
            raise CaptureError(f"sample rate {self.sample_rate_hz} Hz is not plausible")
        if not (np.isfinite(v).all() and np.isfinite(i).all()):
            raise CaptureError("samples must be finite numbers")
        object.__setattr__(self, "voltage", v.astype(np.float64, copy=False))
        object.__setattr__(self, "current", i.astype(np.float64, copy=False))

    @property
    def samples(self) -> int:
        return int(self.voltage.shape[1])

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate_hz


# --- files -------------------------------------------------------------------------------------

CHANNEL_NAMES = ("v1", "v2", "v3", *(f"i{k}" for k in range(1, CURRENT_CHANNELS + 1)))
CHANNELS = VOLTAGE_CHANNELS + CURRENT_CHANNELS
WAV_SAMPLE_FORMATS = ("pcm16", "pcm24", "pcm32", "float32", "float64")

Scales = Sequence[float] | Mapping[str, float]
PathLike = str | os.PathLike[str]

# Exceptions a malformed file can provoke inside numpy, zipfile and friends; all become
# CaptureError with the file's path.
_FILE_ERRORS = (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, OverflowError,
                MemoryError, NotImplementedError, struct.error, zipfile.BadZipFile, zlib.error)
_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT, _WAVE_FORMAT_EXTENSIBLE = 1, 3, 0xFFFE
_KSDATAFORMAT_SUFFIX = bytes.fromhex("000000001000800000aa00389b71")
_CSV_ALIASES = {
    **{alias: "t" for alias in ("t", "t_s", "time", "time_s")},
    **{name: name for name in CHANNEL_NAMES},
    **{f"{name}_{'v' if name[0] == 'v' else 'a'}": name for name in CHANNEL_NAMES},
}


def load_capture(path: PathLike, scales: Scales | None = None,
                 sample_rate_hz: float | None = None) -> Capture:
    """The capture in `path` (.npz, .wav or .csv by suffix; see the module docstring)."""
    suffix = Path(path).suffix.lower() if isinstance(path, str | os.PathLike) else ""
    loaders = {".npz": load_npz, ".wav": load_wav, ".csv": load_csv}
    if suffix not in loaders:
        raise CaptureError(f"unknown capture format {suffix or '(no suffix)'!r}; "
                           "expected .npz, .wav or .csv", path=_printable(path))
    return loaders[suffix](path, scales=scales, sample_rate_hz=sample_rate_hz)


def load_npz(path: PathLike, *, scales: Scales | None = None,
             sample_rate_hz: float | None = None) -> Capture:
    """A capture saved by `save_npz` (or any .npz with the same arrays)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise CaptureError("not an .npz (zip) archive", path=path)
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CaptureError("not an .npz archive", path=path)
            missing = [n for n in ("voltage", "current", "sample_rate") if n not in archive]
            if missing:
                raise CaptureError(f"missing array(s) {', '.join(missing)}; has "
                                   f"{', '.join(archive.files) or 'none'}", path=path)
            arrays = {n: archive[n] for n in ("voltage", "current", "sample_rate",
                                              "temperature_c") if n in archive}
    except CaptureError:
        raise
    except _FILE_ERRORS as exc:
        raise CaptureError(f"cannot read as .npz: {_describe(exc)}", path=path) from exc
    for name, array in arrays.items():
        _require_real(array, name, path)
    rate = arrays["sample_rate"]
    if rate.size != 1:
        raise CaptureError(f"sample_rate must be one number, has shape {rate.shape}", path=path)
    file_rate = float(rate.reshape(()))
    temperature = arrays.get("temperature_c")
    if temperature is not None:
        if temperature.ndim != 1 or not np.isfinite(temperature).all():
            raise CaptureError("temperature_c must be a 1-D array of finite numbers", path=path)
        temperature = temperature.astype(np.float64)
    scale = _scale_vector(scales, path, require_all=False)
    return _make_capture(arrays["voltage"], arrays["current"], scale,
                         _agree(file_rate, sample_rate_hz, path), temperature, path)


def load_wav(path: PathLike, *, scales: Scales | None = None,
             sample_rate_hz: float | None = None) -> Capture:
    """A 15-channel WAV (V1–V3, I1–I12); `scales` (volts/amperes at full scale) required."""
    if scales is None:
        raise CaptureError("a .wav capture needs 15 scale factors (V1–V3 in volts, I1–I12 in "
                           "amperes at digital full scale)", path=path)
    scale = _scale_vector(scales, path, require_all=True)
    try:
        data = Path(path).read_bytes()
    except _FILE_ERRORS as exc:
        raise CaptureError(f"cannot read: {_describe(exc)}", path=path) from exc
    tag, channels, rate, bits, payload = _parse_riff(data, path)
    if channels != CHANNELS:
        raise CaptureError(f"has {channels} channels, a capture needs {CHANNELS} "
                           "(V1–V3, I1–I12)", path=path)
    frame = channels * bits // 8
    if len(payload) % frame:
        raise CaptureError(f"data chunk holds {len(payload)} bytes, not whole frames of "
                           f"{frame} bytes", path=path)
    if tag == _WAVE_FORMAT_PCM and bits == 24:
        raw = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        codes = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = ((codes ^ 0x800000) - 0x800000) / float(2 ** 23)
    elif tag == _WAVE_FORMAT_PCM:
        values = np.frombuffer(payload, dtype=f"<i{bits // 8}") / float(2 ** (bits - 1))
    else:
        values = np.frombuffer(payload, dtype=f"<f{bits // 8}").astype(np.float64)
    samples = values.reshape(-1, channels).T
    return _make_capture(samples[:VOLTAGE_CHANNELS], samples[VOLTAGE_CHANNELS:], scale,
                         _agree(float(rate), sample_rate_hz, path), None, path)


def load_csv(path: PathLike, *, scales: Scales | None = None,
             sample_rate_hz: float | None = None) -> Capture:
    """A CSV with a header row `t,v1,v2,v3,i1,…,i12` (see the module docstring)."""
    scale = _scale_vector(scales, path, require_all=False)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except _FILE_ERRORS as exc:
        raise CaptureError(f"cannot read as UTF-8 text: {_describe(exc)}", path=path) from exc
    lines = [(k + 1, line) for k, line in enumerate(text.splitlines())
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise CaptureError("no header row", path=path)
    header_line, header = lines[0]
    columns = [_CSV_ALIASES.get(name.strip().lower()) for name in header.split(",")]
    for name, column in zip(header.split(","), columns, strict=True):
        if column is None:
            raise CaptureError(f"line {header_line}: unknown column {name.strip()!r}; expected "
                               "t, v1–v3, i1–i12", path=path)
    if len(set(columns)) != len(columns):
        raise CaptureError(f"line {header_line}: a column appears twice", path=path)
    missing = [n for n in CHANNEL_NAMES if n not in columns]
    if missing:
        raise CaptureError(f"line {header_line}: missing column(s) {', '.join(missing)}",
                           path=path)
    if len(lines) == 1:
        raise CaptureError("no samples after the header", path=path)
    width = len(columns)
    for number, line in lines[1:]:
        if line.count(",") != width - 1:
            raise CaptureError(f"line {number}: {line.count(',') + 1} fields, the header "
                               f"names {width}", path=path)
    try:
        table = np.loadtxt(io.StringIO("\n".join(line for _, line in lines[1:])),
                           delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except _FILE_ERRORS as exc:
        raise CaptureError(f"not a table of numbers: {_describe(exc)}", path=path) from exc
    if table.shape[1] != width:
        raise CaptureError(f"rows have {table.shape[1]} fields, the header names {width}",
                           path=path)
    by_name = {name: table[:, k] for k, name in enumerate(columns)}
    rate = _csv_rate(by_name.get("t"), sample_rate_hz, path)
    samples = np.stack([by_name[n] for n in CHANNEL_NAMES])
    return _make_capture(samples[:VOLTAGE_CHANNELS], samples[VOLTAGE_CHANNELS:], scale, rate,
                         None, path)


def save_npz(capture: Capture, path: PathLike) -> None:
    """Write `capture` as .npz (arrays voltage, current, sample_rate, temperature_c if any)
    at exactly `path`."""
    arrays = {"voltage": capture.voltage, "current": capture.current,
              "sample_rate": np.float64(capture.sample_rate_hz)}
    if capture.temperature_c is not None:
        arrays["temperature_c"] = np.asarray(capture.temperature_c, dtype=np.float64)
    _write(path, lambda f: np.savez(f, **arrays))


def save_wav(capture: Capture, path: PathLike, scales: Scales,
             sample_format: str = "pcm24") -> None:
    """Write `capture` as a 15-channel WAV: each channel divided by its scale (full scale),
    as `sample_format` (pcm16, pcm24, pcm32, float32, float64). A PCM sample beyond full scale
    is an error, not a clip; the sample rate must be a whole number of Hz."""
    if sample_format not in WAV_SAMPLE_FORMATS:
        raise CaptureError(f"sample_format {sample_format!r} is not one of "
                           f"{', '.join(WAV_SAMPLE_FORMATS)}", path=path)
    rate = capture.sample_rate_hz
    if not float(rate).is_integer():
        raise CaptureError(f"WAV stores whole Hz; the sample rate is {rate}", path=path)
    scale = _scale_vector(scales, path, require_all=True)
    x = np.concatenate([capture.voltage, capture.current]) / scale[:, None]
    bits = int(sample_format[-2:])
    if sample_format.startswith("pcm"):
        top = 2 ** (bits - 1)
        if x.size:
            peak = np.abs(x).max(axis=1)
            worst = int(np.argmax(peak))
            if peak[worst] > 1 + 0.5 / top:
                raise CaptureError(f"channel {CHANNEL_NAMES[worst]} peaks at {peak[worst]:.3g}"
                                   " × its scale; choose a larger scale", path=path)
        codes = np.ascontiguousarray(np.clip(np.round(x.T * top), -top, top - 1), dtype="<i4")
        if bits == 24:
            payload = codes.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        else:
            payload = codes.astype(f"<i{bits // 8}").tobytes()
        tag, fmt_extra, fact = _WAVE_FORMAT_PCM, b"", b""
    else:
        payload = np.ascontiguousarray(x.T, dtype=f"<f{bits // 8}").tobytes()
        tag, fmt_extra = _WAVE_FORMAT_FLOAT, struct.pack("<H", 0)
        fact = b"fact" + struct.pack("<II", 4, x.shape[1])
    align = CHANNELS * bits // 8
    fmt = struct.pack("<HHIIHH", tag, CHANNELS, int(rate), int(rate) * align, align,
                      bits) + fmt_extra
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + fact
            + b"data" + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1))
    if len(body) > 0xFFFFFFFF:
        raise CaptureError("too long for a RIFF file (4 GiB); use .npz", path=path)
    _write(path, lambda f: f.write(b"RIFF" + struct.pack("<I", len(body)) + body))


def save_csv(capture: Capture, path: PathLike) -> None:
    """Write `capture` as CSV `t,v1,v2,v3,i1,…,i12` (t = sample index / rate, in seconds),
    with every value written exactly (17 significant digits)."""
    t = np.arange(capture.samples) / capture.sample_rate_hz
    table = np.concatenate([t[None, :], capture.voltage, capture.current]).T

    def write(f: BinaryIO) -> None:
        f.write(("t," + ",".join(CHANNEL_NAMES) + "\n").encode())
        np.savetxt(f, table, delimiter=",", fmt="%.17g")

    _write(path, write)


def _write(path: PathLike, writer: Callable[[BinaryIO], object]) -> None:
    try:
        with open(path, "wb") as f:
            writer(f)
    except OSError as exc:
        raise CaptureError(f"cannot write: {_describe(exc)}", path=path) from exc


def _printable(path: object) -> str:
    return os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _require_real(array: np.ndarray, name: str, path: PathLike) -> None:
    if array.dtype.kind not in "iuf":
        raise CaptureError(f"{name} holds {array.dtype} values, not real numbers", path=path)


def _scale_vector(scales: Scales | None, path: PathLike, *, require_all: bool) -> np.ndarray:
    if scales is None:
        return np.ones(CHANNELS)
    if isinstance(scales, Mapping):
        out = np.ones(CHANNELS)
        seen = set()
        for key, value in scales.items():
            name = str(key).strip().lower()
            if name not in CHANNEL_NAMES:
                raise CaptureError(f"scale for unknown channel {key!r}; channels are "
                                   "v1–v3, i1–i12", path=path)
            out[CHANNEL_NAMES.index(name)] = _scale_value(value, name, path)
            seen.add(name)
        missing = [n for n in CHANNEL_NAMES if n not in seen]
        if require_all and missing:
            raise CaptureError(f"no scale for {', '.join(missing)}", path=path)
        return out
    if isinstance(scales, str | bytes) or not isinstance(scales, Sequence | np.ndarray):
        raise CaptureError("scales must be 15 numbers or a mapping of channel names",
                           path=path)
    if len(scales) != CHANNELS:
        raise CaptureError(f"{len(scales)} scale factors given, a capture has {CHANNELS} "
                           "channels (V1–V3, I1–I12)", path=path)
    return np.array([_scale_value(v, CHANNEL_NAMES[k], path) for k, v in enumerate(scales)])


def _scale_value(value: object, name: str, path: PathLike) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number != 0):
        raise CaptureError(f"scale of {name} must be a finite non-zero number, got {value!r}",
                           path=path)
    return number


def _agree(file_rate: float, given: float | None, path: PathLike) -> float:
    if given is not None and not np.isclose(float(given), file_rate, rtol=1e-9, atol=0):
        raise CaptureError(f"the file says {file_rate} Hz, sample_rate_hz says {given}",
                           path=path)
    return file_rate


def _csv_rate(t: np.ndarray | None, given: float | None, path: PathLike) -> float:
    if t is None:
        if given is None:
            raise CaptureError("no time column; pass sample_rate_hz", path=path)
        return float(given)
    if len(t) < 2:
        if given is None:
            raise CaptureError("one sample says nothing about the rate; pass sample_rate_hz",
                               path=path)
        return float(given)
    steps = np.diff(t)
    if not (np.isfinite(t).all() and (steps > 0).all()):
        raise CaptureError("the time column must increase strictly", path=path)
    step = (t[-1] - t[0]) / (len(t) - 1)
    worst = int(np.argmax(np.abs(steps - step)))
    if abs(steps[worst] - step) > 1e-3 * step:
        raise CaptureError(f"the time column is not uniform: step {steps[worst]:.9g} s at row "
                           f"{worst + 2}, mean {step:.9g} s", path=path)
    rate = 1 / step
    if abs(rate - round(rate)) < 1e-6 * rate:
        rate = float(round(rate))
    if given is not None:
        if abs(float(given) - rate) > 1e-3 * rate:
            raise CaptureError(f"the time column says {rate:.6g} Hz, sample_rate_hz says "
                               f"{given}", path=path)
        return float(given)
    return rate


def _make_capture(voltage: np.ndarray, current: np.ndarray, scale: np.ndarray, rate: float,
                  temperature: np.ndarray | None, path: PathLike) -> Capture:
    try:
        voltage = np.asarray(voltage, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        if voltage.ndim == 2 and current.ndim == 2:
            if voltage.shape[0] == VOLTAGE_CHANNELS:
                voltage = voltage * scale[:VOLTAGE_CHANNELS, None]
            if current.shape[0] == CURRENT_CHANNELS:
                current = current * scale[VOLTAGE_CHANNELS:, None]
        return Capture(voltage, current, rate, temperature)
    except CaptureError as exc:
        raise CaptureError(exc.reason, path=path) from None
    except _FILE_ERRORS as exc:
        raise CaptureError(f"not a capture: {_describe(exc)}", path=path) from exc


def _parse_riff(data: bytes, path: PathLike) -> tuple[int, int, int, int, memoryview]:
    """(format tag 1 or 3, channels, sample rate, bits, data bytes) of a RIFF/WAVE file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise CaptureError("not a RIFF/WAVE file", path=path)
    view = memoryview(data)
    pos, fmt, payload = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = bytes(view[pos:pos + 4]), int.from_bytes(view[pos + 4:pos + 8], "little")
        start, end = pos + 8, pos + 8 + size
        if end > len(data):
            raise CaptureError(f"chunk {chunk!r} at byte {pos} declares {size} bytes, only "
                               f"{len(data) - start} remain (truncated file?)", path=path)
        if chunk == b"fmt ":
            fmt = bytes(view[start:end])
        elif chunk == b"data":
            payload = view[start:end]
        pos = end + (size & 1)
    if fmt is None:
        raise CaptureError("no fmt chunk", path=path)
    if payload is None:
        raise CaptureError("no data chunk", path=path)
    if len(fmt) < 16:
        raise CaptureError(f"fmt chunk of {len(fmt)} bytes, needs 16", path=path)
    tag, channels, rate, _byte_rate, align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _KSDATAFORMAT_SUFFIX:
            raise CaptureError("WAVE_FORMAT_EXTENSIBLE without a PCM/float sub-format",
                               path=path)
        tag = int.from_bytes(fmt[24:26], "little")
    supported = {(_WAVE_FORMAT_PCM, 16), (_WAVE_FORMAT_PCM, 24), (_WAVE_FORMAT_PCM, 32),
                 (_WAVE_FORMAT_FLOAT, 32), (_WAVE_FORMAT_FLOAT, 64)}
    if (tag, bits) not in supported:
        kind = {_WAVE_FORMAT_PCM: "PCM", _WAVE_FORMAT_FLOAT: "float"}.get(tag, f"format {tag}")
        raise CaptureError(f"{kind} with {bits} bits is not supported (PCM 16/24/32, "
                           "float 32/64)", path=path)
    if channels == 0 or align != channels * bits // 8:
        raise CaptureError(f"block align {align} does not match {channels} channels of "
                           f"{bits} bits", path=path)
    return tag, channels, rate, bits, payload
