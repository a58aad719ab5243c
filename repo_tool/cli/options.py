"""Options and helpers that more than one `cfl-repo` command module uses, defined once here.

The ``--proposal`` option and what a command does with it (write a targets ceremony proposal, or
report the change done), the proposal summary, reading public keys, writing a new file, and the
manufacturer's signers and their options (`submit`, `enrol`, `advisory submit`). Imports only repo_tool/cli/console.py among the
command line's modules, so every command module can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from securesystemslib.signer import Key, Signer

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import ConfigurationError
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import prompt_secret as _prompt_secret
from repo_tool.cli.console import read_input
from repo_tool.signing.keys import (
    SignerRef,
    load_signer,
    public_key_from_pem,
    signer_from_private_pem,
)


def _public_keys(paths: tuple[Path, ...], option: str) -> list[Key]:
    return [public_key_from_pem(read_input(p, option), source=f"{option} {p}") for p in paths]


def _write_new(path: Path, data: bytes, what: str) -> None:
    if path.exists():
        raise ConfigurationError(f"{what} {path}: exists already; choose another name")
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise ConfigurationError(f"{what} {path}: cannot write ({e.strerror})") from e


def _render_changes(lines: list[str]) -> None:
    for line in lines:
        _err(f"  {line}")


def _proposal_doc(path: Path, proposal: Any, changes: list[str]) -> dict[str, Any]:
    from repo_tool.ceremony.sign import eligible_keys

    return {
        "proposal": str(path),
        "role": proposal.role,
        "version": proposal.version,
        "signed_sha256": proposal.signed_sha256,
        "changes": changes,
        "eligible_keyids": sorted(eligible_keys(proposal)),
    }


def manufacturer_signer_options(
    key_help: str = "Private key PEM (repeat for a threshold).",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--key``, ``--signer`` and ``--signer-pubkey``: what ``manufacturer_signers`` reads."""
    options = [
        click.option(
            "--key",
            "key_files",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=key_help,
        ),
        click.option(
            "--signer",
            "signer_uris",
            multiple=True,
            help="Signer URI (hsm:, gcpkms:, ...) with --signer-pubkey; repeat for a threshold.",
        ),
        click.option(
            "--signer-pubkey",
            "signer_pubkeys",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Public PEM for each --signer, in order.",
        ),
    ]

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):  # decorators apply bottom-up; keep the listed order
            command = option(command)
        return command

    return apply


def manufacturer_signers(
    key_files: tuple[Path, ...], signer_uris: tuple[str, ...], signer_pubkeys: tuple[Path, ...]
) -> list[Signer]:
    """The manufacturer's signers for `submit` and `enrol`: private key files (a passphrase asked
    for when encrypted) and signer URIs, each with its public PEM.

    Raises:
        ConfigurationError: no key given, a --signer without its --signer-pubkey, or an
            unreadable or unusable key file.
    """
    if not key_files and not signer_uris:
        raise ConfigurationError("give --key PRIV.pem or --signer URI --signer-pubkey PUB.pem")
    if len(signer_uris) != len(signer_pubkeys):
        raise ConfigurationError(
            f"--signer: found {len(signer_uris)}, --signer-pubkey: found {len(signer_pubkeys)}; "
            "expected one public key per signer URI"
        )
    signers: list[Signer] = [
        signer_from_private_pem(
            read_input(p, "--key"),
            source=str(p),
            passphrase_prompt=lambda: _prompt_secret("passphrase"),
        )
        for p in key_files
    ]
    for uri, pub in zip(signer_uris, signer_pubkeys, strict=True):
        ref = SignerRef(
            public_key_from_pem(read_input(pub, "--signer-pubkey"), source=str(pub)), uri
        )
        signers.append(load_signer(ref, base=Path.cwd(), secrets_handler=_prompt_secret))
    return signers


# Every command that changes targets can run through a targets ceremony when its key is offline.
proposal_option = click.option(
    "--proposal",
    "proposal_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The targets key is offline: write a targets ceremony proposal instead of committing.",
)


def _proposal_or_done(proposal: Any, out: Path | None, as_json: bool, done: str) -> None:
    if proposal is not None and out is not None:
        from repo_tool.ceremony.sign import summary

        _write_new(out, proposal.to_bytes(), "--proposal")
        changes = summary(proposal)
        if as_json:
            _emit_json(_proposal_doc(out, proposal, changes))
        _err(f"wrote {out}: targets v{proposal.version}, changes:")
        _render_changes(changes)
        _err("next: targets key holders sign it; then `cfl-repo ceremony finish` and `publish`")
        return
    if as_json:
        _emit_json({"done": done})
    _err(f"{done}; run `cfl-repo publish`")
