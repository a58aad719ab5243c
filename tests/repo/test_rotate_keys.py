"""Top-level key rotation through a new root version, followed by clients that trusted the old root."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Timestamp

from factory import FolderFetcher, LibraryFactory, standard_library, updater_for
from metadata_templates.errors import CflError, ConfigurationError, RejectedInputError
from repo_tool.ops.rotate_keys import rotate_keys as rotate_keys_op
from repo_tool.signing.keys import SignerRef, load_signer, write_keypair
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


def _new_key(factory: LibraryFactory, name: str) -> SignerRef:
    key, uri = write_keypair(factory.repo.path / "keys" / f"{name}.pem")
    return SignerRef(key, uri)


def _client_seen_library(factory: LibraryFactory, tmp_path: Path) -> Path:
    """A client that refreshed before the rotation (it trusts root v1 and the old keys)."""
    workdir = tmp_path / "client"
    updater, _ = updater_for(factory, workdir)
    updater.refresh()
    return workdir


def test_timestamp_key_rotation_is_followed_by_clients_and_old_key_is_revoked(
    tmp_path: Path,
) -> None:
    factory, images = standard_library(tmp_path)
    workdir = _client_seen_library(factory, tmp_path)
    old_ref = factory.repo.config.signers["timestamp"][0]
    new_ref = _new_key(factory, "timestamp-2")
    with factory.repo.locked():
        version = rotate_keys_op(
            factory.repo,
            "timestamp",
            add=[new_ref],
            remove=[old_ref.keyid[:8]],
            threshold=None,
            now=factory.tick(),
        )
    assert version == 2
    factory.publish()
    assert (factory.out / "metadata" / "2.root.json").is_file()

    # The client that trusted root v1 follows the chain and accepts the new timestamp.
    updater, _ = updater_for(factory, workdir)
    updater.refresh()
    timestamp = Metadata[Timestamp].from_bytes(
        (factory.out / "metadata" / "timestamp.json").read_bytes()
    )
    assert set(timestamp.signatures) == {new_ref.keyid}

    # A timestamp signed by the revoked key is refused by the new root.
    forged = Metadata[Timestamp].from_bytes(
        (factory.out / "metadata" / "timestamp.json").read_bytes()
    )
    forged.signed.version += 1
    forged.signatures.clear()
    forged.sign(load_signer(old_ref, base=factory.repo.path, secrets_handler=None))
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper["metadata/timestamp.json"] = forged.to_bytes()
    updater, _ = updater_for(factory, tmp_path / "client-2", fetcher)
    with pytest.raises(UnsignedMetadataError):
        updater.refresh()

    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None and library.root_version == 2
    assert len(library.images) == len(images)


def test_root_key_rotation_signed_by_old_and_new_root_keys(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    workdir = _client_seen_library(factory, tmp_path)
    old_root = factory.repo.config.signers["root"][0]
    new_root = _new_key(factory, "root-2")
    with factory.repo.locked():
        rotate_keys_op(
            factory.repo,
            "root",
            add=[new_root],
            remove=[old_root.keyid],
            threshold=1,
            now=factory.tick(),
        )
    factory.publish()
    root2 = Metadata.from_bytes((factory.out / "metadata" / "2.root.json").read_bytes())
    assert set(root2.signatures) == {old_root.keyid, new_root.keyid}
    updater, _ = updater_for(factory, workdir)
    updater.refresh()
    # Later changes are signed by the new root key alone and still verify from root v1.
    with factory.repo.locked():
        rotate_keys_op(
            factory.repo,
            "snapshot",
            add=[_new_key(factory, "snapshot-2")],
            remove=[],
            threshold=None,
            now=factory.tick(),
        )
    factory.publish()
    root3 = Metadata.from_bytes((factory.out / "metadata" / "3.root.json").read_bytes())
    assert set(root3.signatures) == {new_root.keyid}
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []


def test_targets_key_rotation_resigns_targets(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    before = factory.repo.head.targets_version
    new_ref = _new_key(factory, "targets-2")
    old = factory.repo.config.signers["targets"][0]
    with factory.repo.locked():
        rotate_keys_op(
            factory.repo,
            "targets",
            add=[new_ref],
            remove=[old.keyid],
            threshold=None,
            now=factory.tick(),
        )
    assert factory.repo.head.targets_version == before + 1
    assert set(factory.repo.targets().signatures) == {new_ref.keyid}
    factory.publish()
    updater, _ = updater_for(factory, tmp_path / "fresh")
    updater.refresh()


@pytest.mark.parametrize(
    ("kwargs", "message", "error"),
    [
        ({"remove": ["ffffffff"]}, "matching 0 timestamp key", RejectedInputError),
        ({"remove": ["*"], "all": True}, "expected >= 1", RejectedInputError),
        ({"threshold": 2}, "--threshold: found 2, expected 1..1", ConfigurationError),
    ],
    ids=["unknown-key", "no-key-left", "threshold-above-keys"],
)
def test_bad_rotations_change_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str, error: type[CflError]
) -> None:
    factory, _ = standard_library(tmp_path)
    head = (factory.repo.state_dir / "head.json").read_bytes()
    config = (factory.repo.path / "cfl-repo.json").read_bytes()
    remove = list(kwargs.get("remove", []))  # type: ignore[call-overload]
    if kwargs.get("all"):
        remove = [factory.repo.config.signers["timestamp"][0].keyid]
    with factory.repo.locked(), pytest.raises(error, match=message):
        rotate_keys_op(
            factory.repo,
            "timestamp",
            add=[],
            remove=remove,
            threshold=kwargs.get("threshold"),
            now=factory.tick(),
        )  # type: ignore[arg-type]
    assert (factory.repo.state_dir / "head.json").read_bytes() == head
    assert (factory.repo.path / "cfl-repo.json").read_bytes() == config
