"""Encrypted release notes: the format both sides agree on, as a pure core (bytes and values in and out).

A release note travels as one JWE in the JSON serialisation (RFC 7516, general form; flattened when
there is a single recipient), made and opened by jwcrypto: content encryption ``A256GCM``, one
``ECDH-ES+A256KW`` recipient per organisation entitled to the image's device type (the public key of
its registered SMKI Organisation Certificate, ECDSA P-256) plus the provider's notes-custodian key.

Each recipient's own header carries its ``kid`` (the supplier's Entity ID, or ``CUSTODIAN_KID``) so a
reader finds its entry. Per-recipient headers are not authenticated by JWE, so the *protected* header
(authenticated as AES-GCM additional data) repeats the recipient list with each key's RFC 7638
thumbprint, and binds the image target path and the plaintext SHA-256: a ciphertext cannot be moved
to another image, and a recipient list edited after encryption no longer matches the authenticated one.
The whole file is also a manufacturer-signed TUF target, so any edit fails TUF first.

Paths: the note of image ``121D/ESME-....ota`` is the manufacturer's target ``121D/ESME-....ota.notes.jwe``
(the same single path segment under the delegation); a grant to an organisation registered later is
the provider's target ``cfl/grants/<Entity ID>/121D-ESME-....ota.notes.jwe``; the custodian's public key
is the provider's target ``cfl/notes-custodian.json``.

The same envelope carries a security advisory's confidential detail (issue 23): encrypted to the
organisations entitled to the device types of the advisory's affected CPL entries plus the custodian,
and bound (``cfl_target``) to the advisory revision's own target path instead of an image's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

from metadata_templates import SCHEMA_VERSION
from metadata_templates.advisory import is_advisory_target_path
from metadata_templates.errors import RejectedInputError, field_error
from metadata_templates.notes_paths import GRANTS_PREFIX as GRANTS_PREFIX
from metadata_templates.notes_paths import IMAGE_PATH as _IMAGE_PATH
from metadata_templates.notes_paths import NOTES_SUFFIX as NOTES_SUFFIX
from metadata_templates.notes_paths import grant_target_path as grant_target_path
from metadata_templates.notes_paths import is_grant_target_path as is_grant_target_path
from metadata_templates.notes_paths import is_notes_target_path as is_notes_target_path
from metadata_templates.notes_paths import notes_target_path as notes_target_path
from metadata_templates.suppliers import Supplier, SupplierRegistry

CUSTODIAN_TARGET_PATH = "cfl/notes-custodian.json"
CUSTODIAN_KID = "cfl-notes-custodian"
KEY_ALGORITHM = "ECDH-ES+A256KW"
CONTENT_ENCRYPTION = "A256GCM"
MAX_NOTES_BYTES = 5_000_000  # plaintext; the bundle's old plaintext member had the same ceiling
MAX_ENVELOPE_BYTES = 8_000_000  # base64url of 5 MB plus headers for a few hundred recipients

# Protected-header names of our own; the "cfl_" prefix keeps them clear of registered JOSE names.
HEADER_TARGET = "cfl_target"
HEADER_PLAINTEXT_SHA256 = "cfl_plaintext_sha256"
HEADER_RECIPIENTS = "cfl_recipients"
HEADER_GRANT_FOR = "cfl_grant_for"

_SHA256 = re.compile(r"[0-9a-f]{64}")


class NotesError(RejectedInputError):
    """An encrypted note is malformed, bound to something else, or fails to decrypt."""


class NotRecipientError(NotesError):
    """The reader's key is not among a note's recipients."""


# Paths (notes_target_path, is_notes_target_path, ...) are in metadata_templates/notes_paths.py.


# ------------------------------------------------------------------------------------------ keys


@dataclass(frozen=True)
class Recipient:
    """Who a note is encrypted to, as the authenticated header lists it."""

    kid: str  # Entity ID, or CUSTODIAN_KID
    thumbprint: str  # RFC 7638 SHA-256 thumbprint of the recipient's public key (base64url)

    def to_dict(self) -> dict[str, str]:
        return {"kid": self.kid, "thumbprint": self.thumbprint}


@dataclass(frozen=True)
class RecipientKey:
    """A recipient with the public key to encrypt to."""

    recipient: Recipient
    key: jwk.JWK
    name: str  # organisation name, for the website; the custodian's is "CFL notes custodian"


def _p256_jwk(public_key: object, where: str) -> jwk.JWK:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise NotesError(field_error(where, type(public_key).__name__, "an ECDSA P-256 public key"))
    return jwk.JWK.from_pyca(public_key)


def supplier_key(supplier: Supplier) -> RecipientKey:
    """The recipient for a registered organisation: the public key of its certificate.

    Raises:
        NotesError: the certificate is unreadable or not ECDSA P-256.
    """
    where = f"suppliers[{supplier.entity_id}].certificate_pem"
    try:
        certificate = x509.load_pem_x509_certificate(supplier.certificate_pem.encode())
    except ValueError as e:
        raise NotesError(field_error(where, "unreadable PEM", "an X.509 certificate")) from e
    key = _p256_jwk(certificate.public_key(), where)
    return RecipientKey(Recipient(supplier.entity_id, key.thumbprint()), key, supplier.name)


def public_key_from_pem(pem: bytes, where: str) -> jwk.JWK:
    """A P-256 public key from a PEM public key or certificate.

    Raises:
        NotesError: not a P-256 public key or certificate.
    """
    try:
        if b"CERTIFICATE" in pem:
            public: object = x509.load_pem_x509_certificate(pem).public_key()
        else:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            public = load_pem_public_key(pem)
    except ValueError as e:
        raise NotesError(field_error(where, "unreadable PEM", "a P-256 public key")) from e
    return _p256_jwk(public, where)


@dataclass(frozen=True)
class CustodianDocument:
    """The provider's notes-custodian public key, published as ``cfl/notes-custodian.json``."""

    public_key_pem: str

    def key(self) -> RecipientKey:
        """Raises: NotesError: the key is not ECDSA P-256."""
        key = public_key_from_pem(self.public_key_pem.encode(), "notes-custodian.public_key_pem")
        return RecipientKey(Recipient(CUSTODIAN_KID, key.thumbprint()), key, "CFL notes custodian")

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "kid": CUSTODIAN_KID,
            "public_key_pem": self.public_key_pem,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CustodianDocument:
        """Raises: NotesError: not the document's shape or not a P-256 key."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise NotesError(f"notes-custodian.json: not JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
            raise NotesError(
                field_error("notes-custodian.schema_version", found, str(SCHEMA_VERSION))
            )
        pem = doc.get("public_key_pem")
        if not isinstance(pem, str):
            raise NotesError(field_error("notes-custodian.public_key_pem", pem, "a PEM string"))
        document = cls(pem)
        document.key()
        return document


def audience(
    registry: SupplierRegistry, custodian: CustodianDocument, device_type: str
) -> tuple[RecipientKey, ...]:
    """Every active organisation entitled to ``device_type``, in registration order, then the custodian.

    Raises:
        NotesError: a registered certificate or the custodian key is not ECDSA P-256.
    """
    return audience_for(registry, custodian, (device_type,))


def audience_for(
    registry: SupplierRegistry, custodian: CustodianDocument, device_types: Sequence[str]
) -> tuple[RecipientKey, ...]:
    """Every active organisation entitled to any of ``device_types`` (an advisory's affected
    entries may span several), in registration order, then the custodian.

    Raises:
        NotesError: a registered certificate or the custodian key is not ECDSA P-256.
    """
    return (*(supplier_key(s) for s in entitled_to_any(registry, device_types)), custodian.key())


def entitled_to_any(
    registry: SupplierRegistry, device_types: Sequence[str]
) -> tuple[Supplier, ...]:
    """The active organisations entitled to at least one of ``device_types``, in registration order."""
    entitled = {s.entity_id for t in device_types for s in registry.entitled(t)}
    return tuple(s for s in registry.suppliers if s.entity_id in entitled)


# ------------------------------------------------------------------------------------- envelope


@dataclass(frozen=True)
class Envelope:
    """What an encrypted note says about itself without being decrypted."""

    target: str  # the image target it belongs to
    plaintext_sha256: str
    recipients: tuple[Recipient, ...]  # as authenticated in the protected header
    grant_for: str | None  # the Entity ID of a grant, None for a manufacturer's note

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(r.kid for r in self.recipients)


def encrypt_notes(
    plaintext: bytes,
    image_target: str,
    recipients: Sequence[RecipientKey],
    *,
    grant_for: str | None = None,
) -> bytes:
    """Encrypt ``plaintext`` once to every recipient (one content key, wrapped per recipient).

    Raises:
        NotesError: no recipient, too large, or a duplicate recipient.
    """
    if not recipients:
        raise NotesError("recipients: found none, expected at least the notes custodian")
    if len(plaintext) > MAX_NOTES_BYTES:
        raise NotesError(
            field_error("release notes size", len(plaintext), f"at most {MAX_NOTES_BYTES} bytes")
        )
    kids = [r.recipient.kid for r in recipients]
    if len(set(kids)) != len(kids):
        raise NotesError(field_error("recipients", kids, "each recipient once"))
    protected: dict[str, Any] = {
        "enc": CONTENT_ENCRYPTION,
        "cty": "text/plain",
        HEADER_TARGET: image_target,
        HEADER_PLAINTEXT_SHA256: hashlib.sha256(plaintext).hexdigest(),
        HEADER_RECIPIENTS: [r.recipient.to_dict() for r in recipients],
    }
    if grant_for is not None:
        protected[HEADER_GRANT_FOR] = grant_for
    token = jwe.JWE(plaintext, protected=json.dumps(protected, sort_keys=True))
    for r in recipients:
        token.add_recipient(
            r.key, header=json.dumps({"alg": KEY_ALGORITHM, "kid": r.recipient.kid})
        )
    return token.serialize().encode()


def _b64_json(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        raise NotesError(field_error(where, type(text).__name__, "a base64url string"))
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, UnicodeDecodeError) as e:
        raise NotesError(field_error(where, "undecodable", "base64url of a JSON object")) from e


def parse_envelope(data: bytes | memoryview) -> Envelope:
    """Read the authenticated header and the recipient entries of a note without decrypting it.

    Raises:
        NotesError: not a JWE in the JSON serialisation, another algorithm, a recipient entry that
            differs from the authenticated recipient list, or a malformed binding.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise NotesError(
            field_error("notes size", len(data), f"at most {MAX_ENVELOPE_BYTES} bytes")
        )
    try:
        doc = json.loads(bytes(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotesError(
            "notes: found no JSON (plaintext?), expected a JWE in the JSON serialisation"
        ) from e
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), str) for k in ("protected", "iv", "ciphertext", "tag")
    ):
        raise NotesError(
            "notes: found no protected/iv/ciphertext/tag members, expected a JWE in the JSON serialisation"
        )
    protected = _b64_json(doc["protected"], "notes.protected")
    if not isinstance(protected, dict):
        raise NotesError(field_error("notes.protected", type(protected).__name__, "a JSON object"))
    # Our format never compresses and defines no critical extensions: refusing both keeps a
    # hostile note from becoming a decompression bomb or meaning something a reader ignores.
    for forbidden in ("zip", "crit"):
        if forbidden in protected:
            raise NotesError(
                field_error(f"notes.protected.{forbidden}", protected[forbidden], "absent")
            )
    if protected.get("enc") != CONTENT_ENCRYPTION:
        raise NotesError(
            field_error("notes.protected.enc", protected.get("enc"), CONTENT_ENCRYPTION)
        )
    target = protected.get(HEADER_TARGET)
    if not isinstance(target, str) or (
        _IMAGE_PATH.fullmatch(target) is None and not is_advisory_target_path(target)
    ):
        raise NotesError(
            field_error(
                f"notes.protected.{HEADER_TARGET}", target, "an image or advisory target path"
            )
        )
    digest = protected.get(HEADER_PLAINTEXT_SHA256)
    if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
        raise NotesError(
            field_error(
                f"notes.protected.{HEADER_PLAINTEXT_SHA256}", digest, "64 lower-case hex digits"
            )
        )
    grant_for = protected.get(HEADER_GRANT_FOR)
    if grant_for is not None and not isinstance(grant_for, str):
        raise NotesError(
            field_error(f"notes.protected.{HEADER_GRANT_FOR}", grant_for, "an Entity ID")
        )
    listed = protected.get(HEADER_RECIPIENTS)
    if (
        not isinstance(listed, list)
        or not listed
        or not all(
            isinstance(r, dict)
            and isinstance(r.get("kid"), str)
            and isinstance(r.get("thumbprint"), str)
            for r in listed
        )
    ):
        raise NotesError(
            field_error(
                f"notes.protected.{HEADER_RECIPIENTS}", listed, "a list of {kid, thumbprint}"
            )
        )
    recipients = tuple(Recipient(r["kid"], r["thumbprint"]) for r in listed)
    entries = doc.get("recipients")
    if entries is None:  # flattened form: one recipient at the top level
        entries = [{"header": doc.get("header"), "encrypted_key": doc.get("encrypted_key")}]
    if not isinstance(entries, list):
        raise NotesError(field_error("notes.recipients", type(entries).__name__, "a list"))
    kids: list[str] = []
    for i, entry in enumerate(entries):
        header = entry.get("header") if isinstance(entry, dict) else None
        if not isinstance(header, dict) or header.get("alg") != KEY_ALGORITHM:
            found = header.get("alg") if isinstance(header, dict) else header
            raise NotesError(field_error(f"notes.recipients[{i}].header.alg", found, KEY_ALGORITHM))
        kids.append(str(header.get("kid")))
    expected = [r.kid for r in recipients]
    if kids != expected:
        raise NotesError(
            field_error(
                "notes.recipients[].header.kid",
                kids,
                f"{expected} (the authenticated recipient list)",
            )
        )
    return Envelope(target, digest, recipients, grant_for)


