"""Manufacturer key rotation, retirement and suspension.

Rotation is make-before-break. ``rotate-key`` switches the gateway to the new key set at once (a
deposit or renewal signed only by a retired key is rejected from then on), while the published
delegation keeps the retired keys as *retiring* until the manufacturer has re-signed its role with the
new keys: clients must still verify the role version that was signed with the old ones, and a
retiring key cannot smuggle anything to a client because snapshot pins every admitted role version by
hash. ``retire-keys`` drops them from the delegation once the re-signed role is staged.

Suspension stops new images from a manufacturer through the gateway and publishes the fact as a
provider-signed list (``cfl/suspensions.json``). The delegation stays: removing it would make every
image that manufacturer ever lodged unverifiable, and what is lodged is never silently removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import Key
from tuf.api.metadata import Delegations, TargetFile, Targets

from metadata_templates import SCHEMA_VERSION, naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.gateway.roles import manufacturer_delegation
from repo_tool.ops.manufacturers import key_owners, propose_manufacturer, update_manufacturer
from repo_tool.signing.keys import removed_by_last_commit, rotation_done

# What ``rotate_key`` returns when the rotation asked for is in place already.
ALREADY = "already"
# The provider-signed list of suspended manufacturers (`suspensions_document`).
SUSPENSIONS_TARGET_PATH = "cfl/suspensions.json"

if TYPE_CHECKING:
    from repo_tool.state.head import ManufacturerRecord
    from repo_tool.state.repository import Repository


def rotated_record(
    record: ManufacturerRecord,
    *,
    add: Sequence[Key],
    remove: Sequence[str],
    threshold: int | None,
    delegated: bool,
) -> ManufacturerRecord:
    """The manufacturer's record after adding ``add`` and revoking ``remove`` (key IDs or unique
    prefixes). Pure.

    Raises:
        RejectedInputError: an unknown or ambiguous key ID, or a key added twice.
        ConfigurationError: nothing to change, no key left, or a threshold outside 1..number of keys.
    """
    if not add and not remove and threshold is None:
        raise ConfigurationError(
            "rotate-key: found nothing to change, expected --add, --remove or --threshold"
        )
    keys = dict(record.keys)
    dropped: dict[str, dict[str, Any]] = {}
    for prefix in remove:
        matches = [k for k in keys if prefix and k.startswith(prefix.lower())]
        if len(matches) != 1:
            raise RejectedInputError(
                f"--remove: found {prefix!r} matching {len(matches)} key(s) of {record.id}, "
                f"expected exactly one of {sorted(k[:8] for k in keys)}"
            )
        dropped[matches[0]] = keys.pop(matches[0])
    for key in add:
        if key.keyid in keys or key.keyid in dropped:
            raise RejectedInputError(
                f"--add: found key {key.keyid[:8]} registered for {record.id} already, expected a new key"
            )
        keys[key.keyid] = key.to_dict()
    new_threshold = threshold if threshold is not None else record.threshold
    if not keys or not 1 <= new_threshold <= len(keys):
        raise ConfigurationError(
            f"--threshold: found {new_threshold} with {len(keys)} key(s) left for {record.id}, "
            f"expected 1..{max(len(keys), 1)} and at least one key"
        )
    retiring = dict(record.retiring)
    if delegated:
        retiring |= dropped  # clients still need them for the role version signed before
    for keyid in keys:
        retiring.pop(keyid, None)
    return replace(record, keys=keys, threshold=new_threshold, retiring=retiring)


def role_verifies_with(record: ManufacturerRecord, role_bytes: bytes) -> tuple[bool, int, int]:
    """Whether a staged manufacturer role meets the threshold of the record's current keys alone.

    Returns (verified, valid signatures, threshold).
    """
    from tuf.api.metadata import Metadata

    role = manufacturer_delegation(record.id, list(record.keys), record.threshold)
    delegator = Targets(
        delegations=Delegations(
            keys={k: Key.from_dict(k, dict(v)) for k, v in record.keys.items()},
            roles={role.name: role},
        )
    )
    md = Metadata[Targets].from_bytes(role_bytes)
    result = delegator.get_verification_result(role.name, md.signed_bytes, md.signatures)
    return result.verified, len(result.signed), result.threshold


def suspensions_document(suspended: dict[str, dict[str, str]]) -> bytes:
    """The provider-signed list of suspended manufacturers (target ``cfl/suspensions.json``)."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "suspensions": [
            {"manufacturer_id": k, "reason": v["reason"], "suspended": v["at"]}
            for k, v in sorted(suspended.items())
        ],
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def _record(repo: Repository, manufacturer_id: str) -> ManufacturerRecord:
    record = repo.head.manufacturers.get(manufacturer_id)
    if record is None:
        raise RejectedInputError(
            f"ID: found {manufacturer_id!r}, expected a registered manufacturer "
            f"{sorted(repo.head.manufacturers)}"
        )
    return record


