"""A library with one pilot image, built by repo_tool's own code, for the pilot tests (issue 22).

121D deposits a public ESME image (CPL-E2, firmware 2) and then, as manufacturer, a pilot of its
next build (CPL-E3, firmware 3, Upgrade From CPL-E2) for supplier A1 alone until ``release_at``.
Registered suppliers: A1 (IS, the pilot), A2 (IS, not in the pilot), A3 (GS) and A5 (IS, revoked).
Time is injected: ``factory.now`` moves with `travel`, and every command is given it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from access.pki import Issued, issue, make_ca
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from securesystemslib.signer import CryptoSigner

from factory import LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.custom import PilotTerms
from repo_tool.intake.bundle import Bundle, Declaration
from repo_tool.ops.manufacturers import add_manufacturer
from repo_tool.ops.suppliers import add_supplier, revoke_supplier
from repo_tool.submit.deposit import build_submission
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

PILOT = "00000000000000A1"  # IS, the pilot supplier
OTHER = "00000000000000A2"  # IS, an entitled supplier outside the pilot
GAS = "00000000000000A3"  # GS: not entitled to ESME images at all
REVOKED = "00000000000000A5"  # IS, revoked
SUPPLIERS = {PILOT: ("IS",), OTHER: ("IS",), GAS: ("GS",), REVOKED: ("IS",)}
MFR = "121D"
IMAGES = {
    "public": make_image(MFR, 2),
    "pilot": make_image(MFR, 3),
    "spare": make_image(MFR, 4),  # for the gateway's cases: CPL-E4, never deposited by default
}
ENTRIES = [
    make_entry("CPL-E2", fw="00000002", image_sha=mi_sha(IMAGES["public"])),
    make_entry(
        "CPL-E3", fw="00000003", image_sha=mi_sha(IMAGES["pilot"]), upgrade_from=("CPL-E2",)
    ),
    make_entry("CPL-E4", fw="00000004", image_sha=mi_sha(IMAGES["spare"])),
]


@dataclass
class PilotLibrary:
    """The factory, the organisations' certificates, and the two deposited targets."""

    factory: LibraryFactory
    ca: Issued
    certificates: dict[str, Issued]
    public_target: str
    pilot_target: str = ""
    release_at: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def repo_path(self) -> Path:
        return self.factory.repo.path

    def release_moment(self) -> datetime:
        return datetime.combine(datetime.fromisoformat(self.release_at).date(), time(0), UTC)

    def travel(self, to: datetime) -> datetime:
        """Move the injected clock (never backwards)."""
        assert to >= self.factory.now
        self.factory.now = to
        return to


def day_after(now: datetime, days: int) -> str:
    """The UTC date ``days`` after ``now``'s."""
    return (now.astimezone(UTC).date() + timedelta(days=days)).isoformat()


def pilot_bundle(
    factory: LibraryFactory,
    image: bytes,
    entries: list[str],
    *,
    suppliers: tuple[str, ...],
    release_at: str,
) -> Bundle:
    """Sign a pilot deposit as the manufacturer's `submit --pilot --release-at` does."""
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    return build_submission(
        image=image,
        manufacturer_id=MFR,
        signers=[factory.mfr_signers[MFR]],
        declaration=Declaration(tuple(entries), "compliance", ()),
        release_notes=None,
        library=library,
        now=factory.now,
        pilot=PilotTerms(suppliers, release_at),
    ).bundle


def _add_manufacturer(factory: LibraryFactory, key_file: Path) -> None:
    """Register 121D with a key kept as an unencrypted PEM file, for `cfl-repo submit --key`."""
    private = ed25519.Ed25519PrivateKey.generate()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signer = CryptoSigner(private)
    factory.mfr_signers[MFR] = signer
    with factory.repo.locked():
        add_manufacturer(
            factory.repo, MFR, f"Maker {MFR}", [signer.public_key], 1, now=factory.tick()
        )


def manufacturer_key(library: PilotLibrary) -> Path:
    """121D's private key PEM."""
    return library.repo_path.parent / "maker" / "121D.pem"


def build_pilot_library(
    tmp: Path, *, now: datetime | None = None, release_in_days: int = 2, deposit_pilot: bool = True
) -> PilotLibrary:
    """The library of the module doc, published; ``now`` the factory's start time."""
    factory = LibraryFactory(tmp, provider=True, **({"now": now} if now is not None else {}))
    factory.import_cpl(ENTRIES)
    _add_manufacturer(factory, tmp / "maker" / "121D.pem")
    ca = make_ca(now=factory.now)
    certificates = {
        entity: issue(ca, f"Supplier {entity}", now=factory.now) for entity in SUPPLIERS
    }
    with factory.repo.locked():
        for entity, roles in SUPPLIERS.items():
            add_supplier(
                factory.repo,
                entity=entity,
                name=f"Supplier {entity[-2:]}",
                roles=roles,
                certificate=certificates[entity].cert_pem,
                now=factory.tick(),
                ca_pem=ca.cert_pem,
            )
        revoke_supplier(factory.repo, entity=REVOKED, reason="left the market", now=factory.tick())
    factory.publish()
    public = factory.deposit(IMAGES["public"], ["CPL-E2"])
    assert public.target is not None
    library = PilotLibrary(factory, ca, certificates, public.target)
    if deposit_pilot:
        library.release_at = day_after(factory.now, release_in_days)
        result = factory.ingest(
            pilot_bundle(
                factory,
                IMAGES["pilot"],
                ["CPL-E3"],
                suppliers=(PILOT,),
                release_at=library.release_at,
            )
        )
        assert result.status == "accepted", result.messages
        assert result.target is not None
        library.pilot_target = result.target
        factory.publish()
    return library
