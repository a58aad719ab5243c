"""`cfl-repo status`: what is staged, what expires soon, and what publish would change.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from pathlib import Path

import click

from metadata_templates.errors import ConfigurationError
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON on stdout.")
@click.option(
    "--prometheus",
    is_flag=True,
    help="Print metrics in the Prometheus text format on stdout (nothing else is printed).",
)
@click.option(
    "--prometheus-file",
    type=click.Path(path_type=Path),
    help="Write the metrics to this *.prom file atomically (node exporter's textfile collector).",
)
@click.option(
    "--inbox",
    "inboxes",
    multiple=True,
    type=click.Path(path_type=Path),
    help="An inbox folder to count bundles in (repeatable; with the metrics only).",
)
@click.option(
    "--published",
    type=click.Path(path_type=Path),
    help="The published tree to read timestamp.json from (default R/public; metrics only).",
)
@click.pass_context
def status(
    ctx: click.Context,
    as_json: bool,
    prometheus: bool,
    prometheus_file: Path | None,
    inboxes: tuple[Path, ...],
    published: Path | None,
) -> None:
    """What is staged: versions, expiry dates, manufacturers, images, and what publish would change.

    \b
    With --prometheus or --prometheus-file, metrics for a monitoring system instead (every name
    begins cfl_, times are in seconds): seconds until each role and bin expires
    (cfl_role_expiry_seconds), until the published timestamp expires, when it was last published,
    bundles in each --inbox, rejected deposits by reason, the transparency log's size.

    \b
    Examples:
      cfl-repo --repo R status
      cfl-repo --repo R status --prometheus --inbox inbox/
      cfl-repo --repo /var/lib/cfl/repo status --inbox /srv/cfl/inbox \\
          --prometheus-file /var/lib/node_exporter/textfile/cfl.prom

    --prometheus-file replaces the file in one rename, so a scrape never reads half of it. See
    docs/operator.md, "Metrics" and "A whole deployment"."""
    metrics = prometheus or prometheus_file is not None
    if metrics and as_json:
        raise ConfigurationError(
            "--json: found with --prometheus/--prometheus-file, expected one output format"
        )
    if not metrics and (inboxes or published is not None):
        option = "--inbox" if inboxes else "--published"
        raise ConfigurationError(
            f"{option}: found without --prometheus or --prometheus-file, expected with one of them"
        )
    if metrics:
        _metrics(ctx, prometheus, prometheus_file, inboxes, published)
        return
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


def _metrics(
    ctx: click.Context,
    to_stdout: bool,
    path: Path | None,
    inboxes: tuple[Path, ...],
    published: Path | None,
) -> None:
    from repo_tool.monitor.exposition import render, write_textfile
    from repo_tool.monitor.readings import read_status

    repo = _open_repo(ctx)
    if published is not None and not published.is_dir():
        raise ConfigurationError(
            f"--published {published}: found no such folder, expected a published tree"
        )
    readings = read_status(
        repo, now=_now(), published=published or repo.default_out, inboxes=inboxes
    )
    data = render(readings)
    if path is not None:
        write_textfile(path, data)
    if to_stdout:
        click.echo(data.decode(), nl=False)