def rotate_key(
    repo: Repository,
    manufacturer_id: str,
    *,
    add: Sequence[Key],
    remove: Sequence[str],
    threshold: int | None,
    now: datetime,
    ceremony: bool,
) -> Any:
    """Rotate a manufacturer's keys. Directly (targets re-signed with the online-configured targets
    key) unless ``ceremony``: then nothing is committed and a targets ceremony proposal is returned;
    `ceremony finish` commits the delegation and the gateway's keys together.

    Returns the proposal (ceremony), ``ALREADY`` when the keys are as asked already (a re-run),
    or None.

    Raises:
        RejectedInputError: unknown manufacturer or a bad key change.
        ConfigurationError: direct rotation but the targets key is offline.
    """
    record = _record(repo, manufacturer_id)
    shared = key_owners(repo, {k.keyid for k in add}, besides=manufacturer_id)
    if shared:
        # One key for two manufacturers would let either sign images into the other's prefix.
        raise RejectedInputError(
            f"--add: found key(s) {sorted(k[:8] for k in shared)} registered to manufacturer(s) "
            f"{sorted(set(shared.values()))}, expected a key no other manufacturer holds"
        )
    delegated = naming.role_name(manufacturer_id) in repo.head.roles
    if rotation_done(
        dict.fromkeys(record.keys),
        record.threshold,
        add=dict.fromkeys(k.keyid for k in add),
        remove=remove,
        threshold=threshold,
        # a rotation of a delegated manufacturer keeps the keys it removed as retiring
        removed=set(record.retiring)
        | removed_by_last_commit(
            repo.head.last_events, "manufacturer-rotate-key", manufacturer=manufacturer_id
        ),
    ):
        return ALREADY  # the same command again, after its commit: nothing to change
    new = rotated_record(record, add=add, remove=remove, threshold=threshold, delegated=delegated)
    if ceremony:
        if not delegated:
            raise RejectedInputError(
                f"--proposal: {manufacturer_id} has no delegation yet (no deposit), expected a "
                "delegated manufacturer; rotate without --proposal, it changes no signed metadata"
            )
        return propose_manufacturer(repo, new, now=now)
    update_manufacturer(
        repo,
        new,
        now=now,
        event={
            "event": "manufacturer-rotate-key",
            "at": format_timestamp(now),
            "manufacturer": manufacturer_id,
            "added": sorted(k.keyid for k in add),
            "removed": sorted(set(record.keys) - set(new.keys)),
            "threshold": new.threshold,
        },
    )
    return None


def retire_keys(repo: Repository, manufacturer_id: str, *, now: datetime, ceremony: bool) -> Any:
    """Drop retiring keys from the delegation once the staged role verifies with the new keys alone.

    Returns the proposal (ceremony) or None.

    Raises:
        RejectedInputError: nothing is retiring, or the staged role is still signed by old keys only.
    """
    record = _record(repo, manufacturer_id)
    if not record.retiring:
        raise RejectedInputError(
            f"{manufacturer_id}: found no retiring keys, expected a rotation awaiting retirement"
        )
    role_name = naming.role_name(manufacturer_id)
    verified, valid, needed = role_verifies_with(
        record, repo.metadata_bytes(role_name, repo.head.roles[role_name])
    )
    if not verified:
        raise RejectedInputError(
            f"{role_name} v{repo.head.roles[role_name]}: found {valid} signature(s) by the new keys, "
            f"expected {needed}; ingest the manufacturer's `submit --renew` signed with the new keys first"
        )
    new = replace(record, retiring={})
    if ceremony:
        return propose_manufacturer(repo, new, now=now)
    update_manufacturer(
        repo,
        new,
        now=now,
        event={
            "event": "manufacturer-retire-keys",
            "at": format_timestamp(now),
            "manufacturer": manufacturer_id,
            "retired": sorted(record.retiring),
        },
    )
    return None


