"""`cfl-repo restore`: rebuild a repository working directory from one backup manifest.

Every file is checked against the manifest's SHA-256 and size before it is placed, and the files
are placed in a temporary folder beside the destination (``.NAME.restoring``), which is renamed to
the destination only when the whole repository is there and opens (configuration and head); a
refusal or a kill therefore leaves nothing under the destination's name, and a re-run clears the
temporary folder first. The destination must be new or empty: a restore never writes into a
repository. Private keys are not in a backup (repo_tool/backup/holdings.py): the report lists the
key files the restored configuration names, for their custodians to put back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metadata_templates.atomic import fsync_dir
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    field_error,
)
from repo_tool.backup.holdings import HEAD_PATH, head_references, is_private, private_key_paths
from repo_tool.backup.manifest import FileEntry, Manifest, check_manifest_name, latest
from repo_tool.backup.targets import BackupTarget
from repo_tool.output_paths import make_dir
from repo_tool.state.head import Head
from repo_tool.state.repository import Repository

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
PRIVATE_DIR = 0o700


@dataclass
class RestoreReport:
    """What one restore placed (``--json``)."""

    repo: Path
    source: str
    manifest: str = ""
    manifest_sha256: str = ""
    created: str = ""
    event_seq: int = 0
    files: int = 0
    bytes: int = 0
    keys_to_restore: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": str(self.repo),
            "from": self.source,
            "manifest": self.manifest,
            "manifest_sha256": self.manifest_sha256,
            "created": self.created,
            "event_seq": self.event_seq,
            "files": self.files,
            "bytes": self.bytes,
            "keys_to_restore": list(self.keys_to_restore),
        }


def partial_path(destination: Path) -> Path:
    """The temporary folder a restore into ``destination`` fills before its final rename."""
    return destination.parent / f".{destination.name}.restoring"


def check_destination(destination: Path) -> None:
    """Refuse a destination that is not a new or empty folder.

    Raises:
        ConfigurationError: it is a file, a link, or a folder holding anything.
    """
    if destination.name in ("", ".", ".."):
        raise ConfigurationError(
            field_error("--repo", str(destination), "a folder name for the new repository")
        )
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise ConfigurationError(
            field_error("--repo", str(destination), "a new or empty folder (found no folder)")
        )
    if destination.is_dir():
        held = sorted(os.listdir(destination))
        if held:
            raise ConfigurationError(
                f"--repo: found {destination} holding {len(held)} entries (first {held[0]!r}), "
                "expected a new or empty folder (a restore never writes into a repository)",
                hint="restore into a new folder, check it, then move it into place",
            )


def choose_manifest(source: BackupTarget, wanted: str | None) -> tuple[str, bytes]:
    """The name and bytes of the manifest to restore: ``wanted``, or the latest.

    Raises:
        ConfigurationError: ``wanted`` is not a manifest name.
        RejectedInputError: the backup holds no manifest, or not that one.
    """
    names = source.manifests()
    newest = latest(names)
    name = check_manifest_name(wanted) if wanted is not None else newest
    if name is None:
        raise RejectedInputError(
            f"--from: found no manifest in {source.url} backups/, expected at least one "
            "(a backup killed before its manifest restores nothing; run `cfl-repo backup` again)"
        )
    data = source.get_manifest(name)
    if data is None:
        expected = (
            f"one of the {len(names)} manifests in {source.url} backups/ (latest {newest})"
            if names
            else f"a manifest in {source.url} backups/, which holds none"
        )
        raise RejectedInputError(field_error("--manifest", wanted, expected))
    return name, data


def fetch(source: BackupTarget, path: str, entry: FileEntry) -> bytes:
    """One file's bytes from its objects, checked part by part and whole against the manifest.

    Raises:
        RejectedInputError: an object is missing, or its bytes do not match the manifest.
    """
    pieces: list[bytes] = []
    for part in entry.objects():
        data = source.get_object(part.sha256, part.size)
        if data is None:
            raise RejectedInputError(
                f"{path}: object {part.sha256} missing from {source.url}, expected it (the "
                "backup is incomplete; restore an earlier manifest with --manifest)"
            )
        actual = hashlib.sha256(data).hexdigest()
        if len(data) != part.size or actual != part.sha256:
            raise RejectedInputError(
                f"{path}: object {part.sha256[:12]}: found {len(data)} bytes hashing to "
                f"{actual}, expected {part.size} bytes hashing to {part.sha256} (the backup was "
                "altered or damaged)"
            )
        pieces.append(data)
    whole = b"".join(pieces)
    actual = hashlib.sha256(whole).hexdigest()
    if len(whole) != entry.size or actual != entry.sha256:
        raise RejectedInputError(
            f"{path}: found {len(whole)} bytes hashing to {actual}, expected {entry.size} bytes "
            f"hashing to {entry.sha256}"
        )
    return whole


def _check_head(source: BackupTarget, manifest: Manifest, where: str) -> Head:
    """The manifest's head, and every file it names among the manifest's files."""
    data = fetch(source, HEAD_PATH, manifest.files[HEAD_PATH])
    try:
        head = Head.from_bytes(data)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise RejectedInputError(f"{where}: {HEAD_PATH}: unreadable ({e!r})") from e
    if head.event_seq != manifest.event_seq:
        raise RejectedInputError(
            f"{where}: head.event_seq: found {manifest.event_seq}, expected {head.event_seq} "
            f"(the event_seq of {HEAD_PATH})"
        )
    missing = [path for path in head_references(head) if path not in manifest.files]
    if missing:
        raise RejectedInputError(
            f"{where}: files: found no {missing[0]} ({len(missing)} missing), expected every "
            "file the head names"
        )
    return head


def _place(root: Path, relative: str, data: bytes, mode: int) -> None:
    path = root / relative
    folder = path.parent
    if not folder.is_dir():
        private = is_private(relative)
        folder.mkdir(parents=True, mode=PRIVATE_DIR if private else 0o755, exist_ok=True)
        if private:
            for parent in (folder, *folder.parents):
                if parent == root:
                    break
                os.chmod(parent, PRIVATE_DIR)
    # Group- and world-write never come back from a backup, whatever its manifest says.
    fd = os.open(path, _CREATE, mode & 0o755)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode & 0o755)


def restore(
    source: BackupTarget,
    destination: Path,
    *,
    manifest_name: str | None = None,
    expect_sha256: str | None = None,
) -> RestoreReport:
    """Restore the backup ``manifest_name`` (default the latest) of ``source`` into ``destination``.

    Raises:
        ConfigurationError: ``destination`` is not a new or empty folder, ``source`` is not a
            backup, or a bad manifest name.
        RejectedInputError: no such manifest, a manifest that does not parse or pin, a missing
            object, or a file whose bytes do not hash to the manifest's SHA-256.
        UnavailableError: the source or the destination's folder cannot be read or written.
    """
    check_destination(destination)
    source.check_readable()
    name, data = choose_manifest(source, manifest_name)
    where = f"{source.url} backups/{name}"
    sha = hashlib.sha256(data).hexdigest()
    if expect_sha256 is not None and sha != expect_sha256.lower():
        raise RejectedInputError(
            f"--expect-sha256: found {where} hashing to {sha}, expected {expect_sha256} "
            "(the manifest is not the one that backup reported)"
        )
    manifest = Manifest.from_bytes(data, source=where)
    _check_head(source, manifest, where)
    make_dir(destination.parent, field="--repo")
    partial = partial_path(destination)
    if partial.exists() or partial.is_symlink():
        _remove(partial)  # left by a killed restore: nothing names it
    report = RestoreReport(destination, source.url, f"backups/{name}", sha, manifest.created)
    try:
        partial.mkdir(mode=0o755)
        for relative in sorted(manifest.files):
            entry = manifest.files[relative]
            _place(partial, relative, fetch(source, relative, entry), entry.mode)
            report.files += 1
            report.bytes += entry.size
        # The restored tree must open as a repository before it gets its name.
        try:
            restored = Repository.open(partial)
        except ConfigurationError as e:
            raise RejectedInputError(f"{where}: the restored files are no repository ({e})") from e
        for folder, dirs, _ in os.walk(partial):
            for child in dirs:
                fsync_dir(Path(folder) / child)
        fsync_dir(partial)
        try:
            os.rename(partial, destination)
        except OSError as e:
            raise UnavailableError(
                f"--repo {destination}: cannot move the restored repository into place "
                f"({e.strerror}); expected a new or empty folder on the same file system"
            ) from e
        fsync_dir(destination.parent)
    except BaseException as e:
        _remove(partial)
        if isinstance(e, OSError):
            raise UnavailableError(f"--repo {destination}: cannot write ({e.strerror})") from e
        raise
    report.event_seq = restored.head.event_seq
    report.keys_to_restore = _missing_keys(destination)
    return report


def _missing_keys(repo: Path) -> list[str]:
    """The private key files the restored configuration names that are not there (yet)."""
    config = Repository.open(repo).config
    base = repo.resolve()
    missing = []
    for path in private_key_paths(config, repo):
        if not path.exists():
            try:
                missing.append(path.relative_to(base).as_posix())
            except ValueError:
                missing.append(str(path))
    return missing


def _remove(path: Path) -> None:
    """Remove a partial restore (its read-only files go with their writable folders)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
