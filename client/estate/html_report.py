"""``cfl check --report``: one self-contained HTML page a firmware team can show its managers.

Built from group aggregates only (never from per-device rows), so an estate of 20,000,000 devices
costs what its few thousand groups cost. The page has no script and fetches nothing: the charts are
inline SVG drawn by a Jinja2 template shipped in the package (``client/templates``), the style is
inline, a Content-Security-Policy forbids every fetch, and a print stylesheet keeps it readable on
paper. Every chart has a table with the same figures beside it.

Each group has one state:
  * ``security``: its upgrade path includes a security fix;
  * ``behind``: it has an upgrade path, none of it security fixes;
  * ``up-to-date``: no path, and the library has nothing newer for its product line;
  * ``no-image``: no path, and either the library holds no image for its product line at all or the
    newest is out of reach (``newest_unreachable`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.estate.bars import stacked_segments
from client.estate.outcome_chart import BAR_WIDTH, KINDS, ImageOutcomeChart
from client.estate.paths import UpgradePlan
from client.estate.reader import GroupKey
from client.estate.report import CheckReport
from client.trust.catalogue import CatalogueImage
from metadata_templates.atomic import atomic_writer

STATE_SECURITY = "security"
STATE_BEHIND = "behind"
STATE_UP_TO_DATE = "up-to-date"
STATE_NO_IMAGE = "no-image"
# Chart order, labels and colours; the browser test looks for these colours on screen.
STATES: tuple[tuple[str, str, str], ...] = (
    (STATE_UP_TO_DATE, "Up to date", "#2e7d32"),
    (STATE_BEHIND, "Behind", "#f9a825"),
    (STATE_SECURITY, "Security fix pending", "#c62828"),
    (STATE_NO_IMAGE, "No image available", "#757575"),
)
CHART_WIDTH = 640
# The paths table lists the groups with the most devices first; beyond this many rows the page says
# how many groups and devices it left out (all of them are in --json), so the page stays small.
MAX_PATH_ROWS = 2_000
_BAR_AREA = 400


def group_state(plan: UpgradePlan) -> str:
    """The state of one group (module docstring)."""
    if plan.path:
        return STATE_SECURITY if plan.has_security_fix else STATE_BEHIND
    if plan.blocked is not None:
        return STATE_NO_IMAGE
    return STATE_UP_TO_DATE


@dataclass
class LineFigures:
    """Devices per state for one manufacturer and model (or for the whole estate).

    Attributes:
        label: what the row is, e.g. ``121D 010A030B (ESME)``.
        counts: devices per state.
    """

    label: str
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((s for s, _, _ in STATES), 0)
    )

    @property
    def total(self) -> int:
        """All devices in the row."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class PathRow:
    """One group with something to do (a path, or an unreachable newest image)."""

    key: GroupKey
    devices: int
    hops: tuple[tuple[str, str, bool], ...]  # (firmware version, target, security fix)
    blocked: str | None


@dataclass(frozen=True)
class AdvisoryRow:
    """One advisory affecting the estate: its groups, devices and the path out of each."""

    id: str
    title: str
    severity: str
    score: float
    status: str
    cve: tuple[str, ...]
    devices: int
    # (group, devices, fix path targets, the planned path fixes it)
    groups: tuple[tuple[GroupKey, int, tuple[str, ...], bool], ...]


@dataclass(frozen=True)
class ReportModel:
    """Everything the template draws: plain values, so it can be tested without a browser."""

    title: str
    generated_at: str
    devices: int
    groups: int
    skipped_rows: int
    overall: LineFigures
    lines: tuple[LineFigures, ...]
    paths: tuple[PathRow, ...]
    changes: Mapping[str, Any] | None
    devices_compared: bool
    paths_left_out: int = 0
    devices_left_out: int = 0
    # None: the library publishes no advisory for the estate (the page then has no such section).
    advisories: tuple[AdvisoryRow, ...] | None = None
    # Issue 24: delivery outcomes of the images on the estate's paths (client/estate/outcome_chart.py).
    outcomes: tuple[ImageOutcomeChart, ...] = ()


