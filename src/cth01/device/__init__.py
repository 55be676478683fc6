"""cth01.device — a virtual CTH01: the firmware as a sans-IO state machine, and fleets of them.

Public surface:
  VirtualCTH01(identity)        one device: power_on / tick / receive_downlink / join_accept /
                                link_check_answer / device_time_answer -> outputs
  UplinkFrame, JoinRequest, LinkCheckRequest, DeviceTimeRequest   what a device emits
  Measurements                  one second of inputs (D devices)
  Settings, Identity, LorawanSettings, SettingError               configuration and identity
  Fleet(n)                      many devices, one vectorised bank, a load model, a Network
  Network                       coverage, joins, MAC answers, Class C downlinks
  LoadModel, PROFILES           the fast per-second load model
  LocalClock, DstRule           the device's local time
  ToolBox                       the local (Bluetooth) configuration interface

Uses `cth01.protocol` for every byte and `cth01.metering` (optionally) for waveform inputs.
Never does I/O; the runner (`cth01.simulate`) paces time and sends uplinks somewhere.
"""

from .clock import DstRule, LocalClock
from .firmware import (
    DeviceTimeRequest,
    JoinRequest,
    LinkCheckRequest,
    Output,
    UplinkFrame,
    VirtualCTH01,
)
from .fleet import Fleet
from .loads import PROFILES, LoadModel
from .measurements import Measurements, from_second_arrays
from .network import Network
from .settings import Identity, LorawanSettings, SettingError, Settings
from .storage import RecordStore
from .toolbox import Session, ToolBox, ToolBoxError

__all__ = [
    "PROFILES", "DeviceTimeRequest", "DstRule", "Fleet", "Identity", "JoinRequest",
    "LinkCheckRequest", "LoadModel", "LocalClock", "LorawanSettings", "Measurements", "Network",
    "Output", "RecordStore", "Session", "SettingError", "Settings", "ToolBox", "ToolBoxError",
    "UplinkFrame", "VirtualCTH01", "from_second_arrays",
]
