"""``cfl refresh``: bring the home's trusted metadata up to the library's newest verified state."""

from __future__ import annotations

from dataclasses import dataclass

from client.trust.catalogue import advisory_targets
from client.trust.home import ClientHome
from client.trust.library import open_guarded_session
from client.trust.session import UnverifiedRole
from client.trust.withdrawal_history import LoggedWithdrawals, LogWithdrawalsReader
from metadata_templates import naming
from metadata_templates.advisory import latest_revisions
from metadata_templates.errors import VerificationError


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh verified.

    Attributes:
        versions: the verified top-level role versions.
        manufacturers: manufacturer IDs the library delegates to.
        unverified: manufacturer roles that did not verify (reported; the rest are usable).
        log_size: the size of the transparency log checkpoint now trusted (None: no log read).
    """

    versions: dict[str, int]
    manufacturers: list[str]
    unverified: tuple[UnverifiedRole, ...]
    log_size: int | None = None


def refresh_library(
    home: ClientHome, *, read_log: LogWithdrawalsReader | None = None
) -> RefreshResult:
    """Verify the newest metadata, the withdrawal list, every manufacturer's role and the provider
    documents.

    The withdrawal list must keep every withdrawal this home saw before and, with ``read_log``
    (which checks the transparency log and returns the withdrawals logged since the home last
    searched it), every withdrawal the log holds; otherwise the refresh is refused and the home
    keeps the trusted state it had (client/trust/withdrawal_guard.py).

    Afterwards ``--offline`` works: it serves ngclient only what is in the home, so every role and
    provider document is brought up to the new snapshot here (when nothing changed they are all
    cached already and only ``timestamp.json`` is fetched).

    Raises:
        ConfigurationError: the home is not initialised, or the host refused its credentials.
        VerificationError: the top-level metadata, the log or a provider document failed
            verification, or the withdrawal list lost an entry.
        UnavailableError: the library could not be reached, or the home is locked.
    """
    home.load_config()  # before the lock, which creates the folder: a mistyped --home leaves none
    with home.lock():
        session, guard = open_guarded_session(home, offline=False, deferred=True)
        logged: LoggedWithdrawals | None = None
        try:
            session.refresh()
            document = session.withdrawals()  # checked against the home's history on the way
            if read_log is not None:
                logged = read_log(guard.log_size())
                if logged is not None:
                    guard.accept(document, logged)
        except VerificationError:
            guard.refuse()  # nothing a refused refresh verified stays trusted
            raise
        guard.commit()
        loaded = session.load_manufacturers(None)
        for path in naming.PROVIDER_TARGET_PATHS:
            session.provider_document(path)
        # The newest revision of each advisory, so `cfl advisories --offline` and `cfl check
        # --offline` see what this refresh verified.
        newest = latest_revisions([t.path for t in advisory_targets(loaded.targets)])
        for _revision, path in newest.values():
            session.download(path)
        return RefreshResult(
            versions=session.versions(),
            manufacturers=session.delegated_manufacturers(),
            unverified=loaded.unverified,
            log_size=None if logged is None else logged.size,
        )
