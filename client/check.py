"""The estate check pipeline: read, group, match, report; and the optional per-device pass.

This is the library behind ``cfl check`` (and the benchmark), kept free of click and of ngclient:
the catalogue and the CPL come in as verified values.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from client.catalogue import CatalogueImage
from client.estate import iter_estate_devices, open_estate, read_estate_groups
from client.matching import match_estate
from client.report import MAX_BATCH_DEVICES, BatchRange, CheckReport, write_devices_csv
from metadata_templates.cpl_document import CplDocument


def check_estate(
    estate: Path,
    images: Iterable[CatalogueImage],
    cpl: CplDocument,
    *,
    strict: bool = False,
    max_problems: int = 100,
) -> CheckReport:
    """Read the estate once and match every group of devices against the catalogue.

    Raises:
        UnavailableError: the estate file cannot be opened.
        EstateError: no usable header, unreadable CSV, or (``strict``) a bad row.
    """
    with open_estate(estate) as source:
        summary = read_estate_groups(
            source, strict=strict, max_problems=max_problems, where=str(estate)
        )
    return CheckReport(
        devices=summary.devices,
        groups=match_estate(summary.groups, images, cpl),
        skipped_rows=summary.skipped_rows,
        problems=summary.problems,
        problem_count=summary.problem_count,
    )


def write_estate_devices(
    estate: Path, report: CheckReport, out: Path, *, limit: int = MAX_BATCH_DEVICES
) -> dict[str, BatchRange]:
    """Second pass: write ``--devices-out`` for a report made from the same estate file.

    Raises:
        UnavailableError: the estate file cannot be opened.
        EstateError: unreadable CSV.
        RejectedInputError: the estate changed since the report was made.
        OSError: the output cannot be written.
    """
    with open_estate(estate) as source:
        return write_devices_csv(
            out, iter_estate_devices(source, where=str(estate)), report.groups, limit=limit
        )
