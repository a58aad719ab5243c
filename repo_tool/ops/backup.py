"""`cfl-repo backup`: copy what R holds (repo_tool/backup/holdings.py) to a folder or a bucket prefix,
as objects named by their SHA-256 plus one dated manifest (repo_tool/backup/manifest.py).

Consistency: the survey of R runs under the repository lock, so the head it reads and the files it
lists belong to one commit; the files that may change are read then and there, and the rest, which
the repository never rewrites, are copied after the lock is released (an ingest waits only for the
survey). Incremental: an object already in the target is not copied again; a blob's hash is its
name, and an immutable file seen before is recognised by the backup memo
(repo_tool/backup/memo.py) without reading it. Atomic: the manifest is written last, so a killed
backup leaves no manifest naming a missing object, and the next run reuses what it stored.

Commits nothing: R is only read (taking the lock finishes a killed command's event line, as every
command does, and the memo under R/cache/ is derived data).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError
from repo_tool.backup.holdings import (
    HEAD_PATH,
    KEY_FILE,
    Kind,
    content_sha,
    is_temporary,
    kind_of,
    private_key_paths,
    top_level,
)
from repo_tool.backup.manifest import MAX_PARTS, FileEntry, Manifest, Part, new_manifest_name
from repo_tool.backup.memo import BackupMemo, Stamp
from repo_tool.backup.targets import BackupTarget, FolderTarget
from repo_tool.state.head import Head
from repo_tool.state.repository import Repository

logger = logging.getLogger(__name__)

StepHook = Callable[[str], None]
_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class HeldFile:
    """A file the survey listed: its path relative to R, how it may change, and its stat."""

    relative: str
    kind: Kind
    mode: int
    stamp: Stamp


@dataclass
class Survey:
    """R as the lock saw it: the head, the files to hold, the bytes of those that may change."""

    head: Head
    files: list[HeldFile]
    read: dict[str, bytes]
    left_out: dict[str, str]


@dataclass
class BackupReport:
    """What one backup run did (``--json``)."""

    to: str
    manifest: str = ""
    manifest_sha256: str = ""
    event_seq: int = 0
    files: int = 0
    files_copied: int = 0
    files_reused: int = 0
    bytes_copied: int = 0
    bytes_total: int = 0
    left_out: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "manifest": self.manifest,
            "manifest_sha256": self.manifest_sha256,
            "event_seq": self.event_seq,
            "files": self.files,
            "files_copied": self.files_copied,
            "files_reused": self.files_reused,
            "bytes_copied": self.bytes_copied,
            "bytes_total": self.bytes_total,
            "left_out": dict(self.left_out),
        }


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """A regular file's bytes (the first ``limit`` when given), never through a link.

    Raises:
        UnavailableError: missing, unreadable, or no longer a regular file.
    """
    try:
        fd = os.open(path, _OPEN)
    except OSError as e:
        raise UnavailableError(
            f"{path}: cannot read ({e.strerror}); expected the file the survey listed"
        ) from e
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnavailableError(f"{path}: found no regular file, expected the one listed")
        return handle.read() if limit is None else handle.read(limit)


def _stamp(info: os.stat_result) -> Stamp:
    return Stamp(info.st_size, info.st_mtime_ns, info.st_ino)


def _refuse_special(path: Path, info: os.stat_result) -> None:
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        what = "symbolic link" if stat.S_ISLNK(info.st_mode) else "special file"
        raise RejectedInputError(
            f"{path}: found a {what}, expected a regular file or folder (a backup follows no "
            "links: replace it with the file itself)"
        )


def survey(repo: Repository) -> Survey:
    """List what R holds and read what may change. The caller holds the repository lock.

    Raises:
        RejectedInputError: a link or special file among what a backup holds.
        UnavailableError, ConfigurationError: R cannot be read, or its head is unreadable.
    """
    root = repo.path
    head_bytes = read_regular(root / HEAD_PATH)
    head = Head.from_bytes(head_bytes)
    base = root.resolve()
    keys = set()
    for key in private_key_paths(repo.config, root):
        try:
            keys.add(key.relative_to(base).as_posix())
        except ValueError:
            continue  # outside R: never listed anyway
    found: list[tuple[str, os.stat_result]] = []
    left_out: dict[str, str] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if is_temporary(entry.name):
            continue
        info = entry.stat(follow_symlinks=False)
        reason = top_level(entry.name)
        if reason is not None:
            left_out[entry.name + ("/" if stat.S_ISDIR(info.st_mode) else "")] = reason
            continue
        _refuse_special(root / entry.name, info)
        if stat.S_ISDIR(info.st_mode):
            _walk(root, entry.name, found)
        else:
            found.append((entry.name, info))
    files: list[HeldFile] = []
    read: dict[str, bytes] = {HEAD_PATH: head_bytes}
    for relative, info in found:
        if is_temporary(relative):
            continue
        if relative in keys:
            left_out[relative] = KEY_FILE
            continue
        held = HeldFile(relative, kind_of(relative, head), stat.S_IMODE(info.st_mode), _stamp(info))
        if held.kind is Kind.MUTABLE and relative not in read:
            read[relative] = read_regular(root / relative)
        files.append(held)
    return Survey(head, files, read, left_out)


def _walk(root: Path, relative: str, found: list[tuple[str, os.stat_result]]) -> None:
    try:
        entries = sorted(os.scandir(root / relative), key=lambda e: e.name)
    except OSError as e:
        raise UnavailableError(f"{root / relative}: cannot list ({e.strerror})") from e
    for entry in entries:
        child = f"{relative}/{entry.name}"
        info = entry.stat(follow_symlinks=False)
        _refuse_special(root / child, info)
        if stat.S_ISDIR(info.st_mode):
            _walk(root, child, found)
        else:
            found.append((child, info))


class _Copier:
    """Stores a survey's files as objects the target lacks, and counts what it did."""

    def __init__(self, repo: Repository, target: BackupTarget, memo: BackupMemo) -> None:
        self.root = repo.path
        self.target = target
        self.memo = memo
        self.existing = target.objects()
        self.report = BackupReport(to=target.url)

    def _store(self, sha: str, data: bytes) -> bool:
        """Store ``data`` unless the target holds it; returns whether it was copied."""
        held = self.existing.get(sha)
        if held == len(data):
            return False
        if held is not None:
            logger.warning(
                "%s: object %s has %d bytes, expected %d: replacing it",
                self.target.url,
                sha[:12],
                held,
                len(data),
            )
        self.target.put_object(sha, data)
        self.existing[sha] = len(data)
        self.report.bytes_copied += len(data)
        return True

    def _count(self, copied: bool) -> None:
        if copied:
            self.report.files_copied += 1
        else:
            self.report.files_reused += 1

    def entry(self, held: HeldFile, survey: Survey) -> FileEntry:
        """Store one file (if need be) and return its manifest entry.

        Raises:
            UnavailableError: a file changed or vanished that the repository never rewrites, or a
                blob no longer hashes to its name.
        """
        path = self.root / held.relative
        size = held.stamp.size
        if held.kind is Kind.APPEND_ONLY:
            return self._event_log(held)
        if held.kind is Kind.CONTENT_NAMED:
            sha = str(content_sha(held.relative))
            if self.existing.get(sha) == size:
                self._count(False)
                return FileEntry(sha, size, held.mode)
            data = read_regular(path)
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha:
                raise UnavailableError(
                    f"{path}: found content hashing to {actual}, expected {sha} (its name); the "
                    "store is corrupt, restore this file from an earlier backup"
                )
            self._count(self._store(sha, data))
            return FileEntry(sha, size, held.mode)
        if held.kind is Kind.IMMUTABLE:
            sha_known = self.memo.known(held.relative, held.stamp)
            if sha_known is not None and self.existing.get(sha_known) == size:
                self._count(False)
                return FileEntry(sha_known, size, held.mode)
            data = read_regular(path)
            if len(data) != size:
                raise UnavailableError(
                    f"{path}: size: found {len(data)}, expected {size} as listed under the lock "
                    "(the repository never rewrites this file)"
                )
        else:
            data = survey.read[held.relative]
        sha = hashlib.sha256(data).hexdigest()
        if held.kind is Kind.IMMUTABLE:
            self.memo.files[held.relative] = (held.stamp, sha)
        self._count(self._store(sha, data))
        return FileEntry(sha, len(data), held.mode)

    def _event_log(self, held: HeldFile) -> FileEntry:
        """The event log as parts: what this target holds of it already, then the new tail."""
        size = held.stamp.size
        data = read_regular(self.root / held.relative, size)
        if len(data) != size:
            raise UnavailableError(
                f"{self.root / held.relative}: size: found {len(data)}, expected at least {size} "
                "(the event log only grows)"
            )
        sha = hashlib.sha256(data).hexdigest()
        before = self.memo.event_logs.get(self.target.url)
        parts: tuple[Part, ...] = (Part(sha, size),)
        if (
            before is not None
            and before.size <= size
            and len(before.parts) < MAX_PARTS
            and hashlib.sha256(data[: before.size]).hexdigest() == before.sha256
            and all(self.existing.get(p.sha256) == p.size for p in before.parts)
        ):
            tail = data[before.size :]
            parts = before.parts + (
                (Part(hashlib.sha256(tail).hexdigest(), len(tail)),) if tail else ()
            )
        copied = False
        offset = 0
        for part in parts:
            if self.existing.get(part.sha256) != part.size:
                copied |= self._store(part.sha256, data[offset : offset + part.size])
            offset += part.size
        self._count(copied)
        entry = FileEntry(sha, size, held.mode, parts)
        self.memo.event_logs[self.target.url] = entry
        return entry


