"""A library for the supplier-side outcome tests (issue 24), built by repo_tool's own code.

121D publishes three ESME images of one product line: firmware 1 (CPL-E1), 2 (CPL-E2, Upgrade From
CPL-E1) and 3 (CPL-E3, Upgrade From CPL-E1 and CPL-E2); 3A7F publishes one (firmware 9). Registered
suppliers: B1 and B2 (IS, active) and B5 (IS, revoked). ``publish_outcomes`` signs a
``cfl/outcomes.json`` the way ``stage_releases`` signs ``cfl/releases.json``: only until the
provider side exists, in this test helper only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from access.pki import Issued, issue, make_ca
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from client.trust.home import ClientConfig, ClientHome
from client.trust.refresh import refresh_library
from factory import LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.outcomes import (
    ACTION_HOLD,
    BY_POLICY,
    HoldEvent,
    OutcomeReport,
    OutcomesDocument,
    ReportImage,
    previous_month,
    sign_report,
)
from repo_tool.ops import outcomes as ops
from repo_tool.ops.suppliers import add_supplier, revoke_supplier

SUPPLIER = "00000000000000B1"
SECOND = "00000000000000B2"
REVOKED = "00000000000000B5"
SUPPLIERS = (SUPPLIER, SECOND, REVOKED)
MFR = "121D"
OTHER_MFR = "3A7F"
IMAGES = {1: make_image(MFR, 1), 2: make_image(MFR, 2), 3: make_image(MFR, 3)}
OTHER_IMAGE = make_image(OTHER_MFR, 9)
ENTRIES = [
    make_entry("CPL-E1", fw="00000001", image_sha=mi_sha(IMAGES[1])),
    make_entry("CPL-E2", fw="00000002", image_sha=mi_sha(IMAGES[2]), upgrade_from=("CPL-E1",)),
    make_entry(
        "CPL-E3",
        fw="00000003",
        image_sha=mi_sha(IMAGES[3]),
        upgrade_from=("CPL-E1", "CPL-E2"),
    ),
    make_entry("CPL-X9", mfr=OTHER_MFR, fw="00000009", image_sha=mi_sha(OTHER_IMAGE)),
]


@dataclass
class OutcomeLibrary:
    factory: LibraryFactory
    ca: Issued
    certificates: dict[str, Issued]
    targets: dict[int, str]  # firmware -> target path
    other_target: str

    def home(self, path: Path) -> ClientHome:
        """A home on the published folder, refreshed (so offline commands work)."""
        home = ClientHome(path)
        config = ClientConfig(repository_url=self.factory.out.resolve().as_uri())
        with home.lock():
            home.initialise(config, self.factory.root_bytes)
        refresh_library(home)
        return home

    def key_file(self, directory: Path, entity: str) -> Path:
        _cert, key = self.certificates[entity].write(directory, entity)
        return key


def build_outcome_library(tmp: Path) -> OutcomeLibrary:
    factory = LibraryFactory(tmp, provider=True)
    factory.import_cpl(ENTRIES)
    factory.add_manufacturer(MFR)
    factory.add_manufacturer(OTHER_MFR)
    ca = make_ca(now=factory.now)
    certificates = {e: issue(ca, f"Supplier {e}", now=factory.now) for e in SUPPLIERS}
    with factory.repo.locked():
        for entity in SUPPLIERS:
            add_supplier(
                factory.repo,
                entity=entity,
                name=f"Supplier {entity[-2:]}",
                roles=("IS",),
                certificate=certificates[entity].cert_pem,
                now=factory.tick(),
                ca_pem=ca.cert_pem,
            )
        revoke_supplier(factory.repo, entity=REVOKED, reason="left the market", now=factory.tick())
    factory.publish()
    targets = {}
    for fw, image in IMAGES.items():
        result = factory.deposit(image, [f"CPL-E{fw}"])
        assert result.target is not None
        targets[fw] = result.target
    other = factory.deposit(OTHER_IMAGE, ["CPL-X9"], mfr=OTHER_MFR)
    assert other.target is not None
    return OutcomeLibrary(factory, ca, certificates, targets, other.target)


def hold_event(target: str, sha256: str, at: datetime, reason: str) -> HoldEvent:
    return HoldEvent(target, sha256, ACTION_HOLD, BY_POLICY, format_timestamp(at), reason, {})


def publish_outcomes(library: OutcomeLibrary, document: OutcomesDocument) -> None:
    """Sign ``document`` as ``cfl/outcomes.json`` in the provider's role and publish (test only)."""
    factory = library.factory
    repo = factory.repo
    data = document.to_bytes()
    with repo.locked():
        sha = repo.blobs.put(data)

        def change(targets: object) -> None:
            targets.targets[naming.OUTCOMES_TARGET_PATH] = TargetFile(  # type: ignore[attr-defined]
                len(data), {"sha256": sha}, naming.OUTCOMES_TARGET_PATH
            )

        head = repo.stage_provider_change(change, factory.tick())  # type: ignore[arg-type]
        repo.commit(head, event={"event": "test-outcomes", "sha256": sha})
    factory.publish()


FAILING = {"activated": 300, "activation-failed": 20}  # 6.25% of 320 delivered


def envelope(
    lib: OutcomeLibrary,
    entity: str,
    counts: dict[str, int],
    *,
    fw: int = 2,
    period: str | None = None,
    signer_of: str | None = None,
    sha256: str | None = None,
) -> bytes:
    target = lib.targets[fw]
    role = lib.factory.repo.role("mfr-121D").signed
    sha = sha256 or role.targets[target].hashes["sha256"]
    report = OutcomeReport(
        entity,
        period or previous_month(lib.factory.now),
        "2026-01-01T00:00:00Z",
        (ReportImage(target, sha, counts),),
    )
    key = lib.certificates[signer_of or entity].key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return sign_report(report, CryptoSigner(key))


def ingest(
    lib: OutcomeLibrary, *reports: tuple[str, bytes], folder: bool = False
) -> ops.IngestResult:
    repo = lib.factory.repo
    with repo.locked():
        return ops.ingest_reports(repo, list(reports), now=lib.factory.tick(), from_folder=folder)
