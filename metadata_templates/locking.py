"""An exclusive, non-blocking lock on a working directory (a repository or a client home), so two
processes never interleave writes. Shared by both sides, which may not import each other."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from metadata_templates.atomic import errors_name
from metadata_templates.errors import UnavailableError


@contextlib.contextmanager
def exclusive_lock(path: Path, *, what: str) -> Iterator[None]:
    """Hold an flock on ``path`` for the block; fail at once if another process holds it.

    Raises:
        UnavailableError: another process holds the lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise UnavailableError(
                f"another process holds the lock on {path}",
                hint=f"wait for the other {what} to finish; the lock is released when it exits",
            ) from e
        with errors_name(path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock
