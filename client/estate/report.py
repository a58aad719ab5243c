"""The check report: its stable JSON, a summary table for people, and the per-device CSV.

The JSON shape is an interface scripts rely on (ARCHITECTURE.md, "Stable outputs"); keys beyond it
appear at the top level (``skipped_rows``, ``problem_count``, ``problems``) and, per group, the
stage 2 upgrade plan (``path``, ``newest``, ``newest_unreachable``: docs/supplier.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
            }
            for index, group in enumerate(report.groups)
        ],
        "skipped_rows": report.skipped_rows,
        "problem_count": report.problem_count,
        "problems": [problem.to_dict() for problem in report.problems],
    }


def render_summary(
    report: CheckReport, console: Console, names: Mapping[str, str] | None = None
) -> None:
    """A table for people: one line per group, security fixes flagged, then the bad rows.

    Args:
        report: the check.
        console: where to print.
        names: target path -> the name to show (client/trust/short_names.py); full paths without it.
            Names are never cut; the path wraps between hops and the notes wrap.
    """
    names = names or {}
    # No vertical rules: six identity columns and the path must fit 80 columns.
    table = Table(
        title=f"Estate check: {report.devices:,} devices in {len(report.groups)} groups",
        box=box.SIMPLE_HEAD,
    )
    longest = max((len(n) for n in names.values()), default=0)
    for heading in ("Type", "Mfr", "Model", "HW", "Firmware", "Devices"):
        table.add_column(heading, justify="right" if heading == "Devices" else "left", no_wrap=True)
    # One hop per line ("FIRMWARE NAME", then "→ FIRMWARE NAME") and the notes below them, in the
    # one column that takes what the identity columns leave: 80 columns are enough.
    table.add_column("Path, notes", min_width=max(longest + 11, 17), overflow="fold")
    for index, group in enumerate(report.groups):
        plan = report.plan_of(index)
        cell = (
            Text("up to date / none", style="dim")
            if not plan.path
            else Text(
                "\n→ ".join(
                    f"{hop.cfl.firmware_version} {names.get(hop.target_path, hop.target_path)}"
                    for hop in plan.path
                ),
                style="green",
            )
        )
        if group.has_security_fix or plan.has_security_fix:
            sent = (*group.applicable, *plan.path)
            advisories = sorted({a for image in sent for a in image.cfl.advisories})
            cell.append("\nSECURITY " + " ".join(advisories), style="bold red")
        if len(group.applicable) > 1:
            cell.append(f"\n{len(group.applicable)} applicable", style="dim")
        if plan.blocked is not None:
            cell.append(f"\nnewest out of reach: {plan.blocked.code}", style="yellow")
        pilots = sorted({h.pilot.terms.release_at for h in plan.path if h.pilot and h.pilot.terms})
        if pilots:
            cell.append(f"\nPILOT image (until {', '.join(pilots)})", style="bold yellow")
        # Markup is off for cells: model names and paths are data, never rich markup.
        table.add_row(
            Text(group.key.device_type),
            Text(group.key.manufacturer_id),
            Text(group.key.model_id),
            Text(group.key.hardware_version),
            Text(group.key.firmware_version),
            f"{group.device_count:,}",
            cell,
        )
    console.print(table)
    if report.skipped_rows:
        console.print(
            Text(
                f"{report.skipped_rows:,} bad row(s) skipped ({report.problem_count:,} problem(s))",
                style="yellow",
            )
        )
        for problem in report.problems:
            console.print(Text(f"  {problem.message()}"))
        if report.problem_count > len(report.problems):
            console.print(Text(f"  ... and {report.problem_count - len(report.problems):,} more"))
