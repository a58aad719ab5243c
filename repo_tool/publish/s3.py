"""Publish the library to S3-compatible object storage: the same plan as a folder, over boto3.

``publish_to_s3`` (repo_tool/ops/publish_s3.py) lists the bucket prefix once, then `upload_staged`
uploads in the order ``repo_tool.publish.plan`` gives (blobs, delegated roles, targets, snapshot,
roots, ``timestamp.json`` last) only what the bucket lacks. It never deletes and never overwrites an immutable object:

- a new object is put with ``If-None-Match: *``, so a concurrent writer cannot be overwritten; on a
  server that does not implement conditional writes (HTTP 501) it falls back to a plain put after
  the listing said the key was free;
- an object that is already there (listed, or it appeared between the listing and the put) is
  compared with what would be written, by ETag (MD5 of a single-part upload) and, when that does
  not decide it (multipart or KMS-encrypted objects), by its bytes. A difference is an error and
  nothing later in the order (above all ``timestamp.json``) is uploaded.

Only ``metadata/timestamp.json`` and the website are replaced in place; they are sent with
``Cache-Control: no-cache``, everything else with ``public, max-age=31536000, immutable``.
With ``--object-lock-days`` the bucket is a ``LockingS3Bucket`` (repo_tool/publish/s3_lock.py):
``put_args`` adds compliance retention to the puts of immutable objects.

Credentials come from boto3's standard chain (environment, shared config and profile, instance
role); every boto3 error becomes one ``CflError`` line naming the bucket, the key and what was
expected.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from metadata_templates.errors import (
    ConfigurationError,
    UnavailableError,
    field_error,
)
from repo_tool.publish.folder import StepHook, planned_bytes, repository_plan
from repo_tool.publish.plan import PUBLISH_STEPS, TIMESTAMP_PATH, Kind, PlannedFile
from repo_tool.state.repository import Repository
from repo_tool.tlog.provider_log import publish_log

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
SITE_PREFIX = "site/"
# Bucket names as S3 allows them for new buckets (3-63 lower-case letters, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_MD5_ETAG = re.compile(r'"?([0-9a-f]{32})"?')
_CONTENT_TYPES = {
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".xml": "application/atom+xml",
    ".txt": "text/plain; charset=utf-8",
}
# Requests that fail fast enough for a person to wait on, retried a little for transient errors.
_CLIENT_CONFIG = Config(
    connect_timeout=10,
    read_timeout=120,
    retries={"max_attempts": 3, "mode": "standard"},
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (empty, or ending in ``/``)."""

    bucket: str
    prefix: str = ""

    def key(self, relative: str) -> str:
        return self.prefix + relative

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(url: str, *, field: str = "--to") -> S3Location:
    """``s3://BUCKET/PREFIX`` -> ``S3Location`` (``field``: the option or argument, for messages).

    Raises:
        ConfigurationError: not an ``s3://`` URL, a bucket name S3 would refuse, or a prefix with
            empty, ``.`` or ``..`` segments or characters outside ``A-Za-z0-9._~-``.
    """
    expected = "s3://BUCKET or s3://BUCKET/PREFIX (BUCKET 3-63 of a-z 0-9 . -)"
    if not url.startswith("s3://"):
        raise ConfigurationError(field_error(field, url, expected))
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigurationError(field_error(f"{field} bucket", bucket, expected))
    segments = prefix.strip("/").split("/") if prefix.strip("/") else []
    for segment in segments:
        if segment in (".", "..") or not _PREFIX_SEGMENT.fullmatch(segment):
            raise ConfigurationError(
                field_error(
                    f"{field} prefix segment", segment, "one of A-Za-z0-9._~- and not . or .."
                )
            )
    if prefix.startswith("/") or "//" in prefix:
        raise ConfigurationError(field_error(f"{field} prefix", prefix, "no empty path segments"))
    return S3Location(bucket, "".join(f"{s}/" for s in segments))


@dataclass(frozen=True)
class ObjectHeaders:
    cache_control: str
    content_type: str


LOG_CHECKPOINT_PATH = "log/checkpoint"
# The publishers' lease on the prefix (repo_tool/publish/s3_lease.py): bookkeeping, not published.
LEASE_PATH = ".cfl-publish.lock"


def object_headers(relative: str) -> ObjectHeaders:
    """Cache-Control and Content-Type for one file of the published tree.

    ``metadata/timestamp.json`` and everything under ``site/`` change in place: ``no-cache`` (a
    cache must revalidate). Every other file is named by version or hash: cacheable forever.
    """
    mutable = relative in (TIMESTAMP_PATH, LOG_CHECKPOINT_PATH, LEASE_PATH) or relative.startswith(
        SITE_PREFIX
    )
    suffix = PurePosixPath(relative).suffix.lower()
    content_type = _CONTENT_TYPES.get(suffix) or (
        "application/octet-stream"
        if relative.startswith("targets/")
        else mimetypes.guess_type(relative)[0] or "application/octet-stream"
    )
    return ObjectHeaders(NO_CACHE if mutable else IMMUTABLE_CACHE_CONTROL, content_type)


