"""The applicability rule (DOMAIN.md, "Device estates"): does an image apply to a device?

Part of the contract because two sides must agree on it: the supplier's client recommends images
for its estate, and the provider's download audit decides whether a supplier had the right to an
image. Pure: values in, values out.

An image applies to a device when
  * its device type is the device's device type,
  * one of its CPL entries has the device's manufacturer (the image's ``manufacturer_id``), model
    and hardware version, and
  * the device may upgrade to it: that entry's Upgrade From lists the CPL entry of the device's
    current firmware (found in the published CPL by manufacturer, model, hardware version and
    firmware version), or, where Upgrade From is empty (``N/A``), the image's firmware version is
    numerically higher than the device's.

Withdrawal is the caller's concern (the client leaves withdrawn images out before indexing; the
audit judges a download by what was true when it happened).

Images are indexed by (manufacturer, model, hardware version), so a lookup costs a dictionary access
plus the few candidates it finds, never a pass over every image.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo, CplEntryRef

T = TypeVar("T")

# The CPL spells "no pathway" as N/A; the importer turns it into an empty tuple, but a document
# written by another tool might not, and reading N/A as an entry ID would silently match nothing.
NO_PATHWAY = frozenset({"", "N/A", "NA"})


class Device(Protocol):
    """What the rule needs to know about a device (or a group of identical devices)."""

    @property
    def device_type(self) -> str: ...
    @property
    def manufacturer_id(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def hardware_version(self) -> str: ...
    @property
    def firmware_version(self) -> str: ...


def upgrade_pathway(entry: CplEntryRef) -> frozenset[str]:
    """The CPL entry IDs an entry's Upgrade From lists (empty: any lower firmware may upgrade)."""
    return frozenset(item.strip() for item in entry.upgrade_from) - NO_PATHWAY


def applies_through(
    info: CflTargetInfo,
    pathway: frozenset[str],
    device: Device,
    current_entries: frozenset[str],
) -> bool:
    """The rule for one image entry whose model and hardware version already match the device.

    Args:
        info: the image's ``custom.cfl``.
        pathway: `upgrade_pathway` of the matching entry.
        device: the device.
        current_entries: CPL entry IDs of the device's current firmware.
    """
    if info.device_type != device.device_type:
        return False
    if pathway:
        return not pathway.isdisjoint(current_entries)
    return int(info.firmware_version, 16) > int(device.firmware_version, 16)


class ApplicabilityIndex(Generic[T]):
    """Images and the CPL indexed for the rule; build once, ask for many devices.

    ``T`` is whatever the caller wants back for an image (the client's catalogue entry, the audit's
    target path); each image is added under a key that identifies it (its target path).
    """

    def __init__(self, cpl: CplDocument | None) -> None:
        # (manufacturer, model, hardware version) -> (key, item, info, pathway) candidates.
        self._candidates: dict[
            tuple[str, str, str], list[tuple[str, T, CflTargetInfo, frozenset[str]]]
        ] = defaultdict(list)
        self._current: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
        for cpl_entry in cpl.entries if cpl is not None else ():
            self._current[cpl_entry.device_key].append(cpl_entry.id)

    def add(self, key: str, item: T, info: CflTargetInfo) -> None:
        """Index one image under each of its CPL entries."""
        for entry in info.cpl_entries:
            where = (info.manufacturer_id, entry.model_id, entry.hardware_version)
            self._candidates[where].append((key, item, info, upgrade_pathway(entry)))

    def add_all(self, images: Iterable[tuple[str, T, CflTargetInfo]]) -> None:
        for key, item, info in images:
            self.add(key, item, info)

    def current_entries(self, device: Device) -> tuple[str, ...]:
        """CPL entry IDs recorded for the device's current firmware, sorted."""
        found = self._current.get(
            (
                device.manufacturer_id,
                device.model_id,
                device.hardware_version,
                device.firmware_version,
            ),
            [],
        )
        return tuple(sorted(found))

    def applicable(self, device: Device) -> dict[str, T]:
        """Every image that applies to ``device``, by key, each once (an image may reach a device
        through several of its entries)."""
        candidates = self._candidates.get(
            (device.manufacturer_id, device.model_id, device.hardware_version)
        )
        if not candidates:
            return {}
        current = frozenset(self.current_entries(device))
        found: dict[str, T] = {}
        for key, item, info, pathway in candidates:
            if applies_through(info, pathway, device, current):
                found[key] = item
        return found
