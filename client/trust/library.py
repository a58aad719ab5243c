"""The library as one command sees it: a verified session on the home, and the catalogue built from it.

Every command opens the home the same way (online through the transport, or ``--offline`` from what
the last refresh verified) and asks for the catalogue of some manufacturers. A manufacturer whose
role does not verify is reported in ``Catalogue.unverified`` and left out; the rest is usable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tuf.ngclient import FetcherInterface

from client.trust.catalogue import (
    CatalogueImage,
    CatalogueProblem,
    VerifiedTarget,
    Viewer,
    advisory_targets,
    build_catalogue,
)
from client.trust.home import ClientHome
from client.trust.session import LocalFetcher, Session, SessionPaths, UnverifiedRole
from client.trust.transport import CflFetcher
from client.trust.withdrawal_guard import WithdrawalGuard
from metadata_templates.outcomes import OutcomesDocument
from metadata_templates.withdrawals import WithdrawalList

# A URL that never resolves: offline sessions are served by LocalFetcher, which strips it again.
OFFLINE_URL = "https://offline.invalid/"
# A library that publishes no cfl/outcomes.json holds nothing.
NO_OUTCOMES = OutcomesDocument(updated="1970-01-01T00:00:00Z")


@dataclass(frozen=True)
class Catalogue:
    """The verified images of the manufacturers asked for.

    Attributes:
        images: every verified image, withdrawn ones marked.
        withdrawals: the provider's verified withdrawal list.
        ignored: verified targets left out because their CFL metadata is unusable.
        unverified: manufacturer roles that did not verify; their images are absent.
    """

    images: tuple[CatalogueImage, ...]
    withdrawals: WithdrawalList
    ignored: tuple[CatalogueProblem, ...]
    unverified: tuple[UnverifiedRole, ...]
    # Every revision of the security advisories those manufacturers signed (client/advisories/).
    advisories: tuple[VerifiedTarget, ...] = ()
    # Issue 24: the verified delivery outcomes (combined figures, holds); empty when unpublished.
    outcomes: OutcomesDocument = NO_OUTCOMES

    def unverified_among(self, manufacturers: Iterable[str]) -> tuple[UnverifiedRole, ...]:
        """The unverified roles of the given manufacturers (what the user asked for)."""
        asked = set(manufacturers)
        return tuple(u for u in self.unverified if u.manufacturer_id in asked)


def open_session(home: ClientHome, *, offline: bool) -> Session:
    """A session on the home's trusted metadata: online through the transport, or offline. Every
    withdrawal list it verifies is checked against the withdrawals the home saw before.

    Must be called under ``home.lock()``.

    Raises:
        ConfigurationError: the home is not initialised or its configuration is unusable.
        VerificationError: the home's trusted root is not valid root metadata.
    """
    return open_guarded_session(home, offline=offline)[0]


def open_guarded_session(
    home: ClientHome, *, offline: bool, deferred: bool = False
) -> tuple[Session, WithdrawalGuard]:
    """``open_session``, and the guard that checks its withdrawal lists (for the commands that
    also cross-check them against the transparency log: ``deferred``, then ``guard.commit()``).

    Raises:
        ConfigurationError: the home is not initialised or its configuration is unusable.
        VerificationError: the home's trusted root is not valid root metadata.
    """
    config = home.load_config()
    guard = WithdrawalGuard(home, deferred=deferred)  # before ngclient moves anything
    paths = SessionPaths(home.metadata_dir, home.targets_dir)
    if offline:
        url: str = OFFLINE_URL
        fetcher: FetcherInterface = LocalFetcher(home.metadata_dir, home.targets_dir, OFFLINE_URL)
    else:
        url, fetcher = config.repository_url, CflFetcher(config.transport_settings())
    session = Session(
        paths,
        url,
        fetcher,
        bootstrap_root=home.bootstrap_root(),
        check_withdrawals=guard.accept,
    )
    return session, guard


def viewer_of(home: ClientHome, now: datetime | None) -> Viewer:
    """The home's organisation (``cfl init --entity``) at ``now``: who sees which pilot images."""
    return Viewer(home.load_config().entity_id, now)


def load_catalogue(
    session: Session, manufacturers: Iterable[str] | None, *, viewer: Viewer | None = None
) -> Catalogue:
    """Refresh, then verify the roles of ``manufacturers`` (all when None) and build the catalogue
    as ``viewer`` may see it (None: an organisation in no pilot, with no clock).

    Raises:
        VerificationError: the top-level metadata or a provider document failed verification.
        UnavailableError: the top-level metadata could not be fetched.
        ConfigurationError: the host refused this home's credentials.
    """
    session.refresh()
    withdrawals = session.withdrawals()
    releases = session.releases()
    outcomes = session.outcomes()
    loaded = session.load_manufacturers(manufacturers)
    images, ignored = build_catalogue(
        loaded.targets, withdrawals, releases=releases, viewer=viewer, holds=outcomes.holds()
    )
    return Catalogue(
        images, withdrawals, ignored, loaded.unverified, advisory_targets(loaded.targets), outcomes
    )
