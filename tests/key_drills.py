"""The key compromise drills of docs/operator.md, as library calls on a `LibraryFactory`.

Each drill starts from `standard_library` whose root is held by three offline holders (2 of 3), runs
the procedure an operator would, publishes, and returns the factory. Tests then check the tree with
python-tuf ngclient (tests/repo/test_key_drills.py) and with tuf-js (tests/interop/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer

from factory import LibraryFactory, standard_library
from repo_tool.ceremony.proposal import Proposal, SignatureFile
from repo_tool.ceremony.sign import sign_proposal
from repo_tool.ceremony.start import KeyChange, propose_root
from repo_tool.config import RepoConfig
from repo_tool.keys import OFFLINE_URI, SignerRef, load_signer, write_keypair
from repo_tool.manufacturer_keys import resume, retire_keys, rotate_key, suspend
from repo_tool.ops.rotate_keys import rotate_keys as rotate_keys_op
from repo_tool.submit import build_renewal
from repo_tool.verify import folder_reader, verified_library

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
    holders = Holders(tmp)
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
    factory.publish()
    return factory, holders


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
        outcome = factory.repo.finish_ceremony(
            proposal, holders.sign(proposal, *signers), now=factory.tick()
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


DRILLS: dict[str, Callable[[Path], LibraryFactory]] = {
    "manufacturer-rotation-in-progress": manufacturer_rotation_in_progress,
    "online-key-compromise": online_key_compromise,
    "lost-root-key": lost_root_key,
    "manufacturer-key-compromise": manufacturer_key_compromise,
}
