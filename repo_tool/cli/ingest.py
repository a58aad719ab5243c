"""`cfl-repo ingest` and `cfl-repo withdraw`: what enters the library and what is withdrawn.

`ingest` runs the gateway on bundles and stages the accepted ones; `withdraw` records that an image
is withdrawn. Registered on the root group by repo_tool/cli/main.py; parse, call the library,
render.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from metadata_templates.errors import EXIT_FAILURE, ConfigurationError
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the stable ingest report on stdout.")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Deposits per durable commit (default 200; 1 commits each on its own).",
)
@click.pass_context
def ingest(ctx: click.Context, sources: tuple[Path, ...], as_json: bool, batch: int | None) -> None:
    """Run the gateway on bundles (files, or inbox folders of *.cflb). Accepted bundles are staged
    for the next publish; rejected ones change nothing and are kept under R/rejected with a report.

    \b
    Safe from cron: a bundle accepted before is reported "accepted" with the message
    "already accepted: ..." and changes nothing (exit 0); the inbox is only read.
    Links, pipes and other non-files in an inbox are rejected, never followed or read.
    Roles above role_size_cap (R/cfl-repo.json, default 1 MiB) are rejected before parsing.
    See docs/operator.md, "The inbox is hostile input".

    \b
    Deposits are committed in groups (--batch, default 200): one durable commit per group, and a
    deposit is reported accepted only once its group is committed. Killed half-way, the same
    command again redoes the unreported group and reports the rest "already accepted"."""
    from repo_tool.ops.ingest import BATCH, IngestResult, bundles_in, ingest_batches

    repo = _open_repo(ctx)
    bundles = bundles_in(sources)
    if not bundles:
        raise ConfigurationError(f"found no bundles (*.cflb) in {[str(s) for s in sources]}")
    results: list[IngestResult] = []
    with repo.locked():
        paths = _progress(bundles, "ingesting", enabled=not as_json)
        for committed in ingest_batches(repo, paths, now=_now, batch=batch or BATCH):
            results.extend(committed)
            for result in committed:
                _report(result)
    if as_json:
        _emit_json({"results": [r.to_dict() for r in results]})
    rejected = sum(r.status == "rejected" for r in results)
    _err(
        f"{len(results) - rejected} accepted, {rejected} rejected"
        + ("; run `cfl-repo publish` to publish" if rejected < len(results) else "")
    )
    if rejected:
        sys.exit(EXIT_FAILURE)


def _report(result: Any) -> None:
    if result.status == "accepted":
        _err(f"accepted  {result.bundle} -> {result.target or 'role(s) re-signed'}")
    else:
        _err(f"rejected  {result.bundle}: {', '.join(result.reasons)}")
    for message in result.messages:  # e.g. "already accepted: ..." on a re-run
        _err(f"          {message}")


def _progress(items: list[Path], label: str, *, enabled: bool) -> Any:
    """A rich progress bar on a terminal only; plain iteration otherwise."""
    if not enabled or not sys.stderr.isatty() or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description=label, console=None, transient=True)


@click.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why it is withdrawn (recorded and published).")
@click.pass_context
def withdraw(ctx: click.Context, target: str, reason: str) -> None:
    """Withdraw an image: an explicit, recorded event. The blob and its signed metadata stay; clients
    stop recommending and downloading it after the next publish."""
    from repo_tool.ops.withdraw import withdraw as do_withdraw

    repo = _open_repo(ctx)
    with repo.locked():
        withdrawal = do_withdraw(repo, target, reason, now=_now())
    _err(f"withdrew {withdrawal.target} at {withdrawal.withdrawn}; run `cfl-repo publish`")