def decrypt_notes(data: bytes, key: jwk.JWK, kid: str, *, image_target: str) -> bytes:
    """Decrypt a note (or a grant, or an advisory's detail: ``image_target`` is then the advisory
    revision's target) as recipient ``kid`` and check what it is bound to.

    Raises:
        NotRecipientError: ``kid`` is not a recipient, or the key is not the one the note lists.
        NotesError: malformed, bound to another image, tampered with, or the plaintext hash differs.
    """
    what = _what(image_target)
    envelope = parse_envelope(data)
    if envelope.target != image_target:
        raise NotesError(
            field_error(f"notes.protected.{HEADER_TARGET}", envelope.target, repr(image_target))
        )
    listed = {r.kid: r.thumbprint for r in envelope.recipients}
    if kid not in listed:
        raise NotRecipientError(f"{what}: {kid} is not a recipient (recipients: {sorted(listed)})")
    if listed[kid] != key.thumbprint():
        raise NotRecipientError(
            field_error(
                f"{what}: key thumbprint for {kid}",
                key.thumbprint(),
                f"{listed[kid]} (the key the note was encrypted to)",
            )
        )
    token = jwe.JWE()
    try:
        token.deserialize(bytes(data).decode(), key)
    except (JWException, ValueError) as e:
        raise NotesError(
            f"{what}: decryption failed ({type(e).__name__}); the ciphertext "
            "or its header was altered"
        ) from e
    plaintext = token.plaintext or b""
    actual = hashlib.sha256(plaintext).hexdigest()
    if actual != envelope.plaintext_sha256:
        raise NotesError(
            field_error(
                f"{what}: plaintext SHA-256",
                actual,
                envelope.plaintext_sha256,
            )
        )
    return plaintext


