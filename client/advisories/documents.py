"""The advisories a library publishes, read through ngclient: the newest revision of each ID.

Each revision is a target of its manufacturer's own role (or bin), verified by ngclient like an
image (client/trust/session.py); only the newest revision is downloaded (a few kilobytes, cached by
hash, so a warm ``cfl check`` reads them from the home). A document that does not parse, or names
another ID or revision than its path, is reported and left out: one manufacturer's mistake must
not stop a supplier's check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from client.trust.catalogue import CatalogueProblem, VerifiedTarget
from client.trust.session import Session
from metadata_templates.advisory import Advisory, AdvisoryError, latest_revisions
from metadata_templates.errors import RejectedInputError


@dataclass(frozen=True)
class AdvisorySet:
    """The newest revision of every advisory of the manufacturers loaded.

    Attributes:
        advisories: by ID order.
        problems: advisory targets left out, and why.
    """

    advisories: tuple[Advisory, ...] = ()
    problems: tuple[CatalogueProblem, ...] = ()


def newest_paths(targets: Iterable[VerifiedTarget]) -> list[str]:
    """The target path of the newest revision of each advisory ID, by ID."""
    latest = latest_revisions([t.path for t in targets])
    return [latest[advisory_id][1] for advisory_id in sorted(latest)]


def load_advisories(session: Session, targets: Iterable[VerifiedTarget]) -> AdvisorySet:
    """Download (or reuse from the cache) and read the newest revision of each advisory.

    Raises:
        UnavailableError: the host could not be reached.
        ConfigurationError: the host refused this home's credentials.
    """
    found: list[Advisory] = []
    problems: list[CatalogueProblem] = []
    for path in newest_paths(targets):
        try:
            data = session.download(path).read_bytes()
        except RejectedInputError as e:  # failed verification: this advisory only
            problems.append(CatalogueProblem(path, str(e)))
            continue
        except OSError as e:
            problems.append(CatalogueProblem(path, f"cannot read the cached copy ({e})"))
            continue
        try:
            advisory = Advisory.from_bytes(data, path)
        except AdvisoryError as e:
            problems.append(CatalogueProblem(path, str(e)))
            continue
        if advisory.target_path != path:
            problems.append(
                CatalogueProblem(
                    path, f"{path}: found {advisory.id} revision {advisory.revision} inside"
                )
            )
            continue
        found.append(advisory)
    return AdvisorySet(tuple(found), tuple(problems))
