"""cth01.metering — from sampled waveforms to every quantity a CTH01 reports, in pure numpy.

Owns: the public surface of the metering package — captures (`Capture`), the interface
settings (`MeterConfig`), the streaming single-device `Meter` and its `SecondReport`s, the
vectorised fleet path `meter_batch` -> `SecondArrays`, and the exact `EnergyRegisters`.
Definitions and the standards they follow: docs/metering.md.

Must never: import anything of ours outside `cth01.metering` (the device twin and the CLI
import us, never the reverse), do I/O outside the capture loaders, or read a clock.
"""

from .capture import Capture, CaptureError
from .config import (
    ChannelConfig,
    ConfigError,
    GroupConfig,
    MeterConfig,
    TemperatureCalibration,
)
from .engine import (
    REGISTERS,
    EnergyRegisterError,
    EnergyRegisters,
    GroupReport,
    Meter,
    SecondArrays,
    SecondReport,
    meter_batch,
)

__all__ = [
    "REGISTERS",
    "Capture",
    "CaptureError",
    "ChannelConfig",
    "ConfigError",
    "EnergyRegisterError",
    "EnergyRegisters",
    "GroupConfig",
    "GroupReport",
    "Meter",
    "MeterConfig",
    "SecondArrays",
    "SecondReport",
    "TemperatureCalibration",
    "meter_batch",
]

# --- signal generator and capture loaders (signals.py, capture.py) --------------------------
# Scenario building blocks (loads, circuits, events) stay in `cth01.metering.signals`.
from .capture import load_capture, save_csv, save_npz, save_wav
from .sensors import DEFAULT_SENSORS, SensorError, SensorModel
from .sensors import apply as apply_sensor_model
from .signals import (
    PROFILES,
    Generated,
    Scenario,
    ScenarioError,
    Truth,
    generate,
    generate_seconds,
    profile,
)

__all__ += [
    "DEFAULT_SENSORS",
    "PROFILES",
    "Generated",
    "Scenario",
    "ScenarioError",
    "SensorError",
    "SensorModel",
    "Truth",
    "apply_sensor_model",
    "generate",
    "generate_seconds",
    "load_capture",
    "profile",
    "save_csv",
    "save_npz",
    "save_wav",
]
# --- end of the generator / loader exports --------------------------------------------------
