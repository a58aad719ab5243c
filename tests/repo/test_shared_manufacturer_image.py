"""Duplicates mean the same image, not the same payload.

Two of the DCC's published sample images, an ESME image (image type 0x0000) and a PPMID image
(image type 0x0084), carry byte-identical Manufacturer Images under different OTA headers, each on
its own CPL entries. Suppliers of each device type need their own file, so the second is accepted
with a note; the same file bytes again, or an entry that has an image already, are duplicates.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, mi_sha
from repo_tool.gateway.model import Code
from repo_tool.intake.image import build_image

MFR = "121D"
PAYLOAD = b"one Manufacturer Image shared by two device types\n" * 20


def sample(image_type: int) -> bytes:
    return build_image(
        manufacturer_code=int(MFR, 16),
        image_type=image_type,
        file_version=0xACDCACDC,
        body=PAYLOAD,
        header_string="GBCS sample",
        hardware_versions=(0x1111, 0x1112),
    )


ESME_IMAGE, PPMID_IMAGE = sample(0x0000), sample(0x0084)


@pytest.fixture
def factory(tmp_path: Path) -> LibraryFactory:
    assert ESME_IMAGE != PPMID_IMAGE and mi_sha(ESME_IMAGE) == mi_sha(PPMID_IMAGE)
    made = LibraryFactory(tmp_path)
    shared = mi_sha(ESME_IMAGE)
    made.import_cpl(
        [
            make_entry("CPL-E1", fw="ACDCACDC", image_sha=shared, device_type="ESME"),
            make_entry("CPL-E2", fw="ACDCACDC", image_sha=shared, device_type="ESME", model="0E02"),
            make_entry(
                "CPL-P1", fw="ACDCACDC", image_sha=shared, device_type="PPMID", model="0084"
            ),
            make_entry(
                "CPL-P2", fw="ACDCACDC", image_sha=shared, device_type="PPMID", model="0085"
            ),
        ]
    )
    made.add_manufacturer(MFR)
    made.publish()
    made.deposit(ESME_IMAGE, ["CPL-E1"])
    return made


def test_the_same_manufacturer_image_under_another_header_is_accepted_and_noted(
    factory: LibraryFactory,
) -> None:
    result = factory.ingest(factory.submit(PPMID_IMAGE, ["CPL-P1"]))

    assert (result.status, result.reasons) == ("accepted", [])
    assert result.target is not None and result.target.startswith(f"{MFR}/PPMID-0084-ACDCACDC-")
    (note,) = result.messages
    assert f"Manufacturer Image SHA-256 {mi_sha(PPMID_IMAGE)} is already in the library" in note
    assert "under another OTA header" in note


def test_the_same_file_bytes_for_other_entries_are_a_duplicate(factory: LibraryFactory) -> None:
    # The ESME file again, declared for a PPMID entry (another target path, the same bytes).
    result = factory.ingest(factory.submit(ESME_IMAGE, ["CPL-P2"]))

    assert (result.status, result.reasons) == ("rejected", [Code.DUPLICATE_IMAGE.value])
    sha = hashlib.sha256(ESME_IMAGE).hexdigest()
    assert any(f"image SHA-256: found {sha}" in m for m in result.messages)


def test_an_entry_that_has_an_image_is_a_duplicate_under_any_header(
    factory: LibraryFactory,
) -> None:
    factory.deposit(PPMID_IMAGE, ["CPL-P1"])
    rebuilt = build_image(
        manufacturer_code=int(MFR, 16),
        image_type=0x0084,
        file_version=0xACDCACDC,
        body=PAYLOAD,
        header_string="GBCS sample rebuilt",  # other header bytes, same Manufacturer Image
        hardware_versions=(0x1111, 0x1112),
    )

    result = factory.ingest(factory.submit(rebuilt, ["CPL-P1"]))

    assert (result.status, result.reasons) == ("rejected", [Code.DUPLICATE_IMAGE.value])
    assert any("CPL entry CPL-P1: found an image already" in m for m in result.messages)