def _what(target: str) -> str:
    """How messages name what is being decrypted."""
    if is_advisory_target_path(target):
        return f"advisory detail of {target}"
    return f"release notes of {target}"


def private_key_from_pem(pem: bytes, password: bytes | None, where: str) -> jwk.JWK:
    """A P-256 private key for decrypting, from PEM (PKCS#8 or SEC1, optionally encrypted).

    Raises:
        NotesError: unreadable, wrong passphrase, or not P-256.
    """
    try:
        key = jwk.JWK.from_pem(pem, password=password)
    except (ValueError, TypeError, JWException) as e:
        raise NotesError(
            field_error(where, "unreadable or wrong passphrase", "a P-256 private key in PEM")
        ) from e
    if key.get("kty") != "EC" or key.get("crv") != "P-256" or not key.has_private:
        raise NotesError(
            field_error(where, f"{key.get('kty')} {key.get('crv')}", "an EC P-256 private key")
        )
    return key


def pem_is_encrypted(pem: bytes) -> bool:
    """True when a PEM private key needs a passphrase (so the CLI knows to ask)."""
    return b"ENCRYPTED" in pem


def supplier_for_key(registry: SupplierRegistry, key: jwk.JWK) -> Supplier | None:
    """The registered organisation whose certificate holds ``key``'s public half, if any.

    A supplier therefore needs no configured Entity ID: its key says who it is.
    """
    thumbprint = key.thumbprint()
    for supplier in registry.suppliers:
        try:
            if supplier_key(supplier).recipient.thumbprint == thumbprint:
                return supplier
        except NotesError:
            continue
    return None


def manufacturer_of_notes_target(path: str) -> str | None:
    """The manufacturer ID a notes target path starts with, or None if it is not one."""
    return path.split("/", 1)[0] if is_notes_target_path(path) else None
