"""Where the independent check reads a published tree from (a folder or an HTTP(S) base URL, each
refusing to leave its root and capping what it reads), and the record of problems one walk keeps.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import urllib3
from tuf.api.metadata import MetaFile

from metadata_templates.errors import UnavailableError

Reader = Callable[[str], bytes]


MAX_METADATA_BYTES = 64 * 1024 * 1024


class NotFound(Exception):
    """The source has no file at that path."""


class NotAFile(NotFound):
    """The source has something else than a plain file at that path (a FIFO, a directory...)."""

    def __init__(self, relative: str, found: str) -> None:
        super().__init__(relative)
        self.reason = f"found {found}, expected a plain file"


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a device")


def folder_reader(root: Path) -> Reader:
    """Read relative paths below ``root``, refusing to leave it."""
    base = root.resolve()

    def read(relative: str) -> bytes:
        path = (base / relative).resolve()
        if base not in path.parents:
            raise NotFound(relative)
        try:
            # Non-blocking: opening a FIFO for reading would wait for a writer (for ever).
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError as e:
            raise NotFound(relative) from e
        except OSError as e:
            raise UnavailableError(f"{path}: unreadable ({e.strerror})") from e
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise NotAFile(relative, _kind(mode))
            try:
                return f.read()
            except OSError as e:
                raise UnavailableError(f"{path}: unreadable ({e.strerror})") from e

    return read


def url_reader(base_url: str, *, timeout: float = 30.0) -> Reader:
    """Read relative paths below an HTTP(S) base URL (or a file:// URL)."""
    if base_url.startswith("file://"):
        return folder_reader(Path(base_url.removeprefix("file://")))
    base = base_url.rstrip("/") + "/"
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
    )

    def read(relative: str) -> bytes:
        url = base + relative
        try:
            response = http.request("GET", url, preload_content=False)
        except urllib3.exceptions.HTTPError as e:
            raise UnavailableError(f"{url}: unreachable ({e})") from e
        try:
            if response.status == 404:
                raise NotFound(relative)
            if response.status != 200:
                raise UnavailableError(f"{url}: HTTP {response.status}, expected 200")
            data = response.read(MAX_METADATA_BYTES + 1)
            if len(data) > MAX_METADATA_BYTES:
                raise UnavailableError(f"{url}: larger than {MAX_METADATA_BYTES} bytes")
            return bytes(data)
        finally:
            response.release_conn()

    return read


@dataclass
class _Walk:
    read: Reader
    now: datetime
    problems: list[str] = field(default_factory=list)
    # Manufacturer roles past their expiry: contained, not fatal (see `load_verified_library`).
    expired_roles: dict[str, datetime] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def get(self, relative: str) -> bytes | None:
        try:
            return self.read(relative)
        except NotFound as e:
            self.fail(f"{relative}: {e.reason if isinstance(e, NotAFile) else 'missing'}")
            return None

    def expiry(self, name: str, expires: datetime) -> None:
        if expires <= self.now:
            self.fail(
                f"{name}: expired at {expires.isoformat()}, expected a time after {self.now.isoformat()}"
            )


def _read_listed(walk: _Walk, relative: str, meta: MetaFile | None) -> bytes | None:
    """The file's bytes, if present and matching the length and hashes ``meta`` records."""
    data = walk.get(relative)
    if data is None:
        return None
    if meta is not None and (meta.length is not None or meta.hashes):
        try:
            meta.verify_length_and_hashes(data)
        except Exception as e:
            walk.fail(f"{relative}: does not match the length/hash snapshot records ({e})")
            return None
    return data
