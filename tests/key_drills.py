"""The key compromise drills of docs/operator.md, as library calls on a `LibraryFactory`.

Each drill starts from `standard_library` whose root is held by three offline holders (2 of 3), runs
the procedure an operator would, publishes, and returns the factory. Tests then check the tree with
python-tuf ngclient (tests/repo/test_key_drills.py) and with tuf-js (tests/interop/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer

from factory import LibraryFactory, standard_library
from metadata_templates.naming import PROVIDER_ROLE
from repo_tool.ceremony.proposal import Proposal, SignatureFile
from repo_tool.ceremony.sign import sign_proposal
from repo_tool.ceremony.start import KeyChange, propose_root, propose_targets
from repo_tool.ops.ceremony import finish_ceremony
from repo_tool.ops.manufacturer_keys import resume, retire_keys, rotate_key, suspend
from repo_tool.ops.provider import rotate_key as rotate_provider_key
from repo_tool.ops.rotate_keys import rotate_keys as rotate_keys_op
from repo_tool.signing.keys import OFFLINE_URI, SignerRef, load_signer, write_keypair
from repo_tool.state.config import RepoConfig
from repo_tool.submit.deposit import build_renewal
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

HOLDERS = ("alice", "bob", "carol")


class Holders:
    """Root key holders, each with a key file in a directory of their own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.signers: dict[str, Signer] = {}
        self.uris: dict[str, str] = {}

    def make(self, name: str) -> Signer:
        path = self.tmp / "holders" / name / "key.pem"
        key, uri = write_keypair(path)
        self.signers[name] = load_signer(
            SignerRef(key, uri), base=path.parent, secrets_handler=None
        )
        self.uris[name] = uri
        return self.signers[name]

    def keyid(self, name: str) -> str:
        return str(self.signers[name].public_key.keyid)

    def sign(self, proposal: Proposal, *names: str) -> list[tuple[str, SignatureFile]]:
        """Each holder reads the proposal from bytes (as from a USB stick) and signs on their own."""
        out = []
        for name in names:
            copy = Proposal.from_bytes(proposal.to_bytes(), source=f"{name}'s copy")
            sig = sign_proposal(copy, self.signers[name])
            out.append((f"{name}.sig.json", SignatureFile.from_bytes(sig.to_bytes(), source=name)))
        return out


def offline_root_library(tmp: Path, *, provider: bool = False) -> tuple[LibraryFactory, Holders]:
    """`standard_library`, then root handed to three holders (2 of 3) whose keys the repository
    records only as public keys marked offline (``provider``: with cfl-provider from init)."""
    factory, _ = standard_library(tmp, provider=provider)
    holders = root_to_holders(factory)
    factory.publish()
    return factory, holders


def root_to_holders(factory: LibraryFactory) -> Holders:
    """Root handed to alice, bob and carol (2 of 3), recorded as offline public keys."""
    holders = Holders(factory.tmp)
    for name in HOLDERS:
        holders.make(name)
    # The one time the holders meet: the dev root key and their keys sign root v2 together.
    add = [SignerRef(holders.signers[n].public_key, holders.uris[n]) for n in HOLDERS]
    old = [r.keyid for r in factory.repo.config.signers["root"]]
    with factory.repo.locked():
        rotate_keys_op(factory.repo, "root", add=add, remove=old, threshold=2, now=factory.tick())
    config = factory.repo.config
    offline = tuple(SignerRef(r.public_key, OFFLINE_URI) for r in config.signers["root"])
    replace(config, signers=dict(config.signers) | {"root": offline}).save(factory.repo.path)
    factory.repo.config = RepoConfig.load(factory.repo.path)
    return holders


def _root_ceremony(
    factory: LibraryFactory, holders: Holders, change: KeyChange, *signers: str
) -> None:
    proposal = propose_root(
        factory.repo.root(),
        change,
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    with factory.repo.locked():
        outcome = finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, *signers), now=factory.tick()
        )
    assert outcome.notes == [], outcome.notes


