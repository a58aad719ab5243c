"""The gateway's checks of a manufacturer role itself: its delegation, parse, signatures against the registered keys, validity period and succession from the published version. Pure: metadata values in, findings out."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta

from securesystemslib.signer import Key
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Targets
from tuf.api.serialization import SerializationError

from metadata_templates import naming
from repo_tool.gateway.model import (
    Code,
    Findings,
    GatewayContext,
    RegisteredManufacturer,
)
from repo_tool.intake.bundle import Bundle


def check_validity(role_name: str, signed: Targets, ctx: GatewayContext, found: Findings) -> None:
    """The policy's window for a role's remaining validity: long enough that one manufacturer's
    lapse cannot strand its images days after a deposit, short enough to be renewed with its keys."""
    least, most = ctx.role_validity
    remaining = signed.expires - ctx.now
    if timedelta(0) < remaining < least:
        found.add(
            Code.ROLE_EXPIRED,
            f"{role_name} expires: found {signed.expires.isoformat()} ({_days(remaining)} from now), "
            f"expected at least {_days(least)} from now (policy manufacturer_min_validity_days)",
        )
    elif remaining > most:
        found.add(
            Code.ROLE_EXPIRY_TOO_FAR,
            f"{role_name} expires: found {signed.expires.isoformat()} ({_days(remaining)} from now), "
            f"expected at most {_days(most)} from now (policy manufacturer_max_validity_days)",
        )


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:.1f} days"


def check_succession(
    role_name: str,
    current: Metadata[Targets] | None,
    signed: Targets,
    *,
    not_before: datetime,
    why: str,
    found: Findings,
) -> None:
    """What every new version of a manufacturer role owes the one before it, deposit or renewal:
    exactly one version up, not expired (not before ``not_before``), no further delegation, and
    every lodged target kept exactly as it was."""
    current_version = current.signed.version if current is not None else 0
    if signed.version != current_version + 1:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{role_name} version: found {signed.version}, expected {current_version + 1} (one above the "
            f"library's version {current_version}; rebuild the bundle from the latest published library)",
        )
    if signed.expires <= not_before:
        found.add(
            Code.ROLE_EXPIRED,
            f"{role_name} expires: found {signed.expires.isoformat()}, expected a time after "
            f"{not_before.isoformat()}{why}",
        )
    if signed.delegations is not None:
        found.add(
            Code.OUTSIDE_DELEGATION,
            f"{role_name} delegations: found {sorted((signed.delegations.roles or {}).keys())}, expected none "
            "(a manufacturer role may not delegate)",
        )
    previous = current.signed.targets if current is not None else {}
    for path, old in sorted(previous.items()):
        new = signed.targets.get(path)
        if new is None:
            found.add(
                Code.ROLE_CONTENT_ALTERED,
                f"{role_name} target {path}: found it removed, expected every lodged target kept (withdrawal "
                "is the provider's recorded event)",
            )
        elif new != old:
            found.add(
                Code.ROLE_CONTENT_ALTERED,
                f"{role_name} target {path}: found {_first_difference(old.to_dict(), new.to_dict())}, "
                "expected it exactly as lodged",
            )


def manufacturer_delegation(
    manufacturer_id: str, keyids: list[str], threshold: int
) -> DelegatedRole:
    """The one shape of a manufacturer's delegation: its keys and threshold, its single path prefix,
    terminating (so no other role is consulted for its paths). The gateway verifies with it and the
    repository publishes it, so the two cannot drift apart."""
    return DelegatedRole(
        name=naming.role_name(manufacturer_id),
        keyids=sorted(keyids),
        threshold=threshold,
        terminating=True,
        paths=[naming.delegation_pattern(manufacturer_id)],
    )


def registered_delegator(manufacturer: RegisteredManufacturer) -> Targets:
    """A throw-away delegator holding only the registered keys, so python-tuf does the verifying."""
    role = manufacturer_delegation(manufacturer.id, list(manufacturer.keys), manufacturer.threshold)
    return Targets(delegations=Delegations(keys=dict(manufacturer.keys), roles={role.name: role}))


def _check_role_signatures(
    bundle: Bundle, manufacturer: RegisteredManufacturer | None, found: Findings
) -> Metadata[Targets] | None:
    role = parse_role(bundle.role_bytes, "role.json", found)
    if role is None:
        return None
    if manufacturer is None:
        return role
    delegator = registered_delegator(manufacturer)
    check_signatures(
        role,
        naming.role_name(manufacturer.id),
        delegator,
        manufacturer.keys,
        f"{manufacturer.id}'s keys",
        "role.json",
        found,
    )
    return role


class _LastCanonical(threading.local):
    """The canonical signed bytes ``parse_role`` computed for its check, kept for the signature
    check that always follows: securesystemslib's canonical encoding of a role is most of a
    deposit's gateway time, and computing it twice doubled that. One entry per thread, the role
    and its bytes held together and matched by identity, so it can only ever answer for the very
    object it was computed for (and callers change nothing between the two calls)."""

    def __init__(self) -> None:
        self.entry: tuple[Metadata[Targets], bytes] | None = None

    def remember(self, role: Metadata[Targets], data: bytes) -> None:
        self.entry = (role, data)

    def signed_bytes(self, role: Metadata[Targets]) -> bytes:
        entry = self.entry
        return entry[1] if entry is not None and entry[0] is role else role.signed_bytes


_canonical = _LastCanonical()


def parse_role(data: bytes, member: str, found: Findings) -> Metadata[Targets] | None:
    """One bundle member as signed targets metadata, or None with a ``malformed-bundle`` finding."""
    try:
        role = Metadata[Targets].from_bytes(data)
    except Exception as e:  # python-tuf raises DeserializationError and ValueError subclasses
        found.add(
            Code.MALFORMED_BUNDLE, f"{member}: found no valid TUF targets metadata ({_short(e)})"
        )
        return None
    if not isinstance(role.signed, Targets):
        found.add(
            Code.MALFORMED_BUNDLE, f"{member} type: found {role.signed.type!r}, expected 'targets'"
        )
        return None
    odd = [
        (keyid, sig.signature)
        for keyid, sig in role.signatures.items()
        if not isinstance(keyid, str) or not isinstance(sig.signature, str)
    ]
    if odd:
        found.add(
            Code.MALFORMED_BUNDLE,
            f"{member} signatures: found keyid/sig {_short(odd[0])}, expected hex strings",
        )
        return None
    try:
        # Signatures cover the canonical JSON form, which has no floats and no duplicate keys: a
        # role that cannot be canonicalised cannot have been signed as it stands.
        _canonical.remember(role, role.signed_bytes)
    except SerializationError as e:
        found.add(
            Code.MALFORMED_BUNDLE,
            f"{member} signed: found a value canonical JSON cannot encode ({_short(e.__cause__ or e)}), "
            "expected only strings, integers, booleans, null, lists and objects",
        )
        return None
    return role


def check_signatures(
    role: Metadata[Targets],
    role_name: str,
    delegator: Targets,
    keys: Mapping[str, Key],
    whose: str,
    member: str,
    found: Findings,
) -> None:
    """python-tuf's verification of ``role`` as ``role_name`` delegated by ``delegator``, turned into
    ``bad-signature`` (a listed key's signature fails) or ``threshold-not-met`` findings."""
    result = delegator.get_verification_result(
        role_name, _canonical.signed_bytes(role), role.signatures
    )
    bad = sorted(k[:8] for k in role.signatures if k in keys and k not in result.signed)
    if bad:
        found.add(
            Code.BAD_SIGNATURE,
            f"{member} signatures: found invalid signature(s) by registered key(s) {bad}, expected valid "
            f"signatures over the role by {whose}",
        )
    elif not result.verified:
        strangers = sorted(k[:8] for k in role.signatures if k not in keys)
        found.add(
            Code.THRESHOLD_NOT_MET,
            f"{member} signatures: found {len(result.signed)} valid by registered keys"
            + (f" (and {len(strangers)} by unregistered keys {strangers})" if strangers else "")
            + f", expected at least {result.threshold}",
        )


def verify_role_against(delegator: Targets, role_name: str, role: Metadata[Targets]) -> None:
    """Re-verify a role with its real delegator before anything is written (verify before you write).

    Raises:
        RepositoryError: the threshold is not met.
    """
    try:
        delegator.verify_delegate(role_name, role.signed_bytes, role.signatures)
    except Exception as e:
        raise RepositoryError(f"{role_name}: {e}") from e


def _first_difference(before: dict[str, object], after: dict[str, object], where: str = "") -> str:
    """Name the first field that differs between two JSON-like dicts, with both values."""
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            return _first_difference(old, new, f"{where}{key}.")
        return f"{where}{key} changed from {old!r} to {new!r}"
    return "no difference"


def _short(value: object, limit: int = 200) -> str:
    """A value for a message, cut short: hostile input must not make a megabyte report line."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
