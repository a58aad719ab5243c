"""Provider, manufacturer deposit, published tree, then python-tuf ngclient downloading each image."""

from __future__ import annotations

import hashlib
from pathlib import Path

from factory import standard_library, updater_for
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


def test_published_tree_verifies_and_lists_every_image(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None
    assert sorted(i.sha256 for i in library.images) == sorted(
        hashlib.sha256(b).hexdigest() for b in images.values()
    )
    assert library.cpl is not None and len(library.cpl.entries) == 4
    assert library.manufacturers == {"121D": "Maker 121D", "3F01": "Maker 3F01"}


def test_ngclient_downloads_each_image(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    updater, _ = updater_for(factory, tmp_path / "client")
    downloads = tmp_path / "client" / "targets"
    updater.refresh()
    library, _ = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert library is not None
    for image in library.images:
        info = updater.get_targetinfo(image.target_path)
        assert info is not None, image.target_path
        path = updater.download_target(info)
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == image.sha256
    assert len(list(downloads.iterdir())) == len(images)
