"""Hostile review of the flat publish's caches (issue 26): the stamps of the published files
(repo_tool/verify/stamps.py, stamped_cpl.py) and the memo's header index (memo_index.py), attacked
by someone with a hex editor on the published tree. Whatever they do, a tree that does not hold
the signed bytes must keep failing the website step of `publish`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from test_publish_flat import (  # the flat publish's library and helpers
    CFL_REPO,
    HeaderReads,
    _cpl_file,
    _flip_in_place,
    _role_file,
    assert_full_build_bytes,
    built,  # noqa: F401 (a fixture)
    lodge,
    memo_of,
    publish_with_site,
)

from factory import LibraryFactory
from metadata_templates.errors import VerificationError
from repo_tool.publish.site_step import (
    TreeState,
    build_published_site,
    publish_hint,
    tree_state,
    verified_for_site,
)
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.stamps import STAMPS_NAME, FileStamps


def _same_length_edit(path: Path, marker: bytes) -> bytes:
    """One byte after the last ``marker`` changed in place (same inode, same length); returns
    the genuine bytes."""
    genuine = path.read_bytes()
    at = genuine.rindex(marker) + len(marker)
    with path.open("r+b") as f:
        f.seek(at)
        f.write(b"1" if genuine[at : at + 1] != b"1" else b"2")
    assert path.read_bytes() != genuine and path.stat().st_size == len(genuine)
    return genuine


def _swapping_reader(out: Path, relative: str, genuine: bytes) -> Callable[[str], bytes]:
    """The tree's reader, with an attacker who, while ``relative`` is read, puts a folder holding
    its genuine bytes in place of its folder and puts the folder back afterwards: the tampered
    file itself is not touched (its times stay those the walk stat'ed before reading)."""
    inner = folder_reader(out)
    folder = (out / relative).parent
    aside = folder.with_name(folder.name + ".aside")

    def read(path: str) -> bytes:
        if path != relative:
            return inner(path)
        folder.rename(aside)
        folder.mkdir()
        (out / relative).write_bytes(genuine)
        try:
            return inner(path)
        finally:
            shutil.rmtree(folder)
            aside.rename(folder)

    return read


def _walk_with_stamps(factory: LibraryFactory, read: Callable[[str], bytes]) -> None:
    """The website step's flat walk (with the repository's memo and stamps) over ``read``."""
    memo = memo_of(factory)
    stamps = FileStamps(factory.out.resolve(), memo.directory.parent / STAMPS_NAME)
    stamps.load()
    verified_for_site(
        read, factory.root_bytes, now=factory.now, memo=memo, lazy=True, stamps=stamps
    )


def _site_step(factory: LibraryFactory, before: TreeState | None) -> None:
    build_published_site(
        factory.out,
        factory.root_bytes,
        now=factory.now,
        hint=publish_hint(factory.repo, before),
        memo=memo_of(factory),
    )


def test_a_role_file_swapped_only_while_it_is_read_is_not_stamped(built: LibraryFactory) -> None:  # noqa: F811
    """The stamp must vouch for the bytes that were hashed: a file stat'ed before and after the
    read, but not the file read, is not stamped, and the next walk reads it again."""
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    role = _role_file(built, "mfr-3F01")
    genuine = role.read_bytes()
    _flip_in_place(role)
    relative = f"metadata/{role.name}"

    _walk_with_stamps(built, _swapping_reader(built.out, relative, genuine))  # read the genuine

    with pytest.raises(VerificationError, match=f"{relative}: does not match the length/hash"):
        _site_step(built, before)


def test_a_cpl_swapped_only_while_it_is_read_is_not_stamped(built: LibraryFactory) -> None:  # noqa: F811
    """The same race on the CPL: its import time edited in the tail the stamp lets the walk read."""
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    cpl = _cpl_file(built)
    relative = f"targets/cfl/{cpl.name}"
    genuine = _same_length_edit(cpl, b'"imported":"')
    (built.repo.path / "cache" / STAMPS_NAME).unlink()  # stamped afresh by the raced walk

    _walk_with_stamps(built, _swapping_reader(built.out, relative, genuine))

    with pytest.raises(VerificationError, match=f"{relative}: found {len(genuine)} bytes hashing"):
        _site_step(built, before)


def test_a_role_file_edited_with_its_times_put_back_is_read_again(built: LibraryFactory) -> None:  # noqa: F811
    """`touch -r`: the size and modification time of the stamp restored after an edit in place;
    the change time still moves (user space cannot set it), so the stamp does not hold."""
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    role = _role_file(built, "mfr-3F01")
    times = role.stat()
    _flip_in_place(role)
    os.utime(role, ns=(times.st_atime_ns, times.st_mtime_ns))

    with pytest.raises(VerificationError, match=f"{role.name}: does not match the length/hash"):
        _site_step(built, before)


def test_forged_stamps_are_the_trust_boundary_and_verify_reads_every_file(
    built: LibraryFactory,  # noqa: F811
) -> None:
    """The stamps are as trusted as the memo (R/cache): someone who can write there and edit the
    tree can stamp a tampered role file as the pinned one, and the website step then takes it
    for unchanged (documented, repo_tool/verify/stamps.py). The auditor's check reads and hashes
    every file, whatever R/cache says."""
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    role = _role_file(built, "mfr-3F01")
    _flip_in_place(role)
    record = built.repo.path / "cache" / STAMPS_NAME
    doc = json.loads(record.read_bytes())
    relative = f"metadata/{role.name}"
    st = role.stat()
    doc["files"][relative][1] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    record.write_text(json.dumps(doc))

    _site_step(built, before)  # trusted, as documented

    root = built.tmp / "1.root.json"
    root.write_bytes(built.root_bytes)
    audit = subprocess.run(
        [str(CFL_REPO), "verify", str(built.out), "--root", str(root)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert audit.returncode == 1, audit.stderr
    assert f"{relative}: does not match the length/hash snapshot records" in audit.stderr
    assert "Traceback" not in audit.stderr


def _entry_of(factory: LibraryFactory, role: str) -> Path:
    return next(
        path
        for path in sorted(memo_of(factory).directory.glob("*.json"))
        if json.loads(path.read_bytes().split(b"\n", 1)[0])["role"] == role
    )


def test_an_entry_edited_with_its_size_and_times_put_back_is_not_vouched_for_by_the_index(
    built: LibraryFactory,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mfr-3F01's entry told one image more, the same length, written in place, its modification
    time put back: the index's stamp of the file no longer holds (the change time moved), so the
    lying header is read, the site's count check refuses the hint, and the step walks in full."""
    path = _entry_of(built, "mfr-3F01")
    data = path.read_bytes()
    at = data.index(b'"images":') + len(b'"images":')
    count = data[at : at + 1]
    assert count.isdigit() and data[at + 1 : at + 2] == b","  # one digit: the length is kept
    times = path.stat()
    with path.open("r+b") as f:
        f.seek(at)
        f.write(str((int(count) + 1) % 10).encode())
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert path.stat().st_size == times.st_size
    reads = HeaderReads(monkeypatch)
    lodge(built, 8)

    site = publish_with_site(built)

    assert "mfr-3F01" in reads.roles
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_two_entry_files_swapped_are_misses(
    built: LibraryFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two entries' files exchanged (each is then under the other's key): the index vouches for
    neither file, their headers name other keys, and both roles are verified in full."""
    first, second = _entry_of(built, "mfr-3F01"), _entry_of(built, "mfr-121D")
    aside = first.with_name("aside")
    first.rename(aside)
    second.rename(first)
    aside.rename(second)
    lodge(built, 8)

    site = publish_with_site(built)

    assert site.memo is not None and site.memo.verified >= 3  # both, and the changed bin
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def _fails_without_hanging(step: Callable[[], object], fifo: Path) -> BaseException:
    """What ``step`` raises, run in a thread; a step blocked on opening ``fifo`` (a FIFO open for
    reading waits for a writer) is let go by opening it for writing, and is a failure."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            step()
            outcome.append(None)
        except BaseException as e:  # handed to the test
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader is waiting: let it go
        thread.join(20)
        pytest.fail(f"the step hung opening the FIFO {fifo.name}")
    (raised,) = outcome
    assert raised is not None, "the step passed"
    return raised


@pytest.mark.parametrize("which", ["cpl", "role"])
def test_a_stamped_file_swapped_for_a_fifo_fails_the_publish_instead_of_hanging_it(
    built: LibraryFactory,  # noqa: F811
    which: str,
) -> None:
    """A FIFO in place of the stamped CPL (or a role file): opening it for reading would wait for
    a writer forever, so a publish (and `cfl-repo verify`) hung. The tree reader and the stamps
    open with O_NONBLOCK and take only plain files."""
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    path = _cpl_file(built) if which == "cpl" else _role_file(built, "mfr-3F01")
    path.unlink()
    os.mkfifo(path)

    raised = _fails_without_hanging(lambda: _site_step(built, before), path)

    assert isinstance(raised, VerificationError), raised
    assert f"{path.name}: found a FIFO, expected a plain file" in str(raised)
