"""The verified-role memo's header index: every entry's summary in one file (issue 26).

A flat walk (repo_tool/verify/lazy.py) needs, of each unchanged role, only the summary in its
memo entry's header line; at 100,000 images in hash bins that was 2,600 files opened and read
on every publish, a sixth of the website step. After each clean walk the memo writes the
summaries of the entries it kept into ``R/cache/verify-memo-headers.index``, beside its folder,
with what the file system said about each entry file then (device, inode, size, modification and change
time). A later walk takes an entry's summary from the index only while its file's ``lstat``
still says exactly that, so an entry rewritten, edited, replaced or deleted since is read from
its own header again (or is a miss): deleting the memo folder still makes every role verified
again, whatever the index says.

Trust: the index is derived from the memo, lives beside it and is as trusted as it
(repo_tool/verify/memo.py). A missing, torn or malformed index is no index: every header is read
from its file, as before; one that cannot be written is logged and skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from metadata_templates.atomic import atomic_write_bytes
from repo_tool.verify.stamps import Stat, file_stat

__all__ = ["INDEX_NAME", "HeaderIndex"]

logger = logging.getLogger(__name__)

INDEX_NAME = "verify-memo-headers.index"  # beside the memo folder, under R/cache
ENTRY_SUFFIX = ".json"  # an entry is <key>.json (repo_tool/verify/memo.py)
_MAGIC = "cfl-verify-memo-headers"
_FORMAT = 2  # 2: the stamps are stamps.file_stat's (with the device)


class HeaderIndex:
    """The index of one memo folder: read once, consulted per role, written after a clean walk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory  # the memo folder
        # key -> role, the summary as JSON text (decoded afresh for each use: python-tuf's
        # ``Delegations.from_dict`` empties the dicts it is given), the entry file's stamp
        self._entries: dict[str, tuple[str, str, Stat]] = {}
        self._load()

    def _load(self) -> None:
        try:
            doc = orjson.loads((self.directory.parent / INDEX_NAME).read_bytes())
            if doc["magic"] != _MAGIC or doc["format"] != _FORMAT:
                return
            for key, (role, summary, stamp) in doc["entries"].items():
                if (
                    type(role) is str
                    and type(summary) is str
                    and len(stamp) == 5
                    and all(type(v) is int for v in stamp)
                ):
                    self._entries[key] = (
                        role,
                        summary,
                        (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4]),
                    )
        except Exception as e:  # no index, or a damaged one: every header is read from its file
            logger.debug("verify memo index: unusable (%s)", e)
            self._entries.clear()

    def summary(self, key: str, role: str, entry_path: str) -> tuple[dict[str, Any], str] | None:
        """The summary indexed for ``key`` (role ``role``), decoded and as its JSON text, while
        its entry file at ``entry_path`` is the very file indexed; None: read its header."""
        known = self._entries.get(key)
        if known is None or known[0] != role or file_stat(entry_path) != known[2]:
            return None
        try:
            summary = orjson.loads(known[1])
        except orjson.JSONDecodeError:
            return None
        return (summary, known[1]) if type(summary) is dict else None

    @staticmethod
    def save_in(directory: Path, summaries: dict[str, tuple[str, str]]) -> None:
        """Index ``summaries`` (key -> role, summary as JSON text) of the entries kept after a
        clean walk, each with its entry file's stamp now (an entry whose file is gone is left
        out)."""
        entries: dict[str, list[Any]] = {}
        for key, (role, summary) in summaries.items():
            stamp = file_stat(f"{directory}{os.sep}{key}{ENTRY_SUFFIX}")
            if stamp is not None:
                entries[key] = [role, summary, list(stamp)]
        doc = {"magic": _MAGIC, "format": _FORMAT, "entries": entries}
        try:
            atomic_write_bytes(directory.parent / INDEX_NAME, orjson.dumps(doc), mode=0o600)
        except (OSError, TypeError) as e:  # TypeError: orjson refuses a value (never expected)
            logger.warning("verify memo index: cannot write (%s); headers are read next time", e)
