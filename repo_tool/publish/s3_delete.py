"""What a delete of one key may meet besides success (repo_tool/publish/s3.py, `S3Bucket.delete`):
a server that answers 404 for a key already gone, and a version still under Object Lock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from metadata_templates.errors import UnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ObjectLockedError(UnavailableError):
    """A delete left a version whose Object Lock retention has not ended (or a legal hold): it
    cannot go yet, and no missing permission is the cause (`S3Bucket.delete`)."""


def gone_is_done(delete: Callable[..., Any], **kw: Any) -> Callable[[], None]:
    """A delete for which 404 (NoSuchKey, NoSuchVersion: what some S3-compatible servers answer
    for a key already gone, where S3 says 204) is success: the key is gone, as asked."""

    def call() -> None:
        try:
            delete(**kw)
        except botocore.exceptions.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code not in ("NoSuchKey", "NoSuchVersion") and status != 404:
                raise

    return call


def version_locked(client: S3Client, bucket: str, key: str, version: str) -> bool:
    """Whether one version of ``key`` is under a retention that has not ended, or a legal hold
    (a delete refused for that is no missing permission)."""
    try:
        if version == "null":
            head = client.head_object(Bucket=bucket, Key=key)
        else:
            head = client.head_object(Bucket=bucket, Key=key, VersionId=version)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False
    until = head.get("ObjectLockRetainUntilDate")
    held = head.get("ObjectLockLegalHoldStatus") == "ON"
    return held or (isinstance(until, datetime) and until > datetime.now(UTC))
