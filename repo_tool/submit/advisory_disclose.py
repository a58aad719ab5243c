"""The manufacturer discloses an advisory's encrypted detail: the next revision carries it as text.

Only the manufacturer can: the detail is a field of a revision signed with its own keys, under its
own delegation, like every other. The plaintext must be the one the encrypted revisions recorded
(its SHA-256 is checked here, and again by the gateway: ``advisory-detail-swapped``), so what the
entitled suppliers read under embargo is what everyone reads after it. Disclosing before the
announced date is allowed (an exploit in the wild, a fix installed everywhere): the new revision's
``disclosure`` is the day it was actually disclosed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from securesystemslib.signer import Signer

from metadata_templates.advisory import ID_PATTERN, Advisory, with_revision
from metadata_templates.errors import RejectedInputError, field_error
from repo_tool.gateway.model import Code
from repo_tool.submit.advisory import detail_text, sign_revision
from repo_tool.submit.deposit import DEFAULT_EXPIRY, Submission
from repo_tool.verify.published import PublishedLibrary


def build_disclosure(
    *,
    advisory_id: str,
    detail: bytes,
    manufacturer_id: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta = DEFAULT_EXPIRY,
) -> tuple[Submission, Advisory]:
    """Sign the revision after the newest published one of ``advisory_id`` with ``detail`` public.

    Raises:
        RejectedInputError: no such advisory of this manufacturer, no encrypted detail to disclose
            (none, or public already), detail whose SHA-256 is not the one recorded, or the keys do
            not meet the published delegation's threshold.
    """
    match = ID_PATTERN.fullmatch(advisory_id)
    if match is None or match.group(1) != manufacturer_id:
        raise RejectedInputError(
            field_error(
                "ADVISORY_ID",
                advisory_id,
                f"an ID of manufacturer {manufacturer_id} (CFL-{manufacturer_id}-<YYYY>-<NNNN>)",
            )
        )
    previous = next((a for a in library.advisories if a.id == advisory_id), None)
    if previous is None:
        raise RejectedInputError(
            field_error("ADVISORY_ID", advisory_id, "an advisory published in the library")
        )
    if previous.detail_state != "encrypted":
        state = "public already" if previous.detail_state == "public" else "none"
        raise RejectedInputError(
            f"{advisory_id} revision {previous.revision} detail: found {state}, expected "
            "encrypted detail to disclose"
        )
    text = detail_text(detail, "--detail")
    actual = hashlib.sha256(detail).hexdigest()
    if actual != previous.detail_sha256:
        raise RejectedInputError(
            f"{Code.ADVISORY_DETAIL_SWAPPED.value}: --detail SHA-256: found {actual}, expected "
            f"{previous.detail_sha256} (the detail revision {previous.revision} recorded: the "
            "disclosed detail must be the one the entitled suppliers received)",
            hint="disclose the file you encrypted with `advisory submit --detail`, byte for byte",
        )
    today = now.date().isoformat()
    disclosed = replace(
        with_revision(previous, previous.revision + 1),
        detail=text,
        detail_target=None,
        disclosure=today,
        updated=max(today, previous.updated),
    )
    submission = sign_revision(
        disclosed,
        manufacturer_id=manufacturer_id,
        signers=signers,
        library=library,
        now=now,
        expiry=expiry,
        previous=previous,
    )
    return submission, disclosed
