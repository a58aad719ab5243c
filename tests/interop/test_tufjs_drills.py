"""tuf-js, an independent TUF client, follows every key drill of docs/operator.md from the root it
trusted before the drill, through a real nginx, and verifies every image."""

from __future__ import annotations

from pathlib import Path

import pytest
from key_drills import DRILLS

from conftest import require_system
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

from .conftest import NginxServer
from .test_tufjs import TUF_JS, Served, run_tufjs

pytestmark = pytest.mark.system


@pytest.mark.parametrize("drill", sorted(DRILLS))
def test_tufjs_follows_the_drill(tmp_path: Path, nginx_server: NginxServer, drill: str) -> None:
    require_system("node", str(TUF_JS))
    factory = DRILLS[drill](tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    root_file = tmp_path / "trusted-root-v1.json"
    root_file.write_bytes(factory.root_bytes)
    served = Served(factory, {}, list(library.images), nginx_server(factory.out), root_file)
    paths = sorted(image.target_path for image in library.images)

    code, document, stderr = run_tufjs(served, tmp_path / "tufjs-cache", paths)

    assert code == 0, stderr
    got = {t["path"]: t["sha256"] for t in document["targets"]}
    assert got == {image.target_path: image.sha256 for image in library.images}
    assert len(got) == 3


def test_tufjs_resolves_provider_documents_through_cfl_provider_with_targets_offline(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    """Issue 13: a tree whose routine work after the handover used only online keys (the targets
    key offline from the start); tuf-js walks targets -> cfl-provider for cfl/* and targets ->
    mfr-121D for images, from the root it trusted before any ceremony."""
    require_system("node", str(TUF_JS))
    from key_drills import offline_targets_routine

    from metadata_templates import naming

    factory = offline_targets_routine(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    root_file = tmp_path / "trusted-root-v1.json"
    root_file.write_bytes(factory.root_bytes)
    served = Served(factory, {}, list(library.images), nginx_server(factory.out), root_file)
    documents = [naming.CPL_TARGET_PATH, naming.WITHDRAWALS_TARGET_PATH, "cfl/suspensions.json"]
    paths = sorted(image.target_path for image in library.images) + documents

    code, document, stderr = run_tufjs(served, tmp_path / "tufjs-cache", paths)

    assert code == 0, stderr
    got = {t["path"] for t in document["targets"]}
    assert got == set(paths)
