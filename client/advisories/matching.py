"""Which advisories a device runs into, and which images get it out. Pure: values in, values out.

A group of devices is **affected** by an advisory when the CPL entry of its current firmware (the
entries the applicability rule finds for its manufacturer, model, hardware version and firmware
version) is one the advisory lists, whatever the advisory's status: a ``fixed`` advisory still
affects every device that has not taken the fix.

An image **fixes** an advisory for a product line (manufacturer, model, hardware version) when the
advisory names it in ``fixed_by``, or when it is not itself listed as affected and its firmware
version is at least that of an image the advisory names for the same line (a later release keeps
the fix). A path fixes an advisory when its last hop does: that is where the devices end up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from client.trust.catalogue import CatalogueImage
from metadata_templates.advisory import Advisory

Line = tuple[str, str, str]  # (manufacturer, model, hardware version)


def severity_order(advisory: Advisory) -> tuple[int, float, str]:
    """Worst first: severity, then score, then ID (stable whatever the input order)."""
    return (-advisory.severity_rank, -advisory.score, advisory.id)


class AdvisoryIndex:
    """Advisories indexed by the CPL entries they affect and by the images that fix them."""

    def __init__(self, advisories: Iterable[Advisory], images: Iterable[CatalogueImage]) -> None:
        self.advisories = tuple(sorted(advisories, key=lambda a: a.id))
        self._by_entry: dict[str, list[Advisory]] = defaultdict(list)
        self.fixes_by_target: dict[str, list[str]] = defaultdict(list)
        for advisory in self.advisories:
            for entry_id in advisory.affected_cpl_entries:
                self._by_entry[entry_id].append(advisory)
            for target in advisory.fixed_by:
                self.fixes_by_target[target].append(advisory.id)
        by_path = {image.target_path: image for image in images}
        # (advisory ID, line) -> the lowest firmware number an image named in fixed_by has there.
        self._floor: dict[tuple[str, Line], int] = {}
        for advisory in self.advisories:
            for target in advisory.fixed_by:
                image = by_path.get(target)
                if image is None:
                    continue
                for entry in image.cfl.cpl_entries:
                    key = (
                        advisory.id,
                        (image.cfl.manufacturer_id, entry.model_id, entry.hardware_version),
                    )
                    low = self._floor.get(key)
                    if low is None or image.firmware_number < low:
                        self._floor[key] = image.firmware_number

    def __bool__(self) -> bool:
        return bool(self.advisories)

    def affecting(self, current_entries: Iterable[str]) -> tuple[Advisory, ...]:
        """The advisories listing any of these CPL entries, worst first."""
        found: dict[str, Advisory] = {}
        for entry_id in current_entries:
            for advisory in self._by_entry.get(entry_id, ()):
                found[advisory.id] = advisory
        return tuple(sorted(found.values(), key=severity_order))

    def image_fixes(self, advisory: Advisory, image: CatalogueImage, line: Line) -> bool:
        """Whether devices of ``line`` on ``image`` are out of the advisory (see the module)."""
        if image.target_path in advisory.fixed_by:
            return True
        affected = set(advisory.affected_cpl_entries)
        if any(entry.id in affected for entry in image.cfl.cpl_entries):
            return False
        floor = self._floor.get((advisory.id, line))
        return floor is not None and image.firmware_number >= floor

    def path_fixes(self, advisory: Advisory, path: Sequence[CatalogueImage], line: Line) -> bool:
        """Whether a path leaves the devices fixed (its last hop fixes the advisory)."""
        return bool(path) and self.image_fixes(advisory, path[-1], line)
