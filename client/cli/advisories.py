"""`cfl advisories` and `cfl check --fail-on-advisory`: the security advisories a supplier's estate
runs into. Parse, call the library, render (registered on the root group by client/cli/main.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich import box
from rich.table import Table
from rich.text import Text

from client.cli.output import emit_json, home_of, offline_option, say, stderr, utc_now
from client.estate.advisories import GroupAdvisory, advisories_json, at_or_above
from client.estate.advisory_check import AdvisoriesRun, run_advisories
from client.estate.reader import GroupKey
from client.estate.report import CheckReport
from metadata_templates.advisory import SEVERITIES, Advisory
from metadata_templates.errors import EXIT_FAILURE, UnavailableError

FAIL_ON_CHOICES = SEVERITIES[1:]  # low, medium, high, critical

fail_on_option = click.option(
    "--fail-on-advisory",
    "fail_on",
    type=click.Choice(FAIL_ON_CHOICES),
    help="Exit 1 when a group of the estate runs firmware an advisory at or above this severity "
    "lists (for cron; the report is printed first). Example: --fail-on-advisory high",
)


def _groups(report: CheckReport) -> list[tuple[GroupKey, int, tuple[GroupAdvisory, ...]]]:
    alerts = report.advisories or tuple(() for _ in report.groups)
    return [(g.key, g.device_count, a) for g, a in zip(report.groups, alerts, strict=True)]


def fail_on_advisory(ctx: click.Context, report: CheckReport, threshold: str | None) -> None:
    """Exit 1, one ``error:`` line per affected group, when ``threshold`` is met."""
    if threshold is None:
        return
    hits = at_or_above(_groups(report), threshold)
    for key, count, advisory in hits:
        say(
            f"error: advisory {advisory.id} ({advisory.severity} {advisory.score}): found "
            f"{count:,} device(s) on {'/'.join(key)}, expected none at or above {threshold}"
        )
    if hits:
        ctx.exit(EXIT_FAILURE)


@click.command("advisories")
@click.option(
    "--estate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Only the advisories affecting this estate (CSV, as cfl check), with device counts per "
    "group and the upgrade path that fixes each.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the advisories as JSON on stdout.")
@click.option(
    "--csaf",
    "csaf_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write one CSAF 2.0 (OASIS) document per advisory listed into this folder.",
)
@click.option(
    "--openvex",
    "openvex_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one OpenVEX document: per image, affected, fixed or not affected.",
)
@offline_option
@click.pass_context
def advisories_command(
    ctx: click.Context,
    estate: Path | None,
    as_json: bool,
    csaf_dir: Path | None,
    openvex_file: Path | None,
    offline: bool,
) -> None:
    """The security advisories manufacturers signed, verified like images: which firmware is
    vulnerable, how bad (CVSS), and which images fix it.

    With --estate, only those affecting your devices, each with its device count per group and
    the upgrade path that fixes it (the same pathways as cfl check). See docs/supplier.md,
    "Security advisories".

    \b
    Examples:
      cfl advisories --estate estate.csv
      cfl advisories --estate estate.csv --json | jq '.advisories[].affected_devices'
      cfl advisories --csaf csaf/ --openvex vex.json
    """
    run = run_advisories(home_of(ctx), estate, offline=offline)
    for problem in run.advisories.problems:
        say(f"warning: ignored {problem.target}: {problem.message}")
    for role in run.catalogue.unverified:
        say(f"warning: {role.manufacturer_id}: advisories left out, {role.message}")
    doc = advisories_json(run.advisories.advisories, run.groups())
    listed = {a["id"] for a in doc["advisories"]}
    chosen = [a for a in run.advisories.advisories if a.id in listed]
    if csaf_dir is not None or openvex_file is not None:
        _export(run, chosen, csaf_dir, openvex_file)
    if as_json:
        emit_json(doc | {"unverified": [u.to_json() for u in run.catalogue.unverified]})
    else:
        _table(doc["advisories"], estate is not None)
    if run.catalogue.unverified:
        ctx.exit(EXIT_FAILURE)


def _export(
    run: AdvisoriesRun, chosen: Sequence[Advisory], csaf_dir: Path | None, vex: Path | None
) -> None:
    from client.advisories.exports import write_csaf, write_openvex

    try:
        if csaf_dir is not None:
            written = write_csaf(
                csaf_dir, chosen, run.catalogue.images, run.cpl, namespace=run.namespace
            )
            say(f"wrote {len(written)} CSAF document(s) to {csaf_dir}")
        if vex is not None:
            write_openvex(vex, chosen, run.catalogue.images, now=utc_now())
            say(f"wrote OpenVEX statements to {vex}")
    except OSError as e:
        raise UnavailableError(f"export: cannot write ({e.strerror or e})") from e


def _table(advisories: list[dict[str, object]], with_estate: bool) -> None:
    title = "Advisories affecting the estate" if with_estate else "Published advisories"
    table = Table(title=f"{title}: {len(advisories)}", box=box.SIMPLE_HEAD)
    for heading in ("ID", "Severity", "Status"):
        table.add_column(heading, no_wrap=True)
    table.add_column("Title", overflow="fold")
    if with_estate:
        table.add_column("Devices", justify="right")
        table.add_column("Fix path", overflow="fold")
    for a in advisories:
        row = [
            Text(str(a["id"])),
            Text(
                f"{a['severity']} {a['score']}",
                style="bold red" if a["severity"] in ("high", "critical") else "",
            ),
            Text(str(a["status"])),
            Text(str(a["title"])),
        ]
        if with_estate:
            path = a["fix_path"]
            row += [
                Text(f"{a['affected_devices']:,}"),
                Text(" → ".join(path) if isinstance(path, list) and path else "none yet"),
            ]
        table.add_row(*row)
    stderr.print(table)