def take_backup(
    repo: Repository, target: BackupTarget, *, now: datetime, between: StepHook | None = None
) -> BackupReport:
    """Back up ``repo`` into ``target`` and return what was done.

    ``between`` is called with ``"surveyed"`` once the lock is released and with ``"copied"``
    before the manifest is written (tests run an ingest or a crash there).

    Raises:
        ConfigurationError: the target is inside R, holds other files, or is unreachable.
        RejectedInputError: a link or special file among what a backup holds.
        UnavailableError: the repository lock is held, or R or the target cannot be read or
            written; no manifest is written then.
    """
    hook = between or (lambda step: None)
    if isinstance(target, FolderTarget):
        _refuse_inside(repo.path, target.root)
    target.prepare()
    memo = BackupMemo.load(repo.path)
    with repo.locked():
        seen = survey(repo)
    hook("surveyed")
    copier = _Copier(repo, target, memo)
    files = {held.relative: copier.entry(held, seen) for held in seen.files}
    manifest = Manifest(format_timestamp(now), files, seen.head.event_seq, seen.left_out)
    data = manifest.to_bytes()
    hook("copied")
    taken = set(target.manifests())
    name = new_manifest_name(now, taken)
    while not target.put_manifest(name, data):
        taken.add(name)
        name = new_manifest_name(now, taken)
    memo.save(repo.path)
    report = copier.report
    report.manifest = f"backups/{name}"
    report.manifest_sha256 = hashlib.sha256(data).hexdigest()
    report.event_seq = seen.head.event_seq
    report.files = len(files)
    report.bytes_total = manifest.total_bytes
    report.left_out = dict(seen.left_out)
    return report


def _refuse_inside(repo: Path, destination: Path) -> None:
    base, there = repo.resolve(), destination.resolve()
    if there == base or base in there.parents:
        raise ConfigurationError(
            f"--to: found {destination} inside the repository {repo}, expected a folder "
            "elsewhere (a backup inside R is lost with it)"
        )
