"""The estate's groups joined to the advisories they run into, and the path out of each.

For each group of a checked estate: the advisories its current firmware is listed in (worst first)
and, for each, the upgrade path that fixes it: the group's planned path when that ends on a fixing
image (client/advisories/matching.py), otherwise the shortest path to any fixing image the group can
reach (the same pathway search, client/estate/paths.py), or none when no fix is reachable yet.
``cfl advisories`` turns this around: per advisory, the groups and devices it affects.

Pure: the report, the index and the path finder in; values out. The work is per group and per
advisory affecting it, never per device, so a million devices cost what their few groups cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from client.advisories.matching import AdvisoryIndex, Line
from client.estate.paths import PathFinder, _path_order
from client.estate.reader import GroupKey
from client.trust.catalogue import CatalogueImage
from metadata_templates.advisory import Advisory, severity_rank


@dataclass(frozen=True)
class GroupAdvisory:
    """One advisory affecting one group.

    Attributes:
        advisory: the newest revision.
        fix_path: the images that take the group out of it, in order (empty: no fix reachable).
        plan_fixes: the group's planned (recommended) path is that fix path.
    """

    advisory: Advisory
    fix_path: tuple[CatalogueImage, ...]
    plan_fixes: bool

    def to_json(self) -> dict[str, Any]:
        """The entry of a group's ``advisories`` list in ``cfl check --json``."""
        a = self.advisory
        return {
            "id": a.id,
            "revision": a.revision,
            "severity": a.severity,
            "score": a.score,
            "status": a.status,
            "fix_path": [image.target_path for image in self.fix_path],
            "recommended_fixes": self.plan_fixes,
        }


def mark_fixes(
    images: Iterable[CatalogueImage], index: AdvisoryIndex
) -> tuple[CatalogueImage, ...]:
    """The images with the advisories that name them, so upgrade paths prefer fixes."""
    return tuple(
        dataclasses.replace(image, fixes=tuple(index.fixes_by_target[image.target_path]))
        if image.target_path in index.fixes_by_target
        else image
        for image in images
    )


def _line(key: GroupKey) -> Line:
    return (key.manufacturer_id, key.model_id, key.hardware_version)


def group_advisories(
    key: GroupKey,
    current_entries: Sequence[str],
    plan_path: tuple[CatalogueImage, ...],
    index: AdvisoryIndex,
    finder: PathFinder,
) -> tuple[GroupAdvisory, ...]:
    """The advisories affecting one group, worst first, each with its fix path."""
    found = index.affecting(current_entries)
    if not found:
        return ()
    line = _line(key)
    reachable: dict[str, tuple[CatalogueImage, ...]] | None = None
    result: list[GroupAdvisory] = []
    for advisory in found:
        if index.path_fixes(advisory, plan_path, line):
            result.append(GroupAdvisory(advisory, plan_path, True))
            continue
        if reachable is None:
            reachable = finder.reachable(key)
        fixing = [p for p in reachable.values() if index.path_fixes(advisory, p, line)]
        best = min(fixing, key=lambda p: (len(p), _path_order(p)), default=())
        result.append(GroupAdvisory(advisory, best, False))
    return tuple(result)


def at_or_above(
    groups: Iterable[tuple[GroupKey, int, tuple[GroupAdvisory, ...]]], threshold: str
) -> list[tuple[GroupKey, int, Advisory]]:
    """(group, devices, advisory) for every advisory at or above ``threshold`` affecting a group.

    Raises:
        AdvisoryError: ``threshold`` is not a CVSS rating.
    """
    least = severity_rank(threshold)
    return [
        (key, count, alert.advisory)
        for key, count, alerts in groups
        for alert in alerts
        if alert.advisory.severity_rank >= least
    ]


def advisory_json(advisory: Advisory) -> dict[str, Any]:
    """What ``cfl advisories --json`` says of one advisory before the estate's part."""
    return {
        "id": advisory.id,
        "revision": advisory.revision,
        "title": advisory.title,
        "status": advisory.status,
        "severity": advisory.severity,
        "score": advisory.score,
        "cvss": advisory.cvss,
        "cvss_version": advisory.cvss_version,
        "cve": list(advisory.cve),
        "manufacturer_id": advisory.manufacturer_id,
        "affected_cpl_entries": list(advisory.affected_cpl_entries),
        "fixed_by": list(advisory.fixed_by),
        "workaround": advisory.workaround,
        "published": advisory.published,
        "updated": advisory.updated,
        "target": advisory.target_path,
    }


def advisories_json(
    advisories: Iterable[Advisory],
    groups: Sequence[tuple[GroupKey, int, tuple[GroupAdvisory, ...]]] | None,
) -> dict[str, Any]:
    """The ``cfl advisories --json`` document (less ``schema_version``).

    With an estate (``groups``), only advisories affecting it, each with ``affected_devices``,
    its ``groups`` (device counts and fix paths) and ``fix_path``, the path of its largest
    affected group; without one, every advisory with ``affected_devices`` null.
    """
    by_id: dict[str, list[tuple[GroupKey, int, GroupAdvisory]]] = {}
    for key, count, alerts in groups or ():
        for alert in alerts:
            by_id.setdefault(alert.advisory.id, []).append((key, count, alert))
    listed = []
    for advisory in sorted(advisories, key=lambda a: (-a.severity_rank, -a.score, a.id)):
        doc = advisory_json(advisory)
        if groups is None:
            listed.append(doc | {"affected_devices": None, "groups": [], "fix_path": []})
            continue
        hits = by_id.get(advisory.id)
        if not hits:
            continue
        largest = min(hits, key=lambda h: (-h[1], tuple(h[0])))
        doc |= {
            "affected_devices": sum(count for _key, count, _alert in hits),
            "unfixed_devices": sum(count for _key, count, alert in hits if not alert.fix_path),
            "groups": [
                {
                    **key._asdict(),
                    "device_count": count,
                    "fix_path": [image.target_path for image in alert.fix_path],
                    "recommended_fixes": alert.plan_fixes,
                }
                for key, count, alert in hits
            ],
            "fix_path": [image.target_path for image in largest[2].fix_path],
        }
        listed.append(doc)
    return {"advisories": listed}
