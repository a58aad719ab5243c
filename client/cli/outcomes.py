"""`cfl outcomes record|submit`: the supplier's delivery outcomes (issue 24). Parses, calls
client/outcomes/, renders. Device IDs stay in the home; only counts leave it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from client.cli.output import emit_json, home_of, say, stderr, utc_now
from client.trust.home import ClientHome
from metadata_templates.errors import ConfigurationError

if TYPE_CHECKING:
    from client.estate.check import CheckRun
    from client.estate.rollout import Phases
    from client.outcomes.gate import PhaseGate
    from metadata_templates.outcomes import Figures

_now = utc_now  # tests replace it: time is injected at the edge only


@click.group("outcomes")
def outcomes_group() -> None:
    """Delivery outcomes: record per-device results in the home, submit signed counts.

    \b
    cfl outcomes record RESULTS.csv                       merge results into the home's ledger
    cfl outcomes submit --key ORG.pem --out REPORT.json   the last month's signed counts, as a file
    cfl outcomes submit --key ORG.pem --upload            ... PUT to the library's host

    Device IDs are kept only in the home (HOME/outcomes/results.json); a report holds counts per
    image and outcome, nothing else. See docs/supplier.md, "Delivery outcomes".
    """


@outcomes_group.command("record")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what was recorded as JSON on stdout.")
@click.pass_context
def record_command(ctx: click.Context, results: Path, as_json: bool) -> None:
    """Check RESULTS.csv against the verified library and merge it into the home's ledger.

    Columns: Device ID, Target (an image target path or its Manufacturer Image SHA-256), Outcome
    (a code of docs/supplier.md), Time (UTC, YYYY-MM-DDTHH:MM:SSZ) and, optional, Firmware
    Version read back after activation. One bad row refuses the whole file (exit 1, nothing
    recorded). A later Time for the same device and image supersedes the earlier (a retry);
    recording the same file again records nothing new. Works from the home alone (as --offline):
    run `cfl refresh` first.

    \b
    Example:
      cfl outcomes record results-2026-11.csv
    """
    from client.outcomes.record import run_record

    summary = run_record(home_of(ctx), results, now=_now())
    if as_json:
        emit_json(summary.to_json())
    table = Table(title=f"{results}: {summary.rows} row(s)")
    table.add_column("Image")
    table.add_column("Outcome")
    table.add_column("Devices", justify="right")
    for target, counts in sorted(summary.counts.items()):
        for code, n in sorted(counts.items()):
            table.add_row(target, code, f"{n:,}")
    if not as_json:
        stderr.print(table)
    say(
        f"recorded: {summary.new} new, {summary.updated} superseded by a later retry, "
        f"{summary.unchanged} already recorded, {summary.older} older than the recorded result"
    )
    if summary.version_not_confirmed:
        say(
            f"note: {summary.version_not_confirmed} 'activated' row(s) read back another firmware "
            "version than the image's: counted as version-not-confirmed"
        )
    if summary.in_submitted:
        say(
            f"warning: {summary.in_submitted} result(s) fall in a period already submitted; they "
            "stay in the home and are in no report (a report per period is final)"
        )


@outcomes_group.command("submit")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your organisation's P-256 private key (PEM), of the certificate you registered.",
)
@click.option(
    "--out",
    "out_file",
    metavar="REPORT",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signed report to this file (hand it to the provider yourself).",
)
@click.option("--upload", is_flag=True, help="PUT the signed report to the library's host.")
@click.option(
    "--period",
    help="YYYY-MM or YYYY-MM-DD, ended (default: the last complete month, UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was submitted as JSON on stdout.")
@click.pass_context
def submit_command(
    ctx: click.Context,
    key_file: Path,
    out_file: Path | None,
    upload: bool,
    period: str | None,
    as_json: bool,
) -> None:
    """Sign the period's counts per image and outcome with your organisation key and hand them
    over: --out REPORT (a file) or --upload (the host, with your client certificate).

    Your Entity ID comes from the verified supplier registry, by the key. A report per period is
    final: a period already submitted is refused, except --out again for the same period with
    unchanged counts, which writes the very same bytes.

    \b
    Example:
      cfl outcomes submit --key org.key.pem --out report-2026-11.dsse.json --period 2026-11
    """
    from client.estate.check import check_output_file
    from client.outcomes.keys import load_organisation_key
    from client.outcomes.submit import run_submit

    if (out_file is None) == (not upload):
        raise ConfigurationError(
            "submit: found "
            + ("both --out and --upload" if upload else "neither --out nor --upload")
            + ", expected exactly one"
        )
    if out_file is not None:
        check_output_file(out_file, "--out")
    key = load_organisation_key(
        key_file,
        lambda: str(click.prompt(f"Passphrase for {key_file}", hide_input=True, err=True)),
    )
    result = run_submit(home_of(ctx), key, now=_now(), period=period, out=out_file)
    if as_json:
        emit_json(result.to_json())
    again = " (the very same report again)" if result.rerun else ""
    say(
        f"report for {result.period} by {result.entity_id}: {result.images} image(s), "
        f"{result.devices} device(s), {'uploaded to' if result.upload else 'written to'} "
        f"{result.destination}{again}"
    )


def own_figures(home: ClientHome) -> Mapping[str, Figures]:
    """The supplier's own recorded figures per image (for ``cfl check --report``)."""
    from client.outcomes.ledger import load_ledger

    return load_ledger(home.path).figures()


def check_gates(ctx: click.Context, estate: Path, run: CheckRun, phases: Phases) -> list[PhaseGate]:
    """The local rollout gate of each phase of ``cfl check --phases`` (client/outcomes/gate.py)."""
    from client.outcomes.gate import run_gates

    return run_gates(
        home_of(ctx), estate, run.report.paths(), phases, run.catalogue.outcomes.policy
    )


def say_gates(gates: Iterable[PhaseGate]) -> None:
    for gate in gates:
        say(
            f"phase {gate.phase} ({gate.percent}%, {gate.devices} devices): {gate.state}: {gate.reason}"
        )
