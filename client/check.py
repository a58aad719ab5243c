"""The estate check pipeline: read, group, match, report; and the optional per-device pass.

``check_estate`` and ``write_estate_devices`` are pure of click and of ngclient (the catalogue and
the CPL come in as verified values; the benchmark drives them). ``run_check`` is ``cfl check``:
it opens the home, loads only the estate's manufacturers, runs the pipeline and records history.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from client.catalogue import CatalogueImage
from client.estate import iter_estate_devices, open_estate, read_estate_groups
from client.history import Changes, History
from client.home import ClientHome
from client.library import Catalogue, load_catalogue, open_session
from client.matching import match_estate
from client.report import MAX_BATCH_DEVICES, BatchRange, CheckReport, write_devices_csv
from client.session import Session
from metadata_templates.cpl_document import CplDocument
from metadata_templates.errors import ConfigurationError, UnavailableError, field_error


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


@dataclass(frozen=True)
class CheckRun:
    """What ``cfl check`` found and recorded.

    Attributes:
        report: the match of every device group.
        catalogue: the verified catalogue of the estate's manufacturers (``unverified`` lists
            the roles that did not verify: their devices have nothing applicable in ``report``).
        changes: devices gained and images new since the last ``--changes`` check, when asked
            and the catalogue is complete (None when a role did not verify: nothing is recorded).
    """

    report: CheckReport
    catalogue: Catalogue
    changes: Changes | None


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file path that cannot be written as a file.

    An existing regular file is replaced (atomically) as a re-run expects.

    Raises:
        ConfigurationError: the path is a folder, or its parent is missing or not a folder.
    """
    if path.is_dir():
        raise ConfigurationError(field_error(option, str(path), "a file path, not a folder"))
    parent = path.parent
    if not parent.is_dir():
        found = "a regular file" if parent.exists() else "no such folder"
        raise ConfigurationError(
            field_error(f"{option} folder", str(parent), "an existing folder") + f" ({found})"
        )


def _device_ids(estate: Path) -> Iterator[str]:
    with open_estate(estate) as source:
        for device_id, _key in iter_estate_devices(source, where=str(estate)):
            yield device_id


def check_with_session(
    session: Session, estate: Path, strict: bool
) -> tuple[CheckReport, Catalogue]:
    """Read the estate once, load only its manufacturers' roles, and match every group.

    Raises:
        EstateError: the estate is unusable.
        VerificationError: the top-level metadata or the CPL failed verification.
        UnavailableError: the library or the estate could not be read.
    """
    with open_estate(estate) as source:
        summary = read_estate_groups(source, strict=strict, max_problems=100, where=str(estate))
    catalogue = load_catalogue(session, {key.manufacturer_id for key in summary.groups})
    report = CheckReport(
        devices=summary.devices,
        groups=match_estate(summary.groups, catalogue.images, session.cpl()),
        skipped_rows=summary.skipped_rows,
        problems=summary.problems,
        problem_count=summary.problem_count,
    )
    return report, catalogue


def run_check(
    home: ClientHome,
    estate: Path,
    *,
    now: datetime,
    strict: bool = False,
    devices_out: Path | None = None,
    changes: bool = False,
    estate_name: str = "default",
    offline: bool = False,
) -> CheckRun:
    """``cfl check``: which verified images apply to the estate's devices, and which to install.

    Only the roles of manufacturers in the estate are fetched. A role that does not verify is in
    ``CheckRun.catalogue.unverified``; the other manufacturers' devices are matched as usual.

    Raises:
        ConfigurationError: the home is not initialised, ``devices_out`` cannot be a file, or
            the host refused the home's credentials.
        EstateError: the estate is unusable.
        VerificationError: the top-level metadata or the CPL failed verification.
        UnavailableError: the library or the estate could not be read, or the home is locked.
    """
    if devices_out is not None:
        check_output_file(devices_out, "--devices-out")
    home.load_config()
    with home.lock():
        report, catalogue = check_with_session(open_session(home, offline=offline), estate, strict)
        if devices_out is not None:
            try:
                write_estate_devices(estate, report, devices_out)
            except OSError as e:
                raise UnavailableError(
                    f"--devices-out {devices_out}: cannot be written ({e.strerror or e})"
                ) from e
        if catalogue.unverified:
            # The catalogue lacks those manufacturers' images: recording it would make them look
            # "new" at the next complete check. The history keeps the last complete check instead.
            return CheckRun(report, catalogue, None)
        with History(home.history_path) as history:
            recorded = history.record(
                now=now,
                devices=report.devices,
                catalogue_targets=[i.target_path for i in catalogue.images],
                applicable_targets=sorted(
                    {i.target_path for g in report.groups for i in g.applicable}
                ),
                device_ids=_device_ids(estate) if changes else None,
                estate=estate_name,
            )
    return CheckRun(report, catalogue, recorded if changes else None)
