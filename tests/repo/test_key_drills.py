"""Each key drill of docs/operator.md leaves a tree that a client which trusted root v1 follows
(python-tuf ngclient) and that our own full check verifies; tuf-js checks the same trees in
tests/interop/test_tufjs_drills.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from key_drills import DRILLS
from tuf.api.metadata import Metadata, Root, Targets

from factory import updater_for
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


@pytest.mark.parametrize("drill", sorted(DRILLS))
def test_drill_leaves_a_tree_clients_verify(tmp_path: Path, drill: str) -> None:
    factory = DRILLS[drill](tmp_path)
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert len(library.images) == 3
    for image in library.images:
        info = updater.get_targetinfo(image.target_path)
        assert info is not None and info.hashes["sha256"] == image.sha256
    root = Metadata[Root].from_bytes(
        (factory.out / "metadata" / f"{library.root_version}.root.json").read_bytes()
    )
    assert library.root_version >= 2  # the holders' root (and the drill's change, if any)
    assert root.signed.roles["root"].threshold == 2


def test_manufacturer_drill_publishes_only_the_new_key(tmp_path: Path) -> None:
    factory = DRILLS["manufacturer-key-compromise"](tmp_path)
    targets = Metadata[Targets].from_bytes(
        (
            factory.out / "metadata" / f"{factory.repo.head.targets_version}.targets.json"
        ).read_bytes()
    )
    assert targets.signed.delegations is not None and targets.signed.delegations.roles is not None
    keyids = targets.signed.delegations.roles["mfr-121D"].keyids
    assert keyids == [factory.mfr_signers["121D"].public_key.keyid]
    assert factory.repo.head.suspended == {}


def test_rotation_in_progress_marks_the_retiring_key_in_the_signed_delegation(
    tmp_path: Path,
) -> None:
    from repo_tool.state.retirement import RETIRING_FIELD

    factory = DRILLS["manufacturer-rotation-in-progress"](tmp_path)
    targets = Metadata[Targets].from_bytes(
        (
            factory.out / "metadata" / f"{factory.repo.head.targets_version}.targets.json"
        ).read_bytes()
    )
    assert targets.signed.delegations is not None and targets.signed.delegations.roles is not None
    role = targets.signed.delegations.roles["mfr-121D"]
    old = factory.mfr_signers["121D"].public_key.keyid
    assert role.unrecognized_fields[RETIRING_FIELD] == [old]
    assert old in role.keyids and len(role.keyids) == 2
    assert old not in factory.repo.head.manufacturers["121D"].keys  # the gateway no longer takes it
