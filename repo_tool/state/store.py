"""The blob store: every image and provider document, named by its SHA-256, written once.

Blobs are never overwritten or deleted. Writing a blob that exists is a no-op after checking that
the bytes on disk still hash to their name; one that does not (a write a power cut tore before its
group commit) is written again from the writer's bytes, which do, and logged. Reading a corrupt blob
fails, so a corrupted store is noticed rather than published (`verify`, `backup`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

from metadata_templates.atomic import (
    atomic_write_bytes,
    deferring,
    errors_name,
    fsync_dir,
    postpone_file,
)
from metadata_templates.errors import UnavailableError

logger = logging.getLogger(__name__)


class BlobStore:
    """Content-addressed files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._swept = False  # stale staging files of a crashed run removed (see `stage`)

    def path(self, sha256: str) -> Path:
        # Two-level fan-out keeps directories small in a library that grows for decades.
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes | memoryview, sha256: str | None = None) -> str:
        """Store ``data``; return its SHA-256. ``sha256`` may be passed when already computed.

        Raises:
            UnavailableError: the blob on disk is corrupt, or the disk write failed.
        """
        digest = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists() and self._intact(digest):
            return digest
        try:
            atomic_write_bytes(target, data, mode=0o444)
        except OSError as e:
            raise UnavailableError(
                f"blob store {self.root}: cannot write {digest[:12]} ({e.strerror})"
            ) from e
        return digest

    def get(self, sha256: str) -> bytes:
        """Read a blob and check its hash.

        Raises:
            UnavailableError: missing or corrupt.
        """
        try:
            data = self.path(sha256).read_bytes()
        except OSError as e:
            raise UnavailableError(f"blob store: blob {sha256} missing ({e.strerror})") from e
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise UnavailableError(
                f"blob store: blob {sha256}: found content hashing to {actual}, expected {sha256}"
            )
        return data

    def _intact(self, sha256: str) -> bool:
        """Whether the stored blob still hashes to its name. A writer holding the right bytes
        replaces one that does not: only a write cut short by a power loss before its group
        commit (metadata_templates/atomic.py) leaves one, and no commit refers to it yet."""
        try:
            self.verify(sha256)
        except UnavailableError as e:
            logger.warning("%s; writing it again from bytes that hash to its name", e)
            return False
        return True

    def verify(self, sha256: str) -> None:
        """Check one stored blob still matches its name.

        Raises:
            UnavailableError: missing or corrupt.
        """
        digest = hashlib.sha256()
        try:
            with self.path(sha256).open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as e:
            raise UnavailableError(f"blob store: blob {sha256} unreadable ({e.strerror})") from e
        if digest.hexdigest() != sha256:
            raise UnavailableError(
                f"blob store: blob {sha256}: found content hashing to {digest.hexdigest()}, expected {sha256}"
            )

    def stage(self, data: bytes | memoryview) -> StagedBlob:
        """Start writing ``data`` to a temporary file in the store, in a background thread.

        The gateway hashes the same bytes meanwhile (hashlib and file writes both release the GIL),
        so a durable ingest costs about one pass instead of hash-then-write. Nothing is visible under
        a blob name until ``commit``; ``discard`` leaves the store as it was. Callers hold the
        repository lock, so any staging file found here is from a crashed run and is removed.
        """
        if not self._swept:  # once per store object: an inbox's deposits need not list it each
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(f"{_STAGING_PREFIX}*"):
                stale.unlink(missing_ok=True)
            self._swept = True
        return StagedBlob(self, data)


_STAGING_PREFIX = ".staging-"


class StagedBlob:
    """A blob being written while it is checked; see `BlobStore.stage`."""

    def __init__(self, store: BlobStore, data: bytes | memoryview) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(prefix=_STAGING_PREFIX, dir=store.root)
        self._path = Path(name)
        self._error: OSError | None = None
        self._deferred = deferring()  # read here: the writer thread does not share our context
        self._thread = threading.Thread(target=self._write, args=(fd, data), daemon=True)
        self._thread.start()

    def _write(self, fd: int, data: bytes | memoryview) -> None:
        try:
            with errors_name(self._path), os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if not self._deferred:  # a group commit syncs it under its blob name (commit)
                    os.fsync(handle.fileno())
        except OSError as e:
            self._error = e

    def commit(self, sha256: str) -> None:
        """Wait for the write and move the file under its blob name (a no-op if that blob exists).

        ``sha256`` must have been computed over the same in-memory bytes that were written.

        Raises:
            UnavailableError: the write failed.
        """
        self._thread.join()
        if self._error is not None:
            self._path.unlink(missing_ok=True)
            raise UnavailableError(
                f"blob store {self._store.root}: cannot write {sha256[:12]} "
                f"({self._error.strerror or self._error})"
            ) from self._error
        final = self._store.path(sha256)
        if final.exists() and self._store._intact(sha256):
            self._path.unlink(missing_ok=True)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._path, 0o444)
        os.replace(self._path, final)
        postpone_file(final)  # inside a group commit: synced with the batch, before its commit
        fsync_dir(final.parent)

    def discard(self) -> None:
        """Wait for the write and remove the temporary file."""
        self._thread.join()
        with contextlib.suppress(OSError):
            self._path.unlink()
