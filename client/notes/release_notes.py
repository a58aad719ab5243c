"""The supplier's release notes: fetch an image's encrypted notes through TUF, find this organisation's
entry (or the provider's grant to it), decrypt, and check the plaintext against the signed metadata.

The organisation is recognised by its key, not by a configured name: the published, provider-signed
registry says which Entity ID holds the certificate whose public key matches. Decryption and every
format check are jwcrypto's and metadata_templates/notes.py's; this module only fetches and decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jwcrypto import jwk
from tuf.api.metadata import TargetFile

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import CflTargetInfo, CustomMetadataError
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    VerificationError,
    field_error,
)
from metadata_templates.notes import (
    NotRecipientError,
    decrypt_notes,
    grant_target_path,
    parse_envelope,
    pem_is_encrypted,
    private_key_from_pem,
    supplier_for_key,
)
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, SupplierRegistry

VIA_RECIPIENT = "recipient"
VIA_GRANT = "grant"


class NotesSource(Protocol):
    """What reading notes needs of ``client.session.Session`` (verified lookups and downloads)."""

    def target_info(self, path: str) -> TargetFile: ...

    def download(self, path: str) -> Path: ...

    def provider_document(self, path: str) -> bytes | None: ...


@dataclass(frozen=True)
class Notes:
    """An image's release notes, decrypted and checked."""

    target: str
    notes_target: str
    entity_id: str
    via: str  # VIA_RECIPIENT or VIA_GRANT
    plaintext: bytes

    def to_json(self, out: Path | None) -> dict[str, Any]:
        return {
            "target": self.target,
            "notes_target": self.notes_target,
            "entity_id": self.entity_id,
            "via": self.via,
            "sha256": hashlib.sha256(self.plaintext).hexdigest(),
            "length": len(self.plaintext),
            "out": None if out is None else str(out),
        }


def has_notes(custom: dict[str, Any]) -> bool:
    """True when an image's verified ``custom`` names encrypted release notes."""
    try:
        return CflTargetInfo.from_target_custom(custom).release_notes is not None
    except CustomMetadataError:
        return False


def read_notes(source: NotesSource, image_target: str, key: jwk.JWK) -> Notes:
    """Fetch, decrypt and check the release notes of ``image_target`` with this organisation's key.

    Raises:
        RejectedInputError: the image has no release notes.
        NotRecipientError: the key belongs to no registered organisation, or the organisation is
            neither a recipient nor granted the notes.
        NotesError: the notes fail to decrypt or are bound to something else.
        VerificationError: TUF verification failed, or the plaintext differs from the signed hash.
    """
    try:
        info = CflTargetInfo.from_target_custom(dict(source.target_info(image_target).custom or {}))
    except CustomMetadataError as e:
        raise VerificationError(f"{image_target}: {e}") from e
    ref = info.release_notes
    if ref is None:
        raise RejectedInputError(
            field_error(f"{image_target} custom.cfl.release_notes", None, "encrypted release notes")
            + " (this image was deposited without notes)"
        )
    me = supplier_for_key(published_registry(source), key)
    if me is None:
        raise NotRecipientError(
            f"release notes of {image_target}: not a recipient: your notes key (thumbprint "
            f"{key.thumbprint()}) matches no certificate in the published supplier registry",
            hint="give the key of your registered SMKI Organisation Certificate with `cfl init --notes-key`",
        )
    ciphertext = source.download(ref.target).read_bytes()
    envelope = parse_envelope(ciphertext)
    if me.entity_id in envelope.kids:
        plaintext = decrypt_notes(ciphertext, key, me.entity_id, image_target=image_target)
        via = VIA_RECIPIENT
    else:
        grant = source.provider_document(grant_target_path(me.entity_id, image_target))
        if grant is None:
            raise NotRecipientError(
                f"release notes of {image_target}: {me.entity_id} ({me.name}) is not a recipient and "
                "holds no grant",
                hint=f"an organisation entitled to {info.device_type} images may ask the CFL provider for "
                f"`cfl-repo notes grant {me.entity_id}`",
            )
        if parse_envelope(grant).grant_for != me.entity_id:
            raise VerificationError(
                field_error(
                    f"grant for {image_target}: cfl_grant_for",
                    parse_envelope(grant).grant_for,
                    me.entity_id,
                )
            )
        plaintext = decrypt_notes(grant, key, me.entity_id, image_target=image_target)
        via = VIA_GRANT
    actual = hashlib.sha256(plaintext).hexdigest()
    if actual != info.release_notes_sha256:
        raise VerificationError(
            field_error(
                f"release notes of {image_target}: plaintext SHA-256",
                actual,
                f"{info.release_notes_sha256} (custom.cfl.release_notes_sha256, signed by the manufacturer)",
            )
        )
    return Notes(image_target, ref.target, me.entity_id, via, plaintext)


