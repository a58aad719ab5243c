"""Where backups are stored: the I/O edge of repo_tool/backup/, a folder here and object storage in
``s3_target.py`` (apart, so a backup to a folder never loads boto3). Both keep the layout
``manifest.py`` describes and never overwrite a manifest.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Protocol

from metadata_templates.atomic import atomic_write_bytes, fsync_dir
from metadata_templates.errors import ConfigurationError, UnavailableError, field_error
from repo_tool.backup.manifest import (
    MANIFEST_DIR,
    MARKER,
    MAX_MANIFEST_BYTES,
    OBJECTS_DIR,
    is_manifest_name,
    marker_bytes,
    object_key,
)
from repo_tool.output_paths import make_dir

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)


class BackupTarget(Protocol):
    """A folder or a bucket prefix holding objects and manifests."""

    url: str

    def prepare(self) -> None:
        """Make ready to back up into: new or empty (then marked), or marked by an earlier backup.

        Raises:
            ConfigurationError: it holds other files, or cannot be created or reached.
        """

    def check_readable(self) -> None:
        """Check it is a backup to restore from.

        Raises:
            ConfigurationError: no such folder or prefix, or not marked as a backup.
        """

    def objects(self) -> dict[str, int]:
        """SHA-256 -> size of every object stored."""

    def put_object(self, sha256: str, data: bytes) -> None:
        """Store one object (replacing a corrupt one of that name)."""

    def get_object(self, sha256: str, size: int) -> bytes | None:
        """An object's bytes (at most ``size`` + 1 are read), or None when it is missing."""

    def manifests(self) -> list[str]:
        """The names in ``backups/``."""

    def get_manifest(self, name: str) -> bytes | None:
        """A manifest's bytes, or None when there is none of that name."""

    def put_manifest(self, name: str, data: bytes) -> bool:
        """Store a manifest under a new name; False when the name is taken (nothing is written)."""


def open_target(spec: str, *, endpoint_url: str | None, option: str) -> BackupTarget:
    """``DIR`` or ``s3://BUCKET/PREFIX`` -> its target; ``option`` names it in errors.

    Raises:
        ConfigurationError: a bad URL, or --endpoint-url with a folder.
    """
    if spec.startswith("s3://"):
        from repo_tool.backup.s3_target import S3Target

        return S3Target.of(spec, endpoint_url=endpoint_url, option=option)
    if endpoint_url is not None:
        raise ConfigurationError(
            field_error("--endpoint-url", endpoint_url, f"no --endpoint-url unless {option} s3://")
        )
    if not spec:
        raise ConfigurationError(field_error(option, spec, "a folder or s3://BUCKET/PREFIX"))
    return FolderTarget(Path(spec), option=option)


class FolderTarget:
    """A backup in a local (or mounted) folder."""

    def __init__(self, root: Path, *, option: str = "--to") -> None:
        self.root = root
        self.option = option
        self.url = str(root)

    def prepare(self) -> None:
        make_dir(self.root, field=self.option)
        marker = self.root / MARKER
        if marker.is_file():
            return
        try:
            entries = sorted(entry.name for entry in os.scandir(self.root))
        except OSError as e:
            raise ConfigurationError(
                f"{self.option} {self.root}: cannot list ({e.strerror})"
            ) from e
        if entries:
            raise ConfigurationError(
                f"{self.option}: found {self.root} holding {entries[0]!r} and no {MARKER}, "
                "expected a new or empty folder, or one `cfl-repo backup` wrote before",
                hint="a backup never writes among someone else's files; choose another folder",
            )
        atomic_write_bytes(marker, marker_bytes())

    def check_readable(self) -> None:
        if not self.root.is_dir():
            raise ConfigurationError(
                field_error(self.option, str(self.root), "a folder `cfl-repo backup` wrote")
            )
        if not (self.root / MARKER).is_file():
            raise ConfigurationError(
                f"{self.option}: found no {MARKER} in {self.root}, expected a folder "
                "`cfl-repo backup` wrote"
            )

    def objects(self) -> dict[str, int]:
        found: dict[str, int] = {}
        base = self.root / OBJECTS_DIR
        if not base.is_dir():
            return found
        try:
            for fan in os.scandir(base):
                if not fan.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(fan.path):
                    if entry.is_file(follow_symlinks=False) and entry.name[:2] == fan.name:
                        found[entry.name] = entry.stat(follow_symlinks=False).st_size
        except OSError as e:
            raise UnavailableError(f"{self.option} {base}: cannot list ({e.strerror})") from e
        return found

    def put_object(self, sha256: str, data: bytes) -> None:
        path = self.root / object_key(sha256)
        try:
            atomic_write_bytes(path, data, mode=0o444)
        except OSError as e:
            raise UnavailableError(f"{self.option} {path}: cannot write ({e.strerror})") from e

    def _read(self, path: Path, limit: int) -> bytes | None:
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise UnavailableError(f"{self.option} {path}: cannot read ({e.strerror})") from e
        with os.fdopen(fd, "rb") as handle:
            return handle.read(limit + 1)

    def get_object(self, sha256: str, size: int) -> bytes | None:
        return self._read(self.root / object_key(sha256), size)

    def manifests(self) -> list[str]:
        folder = self.root / MANIFEST_DIR
        if not folder.is_dir():
            return []
        return sorted(name for name in os.listdir(folder) if is_manifest_name(name))

    def get_manifest(self, name: str) -> bytes | None:
        return self._read(self.root / MANIFEST_DIR / name, MAX_MANIFEST_BYTES)

    def put_manifest(self, name: str, data: bytes) -> bool:
        folder = self.root / MANIFEST_DIR
        make_dir(folder, field=self.option)
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o444)
            # A hard link, unlike a rename, refuses an existing name: two backups finishing in
            # the same second cannot replace each other's manifest.
            try:
                os.link(temp, folder / name)
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                # A file system without hard links (some network mounts): check, then rename.
                if (folder / name).exists():
                    return False
                os.replace(temp, folder / name)
        except FileExistsError:
            return False
        except OSError as e:
            raise UnavailableError(
                f"{self.option} {folder / name}: cannot write ({e.strerror})"
            ) from e
        finally:
            Path(temp).unlink(missing_ok=True)
        fsync_dir(folder)
        return True
