"""A verified, read-only view of a published library: what the website and `status` render.

It is built only by ``repo_tool.verify`` after every signature, delegation and hash was checked, so a
consumer of ``PublishedLibrary`` never sees unverified data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tuf.api.metadata import Metadata, Targets

from metadata_templates.advisory import Advisory
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo
from metadata_templates.notes import CustodianDocument
from metadata_templates.outcomes import OutcomesDocument
from metadata_templates.releases import ReleaseList
from metadata_templates.suppliers import SupplierRegistry
from metadata_templates.withdrawals import Withdrawal


@dataclass(frozen=True)
class PublishedImage:
    """One image target with its verified metadata."""

    target_path: str
    length: int
    sha256: str
    cfl: CflTargetInfo
    role: str
    withdrawal: Withdrawal | None = None


@dataclass(frozen=True)
class RoleSummary:
    """A role's version, expiry and keys, for the trust page and `status`."""

    name: str
    version: int
    expires: datetime
    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class PublishedLibrary:
    """Everything a verified published tree says."""

    root_version: int
    roles: tuple[RoleSummary, ...]
    # A tuple, or from a flat walk repo_tool.verify.lazy.LazyImages (decoded on first use).
    images: Sequence[PublishedImage]
    manufacturers: dict[str, str] = field(default_factory=dict)  # ID -> name
    cpl: CplDocument | None = None
    withdrawals: tuple[Withdrawal, ...] = ()
    # The verified manufacturer roles themselves, for the manufacturer's `submit` to build on.
    role_metadata: Mapping[str, Metadata[Targets]] = field(default_factory=dict)
    targets_metadata: Metadata[Targets] | None = None
    # Manufacturer role name -> when it expired. Those images fail a client's verification until
    # the manufacturer renews; everything else in the library is unaffected.
    expired_roles: Mapping[str, datetime] = field(default_factory=dict)
    # Who release notes are encrypted to (``submit`` reads them): the registry and custodian key.
    suppliers: SupplierRegistry | None = None
    notes_custodian: CustodianDocument | None = None
    log_vkey: str | None = None  # the transparency log's vkey the signed timestamp binds (tlog)
    log_size: int = 0
    releases: ReleaseList = field(default_factory=ReleaseList)  # issue 22: pilot releases, holds
    # The newest revision of each security advisory of the walked roles, by ID, each read and
    # checked like the role's other targets (repo_tool/verify/advisories.py).
    advisories: tuple[Advisory, ...] = ()
    # Every role's signed size as the verified snapshot lists it (name -> bytes), walked or not:
    # what `submit` weighs its bins by to grow them (metadata_templates/bin_rule.py).
    role_lengths: Mapping[str, int] = field(default_factory=dict)
    # Issue 24: the provider's combined delivery outcomes and holds (cfl/outcomes.json), if any.
    outcomes: OutcomesDocument | None = None
