"""Register a manufacturer, and the delegation its first accepted deposit adds to targets; change a
registered manufacturer's record and delegation, directly or as a targets ceremony proposal (key
rotation and retirement, repo_tool/ops/manufacturer_keys.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Delegations, Targets

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.ceremony.start import propose_targets
from repo_tool.gateway.roles import manufacturer_delegation
from repo_tool.state.head import ManufacturerRecord
from repo_tool.state.repository import Repository
from repo_tool.state.retirement import mark_retiring, prune_unused_keys


def add_manufacturer(
    repo: Repository,
    manufacturer_id: str,
    name: str,
    keys: Sequence[Key],
    threshold: int,
    *,
    now: datetime,
) -> ManufacturerRecord:
    """Register a manufacturer's keys. Its delegation appears with its first accepted deposit,
    so the published targets never delegate to a role that has no metadata (which would break
    every client that walks the delegations).

    Raises:
        RejectedInputError: already registered, no keys, duplicate keys, or a bad threshold.
    """
    if manufacturer_id in repo.head.manufacturers:
        raise RejectedInputError(
            f"manufacturer {manufacturer_id}: found it registered already, expected a new manufacturer ID",
            hint="key rotation for a registered manufacturer is not supported yet",
        )
    if not name.strip() or not name.isprintable() or len(name) > 200:
        raise ConfigurationError(
            f"--name: found {name[:60]!r}, expected 1 to 200 printable characters"
        )
    keyids = {key.keyid for key in keys}
    if not keys or len(keyids) != len(keys):
        raise ConfigurationError(
            f"--key: found {len(keys)} key(s), {len(keyids)} distinct; expected >= 1, distinct"
        )
    if not 1 <= threshold <= len(keys):
        raise ConfigurationError(
            f"--threshold: found {threshold}, expected 1..{len(keys)} (the number of keys)"
        )
    shared = key_owners(repo, keyids)
    if shared:
        # One key for two manufacturers would let either sign images into the other's prefix.
        raise RejectedInputError(
            f"--key: found key(s) {sorted(k[:8] for k in shared)} registered to manufacturer(s) "
            f"{sorted(set(shared.values()))}, expected keys no other manufacturer holds"
        )
    record = ManufacturerRecord(
        id=manufacturer_id,
        name=name,
        keys={key.keyid: key.to_dict() for key in keys},
        threshold=threshold,
        registered=format_timestamp(now),
    )
    manufacturers = dict(repo.head.manufacturers)
    manufacturers[manufacturer_id] = record
    repo.commit(
        replace(repo.head, manufacturers=manufacturers),
        event={
            "event": "manufacturer-add",
            "at": format_timestamp(now),
            "manufacturer": manufacturer_id,
            "keyids": sorted(keyids),
            "threshold": threshold,
        },
    )
    return record


def key_owners(repo: Repository, keyids: set[str], *, besides: str | None = None) -> dict[str, str]:
    """Which of ``keyids`` another registered manufacturer holds (keyid -> manufacturer ID),
    current or retiring keys alike; ``besides`` is the manufacturer asking, left out."""
    owners: dict[str, str] = {}
    for mfr_id, record in repo.head.manufacturers.items():
        if mfr_id == besides:
            continue
        for keyid in keyids & (set(record.keys) | set(record.retiring)):
            owners[keyid] = mfr_id
    return owners


def delegate(targets: Targets, manufacturer: ManufacturerRecord) -> None:
    """Add the manufacturer's delegation: its keys, its threshold, its one path prefix, terminating."""
    if targets.delegations is None:
        targets.delegations = Delegations(keys={}, roles={})
    assert targets.delegations.roles is not None
    # Retiring keys stay delegated until the manufacturer has re-signed with its new keys
    # (repo_tool/ops/manufacturer_keys.py), so no lodged image becomes unverifiable mid-rotation.
    keys = manufacturer.keys | manufacturer.retiring
    role = manufacturer_delegation(manufacturer.id, list(keys), manufacturer.threshold)
    for keyid, key in keys.items():
        targets.delegations.keys[keyid] = Key.from_dict(keyid, dict(key))
    roles = dict(targets.delegations.roles)
    roles[role.name] = role
    targets.delegations.roles = dict(sorted(roles.items()))


def redelegate(targets: Targets, manufacturer: ManufacturerRecord) -> None:
    """A changed delegation (key rotation), without keys that no role lists any more."""
    delegate(targets, manufacturer)
    mark_retiring(targets, manufacturer)
    prune_unused_keys(targets)


def update_manufacturer(
    repo: Repository,
    record: ManufacturerRecord,
    *,
    now: datetime,
    event: dict[str, Any],
) -> bool:
    """Replace a manufacturer's record; when it is delegated already, re-sign targets with the
    delegation that follows it (needs the targets key online). Returns whether targets changed.

    Raises:
        ConfigurationError: the targets key is offline (use a targets ceremony instead).
    """
    head = repo.head
    manufacturers = dict(head.manufacturers) | {record.id: record}
    targets_version = head.targets_version
    delegated = naming.role_name(record.id) in head.roles
    if delegated:
        targets_version = repo.stage_targets(lambda t: redelegate(t, record), now)
    repo.commit(
        replace(head, manufacturers=manufacturers, targets_version=targets_version),
        event=event,
    )
    return delegated


def propose_manufacturer(repo: Repository, record: ManufacturerRecord, *, now: datetime) -> Any:
    """A targets ceremony proposal that changes one manufacturer's delegation to ``record``."""
    return propose_targets(
        repo.root(),
        repo.targets(),
        now=now,
        expires_in=repo.config.policy.expiry(Targets.type),
        change=lambda t: redelegate(t, record),
    )
