"""``cfl refresh``: bring the home's trusted metadata up to the library's newest verified state."""

from __future__ import annotations

from dataclasses import dataclass

from client.trust.catalogue import advisory_targets
from client.trust.home import ClientHome
from client.trust.library import open_session
from client.trust.session import UnverifiedRole
from metadata_templates import naming
from metadata_templates.advisory import latest_revisions


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh verified.

    Attributes:
        versions: the verified top-level role versions.
        manufacturers: manufacturer IDs the library delegates to.
        unverified: manufacturer roles that did not verify (reported; the rest are usable).
    """

    versions: dict[str, int]
    manufacturers: list[str]
    unverified: tuple[UnverifiedRole, ...]


def refresh_library(home: ClientHome) -> RefreshResult:
    """Verify the newest metadata, every manufacturer's role and the provider documents.

    Afterwards ``--offline`` works: it serves ngclient only what is in the home, so every role and
    provider document is brought up to the new snapshot here (when nothing changed they are all
    cached already and only ``timestamp.json`` is fetched).

    Raises:
        ConfigurationError: the home is not initialised, or the host refused its credentials.
        VerificationError: the top-level metadata or a provider document failed verification.
        UnavailableError: the library could not be reached, or the home is locked.
    """
    home.load_config()  # before the lock, which creates the folder: a mistyped --home leaves none
    with home.lock():
        session = open_session(home, offline=False)
        session.refresh()
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
        )
