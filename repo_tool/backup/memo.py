"""The backup memo ``R/cache/backup-memo.json``: what earlier backups learned about R's own files,
so a nightly run need not read gigabytes it hashed before.

It records, for each immutable file, its size, modification time and inode with the SHA-256 it
had, and for each target the parts of the event log already stored there. It is derived data
about R, never about a target's contents (a target's objects are checked by listing, and every
byte by `restore`), so a backup target the provider does not control cannot poison a later
manifest through it. Deleting it is always safe: the next backup hashes everything again. A memo
that does not parse is ignored the same way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_write_bytes
from repo_tool.backup.manifest import FileEntry, Part

logger = logging.getLogger(__name__)

MEMO_PATH = Path("cache") / "backup-memo.json"


@dataclass(frozen=True)
class Stamp:
    """What identifies one version of a local file without reading it."""

    size: int
    mtime_ns: int
    inode: int


@dataclass
class BackupMemo:
    """File stamps -> SHA-256, and per target the event log's stored parts."""

    files: dict[str, tuple[Stamp, str]] = field(default_factory=dict)
    event_logs: dict[str, FileEntry] = field(default_factory=dict)

    def known(self, relative: str, stamp: Stamp) -> str | None:
        """The SHA-256 of ``relative`` when it still has ``stamp``, else None."""
        found = self.files.get(relative)
        return found[1] if found is not None and found[0] == stamp else None

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "files": {
                path: [stamp.size, stamp.mtime_ns, stamp.inode, sha]
                for path, (stamp, sha) in sorted(self.files.items())
            },
            "event_logs": {url: entry.to_dict() for url, entry in sorted(self.event_logs.items())},
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, repo: Path) -> BackupMemo:
        """The memo of ``repo``; an empty one when there is none or it does not parse."""
        path = repo / MEMO_PATH
        try:
            doc = json.loads(path.read_bytes())
            return cls._from(doc)
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            logger.warning("%s: ignored (%s); hashing every file again", path, e)
            return cls()

    @classmethod
    def _from(cls, doc: Any) -> BackupMemo:
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {doc.get('schema_version')!r}")
        files: dict[str, tuple[Stamp, str]] = {}
        for path, (size, mtime, inode, sha) in doc["files"].items():
            files[str(path)] = (Stamp(int(size), int(mtime), int(inode)), str(sha))
        logs: dict[str, FileEntry] = {}
        for url, entry in doc["event_logs"].items():
            parts = tuple(Part(str(p["sha256"]), int(p["size"])) for p in entry["parts"])
            logs[str(url)] = FileEntry(
                str(entry["sha256"]), int(entry["size"]), int(str(entry["mode"]), 8), parts
            )
        return cls(files, logs)

    def save(self, repo: Path) -> None:
        """Write the memo; a failure only costs the next run some hashing."""
        try:
            atomic_write_bytes(repo / MEMO_PATH, self.to_bytes())
        except OSError as e:
            logger.warning("%s: not written (%s)", repo / MEMO_PATH, e.strerror)
