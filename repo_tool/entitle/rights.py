"""A supplier's rights: every image on the upgrade path of a device it is responsible for.

The path is the contract's applicability rule (`metadata_templates.applicability`) applied hop by
hop: an image applies to the device's firmware, then another applies to that image's firmware, and
so on (MP231 pathways can force a device through intermediate versions, DOMAIN.md). Every image on
any such chain is a right, not only the shortest chain the supplier's client recommends, because
which route a supplier takes (a security fix first, a phased rollout) is its decision.

A device already running an image's firmware also gives a right to that image, as the audit has
always counted it: the inventory shows devices after the upgrade the download was for.

Pure: images, the CPL and (device kind -> first day) in; (target -> first day) out. Rights are
computed once per distinct device kind and per firmware node, never per device, so an estate of
millions costs what its variety costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import NamedTuple, TypeVar

from metadata_templates.applicability import ApplicabilityIndex, Device
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo

D = TypeVar("D", bound=Device)


class Kind(NamedTuple):
    """One node of the upgrade graph: a product line at one firmware version."""

    device_type: str
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str


def _kind(device: Device) -> Kind:
    return Kind(
        device.device_type,
        device.manufacturer_id,
        device.model_id,
        device.hardware_version,
        device.firmware_version,
    )


class UpgradeReach:
    """The library indexed for rights; build once per import, ask for every kind of every estate.

    Args:
        images: (target path, ``custom.cfl``) of every image that may be a right (the caller
            leaves withdrawn images out: they are on nobody's path).
        cpl: the published CPL, which says which entry a device's current firmware is.
    """

    def __init__(self, images: Iterable[tuple[str, CflTargetInfo]], cpl: CplDocument | None):
        self._index: ApplicabilityIndex[str] = ApplicabilityIndex(cpl)
        self._firmware: dict[str, str] = {}
        self._running: dict[Kind, list[str]] = {}
        for target, info in images:
            self._index.add(target, target, info)
            self._firmware[target] = info.firmware_version
            for entry in info.cpl_entries:
                node = Kind(
                    info.device_type, info.manufacturer_id, entry.model_id,
                    entry.hardware_version, info.firmware_version,
                )  # fmt: skip
                self._running.setdefault(node, []).append(target)
        self._hops: dict[Kind, tuple[str, ...]] = {}
        self._reach: dict[Kind, frozenset[str]] = {}

    def _applicable(self, node: Kind) -> tuple[str, ...]:
        found = self._hops.get(node)
        if found is None:
            found = self._hops[node] = tuple(sorted(self._index.applicable(node)))
        return found

    def reachable(self, device: Device) -> frozenset[str]:
        """Every image on an upgrade path from ``device``'s firmware, and any image it runs."""
        start = _kind(device)
        known = self._reach.get(start)
        if known is not None:
            return known
        found: set[str] = set(self._running.get(start, ()))
        seen = {start.firmware_version}
        frontier = [start]
        while frontier:
            following: list[Kind] = []
            for node in frontier:
                for target in self._applicable(node):
                    found.add(target)
                    firmware = self._firmware[target]
                    if firmware not in seen:  # a pathway cycle cannot loop
                        seen.add(firmware)
                        following.append(node._replace(firmware_version=firmware))
            frontier = following
        self._reach[start] = result = frozenset(found)
        return result

    def rights(self, kinds: Mapping[D, date]) -> dict[str, date]:
        """target -> the first day one of ``kinds`` (device kind -> first day responsible) gives it."""
        rights: dict[str, date] = {}
        for device, day in kinds.items():
            for target in self.reachable(device):
                known = rights.get(target)
                if known is None or day < known:
                    rights[target] = day
        return rights
