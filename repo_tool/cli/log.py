"""`cfl-repo log ...`: the transparency log's verifier key and witnesses' cosignatures.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from pathlib import Path

import click

from metadata_templates.errors import ConfigurationError
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo


@click.group("log")
def log_group() -> None:
    """The transparency log of every lodged event (docs/transparency.md)."""


@log_group.command("key")
@click.option("--json", "as_json", is_flag=True, help="Print origin, vkey, size and root as JSON.")
@click.pass_context
def log_key(ctx: click.Context, as_json: bool) -> None:
    """Print the log's note verifier key (C2SP vkey) on stdout.

    Give it to witnesses and auditors: `cfl log verify URL --vkey VKEY` checks the published log's
    checkpoint against it. The website's trust page shows the same line.
    """
    from repo_tool.tlog.provider_log import log_summary

    repo = _open_repo(ctx)
    if repo.config.log is None:
        raise ConfigurationError(
            f'{repo.path}: no transparency log key configured (cfl-repo.json has no "log")',
            hint="repositories made by `cfl-repo init` from this version on have one",
        )
    if as_json:
        _emit_json(log_summary(repo.log_state(), repo.config.log))
    else:
        click.echo(repo.config.log.vkey)
        _err(f"log {repo.config.log.origin}: {repo.head.log_size} entries")


@log_group.command("add-cosignatures")
@click.argument("cosigned", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    required=True,
    metavar="VKEY",
    help="A witness's cosignature vkey (from `cfl witness init`); lines by others are dropped.",
)
@click.pass_context
def log_add_cosignatures(ctx: click.Context, cosigned: Path, witnesses: tuple[str, ...]) -> None:
    """Keep witnesses' cosignatures (from `cfl witness cosign --out FILE`) with the checkpoint of
    the same size; the next `publish` serves them in log/checkpoint.

    \b
    cfl-repo --repo R log add-cosignatures cosigned.txt --witness "$(cat witness.vkey)"
    cfl-repo --repo R publish
    """
    from metadata_templates.tlog.note import parse_vkey
    from repo_tool.tlog.provider_log import add_cosignatures

    try:
        verifiers = [parse_vkey(text) for text in witnesses]
    except ValueError as e:
        raise ConfigurationError(f"--witness: {e}") from e
    repo = _open_repo(ctx)
    with repo.locked():
        added = add_cosignatures(repo.log_dir, repo.log_state(), cosigned.read_bytes(), verifiers)
    _err(f"kept {added} new cosignature line(s); run publish to serve them")
