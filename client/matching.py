"""The applicability rule (DOMAIN.md, "Device estates"), as a pure function of values.

An image applies to a group of devices when
  * it is not withdrawn,
  * its device type is the devices' device type,
  * one of its CPL entries has the devices' manufacturer (the image's ``manufacturer_id``), model
    and hardware version, and
  * the devices may upgrade to it: that entry's Upgrade From lists the CPL entry of the devices'
    current firmware (found in the published CPL by manufacturer, model, hardware version and
    firmware version), or, where Upgrade From is empty (``N/A``), the image's firmware version is
    numerically higher than the devices'.

The recommended image is the applicable one with the highest firmware version; ties (two images of
one firmware version, which the gateway should prevent) go to the lowest target path so the answer
never depends on input order.

Images are indexed by (manufacturer, model, hardware version), so matching costs O(groups) lookups
plus the few candidates per lookup, never O(groups x images).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from client.catalogue import CatalogueImage
from client.estate import GroupKey
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CplEntryRef

# The CPL spells "no pathway" as N/A; the importer turns it into an empty tuple, but a document
# written by another tool might not, and reading N/A as an entry ID would silently match nothing.
_NO_PATHWAY = frozenset({"", "N/A", "NA"})


@dataclass(frozen=True)
class GroupResult:
    """What applies to one group of devices.

    Attributes:
        key: the group.
        device_count: how many devices the estate has in it.
        applicable: applicable images, highest firmware version first (then by target path).
        recommended: the first of ``applicable``, or None.
        current_cpl_entries: CPL entry IDs of the devices' current firmware (empty: not on the CPL).
    """

    key: GroupKey
    device_count: int
    applicable: tuple[CatalogueImage, ...]
    recommended: CatalogueImage | None
    current_cpl_entries: tuple[str, ...] = ()

    @property
    def has_security_fix(self) -> bool:
        """True when any applicable image fixes a vulnerability."""
        return any(image.is_security_fix for image in self.applicable)


def _pathway(entry: CplEntryRef) -> frozenset[str]:
    return frozenset(item.strip() for item in entry.upgrade_from) - _NO_PATHWAY


class Matcher:
    """The catalogue and CPL indexed for matching; build once, match many groups."""

    def __init__(self, images: Iterable[CatalogueImage], cpl: CplDocument) -> None:
        # (manufacturer, model, hardware version) -> (image, its pathway set) candidates.
        self._candidates: dict[
            tuple[str, str, str], list[tuple[CatalogueImage, frozenset[str]]]
        ] = defaultdict(list)
        for image in images:
            if image.withdrawn:
                continue
            for entry in image.cfl.cpl_entries:
                where = (image.cfl.manufacturer_id, entry.model_id, entry.hardware_version)
                self._candidates[where].append((image, _pathway(entry)))
        self._current: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
        for cpl_entry in cpl.entries:
            self._current[cpl_entry.device_key].append(cpl_entry.id)

    def current_entries(self, key: GroupKey) -> tuple[str, ...]:
        """CPL entry IDs recorded for the group's current firmware."""
        found = self._current.get(
            (key.manufacturer_id, key.model_id, key.hardware_version, key.firmware_version), []
        )
        return tuple(sorted(found))

    def applicable(self, key: GroupKey) -> tuple[CatalogueImage, ...]:
        """Every image that applies to devices of this group, best first."""
        candidates = self._candidates.get((key.manufacturer_id, key.model_id, key.hardware_version))
        if not candidates:
            return ()
        current = frozenset(self.current_entries(key))
        device_firmware = int(key.firmware_version, 16)
        found: dict[str, CatalogueImage] = {}
        for image, pathway in candidates:
            if image.cfl.device_type != key.device_type:
                continue
            if pathway:
                applies = not pathway.isdisjoint(current)
            else:
                applies = image.firmware_number > device_firmware
            if applies:
                # One image may reach this group through several of its entries; list it once.
                found[image.target_path] = image
        return tuple(sorted(found.values(), key=lambda i: (-i.firmware_number, i.target_path)))

    def match(self, key: GroupKey, device_count: int) -> GroupResult:
        """The result for one group."""
        applicable = self.applicable(key)
        return GroupResult(
            key=key,
            device_count=device_count,
            applicable=applicable,
            recommended=applicable[0] if applicable else None,
            current_cpl_entries=self.current_entries(key),
        )


def match_estate(
    groups: Mapping[GroupKey, int], images: Iterable[CatalogueImage], cpl: CplDocument
) -> tuple[GroupResult, ...]:
    """Match every group of an estate, in group-key order (one result per group, even if empty)."""
    matcher = Matcher(images, cpl)
    return tuple(matcher.match(key, groups[key]) for key in sorted(groups))
