"""The gateway's checks on a deposit's release notes: a pure function that never decrypts.

The provider cannot read a note and must not be able to, so everything checked here is what the
ciphertext says about itself in its authenticated header and what the manufacturer's role says
about it: the note is encrypted (a JWE of our format, not plaintext), it belongs to this image, it is
the role's one notes target with exactly these bytes, and it is encrypted to exactly the
organisations entitled to the image's device type at deposit time plus the notes custodian.

What the gateway cannot check, because ECDH-ES wraps with an ephemeral key: that each recipient's
wrapped key really opens the content. A manufacturer who lies there only withholds its own notes from
a supplier; the supplier's client then says the note does not decrypt (docs/design.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from tuf.api.metadata import TargetFile

from metadata_templates.custom import NotesReader, ReleaseNotesRef
from metadata_templates.notes import (
    CUSTODIAN_KID,
    CustodianDocument,
    Envelope,
    NotesError,
    audience,
    notes_target_path,
    parse_envelope,
)
from metadata_templates.suppliers import SupplierRegistry

NOTES_NOT_ENCRYPTED = "notes-not-encrypted"
NOTES_RECIPIENTS_MISMATCH = "notes-recipients-mismatch"
NOTES_TARGET_MISMATCH = "notes-target-mismatch"


@dataclass
class NotesVerdict:
    """What the notes of one deposit add, or why they are refused."""

    findings: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    plaintext_sha256: str | None = None
    ref: ReleaseNotesRef | None = None
    target: TargetFile | None = None

    def add(self, code: str, message: str) -> None:
        self.findings.append((code, message))


def check_deposited_notes(
    *,
    plaintext: bytes | None,
    envelope_bytes: bytes | None,
    image_target: str,
    added_notes: Mapping[str, TargetFile],
    device_type: str | None,
    registry: SupplierRegistry | None,
    custodian: CustodianDocument | None,
) -> NotesVerdict:
    """Check a deposit's notes (``added_notes`` are the role's new ``*.notes.jwe`` targets).

    Never raises for bad input: every problem is a finding.
    """
    verdict = NotesVerdict()
    if plaintext is not None:
        verdict.add(
            NOTES_NOT_ENCRYPTED,
            f"release-notes.txt: found {len(plaintext)} bytes of plaintext release notes, expected "
            "release-notes.jwe encrypted on the manufacturer's machine (rebuild with `cfl-repo submit`)",
        )
    expected_path = notes_target_path(image_target)
    if envelope_bytes is None:
        for path in sorted(added_notes):
            verdict.add(
                NOTES_TARGET_MISMATCH,
                f"role notes target: found {path!r}, expected none (the bundle carries no release notes)",
            )
        return verdict
    try:
        envelope = parse_envelope(envelope_bytes)
    except NotesError as e:
        verdict.add(NOTES_NOT_ENCRYPTED, f"release-notes.jwe: {e}")
        return verdict
    if envelope.target != image_target or envelope.grant_for is not None:
        verdict.add(
            NOTES_TARGET_MISMATCH,
            f"release-notes.jwe protected cfl_target: found {envelope.target!r}"
            + (" in a grant" if envelope.grant_for is not None else "")
            + f", expected {image_target!r} (the image deposited with it)",
        )
    if set(added_notes) != {expected_path}:
        verdict.add(
            NOTES_TARGET_MISMATCH,
            f"role notes targets: found {sorted(added_notes)}, expected [{expected_path!r}] (the image's "
            "notes target)",
        )
    else:
        target = added_notes[expected_path]
        digest = hashlib.sha256(envelope_bytes).hexdigest()
        if target.length != len(envelope_bytes) or target.hashes != {"sha256": digest}:
            verdict.add(
                NOTES_TARGET_MISMATCH,
                f"{expected_path} length/hashes: found {target.length} / {target.hashes}, expected "
                f"{len(envelope_bytes)} / {{'sha256': '{digest}'}} (the bundled release-notes.jwe)",
            )
        elif target.custom:
            verdict.add(
                NOTES_TARGET_MISMATCH,
                f"{expected_path} custom: found keys {sorted(target.custom)}, expected none",
            )
        else:
            verdict.target = target
    if device_type is not None:
        _check_recipients(envelope, device_type, registry, custodian, verdict)
    if not verdict.findings:
        names = (registry or SupplierRegistry()).by_entity_id()
        verdict.plaintext_sha256 = envelope.plaintext_sha256
        verdict.ref = ReleaseNotesRef(
            target=expected_path,
            readers=tuple(
                NotesReader(kid, names[kid].name) for kid in envelope.kids if kid != CUSTODIAN_KID
            ),
        )
    return verdict


def _check_recipients(
    envelope: Envelope,
    device_type: str,
    registry: SupplierRegistry | None,
    custodian: CustodianDocument | None,
    verdict: NotesVerdict,
) -> None:
    if custodian is None:
        verdict.add(
            NOTES_RECIPIENTS_MISMATCH,
            "release-notes.jwe recipients: found notes, expected none until the provider publishes a "
            "notes-custodian key (cfl/notes-custodian.json)",
        )
        return
    try:
        wanted = audience(registry or SupplierRegistry(), custodian, device_type)
    except NotesError as e:
        verdict.add(NOTES_RECIPIENTS_MISMATCH, f"entitled recipients: {e}")
        return
    expected = {r.recipient.kid: r.recipient.thumbprint for r in wanted}
    found = {r.kid: r.thumbprint for r in envelope.recipients}
    if found != expected or len(envelope.recipients) != len(found):
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        other_key = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
        verdict.add(
            NOTES_RECIPIENTS_MISMATCH,
            f"release-notes.jwe recipients: found {sorted(found)}, expected {sorted(expected)} (every "
            f"organisation entitled to {device_type} now, plus {CUSTODIAN_KID}); missing {missing}, "
            f"not entitled {extra}, other key {other_key}",
        )
