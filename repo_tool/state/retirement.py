"""Retiring keys as the signed delegations record them: the field a manufacturer's delegation uses
to name the keys it keeps only until the manufacturer has re-signed its role with the new ones
(`mark_retiring` writes it, `retiring_keyids` reads it), and dropping delegation keys no role lists
any more. Pure functions over TUF metadata, shared by key rotation (repo_tool/ops/), a finished
targets ceremony (repo_tool/ceremony/apply.py) and bin splits (repo_tool/submit/bins.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuf.api.metadata import DelegatedRole, Targets

from metadata_templates import naming

if TYPE_CHECKING:
    from repo_tool.state.head import ManufacturerRecord

RETIRING_FIELD = "x-cfl-retiring-keyids"


def mark_retiring(targets: Targets, record: ManufacturerRecord) -> None:
    """Name the delegation's retiring keys inside the signed delegation itself, so the targets key
    holders see and sign which keys the gateway no longer accepts, and a finished ceremony restores
    the gateway's key set from signed data alone. Clients ignore the field."""
    assert targets.delegations is not None and targets.delegations.roles is not None
    role = targets.delegations.roles[naming.role_name(record.id)]
    if record.retiring:
        role.unrecognized_fields[RETIRING_FIELD] = sorted(record.retiring)
    else:
        role.unrecognized_fields.pop(RETIRING_FIELD, None)


def retiring_keyids(role: DelegatedRole) -> set[str]:
    """The keyids a delegation marks as retiring (see `mark_retiring`)."""
    value = role.unrecognized_fields.get(RETIRING_FIELD, [])
    return {str(k) for k in value} if isinstance(value, list) else set()


def prune_unused_keys(targets: Targets) -> None:
    """Drop delegation keys no delegated role lists any more (a retired key leaves the metadata)."""
    if targets.delegations is None or targets.delegations.roles is None:
        return
    used = {k for role in targets.delegations.roles.values() for k in role.keyids}
    targets.delegations.keys = {k: v for k, v in targets.delegations.keys.items() if k in used}