@dataclass(frozen=True)
class ListedObject:
    size: int
    etag: str


def md5_etag_matches(etag: str, data: bytes) -> bool:
    found = _MD5_ETAG.fullmatch(etag)
    return (
        found is not None and found.group(1) == hashlib.md5(data, usedforsecurity=False).hexdigest()
    )


def make_s3_client(endpoint_url: str | None, *, session: boto3.Session | None = None) -> S3Client:
    """A boto3 S3 client from the standard credential chain.

    Args:
        endpoint_url: an S3-compatible server (MinIO, Ceph, a local test server); None for AWS.
        session: the boto3 session to use (default: a new one from the environment and profile).

    Raises:
        ConfigurationError: ``endpoint_url`` is not an http(s) URL or the profile is unknown.
    """
    if endpoint_url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint_url):
        raise ConfigurationError(
            field_error("--endpoint-url", endpoint_url, "an http:// or https:// URL")
        )
    try:
        session = session or boto3.Session()
        # S3-compatible servers are addressed by path (their DNS rarely has a name per bucket), and
        # signing needs a region even when the server ignores it.
        config = _CLIENT_CONFIG.merge(Config(s3={"addressing_style": "path"}))
        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=config if endpoint_url else _CLIENT_CONFIG,
        )
    except botocore.exceptions.ProfileNotFound as e:
        raise ConfigurationError(f"AWS profile: {e}", hint="check AWS_PROFILE") from e
    except botocore.exceptions.BotoCoreError as e:
        raise ConfigurationError(f"S3 client: {e}") from e


