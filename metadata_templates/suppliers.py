"""The supplier registry: which DCC User organisations may download which images.

The provider publishes the registry as the provider-signed target ``cfl/suppliers.json``. Three readers
depend on the same document, which is why it lives in the contract:

- the host configuration generator (access at the host, BR05) and the download audit (option 3.5a)
  on the provider's side;
- ``submit`` at the manufacturer, which encrypts release notes to every supplier entitled to the
  image's device type;
- the supplier's client, which shows who is registered and checks grants.

A supplier is never deleted: revocation is a recorded status change, so an audit of last year's logs
still knows who a revoked certificate belonged to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.errors import field_error
from metadata_templates.naming import SUPPLIERS_TARGET_PATH as SUPPLIERS_TARGET_PATH

USER_ROLES = ("IS", "GS", "DCC")
"""DCC User Roles that may hold a CFL registration: Import Supplier, Gas Supplier, the DCC."""

DEFAULT_ACCESS_POLICY: Mapping[str, tuple[str, ...]] = {
    "ESME": ("IS",),
    "HCALCS": ("IS",),
    "GSME": ("GS",),
    # HAN devices serve either fuel, and so either supplier.
    "PPMID": ("IS", "GS"),
    "IHD": ("IS", "GS"),
    "CAD": ("IS", "GS"),
    # Communications hubs belong to the DCC.
    "CHF": ("DCC",),
    "GPF": ("DCC",),
}
"""Device type -> User Roles entitled to download its images (DOMAIN.md, "Suppliers and access")."""

ESTATE_REFUSAL = "no device in your estate that this image applies to"
"""The host's 403 reason when the estate gives the caller no right to an image (issue 22): the
provider's host sends it, the supplier's client recognises it and explains it in one line."""

STATUS_ACTIVE = "active"
STATUS_REVOKED = "revoked"

_ENTITY_ID = re.compile(r"[0-9A-F]{16}")


def entity_id(value: str, field: str = "Entity ID") -> str:
    """An organisation's Entity ID: an EUI-64 as 16 upper-case hex digits (hyphens allowed on input).

    Raises:
        ValueError: not 16 hex digits.
    """
    text = value.strip().replace("-", "").upper()
    if not _ENTITY_ID.fullmatch(text):
        raise ValueError(field_error(field, value, "16 hex digits (an EUI-64)"))
    return text


def roles_for(
    device_type: str, policy: Mapping[str, tuple[str, ...]] = DEFAULT_ACCESS_POLICY
) -> tuple[str, ...]:
    """The User Roles entitled to images of ``device_type`` (none for an unknown type)."""
    return tuple(policy.get(device_type.upper(), ()))


@dataclass(frozen=True)
class Supplier:
    """One registered organisation, as published."""

    entity_id: str
    name: str
    roles: tuple[str, ...]
    certificate_pem: str  # the SMKI Organisation Certificate (X.509, ECDSA P-256), PEM
    certificate_sha256: str  # SHA-256 of the certificate's DER, lower-case hex
    registered: str  # UTC timestamp, custom.format_timestamp form
    status: str = STATUS_ACTIVE
    revoked: str | None = None
    revocation_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == STATUS_ACTIVE

    def may_fetch(
        self, device_type: str, policy: Mapping[str, tuple[str, ...]] = DEFAULT_ACCESS_POLICY
    ) -> bool:
        """True when this organisation is active and one of its roles is entitled to the type."""
        return self.active and bool(set(self.roles) & set(roles_for(device_type, policy)))

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "entity_id": self.entity_id,
            "name": self.name,
            "roles": list(self.roles),
            "certificate_pem": self.certificate_pem,
            "certificate_sha256": self.certificate_sha256,
            "registered": self.registered,
            "status": self.status,
        }
        if self.revoked is not None:
            doc["revoked"] = self.revoked
            doc["revocation_reason"] = self.revocation_reason
        return doc

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> Supplier:
        """Read one entry, naming the field that is wrong.

        Raises:
            ValueError: a field is missing or of the wrong form.
        """
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, type(doc).__name__, "an object"))

        def text(name: str, optional: bool = False) -> Any:
            value = doc.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, str):
                raise ValueError(field_error(f"{where}.{name}", value, "a string"))
            return value

        roles = doc.get("roles")
        if (
            not isinstance(roles, list)
            or not roles
            or any(role not in USER_ROLES for role in roles)
            or len(set(roles)) != len(roles)
        ):
            raise ValueError(
                field_error(f"{where}.roles", roles, f"distinct roles from {list(USER_ROLES)}")
            )
        status = text("status")
        if status not in (STATUS_ACTIVE, STATUS_REVOKED):
            raise ValueError(
                field_error(f"{where}.status", status, f"{STATUS_ACTIVE!r} or {STATUS_REVOKED!r}")
            )
        fingerprint = text("certificate_sha256")
        if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
            raise ValueError(
                field_error(f"{where}.certificate_sha256", fingerprint, "64 lower-case hex digits")
            )
        return cls(
            entity_id=entity_id(text("entity_id"), f"{where}.entity_id"),
            name=text("name"),
            roles=tuple(roles),
            certificate_pem=text("certificate_pem"),
            certificate_sha256=fingerprint,
            registered=text("registered"),
            status=status,
            revoked=text("revoked", optional=True),
            revocation_reason=text("revocation_reason", optional=True),
        )


@dataclass(frozen=True)
class SupplierRegistry:
    """Every organisation ever registered, in registration order; revoked ones stay listed."""

    suppliers: tuple[Supplier, ...] = ()

    def by_entity_id(self) -> dict[str, Supplier]:
        return {s.entity_id: s for s in self.suppliers}

    def by_certificate(self) -> dict[str, Supplier]:
        """Certificate SHA-256 -> organisation, for the access log and the audit."""
        return {s.certificate_sha256: s for s in self.suppliers}

    def entitled(
        self, device_type: str, policy: Mapping[str, tuple[str, ...]] = DEFAULT_ACCESS_POLICY
    ) -> tuple[Supplier, ...]:
        """Active organisations entitled to images of ``device_type``, in registration order."""
        return tuple(s for s in self.suppliers if s.may_fetch(device_type, policy))

    def with_added(self, supplier: Supplier) -> SupplierRegistry:
        return SupplierRegistry((*self.suppliers, supplier))

    def with_replaced(self, supplier: Supplier) -> SupplierRegistry:
        return SupplierRegistry(
            tuple(supplier if s.entity_id == supplier.entity_id else s for s in self.suppliers)
        )

    def revoke(self, entity: str, *, at: str, reason: str) -> SupplierRegistry:
        """The registry with ``entity`` revoked (the caller checks that it exists and is active)."""
        current = self.by_entity_id()[entity]
        return self.with_replaced(
            replace(current, status=STATUS_REVOKED, revoked=at, revocation_reason=reason)
        )

    def to_bytes(self) -> bytes:
        doc = {"schema_version": SCHEMA_VERSION, "suppliers": [s.to_dict() for s in self.suppliers]}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SupplierRegistry:
        """Parse a published registry.

        Raises:
            ValueError: not JSON, wrong schema version, or an entry is malformed.
        """
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"suppliers.json: not JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(field_error("suppliers.schema_version", found, str(SCHEMA_VERSION)))
        entries = doc.get("suppliers")
        if not isinstance(entries, list):
            raise ValueError(field_error("suppliers.suppliers", entries, "a list"))
        suppliers = tuple(
            Supplier.from_dict(entry, f"suppliers[{i}]") for i, entry in enumerate(entries)
        )
        ids = [s.entity_id for s in suppliers]
        if len(set(ids)) != len(ids):
            raise ValueError("suppliers: an Entity ID is listed twice; expected each once")
        return cls(suppliers)


def certificate_sha256(der: bytes) -> str:
    """The certificate fingerprint the registry publishes (SHA-256 of the DER encoding)."""
    return hashlib.sha256(der).hexdigest()


def registry_of(suppliers: Iterable[Supplier]) -> SupplierRegistry:
    return SupplierRegistry(tuple(suppliers))
