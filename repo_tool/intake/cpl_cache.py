"""The few CPL entries a deposit declares, found in the signed CPL's bytes without parsing the rest.

A deposit needs two or three entries of the provider's CPL (the ones it declares), but the CPL is
one signed document that grows with the library: at 10,000 entries it is 4.3 MB, and parsing it
was most of `cfl-repo submit`'s and `cfl-repo ingest`'s cost (about 0.09 s against 0.5 ms at 100
entries). ``select_entries`` finds the declared entries by searching the bytes instead, and parses
only them; every entry it returns is parsed from bytes whose SHA-256 the caller has checked against
the signed metadata, so nothing outside those bytes can change a deposit's answer.

Where the bytes come from: the gateway reads the imported CPL from its own blob store (which checks
the hash), so the repository keeps no index at all. `cfl-repo submit` would download the CPL for
every deposit, so ``CplCache`` keeps a copy of each CPL it verified and parsed whole, named by its
SHA-256, in the cache folder (``--cache-dir``, else ``$CFL_REPO_CACHE``, else
``$XDG_CACHE_HOME/cfl-repo``, else ``~/.cache/cfl-repo``), and hashes it again on every use. A
copy whose hash is not its name (torn, edited, another CPL's, garbage) is a miss, and the CPL is
then read from the library again; a folder that cannot be written only means the next deposit
downloads the CPL again. Deleting the folder is always safe, and whoever can write to it can make
a deposit slower, never different.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.errors import CflError

__all__ = [
    "CACHE_ENV",
    "CplCache",
    "cpl_of_tail",
    "cpl_without_entries",
    "default_cache_dir",
    "select_entries",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "CFL_REPO_CACHE"
# CPLs kept: one per CPL a deposit was made against lately (a manufacturer may deposit into a test
# library and the live one); older ones are removed when a new one is written.
_KEEP = 8
# A kept copy larger than this is not read (a planted huge file must not exhaust memory); at
# about 430 bytes an entry it is some 600,000 entries.
_MAX_BYTES = 256 * 1024 * 1024
# Each declared ID is one search of the whole CPL; past this many one parse is cheaper.
_MAX_SEARCHED = 64
# How many ``{"`` before an entry's ID may be tried as its start (see ``_entry_around``).
_MAX_CANDIDATES = 32
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEPT = re.compile(r"cpl-[0-9a-f]{64}\.json")
_TEMPORARY = re.compile(r"\.cpl-[0-9a-f]{64}\.json\..+\.tmp")  # metadata_templates/atomic.py
_HEAD = '{"entries":['
_TAIL = '],"imported":'
_DECODER = json.JSONDecoder()


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where the cache lives when ``--cache-dir`` is not given: ``$CFL_REPO_CACHE``, else the XDG
    cache folder's ``cfl-repo``."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "cfl-repo"


def cpl_without_entries(sha256: str, fetch: Callable[[], bytes | None]) -> CplDocument | None:
    """A ``verify.CplLoader`` for the website step: the CPL's blob is read and hash-checked as
    always, but none of its entries is parsed (the site shows none of them; at 100,000 entries a
    whole parse is about a second of every publish). The library's ``cpl`` then holds no entries.
    A CPL not laid out as ``CplDocument.to_bytes`` lays it out is parsed whole, so a malformed
    one is reported exactly as without this loader."""
    data = fetch()
    if data is None:
        return None
    return select_entries(data, ()) or CplDocument.from_bytes(data)


def select_entries(data: bytes, entry_ids: Collection[str]) -> CplDocument | None:
    """The CPL ``data`` (a whole, hash-checked ``CplDocument.to_bytes``) holding only those of
    ``entry_ids`` it lists, found by searching rather than parsing the whole. Pure.

    Sound for any bytes, because in JSON a raw double quote never occurs inside a string: the text
    ``"id":"X"`` occurs only where an object has the key ``id`` with the value ``X``, and ``{"``
    only where an object begins or a string ends in ``{``. An entry holds no object, so the last
    ``{"`` before its ``id`` that parses begins it; the entry must carry that ID, and of duplicate
    IDs the last is taken, as ``CplDocument.by_id`` takes it.

    Returns:
        None whenever searching cannot answer exactly as a whole parse would: an ID not found (the
        caller's whole parse then gives the same refusal), more IDs than searching is worth, or
        bytes not laid out as ``CplDocument.to_bytes`` lays them out.
    """
    wanted = list(dict.fromkeys(entry_ids))
    if len(wanted) > _MAX_SEARCHED:
        return None
    try:
        text = data.decode("utf-8")
        tail = text.rfind(_TAIL)
        if not text.startswith(_HEAD) or tail < 0:
            return None
        envelope = _envelope(text[tail:])
        if envelope is None:
            return None
        found: list[CplEntry] = []
        for entry_id in wanted:
            at = text.rfind('"id":' + json.dumps(entry_id, ensure_ascii=False), 0, tail)
            entry = _entry_around(text, at) if at >= 0 else None
            if entry is None or entry.id != entry_id:
                return None
            found.append(entry)
        return CplDocument.of(found, str(envelope["source_sha256"]), str(envelope["imported"]))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return None  # not this layout: the caller parses the CPL whole and reports what is wrong


def _envelope(tail: str) -> dict[str, Any] | None:
    """The fields after the entries, from ``tail`` beginning at the last ``_TAIL``; None when
    they are not exactly the envelope ``CplDocument.to_bytes`` writes.

    Raises:
        ValueError: not JSON.
    """
    envelope = json.loads("{" + tail[2:])
    if not isinstance(envelope, dict) or set(envelope) != {
        "imported",
        "schema_version",
        "source_sha256",
    }:
        return None
    return envelope if envelope["schema_version"] == SCHEMA_VERSION else None


def cpl_of_tail(tail: bytes) -> CplDocument | None:
    """The CPL, with no entries, from the last bytes of a whole ``CplDocument.to_bytes`` that
    ``select_entries`` has already accepted (hash-checked, laid out as written): the envelope
    holds the import's source and date, which is all the website shows. None when ``tail`` does
    not reach back to the envelope's start. Pure."""
    text = tail.decode("utf-8", errors="replace")  # the cut may split a character; never kept
    at = text.rfind(_TAIL)
    if at < 0:
        return None
    try:
        envelope = _envelope(text[at:])
    except (ValueError, RecursionError):
        return None
    if envelope is None:
        return None
    return CplDocument.of([], str(envelope["source_sha256"]), str(envelope["imported"]))


def _entry_around(text: str, at: int) -> CplEntry | None:
    """The entry whose ``id`` key is at ``at``. The first ``{"`` before it that parses as an
    object reaching past ``at`` begins it: a ``{"`` that is not an object's start is a string value
    ending in ``{`` (its closing quote follows), at most one per field, and never parses.

    Raises:
        KeyError, TypeError, AttributeError: the object found is not a CPL entry.
    """
    start = at
    for _ in range(_MAX_CANDIDATES):
        start = text.rfind('{"', 0, start)
        if start < len(_HEAD):
            return None
        if text[start - 1] not in "[,":
            continue
        try:
            body, end = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        if not isinstance(body, dict) or end <= at or text[end] not in ",]":
            return None
        return CplEntry.from_dict(body)
    return None


class CplCache:
    """A folder of verified CPLs, each named by its SHA-256; every method is best effort (a problem
    is a miss, not an error)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, sha256: str) -> Path | None:
        # The hash comes from verified metadata, but a file name is built from it: accept hex only.
        return self.directory / f"cpl-{sha256}.json" if _SHA256.fullmatch(sha256) else None

    def lookup(self, sha256: str, entry_ids: Collection[str]) -> CplDocument | None:
        """The CPL whose SHA-256 is ``sha256``, holding only those of ``entry_ids`` it lists, or
        None when no copy of that very CPL is here or it does not list them all."""
        path = self._path(sha256)
        try:
            if path is None or not path.is_file():  # not a folder, a FIFO or a device
                return None
            with path.open("rb") as kept:
                data = kept.read(_MAX_BYTES + 1)
        except OSError as e:
            logger.info("CPL copy %s unreadable (%s): reading the CPL again", path, e)
            return None
        if len(data) > _MAX_BYTES or hashlib.sha256(data).hexdigest() != sha256:
            logger.info("CPL copy %s is not the CPL it is named for: reading the CPL again", path)
            return None
        return select_entries(data, entry_ids)

    def store(self, sha256: str, data: bytes) -> None:
        """Keep ``data``, a CPL verified against ``sha256`` and parsed whole (best effort). Called
        after a miss, it replaces whatever file held the name."""
        path = self._path(sha256)
        if path is None or hashlib.sha256(data).hexdigest() != sha256:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        except (OSError, CflError) as e:
            logger.info(
                "CPL copy %s not written (%s): the next deposit reads the CPL again", path, e
            )
            return
        self._prune(keep=path)

    def _prune(self, keep: Path) -> None:
        """Remove all but the ``_KEEP`` most recently written copies (never ``keep``), and the
        temporary files of writes that were killed (a concurrent write losing its temporary file
        only fails to keep its copy)."""
        try:
            # Only names this class writes: --cache-dir may be a folder holding other files.
            found = sorted(
                (p for p in self.directory.glob("cpl-*.json") if _KEPT.fullmatch(p.name)),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
            temporary = [
                p for p in self.directory.glob(".cpl-*.tmp") if _TEMPORARY.fullmatch(p.name)
            ]
            for old in [*found[_KEEP:], *temporary]:
                if old != keep:
                    old.unlink(missing_ok=True)
        except OSError as e:
            logger.info("CPL copies in %s not pruned (%s)", self.directory, e)
