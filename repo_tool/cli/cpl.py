"""`cfl-repo cpl ...`: the Central Products List, imported and staged as target cfl/cpl.json.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from pathlib import Path

import click

from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now


@click.group()
def cpl() -> None:
    """The Central Products List: import it, and it is published as target cfl/cpl.json."""


@cpl.command("import")
@click.argument("cpl_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_context
def cpl_import(ctx: click.Context, cpl_file: Path, as_json: bool) -> None:
    """Validate and load a CPL (CSV or XLSX); every bad row is reported, nothing changes on error."""
    from metadata_templates.custom import format_timestamp
    from repo_tool.intake.cpl import read_cpl
    from repo_tool.ops.cpl_import import import_cpl
    from repo_tool.state.head import provider_signing_role

    repo = _open_repo(ctx)
    now = _now()
    doc = read_cpl(cpl_file, imported=format_timestamp(now))
    with repo.locked():
        version = import_cpl(repo, doc, now=now)
    _err(
        f"imported {len(doc.entries)} CPL entries from {cpl_file}; staged "
        f"{provider_signing_role(repo.head)} version {version}"
    )
    if as_json:
        _emit_json(
            {
                "entries": len(doc.entries),
                "source_sha256": doc.source_sha256,
                "targets_version": version,
            }
        )
