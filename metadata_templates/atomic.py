"""Crash-safe file writes: a temporary file in the same directory, fsync, then ``os.replace``.

A reader therefore sees either the old file or the whole new one, never a torn write.

Group commit (issue 26): inside ``deferred_sync()`` the fsyncs of these writes are postponed and
collected, and ``DeferredSync.flush`` makes all of them durable at once (one ``syncfs`` of the file
system where the kernel offers it, else an fsync of each collected file and directory). The caller
flushes before the commit that refers to the files, so a kill -9 (which loses no page cache) or a
power cut can never leave a commit pointing at bytes that are not on disk; until that commit the
files are unreferenced, and the next run writes them again.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO


class DeferredSync:
    """The files and directories whose fsync a group commit postponed (see the module doc)."""

    def __init__(self, syncfs: Callable[[Path], bool] | None = None) -> None:
        self.files: list[Path] = []
        self.directories: set[Path] = set()
        # syncfs(2) of the file system holding a directory; False where there is none
        self._syncfs = syncfs or _syncfs

    def flush(self) -> None:
        """Make every postponed write durable; afterwards nothing is pending.

        Raises:
            OSError: a write-back failed (the caller must not commit).
        """
        files, directories = self.files, self.directories
        self.files, self.directories = [], set()
        # One syncfs per file system the writes landed on: a blob store on a disk of its own
        # (a link or a mount under R/) is synced as well as the state beside it.
        devices: dict[int, Path] = {}
        for directory in {*directories, *(path.parent for path in files)}:
            try:
                devices.setdefault(os.stat(directory).st_dev, directory)
            except FileNotFoundError:
                continue  # removed since (a replaced staging folder): nothing of it to sync
        if devices and all(self._syncfs(directory) for directory in devices.values()):
            return
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # replaced since: its successor is here
                _fsync_path(path)
        for directory in sorted(directories):
            fsync_dir(directory)


_DEFERRED: ContextVar[DeferredSync | None] = ContextVar("cfl_deferred_sync", default=None)


@contextlib.contextmanager
def deferred_sync() -> Iterator[DeferredSync]:
    """Postpone the fsyncs of this module's writes (and of ``sync_handle`` callers) in the block;
    the caller flushes them before it commits. Leaving the block does not flush."""
    pending = DeferredSync()
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)


@contextlib.contextmanager
def undeferred() -> Iterator[None]:
    """Real fsyncs in the block even inside ``deferred_sync`` (the commit itself)."""
    token = _DEFERRED.set(None)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def deferring() -> bool:
    """Whether the calling context is inside ``deferred_sync`` (see ``postpone_file``)."""
    return _DEFERRED.get() is not None


def postpone_file(path: Path) -> None:
    """Record ``path`` for the pending flush: for a writer that skipped its fsync because
    ``deferring()`` and only now knows the file's final name."""
    pending = _DEFERRED.get()
    if pending is not None:
        pending.files.append(path)


def sync_handle(handle: BinaryIO, path: Path) -> None:
    """fsync ``handle`` (written as ``path``), or postpone it inside ``deferred_sync``."""
    pending = _DEFERRED.get()
    if pending is None:
        os.fsync(handle.fileno())
    else:
        pending.files.append(path)


def _fsync_path(path: Path) -> None:
    """fsync a file or directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _libc_syncfs() -> Any:
    # The C library the interpreter runs on (CDLL(None)); None where it has no syncfs.
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    except OSError:
        return None


def _syncfs(directory: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``directory``: every dirty page and inode of it
    written back in one call (Linux). False where the C library has no syncfs.

    Raises:
        OSError: the write-back failed.
    """
    syncfs = _libc_syncfs()
    if syncfs is None:
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(directory))
    finally:
        os.close(fd)
    return True


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (postponed inside ``deferred_sync``)."""
    pending = _DEFERRED.get()
    if pending is not None:
        pending.directories.add(directory)
        return
    # Make the rename itself durable; some file systems refuse to open a directory for this.
    with contextlib.suppress(OSError):
        _fsync_path(directory)


@contextlib.contextmanager
def errors_name(path: Path) -> Iterator[None]:
    """Give an ``OSError`` raised in the block the path it concerns, when it has none.

    ``write``, ``flush`` and ``fsync`` failures (a full disk, an I/O error) carry no file name, so
    the one error line a command prints would not say where; every writer of ours names it here.
    """
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with errors_name(path), os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            sync_handle(handle, path)  # the file after the rename below: the name it will have
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes | memoryview, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, mode=mode) as handle:
        handle.write(data)
