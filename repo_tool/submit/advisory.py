"""The manufacturer's side of an advisory: sign one revision into its role and write a bundle.

Like a deposit, it starts from the published library verified from a trusted root, takes the next
revision of the advisory's ID, adds exactly one target (the advisory's bytes, no custom), bumps the
role version (or the version of the hash bin the path goes to) and signs with the manufacturer's
own keys. The gateway's content checks (repo_tool/gateway/advisory.py) run here first, so what the
provider would refuse is refused on the manufacturer's machine with the same words.

With ``detail`` (``advisory submit --detail FILE``) the technical detail is encrypted here, in the
release-notes envelope, to the suppliers entitled to the affected entries' device types and the
notes custodian (repo_tool/notes/encrypt.py, the same recipient-age rule); the signed revision
records its plaintext SHA-256 and the disclosure date, and the ciphertext is a second target,
``<advisory target>.detail.jwe``. The plaintext never leaves this machine until disclosure
(repo_tool/submit/advisory_disclose.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.advisory import (
    LIMITS,
    MAX_ADVISORY_BYTES,
    Advisory,
    AdvisoryError,
    detail_target_path,
    parse_authored,
    with_revision,
)
from metadata_templates.errors import RejectedInputError
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.gateway import advisory_detail
from repo_tool.gateway.advisory import advisory_findings, latest_revision
from repo_tool.gateway.model import Findings
from repo_tool.intake.bundle import KIND_ADVISORY, Bundle, Declaration
from repo_tool.notes.encrypt import encrypt_detail_for_library
from repo_tool.notes.recipient_age import RecipientAgeRule
from repo_tool.submit import bins as submit_bins
from repo_tool.submit.deposit import DEFAULT_EXPIRY, DEFAULT_RECIPIENT_RULE, Submission, _signed
from repo_tool.verify.published import PublishedLibrary

# The manufacturer's side uses the contract's bound, as it does the recipient age: a value the
# provider published would be one a thief of its online key could change.
MAX_EMBARGO = timedelta(days=DEFAULT_POLICY.advisory_max_embargo_days)


def build_advisory_submission(
    *,
    document: bytes,
    manufacturer_id: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta = DEFAULT_EXPIRY,
    where: str = "ADVISORY.json",
    detail: bytes | None = None,
    disclose_at: date | None = None,
    recipient_rule: RecipientAgeRule = DEFAULT_RECIPIENT_RULE,
) -> tuple[Submission, Advisory]:
    """Sign the next revision of the advisory in ``document`` (its detail encrypted when given).

    ``disclose_at`` defaults to the document's ``disclosure``, else the date an earlier encrypted
    revision announced, else the end of the longest embargo the policy allows.

    Raises:
        RejectedInputError: the document is not of the advisory format, names another manufacturer,
            entries not on the CPL or not this manufacturer's, fixes not in the library or that
            reach none of the affected devices, a revision other than the next; detail that is not
            UTF-8 text, too long, a disclosure date outside the policy, a detail other than the one
            an earlier revision recorded, a recipient too recently registered, no custodian key; or
            the keys do not meet the published delegation's threshold.
    """
    try:
        authored = parse_authored(
            document, manufacturer_id=manufacturer_id, today=now.date().isoformat(), where=where
        )
    except AdvisoryError as e:
        raise RejectedInputError(str(e)) from e
    if detail is not None and authored.detail is not None:
        raise RejectedInputError(
            f"{where}: detail: found public detail beside --detail, expected one of the two "
            "(public detail in the file, or --detail FILE to encrypt until disclosure)"
        )
    targets = manufacturer_targets(library, manufacturer_id)
    latest = latest_revision(authored.id, targets)
    if authored.revision not in (0, latest + 1):
        raise RejectedInputError(
            f"{where}: revision: found {authored.revision}, expected {latest + 1} (one above the "
            f"published revision {latest}), or none to take it"
        )
    advisory = with_revision(authored, latest + 1)
    previous = next((a for a in library.advisories if a.id == advisory.id), None)
    sealed = previous is not None and previous.detail_state == "encrypted"
    if detail is None and previous is not None and previous.detail_sha256 is not None:
        if sealed:
            raise RejectedInputError(
                f"--detail: found none, expected the detail revision {previous.revision} "
                f"encrypted (SHA-256 {previous.detail_sha256}): each revision before disclosure "
                "carries it, encrypted again to today's entitled suppliers",
                hint=f"add --detail FILE (the same file), or publish it: cfl-repo advisory "
                f"disclose {advisory.id} --detail FILE ...",
            )
        if authored.detail is None:
            # Disclosed detail stays public: later revisions carry it forward as signed.
            advisory = replace(
                advisory, detail=previous.detail, detail_sha256=previous.detail_sha256
            )
    if (
        previous is not None
        and previous.detail_sha256 is not None
        and advisory.detail is not None
        and hashlib.sha256(advisory.detail.encode()).hexdigest() == previous.detail_sha256
    ):
        # The file's own public detail discloses it: keep the recorded hash beside it (another
        # detail is refused below, with the gateway's words).
        advisory = replace(advisory, detail_sha256=previous.detail_sha256)
    if detail is None:
        return sign_revision(
            advisory,
            manufacturer_id=manufacturer_id,
            signers=signers,
            library=library,
            now=now,
            expiry=expiry,
            previous=previous,
        ), advisory
    text = detail_text(detail, "--detail")
    # By default the embargo ends as late as allowed: the policy's bound, or the date an earlier
    # encrypted revision set (an embargo may end sooner, never later).
    when = disclose_at or (
        date.fromisoformat(authored.disclosure)
        if authored.disclosure is not None
        else date.fromisoformat(previous.disclosure)
        if sealed and previous is not None and previous.disclosure
        else (now + MAX_EMBARGO).date()
    )
    advisory = replace(
        advisory,
        disclosure=when.isoformat(),
        detail_target=detail_target_path(advisory.id, advisory.revision),
        detail_sha256=hashlib.sha256(detail).hexdigest(),
    )
    disclosed = replace(advisory, revision=advisory.revision + 1, detail=text, detail_target=None)
    if len(disclosed.to_bytes()) > MAX_ADVISORY_BYTES:
        raise RejectedInputError(
            f"--detail: found detail whose disclosed revision would be {len(disclosed.to_bytes())} "
            f"bytes, expected at most {MAX_ADVISORY_BYTES} (advisory-too-large at disclosure)"
        )
    encrypted = encrypt_detail_for_library(
        detail,
        advisory.target_path,
        advisory_detail.affected_device_types(advisory, library.cpl),
        library,
        now=now,
        rule=recipient_rule,
    )
    submission = sign_revision(
        advisory,
        manufacturer_id=manufacturer_id,
        signers=signers,
        library=library,
        now=now,
        expiry=expiry,
        previous=previous,
        detail=(encrypted.target_file, encrypted.envelope),
    )
    return replace(submission, recent_recipients=encrypted.recent), advisory


def detail_text(data: bytes, where: str) -> str:
    """The detail as the disclosed revision will carry it: UTF-8 text, non-empty, within the cap.

    Raises:
        RejectedInputError: empty, not UTF-8, or over ``LIMITS["detail"]`` characters.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RejectedInputError(
            f"{where}: found bytes that are not UTF-8 (at offset {e.start}), expected the detail "
            "as text (its disclosure publishes exactly these bytes)"
        ) from e
    if not text.strip() or len(text) > LIMITS["detail"]:
        raise RejectedInputError(
            f"{where}: found {len(text)} characters, expected 1 to {LIMITS['detail']} of text"
        )
    return text


