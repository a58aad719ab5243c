"""`cfl-repo status`: what is staged, what expires soon, and what publish would change.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

import click

from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON on stdout.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What is staged: versions, expiry dates, manufacturers, images, and what publish would change."""
    from repo_tool.ops.status import status_report

    repo = _open_repo(ctx)
    doc = status_report(repo, now=_now())
    roles = doc["roles"]
    pending = doc["unpublished_changes"]
    if as_json:
        _emit_json(doc)
        return
    if repo.config.dev_keys:
        _err("warning: this repository uses DEVELOPMENT KEYS")
    for name in doc["expiring_soon"]:
        how = (
            "cfl-repo refresh"
            if not name.startswith("mfr-")
            else "the manufacturer's submit --renew"
        )
        if name == "root" or (name == "targets" and repo.held_offline(name)):  # keys branch
            how = f"a ceremony: cfl-repo ceremony start {name}"
        _err(f"warning: {name} expires {roles[name]['expires']}; renew it with {how}")
    for name, info in roles.items():
        # cfl-provider (issue 13) holds the provider's documents, not images.
        kind = "document(s)" if name == "cfl-provider" else "image(s)"
        extra = f", {info['targets']} {kind}" if "targets" in info else ""
        _err(f"{name:<12} v{info['version']:<5} expires {info['expires']}{extra}")
    _err(
        f"manufacturers: {', '.join(doc['manufacturers']) or 'none'}; CPL entries: {doc['cpl_entries']}; "
        f"images: {doc['images']}; withdrawn: {doc['withdrawn']}"
    )
    _err(f"unpublished changes: {', '.join(pending) or 'none'}")
    from repo_tool.ops.key_inventory import render_inventory

    for line in render_inventory(doc["keys"]):
        _err(line)
