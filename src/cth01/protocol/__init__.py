"""The CTH01 LoRaWAN codec: every uplink decoded, every downlink encoded, from one table.

Public surface:
  decode(payload, dialect="auto")        -> Uplink
  decode_many(payloads, dialect=...)     -> Columns (numpy arrays per field)
  decode_downlink(payload)               -> tuple of command items
  encode_uplink(uplink_or_items)         -> bytes (what a device sends)
  encode_downlink(*items)                -> bytes (what a server sends)
  commands                               -> typed builders for every downlink
  items                                  -> the item classes, by CamelCase name
  COMMANDS                               -> the command table
  DecodeError, EncodeError
Imports nothing else of cth01.
"""

from types import SimpleNamespace

from .codec import decode, decode_downlink, encode_downlink, encode_uplink
from .columnar import Columns, decode_many
from .errors import DecodeError, EncodeError, ProtocolError
from .model import GroupReading, HistoryRecord, Item, Uplink, item_class
from .schema import Command, Dialect, Direction
from .table import COMMANDS

items = SimpleNamespace(**{item_class(c).__name__: item_class(c) for c in COMMANDS})

__all__ = [
    "COMMANDS", "Columns", "Command", "DecodeError", "Dialect", "Direction", "EncodeError",
    "GroupReading", "HistoryRecord", "Item", "ProtocolError", "Uplink", "decode",
    "decode_downlink", "decode_many", "encode_downlink", "encode_uplink", "item_class", "items",
]
