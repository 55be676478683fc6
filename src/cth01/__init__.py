"""cth01 — codec, virtual twin and hub for the Milesight CTH01 smart power monitor."""

__version__ = "0.1.0"
