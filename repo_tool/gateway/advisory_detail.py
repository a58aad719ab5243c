"""The gateway's checks of an advisory's confidential detail (issue 23). Pure; it never decrypts.

Before a disclosure date the technical detail of an advisory travels as ``advisory-detail.jwe``,
the release-notes envelope (metadata_templates/notes.py) bound to the advisory revision's target
and encrypted to the organisations entitled to the device types of its affected entries plus the
notes custodian; the signed document records the SHA-256 of the plaintext and the date. What is
checked here, each with its own code:

- the envelope is a JWE of our format (``advisory-detail-not-encrypted``; over the size cap,
  ``advisory-too-large``);
- it is bound to this revision, the document records its plaintext hash and names it, and the role
  adds exactly it as ``<advisory target>.detail.jwe`` with the bundled bytes and no custom
  (``advisory-detail-mismatch``);
- it is encrypted to exactly the audience the staged registry and custodian give
  (``advisory-detail-recipients-mismatch``);
- the disclosure date is after today (``advisory-disclosure-not-future``), within the policy's
  ``advisory_max_embargo_days`` and no later than an earlier encrypted revision's
  (``advisory-disclosure-too-far``): an embargo ends, and cannot be extended revision by revision;
- once a revision recorded a detail hash, every later one carries the same detail, encrypted again
  or disclosed as plaintext, and a disclosed detail stays public (``advisory-detail-swapped``): the
  detail suppliers received under embargo is the detail the world later reads.

Disclosing before the date is allowed: only the manufacturer can sign the disclosing revision, and
publishing early (an exploit in the wild, a fix everywhere) is its call.

``embargo_findings`` and ``swap_findings`` are shared with the manufacturer's ``advisory submit``
and ``advisory disclose``, which refuse there, with the same words, what the provider would refuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import date, timedelta

from tuf.api.metadata import TargetFile

from metadata_templates.advisory import (
    Advisory,
    AdvisoryError,
    advisory_target_path,
    detail_sha256,
    detail_target_path,
)
from metadata_templates.cpl_document import CplDocument
from metadata_templates.notes import (
    CUSTODIAN_KID,
    CustodianDocument,
    NotesError,
    Recipient,
    audience_for,
    parse_envelope,
)
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.gateway.model import Code, Findings

# The ciphertext of a detail the disclosed document must hold within MAX_ADVISORY_BYTES (256 KiB),
# base64url-encoded, plus the recipient entries of a few hundred organisations.
MAX_DETAIL_ENVELOPE_BYTES = 2 * 1024 * 1024


def affected_device_types(advisory: Advisory, cpl: CplDocument | None) -> tuple[str, ...]:
    """The device types of the advisory's affected entries on ``cpl``, sorted: whose suppliers
    the detail is for (an entry not on the CPL is ``advisory-unknown-entry`` already)."""
    by_id = cpl.by_id() if cpl is not None else {}
    return tuple(
        sorted({by_id[e].device_type for e in advisory.affected_cpl_entries if e in by_id})
    )


def recorded_sha256(advisory: Advisory) -> str | None:
    """The detail a revision commits to: its ``detail_sha256``, or the hash of public ``detail``."""
    if advisory.detail_sha256 is not None:
        return advisory.detail_sha256
    return None if advisory.detail is None else detail_sha256(advisory.detail)


def previous_revision(
    advisory: Advisory,
    targets: Mapping[str, TargetFile],
    read_blob: Callable[[str], bytes | None],
    latest: int,
) -> tuple[Advisory | None, str | None]:
    """(the revision before ``advisory``, None) from the manufacturer's lodged ``targets``, or
    (None, why it cannot be read); (None, None) for a first revision."""
    if latest < 1:
        return None, None
    path = advisory_target_path(advisory.id, latest)
    target = targets.get(path)
    sha = target.hashes.get("sha256", "") if target is not None else ""
    data = read_blob(sha) if sha else None
    if target is None or data is None or len(data) != target.length:
        return None, f"{path}: found no lodged bytes, expected the revision to compare with"
    if hashlib.sha256(data).hexdigest() != sha:
        return None, f"{path}: found bytes that do not hash to {sha}, expected the lodged revision"
    try:
        return Advisory.from_bytes(data, path), None
    except AdvisoryError as e:
        return None, str(e)


def embargo_findings(
    advisory: Advisory,
    previous: Advisory | None,
    *,
    today: date,
    max_embargo: timedelta,
    found: Findings,
) -> None:
    """An encrypted revision's disclosure date: after today, within the policy, never later than
    the earlier encrypted revision's."""
    if advisory.detail_state != "encrypted":
        return
    days = max_embargo.days
    if advisory.disclosure is None or date.fromisoformat(advisory.disclosure) <= today:
        found.add(
            Code.ADVISORY_DISCLOSURE_NOT_FUTURE,
            f"advisory disclosure: found {advisory.disclosure!r}, expected a date after today "
            f"({today.isoformat()}) for encrypted detail (the day it becomes public; disclose "
            "it now with `cfl-repo advisory disclose` if that day has come)",
        )
        return
    latest = today + max_embargo
    if previous is not None and previous.detail_state == "encrypted" and previous.disclosure:
        latest = min(latest, date.fromisoformat(previous.disclosure))
    if date.fromisoformat(advisory.disclosure) > latest:
        earlier = (
            f", and not after revision {previous.revision}'s {previous.disclosure}"
            if previous is not None and previous.detail_state == "encrypted"
            else ""
        )
        found.add(
            Code.ADVISORY_DISCLOSURE_TOO_FAR,
            f"advisory disclosure: found {advisory.disclosure}, expected at most "
            f"{latest.isoformat()} (policy.advisory_max_embargo_days: {days} days from today"
            f"{earlier}: an embargo may end sooner, never later)",
        )


