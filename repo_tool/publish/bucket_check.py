"""The verdict of `cfl-repo verify-bucket`: is every object that must be immutable held by S3 Object
Lock? Pure: it judges the version history that repo_tool/publish/s3_lock.py read from the bucket,
with the clock passed in.

Compliance mode stops a locked version being deleted or its retention shortened, by anyone; it does
not stop a delete marker hiding the key (clients then get 404) nor a new version being put over it
(clients then get other bytes, which TUF refuses). So the check looks at every version of every
immutable key (``repo_tool.publish.retention.kind_of``), not only at the current one.

Finding codes are stable (docs/hosting.md, "Immutable storage (S3 Object Lock)"); scripts match on
them. ``retention-expiring`` is a warning (the object is still locked today); every other code is a
problem and makes the command exit 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from repo_tool.publish.retention import COMPLIANCE, GOVERNANCE, kind_of

BUCKET_LOCK_DISABLED = "bucket-lock-disabled"
NOT_LOCKED = "not-locked"
GOVERNANCE_MODE = "governance-mode"
RETENTION_EXPIRED = "retention-expired"
RETENTION_EXPIRING = "retention-expiring"
DELETE_MARKER = "delete-marker"
OVERWRITTEN = "overwritten"
FINDING_CODES = (
    BUCKET_LOCK_DISABLED,
    NOT_LOCKED,
    GOVERNANCE_MODE,
    RETENTION_EXPIRED,
    RETENTION_EXPIRING,
    DELETE_MARKER,
    OVERWRITTEN,
)
WARNING_CODES = frozenset({RETENTION_EXPIRING})
PROBLEM = "problem"
WARNING = "warning"


@dataclass(frozen=True)
class ObjectVersion:
    """One version of one key, as the bucket reports it.

    Attributes:
        version_id: S3's version ID (``"null"`` on a bucket that never had versioning).
        size: bytes.
        content: what identifies the bytes: ``md5:<hex>`` from a plain ETag, or ``sha256:<hex>``
            of the bytes when an ETag does not decide it (multipart, SSE-KMS).
        lock_mode: ``COMPLIANCE``, ``GOVERNANCE`` or None (head_object's ``ObjectLockMode``).
        retain_until: head_object's ``ObjectLockRetainUntilDate``, or None.
    """

    version_id: str
    size: int
    content: str
    lock_mode: str | None = None
    retain_until: datetime | None = None


@dataclass(frozen=True)
class KeyHistory:
    """Every version of one key under the prefix, newest first.

    Attributes:
        key: relative to the prefix (a path of the published tree).
        versions: the object versions, newest first.
        hidden_by: the ID of the delete marker that is the key's latest version, or None.
    """

    key: str
    versions: tuple[ObjectVersion, ...]
    hidden_by: str | None = None


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or about to be) with one object version, or with the bucket."""

    code: str
    key: str | None
    version_id: str | None
    message: str

    @property
    def severity(self) -> str:
        return WARNING if self.code in WARNING_CODES else PROBLEM

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "key": self.key,
            "version_id": self.version_id,
            "message": self.message,
        }


def _retention(
    key: str, version: ObjectVersion, now: datetime, warn_before: datetime
) -> Finding | None:
    """The one finding about one version's lock, if any (the worst first)."""
    vid = version.version_id
    if version.lock_mode is None or version.retain_until is None:
        return Finding(
            NOT_LOCKED,
            key,
            vid,
            f"{key} (version {vid}): object lock: found none, expected {COMPLIANCE} retention "
            "(anyone allowed s3:DeleteObjectVersion can delete it)",
        )
    if version.lock_mode == GOVERNANCE:
        return Finding(
            GOVERNANCE_MODE,
            key,
            vid,
            f"{key} (version {vid}): object lock mode: found {GOVERNANCE}, expected {COMPLIANCE} "
            "(s3:BypassGovernanceRetention lets its holder delete it)",
        )
    if version.lock_mode != COMPLIANCE:
        return Finding(
            NOT_LOCKED,
            key,
            vid,
            f"{key} (version {vid}): object lock mode: found {version.lock_mode!r}, "
            f"expected {COMPLIANCE}",
        )
    until = version.retain_until.isoformat()
    if version.retain_until <= now:
        return Finding(
            RETENTION_EXPIRED,
            key,
            vid,
            f"{key} (version {vid}): retain until: found {until}, expected a date after "
            f"{now.isoformat()} (the lock has lapsed; it can be deleted)",
        )
    if version.retain_until < warn_before:
        return Finding(
            RETENTION_EXPIRING,
            key,
            vid,
            f"{key} (version {vid}): retain until: found {until}, expected at least "
            f"{warn_before.isoformat()} (extend it before it lapses)",
        )
    return None


def check_key(history: KeyHistory, *, now: datetime, min_days: int) -> list[Finding]:
    """Findings for one immutable key: hidden, overwritten, and each version's retention."""
    key = history.key
    findings: list[Finding] = []
    if history.hidden_by is not None:
        findings.append(
            Finding(
                DELETE_MARKER,
                key,
                history.hidden_by,
                f"{key}: latest version: found delete marker {history.hidden_by}, expected the "
                "object (clients get 404; delete the marker to restore it)",
            )
        )
    contents = {(v.size, v.content) for v in history.versions}
    if len(contents) > 1:
        findings.append(
            Finding(
                OVERWRITTEN,
                key,
                history.versions[0].version_id if history.versions else None,
                f"{key}: versions: found {len(history.versions)} with {len(contents)} different "
                "contents, expected one content (an immutable name was written over)",
            )
        )
    warn_before = now + timedelta(days=min_days)
    for version in history.versions:
        finding = _retention(key, version, now, warn_before)
        if finding is not None:
            findings.append(finding)
    return findings


def check_bucket(
    histories: Iterable[KeyHistory], *, lock_enabled: bool, url: str, now: datetime, min_days: int
) -> list[Finding]:
    """Every finding for a bucket prefix, bucket-level first, then key by key in key order.

    Args:
        histories: the version history of every key under the prefix; keys whose kind is not
            locked (``timestamp.json``, the site, partial tiles, ...) are ignored here.
        lock_enabled: whether the bucket has Object Lock enabled.
        url: ``s3://BUCKET/PREFIX``, for messages.
        now: the clock.
        min_days: a retention ending sooner than this many days from ``now`` is a warning.
    """
    findings: list[Finding] = []
    if not lock_enabled:
        findings.append(
            Finding(
                BUCKET_LOCK_DISABLED,
                None,
                None,
                f"{url}: Object Lock: found not enabled, expected enabled (without it no object "
                "can be locked)",
            )
        )
    for history in sorted(histories, key=lambda h: h.key):
        if kind_of(history.key).locked:
            findings.extend(check_key(history, now=now, min_days=min_days))
    return findings
