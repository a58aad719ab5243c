"""Pins the ngclient behaviour client/trust/session.py relies on, against a library built by repo_tool."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from client.trust.session import Session, SessionPaths, target_cache_name
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


def test_versions_reads_the_verified_top_level_roles(tmp_path: Path) -> None:
    # ngclient private API pinned here: `_trusted_set[role].version` for each top-level role.
    factory, _ = standard_library(tmp_path)
    session = _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes)
    published = json.loads((factory.out / "metadata" / "timestamp.json").read_bytes())["signed"]
    versions = session.versions()
    assert versions["root"] == 1
    assert versions["timestamp"] == published["version"]
    assert versions["snapshot"] == published["meta"]["snapshot.json"]["version"]
    assert set(versions) == {"root", "timestamp", "snapshot", "targets"}


def test_downloads_are_cached_under_the_name_the_session_chooses(tmp_path: Path) -> None:
    # Public API only: the session passes filepath= to ngclient, and the offline reader finds the
    # file under the same name.
    factory, _ = standard_library(tmp_path)
    session = _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes)
    target = session.verified_targets(["121D"])[0]
    path = session.download(target.path)
    assert path == session.paths.download_dir / target_cache_name(target.path)
    assert "/" not in target_cache_name(target.path)
    assert [p.name for p in session.paths.download_dir.iterdir()] == [path.name]


def test_a_tampered_local_root_never_becomes_the_trust_anchor(tmp_path: Path) -> None:
    # bootstrap= is always the root given at init: ngclient replaces whatever root.json says.
    factory, _ = standard_library(tmp_path)
    _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes).refresh()
    metadata = tmp_path / "home" / "metadata"
    (metadata / "root.json").unlink()
    (metadata / "root.json").write_bytes(b'{"signed": "an attacker\'s root"}')
    session = _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes)
    session.refresh()
    assert session.versions()["root"] == 1
    assert json.loads((metadata / "root.json").read_bytes())["signed"]["_type"] == "root"
