"""``cfl outcomes record RESULTS.csv``: check a results file against the verified library and merge
it into the home's ledger, all or nothing.

Resolution: ``Target`` is an image target path or the Manufacturer Image SHA-256 of SR 11.3
(``custom.cfl.manufacturer_image_sha256``); either must name exactly one image of the verified
library the home last refreshed (an offline session, as ``cfl check --offline``). An ``activated``
row whose read-back ``Firmware Version`` is not the image's is counted as ``version-not-confirmed``.

Merging: a (device, image) listed twice in one file refuses the file; across files the later
``Time`` wins (a retry supersedes the first attempt), an equal one with the same outcome changes
nothing (recording a file again reports "0 new"), an equal one with another outcome is a conflict
and refuses the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from client.outcomes.ledger import ImageLedger, Ledger, load_ledger, save_ledger
from client.outcomes.results import (
    TARGET,
    ResultProblem,
    ResultRow,
    open_results,
    read_results,
    refuse,
)
from client.trust.catalogue import CatalogueImage
from client.trust.home import ClientHome
from client.trust.library import load_catalogue, open_session, viewer_of
from metadata_templates.custom import parse_timestamp
from metadata_templates.outcomes import period_bounds

_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")
VERSION_NOT_CONFIRMED = "version-not-confirmed"
ACTIVATED = "activated"


@dataclass(frozen=True)
class Resolved:
    """A row with its image found and its outcome final."""

    row: ResultRow
    image: CatalogueImage
    outcome: str


@dataclass
class RecordSummary:
    """What recording one file did."""

    file: str
    rows: int = 0
    new: int = 0
    updated: int = 0  # a later retry superseded an earlier result
    unchanged: int = 0  # already recorded with this time and outcome
    older: int = 0  # an earlier attempt than the one recorded: kept out
    version_not_confirmed: int = 0  # activated rows whose read-back firmware was another
    in_submitted: int = 0  # new or updated results in a period already reported
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # target -> outcome -> rows

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "older": self.older,
            "version_not_confirmed": self.version_not_confirmed,
            "in_submitted_periods": self.in_submitted,
            "images": [
                {"target": t, "outcomes": dict(sorted(c.items())), "devices": sum(c.values())}
                for t, c in sorted(self.counts.items())
            ],
        }


def image_index(images: Iterable[CatalogueImage]) -> dict[str, list[CatalogueImage]]:
    """Target path and Manufacturer Image SHA-256 -> the images they name."""
    index: dict[str, list[CatalogueImage]] = {}
    for image in images:
        index.setdefault(image.target_path, []).append(image)
        mi = image.cfl.manufacturer_image_sha256.lower()
        if image not in index.setdefault(mi, []):
            index[mi].append(image)
    return index


def resolve_rows(
    rows: Sequence[ResultRow], images: Iterable[CatalogueImage], where: str
) -> list[Resolved]:
    """Each row's image and final outcome; any unknown image or duplicate refuses the file.

    Raises:
        ResultsError: naming each row that is wrong.
    """
    index = image_index(images)
    problems: list[ResultProblem] = []
    count = 0
    resolved: list[Resolved] = []
    first_row: dict[tuple[str, str], int] = {}

    def bad(row: int, column: str, found: str, expected: str) -> None:
        nonlocal count
        count += 1
        if len(problems) < 20:
            problems.append(ResultProblem(row, column, found, expected))

    for row in rows:
        key = row.target.lower() if _HEX64.fullmatch(row.target) else row.target
        found = index.get(key, [])
        if not found:
            bad(
                row.row,
                TARGET,
                row.target,
                "an image of the verified library (a target path from `cfl list`, or its "
                "Manufacturer Image SHA-256); run `cfl refresh` if it is new",
            )
            continue
        if len(found) > 1:
            bad(
                row.row,
                TARGET,
                row.target,
                "a hash naming one image (it names "
                + ", ".join(i.target_path for i in found)
                + "): give the target path",
            )
            continue
        image = found[0]
        pair = (row.device_id, image.target_path)
        if pair in first_row:
            bad(
                row.row,
                "Device ID",
                row.device_id,
                f"each device once per image (also on row {first_row[pair]} for "
                f"{image.target_path})",
            )
            continue
        first_row[pair] = row.row
        outcome = row.outcome
        if (
            outcome == ACTIVATED
            and row.firmware_version is not None
            and row.firmware_version != image.cfl.firmware_version
        ):
            outcome = VERSION_NOT_CONFIRMED
        resolved.append(Resolved(row, image, outcome))
    if count:
        raise refuse(where, problems, count)
    return resolved


def merge(ledger: Ledger, resolved: Sequence[Resolved], where: str) -> RecordSummary:
    """Merge checked rows into ``ledger`` (in place) and say what changed.

    Raises:
        ResultsError: a row contradicts a recorded result of the same time (nothing merged:
            the caller saves only on success).
    """
    summary = RecordSummary(file=where, rows=len(resolved))
    submitted = [period_bounds(s.period) for s in ledger.submissions]
    conflicts: list[ResultProblem] = []
    for item in resolved:
        image = ledger.images.get(item.image.target_path)
        if image is None:
            image = ledger.images[item.image.target_path] = ImageLedger(
                item.image.sha256, item.image.cfl.firmware_version
            )
        counts = summary.counts.setdefault(item.image.target_path, {})
        counts[item.outcome] = counts.get(item.outcome, 0) + 1
        if item.outcome != item.row.outcome:
            summary.version_not_confirmed += 1
        known = image.devices.get(item.row.device_id)
        if known is not None:
            if known[0] > item.row.time:
                summary.older += 1
                continue
            if known[0] == item.row.time:
                if known[1] == item.outcome:
                    summary.unchanged += 1
                else:
                    conflicts.append(
                        ResultProblem(
                            item.row.row,
                            "Outcome",
                            item.outcome,
                            f"{known[1]!r}, recorded for this device and image at the same Time",
                        )
                    )
                continue
            summary.updated += 1
        else:
            summary.new += 1
        image.devices[item.row.device_id] = (item.row.time, item.outcome)
        moment = parse_timestamp(item.row.time)
        if any(start <= moment < end for start, end in submitted):
            summary.in_submitted += 1
    if conflicts:
        raise refuse(where, conflicts, len(conflicts))
    return summary


def run_record(home: ClientHome, results: Path, *, now: datetime) -> RecordSummary:
    """``cfl outcomes record``: read, resolve and merge one file under the home's lock; the
    ledger is written only when the whole file is good.

    Raises:
        ResultsError: a bad row (nothing recorded).
        ConfigurationError: the home is not initialised.
        VerificationError: the home's trusted metadata does not verify (run ``cfl refresh``).
    """
    where = str(results)
    with open_results(results) as source:
        rows = read_results(source, now=now, where=where)
    home.load_config()
    with home.lock():
        catalogue = load_catalogue(
            open_session(home, offline=True), None, viewer=viewer_of(home, now)
        )
        resolved = resolve_rows(rows, catalogue.images, where)
        ledger = load_ledger(home.path)
        summary = merge(ledger, resolved, where)
        if summary.new or summary.updated:
            save_ledger(home.path, ledger)
    return summary
