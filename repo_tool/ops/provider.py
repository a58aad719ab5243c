"""The online ``cfl-provider`` delegation (issue 13): adopt it in an existing repository, rotate its
keys. Each change is a new targets delegation, so it is direct when the targets key is at hand and a
targets ceremony proposal when it is offline; either way the one commit that makes the new targets
current also stages the ``cfl-provider`` version signed by the delegated keys (`provider_after_targets`,
which `repo_tool.ops.ceremony.finish_ceremony` calls too), so a client never meets a delegation whose role is
missing or signed by keys it no longer names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.naming import SPEC_VERSION
from repo_tool.signing.keys import OFFLINE_URI, SignerRef, removed_by_last_commit, rotation_done
from repo_tool.signing.provider_role import (
    delegate_provider,
    first_provider_role,
    provider_keys,
    take_provider_targets,
)
from repo_tool.state.config import RepoConfig
from repo_tool.state.repository import Repository

PROVIDER = naming.PROVIDER_ROLE


@dataclass(frozen=True)
class ProviderChange:
    """What `adopt` or `rotate_key` did.

    Attributes:
        targets_version: the committed targets version (None when a proposal was written).
        provider_version: the committed ``cfl-provider`` version (None with a proposal).
        moved: provider documents moved from targets into ``cfl-provider`` (adoption).
        keyids: the delegation's key IDs after the change.
        proposal: the targets ceremony proposal (targets key offline), else None.
        already: the repository had this change already (a re-run); nothing was done.
    """

    targets_version: int | None
    provider_version: int | None
    moved: tuple[str, ...]
    keyids: tuple[str, ...]
    proposal: Any = None
    already: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets_version": self.targets_version,
            "provider_version": self.provider_version,
            "moved": list(self.moved),
            "keyids": list(self.keyids),
            "proposal": self.proposal is not None,
            "already": self.already,
        }


def adopt(
    repo: Repository,
    keys: Sequence[SignerRef],
    threshold: int,
    *,
    now: datetime,
    ceremony: bool,
) -> ProviderChange:
    """Delegate ``cfl/...`` to a new ``cfl-provider`` role signed by ``keys`` and move every
    provider document from targets into its version 1, byte for byte, in one commit (or one
    targets ceremony proposal when ``ceremony``).

    Raises:
        RejectedInputError: no key, or a threshold outside 1..number of keys.
        ConfigurationError: the targets key is offline and no ceremony was asked for, or a
            ``cfl-provider`` key cannot sign.
    """
    if repo.provider_delegated:
        keyids = tuple(ref.keyid for ref in repo.config.signers.get(PROVIDER, ()))
        return ProviderChange(repo.head.targets_version, _version(repo), (), keyids, already=True)
    _refuse_keys_of_other_roles(repo, keys, "--key")
    public = [ref.public_key for ref in keys]
    moved = tuple(p for p in sorted(repo.targets().signed.targets) if naming.is_provider_target(p))

    def change(targets: Targets) -> None:
        take_provider_targets(targets)
        delegate_provider(targets, public, threshold)

    return _change_delegation(
        repo, change, keys, now=now, ceremony=ceremony, moved=moved, event="provider-adopt"
    )


def rotate_key(
    repo: Repository,
    add: Sequence[SignerRef],
    remove: Sequence[str],
    threshold: int | None,
    *,
    now: datetime,
    ceremony: bool,
) -> ProviderChange:
    """Replace ``cfl-provider`` keys (a compromised online key): the new delegation and the role
    re-signed by the new keys commit together; no root change.

    Raises:
        RejectedInputError: no such role, a key ID prefix matching no or several keys, or a
            threshold outside 1..number of keys.
        ConfigurationError: the targets key is offline and no ceremony was asked for.
    """
    delegated = provider_keys(repo.targets().signed) if repo.provider_delegated else None
    if delegated is None:
        raise ConfigurationError(
            f"{PROVIDER}: found no such delegation, expected one to rotate",
            hint=f"adopt it first: cfl-repo --repo {repo.path} provider adopt --key PUB.pem URI",
        )
    current, old_threshold = delegated
    configured = {ref.keyid: ref.uri for ref in repo.config.signers.get(PROVIDER, ())}
    if rotation_done(
        {k.keyid: configured.get(k.keyid) for k in current},
        old_threshold,
        add={ref.keyid: ref.uri for ref in add},
        remove=remove,
        threshold=threshold,
        removed=removed_by_last_commit(repo.head.last_events, "provider-rotate-key"),
    ):
        # A re-run after the rotation committed (killed before it could say so, or run twice):
        # the same command must succeed and change nothing.
        return ProviderChange(
            repo.head.targets_version,
            repo.head.roles.get(PROVIDER),
            (),
            tuple(k.keyid for k in current),
            already=True,
        )
    dropped: set[str] = set()
    for prefix in remove:
        matches = [k.keyid for k in current if prefix and k.keyid.startswith(prefix.lower())]
        if len(matches) != 1:
            raise RejectedInputError(
                f"--remove: found {prefix!r} matching {len(matches)} {PROVIDER} key(s), expected "
                f"exactly one of {[k.keyid[:8] for k in current]}"
            )
        dropped.add(matches[0])
    for ref in add:
        if any(k.keyid == ref.keyid for k in current):
            raise RejectedInputError(
                f"--add: found key {ref.keyid[:8]} among the {PROVIDER} keys already, "
                "expected a new key"
            )
    _refuse_keys_of_other_roles(repo, add, "--add")
    public: list[Key] = [k for k in current if k.keyid not in dropped]
    public += [ref.public_key for ref in add]
    new_threshold = threshold if threshold is not None else min(old_threshold, len(public))

    def change(targets: Targets) -> None:
        delegate_provider(targets, public, new_threshold)

    return _change_delegation(
        repo,
        change,
        add,
        now=now,
        ceremony=ceremony,
        moved=(),
        event="provider-rotate-key",
        removed=tuple(sorted(dropped)),
    )


def _refuse_keys_of_other_roles(repo: Repository, keys: Sequence[SignerRef], option: str) -> None:
    """Refuse a key another role holds: a top-level key would be put online, and a
    manufacturer's key would let that manufacturer sign the CPL and withdrawals.

    Raises:
        RejectedInputError: a key is a root, targets, snapshot or timestamp key, or a
            registered manufacturer's (current or retiring).
    """
    from repo_tool.ops.manufacturers import key_owners

    root = repo.root().signed
    owners = {
        keyid: name
        for name, role in root.roles.items()
        for keyid in role.keyids
        if any(ref.keyid == keyid for ref in keys)
    }
    owners |= {
        keyid: f"manufacturer {mfr}"
        for keyid, mfr in key_owners(repo, {ref.keyid for ref in keys}).items()
    }
    if owners:
        raise RejectedInputError(
            f"{option}: found key(s) {sorted(k[:8] for k in owners)} held by "
            f"{sorted(set(owners.values()))}, expected a key no other role holds"
        )


def _change_delegation(
    repo: Repository,
    change: Any,
    online: Sequence[SignerRef],
    *,
    now: datetime,
    ceremony: bool,
    moved: tuple[str, ...],
    event: str,
    removed: tuple[str, ...] = (),
) -> ProviderChange:
    from repo_tool.ceremony.proposal import OnlineSigner
    from repo_tool.ceremony.start import propose_targets

    if ceremony:
        proposal = propose_targets(
            repo.root(),
            repo.targets(),
            now=now,
            expires_in=repo.config.policy.expiry(Targets.type),
            change=change,
        )
        # Where the repository will find each new online key once the holders have signed.
        signers = tuple(OnlineSigner(PROVIDER, ref.keyid, ref.uri) for ref in online)
        proposal = replace(proposal, online_signers=signers)
        delegated = provider_keys(proposal.proposed.signed)
        assert delegated is not None
        keyids = tuple(sorted(k.keyid for k in delegated[0]))
        return ProviderChange(None, None, moved, keyids, proposal=proposal)
    if repo.held_offline(Targets.type):
        raise ConfigurationError(
            "targets: the configured keys do not meet its threshold (held offline), expected them "
            "for a direct change of the cfl-provider delegation",
            hint="add --proposal FILE to write a targets ceremony proposal instead",
        )
    targets_version = repo.stage_targets(change, now)
    new_targets = Metadata[Targets].from_bytes(repo.metadata_bytes(Targets.type, targets_version))
    online_uris = {ref.keyid: ref.uri for ref in online}
    followed = provider_after_targets(repo, new_targets.signed, online_uris, now=now)
    assert followed is not None  # the change delegated cfl-provider
    config, version = followed
    head = replace(
        repo.head, targets_version=targets_version, roles={**repo.head.roles, PROVIDER: version}
    )
    keyids = tuple(ref.keyid for ref in config.signers[PROVIDER])
    repo.commit(
        head,
        event={
            "event": event,
            "at": format_timestamp(now),
            "targets_version": targets_version,
            "provider_version": version,
            "moved": list(moved),
            "keyids": list(keyids),
            "removed": list(removed),  # what tells a re-run from a typo (keys.rotation_done)
            "config": json.loads(config.to_bytes()),
        },
    )
    return ProviderChange(targets_version, version, moved, keyids)


def provider_after_targets(
    repo: Repository, new_targets: Targets, online: Mapping[str, str], *, now: datetime
) -> tuple[RepoConfig, int] | None:
    """Stage the ``cfl-provider`` version that ``new_targets`` (not yet committed) needs, when its
    delegation is new or names other keys: version 1 holding the provider documents targets gave
    up (adoption), or the next version re-signed by the new keys (rotation). Returns the
    configuration that names those keys (``online`` gives URIs of new online keys; any other new
    key is recorded ``offline:``) and the staged version, or None when nothing changes.

    Raises:
        ConfigurationError: the keys the repository holds do not meet the new threshold.
    """
    delegated = provider_keys(new_targets)
    if delegated is None:
        return None
    keys, threshold = delegated
    config = repo.config
    current = provider_keys(repo.targets().signed) if repo.provider_delegated else None
    if current is not None and (
        sorted(k.keyid for k in current[0]),
        current[1],
    ) == (sorted(k.keyid for k in keys), threshold):
        return None
    known = {ref.keyid: ref.uri for refs in config.signers.values() for ref in refs}
    known |= dict(online)
    refs = tuple(SignerRef(k, known.get(k.keyid, OFFLINE_URI)) for k in keys)
    config = replace(
        config,
        signers={**config.signers, PROVIDER: refs},
        thresholds={**config.thresholds, PROVIDER: threshold},
    )
    if repo.provider_delegated:
        version = repo.stage_provider_role(
            lambda t: None, now, delegator=new_targets, config=config
        )
        return config, version
    old = repo.targets().signed.targets
    moved = {
        p: t
        for p, t in old.items()
        if naming.is_provider_target(p) and p not in new_targets.targets
    }
    if repo.head.suspended:
        # A suspension the gateway enforces but an offline targets key could not publish yet.
        from repo_tool.ops.manufacturer_keys import SUSPENSIONS_TARGET_PATH, suspensions_document

        document = suspensions_document(repo.head.suspended)
        sha = repo.blobs.put(document)
        moved[SUSPENSIONS_TARGET_PATH] = TargetFile(
            len(document), {"sha256": sha}, SUSPENSIONS_TARGET_PATH
        )
    role = first_provider_role(
        moved, now=now, expires_in=config.policy.expiry(PROVIDER), spec_version=SPEC_VERSION
    )
    md = repo.sign(Metadata(role), PROVIDER, delegator=new_targets, config=config)
    repo.write_metadata(PROVIDER, md)
    return config, 1


def _version(repo: Repository) -> int:
    return repo.head.roles[PROVIDER]
