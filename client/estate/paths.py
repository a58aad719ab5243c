"""Upgrade paths (MP231 pathways): the shortest chain of images from a group's firmware to the best.

A CPL entry's Upgrade From may name only some earlier firmware, so a device on an old version can
need an intermediate image before the newest one applies. This module searches those chains as a
graph whose nodes are firmware versions of one product line (device type, manufacturer, model,
hardware version) and whose edges are the images the applicability rule allows from a node; it
never decides applicability itself, it asks the rule (``client.matching.Matcher.applicable``),
which already leaves withdrawn images out. Images on hold (issue 24, ``CatalogueImage.hold``) are
never a hop: the search routes around them, or the path stops before them.

The plan for a group:
  * ``path``: the shortest ordered list of images from the current firmware to the best reachable
    image (the highest firmware version reachable; ties to the lowest target path), empty when
    nothing applies. Among equally short paths the one with the most security fixes wins, then
    the lowest target paths, so the answer never depends on input order.
  * ``newest``: the newest image of the product line above the current firmware, if any.
  * ``blocked``: when ``newest`` is not the last hop, why (a stable code and a sentence).

Pure: images, the CPL and group keys in; values out. The search is a breadth-first search per
group over at most the product line's firmware versions, so it costs a few lookups per group and
nothing per device.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from client.estate.matching import Matcher
from client.estate.reader import GroupKey
from client.trust.catalogue import CatalogueImage
from metadata_templates.cpl_document import CplDocument

# Why the newest image of a product line is not where the path ends (documented in
# docs/supplier.md, "Upgrade paths"; stable, scripts may switch on them).
BLOCKED_ONLY_VIA_WITHDRAWN = "only-via-withdrawn"
BLOCKED_NOT_ON_CPL = "current-firmware-not-on-cpl"
BLOCKED_NO_PATHWAY = "no-upgrade-pathway"
# Issue 24: the newest image, or every way to it, is on hold for failing in the field.
BLOCKED_HELD = "held"

Applicable = Callable[[GroupKey], tuple[CatalogueImage, ...]]


@dataclass(frozen=True)
class Blocked:
    """Why a group cannot reach the newest image of its product line.

    Attributes:
        target: the newest image's target path.
        code: one of the ``BLOCKED_*`` codes.
        message: a sentence naming the group's firmware and the image.
    """

    target: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready copy (``newest_unreachable`` in ``cfl check --json``)."""
        return {"target": self.target, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class UpgradePlan:
    """The campaign for one group.

    Attributes:
        path: the images to send, in order; empty when nothing applies.
        newest: the product line's newest image above the current firmware, or None.
        blocked: why ``newest`` is not the last hop, or None when it is (or there is none).
    """

    path: tuple[CatalogueImage, ...] = ()
    newest: CatalogueImage | None = None
    blocked: Blocked | None = None

    @property
    def recommended(self) -> CatalogueImage | None:
        """The last hop, or None."""
        return self.path[-1] if self.path else None

    @property
    def has_security_fix(self) -> bool:
        """True when any hop fixes a vulnerability."""
        return any(image.is_security_fix for image in self.path)


def _line(key: GroupKey) -> tuple[str, str, str, str]:
    return (key.device_type, key.manufacturer_id, key.model_id, key.hardware_version)


def _path_order(path: tuple[CatalogueImage, ...]) -> tuple[int, tuple[str, ...]]:
    # Smaller is better: more security fixes first, then the lowest target paths.
    return (-sum(image.is_security_fix for image in path), tuple(i.target_path for i in path))


def _best_image_order(image: CatalogueImage) -> tuple[int, str]:
    return (-image.firmware_number, image.target_path)


def shortest_paths(
    start: GroupKey, applicable: Applicable
) -> dict[str, tuple[CatalogueImage, ...]]:
    """Every image reachable from ``start``, each with its preferred shortest path.

    Breadth-first, one layer at a time: within a layer all paths have the same length, so keeping
    only the preferred path per node (``_path_order``) is exact, because appending the same hop to
    two paths keeps their order.

    Args:
        start: the group whose current firmware is the starting node.
        applicable: the applicability rule: images that apply to a group, never withdrawn ones.

    Returns:
        target path -> the path ending with that image (the start's own firmware is never a node
        to come back to, so a pathway cycle cannot loop).
    """
    best: dict[str, tuple[CatalogueImage, ...]] = {}
    visited = {start.firmware_version}
    layer: dict[str, tuple[CatalogueImage, ...]] = {start.firmware_version: ()}
    while layer:
        reached: dict[str, tuple[CatalogueImage, ...]] = {}
        for firmware in sorted(layer):
            here = layer[firmware]
            for image in applicable(start._replace(firmware_version=firmware)):
                if image.target_path in best:
                    continue  # already reached by a shorter path
                candidate = (*here, image)
                known = reached.get(image.target_path)
                if known is None or _path_order(candidate) < _path_order(known):
                    reached[image.target_path] = candidate
        best.update(reached)
        layer = {}
        for path in reached.values():
            firmware = path[-1].cfl.firmware_version
            if firmware in visited:
                continue
            known = layer.get(firmware)
            if known is None or _path_order(path) < _path_order(known):
                layer[firmware] = path
        visited.update(layer)
    return best


class PathFinder:
    """The catalogue and CPL indexed for path search; build once, plan many groups.

    Args:
        images: every verified image (withdrawn ones included: they explain a blocked path).
        cpl: the published CPL.
        applicable: the applicability rule to search with; defaults to ``Matcher(images, cpl)``.
    """

    def __init__(
        self,
        images: Iterable[CatalogueImage],
        cpl: CplDocument,
        applicable: Applicable | None = None,
    ) -> None:
        images = tuple(images)
        rule = applicable or Matcher(images, cpl).applicable
        # With holds ignored: to say that a path stops because of a hold.
        self._ignoring_holds = _cached(rule)
        self._applicable = _cached(_without_held(rule))
        # The same rule with withdrawals ignored, built only when a path is blocked.
        self._images = images
        self._cpl = cpl
        self._ignoring_withdrawals: Applicable | None = None
        self._current = Matcher((), cpl)
        self._by_line: dict[tuple[str, str, str, str], list[CatalogueImage]] = defaultdict(list)
        for image in images:
            if image.withdrawn:
                continue
            for entry in image.cfl.cpl_entries:
                line = (
                    image.cfl.device_type,
                    image.cfl.manufacturer_id,
                    entry.model_id,
                    entry.hardware_version,
                )
                if image not in self._by_line[line]:
                    self._by_line[line].append(image)

    def reachable(self, key: GroupKey) -> dict[str, tuple[CatalogueImage, ...]]:
        """Every image the group can reach, each with its preferred shortest path."""
        return shortest_paths(key, self._applicable)

    def newest(self, key: GroupKey) -> CatalogueImage | None:
        """The product line's newest image above the group's firmware, or None."""
        current = int(key.firmware_version, 16)
        newer = [i for i in self._by_line.get(_line(key), ()) if i.firmware_number > current]
        return min(newer, key=_best_image_order) if newer else None

    def plan(self, key: GroupKey) -> UpgradePlan:
        """The shortest path to the best reachable image, and why the newest is out of reach."""
        reachable = shortest_paths(key, self._applicable)
        path: tuple[CatalogueImage, ...] = ()
        if reachable:
            best = min((p[-1] for p in reachable.values()), key=_best_image_order)
            path = reachable[best.target_path]
        newest = self.newest(key)
        blocked = None
        if newest is not None and (not path or path[-1].firmware_number < newest.firmware_number):
            blocked = self._why_blocked(key, newest)
        return UpgradePlan(path=path, newest=newest, blocked=blocked)

    def _why_blocked(self, key: GroupKey, newest: CatalogueImage) -> Blocked:
        group = f"{'/'.join(key)}"
        if newest.hold is not None or newest.target_path in shortest_paths(
            key, self._ignoring_holds
        ):
            held = newest if newest.hold is not None else None
            why = (
                f"{newest.target_path} is on hold ({held.hold.reason})"
                if held is not None and held.hold is not None
                else f"{newest.target_path} is reachable from firmware {key.firmware_version} of "
                f"{group} only through an image on hold"
            )
            return Blocked(newest.target_path, BLOCKED_HELD, why)
        if self._ignoring_withdrawals is None:
            restored = [dataclasses.replace(i, withdrawn=False) for i in self._images]
            self._ignoring_withdrawals = _cached(Matcher(restored, self._cpl).applicable)
        if newest.target_path in shortest_paths(key, self._ignoring_withdrawals):
            return Blocked(
                newest.target_path,
                BLOCKED_ONLY_VIA_WITHDRAWN,
                f"{newest.target_path} is reachable from firmware {key.firmware_version} of "
                f"{group} only through a withdrawn image",
            )
        if not self._current.current_entries(key):
            return Blocked(
                newest.target_path,
                BLOCKED_NOT_ON_CPL,
                f"firmware {key.firmware_version} of {group} has no CPL entry, so no Upgrade "
                f"From pathway can lead from it to {newest.target_path}",
            )
        return Blocked(
            newest.target_path,
            BLOCKED_NO_PATHWAY,
            f"no chain of Upgrade From pathways leads from firmware {key.firmware_version} of "
            f"{group} to {newest.target_path}",
        )


def _without_held(rule: Applicable) -> Applicable:
    """The rule with images on hold left out (they apply, but no path may use them)."""

    def applicable(key: GroupKey) -> tuple[CatalogueImage, ...]:
        return tuple(image for image in rule(key) if image.hold is None)

    return applicable


def _cached(rule: Applicable) -> Applicable:
    # Many groups share a product line, so the same firmware node is asked about repeatedly.
    memo: dict[GroupKey, tuple[CatalogueImage, ...]] = {}

    def applicable(key: GroupKey) -> tuple[CatalogueImage, ...]:
        found = memo.get(key)
        if found is None:
            found = memo[key] = rule(key)
        return found

    return applicable
