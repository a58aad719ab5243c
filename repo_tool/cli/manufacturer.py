"""`cfl-repo manufacturer ...`: registering manufacturers and changing their keys and standing.

Owns the group, `manufacturer add`, and the key commands (rotate-key, retire-keys, suspend, resume,
listed in ``MANUFACTURER_COMMANDS``) that repo_tool/cli/main.py adds to it beside `enrol` from
repo_tool/cli/provider.py. Parse, call the library, render.
"""

from __future__ import annotations

from pathlib import Path

import click

from metadata_templates import identifiers
from metadata_templates.errors import ConfigurationError
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now
from repo_tool.cli.options import _proposal_or_done, _public_keys, proposal_option
from repo_tool.signing.keys import public_key_from_pem

_now = utc_now


@click.group()
def manufacturer() -> None:
    """Register manufacturers: each signs its own images under its own delegated role mfr-<ID>."""


@manufacturer.command("add")
@click.argument("manufacturer_id")
@click.option("--name", required=True, help="The manufacturer's name (shown on the website).")
@click.option(
    "--key",
    "key_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key PEM (Ed25519 or ECDSA P-256); repeat for several.",
)
@click.option(
    "--threshold",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Signatures each role version needs.",
)
@click.pass_context
def manufacturer_add(
    ctx: click.Context, manufacturer_id: str, name: str, key_files: tuple[Path, ...], threshold: int
) -> None:
    """Register MANUFACTURER_ID (4 hex digits, the ZigBee manufacturer code) and its public keys."""
    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "MANUFACTURER_ID")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    from repo_tool.ops.manufacturers import add_manufacturer

    keys = [public_key_from_pem(p.read_bytes(), source=str(p)) for p in key_files]
    repo = _open_repo(ctx)
    with repo.locked():
        record = add_manufacturer(repo, mfr, name, keys, threshold, now=_now())
    _err(
        f"registered {mfr} ({name}) with {len(record.keys)} key(s), threshold {threshold}; its role mfr-{mfr} "
        "is delegated when its first deposit is accepted"
    )


def _manufacturer_id(value: str) -> str:
    try:
        return identifiers.manufacturer_id(value, "ID")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e


@click.command("rotate-key")
@click.argument("manufacturer_id")
@click.option(
    "--add",
    "added",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PUB.pem",
    help="The manufacturer's new public key (repeat).",
)
@click.option(
    "--remove", "removed", multiple=True, metavar="KEYID", help="A key ID (or prefix) to retire."
)
@click.option("--threshold", type=click.IntRange(1), help="The new threshold (default: unchanged).")
@proposal_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def rotate_key(
    ctx: click.Context,
    manufacturer_id: str,
    added: tuple[Path, ...],
    removed: tuple[str, ...],
    threshold: int | None,
    proposal_out: Path | None,
    as_json: bool,
) -> None:
    """Add or retire a manufacturer's keys (lost, expired or compromised).

    From now on the gateway accepts only the new key set. The published delegation keeps a retired
    key until the manufacturer re-signs its role (`cfl-repo submit --renew --key NEW.pem`), so its
    lodged images stay verifiable; then `cfl-repo manufacturer retire-keys ID` drops it.

    \b
      cfl-repo --repo R manufacturer rotate-key 121D --add new.pub.pem --remove 3f2a9c1d
      cfl-repo --repo R manufacturer rotate-key 121D --add new.pub.pem --remove 3f2a9c1d \\
          --proposal targets-v9.json          # targets key offline: a targets ceremony
    """
    from repo_tool.ops.manufacturer_keys import ALREADY
    from repo_tool.ops.manufacturer_keys import rotate_key as do_rotate

    mfr = _manufacturer_id(manufacturer_id)
    keys = _public_keys(added, "--add")
    repo = _open_repo(ctx)
    with repo.locked():
        proposal = do_rotate(
            repo,
            mfr,
            add=keys,
            remove=removed,
            threshold=threshold,
            now=_now(),
            ceremony=proposal_out is not None,
        )
    if proposal == ALREADY:
        # Name the keys: the operator checks that the one meant to go is not among them.
        record = repo.head.manufacturers[mfr]
        if as_json:
            _emit_json(
                {"done": "already", "keyids": sorted(record.keys), "threshold": record.threshold}
            )
        _err(
            f"{mfr} has these keys already ({sorted(k[:8] for k in record.keys)}, threshold "
            f"{record.threshold}); nothing to do"
        )
        return
    _proposal_or_done(proposal, proposal_out, as_json, f"rotated the keys of {mfr}")


@click.command("retire-keys")
@click.argument("manufacturer_id")
@proposal_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def retire_keys(
    ctx: click.Context, manufacturer_id: str, proposal_out: Path | None, as_json: bool
) -> None:
    """Drop retired keys from the published delegation, once the manufacturer's role is re-signed
    with its new keys (refused before, so no lodged image becomes unverifiable)."""
    from repo_tool.ops.manufacturer_keys import retire_keys as do_retire

    mfr = _manufacturer_id(manufacturer_id)
    repo = _open_repo(ctx)
    with repo.locked():
        proposal = do_retire(repo, mfr, now=_now(), ceremony=proposal_out is not None)
    _proposal_or_done(proposal, proposal_out, as_json, f"retired the old keys of {mfr}")


@click.command("suspend")
@click.argument("manufacturer_id")
@click.option("--reason", required=True, help="Why (recorded and published).")
@click.pass_context
def suspend(ctx: click.Context, manufacturer_id: str, reason: str) -> None:
    """Suspend a manufacturer: its new deposits are rejected (`manufacturer-suspended`).

    Its delegation and lodged images stay: removing them would silently hide what was lodged. A
    renewal (same images, re-signed) is still accepted, so a key rotation can complete. The list of
    suspensions is published as `cfl/suspensions.json`, signed online by cfl-provider (in a
    repository without it: by targets when its key is online, otherwise at the next targets
    ceremony).
    """
    from repo_tool.ops.manufacturer_keys import suspend as do_suspend

    mfr = _manufacturer_id(manufacturer_id)
    repo = _open_repo(ctx)
    with repo.locked():
        published = do_suspend(repo, mfr, reason, now=_now())
    from repo_tool.state.head import provider_signing_role

    where = (
        f"published in {provider_signing_role(repo.head)}"
        if published
        else "targets key offline: publish via a targets ceremony"
    )
    _err(f"suspended {mfr} ({where}); run `cfl-repo publish`")


@click.command("resume")
@click.argument("manufacturer_id")
@click.option("--reason", required=True, help="Why the suspension ends (recorded).")
@click.pass_context
def resume(ctx: click.Context, manufacturer_id: str, reason: str) -> None:
    """Lift a manufacturer's suspension (a recorded event)."""
    from repo_tool.ops.manufacturer_keys import resume as do_resume

    mfr = _manufacturer_id(manufacturer_id)
    repo = _open_repo(ctx)
    with repo.locked():
        do_resume(repo, mfr, reason, now=_now())
    _err(f"resumed {mfr}; run `cfl-repo publish`")


MANUFACTURER_COMMANDS: tuple[click.Command, ...] = (rotate_key, retire_keys, suspend, resume)
