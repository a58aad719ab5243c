"""Attacks on the supplier's client (issue 3, section 7), against a real library built by repo_tool.

The "host" is a FolderFetcher: a test rewrites what it returns for a path (`tamper`) or serves
endless data. Where an attack needs a stolen key, the forged metadata is signed with the library's
own development keys (provider online roles) or a manufacturer's real key, with an explicit `now`.

Every test asserts three things: the attack raises our VerificationError with a message saying what
happened; nothing new appears in the client's download directory; and, where the client already
trusted some metadata, its trusted versions did not move backwards.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient import UpdaterConfig

from client.trust.catalogue import VerifiedTarget, build_catalogue
from client.trust.home import ClientHome
from client.trust.session import Session, SessionPaths
from factory import FolderFetcher, LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError, VerificationError
from metadata_templates.withdrawals import WithdrawalList
from repo_tool.ops.snapshot import stage_snapshot as stage_snapshot_op
from repo_tool.signing.keys import load_signer

S = TypeVar("S", Timestamp, Snapshot, Targets)

CHUNK = 64 * 1024
# An endless response stops here even if the client never does, so a broken client fails the test
# (too many bytes served) instead of filling the disk.
ENDLESS_CAP = 256 * 1024 * 1024


# ----------------------------------------------------------------------------------- the client


def _paths(tmp_path: Path, name: str = "home") -> SessionPaths:
    return SessionPaths(tmp_path / name / "metadata", tmp_path / name / "cache")


def _session(
    factory: LibraryFactory, paths: SessionPaths, fetcher: FolderFetcher | None = None
) -> Session:
    """A client session; trust is always anchored in root v1, as the client's home does."""
    fetcher = fetcher or FolderFetcher(factory.out)
    return Session(paths, fetcher.base_url, fetcher, bootstrap_root=factory.root_bytes)


def _files(directory: Path) -> list[str]:
    """Everything under a directory (hidden partial files included)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def _trusted_version(paths: SessionPaths, role: str) -> int | None:
    """The version of a role the client persisted as trusted, or None."""
    path = paths.metadata_dir / f"{role}.json"
    if not path.exists():
        return None
    version: int = Metadata.from_bytes(path.read_bytes()).signed.version
    return version


def _trusted_versions(paths: SessionPaths) -> dict[str, int | None]:
    return {
        role: _trusted_version(paths, role)
        for role in ("timestamp", "snapshot", "targets", "mfr-121D", "mfr-3F01")
    }


def _assert_not_backwards(before: dict[str, int | None], paths: SessionPaths) -> None:
    after = _trusted_versions(paths)
    for role, version in before.items():
        trusted = after[role]
        if version is not None:
            assert trusted is not None and trusted >= version, (role, before, after)


# -------------------------------------------------------------------- the attacker's toolkit


def _published(factory: LibraryFactory, name: str) -> bytes:
    return (factory.out / "metadata" / name).read_bytes()


def _load(factory: LibraryFactory, name: str, kind: type[S]) -> Metadata[S]:
    md = Metadata.from_bytes(_published(factory, name))
    assert isinstance(md.signed, kind)
    return md


def _provider_signers(factory: LibraryFactory, role: str) -> list[Signer]:
    """The library's own keys for a top-level role (a stolen key, as far as the test is concerned)."""
    repo = factory.repo
    return [
        load_signer(ref, base=repo.path, secrets_handler=None) for ref in repo.config.signers[role]
    ]


def _signed(signed: S, signers: list[Signer]) -> bytes:
    md = Metadata(signed)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _current_timestamp(factory: LibraryFactory) -> Timestamp:
    return _load(factory, "timestamp.json", Timestamp).signed


def _current_snapshot(factory: LibraryFactory) -> Snapshot:
    version = _current_timestamp(factory).snapshot_meta.version
    return _load(factory, f"{version}.snapshot.json", Snapshot).signed


def _forge_timestamp(
    factory: LibraryFactory, snapshot_bytes: bytes, snapshot_version: int
) -> bytes:
    """A timestamp one above the published one, signed with the provider's timestamp key."""
    timestamp = Timestamp(
        version=_current_timestamp(factory).version + 1,
        expires=factory.tick() + timedelta(days=1),
        snapshot_meta=MetaFile(
            version=snapshot_version,
            length=len(snapshot_bytes),
            hashes={"sha256": _sha256(snapshot_bytes)},
        ),
    )
    return _signed(timestamp, _provider_signers(factory, Timestamp.type))


