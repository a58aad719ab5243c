"""A manufacturer's local index of published CPLs, so a deposit does not parse the whole CPL.

A deposit needs two or three entries of the provider's CPL (the ones it declares), but the CPL is
one signed document that grows with the library: at 10,000 entries it is 4.3 MB, and reading,
hashing and parsing it was most of `cfl-repo submit`'s cost (about 0.1 s against 0.5 ms at 100
entries). The signed targets metadata names the CPL by its SHA-256, so a CPL once verified and
parsed can be kept, keyed by that hash, and looked up by entry ID the next time the same CPL is
signed: a later deposit reads the verified metadata, finds the CPL's hash in it, and reads only
the declared entries from the index. A new CPL (a new hash) is verified and parsed whole once,
exactly as before, and indexed for the deposits after it.

One SQLite file per CPL, ``cpl-<sha256>.sqlite``, in the cache folder (``--cache-dir``, else
``$CFL_REPO_CACHE``, else ``$XDG_CACHE_HOME/cfl-repo``, else ``~/.cache/cfl-repo``). It is written
whole to a temporary file and renamed into place, so a crash leaves the old state or the new one;
anything that does not read back as an index of that very hash (a torn, foreign or garbage file,
a row that is not a CPL entry) is a miss, and the CPL is then read from the library again. The
cache never makes a deposit fail: a folder that cannot be written only means the next deposit
parses the CPL again.

Trust: the index holds what this tool derived from a CPL it verified, in the manufacturer's own
cache folder; whoever can write that folder can also replace the tool or the manufacturer's key
files, so it is trusted like them. Deleting the folder is always safe.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
from collections.abc import Collection, Mapping
from contextlib import closing, suppress
from pathlib import Path

from metadata_templates.cpl_document import CplDocument, CplEntry

__all__ = ["CACHE_ENV", "CplCache", "default_cache_dir"]

logger = logging.getLogger(__name__)

CACHE_ENV = "CFL_REPO_CACHE"
_MAGIC = "cfl-cpl-index 1"
# Indexes kept: one per CPL a deposit was made against lately (a manufacturer may deposit into a
# test library and the live one); older ones are removed when a new one is written.
_KEEP = 8
_SHA256 = re.compile(r"[0-9a-f]{64}")


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where the index lives when ``--cache-dir`` is not given: ``$CFL_REPO_CACHE``, else the XDG
    cache folder's ``cfl-repo``."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "cfl-repo"


class CplCache:
    """The folder of CPL indexes; every method is best effort (a problem is a miss, not an error)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, sha256: str) -> Path | None:
        # The hash comes from verified metadata, but a file name is built from it: accept hex only.
        return self.directory / f"cpl-{sha256}.sqlite" if _SHA256.fullmatch(sha256) else None

    def lookup(self, sha256: str, entry_ids: Collection[str]) -> CplDocument | None:
        """The CPL whose SHA-256 is ``sha256``, holding only those of ``entry_ids`` it lists, or
        None when no sound index of that CPL is here."""
        path = self._path(sha256)
        if path is None or not path.is_file():
            return None
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                head = db.execute(
                    "SELECT magic, sha256, source_sha256, imported FROM doc"
                ).fetchall()
                if len(head) != 1 or head[0][0] != _MAGIC or head[0][1] != sha256:
                    return None
                _, _, source_sha256, imported = head[0]
                found = {}
                for entry_id in dict.fromkeys(entry_ids):
                    row = db.execute("SELECT body FROM entry WHERE id = ?", (entry_id,)).fetchone()
                    if row is not None:
                        entry = CplEntry.from_dict(json.loads(row[0]))
                        if entry.id != entry_id:
                            return None
                        found[entry_id] = entry
        except (sqlite3.Error, ValueError, KeyError, TypeError, AttributeError) as e:
            logger.info("CPL index %s unusable (%s): reading the CPL again", path, e)
            return None
        return CplDocument.of(found.values(), str(source_sha256), str(imported))

    def store(self, sha256: str, document: CplDocument) -> None:
        """Index ``document``, the verified CPL whose SHA-256 is ``sha256`` (best effort). Called
        after a miss, it replaces whatever unusable file held the name."""
        path = self._path(sha256)
        if path is None:
            return
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cpl-", suffix=".tmp", dir=self.directory)
            os.close(fd)
            with closing(sqlite3.connect(tmp)) as db:
                db.execute("PRAGMA journal_mode = OFF")
                db.execute("CREATE TABLE doc (magic, sha256, source_sha256, imported)")
                db.execute("CREATE TABLE entry (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
                db.execute(
                    "INSERT INTO doc VALUES (?, ?, ?, ?)",
                    (_MAGIC, sha256, document.source_sha256, document.imported),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO entry VALUES (?, ?)",
                    ((e.id, json.dumps(e.to_dict(), sort_keys=True)) for e in document.entries),
                )
                db.commit()
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, path)
            tmp = None
            self._prune(keep=path)
        except (OSError, sqlite3.Error) as e:
            logger.info(
                "CPL index %s not written (%s): the next deposit reads the CPL again", path, e
            )
        finally:
            if tmp is not None:
                with suppress(OSError):
                    os.unlink(tmp)

    def _prune(self, keep: Path) -> None:
        """Remove all but the ``_KEEP`` most recently written indexes (never ``keep``)."""
        try:
            found = sorted(
                self.directory.glob("cpl-*.sqlite"), key=lambda p: p.stat().st_mtime, reverse=True
            )
            for old in found[_KEEP:]:
                if old != keep:
                    old.unlink(missing_ok=True)
        except OSError as e:
            logger.info("CPL indexes in %s not pruned (%s)", self.directory, e)