def online_key_compromise(tmp: Path) -> LibraryFactory:
    """The timestamp and snapshot keys are stolen: a root ceremony replaces both; clients follow."""
    factory, holders = offline_root_library(tmp)
    for role in ("timestamp", "snapshot"):
        stolen = factory.repo.config.signers[role][0]
        key, uri = write_keypair(factory.repo.path / "keys" / f"{role}-after-compromise.pem")
        change = KeyChange(keys_of=role, add=(key,), remove=(stolen.keyid,), uris={key.keyid: uri})
        _root_ceremony(factory, holders, change, "alice", "bob")
    factory.publish()
    return factory


def lost_root_key(tmp: Path) -> LibraryFactory:
    """Carol's root key is lost: Alice and Bob (2 of 3) still meet both thresholds and replace it."""
    factory, holders = offline_root_library(tmp)
    dave = holders.make("dave")
    change = KeyChange(add=(dave.public_key,), remove=(holders.keyid("carol"),))
    _root_ceremony(factory, holders, change, "alice", "bob")
    factory.publish()
    return factory


def manufacturer_key_compromise(tmp: Path) -> LibraryFactory:
    """121D's key is stolen: suspend, rotate, the manufacturer re-signs, retire, resume."""
    factory, _ = offline_root_library(tmp)
    old = factory.mfr_signers["121D"]
    new = CryptoSigner.generate_ecdsa()
    with factory.repo.locked():
        suspend(factory.repo, "121D", "signing key reported stolen", now=factory.tick())
        rotate_key(
            factory.repo,
            "121D",
            add=[new.public_key],
            remove=[old.public_key.keyid],
            threshold=None,
            now=factory.tick(),
            ceremony=False,
        )
    factory.publish()
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    renewal = build_renewal(manufacturer_id="121D", signers=[new], library=library, now=factory.now)
    result = factory.ingest(renewal.bundle, "renewal")
    assert result.status == "accepted", result.messages
    with factory.repo.locked():
        retire_keys(factory.repo, "121D", now=factory.tick(), ceremony=False)
        resume(factory.repo, "121D", "keys rotated", now=factory.tick())
    factory.mfr_signers["121D"] = new
    factory.publish()
    return factory


def manufacturer_rotation_in_progress(tmp: Path) -> LibraryFactory:
    """Published between `rotate-key` and the manufacturer's renewal: the delegation lists the new
    key and the retiring one (marked in the signed delegation); old images must still verify."""
    factory, _ = offline_root_library(tmp)
    with factory.repo.locked():
        rotate_key(
            factory.repo,
            "121D",
            add=[CryptoSigner.generate_ed25519().public_key],
            remove=[factory.mfr_signers["121D"].public_key.keyid],
            threshold=None,
            now=factory.tick(),
            ceremony=False,
        )
    factory.publish()
    return factory


def hand_targets_to_holders(
    factory: LibraryFactory, holders: Holders, *, expires_in: timedelta | None = None
) -> None:
    """Root ceremony (alice, bob): targets becomes 2 of 3 offline holders (tara, tom, tess), who
    re-sign targets in a targets ceremony; from then on the repository holds no targets key."""
    keys = tuple(holders.make(n).public_key for n in ("tara", "tom", "tess"))
    old = factory.repo.config.signers["targets"][0].keyid
    handover = propose_root(
        factory.repo.root(),
        KeyChange(keys_of="targets", add=keys, remove=(old,), threshold=2),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, handover, holders.sign(handover, "alice", "bob"), now=factory.tick()
        )
    resign = propose_targets(
        factory.repo.root(),
        factory.repo.targets(),
        now=factory.tick(),
        expires_in=expires_in or factory.repo.config.policy.expiry("targets"),
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, resign, holders.sign(resign, "tom", "tess"), now=factory.tick()
        )
    factory.publish()
    assert factory.repo.held_offline("targets")
    assert all(ref.uri == OFFLINE_URI for ref in factory.repo.config.signers["targets"])


