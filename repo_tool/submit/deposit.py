"""The manufacturer's side of a deposit: build and sign the next version of its role around one image.

The manufacturer starts from the library as published (verified from a trusted root, so a hostile
host cannot trick it into signing a rollback or a foreign target), adds exactly one target with its
``custom.cfl``, bumps the version, signs with its own key(s) and writes one bundle file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.custom import CUSTOM_KEY, format_timestamp
from metadata_templates.errors import (
    CflError,
    ConfigurationError,
    RejectedInputError,
    VerificationError,
)
from metadata_templates.naming import SPEC_VERSION
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.intake.bundle import KIND_RENEWAL, Bundle, Declaration
from repo_tool.intake.describe import (
    describe_image,
    digest_image,
    release_notes_digest,
    target_path_for,
)
from repo_tool.intake.image import parse_image
from repo_tool.notes.encrypt import encrypt_for_library
from repo_tool.notes.recipient_age import RecentRecipient, RecipientAgeRule
from repo_tool.submit import bins as submit_bins
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import NotFound, Reader, url_reader
from repo_tool.verify.walk import CplLoader, verified_library

logger = logging.getLogger(__name__)
DEFAULT_EXPIRY = DEFAULT_POLICY.expiry("mfr")
DEFAULT_RECIPIENT_RULE = RecipientAgeRule()  # the policy's minimum age, nobody accepted early


@dataclass(frozen=True)
class Submission:
    """A signed deposit, ready to be written as a bundle (``recent_recipients``: organisations
    registered within the policy's minimum age that the manufacturer accepted for its notes)."""

    bundle: Bundle
    role_version: int
    recent_recipients: tuple[RecentRecipient, ...] = ()


def build_submission(
    *,
    image: bytes,
    manufacturer_id: str,
    signers: Sequence[Signer],
    declaration: Declaration,
    release_notes: bytes | None,
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta = DEFAULT_EXPIRY,
    recipient_rule: RecipientAgeRule = DEFAULT_RECIPIENT_RULE,
) -> Submission:
    """Build the next role version around ``image`` and sign it. Release notes are encrypted only
    to organisations registered long enough before ``now`` (``recipient_rule``).

    Raises:
        RejectedInputError: a malformed image, an incomplete declaration, CPL entries not on the
            published CPL, a release-note recipient registered too recently, or keys that do not
            meet the published delegation's threshold.
    """
    problems = declaration.problems()
    if problems:
        raise RejectedInputError("; ".join(problems))
    header = parse_image(image)
    if header.manufacturer_id != manufacturer_id:
        raise RejectedInputError(
            f"image header manufacturer code: found {header.manufacturer_id}, expected {manufacturer_id} "
            "(--manufacturer)"
        )
    if library.cpl is None:
        raise RejectedInputError(
            "published library: found no CPL (cfl/cpl.json), expected one to declare entries against"
        )
    by_id = library.cpl.by_id()
    missing = [entry_id for entry_id in declaration.cpl_entries if entry_id not in by_id]
    if missing:
        raise RejectedInputError(f"--cpl-entry: found {missing}, expected IDs on the published CPL")
    entries = [by_id[entry_id] for entry_id in declaration.cpl_entries]
    digests = digest_image(image, header)
    path = target_path_for(header, entries[0].device_type, digests.file_sha256)
    # Encrypted here, on the manufacturer's machine: the plaintext never goes into the bundle.
    notes = (
        None
        if release_notes is None
        else encrypt_for_library(
            release_notes,
            path,
            entries[0].device_type,
            library,
            now=now,
            rule=recipient_rule,
        )
    )
    info = describe_image(
        header=header,
        digests=digests,
        entries=entries,
        declaration=declaration,
        published=format_timestamp(now),
        release_notes_sha256=release_notes_digest(release_notes),
        release_notes=None if notes is None else notes.ref,
    )
    role_name = naming.role_name(manufacturer_id)
    current = library.role_metadata.get(role_name)
    image_target = TargetFile(
        len(image),
        {"sha256": digests.file_sha256},
        path,
        unrecognized_fields={"custom": {CUSTOM_KEY: info.to_dict()}},
    )
    split = submit_bins.published_split(library, manufacturer_id)
    if split is not None:
        # Hash bins: only the bin(s) the new targets go to are re-signed (repo_tool/submit/bins.py).
        # Sound with a library holding only those bins (repo_tool/submit/scope.py): a path can live
        # only in the bin the rule assigns it (verify refuses it in any other bin, and in any other
        # manufacturer's delegation), so the bin it goes to is the one place it could be already.
        if any(path in md.signed.targets for md in library.role_metadata.values()):
            raise RejectedInputError(
                f"{path}: found it in the published library already, expected a new image"
            )
        main, md, others = submit_bins.deposit_into_bins(
            manufacturer_id=manufacturer_id,
            mfr_role=split,
            library=library,
            new_targets=[image_target] + ([notes.target_file] if notes is not None else []),
            signers=signers,
            now=now,
            expiry=expiry,
        )
    else:
        main, others = "", ()  # the manufacturer role itself, no bins
        if current is not None:
            signed = Metadata[Targets].from_bytes(current.to_bytes()).signed
            if path in signed.targets:
                raise RejectedInputError(
                    f"{path}: found it in the published role already, expected a new image"
                )
            signed.version += 1
        else:
            signed = Targets(version=1)
            signed.spec_version = SPEC_VERSION
        signed.expires = now + expiry
        signed.targets[path] = image_target
        if notes is not None:
            signed.targets[notes.ref.target] = notes.target_file
        md = _signed(signed, signers, library, role_name)
    bundle = Bundle(
        manufacturer_id=manufacturer_id,
        target=path,
        declaration=declaration,
        image=image,
        role_bytes=md.to_bytes(),
        release_notes=None,
        notes_jwe=None if notes is None else notes.envelope,
        role=main,
        bins=others,
    )
    return Submission(
        bundle=bundle,
        role_version=md.signed.version,
        recent_recipients=() if notes is None else notes.recent,
    )


def _signed(
    signed: Targets, signers: Sequence[Signer], library: PublishedLibrary, role_name: str
) -> Metadata[Targets]:
    """Sign with every given key, then check them against the published delegation."""
    md = Metadata(signed)
    for signer in signers:
        md.sign(signer, append=True)
    _verify_against_delegation(library, role_name, md)
    return md


def _verify_against_delegation(
    library: PublishedLibrary, role_name: str, md: Metadata[Targets]
) -> None:
    """When the library delegates to this manufacturer already, check the keys before the provider
    does, so a wrong key fails here with a clear message rather than as a rejected bundle."""
    targets = library.targets_metadata
    if (
        targets is None
        or targets.signed.delegations is None
        or role_name not in (targets.signed.delegations.roles or {})
    ):
        logger.info(
            "%s is not delegated yet: the provider checks the keys at first ingest", role_name
        )
        return
    result = targets.signed.get_verification_result(role_name, md.signed_bytes, md.signatures)
    if not result.verified:
        raise RejectedInputError(
            f"{role_name} signatures: found {len(result.signed)} by keys the library delegates to, expected "
            f"{result.threshold}; registered key IDs are {sorted(k[:8] for k in (result.signed | result.unsigned))}"
        )


def build_renewal(
    *,
    manufacturer_id: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta = DEFAULT_EXPIRY,
) -> Submission:
    """Re-sign the published role one version up with a later expiry and the same targets.

    Raises:
        RejectedInputError: the library has no role for this manufacturer yet, or the keys do not
            meet the published delegation's threshold.
    """
    role_name = naming.role_name(manufacturer_id)
    current = library.role_metadata.get(role_name)
    if current is None:
        raise RejectedInputError(f"{role_name}: found no published role, expected one to renew")
    split = submit_bins.published_split(library, manufacturer_id)
    if split is not None:
        bundle, version = submit_bins.build_bin_renewal(
            manufacturer_id=manufacturer_id,
            mfr_role=split,
            signers=signers,
            library=library,
            now=now,
            expiry=expiry,
        )
        return Submission(bundle=bundle, role_version=version)
    signed = Metadata[Targets].from_bytes(current.to_bytes()).signed
    signed.version += 1
    signed.expires = now + expiry
    md = _signed(signed, signers, library, role_name)
    bundle = Bundle(
        manufacturer_id=manufacturer_id,
        target="",
        declaration=Declaration((), "", ()),
        image=b"",
        role_bytes=md.to_bytes(),
        release_notes=None,
        kind=KIND_RENEWAL,
    )
    return Submission(bundle=bundle, role_version=signed.version)


def source_reader(source: str) -> Reader:
    """A reader for ``--from``: an http(s):// or file:// URL, or a folder.

    Raises:
        ConfigurationError: a URL of another scheme, or a folder that does not exist.
    """
    if "://" in source:
        scheme = source.split("://", 1)[0].lower()
        if scheme not in ("http", "https", "file"):
            raise ConfigurationError(
                f"--from: found {source!r}, expected an http(s):// or file:// URL or a folder"
            )
        return url_reader(source)
    folder = Path(source)
    if not folder.is_dir():
        raise ConfigurationError(
            f"--from: found {source!r}, expected a folder holding a published CFL (no such folder)"
        )
    return url_reader("file://" + str(folder.resolve()))


def read_source_root(source: str, read: Reader) -> bytes:
    """The source's own ``1.root.json`` (trust on first use when no ``--root`` is given).

    Raises:
        ConfigurationError: the source holds no published CFL.
        UnavailableError: the source cannot be reached.
    """
    try:
        return read("metadata/1.root.json")
    except NotFound as e:
        raise ConfigurationError(
            f"--from {source}: found no metadata/1.root.json, expected a published CFL"
        ) from e


def load_source_library(
    source: str,
    read: Reader,
    root_bytes: bytes,
    *,
    now: datetime,
    wanted: Callable[[str], bool] | None = None,
    cpl_loader: CplLoader | None = None,
) -> PublishedLibrary:
    """The published library at ``source``, verified from ``root_bytes``; errors name the source.
    ``wanted`` narrows the roles walked and ``cpl_loader`` reads the CPL from a local index
    (repo_tool/submit/scope.py; None: every role, the CPL read whole).

    Raises:
        ConfigurationError: the source holds no published CFL at all (no timestamp.json).
        VerificationError: it holds one that fails verification.
        UnavailableError: it cannot be reached.
    """
    try:
        read("metadata/timestamp.json")
    except NotFound as e:
        raise ConfigurationError(
            f"--from {source}: found no metadata/timestamp.json, expected a published CFL"
        ) from e
    try:
        return verified_library(
            read, root_bytes, now=now, check_blobs=False, wanted=wanted, cpl_loader=cpl_loader
        )
    except VerificationError as e:
        raise VerificationError(f"--from {source}: {e}") from e
    except CflError as e:
        raise type(e)(f"--from {source}: {e}", hint=e.hint) from e