def _forge_snapshot(factory: LibraryFactory, meta: dict[str, MetaFile]) -> tuple[int, bytes]:
    """A snapshot one above the published one, signed with the provider's snapshot key."""
    version = _current_snapshot(factory).version + 1
    snapshot = Snapshot(version=version, expires=factory.tick() + timedelta(days=7), meta=meta)
    return version, _signed(snapshot, _provider_signers(factory, Snapshot.type))


def _serve_forged_state(
    factory: LibraryFactory, fetcher: FolderFetcher, meta: dict[str, MetaFile]
) -> None:
    """With both stolen online keys: a new snapshot with ``meta`` and a timestamp pointing at it."""
    version, snapshot = _forge_snapshot(factory, meta)
    fetcher.tamper[f"metadata/{version}.snapshot.json"] = snapshot
    fetcher.tamper["metadata/timestamp.json"] = _forge_timestamp(factory, snapshot, version)


def _republish(factory: LibraryFactory) -> None:
    """The provider re-signs snapshot and timestamp (as `cfl-repo refresh` does) and publishes."""
    with factory.repo.locked():
        stage_snapshot_op(factory.repo, now=factory.tick(), force=True)
    factory.publish()


def _stage_bypassing_gateway(factory: LibraryFactory, role: str, md: Metadata[Targets]) -> None:
    """Put a role version straight into the provider's state, as a broken gateway would, so the
    next publish signs it into snapshot."""
    repo = factory.repo
    with repo.locked():
        atomic_write_bytes(repo.metadata_path(role, md.signed.version), md.to_bytes())
        head = repo.head
        if role == Targets.type:
            head = replace(head, targets_version=md.signed.version)
        else:
            head = replace(head, roles={**head.roles, role: md.signed.version})
        atomic_write_bytes(repo.state_dir / "head.json", head.to_bytes())


def _next_version(factory: LibraryFactory, role: str) -> Metadata[Targets]:
    """The published role, one version up, unsigned (the caller changes and signs it)."""
    repo = factory.repo
    version = repo.head.targets_version if role == Targets.type else repo.head.roles[role]
    md = _load(factory, f"{version}.{role}.json", Targets)
    md.signed.version += 1
    md.signed.expires = factory.tick() + timedelta(days=30)
    md.signatures.clear()
    return md


def _image_target(role: Targets) -> TargetFile:
    return next(t for p, t in sorted(role.targets.items()) if naming.is_image_target_path(p))


def _evil_target(model: TargetFile, evil: bytes, path: str | None = None) -> TargetFile:
    """A copy of a genuine target entry (same custom.cfl) describing other bytes."""
    return TargetFile(
        len(evil),
        {"sha256": _sha256(evil)},
        path or model.path,
        unrecognized_fields=dict(model.unrecognized_fields),
    )


def _blob_url(path: str, data: bytes) -> str:
    return "targets/" + naming.blob_name(path, _sha256(data))


EVIL = make_image("121D", 9, body=b"not what the gateway saw " * 64)


# ----------------------------------------------------------------------------------- rollback


