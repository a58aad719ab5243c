"""The manufacturer's side of an advisory: sign one revision into its role and write a bundle.

Like a deposit, it starts from the published library verified from a trusted root, takes the next
revision of the advisory's ID, adds exactly one target (the advisory's bytes, no custom), bumps the
role version (or the version of the hash bin the path goes to) and signs with the manufacturer's
own keys. The gateway's content checks (repo_tool/gateway/advisory.py) run here first, so what the
provider would refuse is refused on the manufacturer's machine with the same words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.advisory import Advisory, AdvisoryError, parse_authored, with_revision
from metadata_templates.errors import RejectedInputError
from repo_tool.gateway.advisory import advisory_findings, latest_revision
from repo_tool.gateway.model import Findings
from repo_tool.intake.bundle import KIND_ADVISORY, Bundle, Declaration
from repo_tool.submit import bins as submit_bins
from repo_tool.submit.deposit import DEFAULT_EXPIRY, Submission, _signed
from repo_tool.verify.published import PublishedLibrary


def build_advisory_submission(
    *,
    document: bytes,
    manufacturer_id: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta = DEFAULT_EXPIRY,
    where: str = "ADVISORY.json",
) -> tuple[Submission, Advisory]:
    """Sign the next revision of the advisory in ``document``.

    Raises:
        RejectedInputError: the document is not of the advisory format, names another manufacturer,
            entries not on the CPL or not this manufacturer's, fixes not in the library or that
            reach none of the affected devices, a revision other than the next; or the keys do not
            meet the published delegation's threshold.
    """
    try:
        authored = parse_authored(
            document, manufacturer_id=manufacturer_id, today=now.date().isoformat(), where=where
        )
    except AdvisoryError as e:
        raise RejectedInputError(str(e)) from e
    role_name = naming.role_name(manufacturer_id)
    current = library.role_metadata.get(role_name)
    if current is None:
        raise RejectedInputError(
            f"{role_name}: found no published role, expected one holding the firmware the "
            "advisory covers (deposit or enrol first)"
        )
    split = submit_bins.published_split(library, manufacturer_id)
    targets: dict[str, TargetFile] = {}
    for name, md in library.role_metadata.items():
        if naming.owner_of_role(name) == manufacturer_id:
            targets.update(md.signed.targets)
    latest = latest_revision(authored.id, targets)
    if authored.revision not in (0, latest + 1):
        raise RejectedInputError(
            f"{where}: revision: found {authored.revision}, expected {latest + 1} (one above the "
            f"published revision {latest}), or none to take it"
        )
    advisory = with_revision(authored, latest + 1)
    found = Findings()
    advisory_findings(advisory, manufacturer_id, library.cpl, targets, found)
    if found.items:
        raise RejectedInputError("; ".join(f"{f.code.value}: {f.message}" for f in found.items))
    data = advisory.to_bytes()
    target = TargetFile(
        len(data), {"sha256": hashlib.sha256(data).hexdigest()}, advisory.target_path
    )
    if split is not None:
        main, md, others = submit_bins.deposit_into_bins(
            manufacturer_id=manufacturer_id,
            mfr_role=split,
            library=library,
            new_targets=[target],
            signers=signers,
            now=now,
            expiry=expiry,
        )
    else:
        main, others = "", ()
        signed = Metadata[Targets].from_bytes(current.to_bytes()).signed
        signed.version += 1
        signed.expires = now + expiry
        signed.targets[target.path] = target
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
    )
    return Submission(bundle=bundle, role_version=md.signed.version), advisory
