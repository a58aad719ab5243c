"""`cfl-repo`: the provider's and manufacturers' command line. Parses, calls the library, renders.

Exit codes: 0 success, 1 something was rejected or failed verification, 2 usage or configuration.
With ``--json`` one JSON document (``"schema_version": 1``) goes to stdout; people read stderr.

This module owns the root group (its global options), the registration of every command and
group (each defined in its own module under repo_tool/cli/, none of which imports this one) and
``main``, the console-script entry point (pyproject.toml: ``repo_tool.cli.main:main``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from metadata_templates.locking import WAIT_ENV
from repo_tool import __version__
from repo_tool.cli.advisory import advisory_group
from repo_tool.cli.backup import backup, restore
from repo_tool.cli.ceremony import CEREMONY_GROUP
from repo_tool.cli.console import run
from repo_tool.cli.cpl import cpl
from repo_tool.cli.demo import demo_data
from repo_tool.cli.ingest import ingest, withdraw
from repo_tool.cli.init import init, rotate_keys
from repo_tool.cli.log import log_group
from repo_tool.cli.manufacturer import MANUFACTURER_COMMANDS, manufacturer
from repo_tool.cli.notes import notes
from repo_tool.cli.pilots import hold, release
from repo_tool.cli.provider import enrol_bundle, enrol_manufacturer
from repo_tool.cli.provider import provider as _provider_group
from repo_tool.cli.publish import publish, refresh
from repo_tool.cli.serve import serve
from repo_tool.cli.site import site
from repo_tool.cli.status import status
from repo_tool.cli.submit import keygen, submit
from repo_tool.cli.verify import verify
from repo_tool.cli.verify_bucket import verify_bucket


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cfl-repo")
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    envvar="CFL_REPO",
    help="Repository working directory (env CFL_REPO).",
)
@click.option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks on errors.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    envvar=WAIT_ENV,
    metavar="SECONDS",
    help=f"Wait up to SECONDS for the repository lock while another command holds it (env "
    f"{WAIT_ENV}; default 0: fail at once, naming it). Cron jobs pass it, e.g. "
    "cfl-repo --wait 900 --repo R ingest inbox/. See docs/operator.md, 'Two jobs at once'.",
)
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, verbose: int, wait: float) -> None:
    """Centralised Firmware Library: the provider's and manufacturers' repository tool.

    \b
    Provider:      init, cpl import, manufacturer add, ingest, publish, refresh, withdraw, rotate-keys,
                   status, site build, verify, serve
    Pilots:        release, hold (submit --pilot --release-at at the manufacturer)
    Recovery:      backup, restore, verify-bucket (S3 Object Lock)
    Release notes: notes custodian, notes grant
    Access:        supplier add|revoke|list, host nginx, audit, entitlements import|show
    Manufacturer:  keygen, submit, advisory submit
    Demo:          demo-data

    Every command exits 0 on success, 1 when something was rejected or failed verification,
    2 on usage or configuration errors. See docs/operator.md and docs/manufacturer.md.

    \b
    Two jobs at once: a command that changes the repository while another does exits 1 at once,
    naming it (command, PID, host, since); with --wait SECONDS it waits for it instead:
      cfl-repo --wait 900 --repo /srv/cfl/repo ingest /srv/cfl/inbox     # from cron
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)
    ctx.obj["repo"] = repo
    ctx.obj["wait"] = wait


# `cfl-repo --help` lists commands alphabetically (click's default), whatever the order here.
for _command in (
    init,
    cpl,
    manufacturer,
    ingest,
    publish,
    refresh,
    rotate_keys,
    withdraw,
    release,
    hold,
    status,
    site,
    verify,
    verify_bucket,
    serve,
    keygen,
    submit,
    advisory_group,
    notes,
    log_group,
    demo_data,
    backup,
    restore,
):
    cli.add_command(_command)


# ---- suppliers and access hook: the commands live in repo_tool/cli/access.py ----
def _add_access_commands() -> None:
    from repo_tool.cli.access import audit, host, supplier

    for command in (supplier, host, audit):
        cli.add_command(command)


_add_access_commands()
# ---- end of suppliers and access hook ----


# ---- entitlement by estate hook (issue 22): the commands live in repo_tool/cli/entitlements.py ----
def _add_entitlement_commands() -> None:
    from repo_tool.cli.entitlements import entitlements

    cli.add_command(entitlements)


_add_entitlement_commands()
# ---- end of entitlement by estate hook ----


def main() -> None:
    """Console-script entry point: the one place errors become exit codes (repo_tool/cli/console.py)."""
    run(cli, interrupted="nothing was committed by the interrupted step")


# Ceremonies live in repo_tool/cli/ceremony.py, the manufacturer key commands in
# repo_tool/cli/manufacturer.py.
cli.add_command(CEREMONY_GROUP)
for _command in MANUFACTURER_COMMANDS:
    manufacturer.add_command(_command)

# The online cfl-provider delegation (issue 13) lives in repo_tool/cli/provider.py.
cli.add_command(_provider_group)
cli.add_command(enrol_bundle)
manufacturer.add_command(enrol_manufacturer)
