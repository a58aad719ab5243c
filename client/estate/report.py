"""The check report and its stable JSON (the summary table for people is client/cli/tables.py).

The JSON shape is an interface scripts rely on (ARCHITECTURE.md, "Stable outputs"); keys beyond it
appear at the top level (``skipped_rows``, ``problem_count``, ``problems``) and, per group, the
stage 2 upgrade plan (``path``, ``newest``, ``newest_unreachable``: docs/supplier.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.estate.advisories import GroupAdvisory
from client.estate.matching import GroupResult
from client.estate.paths import UpgradePlan
from client.estate.reader import EstateProblem, GroupKey
from client.trust.catalogue import CatalogueImage
from metadata_templates import SCHEMA_VERSION

# DUIS: one SR 11.1 (Update Firmware) names at most 50,000 devices.


@dataclass(frozen=True)
class CheckReport:
    """Everything ``cfl check`` found.

    Attributes:
        devices: well-formed devices in the estate.
        groups: one result per distinct group, in group-key order.
        skipped_rows: bad rows left out.
        problems: details of the first problems.
        problem_count: all problems, including those not detailed.
        plans: the upgrade plan of each group, in the order of ``groups`` (empty: not planned,
            each group's path is then its recommended image alone).
    """

    devices: int
    groups: tuple[GroupResult, ...]
    skipped_rows: int = 0
    problems: tuple[EstateProblem, ...] = ()
    problem_count: int = 0
    plans: tuple[UpgradePlan, ...] = ()
    # The advisories each group runs into, in the order of ``groups``; None when the library
    # publishes no advisory for the estate's manufacturers (the JSON then has no such key).
    advisories: tuple[tuple[GroupAdvisory, ...], ...] | None = None

    def plan_of(self, index: int) -> UpgradePlan:
        """The plan of ``groups[index]``."""
        if self.plans:
            return self.plans[index]
        recommended = self.groups[index].recommended
        return UpgradePlan(path=() if recommended is None else (recommended,))

    def paths(self) -> dict[GroupKey, tuple[CatalogueImage, ...]]:
        """Each group's images to send, in order."""
        return {group.key: self.plan_of(i).path for i, group in enumerate(self.groups)}


def _image_json(image: CatalogueImage) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "target": image.target_path,
        "firmware_version": image.cfl.firmware_version,
        "reason": image.cfl.reason,
        "advisories": list(image.cfl.advisories),
        "manufacturer_image_sha256": image.cfl.manufacturer_image_sha256,
    }
    if image.pilot is not None:
        doc["pilot"] = image.pilot.to_json()  # issue 22: only while it is in this supplier's pilot
    return doc


def _plan_json(plan: UpgradePlan) -> dict[str, Any]:
    return {
        "path": [image.target_path for image in plan.path],
        "newest": None if plan.newest is None else plan.newest.target_path,
        "newest_unreachable": None if plan.blocked is None else plan.blocked.to_json(),
    }


def held_images(group: GroupResult, plan: UpgradePlan) -> tuple[CatalogueImage, ...]:
    """The images on hold (issue 24) that apply to the group or are its product line's newest."""
    found = [i for i in group.applicable if i.hold is not None]
    if plan.newest is not None and plan.newest.hold is not None and plan.newest not in found:
        found.append(plan.newest)
    return tuple(found)


def held_json(image: CatalogueImage) -> dict[str, str]:
    """One entry of a group's ``held`` list in ``cfl check --json``."""
    assert image.hold is not None
    return {
        "target": image.target_path,
        "reason": image.hold.reason,
        "since": image.hold.at,
        "by": image.hold.by,
    }


def report_json(report: CheckReport) -> dict[str, Any]:
    """The ``cfl check --json`` document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "devices": report.devices,
        "groups": [
            {
                "device_type": group.key.device_type,
                "manufacturer_id": group.key.manufacturer_id,
                "model_id": group.key.model_id,
                "hardware_version": group.key.hardware_version,
                "firmware_version": group.key.firmware_version,
                "device_count": group.device_count,
                "applicable": [_image_json(image) for image in group.applicable],
                "recommended": None if group.recommended is None else group.recommended.target_path,
                **_plan_json(report.plan_of(index)),
                "held": [held_json(i) for i in held_images(group, report.plan_of(index))],
                **(
                    {}
                    if report.advisories is None
                    else {"advisories": [a.to_json() for a in report.advisories[index]]}
                ),
            }
            for index, group in enumerate(report.groups)
        ],
        "skipped_rows": report.skipped_rows,
        "problem_count": report.problem_count,
        "problems": [problem.to_dict() for problem in report.problems],
    }
