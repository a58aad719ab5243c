"""`cfl-repo notes ...`: encrypted release notes, the custodian key and grants.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from metadata_templates.errors import CflError, ConfigurationError, RejectedInputError
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import prompt_secret as _prompt_secret
from repo_tool.cli.console import read_input, utc_now
from repo_tool.signing.keys import PASSPHRASE_ENV

_now = utc_now


@click.group()
def notes() -> None:
    """Encrypted release notes: the custodian key, and grants to organisations registered later."""


@notes.command("custodian")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The notes custodian's ECDSA P-256 public key (PEM); its private key stays offline (make it with `keygen --type ecdsa`).",
)
@click.option(
    "--yes",
    is_flag=True,
    help="Replace a published custodian key without asking (scripts); needed when stdin is no terminal.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the new key's thumbprint and the one it replaced as JSON on stdout.",
)
@click.pass_context
def notes_custodian(ctx: click.Context, public_key: Path, yes: bool, as_json: bool) -> None:
    """Publish the notes-custodian public key as target cfl/notes-custodian.json.

    Every release note a manufacturer submits from then on is also encrypted to it, so the provider
    can grant a note to an organisation registered later (`notes grant`). Run `publish` afterwards.

    Replacing a published key asks first, naming both keys by RFC 7638 thumbprint: notes deposited
    before stay encrypted to the old key only, so keep its private key to grant them. Without a
    terminal, pass --yes. The same key again changes nothing.

    \b
    Example:
      cfl-repo keygen custodian.pem --type ecdsa
      cfl-repo --repo R notes custodian --public-key custodian.pub.pem
      cfl-repo --repo R publish
    """
    from repo_tool.ops.notes_grant import custodian_change, set_custodian

    pem = read_input(public_key, "--public-key")
    repo = _open_repo(ctx)
    change = custodian_change(repo, pem)
    if change.unchanged:
        _err(f"notes custodian key {change.new} is already the staged one; nothing to change")
    else:
        if change.replaces:
            _err(
                f"replacing notes custodian key {change.current} with {change.new}; notes deposited "
                f"before stay encrypted to {change.current}: keep its private key to grant them"
            )
            _confirm_or_refuse("Replace the notes custodian key?", yes=yes)
        with repo.locked():
            set_custodian(repo, pem, now=_now(), replacing=change.current)
        _err(
            f"notes custodian key {change.new} staged as cfl/notes-custodian.json; next: cfl-repo publish"
        )
    if as_json:
        _emit_json(
            {
                "thumbprint": change.new,
                "replaced": change.current if change.replaces else None,
                "changed": not change.unchanged,
            }
        )


def _confirm_or_refuse(question: str, *, yes: bool) -> None:
    """Ask on a terminal before an irreversible change; without one, only ``--yes`` goes ahead.

    Raises:
        ConfigurationError: no terminal to ask on and no --yes.
        RejectedInputError: the operator answered no.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "confirmation: found stdin not a terminal, expected one to confirm; read the line above "
            "and pass --yes"
        )
    if not click.confirm(question, err=True, default=False):
        raise RejectedInputError("confirmation: found 'no', expected 'yes'; nothing was changed")


@notes.command("grant")
@click.argument("entity_id")
@click.option(
    "--custodian-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The custodian's P-256 private key PEM (a passphrase is asked for, or read from "
    f"{PASSPHRASE_ENV}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the grants as JSON on stdout.")
@click.pass_context
def notes_grant(ctx: click.Context, entity_id: str, custodian_key: Path, as_json: bool) -> None:
    """Grant ENTITY_ID every release note its User Roles entitle it to and it cannot read yet.

    For each such note the custodian key decrypts it in memory and re-encrypts it to that
    organisation alone, published as provider-signed target cfl/grants/ENTITY_ID/... (run `publish`
    afterwards). Nothing is written in plaintext. A revoked organisation gets no new grant (exit 1);
    what it could read before stays readable. Running it again grants only what is new.

    \b
    Example:
      cfl-repo --repo R notes grant 0011223344556677 --custodian-key custodian.pem
      cfl-repo --repo R publish
    """
    from metadata_templates.notes import pem_is_encrypted
    from repo_tool.ops.notes_grant import grant_notes, load_custodian_key
    from repo_tool.state.head import provider_signing_role

    pem = custodian_key.read_bytes()
    password = _prompt_secret("passphrase").encode() if pem_is_encrypted(pem) else None
    try:
        key = load_custodian_key(pem, password, f"--custodian-key {custodian_key}")
    except CflError as e:
        raise ConfigurationError(str(e)) from e
    repo = _open_repo(ctx)
    with repo.locked(), _counter("granting", enabled=not as_json) as progress:
        report = grant_notes(repo, entity_id, key, now=_now(), progress=progress)
    _err(
        f"{report.entity_id}: {len(report.granted)} note(s) granted, {len(report.already)} readable "
        "already"
        + (
            f"; staged {provider_signing_role(repo.head)} version {report.targets_version}; "
            "next: cfl-repo publish"
            if report.granted
            else ""
        )
    )
    if as_json:
        _emit_json(report.to_dict())


@contextlib.contextmanager
def _counter(label: str, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar fed ``(done, total)``, on a terminal only and never in --json mode."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
