"""Change a top-level role's keys or threshold through a new root version, in one commit."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.signing.keys import SignerRef, removed_by_last_commit, rotation_done, sign_or_explain
from repo_tool.state.config import TOP_LEVEL_ROLES
from repo_tool.state.repository import Repository


def rotate_keys(
    repo: Repository,
    role: str,
    *,
    add: list[SignerRef],
    remove: list[str],
    threshold: int | None,
    now: datetime,
) -> int | None:
    """Change a top-level role's keys or threshold through a new root version.

    The new root is signed by the current root keys (so clients holding the old root accept
    it) and, for a root rotation, by the new ones too (so it is valid on its own); both checks
    are python-tuf's before anything is written. Targets is re-signed with its new keys, and a
    fresh snapshot and timestamp are staged. Returns the new root version, or None when the
    keys are as asked already (the same command run again after its commit).

    Raises:
        RejectedInputError: unknown role or key ID, no key left, duplicate key, bad threshold.
        ConfigurationError: the signatures do not meet the old or the new root's threshold.
    """
    if role not in TOP_LEVEL_ROLES:
        raise RejectedInputError(
            f"ROLE: found {role!r}, expected one of {', '.join(TOP_LEVEL_ROLES)}"
        )
    current = list(repo.config.signers[role])
    if rotation_done(
        {ref.keyid: ref.uri for ref in current},
        repo.config.thresholds[role],
        add={ref.keyid: ref.uri for ref in add},
        remove=remove,
        threshold=threshold,
        removed=removed_by_last_commit(repo.head.last_events, "rotate-keys", role=role),
    ):
        return None  # the same command again, after its commit: nothing to change
    dropped = set()
    for prefix in remove:
        # An empty prefix (an unset shell variable) matches no key, and any case matches, as in
        # `manufacturer rotate-key` and `provider rotate-key`.
        matches = [ref.keyid for ref in current if prefix and ref.keyid.startswith(prefix.lower())]
        if len(matches) != 1:
            raise RejectedInputError(
                f"--remove: found {prefix!r} matching {len(matches)} {role} key(s), expected exactly one of "
                f"{[ref.keyid[:8] for ref in current]}"
            )
        dropped.add(matches[0])
    refs = [ref for ref in current if ref.keyid not in dropped] + list(add)
    keyids = [ref.keyid for ref in refs]
    if not refs or len(set(keyids)) != len(keyids):
        raise RejectedInputError(
            f"{role} keys: found {len(refs)} ({len(set(keyids))} distinct), expected >= 1, distinct"
        )
    new_threshold = threshold if threshold is not None else repo.config.thresholds[role]
    if not 1 <= new_threshold <= len(refs):
        raise ConfigurationError(
            f"--threshold: found {new_threshold}, expected 1..{len(refs)} ({role} keys)"
        )

    old_root = repo.root().signed
    new_root = (
        Metadata[Root].from_bytes(repo.metadata_bytes(Root.type, repo.head.root_version)).signed
    )
    new_root.version += 1
    new_root.expires = now + repo.config.policy.expiry(Root.type)
    for keyid in list(new_root.roles[role].keyids):
        new_root.revoke_key(keyid, role)
    for ref in refs:
        new_root.add_key(ref.public_key, role)
    new_root.roles[role].threshold = new_threshold
    md = Metadata(new_root)
    signing_refs = {ref.keyid: ref for ref in repo.signers(Root.type)}
    if role == Root.type:
        signing_refs.update({ref.keyid: ref for ref in refs})
    for ref in signing_refs.values():
        try:
            signer = repo.signer(ref)
        except ConfigurationError:
            if ref.keyid in dropped:
                continue  # a lost or compromised key being removed; the others must suffice
            raise
        sign_or_explain(md, signer, ref)  # an HSM's PIN error is one line
    # python-tuf's own check of a root update: the current root's threshold (so clients that
    # hold it accept the new one) and the new root's own threshold (so it stands alone).
    result = new_root.get_root_verification_result(old_root, md.signed_bytes, md.signatures)
    if not result.verified:
        failed = [
            name
            for name, part in (
                ("the current root", result.first),
                ("the new root", result.second),
            )
            if not part.verified
        ]
        raise ConfigurationError(
            f"root v{new_root.version}: signatures do not meet the threshold of {' and '.join(failed)}",
            hint="every root key holder whose key is still in root must be able to sign",
        )
    repo.write_metadata(Root.type, md)

    signers = dict(repo.config.signers) | {role: tuple(refs)}
    thresholds = dict(repo.config.thresholds) | {role: new_threshold}
    policy = repo.config.policy
    if role == Root.type:
        policy = replace(policy, root_keys=len(refs), root_threshold=new_threshold)
    new_config = replace(repo.config, signers=signers, thresholds=thresholds, policy=policy)

    # One transaction: the new root, targets re-signed by its (possibly new) keys, and a
    # snapshot and timestamp signed under the new root, so a crash never leaves a root whose
    # targets or snapshot no configured key can sign. The configuration travels in the event
    # and is written by _after_commit, which a re-run repeats if this process dies.
    head = replace(repo.head, root_version=new_root.version)
    if role == Targets.type:
        head = replace(
            head,
            targets_version=repo.stage_targets(
                lambda t: None, now, root=new_root, config=new_config
            ),
        )
    head = repo.sign_snapshot(head, now=now, root=new_root, config=new_config)
    repo.commit(
        head,
        event={
            "event": "rotate-keys",
            "at": format_timestamp(now),
            "role": role,
            "root_version": new_root.version,
            "added": [ref.keyid for ref in add],
            "removed": sorted(dropped),
            "threshold": new_threshold,
            "config": json.loads(new_config.to_bytes()),
        },
    )
    return new_root.version
