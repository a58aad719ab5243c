"""Hostile review of the flat publish's caches (issue 26): the stamps of the published files
(repo_tool/verify/stamps.py, stamped_cpl.py) and the memo's header index (memo_index.py), attacked
by someone with a hex editor on the published tree. Whatever they do, a tree that does not hold
the signed bytes must keep failing the website step of `publish`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_publish_flat import (  # the flat publish's library and helpers
    _cpl_file,
    _flip_in_place,
    _role_file,
    built,  # noqa: F401 (a fixture)
    lodge,
    memo_of,
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
