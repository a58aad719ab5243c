"""Pins the ngclient behaviour client/session.py relies on, against a library built by repo_tool."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from client.session import Session, SessionPaths
from factory import FolderFetcher, standard_library
from metadata_templates.errors import VerificationError


def _session(tmp_path: Path, fetcher: FolderFetcher, root: bytes) -> Session:
    paths = SessionPaths(tmp_path / "home" / "metadata", tmp_path / "home" / "cache")
    return Session(paths, fetcher.base_url, fetcher, bootstrap_root=root)


def test_loads_only_the_roles_of_requested_manufacturers(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    fetcher = FolderFetcher(factory.out)
    session = _session(tmp_path, fetcher, factory.root_bytes)
    targets = session.verified_targets(["121D"])
    assert {t.role for t in targets} == {"mfr-121D"}
    assert len(targets) == 2
    fetched_roles = [f for f in fetcher.fetched if "mfr-" in f]
    assert fetched_roles == ["metadata/2.mfr-121D.json"]


def test_trusted_set_exposes_verified_roles_after_lookup(tmp_path: Path) -> None:
    # ngclient private API pinned here: `_trusted_set[role]` holds the verified Metadata.
    factory, _ = standard_library(tmp_path)
    session = _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes)
    session.verified_targets(["3F01"])
    role = session._trusted_role("mfr-3F01")
    assert len(role.targets) == 1
    assert session.delegated_manufacturers() == ["121D", "3F01"]


def test_second_refresh_with_nothing_new_fetches_only_timestamp(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes).refresh()
    fetcher = FolderFetcher(factory.out)
    _session(tmp_path, fetcher, factory.root_bytes).refresh()
    # Bootstrapping from root v1 again costs nothing: ngclient walks its cached root history.
    # The spec-mandated probe for a newer root (a 404 here) and timestamp.json: nothing else.
    assert fetcher.fetched == ["metadata/2.root.json", "metadata/timestamp.json"]


def test_download_is_verified_and_cached(tmp_path: Path) -> None:
    factory, _images = standard_library(tmp_path)
    fetcher = FolderFetcher(factory.out)
    session = _session(tmp_path, fetcher, factory.root_bytes)
    target = session.verified_targets(["121D"])[0]
    path = session.download(target.path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == target.sha256
    count = len(fetcher.fetched)
    assert session.download(target.path) == path
    assert len(fetcher.fetched) == count  # served from the verified cache
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".partial-")]


def test_tampered_blob_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    fetcher = FolderFetcher(factory.out)
    session = _session(tmp_path, fetcher, factory.root_bytes)
    target = session.verified_targets(["121D"])[0]
    directory, _, base = target.path.rpartition("/")
    fetcher.tamper[f"targets/{directory}/{target.sha256}.{base}"] = b"\x00" * target.length
    with pytest.raises(VerificationError):
        session.download(target.path)
    assert list(session.paths.download_dir.iterdir()) == []


def test_cpl_and_withdrawals_are_verified_provider_documents(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    session = _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes)
    assert [e.id for e in session.cpl().entries][:2] == ["CPL-0001", "CPL-0002"]
    assert session.withdrawals().withdrawals == ()
