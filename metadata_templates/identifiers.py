"""Normalisation of the hex identifiers that smart metering uses everywhere.

Hex identifiers compare case-insensitively and are stored upper-case; SHA-256 digests are lower-case.
Each function raises ``ValueError`` with a message in the house form (field, found, expected) so the
CPL importer, the image gateway and the estate reader report the same way.
"""

from __future__ import annotations

import re

from metadata_templates.errors import field_error

DEVICE_TYPES = ("ESME", "GSME", "CHF", "GPF", "PPMID", "HCALCS", "IHD", "CAD")

_HEX = re.compile(r"[0-9A-Fa-f]+")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def hex_id(value: str, digits: int | tuple[int, ...], field: str) -> str:
    """Return ``value`` as upper-case hex of one of the allowed lengths.

    Raises:
        ValueError: not hex, or the wrong number of digits.
    """
    allowed = (digits,) if isinstance(digits, int) else digits
    text = value.strip()
    if not _HEX.fullmatch(text) or len(text) not in allowed:
        lengths = " or ".join(str(d) for d in allowed)
        raise ValueError(field_error(field, value, f"{lengths} hex digits"))
    return text.upper()


def manufacturer_id(value: str, field: str = "Manufacturer Identifier") -> str:
    """4 hex digits (a ZigBee manufacturer code), upper-case."""
    return hex_id(value, 4, field)


def model_id(value: str, field: str = "Model Identifier") -> str:
    """4 or 8 hex digits, upper-case."""
    return hex_id(value, (4, 8), field)


def hardware_version(value: str, field: str = "Hardware Version") -> str:
    """4 hex digits, upper-case."""
    return hex_id(value, 4, field)


def firmware_version(value: str, field: str = "Firmware Version") -> str:
    """8 hex digits (4 octets), upper-case."""
    return hex_id(value, 8, field)


def sha256_hex(value: str, field: str = "SHA-256") -> str:
    """64 hex digits, lower-case."""
    text = value.strip()
    if not _SHA256.fullmatch(text):
        raise ValueError(field_error(field, value, "64 hex digits (SHA-256)"))
    return text.lower()


def device_type(value: str, field: str = "Device Type") -> str:
    """One of the SMETS2 device types, upper-case."""
    text = value.strip().upper()
    if text not in DEVICE_TYPES:
        raise ValueError(field_error(field, value, "one of " + ", ".join(DEVICE_TYPES)))
    return text


def fmt_u16(value: int) -> str:
    """An integer as 4 upper-case hex digits."""
    return f"{value:04X}"


def fmt_u32(value: int) -> str:
    """An integer as 8 upper-case hex digits."""
    return f"{value:08X}"
