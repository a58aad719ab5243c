"""``cfl advisories``: the advisories a library publishes, or those the estate runs into.

Without an estate every manufacturer's role is loaded and every advisory listed; with one, the
estate check's pipeline runs (only the estate's manufacturers, no history recorded) and each
advisory comes with the groups and devices it affects and the path out (client/estate/advisories.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client.advisories.documents import AdvisorySet, load_advisories
from client.estate.advisories import GroupAdvisory
from client.estate.check import check_with_session
from client.estate.reader import GroupKey
from client.estate.report import CheckReport
from client.trust.home import ClientHome
from client.trust.library import Catalogue, load_catalogue, open_session
from metadata_templates.cpl_document import CplDocument


@dataclass(frozen=True)
class AdvisoriesRun:
    """What ``cfl advisories`` found.

    Attributes:
        advisories: the newest revision of each advisory of the manufacturers loaded.
        catalogue: the verified images of those manufacturers.
        cpl: the verified published CPL (model names for the exports).
        report: the estate check, when an estate was given.
    """

    advisories: AdvisorySet
    catalogue: Catalogue
    cpl: CplDocument
    report: CheckReport | None = None
    namespace: str = "https://cfl.invalid/"  # the library's URL: CSAF's publisher namespace

    def groups(self) -> list[tuple[GroupKey, int, tuple[GroupAdvisory, ...]]] | None:
        """(group, devices, advisories) per estate group; None without an estate."""
        if self.report is None:
            return None
        alerts = self.report.advisories or tuple(() for _ in self.report.groups)
        return [
            (group.key, group.device_count, found)
            for group, found in zip(self.report.groups, alerts, strict=True)
        ]


def run_advisories(home: ClientHome, estate: Path | None, *, offline: bool) -> AdvisoriesRun:
    """Load the verified advisories, and match them against ``estate`` when given.

    Raises:
        ConfigurationError: the home is not initialised or the host refused its credentials.
        EstateError: the estate is unusable.
        VerificationError: the top-level metadata or the CPL failed verification.
        UnavailableError: the library or the estate could not be read, or the home is locked.
    """
    url = home.load_config().repository_url
    with home.lock():
        session = open_session(home, offline=offline)
        if estate is None:
            catalogue = load_catalogue(session, None)
            found = load_advisories(session, catalogue.advisories)
            return AdvisoriesRun(found, catalogue, session.cpl(), namespace=url)
        report, catalogue, found = check_with_session(session, estate, strict=False)
        return AdvisoriesRun(found, catalogue, session.cpl(), report, namespace=url)
