"""File stamps: which role files of a published tree hashed right last time, and are untouched since.

The flat walk of the website step (repo_tool/verify/lazy.py) still has to know that every role
file holds the bytes the verified snapshot pins (length and SHA-256). At 100,000 images in hash
bins that is about 2,600 files and 100 MB to read and hash on every publish, although one or two
changed. A stamp records, for a file whose bytes were read and matched the pin, what the file
system says about it: device, inode, size, modification and change time (nanoseconds). A later
walk that finds the same pin and the same stamp does not read the file again; anything else
(a new version, a rewrite, a same-length edit in place, a copy, a ``touch``) reads and hashes it.
The stamped file is hashed through one open descriptor, its ``fstat`` taken around the read, so
the stamp vouches for the very file hashed (not the one a path named while another was read).
A file modified within ``RACY_NS`` of being stamped is not stamped (file times tick coarsely), so
the files a publish writes are stamped by the next one.

What it relies on: writing a file changes its ``ctime``, and user space cannot set ``ctime`` back
(``touch -d`` and ``utime`` set only access and modification times). Defeating a stamp takes root
on the serving machine (changing the clock or editing the file system), which can also rewrite
the repository directory ``R`` the stamps live in (``R/cache/verify-stamps.json``, with the
memo; as trusted as the memo, see repo_tool/verify/memo.py). The auditor's checks
(`cfl-repo verify`, `cfl log verify`) and every full walk read and hash every file.

The record is best effort: missing, unreadable or malformed means no stamps (every file is read),
and a record that cannot be written is logged and skipped. ``save`` keeps only the files this walk
stamped, so it holds one entry per role file of the current tree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat as stat_mode
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from metadata_templates.atomic import atomic_write_bytes

__all__ = ["STAMPS_NAME", "FileStamps", "RoleStamps", "Stat", "file_stat"]

logger = logging.getLogger(__name__)

STAMPS_NAME = "verify-stamps.json"  # under R/cache
_MAGIC = "cfl-verify-stamps"
_FORMAT = 1

Stat = tuple[int, int, int, int, int]

# A file modified less than this before it is stamped is not stamped yet: file times tick
# coarsely (a few milliseconds), so an edit in the same tick as the stamp's read could leave the
# stamp as it was (git's "racy clean" case). It is stamped by a later walk.
RACY_NS = 1_000_000_000


class RoleStamps(Protocol):
    """What the flat walk asks of stamps: ``FileStamps`` for a folder, ``BucketStamps`` for a
    bucket (repo_tool/publish/s3_stamps.py)."""

    skipped: int

    def stat(self, relative: str) -> Stat | None:
        """What is known of ``relative`` just before it is read (passed back to ``stamp``)."""
        ...

    def unchanged(self, relative: str, sha256: str) -> bool:
        """Whether ``relative`` matched ``sha256`` when stamped and is untouched since."""
        ...

    def tail_if_unchanged(self, relative: str, sha256: str, octets: int) -> bytes | None:
        """The last ``octets`` bytes of a file stamped unchanged, else None (read it whole)."""
        ...

    def stamp(self, relative: str, sha256: str, before: Stat | None) -> None:
        """Record that ``relative`` was just read and matched ``sha256``."""
        ...

    def save(self) -> None:
        """Keep this walk's stamps (after a clean walk only)."""
        ...


def _now_ns() -> int:
    return time.time_ns()


