"""The contract's applicability rule, on its own: the client's matching and the provider's audit
both rely on exactly this."""

from __future__ import annotations

import pytest

from factory import make_entry
from metadata_templates.applicability import ApplicabilityIndex, upgrade_pathway
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo, CplEntryRef
from repo_tool.access.inventory import DeviceKind

CPL = CplDocument.of(
    [make_entry("CPL-1", fw="00000001"), make_entry("CPL-2", fw="00000002")],
    "0" * 64,
    "2026-01-01T00:00:00Z",
)


def info(fw: str, upgrade_from: tuple[str, ...], device_type: str = "ESME") -> CflTargetInfo:
    return CflTargetInfo(
        device_type=device_type, manufacturer_id="121D", manufacturer_name="Maker", image_type="0001",
        firmware_version=fw, stack_version="0002", header_string="x", hardware_version_min="1111",
        hardware_version_max="1111", manufacturer_image_sha256="0" * 64, manufacturer_image_length=1,
        cpl_entries=(CplEntryRef("CPL-9", "010A030B", "Model A", "1111", "Active", upgrade_from),),
        reason="compliance", advisories=(), published="2026-01-01T00:00:00Z",
    )  # fmt: skip


def device(fw: str, device_type: str = "ESME", hw: str = "1111") -> DeviceKind:
    return DeviceKind(device_type, "121D", "010A030B", hw, fw)


@pytest.mark.parametrize(
    ("image", "dev", "applies"),
    [
        (info("00000003", ()), device("00000002"), True),  # no pathway: higher firmware applies
        (info("00000002", ()), device("00000002"), False),  # not higher
        (info("00000003", ("N/A",)), device("00000001"), True),  # N/A spelled out is no pathway
        (info("00000003", ("CPL-1",)), device("00000001"), True),  # on the pathway
        (info("00000003", ("CPL-1",)), device("00000002"), False),  # off the pathway, though higher
        (info("00000003", ()), device("00000002", "GSME"), False),  # another device type
        (info("00000003", ()), device("00000002", hw="2222"), False),  # another hardware version
    ],
    ids=[
        "higher",
        "not-higher",
        "na-spelled",
        "on-pathway",
        "off-pathway",
        "other-type",
        "other-hw",
    ],
)
def test_rule(image: CflTargetInfo, dev: DeviceKind, applies: bool) -> None:
    index: ApplicabilityIndex[str] = ApplicabilityIndex(CPL)
    index.add("t", "t", image)
    assert bool(index.applicable(dev)) is applies


def test_pathway_drops_no_pathway_spellings() -> None:
    entry = CplEntryRef(
        "CPL-9", "010A030B", "Model A", "1111", "Active", (" CPL-1 ", "N/A", "", "NA")
    )
    assert upgrade_pathway(entry) == frozenset({"CPL-1"})
