"""The manufacturer's side of release notes: encrypt on its own machine to the entitled audience.

The audience is read from the published tree ``submit`` already verified through TUF (``--from``):
every active organisation in the provider-signed registry whose User Roles are entitled to the
image's device type, plus the provider's notes-custodian key. An organisation registered too
recently is refused unless the manufacturer accepts it (``recipient_age.py``). The gateway recomputes the same set
from the same documents at deposit time, so a registry that changed in between makes the deposit
fail with ``notes-recipients-mismatch`` and the manufacturer simply submits again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from tuf.api.metadata import TargetFile

from metadata_templates.custom import NotesReader, ReleaseNotesRef
from metadata_templates.errors import RejectedInputError
from metadata_templates.notes import (
    CUSTODIAN_KID,
    CUSTODIAN_TARGET_PATH,
    audience,
    encrypt_notes,
    notes_target_path,
)
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.notes.recipient_age import RecentRecipient, RecipientAgeRule, check_recipient_ages
from repo_tool.verify.published import PublishedLibrary


@dataclass(frozen=True)
class EncryptedNotes:
    """The ciphertext, the role target that carries it and the image's reference to it, and the
    recently registered recipients the manufacturer accepted (``recipient_age.py``)."""

    envelope: bytes
    target_file: TargetFile
    ref: ReleaseNotesRef
    recent: tuple[RecentRecipient, ...] = ()


def encrypt_for_library(
    plaintext: bytes,
    image_target: str,
    device_type: str,
    library: PublishedLibrary,
    *,
    now: datetime,
    rule: RecipientAgeRule,
) -> EncryptedNotes:
    """Encrypt release notes for ``image_target`` to its audience in ``library``, once every
    recipient's registration is old enough for ``rule`` at ``now``.

    Raises:
        RejectedInputError: the library publishes no notes-custodian key, a recipient is too
            recently registered (and not accepted), a registered key is not P-256, or the notes
            are empty or too large.
    """
    if not plaintext:
        raise RejectedInputError("--release-notes: found an empty file, expected the notes' text")
    if library.notes_custodian is None:
        raise RejectedInputError(
            f"published library: found no notes-custodian key ({CUSTODIAN_TARGET_PATH}), expected one "
            "to encrypt release notes to",
            hint="ask the CFL provider to run `cfl-repo notes custodian`, or submit without notes",
        )
    registry = library.suppliers or SupplierRegistry()
    # Before anything is encrypted: the audience is exactly the entitled set (the gateway
    # recomputes it), so a recipient cannot be left out, only refused with the whole deposit.
    recent = check_recipient_ages(registry.entitled(device_type), rule, now=now)
    recipients = audience(registry, library.notes_custodian, device_type)
    envelope = encrypt_notes(plaintext, image_target, recipients)
    path = notes_target_path(image_target)
    return EncryptedNotes(
        envelope=envelope,
        target_file=TargetFile(
            len(envelope), {"sha256": hashlib.sha256(envelope).hexdigest()}, path
        ),
        ref=ReleaseNotesRef(
            target=path,
            readers=tuple(
                NotesReader(r.recipient.kid, r.name)
                for r in recipients
                if r.recipient.kid != CUSTODIAN_KID
            ),
        ),
        recent=recent,
    )
