"""Human tables that fit the terminal: short target names unless ``--wide``.

Target names are what ``cfl download`` needs, so they are never cut: narrow tables show the short
unique names of client/trust/short_names.py whole and let the descriptive columns (models, reasons)
wrap instead. ``--wide`` shows full names and lets lines be as long as they
need; ``--json`` always carries full names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from client.estate.report import CheckReport, held_images
from client.trust.catalogue import CatalogueImage
from metadata_templates.releases import HELD

# Wide enough for any table, so --wide never wraps a line.
WIDE_CONSOLE_WIDTH = 10_000


def wide_console(console: Console) -> Console:
    """A console like ``console`` that never wraps (for ``--wide``)."""
    return Console(
        file=console.file,
        width=max(console.width, WIDE_CONSOLE_WIDTH),
        highlight=False,
        markup=False,
        color_system=console.color_system,  # type: ignore[arg-type]
    )


def image_table(images: Sequence[CatalogueImage], names: Mapping[str, str], *, wide: bool) -> Table:
    """The ``cfl list`` table.

    Args:
        images: the images to show.
        names: target path -> the name to show (short names, or the identity with ``--wide``).
        wide: full names and full hashes; nothing is cut.
    """
    # No vertical rules: seven columns must fit 80, and only models and reasons may wrap.
    table = Table(title=f"{len(images)} verified image(s)", box=box.SIMPLE_HEAD)
    longest = max((len(names.get(i.target_path, i.target_path)) for i in images), default=6)
    table.add_column("Target", no_wrap=True, min_width=longest)
    table.add_column("Type", no_wrap=True)
    table.add_column("Models", overflow="fold")
    table.add_column("Firmware", no_wrap=True)
    table.add_column("HW range", no_wrap=True)
    table.add_column("Reason", overflow="fold", min_width=len("compliance"))
    table.add_column("MI SHA-256", no_wrap=True)
    for image in images:
        cfl = image.cfl
        reason = cfl.reason + (" " + " ".join(cfl.advisories) if cfl.advisories else "")
        if image.withdrawn:
            reason = "WITHDRAWN; " + reason
        if image.pilot is not None:
            reason = f"{pilot_mark(image)}; " + reason
        if image.hold is not None:
            reason = f"HELD since {image.hold.at[:10]} ({image.hold.by}); " + reason
        models = ", ".join(sorted({f"{e.model_id} {e.model_name}" for e in cfl.cpl_entries}))
        sha = cfl.manufacturer_image_sha256
        # Markup is off for cells: model names and paths are data, never rich markup.
        table.add_row(
            Text(names.get(image.target_path, image.target_path)),
            Text(cfl.device_type),
            Text(models),
            Text(cfl.firmware_version),
            Text(f"{cfl.hardware_version_min}..{cfl.hardware_version_max}"),
            Text(reason),
            Text(sha if wide else sha[:8] + "…"),
        )
    return table


def pilot_mark(image: CatalogueImage) -> str:
    """``PILOT until 2026-09-01`` (or ``PILOT, held``): an image still in this supplier's pilot."""
    assert image.pilot is not None and image.pilot.terms is not None
    if image.pilot.phase == HELD:
        return "PILOT, held by the provider"
    return f"PILOT until {image.pilot.terms.release_at}"


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
        for alert in () if report.advisories is None else report.advisories[index]:
            fix = (
                "fixed by the path"
                if alert.plan_fixes
                else "fix: "
                + (
                    " → ".join(names.get(i.target_path, i.target_path) for i in alert.fix_path)
                    or "none yet"
                )
            )
            cell.append(
                f"\nADVISORY {alert.advisory.id} {alert.advisory.severity} "
                f"{alert.advisory.score} ({fix})",
                style="bold red" if alert.advisory.severity_rank >= 3 else "red",
            )
        if len(group.applicable) > 1:
            cell.append(f"\n{len(group.applicable)} applicable", style="dim")
        if plan.blocked is not None:
            cell.append(f"\nnewest out of reach: {plan.blocked.code}", style="yellow")
        if any(i.hold is not None for i in held_images(group, plan)):
            cell.append("\nHELD image skipped (see below)", style="bold yellow")
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
    held = {
        i.target_path: i
        for index, group in enumerate(report.groups)
        for i in held_images(group, report.plan_of(index))
    }
    for target, image in sorted(held.items()):
        assert image.hold is not None
        console.print(
            Text(
                f"held: {names.get(target, target)} since {image.hold.at} (by the "
                f"{image.hold.by}): {image.hold.reason}; never recommended, paths route around it",
                style="yellow",
            )
        )
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
