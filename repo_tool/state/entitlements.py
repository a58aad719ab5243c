"""Where the entitlement history lives: ``R/state/entitlements/``, content-addressed, owner-only.

Each import writes its record and the new history document (repo_tool/entitle/record.py) here,
then commits a head naming the history (``Head.entitlements_sha256``) and an ``events.jsonl``
record: the commit is the one atomic step, so a killed import leaves the previous history in
force and, at worst, an orphan file no head names. Files are named by the SHA-256 of their bytes
and checked against it when read, so a stored record cannot change unnoticed.

The directory is outside the blob store on purpose: nothing here is ever published, and files are
written readable by the owner only (the records derive from a confidential inventory).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError
from repo_tool.entitle.record import EntitlementHistory, EntitlementRecord, RecordError

if TYPE_CHECKING:
    from repo_tool.state.head import Head

ENTITLEMENTS_DIR = "entitlements"
_MODE = 0o600


class EntitlementStore:
    """The records and history documents under ``state_dir/entitlements``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / ENTITLEMENTS_DIR

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.json"

    def put(self, data: bytes) -> str:
        """Store ``data`` (a record or a history document); return its SHA-256.

        Raises:
            UnavailableError: the write failed.
        """
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if path.exists() and self._read(digest) == data:
            return digest
        try:
            atomic_write_bytes(path, data, mode=_MODE)
        except OSError as e:
            raise UnavailableError(f"{path}: cannot write ({e.strerror})") from e
        return digest

    def _read(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UnavailableError(f"{path}: missing or unreadable ({e.strerror})") from e
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise UnavailableError(
                f"{path}: found content hashing to {actual}, expected {sha256}",
            )
        return data

    def record(self, sha256: str) -> EntitlementRecord:
        """One record, hash-checked and parsed.

        Raises:
            UnavailableError: missing, corrupt or unreadable.
        """
        try:
            return EntitlementRecord.from_bytes(self._read(sha256))
        except RecordError as e:
            raise UnavailableError(f"{self.path(sha256)}: {e}") from e

    def history(self, head: Head) -> EntitlementHistory:
        """The history ``head`` names (empty before the first import).

        Raises:
            UnavailableError: missing, corrupt or unreadable.
        """
        sha = head.entitlements_sha256
        if not sha:
            return EntitlementHistory()
        try:
            return EntitlementHistory.from_bytes(self._read(sha))
        except RecordError as e:
            raise UnavailableError(f"{self.path(sha)}: {e}") from e