def published_registry(source: NotesSource) -> SupplierRegistry:
    """The verified supplier registry (empty when the provider publishes none): whose key is whose.

    Raises:
        VerificationError: the registry does not read.
    """
    data = source.provider_document(SUPPLIERS_TARGET_PATH)
    return SupplierRegistry() if data is None else _registry(data)


def _registry(data: bytes) -> SupplierRegistry:
    try:
        return SupplierRegistry.from_bytes(data)
    except ValueError as e:
        raise VerificationError(f"{SUPPLIERS_TARGET_PATH}: {e}") from e


def load_notes_key(path: Path, passphrase: Any) -> jwk.JWK:
    """The organisation's private key (P-256 PEM); ``passphrase`` is called only for an encrypted one.

    Raises:
        ConfigurationError: unreadable, wrong passphrase, or not P-256.
    """
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"notes key {path}: cannot read ({e.strerror})") from e
    password = passphrase().encode() if pem_is_encrypted(pem) else None
    try:
        return private_key_from_pem(pem, password, f"notes key {path}")
    except RejectedInputError as e:
        raise ConfigurationError(str(e)) from e


def check_notes_key(path: Path, option: str) -> None:
    """Refuse at ``cfl init`` a notes key the first ``cfl notes`` would refuse.

    An unencrypted key is loaded and must be P-256; an encrypted one can only be checked for its
    PEM form here, because its passphrase is asked for when a note is read, never stored.

    Raises:
        ConfigurationError: unreadable, not a PEM private key, or not P-256.
    """
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{option} {path}: cannot read ({e.strerror})") from e
    if pem_is_encrypted(pem):
        if b"-----BEGIN " not in pem or b"PRIVATE KEY-----" not in pem:
            raise ConfigurationError(
                field_error(f"{option} {path}", "no PEM private key", "a P-256 private key in PEM")
            )
        return
    try:
        private_key_from_pem(pem, None, f"{option} {path}")
    except RejectedInputError as e:
        raise ConfigurationError(str(e)) from e


def notes_file_name(image_target: str) -> str:
    """Where ``--with-notes`` and ``notes`` put an image's notes by default."""
    return image_target.rsplit("/", 1)[-1] + ".notes.txt"


def write_notes(path: Path, notes: Notes) -> None:
    """Write the plaintext atomically, readable by the owner only (it is confidential)."""
    atomic_write_bytes(path, notes.plaintext, mode=0o600)


def notes_key_path(client_key: str | None, notes_key: str | None) -> Path:
    """The key release notes are decrypted with: ``--notes-key`` from init, else the client key.

    Raises:
        ConfigurationError: neither was given at ``cfl init``.
    """
    chosen = notes_key or client_key
    if chosen is None:
        raise ConfigurationError(
            "notes key: found none in the client home, expected --notes-key KEY.pem (or --client-key) "
            "given at `cfl init`",
            hint="cfl --home H init URL --root ROOT.json --notes-key KEY.pem --force",
        )
    return Path(chosen)