def translate_s3_error(error: Exception, location: S3Location, key: str, action: str) -> Exception:
    """One ``CflError`` for a boto3 error, naming what failed and what was expected.

    Returns the error to raise (the caller chains it with ``from``).
    """
    where = f"s3://{location.bucket}/{key}"
    if isinstance(
        error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return ConfigurationError(
            f"S3 credentials: found none usable ({error}), expected AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role",
            hint="see docs/hosting.md, 'Publishing to object storage'",
        )
    if isinstance(
        error, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
    ):
        return UnavailableError(
            f"S3 endpoint: unreachable while trying to {action} {where} ({error})",
            hint="check --endpoint-url and the network",
        )
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return ConfigurationError(
                field_error("bucket", location.bucket, "an existing bucket (S3 says NoSuchBucket)"),
                hint="create it first, or check --to and --endpoint-url",
            )
        if (
            code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
            or status == 403
        ):
            return ConfigurationError(
                f"{where}: access denied to {action} ({code or status}), expected credentials "
                "allowed s3:ListBucket, s3:GetObject and s3:PutObject on the prefix",
                hint="check the credentials' policy (and AWS_PROFILE)",
            )
        return UnavailableError(
            f"{where}: {action} failed: HTTP {status} {code} {details.get('Message', '')}".rstrip()
        )
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return UnavailableError(f"{where}: {action} failed: {error}")
    return error


class S3Bucket:
    """The few operations publishing needs, with boto3's errors translated at this one edge."""

    def __init__(self, client: S3Client, location: S3Location) -> None:
        self.client = client
        self.location = location
        # Learned from the server: None until the first conditional put says yes or no.
        self.conditional_puts: bool | None = None

    def put_args(self, relative: str, data: bytes) -> dict[str, Any]:
        """More PutObject arguments for one object (none here; repo_tool/publish/s3_lock.py adds
        the Object Lock retention)."""
        return {}

    def _call(self, key: str, action: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise translate_s3_error(e, self.location, key, action) from e

    def list(self) -> dict[str, ListedObject]:
        """Every object under the prefix, by key relative to the prefix (one paginated listing).

        Raises:
            ConfigurationError: no credentials, no such bucket, or access denied.
            UnavailableError: the endpoint cannot be reached or answered with an error.
        """

        def pages() -> Iterator[dict[str, Any]]:
            paginator = self.client.get_paginator("list_objects_v2")
            yield from paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.prefix)  # type: ignore[misc]

        found: dict[str, ListedObject] = {}

        def collect() -> None:
            for page in pages():
                for item in page.get("Contents", []):
                    relative = str(item["Key"]).removeprefix(self.location.prefix)
                    if relative == LEASE_PATH:
                        continue  # the publishers' lease is not part of the published tree
                    found[relative] = ListedObject(int(item["Size"]), str(item.get("ETag", "")))

        self._call(self.location.prefix, "list", collect)
        return found

    def get(self, relative: str) -> bytes | None:
        """An object's bytes, or None when there is no such key.

        Raises:
            ConfigurationError: access denied or no such bucket.
            UnavailableError: anything else went wrong.
        """
        found = self.get_object(relative)
        return None if found is None else found[0]

    def get_object(self, relative: str) -> tuple[bytes, str] | None:
        """An object's bytes and ETag (what a later ``put(if_match=...)`` names), or None.

        Raises:
            ConfigurationError, UnavailableError: as `get`.
        """
        key = self.location.key(relative)
        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=key)
            return bytes(response["Body"].read()), str(response.get("ETag", ""))
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise translate_s3_error(e, self.location, key, "read") from e
        except botocore.exceptions.BotoCoreError as e:
            raise translate_s3_error(e, self.location, key, "read") from e

    def put(
        self, relative: str, data: bytes, *, replace: bool, if_match: str | None = None
    ) -> bool:
        """Upload one object with its cache headers.

        Args:
            relative: the path in the published tree.
            data: the bytes.
            replace: True for the mutable files; False puts only if the key is free.
            if_match: with ``replace``, put only over the object with this ETag (``If-Match``):
                a compare-and-swap, so a writer never replaces what it did not read.

        Returns:
            True when it was written; False when ``replace`` is False and an object appeared under
            the key since the listing (the caller then compares it), or when the object under the
            key no longer has the ETag ``if_match`` names.

        Raises:
            ConfigurationError, UnavailableError: see ``translate_s3_error``.
        """
        key = self.location.key(relative)
        headers = object_headers(relative)
        args: dict[str, Any] = {
            "Bucket": self.location.bucket,
            "Key": key,
            "Body": data,
            "CacheControl": headers.cache_control,
            "ContentType": headers.content_type,
            **self.put_args(relative, data),
        }
        condition: dict[str, Any] = {"IfMatch": if_match} if replace and if_match else {}
        if not replace:
            condition = {"IfNoneMatch": "*"}
        if condition and self.conditional_puts is not False:
            try:
                self.client.put_object(**args, **condition)
                self.conditional_puts = True
                return True
            except botocore.exceptions.ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {
                    409,
                    412,
                }:
                    return False
                if code == "NotImplemented" or status == 501:
                    logger.warning(
                        "%s: no conditional writes; comparing before each put", self.location.url
                    )
                    self.conditional_puts = False
                else:
                    raise translate_s3_error(e, self.location, key, "upload") from e
            except botocore.exceptions.BotoCoreError as e:
                raise translate_s3_error(e, self.location, key, "upload") from e
        if condition:
            # No conditional writes: compare just before the put instead (a narrow window).
            found = self.get_object(relative)
            if (not replace and found is not None) or (
                replace and (found is None or found[1] != if_match)
            ):
                return False
        self._call(key, "upload", lambda: self.client.put_object(**args))
        return True


@dataclass
class S3PublishReport:
    """What one publish to object storage did."""

    url: str
    snapshot_version: int = 0
    timestamp_version: int = 0
    signed_new_snapshot: bool = False
    uploaded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PUBLISH_STEPS, 0))
    already_there: int = 0
    site_uploaded: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "to": self.url,
            "snapshot_version": self.snapshot_version,
            "timestamp_version": self.timestamp_version,
            "signed_new_snapshot": self.signed_new_snapshot,
            "uploaded": dict(self.uploaded),
            "already_there": self.already_there,
            "site_uploaded": self.site_uploaded,
        }


def _same_object(bucket: S3Bucket, relative: str, data: bytes, listed: ListedObject | None) -> bool:
    """Whether the object under ``relative`` holds exactly ``data`` (ETag first, bytes if need be)."""
    if listed is not None:
        if listed.size != len(data):
            return False
        if md5_etag_matches(listed.etag, data):
            return True
    found = bucket.get(relative)
    return found is not None and hashlib.sha256(found).digest() == hashlib.sha256(data).digest()


def _conflict(bucket: S3Bucket, relative: str) -> UnavailableError:
    return UnavailableError(
        f"s3://{bucket.location.bucket}/{bucket.location.key(relative)}: exists with different "
        "content, expected the bytes this repository publishes (published files are immutable)",
        hint="publish to an empty prefix or the one this repository published to before",
    )


