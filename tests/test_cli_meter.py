"""`cth01 generate-capture` and `cth01 meter`: a generated capture is metered out of the box,
matches the generator's known truth, and is plotted; bad input gives one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from cth01.cli import app
from cth01.metering import MeterConfig, generate, save_wav

runner = CliRunner()

KEYS = {"voltage_rms_v", "thdv_pct", "unbalance_pct", "current_rms_a", "thdi_pct",
        "active_power_w", "reactive_power_var", "apparent_power_va", "power_factor_pct",
        "imported_active_energy_wh", "exported_active_energy_wh",
        "imported_reactive_energy_varh", "exported_reactive_energy_varh",
        "apparent_energy_vah", "temperature_c", "groups"}


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_generated_capture_is_metered_and_matches_the_truth(tmp_path):
    out = tmp_path / "cap.npz"
    result = runner.invoke(app, ["generate-capture", "--profile", "sine", "--seconds", "3",
                                 "--seed", "4", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["meter", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    seconds = json.loads(result.stdout)
    assert len(seconds) == 3
    assert set(seconds[0]) >= KEYS
    assert all(len(s["current_rms_a"]) == 12 and len(s["voltage_rms_v"]) == 3 for s in seconds)
    truth = generate("sine", 3, seed=4).truth
    metered = np.array([s["active_power_w"] for s in seconds])
    scale = np.maximum(np.abs(truth.apparent_power_va), 1.0)
    assert np.max(np.abs(metered - truth.active_power_w) / scale) < 5e-4
    energy = np.array(seconds[-1]["imported_active_energy_wh"])
    expected = np.clip(truth.active_power_w, 0, None).sum(axis=0) / 3600
    assert np.allclose(energy, expected, rtol=5e-4, atol=1e-6)


def test_table_and_plot(tmp_path):
    out = tmp_path / "cap.npz"
    assert runner.invoke(app, ["generate-capture", "--profile", "office", "--seconds", "2",
                               str(out)]).exit_code == 0
    png = tmp_path / "plot.png"
    result = runner.invoke(app, ["meter", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "Vrms" in result.stdout and "THDi" in result.stdout
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_wav_capture_with_scales_and_interfaces(tmp_path):
    g = generate("sine", 2, seed=1)
    scales = [800.0] * 3 + [200.0] * 12
    wav = tmp_path / "cap.wav"
    save_wav(g.capture, wav, scales)
    config = MeterConfig.default().to_dict()
    config["scales"] = scales
    cfg = tmp_path / "interfaces.json"
    cfg.write_text(json.dumps(config))
    result = runner.invoke(app, ["meter", str(wav), "--config", str(cfg), "--format", "json"])
    assert result.exit_code == 0, result.output
    p = np.array([s["active_power_w"] for s in json.loads(result.stdout)])
    assert np.allclose(p, g.truth.active_power_w, rtol=2e-3, atol=0.5)


def test_bad_inputs_give_one_line(tmp_path):
    assert "nope.npz" in one_error_line(runner.invoke(app, ["meter", str(tmp_path / "nope.npz")]))
    cap = tmp_path / "cap.npz"
    runner.invoke(app, ["generate-capture", "--profile", "sine", "--seconds", "1", str(cap)])
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"wiring": "2P5W"}')
    line = one_error_line(runner.invoke(app, ["meter", str(cap), "--config", str(cfg)]))
    assert "bad.json" in line and "wiring" in line
    cfg.write_text("{not json")
    assert "bad.json" in one_error_line(runner.invoke(app, ["meter", str(cap), "--config",
                                                            str(cfg)]))
    line = one_error_line(runner.invoke(app, ["generate-capture", "--profile", "moon",
                                              str(tmp_path / "x.npz")]))
    assert "moon" in line
