"""A key holder's step: check the signer may sign the proposal, sign, verify, return the signature.

Runs with no repository: everything it needs is in the proposal. The summary shown to the holder is
recomputed from the proposal's metadata (:mod:`repo_tool.ceremony.diff`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates.errors import CflError, RejectedInputError, UnavailableError
from repo_tool.ceremony.diff import root_changes, targets_changes
from repo_tool.ceremony.proposal import Proposal, SignatureFile


def summary(proposal: Proposal) -> list[str]:
    """What the proposal changes, computed from its own old and new metadata."""
    if proposal.role == Root.type:
        return root_changes(proposal.previous.signed, proposal.proposed.signed)
    lines = targets_changes(proposal.previous.signed, proposal.proposed.signed)
    # Enrolments (issue 13) travel beside what is signed; `finish` verifies each against the
    # delegation signed here, and the holders see which role bytes will be staged with it.
    lines += [
        f"enrolment {name}: role version 1 staged with the delegation "
        f"(sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]})"
        for name, text in proposal.enrolments
    ]
    for signer in proposal.online_signers:
        lines.append(
            f"online key {signer.keyid[:8]} of {signer.role}: the repository signs via {signer.uri}"
        )
    return lines


def eligible_keys(proposal: Proposal) -> dict[str, Key]:
    """Keys whose signatures count: for root, the old and the new root's root keys (a new root must
    meet both thresholds); for targets, the targets keys of the trusted root."""
    if proposal.role == Root.type:
        keys: dict[str, Key] = {}
        for root in (proposal.trusted_root.signed, proposal.proposed.signed):
            assert isinstance(root, Root)
            keys |= {k: root.keys[k] for k in root.roles[Root.type].keyids}
        return keys
    root = proposal.trusted_root.signed
    return {k: root.keys[k] for k in root.roles[Targets.type].keyids}


def sign_proposal(proposal: Proposal, signer: Signer) -> SignatureFile:
    """Sign the proposal's new metadata with ``signer`` and check the signature before returning it.

    Raises:
        RejectedInputError: the signer's key is not one of the keys that can sign this role, or the
            signature it made does not verify (a wrong key behind the URI).
        UnavailableError: the signer's device or service failed to sign.
    """
    keys = eligible_keys(proposal)
    keyid = signer.public_key.keyid
    if keyid not in keys:
        raise RejectedInputError(
            f"--signer: found key {keyid[:8]}, expected one of the {proposal.role} keys "
            f"{sorted(k[:8] for k in keys)}"
        )
    payload = proposal.proposed.signed_bytes
    try:
        signature = signer.sign(payload)
    except CflError:
        raise  # e.g. no PIN and no terminal: already one clear line
    except Exception as e:  # a device or KMS failing (wrong PIN, token absent, network)
        raise UnavailableError(
            f"--signer: key {keyid[:8]}: found it unable to sign ({e})",
            hint="check the device and its PIN (CFL_HSM_PIN) or passphrase (CFL_KEY_PASSPHRASE)",
        ) from e
    try:
        keys[keyid].verify_signature(signature, payload)
    except Exception as e:  # securesystemslib raises UnverifiedSignatureError and friends
        raise RejectedInputError(
            f"signature by {keyid[:8]}: found one that does not verify ({e}), expected a valid "
            "signature: the private key behind --signer does not match its public key"
        ) from e
    return SignatureFile(
        role=proposal.role,
        version=proposal.version,
        signed_sha256=proposal.signed_sha256,
        signature=signature,
    )


def check_against(proposal: Proposal, known: Metadata[Any], *, source: str) -> None:
    """Refuse a proposal built on a state other than one the holder knows to be current (e.g. the
    published ``N.root.json`` or ``N.targets.json``): otherwise a forged "previous" could make a
    hostile change look harmless in the summary.

    Raises:
        RejectedInputError: ``known`` is neither root nor targets, or differs from what the proposal
            says is current.
    """
    if isinstance(known.signed, Root):
        built_on: Metadata[Any] = proposal.trusted_root
    elif isinstance(known.signed, Targets) and proposal.role == Targets.type:
        built_on = proposal.previous
    else:
        raise RejectedInputError(
            f"--against {source}: found {known.signed.type} metadata, expected root (or targets for "
            "a targets proposal)"
        )
    if built_on.signed_bytes != known.signed_bytes:
        raise RejectedInputError(
            f"--against {source}: found {known.signed.type} v{known.signed.version}, but the proposal "
            f"is built on v{built_on.signed.version} with other content; refuse to sign it"
        )