def upload_staged(
    repo: Repository,
    bucket: S3Bucket,
    listing: dict[str, ListedObject],
    report: S3PublishReport,
    hook: StepHook,
    on_upload: Progress | None,
) -> None:
    """Bring the bucket prefix up to date with the snapshot and timestamp ``repo`` has staged
    already (repo_tool/ops/publish_s3.py signs them first), step by step in `PUBLISH_STEPS` order,
    and record in ``report`` what was uploaded. ``listing`` is the bucket's, taken under the
    repository lock the caller holds; ``hook`` is called with each step's name before it runs,
    ``on_upload`` with each relative path uploaded.

    Raises:
        ConfigurationError, UnavailableError: see ``translate_s3_error``; an immutable object that
            exists with other bytes (then ``timestamp.json`` is left as it was).
    """
    head = repo.head
    # Read with its ETag: the new timestamp replaces exactly this one (If-Match), so a publish
    # from another repository that landed meanwhile is never rolled back (docs/hosting.md).
    current = bucket.get_object(TIMESTAMP_PATH) if TIMESTAMP_PATH in listing else None
    timestamp_now, timestamp_etag = current if current is not None else (None, None)

    def read_snapshot(version: int) -> bytes | None:
        relative = f"metadata/{version}.snapshot.json"
        return bucket.get(relative) if relative in listing else None

    plan = repository_plan(repo, timestamp_now, read_snapshot, bucket.location.url + TIMESTAMP_PATH)
    by_step: dict[str, list[PlannedFile]] = {step: [] for step in PUBLISH_STEPS}
    for planned in plan:
        by_step[planned.step].append(planned)
    for step in PUBLISH_STEPS:
        hook(step)
        if step == "log" and repo.config.log is not None:
            report.uploaded["log"] += _upload_log(repo, bucket, listing, on_upload)
        for planned in by_step[step]:
            if _upload_planned(
                repo, bucket, planned, listing.get(planned.path), timestamp_now, timestamp_etag
            ):
                report.uploaded[step] += 1
                if on_upload is not None:
                    on_upload(planned.path)
            else:
                report.already_there += 1
    report.snapshot_version = head.snapshot_version
    report.timestamp_version = head.timestamp_version


def _upload_log(
    repo: Repository,
    bucket: S3Bucket,
    listing: dict[str, ListedObject],
    on_upload: Progress | None,
) -> int:
    """The transparency log: tiles and index files (immutable, uploaded once), then the checkpoint
    the new timestamp binds. They are laid out first in a local mirror of the bucket's log
    (``R/site-cache/s3-<...>-log``), which ``publish_log`` brings up to date incrementally."""
    mirror = site_cache_dir(repo.path, bucket.location)
    mirror = mirror.with_name(mirror.name + "-log")
    publish_log(repo.log_dir, mirror, repo.log_state())
    uploaded = 0
    checkpoint: bytes | None = None
    for path in sorted(p for p in mirror.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = "log/" + path.relative_to(mirror).as_posix()
        data = path.read_bytes()
        if relative == LOG_CHECKPOINT_PATH:
            checkpoint = data
            continue
        if relative in listing:
            if not _same_object(bucket, relative, data, listing[relative]):
                raise _conflict(bucket, relative)
            continue
        if bucket.put(relative, data, replace=False):
            uploaded += 1
            if on_upload is not None:
                on_upload(relative)
        elif not _same_object(bucket, relative, data, None):
            raise _conflict(bucket, relative)
    if checkpoint is not None and bucket.get(LOG_CHECKPOINT_PATH) != checkpoint:
        bucket.put(LOG_CHECKPOINT_PATH, checkpoint, replace=True)
        uploaded += 1
        if on_upload is not None:
            on_upload(LOG_CHECKPOINT_PATH)
    return uploaded


def _upload_planned(
    repo: Repository,
    bucket: S3Bucket,
    planned: PlannedFile,
    listed: ListedObject | None,
    timestamp_now: bytes | None,
    timestamp_etag: str | None,
) -> bool:
    data = planned_bytes(repo, planned)
    if planned.kind is Kind.MUTABLE:
        if timestamp_now == data:
            return False
        if not bucket.put(
            planned.path, data, replace=timestamp_etag is not None, if_match=timestamp_etag
        ):
            raise UnavailableError(
                f"s3://{bucket.location.bucket}/{bucket.location.key(planned.path)}: changed since "
                "this publish read it, expected the version it read (another publisher wrote it "
                "meanwhile); it was not replaced",
                hint="run the publish again: it starts from what the bucket serves now",
            )
        return True
    if listed is not None or not bucket.put(planned.path, data, replace=False):
        if not _same_object(bucket, planned.path, data, listed):
            raise _conflict(bucket, planned.path)
        return False
    return True


def site_cache_dir(repo_path: Path, location: S3Location) -> Path:
    """Where the website for one bucket prefix is built before upload (kept between publishes so
    an unchanged page is neither rewritten nor uploaded)."""
    digest = hashlib.sha256(location.url.encode()).hexdigest()[:16]
    return repo_path / "site-cache" / f"s3-{digest}"
