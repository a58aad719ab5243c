"""The repository lock as `Repository.locked` holds it: ``R/.lock`` (metadata_templates/locking.py,
an flock with its holder's record), held once per `Repository` object however deeply its holds
nest, and a watch on ``cfl-repo.json`` so a key change committed by another process is read again.

Nesting is per object on purpose: ``refresh`` re-signs and then publishes under one hold, while a
second `Repository` on the same folder (in this process or another) waits or is refused, because
its cached head would otherwise overwrite the first one's commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from metadata_templates.locking import LockPolicy, exclusive_lock
from repo_tool.state.config import CONFIG_FILE

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
SUBJECT = "the repository"


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class RepositoryLock:
    """One `Repository`'s hold on ``R/.lock``."""

    def __init__(self, repo: Path, policy: LockPolicy | None) -> None:
        self.path = repo / LOCK_NAME
        self.policy = policy or LockPolicy(command="cfl-repo")
        self.depth = 0
        self._config_path = repo / CONFIG_FILE
        # cfl-repo.json as this object's configuration was read from (Repository.open sets it)
        self.config_bytes: bytes | None = None

    @contextlib.contextmanager
    def hold(self, on_taken: Callable[[], None]) -> Iterator[None]:
        """Hold the lock for the block; ``on_taken`` runs once it is taken (not when nested).

        Raises:
            BusyError: another process holds it (longer than ``policy.wait``).
        """
        if self.depth:
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
            return
        with exclusive_lock(self.path, subject=SUBJECT, policy=self.policy):
            self.depth = 1
            try:
                on_taken()
                yield
            finally:
                self.depth = 0

    def config_changed(self) -> bool:
        """Whether ``cfl-repo.json`` differs from the bytes this object read (it then remembers
        the new bytes); False when it never read any (a repository being created)."""
        if self.config_bytes is None:
            return False
        now = read_or_none(self._config_path)
        if now is None or now == self.config_bytes:
            return False
        logger.info("%s changed since it was read; reading it again", self._config_path)
        self.config_bytes = now
        return True
