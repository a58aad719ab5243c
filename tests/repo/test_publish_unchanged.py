"""`cfl-repo publish` with nothing new replays its last outcome (repo_tool/publish/unchanged.py),
and anything a publish reads that changed, or a served tree past its expiry, takes the full path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from repo_tool.publish import unchanged

ROOT = Path(__file__).resolve().parents[2]
# Runs `cfl-repo` and reports on stderr's last line whether tuf was imported.
PROBE = (
    "import sys\n"
    "from repo_tool.cli.main import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print('tuf loaded:', 'tuf' in sys.modules, file=sys.stderr)\n"
)


@pytest.fixture
def library(tmp_path: Path) -> LibraryFactory:
    factory, _ = standard_library(tmp_path / "lib")
    return factory


def cfl_repo(factory: LibraryFactory, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", PROBE, "--repo", str(factory.repo.path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return done.stderr.strip().splitlines()


def test_nothing_new_replays_the_same_lines_without_loading_tuf(library: LibraryFactory) -> None:
    first = cfl_repo(library, "publish", "--json")
    assert lines(cfl_repo(library, "publish"))[-1] == "tuf loaded: False"  # replayed at once
    (library.repo.path / unchanged.STAMP).unlink()
    full = cfl_repo(library, "publish", "--json")  # nothing new, proved the full way
    again = cfl_repo(library, "publish", "--json")
    for done in (first, full, again):
        assert done.returncode == 0, done.stderr
    assert lines(full)[-1] == "tuf loaded: True" and "unchanged" not in json.loads(full.stdout)
    assert lines(again)[-1] == "tuf loaded: False"
    assert lines(again)[:-1] == lines(full)[:-1]  # the human lines, byte for byte
    replayed, proved = json.loads(again.stdout), json.loads(full.stdout)
    assert replayed.pop("unchanged") is True
    assert replayed.pop("site_build") == {
        "appended": True,
        "changed_files": 0,
        "told_new_images": 0,
        "verify_memo": None,
    }
    proved.pop("site_build")
    assert replayed == proved


def test_no_site_is_its_own_stamp(library: LibraryFactory) -> None:
    assert cfl_repo(library, "publish").returncode == 0
    bare = cfl_repo(library, "publish", "--no-site")  # recorded with the site: not replayed
    assert bare.returncode == 0, bare.stderr
    assert lines(bare)[-1] == "tuf loaded: True"
    again = cfl_repo(library, "publish", "--no-site", "--json")
    assert lines(again)[-1] == "tuf loaded: False"
    assert "site" not in json.loads(again.stdout)
    assert lines(again)[:-1] == lines(bare)[:-1]


def test_a_tampered_served_role_still_fails_publish(library: LibraryFactory) -> None:
    assert cfl_repo(library, "publish").returncode == 0
    assert cfl_repo(library, "publish").returncode == 0  # the stamp is recorded
    role = sorted((library.out / "metadata").glob("*.mfr-121D.json"))[-1]
    role.write_bytes(role.read_bytes().replace(b'"version":', b'"version": ', 1))
    tampered = cfl_repo(library, "publish")
    assert tampered.returncode == 1, tampered.stderr
    assert "error: published tree failed verification" in tampered.stderr
    assert role.name in tampered.stderr and "Traceback" not in tampered.stderr
    assert lines(tampered)[-1] == "tuf loaded: True"
    assert cfl_repo(library, "publish").returncode == 1  # and it keeps failing


# ------------------------------------------------------- the fingerprint, with time injected


def _recorded(factory: LibraryFactory) -> dict[str, object]:
    doc: dict[str, object] = {"out": str(factory.out), "written": {"blobs": 3}}
    until = unchanged.served_until(factory.out)
    assert until is not None and until > factory.now
    unchanged.record(factory.repo.path, factory.out, site=False, outcome=doc, valid_until=until)
    return doc


def test_an_unchanged_library_replays_until_the_first_served_expiry(
    library: LibraryFactory,
) -> None:
    _recorded(library)
    until = unchanged.served_until(library.out)
    assert until is not None
    replayed = unchanged.replay(library.repo.path, library.out, site=False, now=library.now)
    assert replayed == {
        "out": str(library.out),
        "written": {"blobs": 0},
        "signed_new_snapshot": False,
        "unchanged": True,
    }
    just_before = until - timedelta(seconds=1)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=just_before)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=until) is None
    assert unchanged.replay(library.repo.path, library.out, site=True, now=library.now) is None


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def _one_blob(factory: LibraryFactory) -> Path:
    return next(p for p in (factory.out / "targets").rglob("*") if p.is_file())


def _commit_a_cpl(factory: LibraryFactory) -> None:
    image = make_image("3F01", 6)
    factory.import_cpl(
        [
            *factory.entries,
            make_entry("CPL-0009", mfr="3F01", fw="00000006", image_sha=mi_sha(image)),
        ]
    )


TAMPERS: dict[str, Callable[[LibraryFactory], object]] = {
    "timestamp-rewritten": lambda f: (f.out / "metadata" / "timestamp.json").write_bytes(b"{}"),
    "metadata-byte-changed": lambda f: (
        p := sorted((f.out / "metadata").glob("*.snapshot.json"))[-1]
    ).write_bytes(p.read_bytes().replace(b'"version":', b'"version": ', 1)),
    "metadata-file-added": lambda f: (f.out / "metadata" / "9.root.json").write_bytes(b"{}"),
    "metadata-file-removed": lambda f: sorted((f.out / "metadata").glob("*.root.json"))[0].unlink(),
    "blob-removed": lambda f: _one_blob(f).unlink(),
    "stray-file-at-top": lambda f: (f.out / "timestamp.json").write_bytes(b"{}"),
    "head-committed": _commit_a_cpl,
    "config-edited": lambda f: (f.repo.path / "cfl-repo.json").write_bytes(
        (f.repo.path / "cfl-repo.json").read_bytes() + b"\n"
    ),
    "events-appended": lambda f: _append(f.repo.path / "events.jsonl", b"\n"),
    # what `cfl-repo log add-cosignatures` changes, and nothing else
    "checkpoint-cosigned": lambda f: _append(
        f.repo.log_dir / "checkpoints" / str(f.repo.head.log_size), b"-- w.test/1 AAAA\n"
    ),
    "stamp-garbage": lambda f: (f.repo.path / unchanged.STAMP).write_bytes(b"\x00not json"),
    "stamp-other-version": lambda f: (f.repo.path / unchanged.STAMP).write_text(
        json.dumps({**json.loads((f.repo.path / unchanged.STAMP).read_text()), "stamp_version": 9})
    ),
    "stamp-outcome-not-a-document": lambda f: (f.repo.path / unchanged.STAMP).write_text(
        json.dumps({**json.loads((f.repo.path / unchanged.STAMP).read_text()), "outcome": [1]})
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS), ids=sorted(TAMPERS))
def test_any_change_a_publish_reads_takes_the_full_path(
    library: LibraryFactory, tamper: str
) -> None:
    _recorded(library)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=library.now)
    TAMPERS[tamper](library)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=library.now) is None


def test_a_site_page_touched_takes_the_full_path_only_with_the_site(
    library: LibraryFactory,
) -> None:
    page = library.out / "site" / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<html>")
    until = unchanged.served_until(library.out)
    unchanged.record(library.repo.path, library.out, site=True, outcome={}, valid_until=until)
    assert unchanged.replay(library.repo.path, library.out, site=True, now=library.now) == {
        "signed_new_snapshot": False,
        "written": {},
        "unchanged": True,
    }
    page.write_text("<html>defaced")
    assert unchanged.replay(library.repo.path, library.out, site=True, now=library.now) is None


def test_an_out_under_a_regular_file_is_left_to_the_full_path(
    library: LibraryFactory, tmp_path: Path
) -> None:
    _recorded(library)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert (
        unchanged.replay(library.repo.path, a_file / "public", site=True, now=library.now) is None
    )


def test_an_unreadable_served_tree_records_nothing(library: LibraryFactory) -> None:
    _recorded(library)
    (library.out / "metadata" / "timestamp.json").unlink()
    assert unchanged.served_until(library.out) is None
    unchanged.record(library.repo.path, library.out, site=False, outcome={}, valid_until=None)
    assert not (library.repo.path / unchanged.STAMP).exists()


def _rewrite_keeping_times(path: Path) -> None:
    """The same length, one byte changed, and the modification time put back: only ``ctime``
    (which nobody can set back) still shows it."""
    before = path.stat()
    data = path.read_bytes()
    at = data.index(b'"version":')
    path.write_bytes(data[:at] + b'"Version":' + data[at + 10 :])
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_served_role_rewritten_with_its_times_put_back_takes_the_full_path(
    library: LibraryFactory,
) -> None:
    _recorded(library)
    role = sorted((library.out / "metadata").glob("*.mfr-121D.json"))[-1]
    _rewrite_keeping_times(role)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=library.now) is None


def test_the_tree_fingerprint_reads_no_image_and_no_old_version(library: LibraryFactory) -> None:
    """What a nothing-new publish checks does not grow with the library: the current role
    versions, the provider's own blobs and the folders, never each image or each old version."""
    served = unchanged.served_files(library.out)
    images = [p for p in (library.out / "targets").rglob("*.ota")]
    assert images and not set(images) & set(served.blobs)
    assert {p.parent.name for p in served.blobs} == {"cfl"}
    assert {p.parent for p in images} <= set(served.folders)  # a removed image shows by its folder
    snapshot = json.loads(served.whole[1].read_bytes())["signed"]["meta"]
    assert sorted(p.name for p in served.roles) == sorted(
        f"{m['version']}.{name}" for name, m in snapshot.items()
    )
    old = {p.name for p in (library.out / "metadata").glob("[0-9]*.json")} - {
        p.name for p in (*served.roles, *served.roots, served.whole[1])
    }
    assert old  # the library has superseded versions, and they are not read
    assert served.roots[-1].name not in {p.name for p in (library.out / "metadata").iterdir()}


