"""Estate matching: the contract's applicability rule (metadata_templates/applicability.py) applied
to groups of identical devices, and the recommendation.

The recommended image is the applicable one with the highest firmware version; ties (two images of
one firmware version, which the gateway should prevent) go to the lowest target path so the answer
never depends on input order. Withdrawn images never apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from client.estate.reader import GroupKey
from client.trust.catalogue import CatalogueImage
from metadata_templates.applicability import ApplicabilityIndex
from metadata_templates.cpl_document import CplDocument


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


class Matcher:
    """The catalogue and CPL indexed for matching; build once, match many groups."""

    def __init__(self, images: Iterable[CatalogueImage], cpl: CplDocument) -> None:
        self._index: ApplicabilityIndex[CatalogueImage] = ApplicabilityIndex(cpl)
        self._index.add_all(
            (image.target_path, image, image.cfl) for image in images if not image.withdrawn
        )

    def current_entries(self, key: GroupKey) -> tuple[str, ...]:
        """CPL entry IDs recorded for the group's current firmware."""
        return self._index.current_entries(key)

    def applicable(self, key: GroupKey) -> tuple[CatalogueImage, ...]:
        """Every image that applies to devices of this group, best first."""
        found = self._index.applicable(key).values()
        return tuple(sorted(found, key=lambda i: (-i.firmware_number, i.target_path)))

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
