"""What a new version of root or targets changes, as sentences a key holder can review.

Pure: two signed payloads in, lines out. ``ceremony sign`` recomputes this from the proposal's own
metadata rather than trusting a summary written by whoever made the proposal.
"""

from __future__ import annotations

from tuf.api.metadata import Root, Targets

KEYID_SHOWN = 8


def _short(keyid: str) -> str:
    return keyid[:KEYID_SHOWN]


def _keys_change(role: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    """``old``/``new`` map keyid -> key type for one role."""
    lines = [f"{role}: add key {_short(k)} ({new[k]})" for k in sorted(set(new) - set(old))]
    lines += [f"{role}: remove key {_short(k)} ({old[k]})" for k in sorted(set(old) - set(new))]
    return lines


def root_changes(old: Root, new: Root) -> list[str]:
    """Every difference between two root versions that matters to trust.

    Returns one sentence per change, in a stable order; an empty list means only the version moved.
    """
    lines = [f"root version: {old.version} -> {new.version}"]
    if old.expires != new.expires:
        lines.append(f"root expires: {old.expires.isoformat()} -> {new.expires.isoformat()}")
    if old.consistent_snapshot != new.consistent_snapshot:
        lines.append(f"consistent_snapshot: {old.consistent_snapshot} -> {new.consistent_snapshot}")
    for role in sorted(set(old.roles) | set(new.roles)):
        before = old.roles.get(role)
        after = new.roles.get(role)
        old_keys = {k: old.keys[k].keytype for k in before.keyids} if before else {}
        new_keys = {k: new.keys[k].keytype for k in after.keyids} if after else {}
        lines += _keys_change(role, old_keys, new_keys)
        old_threshold = before.threshold if before else 0
        new_threshold = after.threshold if after else 0
        if old_threshold != new_threshold:
            lines.append(f"{role}: threshold {old_threshold} -> {new_threshold}")
    return lines


def targets_changes(old: Targets, new: Targets) -> list[str]:
    """Every difference between two targets versions: expiry, targets and delegations.

    Returns one sentence per change, in a stable order.
    """
    lines = [f"targets version: {old.version} -> {new.version}"]
    if old.expires != new.expires:
        lines.append(f"targets expires: {old.expires.isoformat()} -> {new.expires.isoformat()}")
    for path in sorted(set(old.targets) | set(new.targets)):
        before, after = old.targets.get(path), new.targets.get(path)
        if before is None and after is not None:
            lines.append(f"target {path}: added (sha256 {after.hashes.get('sha256', '?')[:16]})")
        elif after is None and before is not None:
            lines.append(f"target {path}: removed")
        elif before != after and after is not None:
            lines.append(f"target {path}: changed (sha256 {after.hashes.get('sha256', '?')[:16]})")
    old_roles = dict(old.delegations.roles or {}) if old.delegations else {}
    new_roles = dict(new.delegations.roles or {}) if new.delegations else {}
    old_keys = old.delegations.keys if old.delegations else {}
    new_keys = new.delegations.keys if new.delegations else {}
    for name in sorted(set(old_roles) | set(new_roles)):
        was, now = old_roles.get(name), new_roles.get(name)
        if was is None and now is not None:
            keys = ", ".join(_short(k) for k in now.keyids)
            lines.append(
                f"delegation {name}: added, paths {now.paths}, keys [{keys}], "
                f"threshold {now.threshold}"
            )
            continue
        if now is None or was is None:
            lines.append(f"delegation {name}: removed")
            continue
        old_role, new_role = was, now
        lines += _keys_change(
            f"delegation {name}",
            {k: old_keys[k].keytype for k in old_role.keyids},
            {k: new_keys[k].keytype for k in new_role.keyids},
        )
        if old_role.threshold != new_role.threshold:
            lines.append(
                f"delegation {name}: threshold {old_role.threshold} -> {new_role.threshold}"
            )
        if (
            old_role.paths != new_role.paths
            or old_role.path_hash_prefixes != new_role.path_hash_prefixes
        ):
            lines.append(f"delegation {name}: paths {old_role.paths} -> {new_role.paths}")
        if old_role.terminating != new_role.terminating:
            lines.append(
                f"delegation {name}: terminating {old_role.terminating} -> {new_role.terminating}"
            )
        if old_role.unrecognized_fields != new_role.unrecognized_fields:
            lines.append(
                f"delegation {name}: custom fields {old_role.unrecognized_fields} -> "
                f"{new_role.unrecognized_fields}"
            )
    return lines