def test_timestamp_rollback_is_refused(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    old_timestamp = _published(factory, "timestamp.json")
    _republish(factory)
    paths = _paths(tmp_path)
    _session(factory, paths).refresh()
    before = _trusted_versions(paths)
    assert before["timestamp"] == Metadata.from_bytes(old_timestamp).signed.version + 1

    fetcher = FolderFetcher(factory.out)
    fetcher.tamper["metadata/timestamp.json"] = old_timestamp  # validly signed, not expired, old
    with pytest.raises(VerificationError, match=r"rollback refused .*timestamp version"):
        _session(factory, paths, fetcher).refresh()
    assert _trusted_versions(paths) == before
    assert _files(paths.download_dir) == []


def test_timestamp_pointing_at_an_older_snapshot_is_refused(tmp_path: Path) -> None:
    # Stolen timestamp key: a newer timestamp that names an older (genuine) snapshot.
    factory, _ = standard_library(tmp_path)
    paths = _paths(tmp_path)
    _session(factory, paths).refresh()
    before = _trusted_versions(paths)
    current = _current_timestamp(factory).snapshot_meta.version
    old = current - 1

    fetcher = FolderFetcher(factory.out)
    fetcher.tamper["metadata/timestamp.json"] = _forge_timestamp(
        factory, _published(factory, f"{old}.snapshot.json"), old
    )
    with pytest.raises(
        VerificationError, match=rf"rollback refused .*snapshot version must be >= {current}"
    ):
        _session(factory, paths, fetcher).refresh()
    assert _trusted_versions(paths) == before
    assert _files(paths.download_dir) == []


def test_old_snapshot_under_the_new_version_number_is_refused(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    paths = _paths(tmp_path)
    _session(factory, paths).refresh()
    before = _trusted_versions(paths)
    current = _current_timestamp(factory).snapshot_meta.version
    # The snapshot the client trusts: same role versions as the next one, so only the snapshot's
    # own version number can give a replay away.
    old_snapshot = _published(factory, f"{current}.snapshot.json")
    _republish(factory)  # the provider re-signs: snapshot current + 1
    new = current + 1

    # (1) The host alone: the old snapshot's bytes under the new name; the timestamp's hash says no.
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper[f"metadata/{new}.snapshot.json"] = old_snapshot
    with pytest.raises(VerificationError, match=r"verification failed .*LengthOrHashMismatch"):
        _session(factory, paths, fetcher).refresh()
    assert _trusted_version(paths, "snapshot") == before["snapshot"]

    # (2) With a stolen timestamp key vouching for exactly those bytes: the snapshot's own version.
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper[f"metadata/{new}.snapshot.json"] = old_snapshot
    fetcher.tamper["metadata/timestamp.json"] = _forge_timestamp(factory, old_snapshot, new)
    with pytest.raises(
        VerificationError,
        match=rf"rollback refused \(Expected snapshot version {new}, got {current}\)",
    ):
        _session(factory, paths, fetcher).refresh()
    _assert_not_backwards(before, paths)
    assert _trusted_version(paths, "snapshot") == before["snapshot"]
    assert _files(paths.download_dir) == []


@pytest.mark.parametrize("role", ["targets", "mfr-121D"])
def test_snapshot_listing_an_older_role_version_is_refused(tmp_path: Path, role: str) -> None:
    # Stolen snapshot and timestamp keys: a new, validly signed snapshot that lists an older
    # (genuine, still unexpired) version of targets or of a manufacturer role.
    factory, _ = standard_library(tmp_path)
    paths = _paths(tmp_path)
    _session(factory, paths).verified_targets(["121D"])
    before = _trusted_versions(paths)
    assert before[role] is not None

    meta = dict(_current_snapshot(factory).meta)
    trusted = meta[f"{role}.json"].version
    meta[f"{role}.json"] = MetaFile(version=trusted - 1)
    fetcher = FolderFetcher(factory.out)
    _serve_forged_state(factory, fetcher, meta)
    session = _session(factory, paths, fetcher)
    with pytest.raises(VerificationError, match=rf"rollback refused .*{role}\.json version"):
        session.verified_targets(["121D"])
    _assert_not_backwards(before, paths)
    assert _trusted_version(paths, "snapshot") == before["snapshot"]
    assert _trusted_version(paths, role) == trusted
    assert not [f for f in fetcher.fetched if f.startswith(f"metadata/{trusted - 1}.{role}")]
    assert _files(paths.download_dir) == []


# ------------------------------------------------------------------------------------- freeze


@pytest.mark.parametrize(
    ("age", "expired"),
    [
        (timedelta(days=2), "timestamp.json is expired"),  # online keys stopped re-signing
        (timedelta(days=400), "root.json is expired"),  # every role is past its expiry
    ],
)
def test_frozen_library_is_refused(tmp_path: Path, age: timedelta, expired: str) -> None:
    # Built and signed `age` ago with our own clock; ngclient judges it by the real clock.
    factory, _ = _library_built_at(tmp_path, datetime.now(UTC) - age)
    paths = _paths(tmp_path)
    with pytest.raises(VerificationError, match=rf"metadata has expired .*{expired}"):
        _session(factory, paths).verified_targets(["121D"])
    assert _trusted_version(paths, "timestamp") is None
    assert _trusted_version(paths, "snapshot") is None
    assert _files(paths.download_dir) == []


def _library_built_at(tmp: Path, when: datetime) -> tuple[LibraryFactory, bytes]:
    factory = LibraryFactory(tmp, now=when.replace(microsecond=0))
    image = make_image("121D", 2)

    factory.import_cpl([make_entry("CPL-0002", image_sha=mi_sha(image))])
    factory.add_manufacturer("121D")
    factory.publish()
    factory.deposit(image, ["CPL-0002"])
    return factory, image


# ------------------------------------------------------------------------------ mix-and-match

# Each check refuses a role that is not the one snapshot lists: its length or hash (snapshot pins
# both) or its version.
_SUBSTITUTED = (
    r"(verification failed \(LengthOrHashMismatchError: .*"
    r"|the server sent more data than the signed metadata allows"
    r"|rollback refused \(Expected {role} v\d+, got v\d+)"
)


@pytest.mark.parametrize("role", ["targets", "mfr-121D"])
def test_role_from_another_state_under_the_name_snapshot_expects_is_refused(
    tmp_path: Path, role: str
) -> None:
    # The current snapshot with a role version from an earlier consistent state, served under the
    # file name the current snapshot asks for.
    factory, _ = standard_library(tmp_path)
    expected = _current_snapshot(factory).meta[f"{role}.json"].version
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper[f"metadata/{expected}.{role}.json"] = _published(
        factory, f"{expected - 1}.{role}.json"
    )
    paths = _paths(tmp_path)
    with pytest.raises(VerificationError, match=rf"{_SUBSTITUTED.format(role=role)}"):
        _session(factory, paths, fetcher).verified_targets(["121D"])
    assert _trusted_version(paths, role) is None
    assert _files(paths.download_dir) == []


def test_manufacturer_role_version_not_in_snapshot_is_refused(tmp_path: Path) -> None:
    # A manufacturer signs a new role version (with an image the gateway never saw) with its real
    # key, and the host serves it in place of the version the provider put into snapshot.
    factory, _ = standard_library(tmp_path)
    listed = _current_snapshot(factory).meta["mfr-121D.json"].version
    forged = _next_version(factory, "mfr-121D")
    model = _image_target(forged.signed)
    forged.signed.targets[model.path] = _evil_target(model, EVIL)
    forged.sign(factory.mfr_signers["121D"])
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper[f"metadata/{listed}.mfr-121D.json"] = forged.to_bytes()
    fetcher.tamper[_blob_url(model.path, EVIL)] = EVIL
    paths = _paths(tmp_path)
    session = _session(factory, paths, fetcher)
    with pytest.raises(
        VerificationError, match=rf"role mfr-121D: {_SUBSTITUTED.format(role='mfr-121D')}"
    ):
        session.verified_targets(["121D"])
    with pytest.raises(VerificationError, match=rf"lookup {model.path}: "):
        session.download(model.path)
    assert _trusted_version(paths, "mfr-121D") is None
    assert _blob_url(model.path, EVIL) not in fetcher.fetched
    assert _files(paths.download_dir) == []


def test_manufacturer_role_substituted_at_the_same_version_is_refused(tmp_path: Path) -> None:
    # The same attack without even bumping the version: the manufacturer (stolen key) re-signs the
    # published role version with one image's hashes pointing at bytes the gateway never admitted.
    # Only the snapshot's hash of each role version ties the role to what the provider admitted.
    factory, _images = standard_library(tmp_path)
    listed = _current_snapshot(factory).meta["mfr-121D.json"].version
    forged = _load(factory, f"{listed}.mfr-121D.json", Targets)
    model = _image_target(forged.signed)
    forged.signed.targets[model.path] = _evil_target(model, EVIL)
    forged.signatures.clear()
    forged.sign(factory.mfr_signers["121D"])
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper[f"metadata/{listed}.mfr-121D.json"] = forged.to_bytes()
    fetcher.tamper[_blob_url(model.path, EVIL)] = EVIL
    paths = _paths(tmp_path)
    session = _session(factory, paths, fetcher)
    with pytest.raises(
        VerificationError,
        match=r"role mfr-121D: (verification failed \(LengthOrHashMismatchError"
        r"|the server sent more data than the signed metadata allows)",
    ):
        session.verified_targets(["121D"])
    with pytest.raises(VerificationError, match=rf"lookup {model.path}: "):
        session.download(model.path)
    assert _trusted_version(paths, "mfr-121D") is None
    assert _blob_url(model.path, EVIL) not in fetcher.fetched
    assert _files(paths.download_dir) == []


@pytest.mark.parametrize("client_state", ["new client", "client that trusted the role"])
def test_delegated_role_missing_from_snapshot_is_refused(tmp_path: Path, client_state: str) -> None:
    # Stolen online keys: a new snapshot that leaves a delegated role out.
    factory, _ = standard_library(tmp_path)
    paths = _paths(tmp_path)
    if client_state != "new client":
        _session(factory, paths).verified_targets(["121D"])
    before = _trusted_versions(paths)
    meta = dict(_current_snapshot(factory).meta)
    del meta["mfr-121D.json"]
    fetcher = FolderFetcher(factory.out)
    _serve_forged_state(factory, fetcher, meta)
    expected = (
        r"Role mfr-121D was delegated but is not part of snapshot"
        if client_state == "new client"
        else r"New snapshot is missing info for 'mfr-121D.json'"
    )
    with pytest.raises(VerificationError, match=rf"verification failed .*{expected}"):
        _session(factory, paths, fetcher).verified_targets(["121D"])
    _assert_not_backwards(before, paths)
    assert _trusted_version(paths, "mfr-121D") == before["mfr-121D"]
    assert _files(paths.download_dir) == []


# ---------------------------------------------------------------------------- wrong signer


def test_manufacturer_role_signed_by_an_undelegated_key_is_refused(tmp_path: Path) -> None:
    # Stolen provider online keys plus a key of the attacker's own: a new role version listing an
    # image, signed by a key targets does not delegate mfr-121D to, and a snapshot naming it.
    factory, _ = standard_library(tmp_path)
    forged = _next_version(factory, "mfr-121D")
    model = _image_target(forged.signed)
    forged.signed.targets[model.path] = _evil_target(model, EVIL)
    forged.sign(CryptoSigner.generate_ed25519())
    forged_bytes = forged.to_bytes()
    meta = dict(_current_snapshot(factory).meta)
    meta["mfr-121D.json"] = MetaFile(
        version=forged.signed.version,
        length=len(forged_bytes),
        hashes={"sha256": _sha256(forged_bytes)},
    )
    fetcher = FolderFetcher(factory.out)
    _serve_forged_state(factory, fetcher, meta)
    fetcher.tamper[f"metadata/{forged.signed.version}.mfr-121D.json"] = forged_bytes
    fetcher.tamper[_blob_url(model.path, EVIL)] = EVIL
    paths = _paths(tmp_path)
    session = _session(factory, paths, fetcher)
    with pytest.raises(
        VerificationError,
        match=r"role mfr-121D: verification failed \(UnsignedMetadataError: mfr-121D was signed by 0/1 keys",
    ):
        session.verified_targets(["121D"])
    with pytest.raises(VerificationError, match=r"UnsignedMetadataError"):
        session.download(model.path)
    assert _trusted_version(paths, "mfr-121D") is None
    assert _blob_url(model.path, EVIL) not in fetcher.fetched
    assert _files(paths.download_dir) == []
    # The other manufacturer's role is unaffected.
    assert [t.role for t in _session(factory, paths, fetcher).verified_targets(["3F01"])] == [
        "mfr-3F01"
    ]


def test_a_forged_manufacturer_role_is_contained_to_that_manufacturer(tmp_path: Path) -> None:
    # The same forgery, asked for the whole library at once: 121D is reported unverified with
    # ngclient's reason, nothing of it is trusted or fetched, and 3F01 is served as usual.
    factory, _ = standard_library(tmp_path)
    forged = _next_version(factory, "mfr-121D")
    model = _image_target(forged.signed)
    forged.signed.targets[model.path] = _evil_target(model, EVIL)
    forged.sign(CryptoSigner.generate_ed25519())
    forged_bytes = forged.to_bytes()
    meta = dict(_current_snapshot(factory).meta)
    meta["mfr-121D.json"] = MetaFile(
        version=forged.signed.version,
        length=len(forged_bytes),
        hashes={"sha256": _sha256(forged_bytes)},
    )
    fetcher = FolderFetcher(factory.out)
    _serve_forged_state(factory, fetcher, meta)
    fetcher.tamper[f"metadata/{forged.signed.version}.mfr-121D.json"] = forged_bytes
    paths = _paths(tmp_path)
    loaded = _session(factory, paths, fetcher).load_manufacturers(None)
    assert [t.role for t in loaded.targets] == ["mfr-3F01"]
    [unverified] = loaded.unverified
    assert (unverified.manufacturer_id, unverified.role) == ("121D", "mfr-121D")
    assert "UnsignedMetadataError" in unverified.message
    assert _trusted_version(paths, "mfr-121D") is None
    assert not [f for f in fetcher.fetched if f.startswith("targets/")]


def test_a_manufacturer_role_the_host_lost_is_contained_to_that_manufacturer(
    tmp_path: Path,
) -> None:
    # The host serves everything but 3F01's role (a 404): 121D is still served.
    factory, _ = standard_library(tmp_path)
    version = _current_snapshot(factory).meta["mfr-3F01.json"].version
    (factory.out / "metadata" / f"{version}.mfr-3F01.json").unlink()
    loaded = _session(factory, _paths(tmp_path), FolderFetcher(factory.out)).load_manufacturers(
        None
    )
    assert {t.role for t in loaded.targets} == {"mfr-121D"}
    assert [u.manufacturer_id for u in loaded.unverified] == ["3F01"]
    assert "404" in loaded.unverified[0].message


# ---------------------------------------------------------------- outside its own delegation


def test_target_outside_the_manufacturers_delegation_is_not_served(tmp_path: Path) -> None:
    # Manufacturer 3F01 (its real key, so the signature is valid) lists two paths under 121D's
    # prefix: one shadowing a genuine 121D image, one new. A broken gateway lets the role into
    # snapshot and it is published.
    factory, _images = standard_library(tmp_path)
    genuine_role = _load(
        factory, f"{factory.repo.head.roles['mfr-121D']}.mfr-121D.json", Targets
    ).signed
    genuine = _image_target(genuine_role)
    new_path = naming.image_target_path("121D", "ESME", "0001", "00000009", _sha256(EVIL))
    forged = _next_version(factory, "mfr-3F01")
    forged.signed.targets[genuine.path] = _evil_target(genuine, EVIL)
    forged.signed.targets[new_path] = _evil_target(genuine, EVIL, new_path)
    forged.sign(factory.mfr_signers["3F01"])
    factory.repo.blobs.put(EVIL)
    _stage_bypassing_gateway(factory, "mfr-3F01", forged)
    factory.publish()
    assert _current_snapshot(factory).meta["mfr-3F01.json"].version == forged.signed.version

    fetcher = FolderFetcher(factory.out)
    paths = _paths(tmp_path)
    session = _session(factory, paths, fetcher)
    # The 3F01 role verifies (it is validly signed and in snapshot) and does list both paths, but the
    # session lists only paths inside each role's delegation ...
    verified = session.verified_targets(["121D", "3F01"])
    assert not {t.path for t in verified if t.role == "mfr-3F01"} & {genuine.path, new_path}
    role = session._trusted_role("mfr-3F01")
    assert {genuine.path, new_path} <= set(role.targets)
    # ... and the catalogue, a second layer, would not take them as 121D images either.
    smuggled = [
        VerifiedTarget(path, "mfr-3F01", t.length, t.hashes["sha256"], t.custom)
        for path, t in role.targets.items()
        if path in (genuine.path, new_path)
    ]
    catalogue, problems = build_catalogue([*verified, *smuggled], WithdrawalList())
    by_path = {image.target_path: image for image in catalogue}
    assert by_path[genuine.path].sha256 == genuine.hashes["sha256"]
    assert new_path not in by_path
    assert {p.target for p in problems} == {genuine.path, new_path}
    assert all("signing role: found 'mfr-3F01'" in p.message for p in problems)

    # ngclient resolves a 121D path only through mfr-121D (terminating): the shadowing entry is
    # never used and the new path is not in the library.
    assert session.target_info(genuine.path).hashes == genuine.hashes
    with pytest.raises(VerificationError, match=r"not in the verified library"):
        session.target_info(new_path)
    with pytest.raises(VerificationError, match=r"not in the verified library"):
        session.download(new_path)
    downloaded = session.download(genuine.path)
    assert _sha256(downloaded.read_bytes()) == genuine.hashes["sha256"]
    assert not [f for f in fetcher.fetched if _sha256(EVIL) in f]
    assert _files(paths.download_dir) == [downloaded.name]


# ---------------------------------------------------------------------------- tampered blob


@pytest.mark.parametrize("tampering", ["same length", "truncated", "appended"])
def test_tampered_blob_is_refused_and_leaves_no_file(tmp_path: Path, tampering: str) -> None:
    factory, images = standard_library(tmp_path)
    fetcher = FolderFetcher(factory.out)
    paths = _paths(tmp_path)
    session = _session(factory, paths, fetcher)
    target = session.verified_targets(["121D"])[0]
    genuine = next(image for image in images.values() if _sha256(image) == target.sha256)
    bad = {
        "same length": genuine[:-1] + bytes([genuine[-1] ^ 1]),
        "truncated": genuine[:-1],
        "appended": genuine + b"\x00",
    }[tampering]
    fetcher.tamper[_blob_url(target.path, genuine)] = bad
    expected = (
        "more data than the signed metadata allows"
        if tampering == "appended"
        else ("LengthOrHashMismatchError")
    )
    with pytest.raises(VerificationError, match=rf"download {target.path}: .*{expected}"):
        session.download(target.path)
    assert _files(paths.download_dir) == []


# ----------------------------------------------------------------------------- endless data


class EndlessFetcher(FolderFetcher):
    """A host that answers one path with zeros forever (until a safety cap) and counts them."""

    def __init__(self, root: Path, endless: str) -> None:
        super().__init__(root)
        self.endless = endless
        self.served = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url.removeprefix(self.base_url) != self.endless:
            return super()._fetch(url)
        self.fetched.append(self.endless)
        return self._forever()

    def _forever(self) -> Iterator[bytes]:
        chunk = bytes(CHUNK)
        while self.served < ENDLESS_CAP:
            self.served += len(chunk)
            yield chunk


def _endless_metadata_case(factory: LibraryFactory, which: str) -> tuple[str, int]:
    """The URL to make endless and the most a client should read of it."""
    if which == "root":  # the probe for a newer root, normally a 404
        return "metadata/2.root.json", UpdaterConfig().root_max_length
    if which == "timestamp":
        return "metadata/timestamp.json", UpdaterConfig().timestamp_max_length
    if which == "snapshot":
        meta = _current_timestamp(factory).snapshot_meta
        assert meta.length is not None
        return f"metadata/{meta.version}.snapshot.json", meta.length
    meta = _current_snapshot(factory).meta[f"{which}.json"]
    assert meta.length is not None, "snapshot gives no length: a role may be up to 64 MiB"
    return f"metadata/{meta.version}.{which}.json", meta.length


@pytest.mark.parametrize("which", ["root", "timestamp", "snapshot", "targets", "mfr-121D"])
def test_endless_metadata_is_cut_off_at_its_length_limit(tmp_path: Path, which: str) -> None:
    factory, _ = standard_library(tmp_path)
    url, limit = _endless_metadata_case(factory, which)
    fetcher = EndlessFetcher(factory.out, url)
    paths = _paths(tmp_path)
    with pytest.raises(
        VerificationError,
        match=rf"the server sent more data than the signed metadata allows .*maximum allowed length of {limit}\b",
    ):
        _session(factory, paths, fetcher).verified_targets(["121D"])
    assert fetcher.served <= limit + CHUNK
    assert _trusted_version(paths, which) == (1 if which == "root" else None)
    assert _files(paths.download_dir) == []


def test_endless_blob_is_cut_off_at_the_signed_length(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    paths = _paths(tmp_path)
    target = _session(factory, paths).verified_targets(["121D"])[0]
    genuine = next(image for image in images.values() if _sha256(image) == target.sha256)
    fetcher = EndlessFetcher(factory.out, _blob_url(target.path, genuine))
    session = _session(factory, paths, fetcher)
    with pytest.raises(
        VerificationError,
        match=rf"download {target.path}: the server sent more data .*maximum allowed length of {target.length}\b",
    ):
        session.download(target.path)
    assert fetcher.served <= target.length + CHUNK
    assert _files(paths.download_dir) == []


# --------------------------------------------------------------------------- malicious paths


def _publish_metadata_only(factory: LibraryFactory) -> None:
    """Copy the staged metadata (no blobs) into the published tree, timestamp last."""
    repo, meta = factory.repo, factory.out / "metadata"
    head = repo.head
    for role, version in [("targets", head.targets_version), *sorted(head.roles.items())]:
        (meta / f"{version}.{role}.json").write_bytes(repo.metadata_bytes(role, version))
    (meta / f"{head.snapshot_version}.snapshot.json").write_bytes(
        repo.metadata_bytes("snapshot", head.snapshot_version)
    )
    (meta / "timestamp.json").write_bytes(repo.metadata_bytes("timestamp", head.timestamp_version))


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("targets", "../../etc/x"),  # provider-signed top-level targets
        ("mfr-121D", "121D/.."),  # matches `121D/*` one segment down
    ],
)
def test_malicious_target_path_never_escapes_the_download_dir(
    tmp_path: Path, role: str, path: str
) -> None:
    factory, _ = standard_library(tmp_path)
    forged = _next_version(factory, role)
    forged.signed.targets[path] = TargetFile(len(EVIL), {"sha256": _sha256(EVIL)}, path)
    if role == Targets.type:
        for signer in _provider_signers(factory, Targets.type):
            forged.sign(signer, append=True)
    else:
        forged.sign(factory.mfr_signers["121D"])
    factory.repo.blobs.put(EVIL)
    _stage_bypassing_gateway(factory, role, forged)
    fetcher = FolderFetcher(factory.out)
    # Serve the blob where ngclient asks for it, wherever publishing put it.
    fetcher.tamper[_blob_url(path, EVIL)] = EVIL
    # The provider's publisher refuses to write a blob for such a path ...
    with pytest.raises(UnavailableError, match="escapes the targets directory"):
        factory.publish()
    # ... so a hostile host publishes the signed metadata by hand.
    _publish_metadata_only(factory)

    paths = _paths(tmp_path, "home/deep/er")
    outside_before = _files(tmp_path)
    downloaded = _session(factory, paths, fetcher).download(path)
    assert downloaded.parent == paths.download_dir
    assert downloaded.read_bytes() == EVIL
    assert _files(paths.download_dir) == [downloaded.name]
    assert "/" not in downloaded.name and downloaded.name not in ("..", ".")
    # Nothing appeared anywhere else but the client's own home.
    new_elsewhere = [
        f for f in _files(tmp_path) if f not in outside_before and not f.startswith("home")
    ]
    assert new_elsewhere == []


# ------------------------------------------------------------- the command line, over real HTTP

REPO_ROOT = Path(__file__).resolve().parents[2]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_host() -> Iterator[Callable[[Path], str]]:
    """A static host on 127.0.0.1 serving a folder (stdlib http.server in a thread)."""
    servers: list[ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def _cfl(home: Path, *args: str) -> Run:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from client.cli.main import main; main()",
            "--home",
            str(home),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def _cli_client(tmp_path: Path, factory: LibraryFactory, url: str) -> Path:
    root = tmp_path / "1.root.json"
    root.write_bytes(factory.root_bytes)
    home = tmp_path / "cfl-home"
    run = _cfl(home, "init", url, "--root", str(root))
    assert run.code == 0, run.stderr
    return home


def _error_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("error: ")]


def test_cli_refuses_a_tampered_blob_and_writes_nothing(
    tmp_path: Path, http_host: Callable[[Path], str]
) -> None:
    factory, images = standard_library(tmp_path / "lib")
    home = _cli_client(tmp_path, factory, http_host(factory.out))
    image = images["a3"]
    role = _load(factory, f"{factory.repo.head.roles['mfr-121D']}.mfr-121D.json", Targets).signed
    target = next(t for t in role.targets.values() if t.hashes["sha256"] == _sha256(image))
    blob = factory.out / _blob_url(target.path, image)
    blob.write_bytes(image[:-1] + bytes([image[-1] ^ 1]))  # the host flips one bit
    out = tmp_path / "firmware"

    run = _cfl(home, "download", target.path, "--out", str(out))

    assert run.code == 1, run
    (error,) = _error_lines(run)
    assert f"download {target.path}: verification failed (LengthOrHashMismatchError" in error
    assert _files(out) == []
    assert _files(ClientHome(home).targets_dir) == []


def test_cli_refuses_a_replayed_timestamp_and_writes_nothing(
    tmp_path: Path, http_host: Callable[[Path], str]
) -> None:
    factory, _ = standard_library(tmp_path / "lib")
    old_timestamp = _published(factory, "timestamp.json")
    _republish(factory)
    home = _cli_client(tmp_path, factory, http_host(factory.out))
    assert _cfl(home, "refresh").code == 0
    paths = SessionPaths(ClientHome(home).metadata_dir, ClientHome(home).targets_dir)
    before = _trusted_versions(paths)
    (factory.out / "metadata" / "timestamp.json").write_bytes(old_timestamp)  # the host replays
    target = _image_target(
        _load(factory, f"{factory.repo.head.roles['mfr-121D']}.mfr-121D.json", Targets).signed
    )
    out = tmp_path / "firmware"

    run = _cfl(home, "download", target.path, "--out", str(out))

    assert run.code == 1, run
    (error,) = _error_lines(run)
    assert "rollback refused (New timestamp version" in error
    assert _files(out) == []
    assert _trusted_versions(paths) == before
