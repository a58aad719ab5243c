"""The duplicate index as delta-chained documents: what a cold read sees equals what was added, a
chain never grows past MAX_DEPTH, and a damaged document is an error, never a silently smaller
index (which would let a duplicate through)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metadata_templates.errors import UnavailableError
from repo_tool.gateway.model import LibraryIndex
from repo_tool.state import library_index
from repo_tool.state.library_index import IndexStore


def one(n: int) -> LibraryIndex:
    target = f"121D/ESME-{n:04d}.ota"
    return LibraryIndex({f"f{n}": target}, {f"m{n}": target}, {f"CPL-{n}": target})


def test_a_cold_read_sees_every_addition_and_chains_stay_short(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    sha = None
    for n in range(library_index.MAX_DEPTH * 2 + 5):
        sha = store.add(sha, one(n))
    cold = IndexStore(tmp_path).load(sha)
    count = library_index.MAX_DEPTH * 2 + 5
    assert cold.file_sha256 == {f"f{n}": f"121D/ESME-{n:04d}.ota" for n in range(count)}
    assert set(cold.cpl_entries) == {f"CPL-{n}" for n in range(count)}
    assert store.load(sha) == cold  # the warm copy agrees with the disk
    # no chain is longer than MAX_DEPTH documents
    depths = [json.loads(p.read_bytes()).get("depth", 0) for p in tmp_path.glob("*.json")]
    assert max(depths) < library_index.MAX_DEPTH
    assert sum(1 for d in depths if d == 0) == 3  # the first document and two compactions


def test_each_deposit_writes_a_small_document(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    sha = None
    for n in range(500):
        sha = store.add(sha, one(n))
    newest = (tmp_path / f"{sha}.json").stat().st_size
    assert newest < 1000  # a delta, not the 500-image index


def test_an_older_head_still_reads_its_own_index(tmp_path: Path) -> None:
    """The head names the document: a head from before an ingest (a crash before the commit)
    reads the index as it was, not with the orphaned addition."""
    store = IndexStore(tmp_path)
    old = store.add(None, one(1))
    store.add(old, one(2))  # written, never committed
    assert set(IndexStore(tmp_path).load(old).file_sha256) == {"f1"}


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_damaged_document_is_an_error(tmp_path: Path, damage: str) -> None:
    store = IndexStore(tmp_path)
    base = store.add(None, one(1))
    sha = store.add(base, one(2))
    path = tmp_path / f"{base}.json"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes().replace(b"f1", b"f9"))
    with pytest.raises(UnavailableError, match="duplicate index"):
        IndexStore(tmp_path).load(sha)
