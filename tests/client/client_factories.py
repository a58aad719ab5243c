"""Builders for the values client tests need: CPL entries, images, estates.

Kept small and explicit so a test reads as the situation it sets up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from client.trust.catalogue import CatalogueImage
from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef

ESTATE_HEADER = (
    "Device ID",
    "Device Type",
    "Manufacturer Identifier",
    "Model Identifier",
    "Hardware Version",
    "Firmware Version",
)


def cpl_entry(
    entry_id: str,
    *,
    device_type: str = "ESME",
    mfr: str = "121D",
    model: str = "0001",
    hw: str = "0001",
    fw: str = "00000001",
    upgrade_from: Sequence[str] = (),
    status: str = "Active",
) -> CplEntry:
    """A CPL row with made-up but well-formed values."""
    return CplEntry(
        id=entry_id,
        device_type=device_type,
        manufacturer_id=mfr,
        manufacturer_name=f"Maker {mfr}",
        model_id=model,
        model_name=f"Model {model}",
        hardware_version=hw,
        firmware_version=fw,
        smets_version="SMETS V5.0",
        gbcs_version="4.2",
        manufacturer_image_sha256=hashlib.sha256(entry_id.encode()).hexdigest(),
        cpa_certificate="CPA-1",
        cpa_expiry=None,
        status=status,
        upgrade_from=tuple(upgrade_from),
    )


def cpl(entries: Iterable[CplEntry]) -> CplDocument:
    """A published CPL holding ``entries``."""
    return CplDocument.of(entries, "0" * 64, "2026-01-01T00:00:00Z")


def image(
    entries: Sequence[CplEntry],
    *,
    fw: str | None = None,
    reason: str = "compliance",
    advisories: Sequence[str] = (),
    withdrawn: bool = False,
    salt: str = "",
    published: str = "2026-01-01T00:00:00Z",
) -> CatalogueImage:
    """An image declared for ``entries`` (all of one manufacturer and device type).

    The firmware version defaults to the first entry's, as the gateway requires.
    """
    first = entries[0]
    firmware = fw or first.firmware_version
    digest = hashlib.sha256(f"{firmware}{[e.id for e in entries]}{salt}".encode()).hexdigest()
    info = CflTargetInfo(
        device_type=first.device_type,
        manufacturer_id=first.manufacturer_id,
        manufacturer_name=first.manufacturer_name,
        image_type="0001",
        firmware_version=firmware,
        stack_version="0002",
        header_string="test image",
        hardware_version_min=None,
        hardware_version_max=None,
        manufacturer_image_sha256=hashlib.sha256(digest.encode()).hexdigest(),
        manufacturer_image_length=100,
        cpl_entries=tuple(
            CplEntryRef(
                id=e.id,
                model_id=e.model_id,
                model_name=e.model_name,
                hardware_version=e.hardware_version,
                status=e.status,
                upgrade_from=e.upgrade_from,
            )
            for e in entries
        ),
        reason=reason,
        advisories=tuple(advisories),
        published=published,
    )
    info.to_dict()  # validates against the schema, so tests never build impossible metadata
    path = naming.image_target_path(
        first.manufacturer_id, first.device_type, "0001", firmware, digest
    )
    return CatalogueImage(
        target_path=path, length=156, sha256=digest, cfl=info, withdrawn=withdrawn
    )


def write_estate(
    path: Path, rows: Iterable[Sequence[str]], header: Sequence[str] = ESTATE_HEADER
) -> Path:
    """Write an estate CSV (rows are written verbatim, no quoting games)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(",".join(header) + "\n")
        for row in rows:
            handle.write(",".join(row) + "\n")
    return path


def device_id(n: int) -> str:
    """The n-th made-up EUI-64, in the DUIS form."""
    return bytes.fromhex(f"{0x000D6F0000000000 + n:016X}").hex("-").upper()
