"""`cfl-repo publish` with nothing new (issue 26): prove it cheaply instead of re-doing it.

A full publish opens the repository (tuf, securesystemslib's signers and with them boto3), plans,
and re-verifies the served tree for the website: about a second before any work, to find there is
none. After a full publish to a folder succeeds, `record` stores two fingerprints of what a re-run
would read:
- the library's: the repository's head and configuration, the committed log's signed checkpoint
  (with any witness cosignatures) and its event log's size;
- the served tree's (`tree_fingerprint`): the content of ``timestamp.json``, of the snapshot it
  names and of ``log/checkpoint``; the ``lstat`` (size, times, inode) of every role file that
  snapshot lists, of every root version, of the provider's own blobs and of every top-level entry
  of the site; and the ``lstat`` of the folders files are added to or removed from (the tree,
  ``metadata/``, ``targets/`` and each folder below it, where a manufacturer's images live).
The next publish asks `replay`: the library's fingerprint first, which a new commit changes (a
publish with something new then pays nothing here), then the tree's. When both are the same,
nothing a publish reads has changed, so it would write nothing, and the stored outcome is reported.

Neither walks the library: an image blob added, removed or renamed changes its folder's times, and
the rest of the tree's history (old role versions, full log tiles, the site's pages below its top
level) is not read by a publish that has nothing to write either, so it is not fingerprinted.
`cfl-repo verify` checks all of it.

What keeps this safe:
- Any difference, a tampered or deleted metadata file or blob, a new commit, a crash-repaired
  event log, takes the full path, which repairs or fails exactly as it always has. A file
  rewritten in place changes its ``ctime``, which nobody can set back.
- The stamp is valid only until the earliest expiry of the metadata the tree serves: after it, the
  full path's verification must be the one to refuse the tree.
- No stamp is written while a pilot image awaits its release date (the site changes with time).
- It only reads: no lock is taken, nothing is written, so a concurrent command cannot be harmed.
  A change in flight has already replaced head.json (every commit does), so it shows.

Only the standard library is imported here, so that the fast path stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metadata_templates.atomic import atomic_write_bytes

STAMP = Path("cache") / "publish-unchanged.json"
STAMP_VERSION = 2  # 2: the library's and the tree's fingerprints apart, the tree's from lstat
# TUF's serialisation sorts keys: the first "expires" of a metadata file is its signed expiry
# ("signatures" and "delegations" come before it and hold none).
# One fixed-width form (the TUF specification's), so the earliest is the least as text.
_EXPIRES = re.compile(
    rb'"expires"\s*:\s*"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)"'
)
# A role's expiry follows its signatures and (for a delegating role) its delegations: a bin's is
# within its first few hundred bytes, so 2,600 bins cost 2,600 short reads, not 80 MB.
_EXPIRY_WITHIN = 4096


class _Unreadable(Exception):
    """The served tree is not one a publish left (missing or malformed timestamp or snapshot)."""


def _open_plain(path: Path, *, follow: bool = False) -> int:
    """A descriptor of the plain file at ``path``, never blocking: a FIFO planted in the served
    tree (or the repository) would otherwise hang `cfl-repo publish` before it does anything.
    ``follow``: a link is followed (the repository's own files: an operator may link its
    configuration); in the served tree, which a publish never fills with links, it is refused.

    Raises:
        OSError: absent, a link (unless ``follow``), or not a plain file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a plain file")
    return fd


def _read(path: Path, limit: int = -1, *, follow: bool = False) -> bytes:
    """The bytes of the plain file at ``path`` (its first ``limit`` bytes when >= 0)."""
    with os.fdopen(_open_plain(path, follow=follow), "rb") as handle:
        return handle.read(limit)