def test_served_until_is_the_earliest_signed_expiry_of_what_the_tree_serves(
    library: LibraryFactory,
) -> None:
    """Read from the head of each role file; a role whose expiry lies further in (a delegating
    role's keys come first, 20 manufacturers' take more than 4 kB) is read whole."""
    from tuf.api.metadata import Metadata

    served = unchanged.served_files(library.out)
    files = [*served.whole[:2], *served.roles, served.roots[-2]]
    expected = min(Metadata.from_bytes(p.read_bytes()).signed.expires for p in files)
    assert unchanged.served_until(library.out) == expected
    # The earliest expiry pushed past the first 4 kB of its file (a long signature list first).
    earliest = next(
        p for p in files if Metadata.from_bytes(p.read_bytes()).signed.expires == expected
    )
    doc = json.loads(earliest.read_bytes())
    doc["signatures"].append({"keyid": "0" * 5000, "sig": ""})
    earliest.write_text(json.dumps(doc, sort_keys=True))
    assert earliest.read_bytes().index(b'"expires"') > 4096
    assert unchanged.served_until(library.out) == expected


@pytest.mark.parametrize("expires", ["2000-13-45T99:00:00Z", "2026-01-01T00:00:00.5Z", "soon"])
def test_a_served_expiry_that_is_no_date_records_nothing(
    library: LibraryFactory, expires: str
) -> None:
    """No traceback after a publish that succeeded: the earliest expiry must be a date (only the
    earliest is read as one; a record is only ever made of a tree the full path just verified)."""
    timestamp = library.out / "metadata" / "timestamp.json"
    doc = json.loads(timestamp.read_bytes())
    doc["signed"]["expires"] = expires
    timestamp.write_text(json.dumps(doc, sort_keys=True))
    assert unchanged.served_until(library.out) is None


@pytest.mark.parametrize("where", ["metadata/timestamp.json", "log/checkpoint", "snapshot"])
def test_a_fifo_in_the_served_tree_is_never_opened_to_wait(
    library: LibraryFactory, where: str
) -> None:
    """A FIFO planted where a served file was: a blocking open would wait for a writer for ever."""
    _recorded(library)
    if where == "snapshot":
        path = unchanged.served_files(library.out).whole[1]
    else:
        path = library.out / where
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=library.now) is None
    if where != "log/checkpoint":  # the checkpoint carries no expiry
        assert unchanged.served_until(library.out) is None


def test_a_linked_configuration_still_replays(library: LibraryFactory, tmp_path: Path) -> None:
    config = library.repo.path / "cfl-repo.json"
    kept = tmp_path / "cfl-repo.json"
    kept.write_bytes(config.read_bytes())
    config.unlink()
    config.symlink_to(kept)
    _recorded(library)
    assert unchanged.replay(library.repo.path, library.out, site=False, now=library.now)
