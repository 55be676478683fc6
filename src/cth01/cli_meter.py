"""The metering commands of the CLI: `cth01 meter` and `cth01 generate-capture`.

Owns: reading a capture and an interfaces file, running `cth01.metering.Meter` over it, and
presenting the per-second reports (a rich table, JSON, a PNG plot); writing generated
captures. All metering maths lives in `cth01.metering`; this module only presents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .metering import (
    Capture,
    CaptureError,
    ConfigError,
    Meter,
    MeterConfig,
    ScenarioError,
    SecondReport,
    generate,
    load_capture,
    save_npz,
)

# keys of an interfaces file that are not interface settings
CAPTURE_KEYS = ("scales", "sample_rate_hz", "nominal_frequency_hz")


class MeterInputError(ValueError):
    """An interfaces file or capture the meter cannot use (the reason names the file)."""


def read_interfaces(path: Path | None) -> tuple[MeterConfig, dict[str, Any]]:
    """The meter configuration and the capture options (`scales` for WAV, `sample_rate_hz`
    for CSV without a time column, `nominal_frequency_hz`) of an interfaces JSON file.
    Without a file: 3P4W, all groups single-phase, 100 A CTs, forward."""
    if path is None:
        return MeterConfig.default(), {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeterInputError(f"{path}: cannot read the interfaces file ({exc})") from None
    if not isinstance(doc, dict):
        raise MeterInputError(f"{path}: the interfaces file must hold a JSON object")
    options = {k: doc.pop(k) for k in CAPTURE_KEYS if k in doc}
    try:
        config = MeterConfig.from_dict(doc) if doc else MeterConfig.default()
    except ConfigError as exc:
        raise MeterInputError(f"{path}: {exc}") from None
    return config, options


def meter_capture(capture_path: Path, config_path: Path | None
                  ) -> tuple[Capture, list[SecondReport]]:
    """Meter every complete second of a capture file."""
    config, options = read_interfaces(config_path)
    try:
        capture = load_capture(capture_path, scales=options.get("scales"),
                               sample_rate_hz=options.get("sample_rate_hz"))
    except CaptureError as exc:
        raise MeterInputError(str(exc)) from None
    nominal = options.get("nominal_frequency_hz", 50)
    try:
        meter = Meter(config, capture.sample_rate_hz, nominal)
        reports = meter.feed(capture)
    except (ConfigError, CaptureError) as exc:
        raise MeterInputError(f"{capture_path}: {exc}") from None
    if not reports:
        raise MeterInputError(f"{capture_path}: shorter than one second "
                              f"({capture.seconds:.3f} s)")
    return capture, reports


def reports_json(docs: list[dict[str, Any]]) -> str:
    return json.dumps(docs, allow_nan=False)


def reports_table(docs: list[dict[str, Any]]) -> Any:
    """A rich renderable: one table per reported second would be a wall of numbers, so the
    table shows each channel's mean over the capture and the final energy registers."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    last = docs[-1]
    series = {k: np.array([d[k] for d in docs], dtype=float)
              for k in ("current_rms_a", "active_power_w", "reactive_power_var",
                        "apparent_power_va", "power_factor_pct", "thdi_pct")}
    volts = np.array([d["voltage_rms_v"] for d in docs], dtype=float)
    thdv = np.array([d["thdv_pct"] for d in docs], dtype=float)
    head = Table(title="voltages", title_justify="left")
    for col in ("phase", "Vrms V", "THDv %"):
        head.add_column(col, justify="right")
    for k in range(3):
        head.add_row(f"L{k + 1}", f"{volts[:, k].mean():.2f}", f"{thdv[:, k].mean():.2f}")
    unb = np.mean([d["unbalance_pct"] for d in docs])
    freq = np.mean([d["frequency_hz"] for d in docs])
    temp = last["temperature_c"]
    summary = Text(f"{len(docs)} s metered: means over the capture, energy registers at "
                   f"the end. Frequency {freq:.3f} Hz, unbalance {unb:.2f} %, temperature "
                   + (f"{temp:.2f} °C" if temp is not None else "not measured") + ".")
    ch = Table(title="channels", title_justify="left")
    for col in ("ch", "Irms A", "P W", "Q var", "S VA", "PF %", "THDi %", "import Wh",
                "export Wh"):
        ch.add_column(col, justify="right")
    for c in range(12):
        ch.add_row(str(c + 1), *(f"{series[k][:, c].mean():.2f}" for k in series),
                   f"{last['imported_active_energy_wh'][c]:.3f}",
                   f"{last['exported_active_energy_wh'][c]:.3f}")
    return Group(summary, head, ch)


def plot_reports(docs: list[dict[str, Any]], out: Path, title: str) -> None:
    """Voltage, current, active power and cumulative energy over time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([d["second"] for d in docs])
    panels = [("voltage_rms_v", "Vrms (V)", "L"), ("current_rms_a", "Irms (A)", "ch "),
              ("active_power_w", "P (W)", "ch "),
              ("imported_active_energy_wh", "imported energy (Wh)", "ch ")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 10), sharex=True)
    for ax, (key, label, prefix) in zip(axes, panels, strict=True):
        values = np.array([d[key] for d in docs], dtype=float)
        for c in range(values.shape[1]):
            if np.any(values[:, c]):
                ax.plot(t, values[:, c], label=f"{prefix}{c + 1}", linewidth=1)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="upper left", ncol=6, fontsize=7)
    axes[-1].set_xlabel("second")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_generated(profile: str, seconds: int, out: Path, sample_rate_hz: float,
                    seed: int) -> Capture:
    try:
        generated = generate(profile, seconds, sample_rate_hz=sample_rate_hz, seed=seed)
        save_npz(generated.capture, out)
    except (ScenarioError, CaptureError) as exc:
        raise MeterInputError(str(exc)) from None
    return generated.capture