def _sha256_file(path: Path, *, follow: bool = False) -> str | None:
    """The SHA-256 of the plain file at ``path``; None when there is none."""
    try:
        with os.fdopen(_open_plain(path, follow=follow), "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _stat_line(path: Path) -> str:
    """What the files' metadata says of ``path``: rewriting it in place changes ``ctime``, adding or
    removing an entry of a folder changes the folder's ``mtime``; "None" when it is absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"{path}\0None"
    return f"{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"


def _checkpoint_name(repo_dir: Path) -> str:
    """The signed checkpoint of the committed log, which a publish copies to ``log/checkpoint``.
    `cfl-repo log add-cosignatures` adds witnesses' lines to it and commits nothing else: without
    it here, the publish the docs say to run next replayed and never served them."""
    try:
        size = json.loads(_read(repo_dir / "state" / "head.json", follow=True)).get("log_size", 0)
    except (OSError, ValueError, AttributeError):
        size = None  # head.json's own line already differs, or the full path reports it
    return f"state/log/checkpoints/{size if isinstance(size, int) else None}"


def library_fingerprint(repo_dir: Path, out: Path, *, site: bool) -> str:
    """A digest of what a publish reads from the repository (and of where it publishes): a new
    commit always changes it, so a publish with something new is told at once."""
    lines = [f"out\0{out.resolve()}\0site\0{site}"]
    for name in ("state/head.json", "cfl-repo.json", _checkpoint_name(repo_dir)):
        path = repo_dir / name
        lines.append(f"{name}\0{_sha256_file(path, follow=True)}")
    try:
        events = (repo_dir / "events.jsonl").stat()
        lines.append(f"events\0{events.st_size}\0{events.st_mtime_ns}")
    except FileNotFoundError:
        lines.append("events\0None")
    return _digest(lines)


def _digest(lines: list[str]) -> str:
    # A file name cannot hold NUL and no field is empty, so a double NUL ends each record
    # unambiguously (a newline can be part of a file name).
    return hashlib.sha256("\0\0".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _signed(data: bytes) -> dict[str, Any]:
    try:
        signed = json.loads(data)["signed"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise _Unreadable from e
    if not isinstance(signed, dict):
        raise _Unreadable
    return signed


@dataclass(frozen=True)
class ServedFiles:
    """What a publish with nothing to write reads of a served tree."""

    whole: tuple[Path, ...]  # read whole: timestamp.json, the snapshot it names, log/checkpoint
    roles: tuple[Path, ...]  # every role version that snapshot lists (targets.json included)
    roots: tuple[Path, ...]  # every root version served, and the next one clients probe for
    blobs: tuple[Path, ...]  # the provider's own targets: the CPL, withdrawals, registry, ...
    folders: tuple[Path, ...]  # where files are added or removed: the tree, metadata/, targets/...


def served_files(out: Path) -> ServedFiles:
    """What a publish with nothing to write reads of the tree at ``out``.

    Raises:
        OSError: the timestamp, the snapshot it names or the targets role cannot be read.
        _Unreadable: one of them is not a signed TUF document of the expected shape.
    """
    metadata = out / "metadata"
    timestamp = metadata / "timestamp.json"
    try:
        version = int(_signed(_read(timestamp))["meta"]["snapshot.json"]["version"])
        snapshot = metadata / f"{version}.snapshot.json"
        listed = _signed(_read(snapshot))["meta"]
        roles = tuple(
            metadata / f"{int(m['version'])}.{name}" for name, m in sorted(listed.items())
        )
        targets = _signed(
            _read(metadata / f"{int(listed['targets.json']['version'])}.targets.json")
        )
        blobs = tuple(
            out / "targets" / _blob_name(path, info["hashes"]["sha256"])
            for path, info in sorted(targets["targets"].items())
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _Unreadable from e
    newest = 1
    while (metadata / f"{newest + 1}.root.json").exists():
        newest += 1
    roots = tuple(metadata / f"{n}.root.json" for n in range(1, newest + 2))
    folders = [out, metadata, out / "targets", out / "log"]
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        # Images live exactly one folder below targets/ (naming.py: one segment per manufacturer).
        folders.extend(
            Path(e.path) for e in os.scandir(out / "targets") if e.is_dir(follow_symlinks=False)
        )
    whole = (timestamp, snapshot, out / "log" / "checkpoint")
    return ServedFiles(whole, roles, roots, blobs, tuple(sorted(folders)))


def _blob_name(target_path: str, sha256: str) -> str:
    # metadata_templates.naming.blob_name, without importing tuf on the fast path
    directory, _, base = target_path.rpartition("/")
    return f"{directory + '/' if directory else ''}{sha256}.{base}"


def tree_fingerprint(out: Path, *, site: bool) -> str | None:
    """A digest of what a publish reads of the served tree at ``out`` (see the module text);
    None when it has no readable timestamp and snapshot (a publish must run)."""
    try:
        served = served_files(out)
    except (OSError, _Unreadable):
        return None
    lines = [f"{path}\0{_sha256_file(path)}" for path in served.whole]
    for path in (*served.roles, *served.roots, *served.blobs, *served.folders):
        lines.append(_stat_line(path))
    if site:
        site_dir = out / "site"
        lines.append(_stat_line(site_dir))
        try:
            entries = sorted(os.scandir(site_dir), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        lines.extend(_stat_line(Path(entry.path)) for entry in entries)
    return _digest(lines)


def _expiry(data: bytes) -> bytes | None:
    found = _EXPIRES.search(data)
    return found.group(1) if found is not None else None


def _expiry_of(path: Path) -> bytes | None:
    found = _expiry(_read(path, _EXPIRY_WITHIN))
    return found if found is not None else _expiry(_read(path))


def served_until(out: Path) -> datetime | None:
    """The earliest expiry of the root, timestamp, snapshot and every role that snapshot lists in
    ``out``; None when any of them cannot be read (then nothing is recorded)."""
    try:
        served = served_files(out)
        # The newest root: clients walk to it, and it is the one whose expiry they check.
        files = [*served.whole[:2], *served.roles, served.roots[-2]]
        expiries = [_expiry_of(path) for path in files]
    except (OSError, _Unreadable):
        return None
    if any(expiry is None for expiry in expiries):
        return None
    earliest = min(expiry for expiry in expiries if expiry is not None).decode("ascii")
    try:
        return datetime.strptime(earliest, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:  # "2026-13-45T...": no date, so no stamp (the full path names it)
        return None


def record(
    repo_dir: Path,
    out: Path,
    *,
    site: bool,
    outcome: dict[str, Any],
    valid_until: datetime | None,
) -> None:
    """After a full publish succeeded: store the fingerprint and ``outcome`` (its JSON document),
    or remove the stamp when ``valid_until`` is None (nothing may be replayed)."""
    path = repo_dir / STAMP
    try:
        if valid_until is None:
            path.unlink(missing_ok=True)
            return
        tree = tree_fingerprint(out, site=site)
        if tree is None:
            path.unlink(missing_ok=True)
            return
        stamp = {
            "stamp_version": STAMP_VERSION,
            "library": library_fingerprint(repo_dir, out, site=site),
            "tree": tree,
            "valid_until": valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "outcome": outcome,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(stamp, sort_keys=True).encode())
    except OSError:
        # The publish itself succeeded (a full disk, say): without a stamp the next one takes the
        # full path. A stamp that cannot even be removed fingerprints a state a full publish
        # left, so it is replayed only if the library and tree are back to exactly that state.
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def replay(repo_dir: Path, out: Path, *, site: bool, now: datetime) -> dict[str, Any] | None:
    """The JSON document of a publish that would write nothing, or None when it must run.

    A stamp that cannot be read or was written by another version is ignored (the full path
    then runs and writes a new one).
    """
    try:
        stamp = json.loads(_read(repo_dir / STAMP, follow=True))
        if stamp["stamp_version"] != STAMP_VERSION:
            return None
        valid_until = datetime.strptime(stamp["valid_until"], "%Y-%m-%dT%H:%M:%SZ")
        outcome = stamp["outcome"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(outcome, dict) or now >= valid_until.replace(tzinfo=UTC):
        return None
    try:
        # The library's first: a publish with something new is told without reading the tree.
        if stamp["library"] != library_fingerprint(repo_dir, out, site=site):
            return None
        if stamp["tree"] != tree_fingerprint(out, site=site):
            return None
    except (OSError, KeyError):
        return None  # an --out under a regular file, say: the full path names the mistake
    return nothing_written(outcome)


def nothing_written(outcome: dict[str, Any]) -> dict[str, Any]:
    """``outcome`` as a publish that found nothing to do reports it."""
    doc = dict(outcome)
    doc["signed_new_snapshot"] = False
    doc["written"] = dict.fromkeys(outcome.get("written", {}), 0)
    doc["unchanged"] = True
    if "site_build" in doc:
        doc["site_build"] = {
            "appended": True,
            "changed_files": 0,
            "told_new_images": 0,
            "verify_memo": None,
        }
    return doc
