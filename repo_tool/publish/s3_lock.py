"""S3 Object Lock at the boto3 edge: publishing with compliance retention, and reading what a bucket
holds for `cfl-repo verify-bucket`.

Publishing: ``locking_bucket`` refuses a bucket without Object Lock before anything is signed or
uploaded; the ``LockingS3Bucket`` it returns is an ``S3Bucket`` whose puts of immutable objects
(``repo_tool.publish.retention.kind_of``) carry ``ObjectLockMode=COMPLIANCE`` and a retain-until date
of the publish's ``now`` plus N days. Everything else about a publish is unchanged: an object that
is already there with the same bytes is skipped (so re-publishing onto locked objects never fails,
and keeps their first retention), one with other bytes stops the publish before the timestamp.

Verifying: ``read_histories`` lists every version and delete marker under the prefix and asks each
version of an immutable key for its lock with ``head_object`` (``ObjectLockMode``,
``ObjectLockRetainUntilDate``), which every Object Lock implementation answers;
``GetObjectRetention`` is not used because some (moto) do not implement it. The verdict is
``repo_tool.publish.bucket_check``'s.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import botocore.exceptions

from metadata_templates.errors import ConfigurationError
from repo_tool.publish.bucket_check import (
    Finding,
    KeyHistory,
    ObjectVersion,
    check_bucket,
)
from repo_tool.publish.retention import LockPolicy, kind_of, lock_put_args
from repo_tool.publish.s3 import LEASE_PATH, S3Bucket, S3Location, translate_s3_error

_MD5_ETAG = re.compile(r'"?([0-9a-f]{32})"?')
LOCK_HINT = (
    "create the bucket with --object-lock-enabled-for-bucket, or enable versioning and then "
    "Object Lock on it (aws s3api put-object-lock-configuration); see docs/hosting.md, "
    "'Immutable storage (S3 Object Lock)'"
)
# HEAD requests in flight at once: the latency of one request, not the bandwidth, bounds a check.
HEAD_WORKERS = 8


def _lock_call(
    location: S3Location,
    action: str,
    permission: str,
    call: Callable[[], Any],
    *,
    none_on: str | None = None,
) -> Any:
    """Run one request, naming the permission it needs when access is denied; None when S3
    answers with the error code ``none_on``."""
    try:
        return call()
    except botocore.exceptions.ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if none_on is not None and code == none_on:
            return None
        if code in {"AccessDenied", "Forbidden"}:
            raise ConfigurationError(
                f"{location.url}: access denied to {action} ({code}), expected credentials "
                f"allowed {permission}",
                hint="check the credentials' policy (and AWS_PROFILE)",
            ) from e
        raise translate_s3_error(e, location, location.prefix, action) from e
    except botocore.exceptions.BotoCoreError as e:
        raise translate_s3_error(e, location, location.prefix, action) from e


def lock_enabled(bucket: S3Bucket) -> bool:
    """Whether the bucket has Object Lock enabled.

    Raises:
        ConfigurationError: no credentials, no such bucket, or access denied
            (s3:GetBucketObjectLockConfiguration).
        UnavailableError: the endpoint cannot be reached or answered with an error.
    """
    location = bucket.location
    answer = _lock_call(
        location,
        "read the Object Lock configuration of",
        "s3:GetBucketObjectLockConfiguration",
        lambda: bucket.client.get_object_lock_configuration(Bucket=location.bucket),
        none_on="ObjectLockConfigurationNotFoundError",
    )
    if answer is None:
        return False
    return bool(answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")


class LockingS3Bucket(S3Bucket):
    """An ``S3Bucket`` that puts every immutable object with compliance retention."""

    # The bucket is versioned (Object Lock needs it): deleting a superseded partial tile (never
    # locked) removes each of its versions, so no delete marker or old version is left behind.
    delete_versions = True

    def __init__(self, bucket: S3Bucket, policy: LockPolicy) -> None:
        super().__init__(bucket.client, bucket.location)
        self.policy = policy
        # Objects this publish uploaded with a lock (the report's "object_lock.locked").
        self.locked = 0

    def put_args(self, relative: str, data: bytes) -> dict[str, Any]:
        return lock_put_args(relative, data, self.policy)

    def put(
        self, relative: str, data: bytes, *, replace: bool, if_match: str | None = None
    ) -> bool:
        written = super().put(relative, data, replace=replace, if_match=if_match)
        if written and kind_of(relative).locked:
            self.locked += 1
        return written


def locking_bucket(bucket: S3Bucket, policy: LockPolicy) -> LockingS3Bucket:
    """The bucket, wrapped to lock what it uploads, after checking it can.

    Raises:
        ConfigurationError: the bucket has no Object Lock (then nothing was signed or uploaded),
            or see ``lock_enabled``.
        UnavailableError: see ``lock_enabled``.
    """
    if not lock_enabled(bucket):
        raise ConfigurationError(
            f"{bucket.location.url}: Object Lock: found not enabled, expected a bucket with "
            "Object Lock enabled (--object-lock-days needs it)",
            hint=LOCK_HINT,
        )
    return LockingS3Bucket(bucket, policy)


# ----------------------------------------------------------------------------- verify-bucket


@dataclass
class _Listed:
    versions: list[dict[str, Any]] = field(default_factory=list)
    latest_marker: str | None = None


def _list_versions(bucket: S3Bucket) -> dict[str, _Listed]:
    location = bucket.location

    def pages() -> Iterator[dict[str, Any]]:
        paginator = bucket.client.get_paginator("list_object_versions")
        yield from paginator.paginate(Bucket=location.bucket, Prefix=location.prefix)  # type: ignore[misc]

    found: dict[str, _Listed] = {}

    def collect() -> None:
        for page in pages():
            for item in page.get("Versions", []):
                relative = str(item["Key"]).removeprefix(location.prefix)
                found.setdefault(relative, _Listed()).versions.append(item)
            for item in page.get("DeleteMarkers", []):
                relative = str(item["Key"]).removeprefix(location.prefix)
                listed = found.setdefault(relative, _Listed())
                if item.get("IsLatest"):
                    listed.latest_marker = str(item.get("VersionId", "null"))

    _lock_call(location, "list the object versions of", "s3:ListBucketVersions", collect)
    return found


def _version(version_id: str) -> dict[str, Any]:
    """The VersionId argument for one version. A bucket that never had versioning lists its
    objects as version "null", which some servers (moto) refuse as an argument, so it is addressed
    as the current version: on a bucket with Object Lock (versioning can never be suspended there)
    a "null" version can only be that; elsewhere every object is not-locked either way."""
    return {} if version_id == "null" else {"VersionId": version_id}


def _head(bucket: S3Bucket, relative: str, version_id: str) -> dict[str, Any]:
    key = bucket.location.key(relative)
    return dict(
        _lock_call(
            bucket.location,
            f"read the lock of {key} version {version_id} in",
            "s3:GetObjectVersion and s3:GetObjectRetention",
            lambda: bucket.client.head_object(
                Bucket=bucket.location.bucket, Key=key, **_version(version_id)
            ),
        )
        or {}
    )


def _sha256_of(bucket: S3Bucket, relative: str, version_id: str) -> str:
    key = bucket.location.key(relative)

    def read() -> bytes:
        response = bucket.client.get_object(
            Bucket=bucket.location.bucket, Key=key, **_version(version_id)
        )
        return bytes(response["Body"].read())

    data = _lock_call(
        bucket.location, f"read {key} version {version_id} in", "s3:GetObjectVersion", read
    )
    return "sha256:" + hashlib.sha256(data or b"").hexdigest()


def _contents(bucket: S3Bucket, relative: str, versions: list[dict[str, Any]]) -> list[str]:
    """What identifies each version's bytes: the MD5 a plain ETag is, unless two versions of the
    same size have an ETag that is not one (multipart, SSE-KMS): then the SHA-256 of the bytes."""
    md5s = [_MD5_ETAG.fullmatch(str(v.get("ETag", ""))) for v in versions]
    if len(versions) > 1 and not all(md5s) and len({int(v["Size"]) for v in versions}) == 1:
        return [_sha256_of(bucket, relative, str(v["VersionId"])) for v in versions]
    return [
        f"md5:{m.group(1)}" if m else f"etag:{v.get('ETag', '')}"
        for m, v in zip(md5s, versions, strict=True)
    ]


def _history(bucket: S3Bucket, relative: str, listed: _Listed) -> KeyHistory:
    versions = listed.versions  # S3 lists a key's versions newest first
    contents = _contents(bucket, relative, versions)
    out: list[ObjectVersion] = []
    for item, content in zip(versions, contents, strict=True):
        version_id = str(item.get("VersionId", "null"))
        head = _head(bucket, relative, version_id)
        mode = head.get("ObjectLockMode")
        until = head.get("ObjectLockRetainUntilDate")
        out.append(
            ObjectVersion(
                version_id,
                int(item["Size"]),
                content,
                lock_mode=str(mode) if mode else None,
                retain_until=until if isinstance(until, datetime) else None,
            )
        )
    return KeyHistory(relative, tuple(out), hidden_by=listed.latest_marker)


def read_histories(
    bucket: S3Bucket, *, workers: int = HEAD_WORKERS
) -> tuple[list[KeyHistory], int]:
    """The version history of every immutable key under the prefix, with each version's lock.

    Returns:
        The histories, and how many other keys (mutable kinds, not checked) the prefix holds.

    Raises:
        ConfigurationError: no credentials, no such bucket, or access denied (the message names
            the permission).
        UnavailableError: the endpoint cannot be reached or answered with an error.
    """
    listed = _list_versions(bucket)
    listed.pop(LEASE_PATH, None)  # the publishers' lease (s3_lease.py) is not part of the tree
    immutable = sorted(k for k in listed if kind_of(k).locked)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        histories = list(pool.map(lambda k: _history(bucket, k, listed[k]), immutable))
    return histories, len(listed) - len(immutable)


@dataclass(frozen=True)
class BucketReport:
    """What `cfl-repo verify-bucket` found."""

    url: str
    lock_enabled: bool
    checked: int
    versions: int
    skipped: int
    min_days: int
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, object]:
        return {
            "bucket": self.url,
            "ok": not self.problems,
            "object_lock_enabled": self.lock_enabled,
            "checked_objects": self.checked,
            "checked_versions": self.versions,
            "skipped_mutable": self.skipped,
            "min_days": self.min_days,
            "problems": len(self.problems),
            "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }


def verify_bucket(
    bucket: S3Bucket, *, now: datetime, min_days: int, workers: int = HEAD_WORKERS
) -> BucketReport:
    """Check that every object under the prefix that must be immutable is locked.

    Args:
        bucket: the bucket prefix a repository publishes to.
        now: the clock.
        min_days: a retention ending sooner than this many days from ``now`` is a warning.
        workers: HEAD requests in flight at once.

    Raises:
        ConfigurationError, UnavailableError: see ``read_histories``.
    """
    enabled = lock_enabled(bucket)
    histories, skipped = read_histories(bucket, workers=workers)
    findings = check_bucket(
        histories, lock_enabled=enabled, url=bucket.location.url, now=now, min_days=min_days
    )
    return BucketReport(
        url=bucket.location.url,
        lock_enabled=enabled,
        checked=len(histories),
        versions=sum(len(h.versions) for h in histories),
        skipped=skipped,
        min_days=min_days,
        findings=tuple(findings),
    )
