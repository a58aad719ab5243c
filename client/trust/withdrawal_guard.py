"""The withdrawal rule at the home's edge: check each verified withdrawal list against what the home
remembers (client/trust/withdrawal_history.py), remember what passes, and on a refusal put back the
trusted state the command had already moved.

ngclient persists each top-level role as soon as it verifies it, so by the time the withdrawal list
(a provider target) is read, the new timestamp, snapshot, targets and ``cfl-provider`` are on disk,
with the list's own cached copy and the transparency log checkpoint the timestamp binds. A refusal restores those files from
the copy taken when the session opened, so the home keeps trusting the state it trusted before the
forged list arrived (a later genuine version is still accepted: nothing was raised above it). The
history file itself is written only after a check passes, atomically, under the home's lock: a
kill -9 at any point leaves the old history or the new one, and a forged list is refused again on
the next run whatever was left on disk, since every command checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib import parse

from tuf.api.metadata import Snapshot, Targets, Timestamp

from client.trust.home import ClientHome
from client.trust.session import target_cache_name
from client.trust.withdrawal_history import LoggedWithdrawals
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError, VerificationError
from metadata_templates.naming import PROVIDER_ROLE, PROVIDER_TARGET_PATHS
from metadata_templates.withdrawals import WithdrawalList

# The roles ngclient may have moved before a withdrawal list is read. Root is left alone: a new root
# is signed offline, by keys an online-key thief does not hold.
_ROLES = (Timestamp.type, Snapshot.type, Targets.type, PROVIDER_ROLE)
# What client/log/transparency.py's HomeLog moves forward on a refresh or download.
_LOG_FILES = ("checkpoint", "vkey")


def persisted_role_file(metadata_dir: Path, role: str) -> Path:
    """Where ngclient keeps its trusted copy of ``role``: ``<role>.json``, URL-quoted (its
    ``_persist_metadata``; client/trust/session.py's offline reader relies on the same layout)."""
    return metadata_dir / f"{parse.quote(role, '')}.json"


@dataclass(frozen=True)
class TrustedState:
    """The bytes of the trusted files a command may move, as they were (None: absent)."""

    files: tuple[tuple[Path, bytes | None], ...]

    @classmethod
    def capture(cls, home: ClientHome) -> TrustedState:
        paths = [persisted_role_file(home.metadata_dir, role) for role in _ROLES]
        # The provider documents' cached copies too: ngclient names them by path, so the thief's
        # list replaces the trusted one there, and --offline reads the cache.
        paths += [home.targets_dir / target_cache_name(p) for p in PROVIDER_TARGET_PATHS]
        paths += [home.log_dir / name for name in _LOG_FILES]
        return cls(tuple((path, _read(path)) for path in paths))

    def restore(self) -> None:
        """Put every file back as it was.

        Raises:
            UnavailableError: the home cannot be written.
        """
        try:
            for path, data in self.files:
                if data is None:
                    path.unlink(missing_ok=True)
                elif _read(path) != data:
                    atomic_write_bytes(path, data)
        except OSError as e:
            raise UnavailableError(
                f"cannot restore the trusted state in {path.parent} ({e.strerror or e})"
            ) from e


class WithdrawalGuard:
    """One command's check of the withdrawal lists it verifies, against the home's history.

    Create it under the home's lock, before the session that will move the trusted state. With
    ``deferred``, what passes is remembered only at ``commit``: a command that checks the list
    against the log after reading it (refresh, download) remembers nothing from a list the log
    then refuses.
    """

    def __init__(self, home: ClientHome, *, deferred: bool = False) -> None:
        """Raises:
        ConfigurationError: the home's history file is malformed."""
        self.home = home
        self.before = TrustedState.capture(home)
        self.document: WithdrawalList | None = None
        self._deferred = deferred
        self._saved = home.withdrawal_history()
        self._pending = self._saved

    def log_size(self) -> int:
        """How far the home has searched the transparency log for withdrawals."""
        return self._pending.log_size

    def accept(self, document: WithdrawalList, logged: LoggedWithdrawals | None = None) -> None:
        """Refuse ``document`` if it loses a withdrawal the home saw or the log holds; otherwise
        remember its withdrawals (and how far the log was read).

        Raises:
            VerificationError: refused; the trusted state captured at the start is restored.
            UnavailableError: the home cannot be written.
        """
        try:
            self._pending = self._pending.check(document, logged)
        except VerificationError:
            self.before.restore()
            raise
        self.document = document
        if not self._deferred:
            self.commit()

    def commit(self) -> None:
        """Remember what passed (atomically; the caller holds the home's lock).

        Raises:
            UnavailableError: the home cannot be written.
        """
        if self._pending != self._saved:
            self.home.save_withdrawal_history(self._pending)
            self._saved = self._pending

    def refuse(self) -> None:
        """Restore the trusted state after some other verification failed (e.g. the log).

        Raises:
            UnavailableError: the home cannot be written.
        """
        self.before.restore()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
