"""Supplier registry operations: register and revoke DCC User organisations (issue 10, BR05).

The checks are pure (certificate bytes, the current registry and ``now`` in; a new registry or one
`RejectedInputError` out). `Repository.commit_suppliers` is the only writer: it stores the new
registry as a content-addressed blob, signs it as target ``cfl/suppliers.json`` of the top-level
targets role, and replaces the head in one atomic step with an ``events.jsonl`` record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from metadata_templates.suppliers import (
    STATUS_ACTIVE,
    USER_ROLES,
    Supplier,
    SupplierRegistry,
    certificate_sha256,
    entity_id,
)
from repo_tool.access.certificates import check_certificate, load_one_certificate

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository

MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 1000


# Arguments in the wrong form are usage errors (exit 2); a well-formed request the registry or the
# certificate checks refuse is a rejection (exit 1).
def _printable(value: str, field: str, limit: int) -> str:
    text = value.strip()
    if not text or len(text) > limit or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigurationError(
            field_error(field, value, f"1 to {limit} printable characters, no control characters")
        )
    return text


def _roles(roles: Sequence[str]) -> tuple[str, ...]:
    found = [role.strip().upper() for role in roles]
    if not found or any(role not in USER_ROLES for role in found) or len(set(found)) != len(found):
        raise ConfigurationError(
            field_error(
                "--role", list(roles), f"one or more distinct roles from {list(USER_ROLES)}"
            )
        )
    return tuple(role for role in USER_ROLES if role in found)


def registered(
    registry: SupplierRegistry,
    *,
    entity: str,
    name: str,
    roles: Sequence[str],
    certificate: bytes,
    now: datetime,
    ca_pem: bytes | None = None,
) -> tuple[SupplierRegistry, Supplier]:
    """The registry with one more organisation (pure).

    Raises:
        ConfigurationError: ENTITY_ID is not 16 hex digits, a bad name or role, or --cert holds no
            PEM certificate.
        RejectedInputError: a certificate the checks refuse; the Entity ID or the
            certificate is registered already (revoked entries included: an Entity ID is never
            reused, and one certificate must name one organisation in the access log).
    """
    try:
        eid = entity_id(entity, "ENTITY_ID")
    except ValueError as e:
        # The argument is not an Entity ID at all: a usage error (exit 2), not a refusal.
        raise ConfigurationError(str(e)) from e
    checked = check_certificate(certificate, now=now, ca_pem=ca_pem)
    existing = registry.by_entity_id().get(eid)
    if existing is not None:
        raise RejectedInputError(
            field_error(
                "ENTITY_ID",
                eid,
                f"a new Entity ID (registered {existing.registered}, {existing.status})",
            )
        )
    holder = registry.by_certificate().get(checked.sha256)
    if holder is not None:
        raise RejectedInputError(
            field_error(
                "--cert",
                checked.sha256[:16],
                f"a certificate no one holds (held by {holder.entity_id})",
            )
        )
    supplier = Supplier(
        entity_id=eid,
        name=_printable(name, "--name", MAX_NAME_LENGTH),
        roles=_roles(roles),
        certificate_pem=checked.pem,
        certificate_sha256=checked.sha256,
        registered=format_timestamp(now),
    )
    return registry.with_added(supplier), supplier


def revoked(
    registry: SupplierRegistry, *, entity: str, reason: str, now: datetime
) -> tuple[SupplierRegistry, Supplier]:
    """The registry with one organisation revoked (pure).

    Raises:
        ConfigurationError: ENTITY_ID is not 16 hex digits, or an empty reason.
        RejectedInputError: unknown or already revoked Entity ID.
    """
    try:
        eid = entity_id(entity, "ENTITY_ID")
    except ValueError as e:
        # The argument is not an Entity ID at all: a usage error (exit 2), not a refusal.
        raise ConfigurationError(str(e)) from e
    text = _printable(reason, "--reason", MAX_REASON_LENGTH)
    current = registry.by_entity_id().get(eid)
    if current is None:
        raise RejectedInputError(field_error("ENTITY_ID", eid, "a registered Entity ID"))
    if current.status != STATUS_ACTIVE:
        raise RejectedInputError(
            field_error("ENTITY_ID", f"{eid} (revoked {current.revoked})", "an active registration")
        )
    new = registry.revoke(eid, at=format_timestamp(now), reason=text)
    return new, new.by_entity_id()[eid]


def _same_registration(
    registry: SupplierRegistry,
    entity: str,
    name: str,
    roles: Sequence[str],
    certificate: bytes,
) -> Supplier | None:
    """The registered entry if this request is exactly it already, else None (let the checks run)."""
    try:
        # The same normalisation as `registered`; a request it would refuse is never "done".
        eid = entity_id(entity, "ENTITY_ID")
        wanted = (_printable(name, "--name", MAX_NAME_LENGTH), _roles(roles))
        der = load_one_certificate(certificate, "--cert").public_bytes(Encoding.DER)
    except (ValueError, ConfigurationError, RejectedInputError):
        return None  # let `registered` report it
    existing = registry.by_entity_id().get(eid)
    if existing is None or existing.status != STATUS_ACTIVE:
        return None
    same = certificate_sha256(der) == existing.certificate_sha256
    return existing if same and (existing.name, existing.roles) == wanted else None


def _same_revocation(registry: SupplierRegistry, entity: str, reason: str) -> Supplier | None:
    """The revoked entry if this request is exactly its revocation already, else None."""
    try:
        eid = entity_id(entity, "ENTITY_ID")
        text = _printable(reason, "--reason", MAX_REASON_LENGTH)
    except (ValueError, ConfigurationError):
        return None  # let `revoked` report it
    current = registry.by_entity_id().get(eid)
    if (
        current is not None
        and current.status != STATUS_ACTIVE
        and current.revocation_reason == text
    ):
        return current
    return None


def add_supplier(
    repo: Repository,
    *,
    entity: str,
    name: str,
    roles: Sequence[str],
    certificate: bytes,
    now: datetime,
    ca_pem: bytes | None = None,
) -> Supplier:
    """Register an organisation and stage the signed registry (the caller holds the lock).

    The same registration again (the same Entity ID, certificate, name and roles: a re-run after a
    crash, a retried script) is done already and changes nothing; any other repeat is refused.

    Raises:
        RejectedInputError: see `registered`.
    """
    repeat = _same_registration(repo.suppliers(), entity, name, roles, certificate)
    if repeat is not None:
        return repeat
    registry, supplier = registered(
        repo.suppliers(),
        entity=entity,
        name=name,
        roles=roles,
        certificate=certificate,
        now=now,
        ca_pem=ca_pem,
    )
    repo.commit_suppliers(
        registry,
        now=now,
        event={
            "event": "supplier-add",
            "at": supplier.registered,
            "entity_id": supplier.entity_id,
            "name": supplier.name,
            "roles": list(supplier.roles),
            "certificate_sha256": supplier.certificate_sha256,
        },
    )
    return supplier


def revoke_supplier(repo: Repository, *, entity: str, reason: str, now: datetime) -> Supplier:
    """Revoke an organisation and stage the signed registry (the caller holds the lock).

    The same revocation again (same Entity ID and reason: a re-run after a crash) is done already
    and changes nothing; a revocation is recorded once and never edited.

    Raises:
        RejectedInputError: see `revoked`.
    """
    current = _same_revocation(repo.suppliers(), entity, reason)
    if current is not None:
        return current
    registry, supplier = revoked(repo.suppliers(), entity=entity, reason=reason, now=now)
    repo.commit_suppliers(
        registry,
        now=now,
        event={
            "event": "supplier-revoke",
            "at": supplier.revoked,
            "entity_id": supplier.entity_id,
            "reason": supplier.revocation_reason,
            "certificate_sha256": supplier.certificate_sha256,
        },
    )
    return supplier