def provider_key_compromise(tmp: Path) -> LibraryFactory:
    """The online cfl-provider key is stolen: a targets ceremony (tom, tess) delegates cfl/* to a
    new key and, in the same commit, cfl-provider is re-signed by it; no root change."""
    factory, holders = offline_root_library(tmp, provider=True)
    hand_targets_to_holders(factory, holders)
    repo = factory.repo
    stolen = repo.config.signers[PROVIDER_ROLE][0]
    key, uri = write_keypair(repo.path / "keys" / "provider-after-compromise.pem")
    with repo.locked():
        change = rotate_provider_key(
            repo, [SignerRef(key, uri)], [stolen.keyid], None, now=factory.tick(), ceremony=True
        )
        assert change.proposal is not None
        finish_ceremony(
            repo, change.proposal, holders.sign(change.proposal, "tom", "tess"), now=factory.tick()
        )
    factory.publish()
    return factory


def offline_targets_routine(tmp: Path) -> LibraryFactory:
    """Issue 13 end to end: root and targets are offline before the first routine command, and
    everything after needs only online keys, except the one enrolment ceremony: a CPL import, a
    supplier registration, the enrolment of 121D (targets ceremony carrying its empty role v1), its
    first and second deposits, a withdrawal, a suspension, and 120 days of daily `refresh`, past
    the 90 days a targets version used to live (the holders signed this one for 365)."""
    from access.pki import issue, make_ca

    from factory import make_entry, make_image, mi_sha
    from repo_tool.gateway.enrolment import build_enrolment
    from repo_tool.ops.enrol import enrol
    from repo_tool.ops.refresh import refresh
    from repo_tool.ops.suppliers import add_supplier
    from repo_tool.ops.withdraw import withdraw

    factory = LibraryFactory(tmp, provider=True)
    factory.publish()
    holders = root_to_holders(factory)
    hand_targets_to_holders(factory, holders, expires_in=timedelta(days=365))
    repo = factory.repo
    targets_after_ceremony = repo.head.targets_version
    images = [make_image("121D", 2), make_image("121D", 3)]
    factory.import_cpl(
        [
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(images[0])),
            make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(images[1])),
        ]
    )
    ca = make_ca()
    with repo.locked():
        add_supplier(
            repo,
            entity="90-B3-D5-1F-30-01-00-01",
            name="Example Energy",
            roles=("IS",),
            certificate=issue(ca, "Example Energy").cert_pem,
            now=factory.tick(),
            ca_pem=ca.cert_pem,
        )
    assert repo.head.targets_version == targets_after_ceremony
    signer = factory.add_manufacturer("121D")[0]
    bundle = build_enrolment([signer], now=factory.tick(), expires_in=timedelta(days=365))
    with repo.locked():
        outcome = enrol(repo, "121D", bundle, now=factory.tick(), ceremony=True)
        assert outcome.proposal is not None
        finish_ceremony(
            repo,
            outcome.proposal,
            holders.sign(outcome.proposal, "tara", "tom"),
            now=factory.tick(),
        )
    assert repo.head.roles["mfr-121D"] == 1
    factory.publish()
    enrolled_targets = repo.head.targets_version
    factory.deposit(images[0], ["CPL-0002"])
    factory.deposit(images[1], ["CPL-0003"])
    assert repo.head.roles["mfr-121D"] == 3
    first = sorted(repo.role("mfr-121D").signed.targets)[0]
    with repo.locked():
        withdraw(repo, first, "bricks meters on hardware 1112", now=factory.tick())
        assert suspend(repo, "121D", "audit of its signing process", now=factory.tick())
    factory.publish()
    for _day in range(120):
        factory.now += timedelta(days=1)
        with repo.locked():
            refresh(repo, now=factory.now)
    factory.publish()
    assert repo.head.targets_version == enrolled_targets  # no targets signature since enrolment
    return factory


DRILLS: dict[str, Callable[[Path], LibraryFactory]] = {
    "provider-key-compromise": provider_key_compromise,
    "manufacturer-rotation-in-progress": manufacturer_rotation_in_progress,
    "online-key-compromise": online_key_compromise,
    "lost-root-key": lost_root_key,
    "manufacturer-key-compromise": manufacturer_key_compromise,
}