def set_suspended(
    repo: Repository,
    suspended: dict[str, dict[str, str]],
    document: bytes,
    *,
    now: datetime,
    event: dict[str, Any],
) -> bool:
    """Record the suspended manufacturers; publish the list as ``cfl/suspensions.json`` when
    the targets key is online. Returns whether the list was published in targets."""
    sha = repo.blobs.put(document)

    def change(targets: Targets) -> None:
        targets.targets[SUSPENSIONS_TARGET_PATH] = TargetFile(
            len(document), {"sha256": sha}, SUSPENSIONS_TARGET_PATH
        )

    head = repo.head
    # Offline targets key and no cfl-provider: the gateway enforces it now, the next targets
    # ceremony signs it.
    signing_role = naming.PROVIDER_ROLE if repo.provider_delegated else Targets.type
    published = not repo.held_offline(signing_role)
    if published:
        head = repo.stage_provider_change(change, now)
    repo.commit(replace(head, suspended=suspended), event=event)
    return published


def suspend(repo: Repository, manufacturer_id: str, reason: str, *, now: datetime) -> bool:
    """Suspend a manufacturer: a recorded event; its new deposits are rejected from now on.

    Returns whether the suspension list was published in targets (False: the targets key is
    offline; the gateway enforces it now and the next targets ceremony publishes it).

    Raises:
        RejectedInputError: unknown manufacturer, suspended already, or no reason.
    """
    _record(repo, manufacturer_id)
    if not reason.strip() or not reason.isprintable() or len(reason) > 500:
        raise RejectedInputError(
            f"--reason: found {reason[:60]!r}, expected why the manufacturer is suspended "
            "(1 to 500 printable characters)"
        )
    if manufacturer_id in repo.head.suspended:
        raise RejectedInputError(
            f"ID: found {manufacturer_id} suspended already since "
            f"{repo.head.suspended[manufacturer_id]['at']}, expected a manufacturer in good standing"
        )
    at = format_timestamp(now)
    suspended = dict(repo.head.suspended) | {manufacturer_id: {"reason": reason.strip(), "at": at}}
    return bool(
        set_suspended(
            repo,
            suspended,
            suspensions_document(suspended),
            now=now,
            event={
                "event": "manufacturer-suspend",
                "at": at,
                "manufacturer": manufacturer_id,
                "reason": reason.strip(),
            },
        )
    )


def resume(repo: Repository, manufacturer_id: str, reason: str, *, now: datetime) -> bool:
    """Lift a suspension (a recorded event). Returns whether the list was published in targets.

    Raises:
        RejectedInputError: the manufacturer is not suspended.
        ConfigurationError: no reason.
    """
    if manufacturer_id not in repo.head.suspended:
        raise RejectedInputError(
            f"ID: found {manufacturer_id!r} not suspended, expected one of {sorted(repo.head.suspended)}"
        )
    if not reason.strip():
        raise ConfigurationError(
            "--reason: found an empty reason, expected why the suspension ends"
        )
    suspended = {k: v for k, v in repo.head.suspended.items() if k != manufacturer_id}
    return bool(
        set_suspended(
            repo,
            suspended,
            suspensions_document(suspended),
            now=now,
            event={
                "event": "manufacturer-resume",
                "at": format_timestamp(now),
                "manufacturer": manufacturer_id,
                "reason": reason.strip(),
            },
        )
    )


def pending_targets_change(repo: Repository) -> Callable[[Targets], None]:
    """What a targets ceremony must carry besides a new expiry: a suspension list the gateway
    enforces already but that could not be signed into targets while its key was offline.

    Returns a change to apply to the proposed targets (a no-op when nothing is pending).
    """
    suspended = repo.head.suspended
    current = repo.targets().signed.targets.get(SUSPENSIONS_TARGET_PATH)
    if (not suspended and current is None) or repo.provider_delegated:
        # cfl-provider (issue 13) signs the list online: targets never carries it.
        return lambda targets: None
    document = suspensions_document(suspended)
    sha = repo.blobs.put(document)  # content-addressed: storing it again is harmless

    def change(targets: Targets) -> None:
        targets.targets[SUSPENSIONS_TARGET_PATH] = TargetFile(
            len(document), {"sha256": sha}, SUSPENSIONS_TARGET_PATH
        )

    return change
