"""The gateway's values: the codes of its findings, what it is told (the context) and what it answers (the verdict). Pure data, no checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates.advisory import Advisory
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import (
    CflTargetInfo,
)
from metadata_templates.notes import CustodianDocument
from metadata_templates.policy import DEFAULT_POLICY
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.gateway.notes import (
    NOTES_NOT_ENCRYPTED,
    NOTES_RECIPIENTS_MISMATCH,
    NOTES_TARGET_MISMATCH,
)
from repo_tool.intake.describe import (
    ImageDigests,
)

DEFAULT_IMAGE_SIZE_CAP = 10_240_000  # octets: the DUIS limit for one image


CLOCK_SKEW = timedelta(hours=1)


class Code(StrEnum):
    """Gateway rejection codes (ARCHITECTURE.md), plus the few this implementation found it needed."""

    MALFORMED_IMAGE = "malformed-image"
    IMAGE_TOO_LARGE = "image-too-large"
    HASH_NOT_ON_CPL = "hash-not-on-cpl"
    MANUFACTURER_MISMATCH = "manufacturer-mismatch"
    FIRMWARE_VERSION_MISMATCH = "firmware-version-mismatch"
    HARDWARE_VERSION_OUT_OF_RANGE = "hardware-version-out-of-range"
    CPL_ENTRY_NOT_ACTIVE = "cpl-entry-not-active"
    DUPLICATE_IMAGE = "duplicate-image"
    BAD_SIGNATURE = "bad-signature"
    THRESHOLD_NOT_MET = "threshold-not-met"
    OUTSIDE_DELEGATION = "outside-delegation"
    STALE_ROLE_VERSION = "stale-role-version"
    UNKNOWN_MANUFACTURER = "unknown-manufacturer"
    MISSING_DECLARATION = "missing-declaration"
    # Additions: a bundle that is not a bundle; signed metadata that does not describe the image it
    # carries; a role that edits or drops what was lodged before; declared entries for different kinds
    # of device; role metadata already expired.
    MALFORMED_BUNDLE = "malformed-bundle"
    TARGET_METADATA_MISMATCH = "target-metadata-mismatch"
    ROLE_CONTENT_ALTERED = "role-content-altered"
    DECLARATION_INCONSISTENT = "declaration-inconsistent"
    ROLE_EXPIRED = "role-expired"
    ROLE_EXPIRY_TOO_FAR = "role-expiry-too-far"
    # Encrypted release notes (metadata_templates/notes.py, repo_tool/gateway/notes.py).
    NOTES_NOT_ENCRYPTED = NOTES_NOT_ENCRYPTED
    NOTES_RECIPIENTS_MISMATCH = NOTES_RECIPIENTS_MISMATCH
    NOTES_TARGET_MISMATCH = NOTES_TARGET_MISMATCH
    # keys branch: the provider suspended the manufacturer (`cfl-repo manufacturer suspend`).
    MANUFACTURER_SUSPENDED = "manufacturer-suspended"
    # Hash bins (repo_tool/gateway/bins.py): a target in a bin the succinct rule does not assign it
    # to, a bin the manufacturer's succinct delegation does not list, or a bin where a role is due.
    WRONG_BIN = "wrong-bin"
    # Issue 13: a first deposit while the targets key is offline; the delegation comes with the
    # manufacturer's enrolment (`cfl-repo manufacturer enrol`), never with a deposit.
    NOT_ENROLLED = "manufacturer-not-enrolled"
    # Security advisories (repo_tool/gateway/advisory.py).
    ADVISORY_MALFORMED = "advisory-malformed"
    ADVISORY_TOO_LARGE = "advisory-too-large"
    ADVISORY_UNKNOWN_ENTRY = "advisory-unknown-entry"
    ADVISORY_FIX_MISSING = "advisory-fix-missing"
    ADVISORY_FIX_NOT_APPLICABLE = "advisory-fix-not-applicable"
    ADVISORY_STALE_REVISION = "advisory-stale-revision"


@dataclass(frozen=True)
class Finding:
    """One reason a bundle is rejected."""

    code: Code
    message: str


@dataclass(frozen=True)
class RegisteredManufacturer:
    """A manufacturer the provider has registered: its keys and threshold."""

    id: str
    name: str
    keys: Mapping[str, Key]
    threshold: int


@dataclass(frozen=True)
class LibraryIndex:
    """What the library holds already, for the duplicate check."""

    file_sha256: Mapping[str, str] = field(default_factory=dict)  # -> target
    manufacturer_image_sha256: Mapping[str, str] = field(default_factory=dict)  # -> target
    cpl_entries: Mapping[str, str] = field(default_factory=dict)  # CPL Entry ID -> target


@dataclass(frozen=True)
class GatewayContext:
    """Everything the gateway compares a bundle against."""

    cpl: CplDocument | None
    manufacturers: Mapping[str, RegisteredManufacturer]
    current_role: Callable[
        [str], Metadata[Targets] | None
    ]  # role name -> staged role, None if none yet
    index: LibraryIndex
    now: datetime
    image_size_cap: int = DEFAULT_IMAGE_SIZE_CAP
    # (least, most) remaining validity of an admitted manufacturer role: the policy's values.
    role_validity: tuple[timedelta, timedelta] = DEFAULT_POLICY.manufacturer_validity()
    # The published registry and custodian key: who a deposit's release notes must be encrypted to.
    suppliers: SupplierRegistry | None = None
    notes_custodian: CustodianDocument | None = None
    suspended: Mapping[str, str] = field(default_factory=dict)  # manufacturer ID -> reason


@dataclass(frozen=True)
class StagedRole:
    """One signed role version an accepted bundle stages, with its bytes exactly as signed."""

    name: str
    role: Metadata[Targets]
    data: bytes


@dataclass(frozen=True)
class Accepted:
    """What an accepted bundle adds to the library."""

    role_name: str
    role: Metadata[Targets]
    target: TargetFile
    info: CflTargetInfo
    digests: ImageDigests
    notes_target: TargetFile | None = None  # the image's encrypted release notes, when deposited
    # Hash bins: every bin the deposit re-signs (the image's and its notes'), staged together.
    bins: tuple[StagedRole, ...] = ()


@dataclass(frozen=True)
class AcceptedAdvisory:
    """What an accepted advisory bundle adds: one revision, in the role (or bin) it re-signs."""

    advisory: Advisory
    target: TargetFile
    staged: tuple[StagedRole, ...]


@dataclass(frozen=True)
class Verdict:
    """The gateway's answer for one bundle."""

    findings: tuple[Finding, ...]
    target: str | None
    accepted: Accepted | None
    renewal: Metadata[Targets] | None = None  # an accepted renewal: the re-signed role
    # What the operator should know about an accepted bundle (not reasons to reject it).
    notes: tuple[str, ...] = ()
    # Hash bins: an accepted renewal of a split manufacturer or a `split-bins` bundle stages these
    # (the manufacturer role first when it is re-signed).
    staged: tuple[StagedRole, ...] = ()
    advisory: AcceptedAdvisory | None = None  # an accepted advisory revision

    @property
    def ok(self) -> bool:
        return (
            self.accepted is not None
            or self.renewal is not None
            or bool(self.staged)
            or self.advisory is not None
        )

    @property
    def codes(self) -> list[str]:
        return sorted({f.code.value for f in self.findings})


class Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, code: Code, message: str) -> None:
        self.items.append(Finding(code, message))

    def has(self, *codes: Code) -> bool:
        return any(f.code in codes for f in self.items)