def swap_findings(advisory: Advisory, previous: Advisory | None, found: Findings) -> None:
    """A revision after one that recorded a detail hash carries that same detail."""
    if previous is None or previous.detail_sha256 is None:
        return  # no hash recorded yet (public detail from the start may still be edited)
    recorded = recorded_sha256(advisory)
    if recorded != previous.detail_sha256:
        what = {
            "encrypted": "encrypted detail of SHA-256 " + str(recorded),
            "public": "disclosed detail of SHA-256 " + str(recorded),
            None: "no detail",
        }[advisory.detail_state]
        found.add(
            Code.ADVISORY_DETAIL_SWAPPED,
            f"advisory {advisory.id} detail: found {what}, expected the detail of SHA-256 "
            f"{previous.detail_sha256} that revision {previous.revision} recorded (the detail "
            "cannot be swapped or dropped; add corrections to the summary)",
        )
    elif previous.detail_state == "public" and advisory.detail_state != "public":
        found.add(
            Code.ADVISORY_DETAIL_SWAPPED,
            f"advisory {advisory.id} detail: found it encrypted again, expected it public (revision "
            f"{previous.revision} disclosed it)",
        )


def envelope_findings(
    advisory: Advisory,
    envelope_bytes: bytes | None,
    added: Mapping[str, TargetFile],
    *,
    registry: SupplierRegistry | None,
    custodian: CustodianDocument | None,
    cpl: CplDocument | None,
    found: Findings,
) -> TargetFile | None:
    """The bundled envelope against the document and the role's new detail targets (``added``);
    returns the detail target to stage when everything holds."""
    expected = detail_target_path(advisory.id, advisory.revision)
    if envelope_bytes is None:
        if advisory.detail_target is not None:
            found.add(
                Code.ADVISORY_DETAIL_MISMATCH,
                f"advisory.json detail_target: found {advisory.detail_target!r}, expected none (the "
                "bundle carries no advisory-detail.jwe)",
            )
        for path in sorted(added):
            found.add(
                Code.ADVISORY_DETAIL_MISMATCH,
                f"role detail target: found {path!r}, expected none (the bundle carries no "
                "advisory-detail.jwe)",
            )
        return None
    if len(envelope_bytes) > MAX_DETAIL_ENVELOPE_BYTES:
        found.add(
            Code.ADVISORY_TOO_LARGE,
            f"advisory-detail.jwe size: found {len(envelope_bytes)} bytes, expected at most "
            f"{MAX_DETAIL_ENVELOPE_BYTES}",
        )
        return None
    try:
        envelope = parse_envelope(envelope_bytes)
    except NotesError as e:
        found.add(Code.ADVISORY_DETAIL_NOT_ENCRYPTED, f"advisory-detail.jwe: {e}")
        return None
    if advisory.detail_target is None or advisory.detail_sha256 is None:
        found.add(
            Code.ADVISORY_DETAIL_MISMATCH,
            f"advisory.json detail_target/detail_sha256: found {advisory.detail_target!r} / "
            f"{advisory.detail_sha256!r}, expected {expected!r} and the SHA-256 of the detail's "
            "plaintext (the bundle carries advisory-detail.jwe)",
        )
    elif advisory.detail_sha256 != envelope.plaintext_sha256:
        found.add(
            Code.ADVISORY_DETAIL_MISMATCH,
            f"advisory.json detail_sha256: found {advisory.detail_sha256}, expected "
            f"{envelope.plaintext_sha256} (the plaintext hash advisory-detail.jwe authenticates)",
        )
    if envelope.target != advisory.target_path or envelope.grant_for is not None:
        found.add(
            Code.ADVISORY_DETAIL_MISMATCH,
            f"advisory-detail.jwe protected cfl_target: found {envelope.target!r}"
            + (" in a grant" if envelope.grant_for is not None else "")
            + f", expected {advisory.target_path!r} (the revision it is lodged with)",
        )
    target = added.get(expected)
    digest = hashlib.sha256(envelope_bytes).hexdigest()
    if set(added) != {expected} or target is None:
        found.add(
            Code.ADVISORY_DETAIL_MISMATCH,
            f"role detail targets: found {sorted(added)}, expected [{expected!r}]",
        )
        target = None
    elif (
        target.length != len(envelope_bytes)
        or target.hashes != {"sha256": digest}
        or target.unrecognized_fields
    ):
        found.add(
            Code.ADVISORY_DETAIL_MISMATCH,
            f"{expected} length/hashes/custom: found {target.length} / {target.hashes} / "
            f"{sorted(target.unrecognized_fields)}, expected {len(envelope_bytes)} / "
            f"{{'sha256': '{digest}'}} / [] (the bundled advisory-detail.jwe)",
        )
        target = None
    _recipients(advisory, envelope.recipients, registry, custodian, cpl, found)
    return target