def manufacturer_targets(library: PublishedLibrary, manufacturer_id: str) -> dict[str, TargetFile]:
    """Every published target of the manufacturer's role and bins."""
    targets: dict[str, TargetFile] = {}
    for name, md in library.role_metadata.items():
        if naming.owner_of_role(name) == manufacturer_id:
            targets.update(md.signed.targets)
    return targets


def sign_revision(
    advisory: Advisory,
    *,
    manufacturer_id: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta,
    previous: Advisory | None,
    detail: tuple[TargetFile, bytes] | None = None,
) -> Submission:
    """Check ``advisory`` as the gateway will, then sign it (and its encrypted ``detail``: target
    and ciphertext) into the role or the bins its paths go to.

    Raises:
        RejectedInputError: a gateway check fails, or the keys do not meet the threshold.
    """
    role_name = naming.role_name(manufacturer_id)
    current = library.role_metadata.get(role_name)
    if current is None:
        raise RejectedInputError(
            f"{role_name}: found no published role, expected one holding the firmware the "
            "advisory covers (deposit or enrol first)"
        )
    found = Findings()
    advisory_findings(
        advisory,
        manufacturer_id,
        library.cpl,
        manufacturer_targets(library, manufacturer_id),
        found,
    )
    advisory_detail.swap_findings(advisory, previous, found)
    advisory_detail.embargo_findings(
        advisory, previous, today=now.date(), max_embargo=MAX_EMBARGO, found=found
    )
    if found.items:
        raise RejectedInputError("; ".join(f"{f.code.value}: {f.message}" for f in found.items))
    data = advisory.to_bytes()
    target = TargetFile(
        len(data), {"sha256": hashlib.sha256(data).hexdigest()}, advisory.target_path
    )
    new_targets = [target] if detail is None else [target, detail[0]]
    split = submit_bins.published_split(library, manufacturer_id)
    if split is not None:
        main, md, others = submit_bins.deposit_into_bins(
            manufacturer_id=manufacturer_id,
            mfr_role=split,
            library=library,
            new_targets=new_targets,
            signers=signers,
            now=now,
            expiry=expiry,
        )
    else:
        main, others = "", ()
        signed = Metadata[Targets].from_bytes(current.to_bytes()).signed
        signed.version += 1
        signed.expires = now + expiry
        for new in new_targets:
            signed.targets[new.path] = new
        md = _signed(signed, signers, library, role_name)
    bundle = Bundle(
        manufacturer_id=manufacturer_id,
        target=target.path,
        declaration=Declaration((), "", ()),
        image=b"",
        role_bytes=md.to_bytes(),
        release_notes=None,
        kind=KIND_ADVISORY,
        role=main,
        bins=others,
        advisory=data,
        advisory_detail=None if detail is None else detail[1],
    )
    return Submission(bundle=bundle, role_version=md.signed.version)
