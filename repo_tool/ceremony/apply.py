"""What a finished ceremony changes besides the metadata itself. Pure: values in, values out.

- After a root ceremony the repository's configuration follows the new root: the keys of each
  top-level role, their thresholds, and where each private half lives. A key the repository cannot use
  itself (a key holder's offline key) is recorded with the ``offline:`` URI.
- After a targets ceremony the registered manufacturers follow the delegations the key holders signed,
  so the gateway checks deposits against exactly the keys clients will trust.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tuf.api.metadata import Root, Targets

from metadata_templates import naming
from repo_tool.ceremony.proposal import OnlineSigner
from repo_tool.signing.keys import OFFLINE_URI, SignerRef
from repo_tool.state.config import TOP_LEVEL_ROLES, RepoConfig
from repo_tool.state.retirement import retiring_keyids

if TYPE_CHECKING:
    from repo_tool.state.head import Head, ManufacturerRecord


def config_after_root(
    config: RepoConfig, root: Root, online_signers: tuple[OnlineSigner, ...]
) -> RepoConfig:
    """The configuration that matches ``root``: known URIs are kept, new online keys take the URI
    the proposal names, any other new key is a key holder's (``offline:``)."""
    known = {ref.keyid: ref.uri for refs in config.signers.values() for ref in refs}
    known |= {s.keyid: s.uri for s in online_signers}
    signers = {
        role: tuple(
            SignerRef(root.keys[keyid], known.get(keyid, OFFLINE_URI))
            for keyid in root.roles[role].keyids
        )
        for role in TOP_LEVEL_ROLES
    }
    thresholds = {role: root.roles[role].threshold for role in TOP_LEVEL_ROLES}
    # The online cfl-provider role's keys live in targets, not root: a root ceremony keeps them.
    signers |= {r: refs for r, refs in config.signers.items() if r not in TOP_LEVEL_ROLES}
    thresholds |= {r: t for r, t in config.thresholds.items() if r not in TOP_LEVEL_ROLES}
    policy = replace(
        config.policy,
        root_keys=len(root.roles[Root.type].keyids),
        root_threshold=root.roles[Root.type].threshold,
    )
    return replace(config, signers=signers, thresholds=thresholds, policy=policy)


def manufacturers_after_targets(
    manufacturers: dict[str, ManufacturerRecord], targets: Targets
) -> dict[str, ManufacturerRecord]:
    """Registered manufacturers with the keys and threshold their signed delegation now holds.

    Keys the delegation marks as retiring stay out of the gateway's set: a retired key never again
    admits a deposit.
    """
    delegations = targets.delegations
    roles = dict(delegations.roles or {}) if delegations else {}
    updated = dict(manufacturers)
    for mfr_id, record in manufacturers.items():
        role = roles.get(f"mfr-{mfr_id}")
        if role is None or delegations is None:
            continue
        retiring_ids = retiring_keyids(role)
        keys = {
            keyid: delegations.keys[keyid].to_dict()
            for keyid in role.keyids
            if keyid not in retiring_ids
        }
        retiring = {
            keyid: delegations.keys[keyid].to_dict()
            for keyid in role.keyids
            if keyid in retiring_ids
        }
        if (keys, role.threshold, retiring) != (record.keys, record.threshold, record.retiring):
            updated[mfr_id] = replace(
                record, keys=keys, threshold=role.threshold, retiring=retiring
            )
    return updated


def provider_documents_after_targets(head: Head, targets: Targets) -> dict[str, str | None]:
    """The head fields that name provider documents, following the signed targets: a CPL import or
    a withdrawal carried by a targets ceremony takes effect when the holders' signatures commit it.
    (A provider document added later needs its line here.)"""
    fields = {
        "cpl_sha256": naming.CPL_TARGET_PATH,
        "withdrawals_sha256": naming.WITHDRAWALS_TARGET_PATH,
        "suppliers_sha256": naming.SUPPLIERS_TARGET_PATH,
        "releases_sha256": naming.RELEASES_TARGET_PATH,
        "outcomes_sha256": naming.OUTCOMES_TARGET_PATH,
    }
    updated: dict[str, str | None] = {}
    for field_name, path in fields.items():
        target = targets.targets.get(path)
        if target is not None:
            updated[field_name] = target.hashes["sha256"]
        else:
            updated[field_name] = getattr(head, field_name)
    return updated