def _recipients(
    advisory: Advisory,
    listed: tuple[Recipient, ...],
    registry: SupplierRegistry | None,
    custodian: CustodianDocument | None,
    cpl: CplDocument | None,
    found: Findings,
) -> None:
    if custodian is None:
        found.add(
            Code.ADVISORY_DETAIL_RECIPIENTS_MISMATCH,
            "advisory-detail.jwe recipients: found encrypted detail, expected none until the "
            "provider publishes a notes-custodian key (cfl/notes-custodian.json)",
        )
        return
    device_types = affected_device_types(advisory, cpl)
    try:
        wanted = audience_for(registry or SupplierRegistry(), custodian, device_types)
    except NotesError as e:
        found.add(Code.ADVISORY_DETAIL_RECIPIENTS_MISMATCH, f"entitled recipients: {e}")
        return
    expected = {r.recipient.kid: r.recipient.thumbprint for r in wanted}
    got = {r.kid: r.thumbprint for r in listed}
    if got != expected or len(listed) != len(got):
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        other_key = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        found.add(
            Code.ADVISORY_DETAIL_RECIPIENTS_MISMATCH,
            f"advisory-detail.jwe recipients: found {sorted(got)}, expected {sorted(expected)} "
            f"(every organisation entitled to {'/'.join(device_types) or 'no device type'} now, "
            f"plus {CUSTODIAN_KID}); missing {missing}, not entitled {extra}, other key {other_key}",
        )
