"""The provider's release-note operations: publish the notes-custodian key, and grant an organisation
registered later the notes it is entitled to.

A grant re-encrypts the note's plaintext to that organisation alone, with the custodian key (held
offline or in an HSM, given to this command, never on the static host). Re-encrypting means the
custodian's machine sees the plaintext for the moment between decrypting and encrypting; it never
writes it. We chose it over re-wrapping the content key because jwcrypto exposes no re-wrap, and a
hand-made key re-wrap would be our own crypto construction (docs/design.md, "Release notes").
The custodian can read every note anyway: it is a recipient of each, so nothing new is exposed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jwcrypto import jwk
from tuf.api.metadata import TargetFile

from metadata_templates import naming
from metadata_templates.custom import (
    CflTargetInfo,
    CustomMetadataError,
    format_timestamp,
)
from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from metadata_templates.notes import (
    CUSTODIAN_KID,
    CUSTODIAN_TARGET_PATH,
    CustodianDocument,
    NotesError,
    decrypt_notes,
    encrypt_notes,
    grant_target_path,
    is_notes_target_path,
    parse_envelope,
    private_key_from_pem,
    public_key_from_pem,
    supplier_key,
)
from metadata_templates.suppliers import entity_id as parse_entity_id
from repo_tool.notes.audience import read_custodian, read_registry
from repo_tool.state.repository import Repository


@dataclass(frozen=True)
class CustodianChange:
    """What ``notes custodian`` would do: the published key it replaces (if any) and the new one."""

    current: str | None  # RFC 7638 thumbprint of the staged custodian key, None when there is none
    new: str  # RFC 7638 thumbprint of the key given

    @property
    def replaces(self) -> bool:
        """True when another key is staged now: notes deposited before stay encrypted to it."""
        return self.current is not None and self.current != self.new

    @property
    def unchanged(self) -> bool:
        return self.current == self.new


def custodian_change(repo: Repository, public_pem: bytes) -> CustodianChange:
    """Compare the staged notes-custodian key with ``public_pem``, changing nothing.

    Raises:
        ConfigurationError: not an ECDSA P-256 public key, or the staged custodian document is
            malformed.
    """
    try:
        key = public_key_from_pem(public_pem, "--public-key")
    except NotesError as e:
        # The file named on the command line is not the kind of key the option takes: exit 2.
        raise ConfigurationError(str(e)) from e
    current = read_custodian(repo)
    return CustodianChange(
        None if current is None else current.key().recipient.thumbprint, key.thumbprint()
    )


def set_custodian(
    repo: Repository, public_pem: bytes, *, now: datetime, replacing: str | None = None
) -> str:
    """Publish (or replace) the notes-custodian public key; returns its RFC 7638 thumbprint.

    Notes deposited before a replacement stay encrypted to the old key; keep it to grant them.
    ``replacing`` is the thumbprint the operator agreed to replace (None: that no key is staged), so a
    key staged by someone else between the question and the answer is never silently replaced. The
    same key again changes nothing.

    Raises:
        ConfigurationError: not an ECDSA P-256 public key, or the staged key is not ``replacing``.
    """
    change = custodian_change(repo, public_pem)
    if change.unchanged:
        return change.new
    if change.current != replacing:
        raise ConfigurationError(
            field_error(
                "staged notes custodian key",
                change.current,
                f"{replacing} (the key you agreed to replace); run the command again",
            )
        )
    key = public_key_from_pem(public_pem, "--public-key")
    pem = key.export_to_pem().decode()
    document = CustodianDocument(pem)
    repo.put_provider_targets(
        {CUSTODIAN_TARGET_PATH: document.to_bytes()},
        now=now,
        event={
            "event": "notes-custodian",
            "at": format_timestamp(now),
            "thumbprint": key.thumbprint(),
        },
    )
    return key.thumbprint()


@dataclass(frozen=True)
class GrantReport:
    """What one ``notes grant`` did."""

    entity_id: str
    granted: tuple[str, ...]  # image targets whose notes were granted now
    already: tuple[str, ...]  # entitled already (a recipient, or granted before)
    targets_version: int | None  # None when nothing new was published

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "granted": [
                {"target": t, "grant": grant_target_path(self.entity_id, t)} for t in self.granted
            ],
            "already_readable": list(self.already),
            "targets_version": self.targets_version,
        }


def grant_notes(
    repo: Repository,
    entity: str,
    custodian_key: jwk.JWK,
    *,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> GrantReport:
    """Grant ``entity`` every note of an image type its roles entitle it to that it cannot read yet.

    ``progress(done, total)`` is called before each entitled note is looked at (the CLI draws a bar).

    Raises:
        RejectedInputError: no registry, an unknown or revoked organisation, or a note that fails
            to decrypt or does not match its image's signed plaintext hash.
        ConfigurationError: a bad Entity ID, no published custodian key, or a key that is not it.
    """
    try:
        entity = parse_entity_id(entity, "ENTITY_ID")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    registry = read_registry(repo)
    supplier = None if registry is None else registry.by_entity_id().get(entity)
    if supplier is None:
        raise RejectedInputError(
            field_error("ENTITY_ID", entity, "an organisation in the published supplier registry")
        )
    if not supplier.active:
        raise RejectedInputError(
            f"ENTITY_ID {entity}: found status {supplier.status!r} (revoked {supplier.revoked}), expected "
            "'active'; a revoked organisation receives no new grants (what it could read stays readable)"
        )
    custodian = read_custodian(repo)
    if custodian is None:
        raise ConfigurationError(
            f"{CUSTODIAN_TARGET_PATH}: found none published, expected the custodian key first",
            hint="cfl-repo --repo R notes custodian --public-key CUSTODIAN.pub.pem",
        )
    published = custodian.key().recipient.thumbprint
    if custodian_key.thumbprint() != published:
        raise ConfigurationError(
            field_error(
                "custodian key thumbprint", custodian_key.thumbprint(), f"{published} (published)"
            )
        )
    recipient = supplier_key(supplier)
    candidates = _entitled_notes(repo, supplier.may_fetch)
    # Read once: a provider document lookup per note would parse targets once per note.
    provider_targets = repo.provider_targets()
    files: dict[str, bytes] = {}
    granted: list[str] = []
    already: list[str] = []
    for done, (path, info, notes_file) in enumerate(candidates, start=1):
        if progress is not None:
            progress(done, len(candidates))
        ciphertext = repo.blobs.get(notes_file.hashes["sha256"])
        envelope = parse_envelope(ciphertext)
        if recipient.recipient in envelope.recipients:
            already.append(path)
            continue
        grant_path = grant_target_path(entity, path)
        existing = provider_targets.get(grant_path)
        if existing is not None and parse_envelope(
            repo.blobs.get(existing.hashes["sha256"])
        ).recipients == (recipient.recipient,):
            already.append(path)
            continue
        plaintext = decrypt_notes(ciphertext, custodian_key, CUSTODIAN_KID, image_target=path)
        if envelope.plaintext_sha256 != info.release_notes_sha256:
            raise NotesError(
                field_error(
                    f"{path} release notes SHA-256",
                    envelope.plaintext_sha256,
                    str(info.release_notes_sha256),
                )
            )
        files[grant_path] = encrypt_notes(plaintext, path, [recipient], grant_for=entity)
        granted.append(path)
    version = None
    if files:
        version = repo.put_provider_targets(
            files,
            now=now,
            event={
                "event": "notes-grant",
                "at": format_timestamp(now),
                "entity_id": entity,
                "grants": sorted(files),
            },
        )
    return GrantReport(entity, tuple(granted), tuple(already), version)


def _entitled_notes(
    repo: Repository, may_fetch: Callable[[str], bool]
) -> list[tuple[str, CflTargetInfo, TargetFile]]:
    """(image target, its custom.cfl, its notes target) of every image with notes of a device type
    ``may_fetch`` allows, in role then path order.

    Raises:
        RejectedInputError: an image names a notes target its role does not hold.
    """
    found: list[tuple[str, CflTargetInfo, TargetFile]] = []
    for role_name in sorted(repo.head.roles):
        if naming.is_provider_role(role_name):  # the provider's documents, not images
            continue
        targets = repo.role(role_name).signed.targets
        for path, target in sorted(targets.items()):
            if is_notes_target_path(path):
                continue
            try:
                info = CflTargetInfo.from_target_custom(dict(target.custom or {}))
            except CustomMetadataError:
                continue  # the verify walk reports it; it has no notes to grant
            if info.release_notes is None or not may_fetch(info.device_type):
                continue
            notes_file = targets.get(info.release_notes.target)
            if notes_file is None:
                raise RejectedInputError(
                    f"{info.release_notes.target}: found no notes target, expected the one {path} names"
                )
            found.append((path, info, notes_file))
    return found


def load_custodian_key(pem: bytes, password: bytes | None, where: str) -> jwk.JWK:
    """The custodian's private key from a PEM file (encrypted with a passphrase in production)."""
    return private_key_from_pem(pem, password, where)
