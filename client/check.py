"""The estate check pipeline: read, group, match, plan paths, report; and the per-device pass.

This is the library behind ``cfl check`` (and the benchmark), kept free of click and of ngclient:
the catalogue and the CPL come in as verified values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from client.catalogue import CatalogueImage
from client.estate import EstateSummary, iter_estate_devices, open_estate, read_estate_groups
from client.matching import match_estate
from client.paths import PathFinder
from client.report import CheckReport
from client.rollout import (
    MAX_BATCH_DEVICES,
    BatchKey,
    BatchRange,
    Phases,
    count_devices,
    count_groups,
    plan_rollout,
    write_rollout_csv,
)
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import format_timestamp


def plan_estate(
    summary: EstateSummary, images: Iterable[CatalogueImage], cpl: CplDocument
) -> CheckReport:
    """Match every group against the catalogue and plan its upgrade path.

    A group's ``recommended`` image becomes the last hop of its path (the best image it can
    reach, possibly through intermediate images), as ARCHITECTURE.md's stable output says.
    """
    images = tuple(images)
    finder = PathFinder(images, cpl)
    groups = match_estate(summary.groups, images, cpl)
    plans = tuple(finder.plan(group.key) for group in groups)
    return CheckReport(
        devices=summary.devices,
        groups=tuple(
            dataclasses.replace(group, recommended=plan.recommended)
            for group, plan in zip(groups, plans, strict=True)
        ),
        skipped_rows=summary.skipped_rows,
        problems=summary.problems,
        problem_count=summary.problem_count,
        plans=plans,
    )


def check_estate(
    estate: Path,
    images: Iterable[CatalogueImage],
    cpl: CplDocument,
    *,
    strict: bool = False,
    max_problems: int = 100,
) -> CheckReport:
    """Read the estate once, match every group of devices and plan its path.

    Raises:
        UnavailableError: the estate file cannot be opened.
        EstateError: no usable header, unreadable CSV, or (``strict``) a bad row.
    """
    with open_estate(estate) as source:
        summary = read_estate_groups(
            source, strict=strict, max_problems=max_problems, where=str(estate)
        )
    return plan_estate(summary, images, cpl)


def write_estate_devices(
    estate: Path,
    report: CheckReport,
    out: Path,
    *,
    phases: Phases | None = None,
    limit: int = MAX_BATCH_DEVICES,
) -> dict[BatchKey, BatchRange]:
    """Write ``--devices-out`` for a report made from the same estate file: hop by hop, by phase.

    With one phase the group counts of the first pass number the batches; with several, one more
    pass over the device IDs counts each phase's devices first.

    Returns:
        The batch plan used: (phase, hop, target) -> batch range.

    Raises:
        UnavailableError: the estate file cannot be opened.
        EstateError: unreadable CSV.
        RejectedInputError: the estate changed since the report was made.
        OSError: the output cannot be written.
    """
    phases = phases or Phases()
    paths = report.paths()
    if len(phases.percentages) == 1:
        counts = count_groups({g.key: g.device_count for g in report.groups}, paths)
    else:
        with open_estate(estate) as source:
            counts = count_devices(
                iter_estate_devices(source, where=str(estate)),
                paths,
                phases,
                expected={g.key: g.device_count for g in report.groups},
            )
    plan = plan_rollout(counts, limit)
    with open_estate(estate) as source:
        write_rollout_csv(out, iter_estate_devices(source, where=str(estate)), paths, plan, phases)
    return plan


def write_estate_report(
    out: Path,
    report: CheckReport,
    images: Iterable[CatalogueImage],
    changes: Mapping[str, Any] | None,
    *,
    devices_compared: bool,
    now: datetime,
) -> None:
    """Write ``--report``: the self-contained HTML page of this check.

    Raises:
        OSError: the page cannot be written.
    """
    from client.estate_report import (  # only --report pays for Jinja2
        build_report_model,
        product_lines_with_images,
        render_report,
        write_report,
    )

    model = build_report_model(
        report,
        changes=changes,
        devices_compared=devices_compared,
        generated_at=format_timestamp(now),
        has_image_for_line=product_lines_with_images(tuple(images)),
    )
    write_report(out, render_report(model))
