"""Where a command writes: folders it may create and files it may create, checked up front.

An output path under a regular file (``--out notes.txt/site``), a folder where a file belongs, or a
file where a folder belongs are the operator's mistakes, so each is a ``ConfigurationError`` that
names the option and the path; only a failure of the file system itself is ``UnavailableError``.
"""

from __future__ import annotations

import errno
from pathlib import Path

from metadata_templates.errors import ConfigurationError, UnavailableError


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def make_dir(path: Path, *, field: str) -> None:
    """Create the folder ``path`` and its parents unless they exist.

    Raises:
        ConfigurationError: ``path`` or one of its parents is a regular file, or may not be
            created by this user.
        UnavailableError: the file system failed (full, read-only, I/O error).
    """
    blocking = _blocking_file(path)
    if blocking is not None:
        where = "" if blocking == path else f" (cannot create {path} under it)"
        raise ConfigurationError(f"{field}: found {blocking} is a file, expected a folder{where}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError as e:
        raise ConfigurationError(f"{field}: cannot create {path} ({e.strerror})") from e
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.EEXIST):  # raced with another writer
            raise ConfigurationError(f"{field}: cannot create {path} ({e.strerror})") from e
        raise UnavailableError(f"{field}: cannot create {path} ({e.strerror})") from e


def prepare_file(path: Path, *, field: str, overwrite: bool = True) -> None:
    """Make sure a file can be written at ``path``: its folder exists (created if needed), and
    ``path`` is not a folder (nor, unless ``overwrite``, an existing file).

    Raises:
        ConfigurationError: ``path`` is a folder or an existing file, or its folder cannot be made.
        UnavailableError: the file system failed.
    """
    if path.name in ("", ".", "..") or path.is_dir():
        raise ConfigurationError(f"{field}: found {path} is a folder, expected a file path")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise ConfigurationError(
            f"{field}: found {path} exists already, expected a new file (it is never overwritten)"
        )
    make_dir(path.parent, field=field)
