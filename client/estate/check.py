"""The estate check pipeline: read, group, match, plan paths, report; and the per-device pass.

``check_estate`` and ``write_estate_devices`` are pure of click and of ngclient (the catalogue and
the CPL come in as verified values; the benchmark drives them). ``run_check`` is ``cfl check``:
it opens the home, loads only the estate's manufacturers, runs the pipeline and records history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from client.advisories.documents import AdvisorySet, load_advisories
from client.advisories.matching import AdvisoryIndex
from client.estate.advisories import group_advisories, mark_fixes
from client.estate.history import Changes, History
from client.estate.matching import match_estate
from client.estate.paths import PathFinder
from client.estate.reader import EstateSummary, iter_estate_devices, open_estate, read_estate_groups
from client.estate.report import CheckReport
from client.estate.rollout import (
    MAX_BATCH_DEVICES,
    BatchKey,
    BatchRange,
    Phases,
    count_devices,
    count_groups,
    plan_rollout,
    write_rollout_csv,
)
from client.trust.catalogue import CatalogueImage, Viewer
from client.trust.home import ClientHome
from client.trust.library import Catalogue, load_catalogue, open_session, viewer_of
from client.trust.session import Session
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, UnavailableError, field_error
from metadata_templates.outcomes import Figures, OutcomesDocument


def plan_estate(
    summary: EstateSummary,
    images: Iterable[CatalogueImage],
    cpl: CplDocument,
    advisories: AdvisoryIndex | None = None,
) -> CheckReport:
    """Match every group against the catalogue and plan its upgrade path.

    A group's ``recommended`` image becomes the last hop of its path (the best image it can
    reach, possibly through intermediate images), as ARCHITECTURE.md's stable output says. With
    ``advisories``, images that fix one are preferred on paths, and each group gets the
    advisories it runs into with the path out of each (client/estate/advisories.py).
    """
    images = tuple(images) if not advisories else mark_fixes(images, advisories)
    finder = PathFinder(images, cpl)
    groups = match_estate(summary.groups, images, cpl)
    plans = tuple(finder.plan(group.key) for group in groups)
    alerts = (
        None
        if not advisories
        else tuple(
            group_advisories(g.key, g.current_cpl_entries, p.path, advisories, finder)
            for g, p in zip(groups, plans, strict=True)
        )
    )
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
        advisories=alerts,
    )


def check_estate(
    estate: Path,
    images: Iterable[CatalogueImage],
    cpl: CplDocument,
    *,
    strict: bool = False,
    max_problems: int = 100,
    advisories: AdvisoryIndex | None = None,
) -> CheckReport:
    """Read the estate once, match every group of devices and plan its path (and, with
    ``advisories``, join each group to the advisories it runs into).

    Raises:
        UnavailableError: the estate file cannot be opened.
        EstateError: no usable header, unreadable CSV, or (``strict``) a bad row.
    """
    with open_estate(estate) as source:
        summary = read_estate_groups(
            source, strict=strict, max_problems=max_problems, where=str(estate)
        )
    return plan_estate(summary, images, cpl, advisories)


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
    published: OutcomesDocument | None = None,
    own: Mapping[str, Figures] | None = None,
) -> None:
    """Write ``--report``: the self-contained HTML page of this check; with ``published`` (the
    verified cfl/outcomes.json) and ``own`` (the home's recorded figures), a delivery-outcome chart
    per image that applies to the estate.

    Raises:
        OSError: the page cannot be written.
    """
    from client.estate.html_report import (  # only --report pays for Jinja2
        build_report_model,
        product_lines_with_images,
        render_report,
        write_report,
    )
    from client.estate.outcome_chart import ImageOutcomeChart, outcome_charts

    charts: tuple[ImageOutcomeChart, ...] = ()
    if published is not None or own:
        charts = outcome_charts(
            (i.target_path for g in report.groups for i in g.applicable),
            published or OutcomesDocument(updated="1970-01-01T00:00:00Z"),
            own or {},
        )

    model = build_report_model(
        report,
        changes=changes,
        devices_compared=devices_compared,
        generated_at=format_timestamp(now),
        has_image_for_line=product_lines_with_images(tuple(images)),
        outcomes=charts,
    )
    write_report(out, render_report(model))


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
    advisories: AdvisorySet = dataclasses.field(default_factory=AdvisorySet)


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
    session: Session, estate: Path, strict: bool, *, viewer: Viewer | None = None
) -> tuple[CheckReport, Catalogue, AdvisorySet]:
    """Read the estate once, load only its manufacturers' roles and advisories, and match every
    group.

    Raises:
        EstateError: the estate is unusable.
        VerificationError: the top-level metadata or the CPL failed verification.
        UnavailableError: the library or the estate could not be read.
    """
    with open_estate(estate) as source:
        summary = read_estate_groups(source, strict=strict, max_problems=100, where=str(estate))
    catalogue = load_catalogue(
        session, {key.manufacturer_id for key in summary.groups}, viewer=viewer
    )
    advisories = load_advisories(session, catalogue.advisories)
    index = AdvisoryIndex(advisories.advisories, catalogue.images) if catalogue.advisories else None
    report = plan_estate(summary, catalogue.images, session.cpl(), index)
    return report, catalogue, advisories


def run_check(
    home: ClientHome,
    estate: Path,
    *,
    now: datetime,
    strict: bool = False,
    devices_out: Path | None = None,
    phases: Phases | None = None,
    report_out: Path | None = None,
    changes: bool = False,
    estate_name: str = "default",
    offline: bool = False,
    own_outcomes: Mapping[str, Figures] | None = None,
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
    if report_out is not None:
        check_output_file(report_out, "--report")
    home.load_config()
    with home.lock():
        session = open_session(home, offline=offline)
        report, catalogue, advisories = check_with_session(
            session, estate, strict, viewer=viewer_of(home, now)
        )
        if devices_out is not None:
            try:
                write_estate_devices(estate, report, devices_out, phases=phases)
            except OSError as e:
                raise UnavailableError(
                    f"--devices-out {devices_out}: cannot be written ({e.strerror or e})"
                ) from e
        if catalogue.unverified:
            # The catalogue lacks those manufacturers' images: recording it would make them look
            # "new" at the next complete check. The history keeps the last complete check instead.
            _write_report(
                report_out, report, catalogue, None, changes=changes, now=now, own=own_outcomes
            )
            return CheckRun(report, catalogue, None, advisories)
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
        _write_report(
            report_out, report, catalogue, recorded, changes=changes, now=now, own=own_outcomes
        )
    return CheckRun(report, catalogue, recorded if changes else None, advisories)


def _write_report(
    out: Path | None,
    report: CheckReport,
    catalogue: Catalogue,
    recorded: Changes | None,
    *,
    changes: bool,
    now: datetime,
    own: Mapping[str, Figures] | None = None,
) -> None:
    if out is None:
        return
    try:
        write_estate_report(
            out,
            report,
            catalogue.images,
            recorded.to_json() if recorded is not None else None,
            devices_compared=changes and recorded is not None,
            now=now,
            published=catalogue.outcomes,
            own=own,
        )
    except OSError as e:
        raise UnavailableError(f"--report {out}: cannot be written ({e.strerror or e})") from e
