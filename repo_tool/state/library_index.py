"""The duplicate index on disk: content-addressed documents chained by deltas, cached in memory.

The gateway's duplicate check needs every file hash, Manufacturer Image hash and CPL entry the
library holds. Rewriting all of them for each accepted deposit made ingest O(library) per deposit
(about 30 MB of JSON parsed and written per deposit at 100,000 images). Instead each accepted
deposit writes a small delta document naming its base::

    state/index/<sha>.json   {"base": <sha of the previous document>, "depth": n,
                              "added": {"file_sha256": {...}, "manufacturer_image_sha256": {...},
                                        "cpl_entries": {...}}}

and every ``MAX_DEPTH``-th write is a full document (the original format, no ``base``), so a cold
read follows at most ``MAX_DEPTH`` deltas. Documents stay immutable and named by their SHA-256, the
head names the newest, so the head's one atomic rename still commits an ingest (a crash leaves an
orphan document, never a wrong index). Within one process the index last read or written is kept,
so an inbox of 1,000 deposits reads it once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError
from repo_tool.gateway.model import LibraryIndex

MAX_DEPTH = 64
_FIELDS = ("file_sha256", "manufacturer_image_sha256", "cpl_entries")


class IndexStore:
    """Reads and writes duplicate-index documents under ``directory``; remembers the newest."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # (sha, index, depth) of the document last read or written; its dicts are owned here.
        self._cached: tuple[str, LibraryIndex, int] | None = None

    def _read(self, sha: str) -> dict[str, Any]:
        path = self.directory / f"{sha}.json"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UnavailableError(f"duplicate index {path}: unreadable ({e})") from e
        if hashlib.sha256(data).hexdigest() != sha:
            raise UnavailableError(f"duplicate index {path}: content does not match its name")
        doc: dict[str, Any] = json.loads(data)
        return doc

    def load(self, sha: str | None) -> LibraryIndex:
        """The index the document ``sha`` describes (empty for None).

        Raises:
            UnavailableError: a document in the chain is missing or corrupt.
        """
        if sha is None:
            return LibraryIndex()
        if self._cached is not None and self._cached[0] == sha:
            return self._cached[1]
        chain: list[dict[str, Any]] = []
        current: str | None = sha
        while current is not None:
            doc = self._read(current)
            if "base" not in doc:
                chain.append(doc)
                break
            chain.append(doc["added"])
            current = doc["base"]
        maps: dict[str, dict[str, str]] = {name: {} for name in _FIELDS}
        for part in reversed(chain):
            for name in _FIELDS:
                maps[name].update(part.get(name, {}))
        index = LibraryIndex(*(maps[name] for name in _FIELDS))
        self._cached = (sha, index, len(chain) - 1)
        return index

    def add(self, base_sha: str | None, added: LibraryIndex) -> str:
        """Write the index ``base_sha`` plus ``added``; returns the new document's SHA-256.

        Raises:
            UnavailableError: the base cannot be read, or the document cannot be written.
        """
        base = self.load(base_sha)
        depth = self._cached[2] if self._cached is not None and base_sha is not None else 0
        assert self._cached is None or base_sha is None or self._cached[0] == base_sha
        delta = {name: dict(getattr(added, name)) for name in _FIELDS}
        if base_sha is None or depth + 1 >= MAX_DEPTH:
            full = {name: {**getattr(base, name), **delta[name]} for name in _FIELDS}
            data = json.dumps(full, sort_keys=True).encode()
            new_depth = 0
        else:
            doc = {"base": base_sha, "depth": depth + 1, "added": delta}
            data = json.dumps(doc, sort_keys=True).encode()
            new_depth = depth + 1
        sha = hashlib.sha256(data).hexdigest()
        path = self.directory / f"{sha}.json"
        if not path.exists():
            atomic_write_bytes(path, data)
        # The dicts are this store's own (built by load): extend them in place rather than copy
        # 100,000 entries per deposit.
        for name in _FIELDS:
            target = getattr(base, name)
            assert isinstance(target, dict)
            target.update(delta[name])
        self._cached = (sha, base, new_depth)
        return sha
