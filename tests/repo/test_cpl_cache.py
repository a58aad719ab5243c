"""The CPL index (repo_tool/cpl_cache.py): a deposit reads the few CPL entries it declares, not the
whole CPL, in `cfl-repo submit` and in the gateway.

The index is derived data keyed by the CPL's signed SHA-256: whatever is wrong with it (torn,
garbage, another CPL's, tampered rows) is a miss, the CPL is read whole again, and the deposit gets
exactly the answer it gets without an index."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from test_repo_cli import Lib, built, lib  # noqa: F401 (the command tests' library fixtures)
from test_submit_scope import CountingReader

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument
from metadata_templates.errors import RejectedInputError
from repo_tool.bundle import Declaration, read_bundle
from repo_tool.cpl_cache import CACHE_ENV, CplCache, default_cache_dir
from repo_tool.repository import Repository
from repo_tool.submit import build_submission
from repo_tool.submit_scope import load_for_deposit
from repo_tool.verify import Reader, folder_reader

MFR = "121D"


def _document(count: int = 5) -> tuple[str, CplDocument]:
    entries = [make_entry(f"CPL-{n:04d}", fw=f"{n:08X}") for n in range(count)]
    doc = CplDocument.of(entries, "0" * 64, "2026-11-30T00:00:00Z")
    return hashlib.sha256(doc.to_bytes()).hexdigest(), doc


def test_an_indexed_cpl_gives_back_exactly_the_entries_asked_for(tmp_path: Path) -> None:
    sha, doc = _document()
    cache = CplCache(tmp_path)
    assert cache.lookup(sha, ["CPL-0001"]) is None  # nothing indexed yet
    cache.store(sha, doc)
    found = cache.lookup(sha, ["CPL-0003", "CPL-0001", "CPL-9999"])
    assert found is not None
    assert dict(found.by_id()) == {k: doc.by_id()[k] for k in ("CPL-0003", "CPL-0001")}
    assert (found.source_sha256, found.imported) == (doc.source_sha256, doc.imported)
    assert cache.lookup("f" * 64, ["CPL-0001"]) is None  # another CPL's hash: a miss


def _index_file(directory: Path, sha: str) -> Path:
    return directory / f"cpl-{sha}.sqlite"


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "wrong-magic", "another-cpl", "bad-row", "row-of-another-id"],
)
def test_a_damaged_index_is_a_miss_and_the_next_store_replaces_it(
    tmp_path: Path, damage: str
) -> None:
    sha, doc = _document()
    cache = CplCache(tmp_path)
    cache.store(sha, doc)
    path = _index_file(tmp_path, sha)
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with sqlite3.connect(path) as db:
            if damage == "wrong-magic":
                db.execute("UPDATE doc SET magic = 'something else'")
            elif damage == "another-cpl":
                db.execute("UPDATE doc SET sha256 = ?", ("e" * 64,))
            elif damage == "bad-row":
                db.execute("UPDATE entry SET body = '[1, 2' WHERE id = 'CPL-0001'")
            else:
                db.execute(
                    "UPDATE entry SET body = (SELECT body FROM entry WHERE id = 'CPL-0002') "
                    "WHERE id = 'CPL-0001'"
                )
    asked = ["CPL-0001"]
    assert cache.lookup(sha, asked) is None
    cache.store(sha, doc)
    found = cache.lookup(sha, asked)
    assert found is not None and found.by_id()["CPL-0001"] == doc.by_id()["CPL-0001"]


def test_a_hash_that_is_not_hex_names_no_file(tmp_path: Path) -> None:
    _, doc = _document()
    cache = CplCache(tmp_path / "cache")
    for bad in ("../../escape", "A" * 64, "0" * 63):
        cache.store(bad, doc)
        assert cache.lookup(bad, ["CPL-0001"]) is None
    assert not (tmp_path / "cache").exists()
    assert not list(tmp_path.rglob("*.sqlite"))


def test_an_unwritable_cache_folder_never_fails_the_caller(tmp_path: Path) -> None:
    sha, doc = _document()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = CplCache(blocker / "cpl")
    cache.store(sha, doc)  # no exception: the next deposit parses the CPL again
    assert cache.lookup(sha, ["CPL-0001"]) is None


def test_a_write_killed_midway_leaves_no_index_and_the_next_one_works(tmp_path: Path) -> None:
    sha, doc = _document()
    # What a kill -9 during `store` leaves: a temporary file, never the index's own name.
    (tmp_path / ".cpl-killed.tmp").write_bytes(b"SQLite format 3\x00 torn")
    cache = CplCache(tmp_path)
    assert cache.lookup(sha, ["CPL-0001"]) is None
    cache.store(sha, doc)
    assert cache.lookup(sha, ["CPL-0001"]) is not None


def test_old_indexes_are_pruned_to_the_most_recent_eight(tmp_path: Path) -> None:
    cache = CplCache(tmp_path)
    shas = []
    for n in range(11):
        sha, doc = _document(n + 1)
        cache.store(sha, doc)
        os.utime(_index_file(tmp_path, sha), (1_000_000 + n, 1_000_000 + n))
        shas.append(sha)
    kept = {p.name for p in tmp_path.glob("cpl-*.sqlite")}
    assert len(kept) == 8
    assert f"cpl-{shas[-1]}.sqlite" in kept and f"cpl-{shas[0]}.sqlite" not in kept


def test_the_default_folder_follows_the_environment() -> None:
    assert default_cache_dir({CACHE_ENV: "/x/y"}) == Path("/x/y")
    assert default_cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/cfl-repo")
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/cfl-repo")


# --- submit ---------------------------------------------------------------------------------------


def _read_cpl(reader: CountingReader, factory: LibraryFactory) -> bool:
    """Whether ``reader`` read the published CPL blob."""
    cpl = factory.repo.provider_targets()[naming.CPL_TARGET_PATH]
    return (
        f"targets/{naming.blob_name(naming.CPL_TARGET_PATH, cpl.hashes['sha256'])}" in reader.paths
    )


def _library_with_one_more_entry(tmp_path: Path) -> tuple[LibraryFactory, bytes]:
    factory, _ = standard_library(tmp_path)
    image = make_image(MFR, 7)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0070", fw="00000007", image_sha=mi_sha(image))]
    )
    factory.publish()
    return factory, image


def _deposit(
    factory: LibraryFactory, image: bytes, read: Reader, cache: CplCache | None, entry: str
) -> str:
    library = load_for_deposit(
        str(factory.out),
        read,
        factory.root_bytes,
        now=factory.tick(),
        manufacturer_id=MFR,
        image=image,
        cpl_entry_ids=[entry],
        with_notes=False,
        cpl_cache=cache,
    )
    return build_submission(
        image=image,
        manufacturer_id=MFR,
        signers=[factory.mfr_signers[MFR]],
        declaration=Declaration((entry,), "compliance", ()),
        release_notes=None,
        library=library,
        now=factory.now,
    ).bundle.target


def test_a_second_deposit_against_the_same_cpl_does_not_read_it(tmp_path: Path) -> None:
    factory, image = _library_with_one_more_entry(tmp_path)
    cache = CplCache(tmp_path / "submit-cache")
    without = _deposit(factory, image, folder_reader(factory.out), None, "CPL-0070")
    first = CountingReader(factory.out)
    assert _deposit(factory, image, first, cache, "CPL-0070") == without
    assert _read_cpl(first, factory)  # read whole once, then indexed
    second = CountingReader(factory.out)
    assert _deposit(factory, image, second, cache, "CPL-0070") == without
    assert not _read_cpl(second, factory)


def test_a_new_cpl_is_read_again_and_its_new_entries_are_found(tmp_path: Path) -> None:
    factory, image = _library_with_one_more_entry(tmp_path)
    cache = CplCache(tmp_path / "submit-cache")
    _deposit(factory, image, folder_reader(factory.out), cache, "CPL-0070")
    later = make_image(MFR, 8)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0080", fw="00000008", image_sha=mi_sha(later))]
    )
    factory.publish()
    read = CountingReader(factory.out)
    assert _deposit(factory, later, read, cache, "CPL-0080").endswith(".ota")
    assert _read_cpl(read, factory)


def test_an_entry_the_indexed_cpl_lacks_gets_the_same_refusal(tmp_path: Path) -> None:
    factory, image = _library_with_one_more_entry(tmp_path)
    cache = CplCache(tmp_path / "submit-cache")
    _deposit(factory, image, folder_reader(factory.out), cache, "CPL-0070")
    with pytest.raises(RejectedInputError, match=r"found \['CPL-9999'\], expected IDs on the"):
        _deposit(factory, image, folder_reader(factory.out), cache, "CPL-9999")


# --- ingest ---------------------------------------------------------------------------------------


def _repository_index(factory: LibraryFactory) -> Path:
    sha = factory.repo.head.cpl_sha256
    assert sha
    return _index_file(factory.repo.path / "cache" / "cpl", sha)


@pytest.mark.parametrize("index", ["kept", "deleted", "garbage"])
def test_ingest_accepts_and_refuses_the_same_with_or_without_a_sound_index(
    tmp_path: Path, index: str
) -> None:
    factory, image = _library_with_one_more_entry(tmp_path)
    path = _repository_index(factory)
    assert path.is_file()  # `cpl import` indexes the CPL it imports
    if index == "deleted":
        path.unlink()
    elif index == "garbage":
        path.write_bytes(b"not an index")
    factory.repo = Repository.open(factory.repo.path)  # a fresh `cfl-repo ingest` process
    refused = factory.ingest(factory.submit(make_image(MFR, 9), ["CPL-0070"]), "wrong-image")
    assert refused.status == "rejected"
    assert any("hash-not-on-cpl" in r for r in refused.reasons), refused.reasons
    accepted = factory.ingest(factory.submit(image, ["CPL-0070"]), "right-image")
    assert accepted.status == "accepted", accepted.messages
    assert CplCache(path.parent).lookup(path.stem.removeprefix("cpl-"), ["CPL-0070"]) is not None


# --- the command ------------------------------------------------------------------------------------


def test_submit_indexes_the_cpl_in_its_cache_folder_and_signs_the_same_deposit_from_it(
    lib: Lib,  # noqa: F811
) -> None:
    cache = lib.base / "cache"
    first = lib.submit("a3.ota", "CPL-0003", "first.cflb", "--cache-dir", cache)
    assert len(list(cache.glob("cpl-*.sqlite"))) == 1
    second = lib.submit("a3.ota", "CPL-0003", "second.cflb", "--cache-dir", cache)
    bundles = [read_bundle(first), read_bundle(second)]
    assert bundles[0].target == bundles[1].target
    assert bundles[0].declaration == bundles[1].declaration


def test_submit_with_a_cache_folder_it_cannot_write_still_signs_the_deposit(
    lib: Lib,  # noqa: F811
) -> None:
    blocker = lib.base / "a-file"
    blocker.write_text("not a folder")
    bundle = lib.submit("a3.ota", "CPL-0003", "blocked.cflb", "--cache-dir", blocker / "cache")
    assert bundle.is_file()


def test_submit_uses_cfl_repo_cache_when_no_folder_is_given(
    lib: Lib,  # noqa: F811
    tmp_path: Path,
) -> None:
    cache = tmp_path / "from-env"
    lib.submit("a3.ota", "CPL-0003", "env.cflb", env={CACHE_ENV: str(cache)})
    assert len(list(cache.glob("cpl-*.sqlite"))) == 1
