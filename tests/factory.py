"""A real library built with repo_tool's own code, for tests on both sides.

`LibraryFactory` makes a repository with development keys, imports a CPL, registers manufacturers with
their own keys, signs deposits as each manufacturer would (`submit`), runs them through the gateway
(`ingest`) and publishes. Time is injected: every step takes the factory's `now`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import format_timestamp
from metadata_templates.naming import PROVIDER_ROLE
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.intake.bundle import Bundle, Declaration, write_bundle
from repo_tool.intake.image import build_image
from repo_tool.ops.cpl_import import import_cpl as import_cpl_op
from repo_tool.ops.ingest import IngestResult
from repo_tool.ops.ingest import ingest as ingest_op
from repo_tool.ops.init import initialise
from repo_tool.ops.manufacturers import add_manufacturer as add_manufacturer_op
from repo_tool.ops.publish import publish
from repo_tool.publish.folder import PublishReport
from repo_tool.signing.keys import SignerRef, write_keypair
from repo_tool.state.config import TOP_LEVEL_ROLES, RepoConfig
from repo_tool.state.repository import Repository
from repo_tool.submit.deposit import build_submission
from repo_tool.tlog.provider_log import new_log_key
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

# ngclient reads the real clock for expiry, so libraries a client will read start from the real now;
# our own code takes `now` as a parameter, so a test can still build an expired (frozen) library.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _an_hour_ago() -> datetime:
    # Taken when a factory is made, not when this module is imported: a suite on a busy machine
    # runs for over an hour, and a library whose clock started at import would then be more than
    # an hour behind the real clock that the console scripts (`cfl-repo submit`) sign with.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


LOG_ORIGIN = "cfl.test/log"


def make_entry(
    entry_id: str,
    *,
    mfr: str = "121D",
    model: str = "010A030B",
    hw: str = "1111",
    fw: str = "00000002",
    image_sha: str = "",
    device_type: str = "ESME",
    status: str = "Active",
    upgrade_from: tuple[str, ...] = (),
    model_name: str = "Model A",
) -> CplEntry:
    return CplEntry(
        id=entry_id,
        device_type=device_type,
        manufacturer_id=mfr,
        manufacturer_name=f"Maker {mfr}",
        model_id=model,
        model_name=model_name,
        hardware_version=hw,
        firmware_version=fw,
        smets_version="SMETS V5.0",
        gbcs_version="4.2",
        manufacturer_image_sha256=image_sha,
        cpa_certificate="CPA-1",
        cpa_expiry=None,
        status=status,
        upgrade_from=upgrade_from,
    )


def make_image(
    mfr: str = "121D",
    fw: int = 2,
    *,
    body: bytes | None = None,
    hw: tuple[int, int] = (0x1000, 0x2000),
) -> bytes:
    return build_image(
        manufacturer_code=int(mfr, 16),
        image_type=1,
        file_version=fw,
        body=body if body is not None else f"firmware {mfr} {fw}".encode() * 40,
        header_string=f"CFL test {mfr}",
        hardware_versions=hw,
    )


def mi_sha(image: bytes, header_length: int = 60) -> str:
    return hashlib.sha256(image[header_length:]).hexdigest()


@dataclass
class LibraryFactory:
    """Builds a real repository under `tmp`."""

    tmp: Path
    now: datetime = field(default_factory=_an_hour_ago)
    repo: Repository = field(init=False)
    mfr_signers: dict[str, CryptoSigner] = field(default_factory=dict)
    entries: list[CplEntry] = field(default_factory=list)
    # With the online cfl-provider delegation from init (issue 13); older repositories lack it.
    provider: bool = False

    def __post_init__(self) -> None:
        path = self.tmp / "repo"
        keys = path / "keys"
        signers: dict[str, tuple[SignerRef, ...]] = {}
        for role in (*TOP_LEVEL_ROLES, *((PROVIDER_ROLE,) if self.provider else ())):
            key, uri = write_keypair(keys / f"DEV-ONLY-{role}-1.pem")
            signers[role] = (SignerRef(key, uri),)
        config = RepoConfig(
            policy=DEFAULT_POLICY.from_dict(
                DEFAULT_POLICY.to_dict()
                | {"root_keys": 1, "root_threshold": 1}
                # as `init` does with cfl-provider: targets changes only in yearly ceremonies
                | ({"targets_expiry_days": 365} if self.provider else {})
            ),
            signers=signers,
            thresholds=dict.fromkeys(signers, 1),
            dev_keys=True,
            log=new_log_key(
                path, origin=LOG_ORIGIN, passphrase=None, label=None, file_name="DEV-ONLY-log.pem"
            ),
        )
        self.repo = initialise(path, config, now=self.now)

    @property
    def out(self) -> Path:
        return self.repo.default_out

    @property
    def root_bytes(self) -> bytes:
        return self.repo.metadata_bytes("root", 1)

    def tick(self, minutes: int = 1) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now

    def import_cpl(self, entries: list[CplEntry] | None = None) -> None:
        if entries is not None:
            self.entries = list(entries)
        doc = CplDocument.of(self.entries, "0" * 64, format_timestamp(self.now))
        with self.repo.locked():
            import_cpl_op(self.repo, doc, now=self.tick())

    def add_manufacturer(
        self, mfr: str, *, threshold: int = 1, signers: int = 1
    ) -> list[CryptoSigner]:
        made = [CryptoSigner.generate_ed25519() for _ in range(signers)]
        self.mfr_signers[mfr] = made[0]
        with self.repo.locked():
            add_manufacturer_op(
                self.repo,
                mfr,
                f"Maker {mfr}",
                [s.public_key for s in made],
                threshold,
                now=self.tick(),
            )
        return made

    def submit(
        self,
        image: bytes,
        entries: list[str],
        *,
        mfr: str = "121D",
        reason: str = "compliance",
        advisories: tuple[str, ...] = (),
        signers: list[CryptoSigner] | None = None,
        release_notes: bytes | None = None,
        expiry: timedelta | None = None,
    ) -> Bundle:
        """Sign a deposit as the manufacturer would, from the published library."""
        library = verified_library(
            folder_reader(self.out), self.root_bytes, now=self.tick(), check_blobs=False
        )
        submission = build_submission(
            image=image,
            manufacturer_id=mfr,
            signers=signers or [self.mfr_signers[mfr]],
            declaration=Declaration(tuple(entries), reason, advisories),
            release_notes=release_notes,
            library=library,
            now=self.now,
            **({"expiry": expiry} if expiry is not None else {}),
        )
        return submission.bundle

    def write(self, bundle: Bundle, name: str = "deposit") -> Path:
        path = self.tmp / "inbox" / f"{name}.cflb"
        path.parent.mkdir(exist_ok=True)
        write_bundle(path, bundle)
        return path

    def ingest(self, bundle: Bundle | Path, name: str = "deposit") -> IngestResult:
        path = bundle if isinstance(bundle, Path) else self.write(bundle, name)
        with self.repo.locked():
            return ingest_op(self.repo, path, now=self.tick())

    def publish(self) -> PublishReport:
        return publish(self.repo, self.out, now=self.tick())

    def deposit(self, image: bytes, entries: list[str], **kwargs: object) -> IngestResult:
        """submit + ingest + publish; asserts acceptance."""
        result = self.ingest(self.submit(image, entries, **kwargs))  # type: ignore[arg-type]
        assert result.status == "accepted", result.messages
        self.publish()
        return result


def standard_library(
    tmp: Path, *, provider: bool = False
) -> tuple[LibraryFactory, dict[str, bytes]]:
    """Two manufacturers, three images with an upgrade pathway, published (``provider``: with the
    online cfl-provider delegation from init)."""
    images = {
        "a2": make_image("121D", 2),
        "a3": make_image("121D", 3),
        "b5": make_image("3F01", 5),
    }
    factory = LibraryFactory(tmp, provider=provider)
    factory.import_cpl(
        [
            make_entry("CPL-0001", fw="00000001"),
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(images["a2"])),
            make_entry(
                "CPL-0003",
                fw="00000003",
                image_sha=mi_sha(images["a3"]),
                upgrade_from=("CPL-0002",),
            ),
            make_entry(
                "CPL-0101",
                mfr="3F01",
                model="0B0C",
                hw="1111",
                fw="00000005",
                image_sha=mi_sha(images["b5"]),
                device_type="GSME",
            ),
        ]
    )
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3F01")
    factory.publish()
    factory.deposit(images["a2"], ["CPL-0002"])
    factory.deposit(images["a3"], ["CPL-0003"], reason="security", advisories=("CFL-SA-2026-001",))
    factory.deposit(images["b5"], ["CPL-0101"], mfr="3F01")
    return factory, images


class FolderFetcher(FetcherInterface):
    """Serves a published folder to ngclient by URL, like a static host; records what was fetched.

    `tamper` lets an attack test rewrite what the "host" returns for a given relative path.
    """

    def __init__(self, root: Path, base_url: str = "https://cfl.test/") -> None:
        self.root = root
        self.base_url = base_url
        self.fetched: list[str] = []
        self.tamper: dict[str, bytes] = {}

    def _fetch(self, url: str) -> Iterator[bytes]:
        relative = url.removeprefix(self.base_url)
        self.fetched.append(relative)
        if relative in self.tamper:
            return iter([self.tamper[relative]])
        path = self.root / relative
        if not path.is_file():
            raise DownloadHTTPError(f"404 for {url}", 404)
        return iter([path.read_bytes()])


def updater_for(
    factory: LibraryFactory, workdir: Path, fetcher: FolderFetcher | None = None
) -> tuple[Updater, FolderFetcher]:
    fetcher = fetcher or FolderFetcher(factory.out)
    (workdir / "metadata").mkdir(parents=True, exist_ok=True)
    (workdir / "targets").mkdir(parents=True, exist_ok=True)
    updater = Updater(
        str(workdir / "metadata"),
        fetcher.base_url + "metadata/",
        str(workdir / "targets"),
        fetcher.base_url + "targets/",
        fetcher=fetcher,
        bootstrap=factory.root_bytes,
    )
    return updater, fetcher


def one_maker_library(
    tmp: Path, images: int, *, now: datetime
) -> tuple[LibraryFactory, list[bytes]]:
    """A published library of maker 121D with ``images`` CPL entries (``CPL-0001``...) whose
    images are returned, none of them deposited yet."""
    made = [make_image("121D", n) for n in range(1, images + 1)]
    factory = LibraryFactory(tmp, now=now)
    factory.import_cpl(
        [
            make_entry(f"CPL-{n:04d}", fw=f"{n:08d}", image_sha=mi_sha(image))
            for n, image in enumerate(made, start=1)
        ]
    )
    factory.add_manufacturer("121D")
    factory.publish()
    return factory, made


def deposit_published_at(factory: LibraryFactory, image: bytes, n: int, when: datetime) -> None:
    """Deposit ``image`` for ``CPL-<n>`` and publish it on the clock ``when``."""
    result = factory.ingest(factory.submit(image, [f"CPL-{n:04d}"]), name=f"d{n}")
    assert result.status == "accepted", result.messages
    factory.now = when
    publish(factory.repo, factory.out, now=when)
