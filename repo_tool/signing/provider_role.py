"""The online ``cfl-provider`` delegation (issue 13). Pure: metadata values in, values out.

Targets (offline) delegates ``cfl/...`` to ``cfl-provider``, terminating, signed by the provider's
online key(s); CPL imports, withdrawals, the supplier registry, suspensions and release-note grants
then re-sign that role only, so routine work never needs the offline targets key. The delegation is
terminating and restricted to ``cfl/`` paths, which no manufacturer ID can spell, so a thief of the
online key cannot reach an image (docs/design.md, "Keys and routine work").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from securesystemslib.signer import Key
from tuf.api.metadata import DelegatedRole, Delegations, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.errors import RejectedInputError


def delegate_provider(targets: Targets, keys: Sequence[Key], threshold: int) -> None:
    """Add (or replace) the ``cfl-provider`` delegation in ``targets``: ``keys`` with
    ``threshold``, paths ``cfl/*`` and ``cfl/*/*/*`` (grants), terminating.

    Keys the old delegation used and no other delegation uses leave ``delegations.keys``.

    Raises:
        RejectedInputError: no key, or a threshold outside 1..number of keys.
    """
    if not keys or not 1 <= threshold <= len(keys):
        raise RejectedInputError(
            f"{naming.PROVIDER_ROLE} threshold: found {threshold} with {len(keys)} key(s), "
            f"expected 1..{max(len(keys), 1)} and at least one key"
        )
    if targets.delegations is None:
        targets.delegations = Delegations(keys={}, roles={})
    delegations = targets.delegations
    assert delegations.roles is not None  # path delegations, never succinct ones, in targets
    old = delegations.roles.get(naming.PROVIDER_ROLE)
    roles = {n: r for n, r in delegations.roles.items() if n != naming.PROVIDER_ROLE}
    if old is not None:
        used = {k for role in roles.values() for k in role.keyids}
        for keyid in old.keyids:
            if keyid not in used:
                delegations.keys.pop(keyid, None)
    for key in keys:
        delegations.keys[key.keyid] = key
    roles[naming.PROVIDER_ROLE] = DelegatedRole(
        name=naming.PROVIDER_ROLE,
        keyids=sorted(key.keyid for key in keys),
        threshold=threshold,
        terminating=True,
        paths=list(naming.PROVIDER_PATTERNS),
    )
    delegations.roles = dict(sorted(roles.items()))


def provider_keys(targets: Targets) -> tuple[list[Key], int] | None:
    """The keys and threshold ``targets`` delegates ``cfl-provider`` to, or None."""
    delegations = targets.delegations
    role = (delegations.roles or {}).get(naming.PROVIDER_ROLE) if delegations else None
    if delegations is None or role is None:
        return None
    return [delegations.keys[keyid] for keyid in role.keyids], role.threshold


def take_provider_targets(targets: Targets) -> dict[str, TargetFile]:
    """Remove every provider document (``cfl/...``) from ``targets`` and return them, unchanged:
    an adoption moves them into ``cfl-provider`` version 1 byte for byte."""
    moved = {p: t for p, t in targets.targets.items() if naming.is_provider_target(p)}
    for path in moved:
        del targets.targets[path]
    return moved


def first_provider_role(
    documents: dict[str, TargetFile], *, now: datetime, expires_in: timedelta, spec_version: str
) -> Targets:
    """Version 1 of ``cfl-provider``: ``documents`` (the provider targets targets held, or none)
    and the policy's expiry ``now + expires_in``."""
    role = Targets(version=1, expires=now + expires_in, targets=dict(sorted(documents.items())))
    role.spec_version = spec_version
    return role
