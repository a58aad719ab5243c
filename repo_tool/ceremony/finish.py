"""The repository's last step, pure: does the proposal still apply, and do its signatures meet the
thresholds? python-tuf does every signature and threshold check."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates.errors import RejectedInputError, VerificationError
from repo_tool.ceremony.proposal import Proposal, SignatureFile, sha256_hex
from repo_tool.ceremony.sign import eligible_keys


def check_applies(
    proposal: Proposal, current_root: Metadata[Root], current_role: Metadata[Any]
) -> None:
    """Refuse a stale proposal: one built on a root or role version that is no longer current.

    Raises:
        RejectedInputError: the repository moved on since the proposal was started.
    """
    pairs: list[tuple[str, Metadata[Any], Metadata[Any]]] = [
        (Root.type, proposal.trusted_root, current_root)
    ]
    if proposal.role == Targets.type:
        pairs.append((Targets.type, proposal.previous, current_role))
    for name, built_on, current in pairs:
        if sha256_hex(built_on.signed_bytes) != sha256_hex(current.signed_bytes):
            raise RejectedInputError(
                f"proposal base: found {name} v{built_on.signed.version}, expected the current "
                f"{name} v{current.signed.version} (the repository changed since `ceremony start`; "
                "start a new ceremony)"
            )


def signed_metadata(
    proposal: Proposal, signatures: Sequence[tuple[str, SignatureFile]], *, now: datetime
) -> Metadata[Any]:
    """The proposal's metadata with the given signatures, verified against the thresholds.

    ``signatures`` pairs each signature file's name (for messages) with its content.

    Raises:
        RejectedInputError: a signature file is for another proposal, by a key that cannot sign this
            role, or duplicates another; the proposal has expired.
        VerificationError: a signature does not verify, or the threshold is not met (for root: of
            the current and of the new root).
    """
    md: Metadata[Any] = Metadata.from_dict(proposal.proposed.to_dict())
    keys = eligible_keys(proposal)
    payload = md.signed_bytes
    for source, sig_file in signatures:
        if sig_file.signed_sha256 != proposal.signed_sha256:
            raise RejectedInputError(
                f"{source}: signed_sha256: found {sig_file.signed_sha256[:16]}, expected "
                f"{proposal.signed_sha256[:16]} (a signature over another proposal)"
            )
        keyid = sig_file.signature.keyid
        if keyid not in keys:
            raise RejectedInputError(
                f"{source}: keyid: found {keyid[:8]}, expected one of the {proposal.role} keys "
                f"{sorted(k[:8] for k in keys)}"
            )
        if keyid in md.signatures:
            raise RejectedInputError(
                f"{source}: keyid: found a second signature by {keyid[:8]}, expected one per key"
            )
        try:
            keys[keyid].verify_signature(sig_file.signature, payload)
        except Exception as e:  # securesystemslib's UnverifiedSignatureError and friends
            raise VerificationError(
                f"{source}: signature by {keyid[:8]}: found one that does not verify over "
                f"{proposal.role} v{proposal.version}, expected a valid signature"
            ) from e
        md.signatures[keyid] = sig_file.signature
    if md.signed.expires <= now:
        raise RejectedInputError(
            f"{proposal.role} v{proposal.version} expires: found {md.signed.expires.isoformat()}, "
            f"expected a time after now ({now.isoformat()}); start a new ceremony"
        )
    if proposal.role == Root.type:
        _check_root(proposal, md)
    else:
        root = proposal.trusted_root.signed
        result = root.get_verification_result(Targets.type, payload, md.signatures)
        if not result.verified:
            raise VerificationError(_shortfall(f"targets v{proposal.version}", "targets", result))
    return md


def _check_root(proposal: Proposal, md: Metadata[Any]) -> None:
    new_root: Root = md.signed
    old_root: Root = proposal.trusted_root.signed
    result = new_root.get_root_verification_result(old_root, md.signed_bytes, md.signatures)
    if result.verified:
        return
    shortfalls = []
    if not result.first.verified:
        shortfalls.append(_shortfall(f"root v{new_root.version}", "current root's", result.first))
    if not result.second.verified:
        shortfalls.append(_shortfall(f"root v{new_root.version}", "new root's", result.second))
    raise VerificationError("; ".join(shortfalls))


def _shortfall(what: str, whose: str, result: Any) -> str:
    signed = sorted(k[:8] for k in result.signed)
    missing = sorted(k[:8] for k in result.unsigned)
    return (
        f"{what} signatures: found {len(result.signed)} valid by the {whose} keys {signed}, "
        f"expected at least {result.threshold} (not yet signed: {missing})"
    )
