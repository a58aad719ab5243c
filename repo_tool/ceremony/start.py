"""Build a proposal: the next version of root or targets from the current one. Pure."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.ceremony.proposal import OnlineSigner, Proposal

# The repository tool writes this spec version everywhere; a proposal keeps whatever it copied.
TOP_LEVEL = (Root.type, Targets.type, "snapshot", "timestamp")


@dataclass(frozen=True)
class KeyChange:
    """A change to one top-level role's keys or threshold, made through a new root.

    Attributes:
        keys_of: the top-level role whose keys change (``root`` unless rotating another role).
        add: public keys to add.
        remove: key IDs, or unique prefixes of them, to revoke.
        threshold: the new threshold, or None to keep it.
        uris: signer URIs for added keys the repository itself will use (online roles), by keyid.
    """

    keys_of: str = Root.type
    add: tuple[Key, ...] = ()
    remove: tuple[str, ...] = ()
    threshold: int | None = None
    uris: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove and self.threshold is None


def _resolve_prefixes(prefixes: Sequence[str], keyids: Sequence[str], role: str) -> set[str]:
    dropped: set[str] = set()
    for prefix in prefixes:
        matches = [k for k in keyids if k.startswith(prefix.lower())] if prefix else []
        if len(matches) != 1:
            raise RejectedInputError(
                f"--remove-key: found {prefix!r} matching {len(matches)} {role} key(s), expected "
                f"exactly one of {[k[:8] for k in keyids]}"
            )
        dropped.add(matches[0])
    return dropped


def propose_root(
    current: Metadata[Root],
    change: KeyChange,
    *,
    now: datetime,
    expires_in: timedelta,
) -> Proposal:
    """The next root version with ``change`` applied and a new expiry ``now + expires_in``.

    Raises:
        RejectedInputError: unknown role or key, or a key added twice.
        ConfigurationError: no key left, or a threshold outside 1..number of keys.
    """
    if change.keys_of not in TOP_LEVEL:
        raise RejectedInputError(
            f"--keys-of: found {change.keys_of!r}, expected one of {', '.join(TOP_LEVEL)}"
        )
    new: Root = copy.deepcopy(current.signed)
    new.version += 1
    new.expires = now + expires_in
    role = new.roles[change.keys_of]
    keyids = list(role.keyids)
    dropped = _resolve_prefixes(change.remove, keyids, change.keys_of)
    for key in change.add:
        if key.keyid in keyids:
            raise RejectedInputError(
                f"--add-key: found key {key.keyid[:8]} among the {change.keys_of} keys already, "
                "expected a new key"
            )
    remaining = len(keyids) - len(dropped) + len({k.keyid for k in change.add})
    threshold = change.threshold if change.threshold is not None else role.threshold
    if remaining < 1 or not 1 <= threshold <= remaining:
        raise ConfigurationError(
            f"--threshold: found {threshold} with {remaining} {change.keys_of} key(s) left, "
            f"expected 1..{max(remaining, 1)} and at least one key"
        )
    for keyid in sorted(dropped):
        new.revoke_key(keyid, change.keys_of)
    for key in change.add:
        new.add_key(key, change.keys_of)
    new.roles[change.keys_of].threshold = threshold
    online = tuple(
        OnlineSigner(change.keys_of, keyid, uri) for keyid, uri in sorted(change.uris.items())
    )
    return Proposal(
        role=Root.type,
        trusted_root=current,
        previous=current,
        proposed=Metadata(new),
        created=format_timestamp(now),
        online_signers=online,
    )


def propose_targets(
    root: Metadata[Root],
    current: Metadata[Targets],
    *,
    now: datetime,
    expires_in: timedelta,
    change: Callable[[Targets], Any] | None = None,
) -> Proposal:
    """The next targets version, with ``change`` applied (e.g. a manufacturer's new keys) and a new
    expiry ``now + expires_in``."""
    new: Targets = copy.deepcopy(current.signed)
    new.version += 1
    new.expires = now + expires_in
    if change is not None:
        change(new)
    return Proposal(
        role=Targets.type,
        trusted_root=root,
        previous=current,
        proposed=Metadata(new),
        created=format_timestamp(now),
    )
