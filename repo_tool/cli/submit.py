"""`cfl-repo keygen` and `cfl-repo submit`: the manufacturer's side, with no repository.

`keygen` makes a key pair; `submit` signs a deposit, a renewal or a bin split into a bundle for the
provider's `ingest`. Registered on the root group by repo_tool/cli/main.py; parse, call the
library, render.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from metadata_templates import identifiers
from metadata_templates.custom import CustomMetadataError, PilotTerms, parse_date
from metadata_templates.errors import ConfigurationError
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence

    from securesystemslib.signer import Signer

    from repo_tool.notes.recipient_age import RecentRecipient, RecipientAgeRule
    from repo_tool.submit.auto_bins import AutoSplit
    from repo_tool.verify.published import PublishedLibrary
    from repo_tool.verify.sources import Reader
from repo_tool.cli.options import manufacturer_signer_options
from repo_tool.signing.keys import KEY_TYPES, PASSPHRASE_ENV, write_keypair
from repo_tool.signing.secrets import environment_secret

_now = utc_now


@click.command()
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--type", "key_type", type=click.Choice(KEY_TYPES), default="ed25519", show_default=True
)
@click.option(
    "--encrypt/--no-encrypt",
    default=True,
    show_default=True,
    help=f"Encrypt the private key with a passphrase (prompt, or {PASSPHRASE_ENV}).",
)
def keygen(private_key: Path, key_type: str, encrypt: bool) -> None:
    """Generate a key pair: PRIVATE_KEY (0600) and PRIVATE_KEY's .pub.pem beside it. Give the public
    PEM to the provider (manufacturer add / init --key); keep the private one offline."""
    passphrase = None
    if encrypt:
        # The variable, or the credential a unit or a setup shell names (repo_tool/signing/secrets.py).
        passphrase = environment_secret(PASSPHRASE_ENV) or _confirm_passphrase()
    _key, uri = write_keypair(private_key, key_type, passphrase=passphrase)
    _err(
        f"wrote {private_key} and {private_key.with_name(private_key.stem + '.pub.pem')}; signer URI: {uri}"
    )


def _confirm_passphrase() -> str:
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"--encrypt needs a passphrase: set {PASSPHRASE_ENV} or run on a terminal"
        )
    return str(click.prompt("New passphrase", hide_input=True, confirmation_prompt=True, err=True))


@click.command()
@click.argument(
    "image_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--manufacturer", "manufacturer_id", required=True, help="Your manufacturer ID (4 hex digits)."
)
@click.option(
    "--renew",
    is_flag=True,
    help="No image: re-sign your published role with a later expiry (run yearly; roles live 365 days).",
)
@click.option(
    "--split-bins",
    "split_bits",
    type=click.IntRange(1, 16),
    metavar="BITS",
    help="No image: split your role into 2**BITS hash bins (TAP 15), or grow to more bins, now. "
    "Not needed: a deposit splits and grows your bins by itself (--auto-bins).",
)
@click.option(
    "--auto-bins/--no-auto-bins",
    default=True,
    show_default=True,
    help="With IMAGE_FILE: when your role passes the contract's sizes (more than 8 images "
    "unsplit; bins whose average passes the growth size), also write OUT's -split.cflb "
    "bundle, which the provider ingests first. --no-auto-bins: the deposit alone.",
)
@manufacturer_signer_options()
@click.option(
    "--cpl-entry",
    "cpl_entries",
    multiple=True,
    help="CPL Entry ID the image is for (repeat; required with IMAGE_FILE).",
)
@click.option(
    "--reason",
    type=click.Choice(["compliance", "security"]),
    help="Why the image exists (required with IMAGE_FILE).",
)
@click.option(
    "--advisory", "advisories", multiple=True, help="Advisory ID (required for security; repeat)."
)
@click.option(
    "--release-notes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Release notes (text) to encrypt here to the suppliers entitled to the image's device type and "
    "the provider's notes custodian; the plaintext never leaves this machine.",
)
@click.option(
    "--pilot",
    "pilots",
    multiple=True,
    metavar="ENTITY_ID",
    help="A pilot supplier's Entity ID (repeat; needs --release-at): until the release date only "
    "these registered suppliers may fetch the image, and no one else's client offers it.",
)
@click.option(
    "--release-at",
    metavar="YYYY-MM-DD",
    help="With --pilot: the UTC date the image is released to every entitled supplier (after "
    "today, at most 365 days ahead). The provider may release it earlier or hold it longer.",
)
@click.option(
    "--allow-recent",
    "allow_recent",
    multiple=True,
    metavar="ENTITY_ID",
    help="Encrypt the release notes to this organisation although it registered less than "
    f"{DEFAULT_POLICY.min_recipient_age_days} days ago (repeat for several). Confirm it with the "
    "provider by another channel first: a new registration is what a stolen provider key adds. "
    "Without it, a terminal asks; a script is refused (exit 1).",
)
@click.option(
    "--from", "source", required=True, help="The published library: a folder or an http(s):// URL."
)
@click.option(
    "--root",
    "root_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The library's root you trust (default: trust the source's 1.root.json on first use).",
)
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bundle file to write (*.cflb).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to keep a copy of the published CPL (checked against its signed hash on every "
    "use), so the next deposit against the same CPL does not download it and parses only the "
    "entries it declares (default: $CFL_REPO_CACHE, else ~/.cache/cfl-repo). Safe to delete at "
    "any time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what the bundle holds on stdout.")
def submit(
    image_file: Path | None,
    manufacturer_id: str,
    renew: bool,
    split_bits: int | None,
    auto_bins: bool,
    key_files: tuple[Path, ...],
    signer_uris: tuple[str, ...],
    signer_pubkeys: tuple[Path, ...],
    cpl_entries: tuple[str, ...],
    reason: str | None,
    advisories: tuple[str, ...],
    release_notes: Path | None,
    pilots: tuple[str, ...],
    release_at: str | None,
    allow_recent: tuple[str, ...],
    source: str,
    root_file: Path | None,
    out_file: Path,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Sign a deposit: add IMAGE_FILE to your role (one version above the published one) and write a
    bundle for the provider's `ingest`. With --renew and no IMAGE_FILE: re-sign the role with a later
    expiry and the same images.

    \b
    Hash bins, automatic: a deposit that would take your role past 8 images first splits it into
    hash bins, and one into bins grown past their size first doubles them. Either writes a second
    bundle beside OUT (121D.cflb gets 121D-split.cflb); hand both to the provider, whose ingest of
    the folder takes the split first. Each deposit then re-signs only the bin its image goes to;
    --renew re-signs the bins and role near expiry. See docs/manufacturer.md, "Hash bins".
      cfl-repo submit fw9.ota --manufacturer 121D --key k.pem --cpl-entry CPL-000109 \\
        --reason compliance --from https://cfl.example/ --root root.json --out out/121D-9.cflb
      # may also write out/121D-9-split.cflb; upload the folder out/

    \b
    Pilots: --pilot ENTITY_ID (repeat) --release-at YYYY-MM-DD deposits the image for those
    suppliers only until that date (signed in custom.cfl.pilot), e.g.
      cfl-repo submit fw.ota --manufacturer 121D --key acme.pem --cpl-entry CPL-000123 \\
          --reason compliance --pilot 00000000000000A1 --release-at 2026-09-01 \\
          --from https://cfl.example.org --root root.json --out fw.cflb
    See docs/manufacturer.md, "Pilots".

    \b
    Release notes are encrypted only to organisations registered at least 14 days ago
    (policy.min_recipient_age_days); a newer one is named and refused (exit 1) unless you accept it:
      cfl-repo submit fw.ota --manufacturer 121D --key k.pem --cpl-entry CPL-000105 \\
        --reason compliance --release-notes notes.txt --allow-recent 5555666677778888 \\
        --from https://cfl.example/ --root root.json --out 121D.cflb
    See docs/manufacturer.md, "Release notes"."""
    from repo_tool.cli.options import manufacturer_signers
    from repo_tool.intake.bundle import BUNDLE_SUFFIX, Declaration, write_bundle
    from repo_tool.submit.deposit import (
        build_renewal,
        build_submission,
        load_source_library,
        read_source_root,
        source_reader,
    )

    if (renew or split_bits is not None) == (image_file is not None) or (
        renew and split_bits is not None
    ):
        raise ConfigurationError(
            "give IMAGE_FILE for a deposit, or --renew or --split-bins BITS without one"
        )
    if image_file is not None and (not cpl_entries or reason is None):
        raise ConfigurationError("a deposit needs --cpl-entry (at least one) and --reason")
    pilot = _pilot_terms(pilots, release_at, deposit=image_file is not None)
    if allow_recent and release_notes is None:
        raise ConfigurationError(
            "--allow-recent: found without --release-notes, expected both together"
        )
    allowed = _allowed_recent(allow_recent)

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "--manufacturer")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if out_file.suffix != BUNDLE_SUFFIX:
        raise ConfigurationError(
            f"--out: found {out_file.name!r}, expected a name ending in {BUNDLE_SUFFIX}"
        )
    signers = manufacturer_signers(key_files, signer_uris, signer_pubkeys)
    read = source_reader(source)  # errors name --from and the source
    if root_file is not None:
        root_bytes = root_file.read_bytes()
    else:
        root_bytes = read_source_root(source, read)
        _err("warning: no --root given; trusting the source's 1.root.json on first use")
    now = _now()
    rule = _recipient_rule(allowed, now)
    # Verify only what this submit signs on top of (repo_tool/submit/scope.py).
    from repo_tool.intake.cpl_cache import CplCache, default_cache_dir
    from repo_tool.submit.scope import load_for_deposit, manufacturer_roles

    image = image_file.read_bytes() if image_file is not None else None
    if image is None:
        library = load_source_library(
            source, read, root_bytes, now=now, wanted=manufacturer_roles(mfr)
        )
    else:
        library = load_for_deposit(
            source,
            read,
            root_bytes,
            now=now,
            manufacturer_id=mfr,
            image=image,
            cpl_entry_ids=cpl_entries,
            with_notes=release_notes is not None,
            cpl_cache=CplCache(cache_dir or default_cache_dir(os.environ)),
        )
    auto = None
    if image is not None and auto_bins:
        deposit = (image, cpl_entries, release_notes is not None)
        auto = _auto_split(mfr, signers, library, deposit, (source, read, root_bytes), now)
        if auto is not None:
            library = auto.library
    if split_bits is not None:
        from repo_tool.submit.bins import build_split
        from repo_tool.submit.deposit import Submission

        bundle, version = build_split(
            manufacturer_id=mfr, bit_length=split_bits, signers=signers, library=library, now=now
        )
        submission = Submission(bundle=bundle, role_version=version)
    elif image is None:
        submission = build_renewal(manufacturer_id=mfr, signers=signers, library=library, now=now)
    else:
        submission = build_submission(
            image=image,
            manufacturer_id=mfr,
            signers=signers,
            declaration=Declaration(tuple(cpl_entries), reason or "", tuple(advisories)),
            release_notes=release_notes.read_bytes() if release_notes else None,
            library=library,
            now=now,
            pilot=pilot,
            recipient_rule=rule,
        )
        _report_recent(submission.recent_recipients, rule, now)
    split_file = None
    if auto is not None:
        # Written first: a deposit bundle is never left on disk without the split it builds on.
        from repo_tool.submit.auto_bins import split_path_for

        split_file = out_file.with_name(split_path_for(out_file.name))
        write_bundle(split_file, auto.bundle)
    write_bundle(out_file, submission.bundle)
    written = submission.bundle
    if as_json:
        doc: dict[str, object] = {
            "bundle": str(out_file),
            "kind": written.kind,
            "manufacturer_id": mfr,
            "target": written.target or None,
            "role": written.role_name,
            "role_version": submission.role_version,
            "bins": [name for name, _ in written.bins],
        }
        if auto is not None:
            doc["split"] = {
                "bundle": str(split_file),
                "kind": auto.bundle.kind,
                "role": auto.bundle.role_name,
                "role_version": auto.role_version,
                "bit_length": auto.bit_length,
                "bins": [name for name, _ in auto.bundle.bins],
            }
        _emit_json(doc)
    if auto is not None:
        _err(
            f"wrote {split_file}: split-bins in {auto.bundle.role_name} version {auto.role_version} "
            f"and {len(auto.bundle.bins)} bin(s) (automatic: the role passed the contract's "
            "sizes); give it to the provider with the deposit, to be ingested first"
        )
    what = written.target or written.kind
    bins = f" and {len(written.bins)} bin(s)" if written.bins else ""
    _err(f"wrote {out_file}: {what} in {written.role_name} version {submission.role_version}{bins}")


