"""Supplier certificates: the checks a DCC User certificate must pass before it is registered, and the
fingerprints the host and the access audit know it by. Pure: bytes and ``now`` in, a checked
certificate or one error naming the field out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from metadata_templates.suppliers import certificate_sha256


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
