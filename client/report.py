"""The check report: its stable JSON, a summary table for people, and the per-device CSV.

The JSON shape is an interface scripts rely on (ARCHITECTURE.md, "Stable outputs"); keys beyond it
appear at the top level (``skipped_rows``, ``problem_count``, ``problems``) and, per group, the
stage 2 upgrade plan (``path``, ``newest``, ``newest_unreachable``: docs/supplier.md).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from client.catalogue import CatalogueImage
from client.estate import EstateProblem, GroupKey
from client.matching import GroupResult
from client.paths import UpgradePlan
from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_writer
from metadata_templates.errors import RejectedInputError

# DUIS: one SR 11.1 (Update Firmware) names at most 50,000 devices.
MAX_BATCH_DEVICES = 50_000
DEVICES_CSV_COLUMNS = ("Device ID", "Recommended Target", "Manufacturer Image SHA-256", "Batch")


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
    return {
        "target": image.target_path,
        "firmware_version": image.cfl.firmware_version,
        "reason": image.cfl.reason,
        "advisories": list(image.cfl.advisories),
        "manufacturer_image_sha256": image.cfl.manufacturer_image_sha256,
    }


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
        names: target path -> the name to show (client/short_names.py); full paths without it.
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


@dataclass(frozen=True)
class BatchRange:
    """The SR 11.1 batches given to one target's devices.

    Attributes:
        first: number of the first batch (batches count from 1).
        count: how many batches.
        devices: how many devices they hold in all.
    """

    first: int
    count: int
    devices: int


def plan_batches(
    groups: Iterable[GroupResult], limit: int = MAX_BATCH_DEVICES
) -> dict[str, BatchRange]:
    """Give each recommended target its own run of batches, none over ``limit`` devices.

    One SR 11.1 carries one image, so batches never mix targets; a target's devices are spread
    evenly over the fewest batches that keep each under the limit. Targets are numbered in path
    order.

    Raises:
        ValueError: ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError(f"batch limit: found {limit}, expected at least 1")
    per_target: dict[str, int] = {}
    for group in groups:
        if group.recommended is not None:
            target = group.recommended.target_path
            per_target[target] = per_target.get(target, 0) + group.device_count
    plan: dict[str, BatchRange] = {}
    next_batch = 1
    for target in sorted(per_target):
        devices = per_target[target]
        count = -(-devices // limit)
        plan[target] = BatchRange(next_batch, count, devices)
        next_batch += count
    return plan


class BatchAssigner:
    """Assigns streaming devices to the planned batches, evenly, in file order."""

    def __init__(self, plan: Mapping[str, BatchRange]) -> None:
        self._plan = dict(plan)
        self._seen = dict.fromkeys(plan, 0)

    def assign(self, target: str) -> int:
        """The batch number of the next device bound for ``target``.

        Raises:
            RejectedInputError: more devices arrive than the first pass counted (the estate file
                changed between the two passes).
        """
        batch = self._plan[target]
        index = self._seen[target]
        if index >= batch.devices:
            raise RejectedInputError(
                f"estate changed while it was being read: more than {batch.devices} devices "
                f"for {target} on the second pass, expected exactly {batch.devices}",
                hint="run the check again on a file nobody is writing to",
            )
        self._seen[target] = index + 1
        return batch.first + index * batch.count // batch.devices


def write_devices_csv(
    path: Path,
    devices: Iterable[tuple[str, GroupKey]],
    groups: Sequence[GroupResult],
    *,
    limit: int = MAX_BATCH_DEVICES,
) -> dict[str, BatchRange]:
    """Write one row per device (ID, recommended target, SR 11.3 hash, batch), atomically.

    Devices with nothing to install get empty target, hash and batch cells, so the file still lists
    every device. The file appears under its final name only once complete.

    Args:
        path: where to write the CSV.
        devices: the second pass over the estate (``iter_estate_devices``).
        groups: the match results from the first pass.
        limit: most devices per batch.

    Returns:
        The batch plan used.

    Raises:
        RejectedInputError: the estate changed between the passes.
        OSError: the file cannot be written.
    """
    recommended = {group.key: group.recommended for group in groups}
    plan = plan_batches(groups, limit)
    assigner = BatchAssigner(plan)
    with atomic_writer(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(DEVICES_CSV_COLUMNS)
        for device_id, key in devices:
            if key not in recommended:
                raise RejectedInputError(
                    f"estate changed while it was being read: device {device_id} is in group "
                    f"{'/'.join(key)}, which the first pass did not see",
                    hint="run the check again on a file nobody is writing to",
                )
            image = recommended[key]
            if image is None:
                writer.writerow((device_id, "", "", ""))
            else:
                batch = assigner.assign(image.target_path)
                writer.writerow(
                    (device_id, image.target_path, image.cfl.manufacturer_image_sha256, batch)
                )
        text.flush()
        text.detach()  # leave the binary handle open for atomic_writer's fsync and rename
    return plan