def build_report_model(
    report: CheckReport,
    *,
    changes: Mapping[str, Any] | None,
    devices_compared: bool = False,
    generated_at: str,
    title: str = "Firmware campaign report",
    has_image_for_line: Mapping[tuple[str, str, str, str], bool] | None = None,
    outcomes: tuple[ImageOutcomeChart, ...] = (),
) -> ReportModel:
    """Aggregate a check report into the figures the page shows.

    Args:
        report: the check, with its upgrade plans.
        changes: ``Changes.to_json()`` of the same run, or None.
        devices_compared: whether the run compared device IDs (``--changes``); without it the
            page says so instead of showing zero meters gained.
        generated_at: when the check ran (shown on the page; passed in, never read from a clock).
        title: the page title.
        has_image_for_line: whether the library has any image for a product line (device type,
            manufacturer, model, hardware version); lines it does not list count as having none.
            Without it, a group with nothing to do counts as up to date.
        outcomes: the delivery-outcome charts to show (issue 24).
    """
    with_images: Mapping[tuple[str, str, str, str], bool] = has_image_for_line or {}
    overall = LineFigures("Whole estate")
    lines: dict[tuple[str, str, str], LineFigures] = {}
    paths: list[PathRow] = []
    for index, group in enumerate(report.groups):
        plan = report.plan_of(index)
        state = group_state(plan)
        key = group.key
        line_key = (key.device_type, key.manufacturer_id, key.model_id, key.hardware_version)
        if (
            state == STATE_UP_TO_DATE
            and has_image_for_line is not None
            and not with_images.get(line_key)
        ):
            state = STATE_NO_IMAGE
        where = (key.manufacturer_id, key.model_id, key.device_type)
        line = lines.get(where)
        if line is None:
            line = lines[where] = LineFigures(
                f"{key.manufacturer_id} {key.model_id} ({key.device_type})"
            )
        line.counts[state] += group.device_count
        overall.counts[state] += group.device_count
        if plan.path or plan.blocked is not None:
            paths.append(
                PathRow(
                    key=key,
                    devices=group.device_count,
                    hops=tuple(
                        (i.cfl.firmware_version, i.target_path, i.is_security_fix)
                        for i in plan.path
                    ),
                    blocked=None if plan.blocked is None else plan.blocked.message,
                )
            )
    paths.sort(key=lambda p: (-p.devices, p.key))
    left_out = paths[MAX_PATH_ROWS:]
    return ReportModel(
        title=title,
        generated_at=generated_at,
        devices=report.devices,
        groups=len(report.groups),
        skipped_rows=report.skipped_rows,
        overall=overall,
        lines=tuple(lines[k] for k in sorted(lines)),
        paths=tuple(paths[:MAX_PATH_ROWS]),
        paths_left_out=len(left_out),
        devices_left_out=sum(p.devices for p in left_out),
        changes=changes,
        devices_compared=devices_compared,
        advisories=_advisory_rows(report),
        outcomes=outcomes,
    )


def _advisory_rows(report: CheckReport) -> tuple[AdvisoryRow, ...] | None:
    """The advisories section, worst advisory first (None without advisories)."""
    if report.advisories is None:
        return None
    found: dict[str, list[tuple[GroupKey, int, tuple[str, ...], bool]]] = {}
    by_id = {}
    for group, alerts in zip(report.groups, report.advisories, strict=True):
        for alert in alerts:
            by_id[alert.advisory.id] = alert.advisory
            fix = tuple(image.target_path for image in alert.fix_path)
            found.setdefault(alert.advisory.id, []).append(
                (group.key, group.device_count, fix, alert.plan_fixes)
            )
    rows = [
        AdvisoryRow(
            id=a.id,
            title=a.title,
            severity=a.severity,
            score=a.score,
            status=a.status,
            cve=a.cve,
            devices=sum(devices for _key, devices, _fix, _plan in found[a.id]),
            groups=tuple(sorted(found[a.id], key=lambda g: (-g[1], g[0]))),
        )
        for a in by_id.values()
    ]
    rank = {s: i for i, s in enumerate(("none", "low", "medium", "high", "critical"))}
    return tuple(sorted(rows, key=lambda r: (-rank[r.severity], -r.score, r.id)))


def bar_segments(figures: LineFigures, scale: int) -> list[dict[str, Any]]:
    """The coloured pieces of one stacked bar, ``scale`` devices to the full bar width."""
    parts = ((label, colour, figures.counts[state]) for state, label, colour in STATES)
    return stacked_segments(parts, _BAR_AREA, scale)


def render_report(model: ReportModel) -> str:
    """The page, as one HTML string.

    Raises:
        jinja2.TemplateError: the shipped template is broken (a packaging bug, not bad input).
    """
    import jinja2  # only --report pays for it: cfl check's start-up stays short

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("client", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("estate_report.html")
    largest = max((line.total for line in model.lines), default=0)
    return template.render(
        model=model,
        states=STATES,
        chart_width=CHART_WIDTH,
        bar_area=_BAR_AREA,
        overall_bar=bar_segments(model.overall, model.overall.total),
        line_bars=[(line, bar_segments(line, largest)) for line in model.lines],
        outcome_kinds=KINDS,
        outcome_bar_width=BAR_WIDTH,
    )


def write_report(path: Path, html: str) -> None:
    """Write the page atomically: it appears complete or not at all.

    Raises:
        OSError: it cannot be written.
    """
    with atomic_writer(path) as handle:
        handle.write(html.encode("utf-8"))


def product_lines_with_images(
    images: Sequence[CatalogueImage],
) -> dict[tuple[str, str, str, str], bool]:
    """Which product lines (device type, manufacturer, model, hardware version) have any image."""
    found: dict[tuple[str, str, str, str], bool] = {}
    for image in images:
        if image.withdrawn:
            continue
        for entry in image.cfl.cpl_entries:
            line = (image.cfl.device_type, image.cfl.manufacturer_id, entry.model_id,
                    entry.hardware_version)  # fmt: skip
            found[line] = True
    return found
