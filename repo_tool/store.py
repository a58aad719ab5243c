"""The blob store: every image and provider document, named by its SHA-256, written once.

Blobs are never overwritten or deleted. Writing a blob that exists is a no-op after checking that
the bytes on disk still hash to their name, so a corrupted store is noticed rather than published.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError


class BlobStore:
    """Content-addressed files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

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
        if target.exists():
            self.verify(digest)
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
