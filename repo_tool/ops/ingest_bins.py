"""Staging what the gateway admitted for hash bins (repo_tool/gateway/bins.py): the bins a deposit
re-signs, and the roles a renewal or a ``split-bins`` bundle re-signs, in one commit.

A ``split-bins`` bundle is the one time a manufacturer role "drops" its targets (they move into the
bins), so it is recorded as its own event, ``manufacturer-bins``, in the journal and the transparency
log. Bins of an earlier, smaller bin count whose names the new delegation no longer lists (the
names grow a hex digit at 5, 9 and 13 bits) leave the live roles for ``Head.retired_roles``: every
snapshot still lists them at their last version, as TUF clients require, and nothing delegates them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from repo_tool.gateway.bins import split_bit_length
from repo_tool.gateway.model import Accepted, StagedRole
from repo_tool.intake.bundle import KIND_SPLIT_BINS, Bundle
from repo_tool.state.repository import Repository


def is_split(repo: Repository, manufacturer_id: str) -> bool:
    """Whether the staged role of this manufacturer holds a succinct delegation to bins."""
    name = naming.role_name(manufacturer_id)
    return name in repo.head.roles and split_bit_length(repo.role(name)) is not None


def staged_roles(accepted: Accepted, role_bytes: bytes) -> tuple[StagedRole, ...]:
    """The role versions an accepted deposit stages: its bins, or the manufacturer role."""
    if accepted.bins:
        return accepted.bins
    return (StagedRole(accepted.role_name, accepted.role, role_bytes),)


def commit_restaged(
    repo: Repository,
    bundle_path: Path,
    bundle: Bundle,
    staged: tuple[StagedRole, ...],
    now: datetime,
) -> None:
    """Write every admitted role version (new immutable files first), then one commit."""
    for role in staged:
        repo.write_staged(role.name, role.role.signed.version, role.data)
        repo.write_added(role.name, role.role.signed.version, [])
    head = repo.head
    roles = dict(head.roles)
    mfr = naming.role_name(bundle.manufacturer_id)
    event: dict[str, object]
    if bundle.kind == KIND_SPLIT_BINS:
        bits = split_bit_length(staged[0].role)
        assert bits is not None  # the gateway admitted a succinct delegation
        keep = set(naming.bin_roles(bundle.manufacturer_id, bits))
        retired = {n: v for n, v in head.retired_roles.items() if n not in keep}
        for name in [n for n in roles if naming.manufacturer_of_bin(n) == bundle.manufacturer_id]:
            if name not in keep:
                retired[name] = roles.pop(name)
        head = replace(head, retired_roles=retired)
        event = {
            "event": "manufacturer-bins",
            "at": format_timestamp(now),
            "bundle": bundle_path.name,
            "manufacturer_id": bundle.manufacturer_id,
            "role": mfr,
            "role_version": staged[0].role.signed.version,
            "bit_length": bits,
            "bins": len(keep),
            "targets": sum(len(r.role.signed.targets) for r in staged[1:]),
        }
    else:
        event = {
            "event": "ingest-renewal",
            "at": format_timestamp(now),
            "bundle": bundle_path.name,
            "role": mfr,
            "roles": {r.name: r.role.signed.version for r in staged},
            "expires": format_timestamp(min(r.role.signed.expires for r in staged)),
        }
    for role in staged:
        roles[role.name] = role.role.signed.version
    repo.commit(replace(head, roles=roles), event=event)
