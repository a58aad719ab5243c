"""`cfl-repo`: the provider's and manufacturers' command line. Parses, calls the library, renders.

Exit codes: 0 success, 1 something was rejected or failed verification, 2 usage or configuration.
With ``--json`` one JSON document (``"schema_version": 1``) goes to stdout; people read stderr.

This module owns the root group (its global options), the table of every command and group
(each defined in its own module under repo_tool/cli/, none of which imports this one) and
``main``, the console-script entry point (pyproject.toml: ``repo_tool.cli.main:main``).

Commands are imported when they run, not when the tool starts (issue 26): most command modules pull
in tuf, securesystemslib's signers (and with them boto3), jsonschema or Jinja2, which cost more
than a second on a loaded machine and which `cfl-repo --help` or `cfl-repo status` never needs.
``COMMANDS`` names where each command lives and keeps its short help, so the root's `--help`
lists them without importing any; tests/test_cli_lazy.py holds the table to the real commands.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import click

from metadata_templates.locking import WAIT_ENV
from repo_tool import __version__
from repo_tool.cli.console import run

# name -> ("module:attribute" of the click command, its short help exactly as click derives it
# from the command's docstring). `cfl-repo --help` lists commands alphabetically (click's default).
COMMANDS: dict[str, tuple[str, str]] = {
    "advisory": (
        "repo_tool.cli.advisory:advisory_group",
        "Security advisories: a manufacturer's signed notice that firmware in the field is vulnerable, which images fix it, and how bad it is (CVSS v3.1 or v4.0); its technical detail optionally encrypted to the entitled suppliers until a disclosure date.",
    ),
    "audit": (
        "repo_tool.cli.access:audit",
        "Report who downloaded which image from the host's ACCESS_LOG files, and flag downloads that were not entitled.",
    ),
    "backup": (
        "repo_tool.cli.backup:backup",
        "Back up the repository: configuration, state, blobs, event log, rejected bundles.",
    ),
    "ceremony": (
        "repo_tool.cli.ceremony:ceremony",
        "Change root or targets with offline keys held by separate people.",
    ),
    "cpl": (
        "repo_tool.cli.cpl:cpl",
        "The Central Products List: import it, and it is published as target cfl/cpl.json.",
    ),
    "demo-data": (
        "repo_tool.cli.demo:demo_data",
        "Write a coherent sample dataset: CPL (CSV and XLSX), GBCS images for three manufacturers, their declarations and a supplier estate.",
    ),
    "enrol": (
        "repo_tool.cli.provider:enrol_bundle",
        "Manufacturer: sign your empty role version 1, the enrolment bundle.",
    ),
    "entitlements": (
        "repo_tool.cli.entitlements:entitlements",
        "Entitlement by estate: the images each supplier's devices give it the right to.",
    ),
    "hold": (
        "repo_tool.cli.pilots:hold",
        "Hold the pilot image TARGET: it stays with its pilot suppliers past its release date, until `cfl-repo release TARGET`.",
    ),
    "host": (
        "repo_tool.cli.access:host",
        "Host configuration generated from the repository (today: nginx).",
    ),
    "ingest": (
        "repo_tool.cli.ingest:ingest",
        "Run the gateway on bundles (files, or inbox folders of *.cflb).",
    ),
    "init": (
        "repo_tool.cli.init:init",
        "Create a repository: configuration, top-level keys, version-1 root and targets.",
    ),
    "keygen": (
        "repo_tool.cli.submit:keygen",
        "Generate a key pair: PRIVATE_KEY (0600) and PRIVATE_KEY's .pub.pem beside it.",
    ),
    "log": (
        "repo_tool.cli.log:log_group",
        "The transparency log of every lodged event (docs/transparency.md).",
    ),
    "manufacturer": (
        "repo_tool.cli.manufacturer:manufacturer",
        "Register manufacturers: each signs its own images under its own delegated role mfr-<ID>.",
    ),
    "notes": (
        "repo_tool.cli.notes:notes",
        "Encrypted release notes: the custodian key, and grants to organisations registered later.",
    ),
    "provider": (
        "repo_tool.cli.provider:provider",
        "The online cfl-provider role: it signs every cfl/* document (CPL, withdrawals, supplier registry, suspensions, release-note grants), so routine work never needs the offline targets key.",
    ),
    "outcomes": (
        "repo_tool.cli.outcomes:outcomes",
        "Delivery outcomes: suppliers' signed counts per image, combined and published as cfl/outcomes.json; failing firmware is held by itself.",
    ),
    "publish": (
        "repo_tool.cli.publish:publish",
        "Write the static tree: blobs, manufacturer roles, targets, snapshot, timestamp.json last.",
    ),
    "refresh": (
        "repo_tool.cli.publish:refresh",
        "Re-sign roles the provider holds that are past half their validity, then publish.",
    ),
    "release": (
        "repo_tool.cli.pilots:release",
        "Release the pilot image TARGET to every entitled supplier now: before its release date, or after a hold.",
    ),
    "restore": (
        "repo_tool.cli.backup:restore",
        "Restore a backup into a new repository folder, checking every file's SHA-256.",
    ),
    "rotate-keys": (
        "repo_tool.cli.init:rotate_keys",
        "Add or revoke keys of a top-level ROLE (or change its threshold) through a new root version, signed by the current root keys so every client follows it.",
    ),
    "serve": (
        "repo_tool.cli.serve:serve",
        "Serve a published tree over HTTP for trying it out (use nginx or object storage in production).",
    ),
    "site": (
        "repo_tool.cli.site:site",
        "The public website: what firmware exists (no images, no release notes).",
    ),
    "status": (
        "repo_tool.cli.status:status",
        "What is staged: versions, expiry dates, manufacturers, images, and what publish would change.",
    ),
    "submit": (
        "repo_tool.cli.submit:submit",
        "Sign a deposit: add IMAGE_FILE to your role (one version above the published one) and write a bundle for the provider's `ingest`.",
    ),
    "supplier": (
        "repo_tool.cli.access:supplier",
        "The supplier registry: DCC User organisations allowed to download images (BR05).",
    ),
    "verify": (
        "repo_tool.cli.verify:verify",
        "Independently check a published tree: every signature, delegation, version, blob length and hash, and that snapshot and timestamp agree.",
    ),
    "verify-bucket": (
        "repo_tool.cli.verify_bucket:verify_bucket",
        "Check that every object under s3://BUCKET/PREFIX that must be immutable (blobs, root versions, full log tiles and index files) is held by S3 Object Lock in compliance mode, in every version, not hidden by a delete marker and never written over. timestamp.json, the site, the log checkpoint, partial tiles and snapshot and role versions change or go by design and are not checked.",
    ),
    "withdraw": (
        "repo_tool.cli.ingest:withdraw",
        "Withdraw an image: an explicit, recorded event.",
    ),
}


def _assemble_manufacturer(group: click.Command) -> None:
    """The key commands of `manufacturer` live beside it, and `enrol` with the provider's commands."""
    from repo_tool.cli.manufacturer import MANUFACTURER_COMMANDS
    from repo_tool.cli.provider import enrol_manufacturer

    assert isinstance(group, click.Group)
    for command in (*MANUFACTURER_COMMANDS, enrol_manufacturer):
        group.add_command(command)


# Groups whose subcommands are defined in more than one module, completed when first loaded.
_ASSEMBLE = {"manufacturer": _assemble_manufacturer}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is looked up.

    The root `--help` renders the short help from ``COMMANDS`` through a stand-in command, so the
    text (and its truncation to the terminal's width) is click's own, byte for byte.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module_name, _, attribute = COMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        if cmd_name in _ASSEMBLE:
            _ASSEMBLE[cmd_name](command)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        # The same width rule as click.Group.format_commands: three times the default spacing.
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            shown = loaded if loaded is not None else click.Command(name, help=COMMANDS[name][1])
            if not shown.hidden:
                rows.append((name, shown.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def main() -> None:
    """Console-script entry point: the one place errors become exit codes (repo_tool/cli/console.py)."""
    run(cli, interrupted="nothing was committed by the interrupted step")
