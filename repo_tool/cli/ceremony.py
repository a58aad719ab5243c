"""`cfl-repo ceremony ...`: changing root or targets with offline keys held by separate people.

`start` writes a proposal, each key holder `sign`s it on their own machine, `finish` checks the
signatures and commits. Registered on the root group by repo_tool/cli/main.py (``CEREMONY_GROUP``);
parse, call the library, render.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from securesystemslib.signer import CryptoSigner, Signer

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import (
    CflError,
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
)
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import prompt_secret as _prompt_secret
from repo_tool.cli.console import read_input, utc_now
from repo_tool.cli.options import _proposal_doc, _public_keys, _render_changes, _write_new
from repo_tool.ops.cpl_import import import_cpl as import_cpl_op
from repo_tool.ops.withdraw import withdraw as withdraw_op
from repo_tool.signing.keys import (
    EncryptedFileSigner,
    SignerRef,
    load_signer,
    public_key_from_pem,
    signer_from_private_pem,
)

SIGNATURE_SUFFIX = ".sig.json"
logger = logging.getLogger("repo_tool")
_now = utc_now


def _read_proposal(path: Path) -> Any:
    from repo_tool.ceremony.proposal import Proposal

    return Proposal.from_bytes(read_input(path, "PROPOSAL"), source=str(path))


@click.group()
def ceremony() -> None:
    """Change root or targets with offline keys held by separate people.

    \b
    1. at the repository:  cfl-repo --repo R ceremony start root --out root-v2.json --add-key new.pub.pem
    2. at each key holder: cfl-repo ceremony sign root-v2.json --signer hsm: --public-key mine.pub.pem
    3. at the repository:  cfl-repo --repo R ceremony finish root-v2.json root-v2.*.sig.json

    Each holder sees what changes (keys, thresholds, delegations, expiries) before signing and writes
    a detached signature file beside the proposal, so holders sign in parallel. `finish` checks the
    signatures with python-tuf (root: the current and the new root's thresholds), refuses a proposal
    the repository has moved past, commits, and stages snapshot and timestamp; then `publish`.
    """


@ceremony.command("start")
@click.argument("role", metavar="ROLE", type=click.Choice(["root", "targets"]))
@click.option(
    "--out",
    "out_file",
    required=True,
    metavar="PROPOSAL",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Proposal file to write (hand it to the key holders).",
)
@click.option(
    "--keys-of",
    type=click.Choice(["root", "targets", "snapshot", "timestamp"]),
    help="root only: whose keys --add-key/--remove-key/--threshold change (default root).",
)
@click.option(
    "--add-key",
    "add_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PUB.pem",
    help="root only: a public key to add (repeat).",
)
@click.option(
    "--uri",
    "uris",
    multiple=True,
    metavar="URI",
    help="Signer URI the repository uses for each --add-key, in order (online roles: hsm:, "
    "encfile:...). Without it an added key is a key holder's offline key.",
)
@click.option(
    "--remove-key",
    "remove_keys",
    multiple=True,
    metavar="KEYID",
    help="root only: a key ID or unique prefix to revoke (repeat).",
)
@click.option("--threshold", type=click.IntRange(1), help="root only: the new threshold.")
@click.option(
    "--cpl",
    "cpl_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="targets only: import this CPL (CSV or XLSX) in the ceremony, as `cpl import` would.",
)
@click.option(
    "--withdraw",
    "withdraw_target",
    metavar="TARGET",
    help="targets only: withdraw this image in the ceremony, as `withdraw` would (with --reason).",
)
@click.option("--reason", help="Why the image is withdrawn (with --withdraw).")
@click.option(
    "--expires-in",
    type=click.IntRange(1, 3650),
    help="Days the new version is valid (default: the policy's period for the role).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the proposal's summary as JSON.")
@click.pass_context
def ceremony_start(
    ctx: click.Context,
    role: str,
    out_file: Path,
    keys_of: str | None,
    add_keys: tuple[Path, ...],
    uris: tuple[str, ...],
    remove_keys: tuple[str, ...],
    threshold: int | None,
    cpl_file: Path | None,
    withdraw_target: str | None,
    reason: str | None,
    expires_in: int | None,
    as_json: bool,
) -> None:
    """Write a PROPOSAL for the next version of ROLE (root or targets); changes nothing.

    \b
    Add a root key holder and raise the threshold:
      cfl-repo --repo R ceremony start root --add-key carol.pub.pem --threshold 2 --out root-v2.json
    Replace a compromised timestamp key (root keys offline):
      cfl-repo --repo R ceremony start root --keys-of timestamp --add-key ts2.pub.pem \\
          --uri encfile:/etc/cfl/ts2.pem --remove-key 3f2a9c1d --out root-v3.json
    Re-sign targets before it expires (the 90-day refresh):
      cfl-repo --repo R ceremony start targets --out targets-v7.json
    Import a CPL or withdraw an image while the targets key is offline:
      cfl-repo --repo R ceremony start targets --cpl CPL.xlsx --out targets-v8.json
      cfl-repo --repo R ceremony start targets --withdraw 121D/ESME-... --reason "bricks 1112" --out t.json
    """
    from repo_tool.ceremony.sign import summary
    from repo_tool.ceremony.start import KeyChange, propose_root, propose_targets

    if uris and len(uris) != len(add_keys):
        raise ConfigurationError(
            f"--uri: found {len(uris)}, expected one per --add-key ({len(add_keys)}) or none"
        )
    if (withdraw_target is None) != (reason is None):
        raise ConfigurationError(
            "--withdraw and --reason: found one without the other, expected both"
        )
    if role == "root" and (cpl_file or withdraw_target):
        raise ConfigurationError(
            "--cpl/--withdraw: found them with `root`, expected them with `targets` (targets "
            "holds the CPL and the withdrawals)"
        )
    key_options = bool(add_keys or remove_keys or threshold is not None or keys_of)
    if role == "targets" and key_options:
        raise ConfigurationError(
            "--add-key/--remove-key/--threshold/--keys-of: found them with `targets`, expected them "
            "with `root` (the targets keys live in root: ceremony start root --keys-of targets)"
        )
    keys = _public_keys(add_keys, "--add-key")
    repo = _open_repo(ctx)
    now = _now()
    # One consistent state for the whole proposal: no commit lands while it is read (the
    # routine operations a targets proposal runs commit nothing here).
    with repo.locked():
        days = timedelta(days=expires_in) if expires_in else repo.config.policy.expiry(role)
        if role == "root":
            change = KeyChange(
                keys_of=keys_of or "root",
                add=tuple(keys),
                remove=remove_keys,
                threshold=threshold,
                uris={k.keyid: u for k, u in zip(keys, uris, strict=True)} if uris else {},
            )
            proposal = propose_root(repo.root(), change, now=now, expires_in=days)
        else:
            from repo_tool.ops.ceremony import capture_targets_change
            from repo_tool.ops.manufacturer_keys import pending_targets_change

            edits = [pending_targets_change(repo)]
            if cpl_file is not None:
                from metadata_templates.custom import format_timestamp
                from repo_tool.intake.cpl import read_cpl

                doc = read_cpl(cpl_file, imported=format_timestamp(now))
                edits.append(
                    capture_targets_change(repo, lambda: import_cpl_op(repo, doc, now=now))
                )
            if withdraw_target is not None and reason is not None:
                target, why = withdraw_target, reason
                edits.append(
                    capture_targets_change(repo, lambda: withdraw_op(repo, target, why, now=now))
                )

            def apply_edits(targets: Any) -> None:
                for edit in edits:
                    edit(targets)

            proposal = propose_targets(
                repo.root(), repo.targets(), now=now, expires_in=days, change=apply_edits
            )
    _write_new(out_file, proposal.to_bytes(), "--out")
    changes = summary(proposal)
    if as_json:
        _emit_json(_proposal_doc(out_file, proposal, changes))
    else:
        _err(f"wrote {out_file}: {role} v{proposal.version}, changes:")
        _render_changes(changes)
        _err(f"next: each key holder runs `cfl-repo ceremony sign {out_file} --signer URI`")


def _holder_signer(uri: str, public_key_file: Path | None) -> Signer:
    """The key holder's signer: any securesystemslib URI with its public key; for a key file the
    public key can be derived from the private one."""
    if public_key_file is not None:
        ref = SignerRef(
            public_key_from_pem(
                read_input(public_key_file, "--public-key"), source=str(public_key_file)
            ),
            uri,
        )
        return load_signer(ref, base=Path.cwd(), secrets_handler=_prompt_secret)
    scheme, _, path = uri.partition(":")
    if scheme in (CryptoSigner.SCHEME, EncryptedFileSigner.SCHEME):
        return signer_from_private_pem(
            read_input(Path(path), "--signer"),
            source=uri,
            passphrase_prompt=lambda: _prompt_secret("passphrase"),
        )
    raise ConfigurationError(
        f"--public-key: found none for {scheme}: signer, expected the key's public PEM "
        "(only file2:/encfile: keys can derive it)"
    )


@ceremony.command("sign")
@click.argument(
    "proposal_file", metavar="PROPOSAL", type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--signer", "uri", required=True, help="Your key: file2:PATH, encfile:PATH, hsm:...")
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your public key PEM (required for hsm: and KMS URIs).",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signature file (default: PROPOSAL's name + .<keyid>.sig.json beside it).",
)
@click.option(
    "--against",
    "known_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Metadata you know is current (the published N.root.json, and N.targets.json for a targets "
    "proposal): refuse a proposal built on anything else.",
)
@click.option("--yes", is_flag=True, help="Sign without asking (scripts); read the summary first.")
@click.option("--json", "as_json", is_flag=True, help="Print what was signed as JSON.")
def ceremony_sign(
    proposal_file: Path,
    uri: str,
    public_key_file: Path | None,
    out_file: Path | None,
    known_files: tuple[Path, ...],
    yes: bool,
    as_json: bool,
) -> None:
    """Review and sign a PROPOSAL on your own machine (no repository needed).

    The summary is recomputed from the proposal's old and new metadata, not taken from whoever made
    it. Hand the signature file back to the operator; it contains no secret.

    \b
      cfl-repo ceremony sign root-v2.json --signer file2:/media/usb/alice.pem \\
          --against published/metadata/1.root.json
      CFL_HSM_PIN=... cfl-repo ceremony sign root-v2.json --signer hsm: --public-key bob.pub.pem
    """
    from tuf.api.metadata import Metadata

    from repo_tool.ceremony.sign import check_against, sign_proposal, summary

    proposal = _read_proposal(proposal_file)
    for known_file in known_files:
        try:
            known: Metadata[Any] = Metadata.from_bytes(read_input(known_file, "--against"))
        except CflError:
            raise
        except Exception as e:  # python-tuf's DeserializationError and friends
            raise RejectedInputError(
                f"--against {known_file}: found no TUF metadata ({e}), expected a root or targets file"
            ) from e
        check_against(proposal, known, source=str(known_file))
    if not known_files:
        _err(
            "warning: the changes below compare with the proposal's own copy of the current state; "
            "pass --against PUBLISHED/metadata/N.root.json to check it"
        )
    changes = summary(proposal)
    _err(f"{proposal_file}: {proposal.role} v{proposal.version} proposed {proposal.created}:")
    _render_changes(changes)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigurationError(
                "confirmation: found stdin not a terminal, expected one to confirm; review the "
                "summary and pass --yes"
            )
        if not click.confirm("Sign this change?", err=True, default=False):
            raise RejectedInputError("confirmation: found 'no', expected 'yes'; nothing was signed")
    signer = _holder_signer(uri, public_key_file)
    sig_file = sign_proposal(proposal, signer)
    keyid = sig_file.signature.keyid
    target = out_file or proposal_file.with_name(
        f"{proposal_file.name.removesuffix('.json')}.{keyid[:8]}{SIGNATURE_SUFFIX}"
    )
    try:
        atomic_write_bytes(target, sig_file.to_bytes())
    except OSError as e:
        raise UnavailableError(f"--out {target}: cannot write ({e.strerror})") from e
    if as_json:
        _emit_json(
            {
                "signature": str(target),
                "keyid": keyid,
                "role": proposal.role,
                "version": proposal.version,
            }
        )
    _err(f"wrote {target}: signature by {keyid[:8]}; return it to the repository operator")


@ceremony.command("finish")
@click.argument(
    "proposal_file", metavar="PROPOSAL", type=click.Path(dir_okay=False, path_type=Path)
)
@click.argument(
    "signature_files",
    nargs=-1,
    metavar="[SIGNATURE]...",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def ceremony_finish(
    ctx: click.Context, proposal_file: Path, signature_files: tuple[Path, ...], as_json: bool
) -> None:
    """Verify the SIGNATURE files and commit the PROPOSAL; then run `cfl-repo publish`.

    Without SIGNATURE arguments the files PROPOSAL-name.*.sig.json beside it are used. Safe to run
    again: after a crash, or when already finished, it completes the same change.
    """
    from repo_tool.ceremony.proposal import SignatureFile
    from repo_tool.ops.ceremony import finish_ceremony

    proposal = _read_proposal(proposal_file)
    files = list(signature_files) or sorted(
        proposal_file.parent.glob(f"{proposal_file.name.removesuffix('.json')}.*{SIGNATURE_SUFFIX}")
    )
    signatures = [
        (str(p), SignatureFile.from_bytes(read_input(p, "SIGNATURE"), source=str(p))) for p in files
    ]
    repo = _open_repo(ctx)
    with repo.locked():
        outcome = finish_ceremony(repo, proposal, signatures, now=_now())
    if as_json:
        _emit_json(
            {
                "role": outcome.role,
                "version": outcome.version,
                "already_finished": outcome.already_finished,
                "signatures": [p for p, _ in signatures],
                "notes": outcome.notes,
            }
        )
    state = "was committed already" if outcome.already_finished else "committed"
    _err(f"{outcome.role} v{outcome.version} {state}; run `cfl-repo publish`")
    for note in outcome.notes:
        _err(f"warning: {note}")


CEREMONY_GROUP: click.Group = ceremony
