"""Which published objects S3 Object Lock must keep forever, and the retention a put asks for.

DP073: nothing lodged can be deleted, not even by the provider. On object storage that is S3 Object
Lock in compliance mode: a locked object version can be neither deleted nor overwritten by anyone,
the bucket's root account included, until its retain-until date. Only objects whose name fixes
their bytes may be locked; a lock on ``timestamp.json`` would not stop it being replaced (a new
version) but would keep every superseded copy for years, and the site is rebuilt on every publish.
Snapshot and role versions other than root are not lodged items: they are deleted a grace period
after they are superseded (repo_tool/publish/superseded.py), so they are not locked either.

``kind_of`` is the one place that decides it, from the path alone (relative to the published
tree), so the publisher that sets the lock and ``cfl-repo verify-bucket`` that checks it cannot
disagree. Pure: no boto3, no clock (``now`` is a parameter).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

COMPLIANCE = "COMPLIANCE"
GOVERNANCE = "GOVERNANCE"
# S3 accepts retention periods of up to 100 years; longer is refused by the API.
MAX_LOCK_DAYS = 36500


class ObjectKind(Enum):
    """What a path of the published tree is, and whether Object Lock must hold it."""

    # targets/<dirs>/<sha256>.<name>: an image, its notes, the CPL, any provider document.
    BLOB = "blob"
    # metadata/<N>.root.json: clients walk the root chain from version 1, so every one stays.
    ROOT = "root"
    # metadata/<N>.<role>.json for any other role: read only while it is current, and deleted a
    # grace period after a newer version is served (repo_tool/publish/superseded.py). Not lodged:
    # the images it lists are, and each stays listed, signed, in the role's current version.
    METADATA = "metadata"
    # log/tile/<L>/<N> and log/tile/entries/<N> without .p/W: a full tile never changes.
    LOG_TILE = "log-tile"
    # log/cfl-index/<sha256>: a deposit's log index, derived from a committed entry.
    LOG_INDEX = "log-index"
    # metadata/timestamp.json: replaced by every publish.
    TIMESTAMP = "timestamp"
    # log/checkpoint: replaced whenever the log grows.
    CHECKPOINT = "checkpoint"
    # log/tile/.../<N>.p/<W>: superseded by the full tile; c2sp.org/tlog-tiles lets a log
    # delete it once the full tile exists, so it must stay deletable.
    PARTIAL_TILE = "partial-tile"
    # site/...: rebuilt in place by every publish.
    SITE = "site"
    # anything else (an unversioned metadata name, a target without its hash, a dotfile):
    # not a name this repository publishes as immutable.
    OTHER = "other"

    @property
    def locked(self) -> bool:
        """True for the kinds Object Lock must hold."""
        return self in _LOCKED


_LOCKED = frozenset({ObjectKind.BLOB, ObjectKind.ROOT, ObjectKind.LOG_TILE, ObjectKind.LOG_INDEX})

_SEGMENT = r"[A-Za-z0-9._~-]+"
_SHA256 = r"[0-9a-f]{64}"
_TILE = r"log/tile/(?:[0-9]|[1-5][0-9]|6[0-3]|entries)/(?:x[0-9]{3}/)*[0-9]{3}"
_PARTIAL_WIDTH = r"\.p/(?:[1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])"
_PATTERNS: tuple[tuple[re.Pattern[str], ObjectKind], ...] = (
    (re.compile(r"metadata/timestamp\.json"), ObjectKind.TIMESTAMP),
    # Versions start at 1 and have no leading zero, as python-tuf writes them.
    (re.compile(r"metadata/[1-9][0-9]*\.root\.json"), ObjectKind.ROOT),
    (re.compile(r"metadata/[1-9][0-9]*\.[A-Za-z0-9][A-Za-z0-9_-]*\.json"), ObjectKind.METADATA),
    (re.compile(rf"targets/(?:{_SEGMENT}/)*{_SHA256}\.[A-Za-z0-9._~-]+"), ObjectKind.BLOB),
    (re.compile(r"log/checkpoint"), ObjectKind.CHECKPOINT),
    (re.compile(_TILE), ObjectKind.LOG_TILE),
    (re.compile(_TILE + _PARTIAL_WIDTH), ObjectKind.PARTIAL_TILE),
    (re.compile(rf"log/cfl-index/{_SHA256}"), ObjectKind.LOG_INDEX),
    (re.compile(r"site/.+"), ObjectKind.SITE),
)


def kind_of(path: str) -> ObjectKind:
    """The kind of one path of the published tree (relative to its root, e.g. ``metadata/3.targets.json``).

    Anything that does not match a published name exactly is ``OTHER`` (never locked): a
    ``..`` segment, upper-case hex in a hash, a leading zero in a version, a trailing slash.
    """
    # No empty, "." or ".." segment: a name that a path resolver would read as another name is
    # not the name that was published.
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return ObjectKind.OTHER
    for pattern, kind in _PATTERNS:
        if pattern.fullmatch(path):
            return kind
    return ObjectKind.OTHER


@dataclass(frozen=True)
class LockPolicy:
    """The retention every immutable object of one publish is put with.

    Attributes:
        days: how long (1..``MAX_LOCK_DAYS``) from ``now``.
        now: the publish's clock (injected; the retain-until date is computed once per publish).
    """

    days: int
    now: datetime

    def __post_init__(self) -> None:
        if not 1 <= self.days <= MAX_LOCK_DAYS:
            raise ValueError(f"object lock days: found {self.days}, expected 1..{MAX_LOCK_DAYS}")

    @property
    def retain_until(self) -> datetime:
        return self.now + timedelta(days=self.days)


def lock_put_args(relative: str, data: bytes, policy: LockPolicy) -> dict[str, object]:
    """The extra PutObject arguments for one object: the compliance lock when ``kind_of`` says it
    must be locked, nothing otherwise.

    ``ContentMD5`` goes with the lock because S3 refuses a locked put without an integrity
    checksum, and not every S3-compatible server accepts the newer ``x-amz-checksum-*`` headers.
    """
    if not kind_of(relative).locked:
        return {}
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    return {
        "ObjectLockMode": COMPLIANCE,
        "ObjectLockRetainUntilDate": policy.retain_until,
        "ContentMD5": base64.b64encode(md5).decode("ascii"),
    }
