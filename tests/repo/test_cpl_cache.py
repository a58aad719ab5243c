"""Finding the CPL entries a deposit declares without parsing the whole CPL (repo_tool/intake/cpl_cache.py),
in `cfl-repo submit` (from its kept copy of the CPL) and in the gateway (from the CPL's blob).

Every entry comes from bytes whose hash is the signed one: whatever else is wrong (a torn, edited,
foreign or garbage copy) is a miss, the CPL is read whole again, and the deposit gets exactly the
answer it gets without a copy."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_repo_cli import Lib, built, lib  # noqa: F401 (the command tests' library fixtures)
from test_submit_scope import CountingReader

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.errors import RejectedInputError
from repo_tool.intake.bundle import Declaration, read_bundle
from repo_tool.intake.cpl_cache import (
    CACHE_ENV,
    CplCache,
    cpl_without_entries,
    default_cache_dir,
    select_entries,
)
from repo_tool.site.build import build_site
from repo_tool.state.repository import Repository
from repo_tool.submit.deposit import build_submission
from repo_tool.submit.scope import load_for_deposit
from repo_tool.verify.sources import Reader, folder_reader
from repo_tool.verify.walk import verified_library

MFR = "121D"


def _document(count: int = 5) -> tuple[str, bytes, CplDocument]:
    entries = [make_entry(f"CPL-{n:04d}", fw=f"{n:08X}") for n in range(count)]
    doc = CplDocument.of(entries, "0" * 64, "2026-11-30T00:00:00Z")
    data = doc.to_bytes()
    return hashlib.sha256(data).hexdigest(), data, doc


def test_a_kept_cpl_gives_back_exactly_the_entries_asked_for(tmp_path: Path) -> None:
    sha, data, doc = _document()
    cache = CplCache(tmp_path)
    assert cache.lookup(sha, ["CPL-0001"]) is None  # nothing kept yet
    cache.store(sha, data)
    found = cache.lookup(sha, ["CPL-0003", "CPL-0001"])
    assert found is not None
    assert dict(found.by_id()) == {k: doc.by_id()[k] for k in ("CPL-0003", "CPL-0001")}
    assert (found.source_sha256, found.imported) == (doc.source_sha256, doc.imported)
    assert cache.lookup(sha, ["CPL-0001", "CPL-9999"]) is None  # not listed: parse whole
    assert cache.lookup("f" * 64, ["CPL-0001"]) is None  # another CPL's hash: a miss


def _kept_file(directory: Path, sha: str) -> Path:
    return directory / f"cpl-{sha}.json"


@pytest.mark.parametrize(
    "damage",
    [
        "garbage",
        "truncated",
        "empty",
        "edited-entry",
        "another-cpl",
        "a-folder",
        "symlink-to-another-cpl",
        "fifo",
    ],
)
def test_a_damaged_copy_is_a_miss_and_the_next_store_replaces_it(
    tmp_path: Path, damage: str
) -> None:
    sha, data, doc = _document()
    other_sha, other_data, _ = _document(6)
    cache = CplCache(tmp_path)
    cache.store(other_sha, other_data)
    cache.store(sha, data)
    path = _kept_file(tmp_path, sha)
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        path.write_bytes(data[:300])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "edited-entry":  # same length, one entry's status changed: a hex editor's work
        path.write_bytes(data.replace(b'"status":"Active"', b'"status":"Activf"', 1))
    elif damage == "another-cpl":
        path.write_bytes(other_data)
    else:
        path.unlink()
        if damage == "a-folder":
            path.mkdir()
        elif damage == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(_kept_file(tmp_path, other_sha))
    asked = ["CPL-0001"]
    assert cache.lookup(sha, asked) is None
    if damage in ("a-folder",):
        return  # nothing can replace a folder; every deposit parses the CPL whole, as without one
    if path.is_symlink() or damage == "fifo":
        path.unlink()
    cache.store(sha, data)
    found = cache.lookup(sha, asked)
    assert found is not None and found.by_id()["CPL-0001"] == doc.by_id()["CPL-0001"]


def test_a_hash_that_is_not_hex_or_not_the_datas_names_no_file(tmp_path: Path) -> None:
    _, data, _ = _document()
    cache = CplCache(tmp_path / "cache")
    for bad in ("../../escape", "A" * 64, "0" * 63, "0" * 64):
        cache.store(bad, data)
        assert cache.lookup(bad, ["CPL-0001"]) is None
    assert not (tmp_path / "cache").exists()
    assert not list(tmp_path.rglob("cpl-*"))


def test_an_unwritable_cache_folder_never_fails_the_caller(tmp_path: Path) -> None:
    sha, data, _ = _document()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = CplCache(blocker / "cpl")
    cache.store(sha, data)  # no exception: the next deposit reads the CPL again
    assert cache.lookup(sha, ["CPL-0001"]) is None


def test_a_write_killed_midway_leaves_no_copy_and_the_next_one_cleans_up(tmp_path: Path) -> None:
    sha, data, _ = _document()
    # What a kill -9 during `store` leaves: a temporary file, never the copy's own name.
    torn = tmp_path / f".cpl-{sha}.json.killed.tmp"
    torn.write_bytes(data[:100])
    cache = CplCache(tmp_path)
    assert cache.lookup(sha, ["CPL-0001"]) is None
    cache.store(sha, data)
    assert cache.lookup(sha, ["CPL-0001"]) is not None
    assert not torn.exists()


def test_old_copies_are_pruned_to_the_most_recent_eight(tmp_path: Path) -> None:
    cache = CplCache(tmp_path)  # --cache-dir may name a folder holding files of the user's own
    for theirs in ("cpl-export.json", "cpl-2026.json", ".cpl-mine.tmp"):
        (tmp_path / theirs).write_text("the user's own file")
        os.utime(tmp_path / theirs, (1, 1))
    shas = []
    for n in range(11):
        sha, data, _ = _document(n + 1)
        cache.store(sha, data)
        os.utime(_kept_file(tmp_path, sha), (1_000_000 + n, 1_000_000 + n))
        shas.append(sha)
    kept = {p.name for p in tmp_path.glob("cpl-*.json")}
    assert len(kept) == 8 + 2
    assert f"cpl-{shas[-1]}.json" in kept and f"cpl-{shas[0]}.json" not in kept
    assert {"cpl-export.json", "cpl-2026.json"} <= kept  # not ours: never removed
    assert (tmp_path / ".cpl-mine.tmp").exists()


def test_the_default_folder_follows_the_environment() -> None:
    assert default_cache_dir({CACHE_ENV: "/x/y"}) == Path("/x/y")
    assert default_cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/cfl-repo")
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/cfl-repo")


# --- select_entries: the search gives what a whole parse gives, or nothing ----------------------


def _tricky(entry_id: str, text: str) -> CplEntry:
    return replace(
        make_entry(entry_id), model_name=text, cpa_certificate=text, manufacturer_name=text
    )


@pytest.mark.parametrize(
    "text",
    [
        'x{"id":"CPL-2"}',  # an entry's JSON inside another's field: escaped, never found
        "ends with a brace {",
        "ends with ,{",
        "ends with [{",
        "back\\slash\\",
        'quote " and "id":"CPL-2"',
        "unicode \u00e9\u4e2d \U0001f600",
        '],"imported":',
    ],
)
def test_entries_with_hostile_text_are_found_exactly(text: str) -> None:
    entries = [_tricky("CPL-1", text), _tricky("CPL-2", text), _tricky("CPL-10", text)]
    doc = CplDocument.of(entries, "1" * 64, "2026-11-30T00:00:00Z")
    found = select_entries(doc.to_bytes(), ["CPL-2", "CPL-1"])
    assert found is not None
    assert dict(found.by_id()) == {k: doc.by_id()[k] for k in ("CPL-2", "CPL-1")}


def test_of_duplicate_ids_the_last_is_found_as_a_whole_parse_takes_it() -> None:
    first, last = make_entry("CPL-1", fw="00000001"), make_entry("CPL-1", fw="00000009")
    doc = CplDocument.of([first, make_entry("CPL-2"), last], "1" * 64, "t")
    found = select_entries(doc.to_bytes(), ["CPL-1"])
    assert found is not None
    assert found.by_id()["CPL-1"] == doc.by_id()["CPL-1"] == last


@pytest.mark.parametrize(
    "case", ["not-listed", "too-many-ids", "indented", "wrong-schema", "not-utf8", "not-json"]
)
def test_what_a_search_cannot_answer_exactly_is_left_to_a_whole_parse(case: str) -> None:
    _, data, _ = _document()
    ids = ["CPL-0001"]
    if case == "not-listed":
        ids = ["CPL-0001", "CPL-9999"]
    elif case == "too-many-ids":
        ids = [f"CPL-{n:04d}" for n in range(5)] * 20 + [f"X{n}" for n in range(100)]
    elif case == "indented":
        data = json.dumps(json.loads(data), indent=1, sort_keys=True).encode()
    elif case == "wrong-schema":
        data = data.replace(b'"schema_version":1', b'"schema_version":2')
    elif case == "not-utf8":
        data = data.replace(b"Model A", b"Model \xff", 1)
    else:
        data = data[:-1]
    assert select_entries(data, ids) is None


# JSON's own punctuation most of the time, so fields that end in "{" or ",{" and IDs inside other
# fields come up often; any other character now and then.
_text = st.text(
    st.sampled_from(list('{}[],:"\\ Aid'))
    | st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(
        st.sampled_from(["A", "B", "AB", "A\\", '"A"', "{", "id"]), min_size=1, max_size=6
    ),
    texts=st.lists(_text, min_size=6, max_size=6),
)
def test_a_search_never_answers_differently_from_a_whole_parse(
    ids: list[str], texts: list[str]
) -> None:
    entries = [
        replace(make_entry(entry_id), model_name=text, cpa_certificate=text, status=text[:3])
        for entry_id, text in zip(ids, texts, strict=False)
    ]
    doc = CplDocument.of(entries, "1" * 64, texts[0])
    data = doc.to_bytes()
    whole = CplDocument.from_bytes(data).by_id()
    for asked in (["A"], ["B", "{"], ids):
        found = select_entries(data, asked)
        if all(a in whole for a in asked):
            assert found is not None  # the layout to_bytes writes is always searchable
            assert dict(found.by_id()) == {a: whole[a] for a in asked}
        else:
            assert found is None


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
    assert _read_cpl(first, factory)  # read whole once, then kept
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


@pytest.mark.parametrize("process", ["fresh", "parsed-whole-already"])
def test_ingest_accepts_and_refuses_the_same_whether_it_searches_or_parses_the_cpl(
    tmp_path: Path, process: str
) -> None:
    factory, image = _library_with_one_more_entry(tmp_path)
    factory.repo = Repository.open(factory.repo.path)  # a fresh `cfl-repo ingest` process
    if process == "parsed-whole-already":
        assert factory.repo.cpl() is not None  # an inbox run that parsed it for another reason
    refused = factory.ingest(factory.submit(make_image(MFR, 9), ["CPL-0070"]), "wrong-image")
    assert refused.status == "rejected"
    assert any("hash-not-on-cpl" in r for r in refused.reasons), refused.reasons
    # An ID not on the CPL (submit refuses to sign one, so asked directly): the whole CPL, which
    # gives the gateway's "no such entry" refusal.
    whole = factory.repo.cpl_entries(["CPL-0070", "CPL-9999"])
    assert whole is not None and "CPL-9999" not in whole.by_id()
    assert len(whole.entries) == len(factory.entries)
    accepted = factory.ingest(factory.submit(image, ["CPL-0070"]), "right-image")
    assert accepted.status == "accepted", accepted.messages
    assert not (factory.repo.path / "cache").exists()  # the gateway keeps no index to forge


# --- the command ------------------------------------------------------------------------------------


def test_submit_indexes_the_cpl_in_its_cache_folder_and_signs_the_same_deposit_from_it(
    lib: Lib,  # noqa: F811
) -> None:
    cache = lib.base / "cache"
    first = lib.submit("a3.ota", "CPL-0003", "first.cflb", "--cache-dir", cache)
    assert len(list(cache.glob("cpl-*.json"))) == 1
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
    assert len(list(cache.glob("cpl-*.json"))) == 1


# --- the website step -------------------------------------------------------------------------------


def test_the_website_step_checks_the_cpl_but_parses_none_of_its_entries() -> None:
    sha, data, doc = _document()
    shown = cpl_without_entries(sha, lambda: data)
    assert shown is not None and shown.entries == ()
    assert (shown.source_sha256, shown.imported) == (doc.source_sha256, doc.imported)
    # A blob that failed its hash check (the walk has recorded why): nothing, as without it.
    assert cpl_without_entries(sha, lambda: None) is None
    # Bytes laid out otherwise are parsed whole, so a malformed CPL is reported as before.
    with pytest.raises(ValueError, match="schema_version: found None"):
        cpl_without_entries(sha, lambda: b'{"entries": "not a list"}')


def test_a_published_site_is_the_same_whether_or_not_the_cpl_is_parsed(tmp_path: Path) -> None:
    factory, _ = _library_with_one_more_entry(tmp_path)
    root = factory.root_bytes
    whole = verified_library(folder_reader(factory.out), root, now=factory.now, check_blobs=False)
    light = verified_library(
        folder_reader(factory.out),
        root,
        now=factory.now,
        check_blobs=False,
        cpl_loader=cpl_without_entries,
    )
    assert whole.cpl is not None and whole.cpl.entries and light.cpl is not None
    assert replace(light, cpl=whole.cpl) == whole
    sites = [
        build_site(library, tmp_path / name, generated=factory.now)
        for name, library in (("whole", whole), ("light", light))
    ]
    assert sites[0].files == sites[1].files
    for relative in sites[0].files:
        assert (tmp_path / "whole" / relative).read_bytes() == (
            tmp_path / "light" / relative
        ).read_bytes()