def _auto_split(
    mfr: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    deposit: tuple[bytes, tuple[str, ...], bool],
    source: tuple[str, Reader, bytes],
    now: datetime,
) -> AutoSplit | None:
    """The split the contract's bin rule asks for before this deposit of (image, CPL entries,
    with notes), read from (``--from``, its reader, the trusted root): repo_tool/submit/auto_bins.py."""
    from repo_tool.submit.auto_bins import split_first
    from repo_tool.submit.deposit import load_source_library
    from repo_tool.submit.scope import deposit_target_paths, manufacturer_roles

    image, cpl_entries, with_notes = deposit
    where, read, root_bytes = source

    def every_bin() -> PublishedLibrary:
        return load_source_library(where, read, root_bytes, now=now, wanted=manufacturer_roles(mfr))

    paths = deposit_target_paths(image, cpl_entries, with_notes, library)
    return split_first(
        manufacturer_id=mfr,
        signers=signers,
        library=library,
        load_every_bin=every_bin,
        new_targets=len(paths) or 1,
        now=now,
    )


def _pilot_terms(
    pilots: tuple[str, ...], release_at: str | None, *, deposit: bool
) -> PilotTerms | None:
    """The pilot terms of --pilot and --release-at (None without them); usage errors exit 2."""
    from metadata_templates.suppliers import entity_id

    if not pilots and release_at is None:
        return None
    if not deposit:
        raise ConfigurationError(
            "--pilot/--release-at: found with no IMAGE_FILE, expected a deposit"
        )
    if not pilots or release_at is None:
        given = "--pilot" if pilots else "--release-at"
        missing = "--release-at YYYY-MM-DD" if pilots else "--pilot ENTITY_ID"
        raise ConfigurationError(f"{given}: found without {missing}, expected both together")
    try:
        ids = [entity_id(p, "--pilot") for p in pilots]
        parse_date(release_at, "--release-at")
    except (ValueError, CustomMetadataError) as e:
        raise ConfigurationError(str(e)) from e
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"--pilot: found {ids}, expected each Entity ID once")
    return PilotTerms(tuple(ids), release_at)


def _allowed_recent(allow_recent: tuple[str, ...]) -> frozenset[str]:
    from repo_tool.cli.options import allowed_recent

    return allowed_recent(allow_recent)


def _recipient_rule(allowed: frozenset[str], now: datetime) -> RecipientAgeRule:
    from repo_tool.cli.options import recipient_rule

    return recipient_rule(allowed, now)


def _report_recent(
    accepted: tuple[RecentRecipient, ...], rule: RecipientAgeRule, now: datetime
) -> None:
    from repo_tool.cli.options import report_recent

    report_recent(accepted, rule, now)
