"""`cfl-repo outcomes ingest|show`: suppliers' delivery-outcome reports (issue 24).

Registered on the root group by repo_tool/cli/main.py; parse, call `repo_tool.ops.outcomes`, render.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from metadata_templates.errors import EXIT_FAILURE, ConfigurationError
from metadata_templates.outcomes import REPORT_FILE_SUFFIX
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now
MAX_FILES = 10_000


@click.group()
def outcomes() -> None:
    """Delivery outcomes: suppliers' signed counts per image, combined and published as
    cfl/outcomes.json; failing firmware is held by itself. See docs/outcomes.md.

    \b
      cfl-repo --repo R outcomes ingest REPORT.dsse.json [REPORT ...]
      cfl-repo --repo R outcomes ingest --from /srv/cfl/outcomes-inbox
      cfl-repo --repo R outcomes show [TARGET] [--json]
    """


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(2 << 20)  # past the cap, so the check can say how large
    except OSError as e:
        raise ConfigurationError(f"REPORT: {path}: cannot be read ({e.strerror})") from None


@outcomes.command()
@click.argument(
    "reports", nargs=-1, metavar="[REPORT]...", type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--from",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Ingest every *{REPORT_FILE_SUFFIX} in this folder (the host's upload folder); "
    "files are left in place and those ingested before are skipped.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one result per report on stdout.")
@click.pass_context
def ingest(
    ctx: click.Context, reports: tuple[Path, ...], folder: Path | None, as_json: bool
) -> None:
    """Verify suppliers' outcome reports against the registry, keep them, publish the combined
    figures (cfl/outcomes.json, signed by cfl-provider) and hold any image the policy stops.

    A report is refused with a stable code (docs/outcomes.md) and nothing of it counts; the same
    file again is "already ingested". Exit 1 when any report was refused."""
    from repo_tool.ops.outcomes import ingest_reports

    if not reports and folder is None:
        raise click.UsageError("give REPORT files or --from FOLDER")
    repo = _open_repo(ctx)
    with repo.locked():
        items = [(str(p), _read(p)) for p in reports]
        if folder is not None:
            if not folder.is_dir():
                raise ConfigurationError(f"--from: {folder}: not a folder")
            found = sorted(folder.glob(f"*{REPORT_FILE_SUFFIX}"))[:MAX_FILES]
            items += [(str(p), _read(p)) for p in found if p.is_file()]
        result = ingest_reports(repo, items, now=_now(), from_folder=folder is not None)
    if as_json:
        _emit_json(
            {
                "results": [v.to_dict() for v in result.verdicts],
                "held": list(result.held),
            }
        )
    for v in result.verdicts:
        if v.status == "accepted":
            _err(f"accepted {v.source}: {v.entity_id} {v.period}")
        elif v.status == "already":
            _err(f"already ingested {v.source} ({v.entity_id} {v.period}); nothing changed")
        else:
            _err(f"rejected {v.source}: {', '.join(v.reasons)}: {'; '.join(v.messages)}")
    for target in result.held:
        _err(f"held {target}: {result.document.holds()[target].reason}")
    if result.accepted:
        _err("run `cfl-repo publish` so suppliers see the new figures")
    if not result.verdicts:
        _err("no reports found")
    if result.rejected:
        # sys.exit, not ctx.exit: cfl-repo runs click outside standalone mode, where click turns
        # ctx.exit into a return value that nobody reads (repo_tool/cli/console.py).
        sys.exit(EXIT_FAILURE)


@outcomes.command()
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the figures on stdout.")
@click.pass_context
def show(ctx: click.Context, target: str | None, as_json: bool) -> None:
    """The combined figures per image (attempted, delivered, failures, rate, suppliers), what is
    on hold and why, and the policy."""
    from repo_tool.ops.outcomes import document

    doc = document(_open_repo(ctx))
    images = [i for i in doc.images if target is None or i.target == target]
    holds = doc.holds()
    if target is not None and not images and target not in holds:
        raise ConfigurationError(
            f"TARGET: found {target!r}, expected an image with reported outcomes"
        )
    if as_json:
        _emit_json(
            {
                "policy": doc.policy.to_dict(),
                "updated": doc.updated,
                "images": [
                    {
                        **i.to_dict(),
                        "held": holds[i.target].to_dict() if i.target in holds else None,
                    }
                    for i in images
                ],
            }
        )
        return
    _err(f"policy: hold at {doc.policy.describe()}")
    for i in images:
        f = i.figures
        line = (
            f"{i.target}: {f.attempted} attempted, {f.delivered} delivered, {f.failures} failed "
            f"({f.failure_rate:.2%}), {i.suppliers} supplier(s)"
        )
        if i.target in holds:
            line += f"; ON HOLD since {holds[i.target].at}: {holds[i.target].reason}"
        _err(line)
    if not images:
        _err("no outcomes reported yet")
