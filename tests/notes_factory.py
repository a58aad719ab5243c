"""Organisations, a published supplier registry and a notes custodian for release-note tests.

Registry documents are built directly with metadata_templates.suppliers (the suppliers branch owns
the commands that write them) and published through the repository's provider-target staging, the
same path the CPL takes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwcrypto import jwk

from client.trust.session import Session, SessionPaths
from factory import FolderFetcher, LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.custom import format_timestamp
from metadata_templates.notes import private_key_from_pem
from metadata_templates.suppliers import (
    SUPPLIERS_TARGET_PATH,
    Supplier,
    SupplierRegistry,
    certificate_sha256,
)
from repo_tool.ops.notes_grant import set_custodian

PLAINTEXT = (
    b"DEPLOYMENT: install between 02:00 and 04:00; SECRET-MARKER-7f3a91 do not reboot twice\n"
)


@dataclass(frozen=True)
class Org:
    """A DCC User organisation with its SMKI-like certificate and private key."""

    entity_id: str
    name: str
    roles: tuple[str, ...]
    key_pem: bytes
    cert_pem: bytes

    @property
    def key(self) -> jwk.JWK:
        return private_key_from_pem(self.key_pem, None, self.name)

    def supplier(self, registered: str) -> Supplier:
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return Supplier(
            entity_id=self.entity_id,
            name=self.name,
            roles=self.roles,
            certificate_pem=self.cert_pem.decode(),
            certificate_sha256=certificate_sha256(cert.public_bytes(serialization.Encoding.DER)),
            registered=registered,
        )


def p256_pem() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, pem


def make_org(entity_id: str, name: str, *roles: str) -> Org:
    key, pem = p256_pem()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return Org(entity_id, name, roles, pem, cert.public_bytes(serialization.Encoding.PEM))


# How long before the test's clock the organisations registered by default: longer than the
# policy's min_recipient_age_days, as real recipients are, so `submit --release-notes` encrypts to
# them (the age rule itself: tests/repo/test_recipient_age.py).
ESTABLISHED = datetime.timedelta(days=30)


def publish_registry(
    factory: LibraryFactory,
    orgs: list[Org],
    *,
    revoked: tuple[str, ...] = (),
    registered: datetime.datetime | None = None,
) -> SupplierRegistry:
    """Stage and publish a registry of ``orgs`` (those in ``revoked`` revoked), registered at
    ``registered`` (default: ``ESTABLISHED`` before the factory's clock)."""
    at = format_timestamp(registered or factory.now - ESTABLISHED)
    registry = SupplierRegistry(tuple(o.supplier(at) for o in orgs))
    for entity in revoked:
        registry = registry.revoke(
            entity, at=format_timestamp(factory.now), reason="left the market"
        )
    with factory.repo.locked():
        factory.repo.put_provider_targets(
            {SUPPLIERS_TARGET_PATH: registry.to_bytes()},
            now=factory.tick(),
            event={"event": "test-registry"},
        )
    factory.publish()
    return registry


@dataclass
class NotesLibrary:
    """A published library with an ESME (121D) and a GSME (3F01) image slot, organisations and a
    notes custodian."""

    factory: LibraryFactory
    images: dict[str, bytes]
    orgs: dict[str, Org]
    custodian_pem: bytes

    @property
    def custodian_key(self) -> jwk.JWK:
        return private_key_from_pem(self.custodian_pem, None, "custodian")

    def session(self, workdir: Path, fetcher: FolderFetcher | None = None) -> Session:
        fetcher = fetcher or FolderFetcher(self.factory.out)
        return Session(
            SessionPaths(workdir / "metadata", workdir / "targets"),
            fetcher.base_url,
            fetcher,
            bootstrap_root=self.factory.root_bytes,
        )


def notes_library(tmp: Path, *, provider: bool = False) -> NotesLibrary:
    images = {
        "esme": make_image("121D", 2),
        "esme3": make_image("121D", 3),
        "gsme": make_image("3F01", 5),
    }
    factory = LibraryFactory(tmp, provider=provider)
    factory.import_cpl(
        [
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(images["esme"])),
            make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(images["esme3"])),
            make_entry(
                "CPL-0101",
                mfr="3F01",
                model="0B0C",
                fw="00000005",
                image_sha=mi_sha(images["gsme"]),
                device_type="GSME",
            ),
        ]
    )
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3F01")
    orgs = {
        "is": make_org("0011223344556677", "Volt Energy", "IS"),
        "gs": make_org("8899AABBCCDDEEFF", "Gasco", "GS"),
        "revoked": make_org("1111222233334444", "Gone Power", "IS"),
        "late": make_org("5555666677778888", "Newcomer Energy", "IS", "GS"),
    }
    publish_registry(
        factory, [orgs["is"], orgs["gs"], orgs["revoked"]], revoked=("1111222233334444",)
    )
    custodian_key, custodian_pem = p256_pem()
    public = custodian_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with factory.repo.locked():
        set_custodian(factory.repo, public, now=factory.tick())
    factory.publish()
    return NotesLibrary(factory, images, orgs, custodian_pem)


def publish_custodian(factory: LibraryFactory) -> ec.EllipticCurvePrivateKey:
    """Publish a notes-custodian key, so deposits may carry encrypted release notes."""
    key, _ = p256_pem()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with factory.repo.locked():
        set_custodian(factory.repo, public, now=factory.tick())
    factory.publish()
    return key
