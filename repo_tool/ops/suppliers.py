"""Supplier registry operations: register and revoke DCC User organisations (issue 10, BR05).

The checks are pure (certificate bytes, the current registry and ``now`` in; a new registry or one
`RejectedInputError` out). `Repository.commit_suppliers` is the only writer: it stores the new
registry as a content-addressed blob, signs it as target ``cfl/suppliers.json`` of the top-level
targets role, and replaces the head in one atomic step with an ``events.jsonl`` record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository

MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 1000


@dataclass(frozen=True)
class CheckedCertificate:
    """A client certificate that passed every registration check.

    Attributes:
        pem: the certificate alone, PEM, as it will be published.
        sha256: SHA-256 of the DER (the registry's and the audit's fingerprint).
        sha1: SHA-1 of the DER: what nginx's ``$ssl_client_fingerprint`` reports. Only ever used to
            look a certificate up, after nginx has verified it chains to the supplier CA.
        subject: the subject DN, for messages.
        not_after: end of validity.
    """

    pem: str
    sha256: str
    sha1: str
    subject: str
    not_after: datetime


def certificate_sha1(der: bytes) -> str:
    """The fingerprint nginx logs and maps on (``$ssl_client_fingerprint``)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def load_one_certificate(data: bytes, field: str) -> x509.Certificate:
    """Exactly one PEM certificate.

    Raises:
        RejectedInputError: not PEM, no certificate, or several.
    """
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise RejectedInputError(
            field_error(field, f"{len(data)} bytes that are not a PEM certificate", "one X.509 PEM")
        ) from e
    if len(certificates) != 1:
        raise RejectedInputError(
            field_error(field, f"{len(certificates)} certificates", "exactly one")
        )
    return certificates[0]


def check_certificate(
    data: bytes, *, now: datetime, ca_pem: bytes | None = None, field: str = "--cert"
) -> CheckedCertificate:
    """Check an SMKI-style Organisation Certificate for registration.

    Args:
        data: the PEM file's bytes.
        now: the moment the certificate must be valid at.
        ca_pem: the supplier CA's certificate; when given, the certificate must be issued by it.
        field: how the messages name the input.

    Raises:
        ConfigurationError: not one X.509 PEM certificate.
        RejectedInputError: not an ECDSA P-256 key, not valid at ``now``, a CA certificate, or not
            issued by the supplier CA.
    """
    try:
        cert = load_one_certificate(data, field)
    except RejectedInputError as e:
        # A file that is no certificate is the wrong file on the command line (exit 2); a real
        # certificate that fails the checks below is refused (exit 1).
        raise ConfigurationError(str(e)) from e
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RejectedInputError(
            field_error(f"{field} public key", type(key).__name__, "an ECDSA P-256 key")
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise RejectedInputError(
            field_error(f"{field} public key curve", key.curve.name, "secp256r1 (P-256)")
        )
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < not_before:
        raise RejectedInputError(
            field_error(
                f"{field} notBefore",
                format_timestamp(not_before),
                f"<= now ({format_timestamp(now)})",
            )
        )
    if now > not_after:
        raise RejectedInputError(
            field_error(
                f"{field} notAfter",
                format_timestamp(not_after),
                f"after now ({format_timestamp(now)}): expired",
            )
        )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise RejectedInputError(
            field_error(
                f"{field} basicConstraints CA", True, "an end-entity certificate (CA false)"
            )
        )
    if ca_pem is not None:
        ca = load_one_certificate(ca_pem, "--supplier-ca")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise RejectedInputError(
                field_error(
                    f"{field} issuer",
                    cert.issuer.rfc4514_string(),
                    f"a certificate signed by the supplier CA {ca.subject.rfc4514_string()!r}",
                )
            ) from e
    der = cert.public_bytes(serialization.Encoding.DER)
    return CheckedCertificate(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        sha256=certificate_sha256(der),
        sha1=certificate_sha1(der),
        subject=cert.subject.rfc4514_string(),
        not_after=not_after,
    )


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


def read_ca(path_bytes: bytes | None) -> bytes | None:
    """The supplier CA as given, after checking it is one certificate.

    Raises:
        ConfigurationError: not exactly one PEM certificate.
    """
    if path_bytes is None:
        return None
    try:
        load_one_certificate(path_bytes, "--supplier-ca")
    except RejectedInputError as e:
        raise ConfigurationError(str(e)) from e
    return path_bytes


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

    Raises:
        RejectedInputError: see `registered`.
    """
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

    Raises:
        RejectedInputError: see `revoked`.
    """
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
