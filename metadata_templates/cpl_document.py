"""The published CPL: the JSON document the provider signs as target ``cfl/cpl.json``.

The repository tool produces it from SECAS's CSV/XLSX (``repo_tool.intake.cpl``); the client reads it to find
the CPL entry of a device's current firmware, which the upgrade-pathway rule needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metadata_templates import SCHEMA_VERSION


@dataclass(frozen=True)
class CplEntry:
    """One CPL row, normalised: hex identifiers upper-case, hashes lower-case, ``N/A`` as ``()``."""

    id: str
    device_type: str
    manufacturer_id: str
    manufacturer_name: str
    model_id: str
    model_name: str
    hardware_version: str
    firmware_version: str
    smets_version: str
    gbcs_version: str
    manufacturer_image_sha256: str
    cpa_certificate: str
    cpa_expiry: str | None
    status: str
    upgrade_from: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_type": self.device_type,
            "manufacturer_id": self.manufacturer_id,
            "manufacturer_name": self.manufacturer_name,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "hardware_version": self.hardware_version,
            "firmware_version": self.firmware_version,
            "smets_version": self.smets_version,
            "gbcs_version": self.gbcs_version,
            "manufacturer_image_sha256": self.manufacturer_image_sha256,
            "cpa_certificate": self.cpa_certificate,
            "cpa_expiry": self.cpa_expiry,
            "status": self.status,
            "upgrade_from": list(self.upgrade_from),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CplEntry:
        return cls(
            id=str(data["id"]),
            device_type=str(data["device_type"]),
            manufacturer_id=str(data["manufacturer_id"]),
            manufacturer_name=str(data["manufacturer_name"]),
            model_id=str(data["model_id"]),
            model_name=str(data["model_name"]),
            hardware_version=str(data["hardware_version"]),
            firmware_version=str(data["firmware_version"]),
            smets_version=str(data["smets_version"]),
            gbcs_version=str(data["gbcs_version"]),
            manufacturer_image_sha256=str(data["manufacturer_image_sha256"]),
            cpa_certificate=str(data["cpa_certificate"]),
            cpa_expiry=None if data["cpa_expiry"] is None else str(data["cpa_expiry"]),
            status=str(data["status"]),
            upgrade_from=tuple(str(x) for x in data["upgrade_from"]),
        )

    @property
    def device_key(self) -> tuple[str, str, str, str]:
        """(manufacturer, model, hardware version, firmware version): how a device finds its entry."""
        return (self.manufacturer_id, self.model_id, self.hardware_version, self.firmware_version)


@dataclass(frozen=True)
class CplDocument:
    """A whole CPL, keyed by CPL Entry ID, in file order."""

    entries: tuple[CplEntry, ...]
    source_sha256: str
    imported: str

    def by_id(self) -> Mapping[str, CplEntry]:
        """The entries by ID (the last of duplicates), built once per document: the gateway and
        submit look entries up for every bundle, and a CPL may hold tens of thousands."""
        built: Mapping[str, CplEntry] | None = self.__dict__.get("_by_id")
        if built is None:
            built = {entry.id: entry for entry in self.entries}
            object.__setattr__(self, "_by_id", built)  # frozen: a derived cache, typed read-only
        return built

    def to_bytes(self) -> bytes:
        """Deterministic JSON: the same CPL always yields the same target bytes."""
        doc = {
            "schema_version": SCHEMA_VERSION,
            "source_sha256": self.source_sha256,
            "imported": self.imported,
            "entries": [entry.to_dict() for entry in self.entries],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CplDocument:
        """Parse a published CPL.

        Raises:
            ValueError: not JSON, wrong schema version, or an entry lacks a field.
        """
        try:
            doc = json.loads(data)
            if doc.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(
                    f"cpl.schema_version: found {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}"
                )
            return cls(
                entries=tuple(CplEntry.from_dict(e) for e in doc["entries"]),
                source_sha256=str(doc["source_sha256"]),
                imported=str(doc["imported"]),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"published CPL is malformed: {e!r}") from e

    @classmethod
    def of(cls, entries: Iterable[CplEntry], source_sha256: str, imported: str) -> CplDocument:
        return cls(entries=tuple(entries), source_sha256=source_sha256, imported=imported)
