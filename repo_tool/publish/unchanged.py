"""`cfl-repo publish` with nothing new (issue 26): prove it cheaply instead of re-doing it.

A full publish opens the repository (tuf, securesystemslib's signers and with them boto3), plans,
and re-verifies the served tree for the website: about a second before any work, to find there is
none. After a full publish to a folder succeeds, `record` stores a fingerprint of everything a
re-run would read: the repository's head and configuration, the committed log's signed checkpoint
(with any witness cosignatures), its event log's size, and the served tree as the publish left it
(the content of every metadata and log file, the name of every blob, the name, size and
modification time of every site file). The next publish asks
`replay`: when the fingerprint is the same, nothing a publish reads has changed, so it would write
nothing, and the stored outcome is reported instead.

What keeps this safe:
- Any difference, a tampered or deleted metadata file or blob, a new commit, a crash-repaired
  event log, takes the full path, which repairs or fails exactly as it always has.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metadata_templates.atomic import atomic_write_bytes

STAMP = Path("cache") / "publish-unchanged.json"
STAMP_VERSION = 1
# The publish lock lives in the tree and is touched by every publish (publish/folder.py LOCK_NAME).
_SKIPPED = frozenset({".cfl-publish.lock"})
# TUF's serialisation sorts keys: the first "expires" of a metadata file is its signed expiry
# ("signatures" and "delegations" come before it and hold none).
_EXPIRES = re.compile(rb'"expires"\s*:\s*"([0-9T:\-]+Z)"')


def _sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files(top: Path) -> list[tuple[str, os.DirEntry[str]]]:
    """Every file under ``top`` (name relative to it, its entry), sorted by name; [] when
    ``top`` is absent. Names are built by concatenation: os.path.relpath on 20,000 site files
    and blobs cost more than the rest of the fingerprint."""
    found: list[tuple[str, os.DirEntry[str]]] = []
    pending = [("", str(top))]
    while pending:
        prefix, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((name + "/", entry.path))
            elif entry.name not in _SKIPPED:
                found.append((name, entry))
    found.sort(key=lambda item: item[0])
    return found


def _checkpoint_name(repo_dir: Path) -> str:
    """The signed checkpoint of the committed log, which a publish copies to ``log/checkpoint``.
    `cfl-repo log add-cosignatures` adds witnesses' lines to it and commits nothing else: without
    it here, the publish the docs say to run next replayed and never served them."""
    try:
        size = json.loads((repo_dir / "state" / "head.json").read_bytes()).get("log_size", 0)
    except (OSError, ValueError, AttributeError):
        size = None  # head.json's own line already differs, or the full path reports it
    return f"state/log/checkpoints/{size if isinstance(size, int) else None}"


def fingerprint(repo_dir: Path, out: Path, *, site: bool) -> str:
    """A digest of everything a publish of ``repo_dir`` into ``out`` reads (see the module text)."""
    lines = [f"out\0{out.resolve()}\0site\0{site}"]
    for name in ("state/head.json", "cfl-repo.json", _checkpoint_name(repo_dir)):
        path = repo_dir / name
        lines.append(f"{name}\0{_sha256_file(path) if path.is_file() else None}")
    try:
        events = (repo_dir / "events.jsonl").stat()
        lines.append(f"events\0{events.st_size}\0{events.st_mtime_ns}")
    except FileNotFoundError:
        lines.append("events\0None")
    for name, entry in _files(out):
        part = name.split("/", 1)[0] if "/" in name else ""
        if part in ("metadata", "log"):
            lines.append(f"{name}\0{_sha256_file(out / name)}")
        elif part == "targets":
            # A publish checks a blob's presence only (publish/folder.py), so its name is enough:
            # no stat of 10,000 blobs.
            lines.append(f"{name}\0blob")
        elif part != "site" or site:
            stat = entry.stat(follow_symlinks=False)
            lines.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}")
    # A file name cannot hold NUL and no field is empty, so a double NUL ends each record
    # unambiguously (a newline can be part of a file name).
    return hashlib.sha256("\0\0".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _expiry(data: bytes) -> datetime | None:
    found = _EXPIRES.search(data)
    if found is None:
        return None
    return datetime.strptime(found.group(1).decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def served_until(out: Path) -> datetime | None:
    """The earliest expiry of the root, timestamp, snapshot and every role that snapshot lists in
    ``out``; None when any of them cannot be read (then nothing is recorded)."""
    metadata = out / "metadata"
    try:
        timestamp = (metadata / "timestamp.json").read_bytes()
        snapshot_version = json.loads(timestamp)["signed"]["meta"]["snapshot.json"]["version"]
        snapshot = (metadata / f"{snapshot_version}.snapshot.json").read_bytes()
        # The newest root: clients walk to it, and it is the one whose expiry they check.
        roots = [int(p.name.split(".", 1)[0]) for p in metadata.glob("*.root.json")]
        files = [timestamp, snapshot, (metadata / f"{max(roots)}.root.json").read_bytes()]
        for name, meta in json.loads(snapshot)["signed"]["meta"].items():
            files.append((metadata / f"{meta['version']}.{name}").read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expiries = [_expiry(data) for data in files]
    if any(expiry is None for expiry in expiries):
        return None
    return min(expiry for expiry in expiries if expiry is not None)


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
        stamp = {
            "stamp_version": STAMP_VERSION,
            "fingerprint": fingerprint(repo_dir, out, site=site),
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
        stamp = json.loads((repo_dir / STAMP).read_bytes())
        if stamp["stamp_version"] != STAMP_VERSION:
            return None
        valid_until = datetime.strptime(stamp["valid_until"], "%Y-%m-%dT%H:%M:%SZ")
        outcome = stamp["outcome"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(outcome, dict) or now >= valid_until.replace(tzinfo=UTC):
        return None
    try:
        if stamp["fingerprint"] != fingerprint(repo_dir, out, site=site):
            return None
    except OSError:
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