def file_stat(path: str) -> Stat | None:
    """What ``lstat`` says of a plain file at ``path`` (device, inode, size, modification and
    change time in ns); None: missing, or not a plain file (a link is never followed)."""
    # One lstat on a string path: a flat walk stats every role file (2,600 at 100,000 images),
    # and pathlib's joins and the two extra calls of isfile/islink cost four times the lstat.
    try:
        st = os.lstat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    if not stat_mode.S_ISREG(st.st_mode):  # lstat: a symlink is S_IFLNK, never a regular file
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fd_stat(fd: int) -> Stat:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class FileStamps:
    """The stamps of one published tree (``tree``), kept in ``record``."""

    tree: Path
    record: Path
    _old: dict[str, tuple[str, Stat]] = field(default_factory=dict, init=False, repr=False)
    _new: dict[str, tuple[str, Stat]] = field(default_factory=dict, init=False, repr=False)
    skipped: int = 0  # files not read again

    def load(self) -> None:
        """Read the stamps ``record`` keeps for ``tree`` (none when missing or damaged)."""
        try:
            doc = json.loads(self.record.read_bytes())
            if doc["magic"] != _MAGIC or doc["format"] != _FORMAT or doc["tree"] != str(self.tree):
                return
            for relative, (sha256, stat) in doc["files"].items():
                if type(sha256) is str and len(stat) == 5 and all(type(v) is int for v in stat):
                    self._old[relative] = (sha256, (stat[0], stat[1], stat[2], stat[3], stat[4]))
        except Exception as e:  # no record, or a damaged one: nothing is stamped
            logger.debug("verify stamps: unusable (%s)", e)
            self._old.clear()

    def stat(self, relative: str) -> Stat | None:
        """What the file system says about ``relative`` now (None: missing, or not a plain file)."""
        return file_stat(f"{self.tree}{os.sep}{relative}")

    def unchanged(self, relative: str, sha256: str) -> bool:
        """Whether ``relative`` matched ``sha256`` when stamped and is untouched since."""
        old = self._old.get(relative)
        if old is None or old[0] != sha256:
            return False
        now = self.stat(relative)
        if now is None or now != old[1]:
            return False
        self._new[relative] = old
        self.skipped += 1
        return True

    def tail_if_unchanged(self, relative: str, sha256: str, octets: int) -> bytes | None:
        """The last ``octets`` bytes of ``relative`` when it is stamped matching ``sha256`` and
        untouched since; None otherwise (read it whole). The stamp is compared with the open
        file's own ``fstat``, so a file swapped after a check is not the file read."""
        old = self._old.get(relative)
        if old is None or old[0] != sha256:
            return None
        fd = self._open_plain(relative)
        if fd is None:
            return None
        try:
            now = _fd_stat(fd)
            if now != old[1]:
                return None
            tail = os.pread(fd, octets, max(0, now[2] - octets))
        except OSError:
            return None
        finally:
            os.close(fd)
        self._new[relative] = old
        self.skipped += 1
        return tail

    def stamp(self, relative: str, sha256: str, before: Stat | None) -> None:
        """Stamp ``relative``, just read and found to match ``sha256``, stat'ed as ``before``
        just before the read: only when the file stat'ed is itself the file of ``sha256``.

        The bytes the caller hashed came through a path, and a path can name another file while
        it is read (a folder swapped and put back: the file stat'ed keeps its times), so the
        stamped file is hashed again through one open descriptor, ``fstat``'ed around the read.
        That costs one more read of each file once per version (a stamp then spares every
        later one)."""
        if before is None or max(before[3], before[4]) >= _now_ns() - RACY_NS:
            return  # too recent to stamp safely: read again next time
        if self._sha256_of(relative, before) == sha256:
            self._new[relative] = (sha256, before)

    def _sha256_of(self, relative: str, expected: Stat) -> str | None:
        """The SHA-256 of the file at ``relative`` when the open file is the one stat'ed as
        ``expected`` before and after reading it; None otherwise."""
        fd = self._open_plain(relative)
        if fd is None:
            return None
        try:
            if _fd_stat(fd) != expected:
                return None
            digest = hashlib.sha256()
            with os.fdopen(os.dup(fd), "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            return digest.hexdigest() if _fd_stat(fd) == expected else None
        except OSError:
            return None
        finally:
            os.close(fd)

    def _open_plain(self, relative: str) -> int | None:
        """A descriptor of the plain file ``relative``, opened without following a link or
        waiting on a FIFO; None when it is absent or anything but a plain file."""
        try:
            fd = os.open(
                f"{self.tree}{os.sep}{relative}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            )
        except (OSError, ValueError):
            return None
        try:
            if stat_mode.S_ISREG(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def save(self) -> None:
        """Keep the stamps of this walk (call only after a clean walk)."""
        doc = {
            "magic": _MAGIC,
            "format": _FORMAT,
            "tree": str(self.tree),
            "files": {k: [sha, list(stat)] for k, (sha, stat) in sorted(self._new.items())},
        }
        try:
            atomic_write_bytes(self.record, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as e:
            logger.warning("verify stamps: cannot write %s (%s)", self.record, e)
