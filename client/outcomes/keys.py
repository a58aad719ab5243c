"""The organisation key a report is signed with, and who it belongs to.

The key is the P-256 private key of the certificate the supplier registered with the provider; the
verified registry (``cfl/suppliers.json``) says which Entity ID holds that certificate, so no Entity
ID is configured and a key the registry does not know cannot sign for anyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner

from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from metadata_templates.suppliers import Supplier, SupplierRegistry


@dataclass(frozen=True)
class OrganisationKey:
    """A loaded organisation key: the signer, and its public key's fingerprint."""

    signer: CryptoSigner
    public_der: bytes  # SubjectPublicKeyInfo, DER

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the public key (SubjectPublicKeyInfo DER), hex: how errors name the key."""
        return hashlib.sha256(self.public_der).hexdigest()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_organisation_key(path: Path, passphrase: Callable[[], str]) -> OrganisationKey:
    """The P-256 private key in ``path`` (PEM, PKCS#8 or SEC1); ``passphrase`` is called only for
    an encrypted one.

    Raises:
        ConfigurationError: unreadable, wrong passphrase, or not a P-256 private key.
    """
    where = f"--key {path}"
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{where}: cannot read ({e.strerror or e})") from e
    password = passphrase().encode() if b"ENCRYPTED" in pem else None
    try:
        key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(
            field_error(where, "unreadable or wrong passphrase", "a P-256 private key in PEM")
        ) from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigurationError(
            field_error(where, type(key).__name__, "an ECDSA P-256 private key (SMKI)")
        )
    return OrganisationKey(CryptoSigner(key), _spki(key.public_key()))


def supplier_of_key(registry: SupplierRegistry, key: OrganisationKey) -> Supplier:
    """The active registered supplier whose certificate holds ``key``'s public half.

    Raises:
        RejectedInputError: no registered certificate holds it, or only revoked ones do.
    """
    revoked: Supplier | None = None
    for supplier in registry.suppliers:
        try:
            certificate = x509.load_pem_x509_certificate(supplier.certificate_pem.encode())
            public = certificate.public_key()
        except ValueError:
            continue
        if not isinstance(public, ec.EllipticCurvePublicKey) or _spki(public) != key.public_der:
            continue
        if supplier.active:
            return supplier
        revoked = supplier
    if revoked is not None:
        raise RejectedInputError(
            f"key {key.fingerprint}: its certificate belongs to supplier {revoked.entity_id} "
            f"({revoked.name}), revoked {revoked.revoked} ({revoked.revocation_reason}); "
            "a revoked supplier cannot report",
            hint="ask the provider to register your new certificate, then cfl refresh",
        )
    raise RejectedInputError(
        f"key {key.fingerprint}: no registered supplier certificate in the verified registry holds "
        "this public key; expected the private key of your organisation's registered certificate",
        hint="check --key, or run cfl refresh if you were registered recently",
    )
