"""Publish the library to S3-compatible object storage: the same plan as a folder, over boto3.

``publish_to_s3`` (repo_tool/ops/publish_s3.py) has `upload_staged` (repo_tool/publish/s3_upload.py)
upload in the order ``repo_tool.publish.plan`` gives (blobs, delegated roles, targets, snapshot, the
log, roots, ``timestamp.json`` last) what changed since the timestamp the bucket serves, and then
delete the log's superseded partial tiles, the only objects it ever deletes. It never lists the
library (a request per 1,000 keys, which at 100,000 images would cost more than the upload), and
never deletes or overwrites any other immutable object:

- a new object is put with ``If-None-Match: *``, so no other writer's object is overwritten; on a
  server that does not implement conditional writes (HTTP 501) it reads the key just before a
  plain put instead;
- an object that is already there (a re-run after a crash, another writer) is compared with what
  would be written, by size and ETag (MD5 of a single-part upload, from a HEAD) and, when that does
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

import functools
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
    CflError,
    ConfigurationError,
    UnavailableError,
    field_error,
)
from repo_tool.publish.plan import PUBLISH_STEPS, TIMESTAMP_PATH
from repo_tool.publish.retention import ObjectKind, kind_of
from repo_tool.publish.s3_delete import ObjectLockedError, gone_is_done, version_locked

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
    size: int  # -1: the server did not say (a HEAD without Content-Length)
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


# What an access-denied error names as needed, by the action that was refused: a delete needs
# other permissions than the reads and puts of a publish (docs/hosting.md).
_PERMISSIONS = {
    "read": "s3:ListBucket, s3:GetObject and s3:PutObject",
    "delete": "s3:DeleteObject (and, on a versioned bucket, s3:DeleteObjectVersion)",
    "list the versions of": "s3:ListBucketVersions",
}


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
                f"allowed {_PERMISSIONS.get(action, _PERMISSIONS['read'])} on the prefix",
                hint="check the credentials' policy (and AWS_PROFILE); docs/hosting.md lists "
                "each permission a publish needs",
            )
        return UnavailableError(
            f"{where}: {action} failed: HTTP {status} {code} {details.get('Message', '')}".rstrip()
        )
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return UnavailableError(f"{where}: {action} failed: {error}")
    return error


class S3Bucket:
    """The few operations publishing needs, with boto3's errors translated at this one edge."""

    # Whether a delete must remove every version of a key (Object Lock buckets are versioned: a
    # plain delete there only hides the bytes behind a delete marker). s3_lock.py sets it.
    delete_versions = False

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

    def list(self, under: str = "") -> dict[str, ListedObject]:
        """Every object under the prefix (and ``under`` inside it, e.g. ``site/``), by key relative
        to the prefix (one paginated listing: a request per 1,000 keys). A publish lists only
        ``log/tile/`` (for superseded partial tiles), ``metadata/`` once per bucket (its first
        expiry of superseded versions, publish/s3_superseded.py) and, when its site cache is not
        known to match the bucket, ``site/``; never the whole library.

        Raises:
            ConfigurationError: no credentials, no such bucket, or access denied.
            UnavailableError: the endpoint cannot be reached or answered with an error.
        """

        def pages() -> Iterator[dict[str, Any]]:
            paginator = self.client.get_paginator("list_objects_v2")
            yield from paginator.paginate(  # type: ignore[misc]
                Bucket=self.location.bucket, Prefix=self.location.key(under)
            )

        found: dict[str, ListedObject] = {}

        def collect() -> None:
            for page in pages():
                for item in page.get("Contents", []):
                    relative = str(item["Key"]).removeprefix(self.location.prefix)
                    if relative == LEASE_PATH:
                        continue  # the publishers' lease is not part of the published tree
                    # A server that leaves the size out: unknown (-1), compared by bytes.
                    found[relative] = ListedObject(
                        int(item.get("Size", -1)), str(item.get("ETag", ""))
                    )

        self._call(self.location.key(under), "list", collect)
        return found

    def head(self, relative: str) -> ListedObject | None:
        """One object's size and ETag without its bytes, or None when there is no such key.

        Raises:
            ConfigurationError, UnavailableError: as `get`.
        """
        key = self.location.key(relative)
        try:
            response = self.client.head_object(Bucket=self.location.bucket, Key=key)
        except botocore.exceptions.ClientError as e:
            # HEAD has no body, so a missing key comes back as a bare 404, not NoSuchKey.
            if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise translate_s3_error(e, self.location, key, "read") from e
        except botocore.exceptions.BotoCoreError as e:
            raise translate_s3_error(e, self.location, key, "read") from e
        return ListedObject(int(response.get("ContentLength", -1)), str(response.get("ETag", "")))

    def delete(self, relative: str) -> None:
        """Delete one object (only superseded partial log tiles and superseded snapshot and role
        versions are ever deleted); with ``delete_versions``, every version and delete marker of
        the key, so nothing is left.

        Raises:
            ConfigurationError: access denied (s3:DeleteObject, and with ``delete_versions``
                s3:ListBucketVersions and s3:DeleteObjectVersion) or no such bucket.
            ObjectLockedError: with ``delete_versions``, a version is still under Object Lock
                (put so by an older release); every other version went.
            UnavailableError: anything else went wrong.
        """
        if kind_of(relative) not in (ObjectKind.PARTIAL_TILE, ObjectKind.METADATA):
            # Defence in depth: no blob, root, full tile or index is ever deleted (retention.py).
            raise UnavailableError(
                field_error(
                    "delete key",
                    relative,
                    "a partial log tile log/tile/.../<N>.p/<W> or a non-root metadata version",
                )
            )
        key = self.location.key(relative)
        where = self.location.bucket
        if not self.delete_versions:
            self._call(
                key, "delete", gone_is_done(self.client.delete_object, Bucket=where, Key=key)
            )
            return

        def version_ids() -> list[str]:
            # The prefix also matches wider widths (.p/1 -> .p/10, ...): keep the key's own.
            paginator = self.client.get_paginator("list_object_versions")
            found: list[str] = []
            for page in paginator.paginate(Bucket=where, Prefix=key):
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if item.get("Key") == key:
                        found.append(str(item.get("VersionId", "null")))
            return found

        def delete_version(version: str) -> None:
            # A key put before versioning was enabled lists as version "null", which some
            # servers refuse as an argument; it is the current version then.
            if version == "null":
                gone_is_done(self.client.delete_object, Bucket=where, Key=key)()
            else:
                gone_is_done(self.client.delete_object, Bucket=where, Key=key, VersionId=version)()

        locked = []
        for version in self._call(key, "list the versions of", version_ids):
            try:
                self._call(key, "delete", functools.partial(delete_version, version))
            except CflError:
                if not version_locked(self.client, where, key, version):
                    raise
                locked.append(version)  # its retention has not ended: the others still go
        if locked:
            raise ObjectLockedError(f"{self.location.url}{relative}: under Object Lock")

    def get(self, relative: str) -> bytes | None:
        """An object's bytes, or None when there is no such key.

        Raises:
            ConfigurationError: access denied or no such bucket.
            UnavailableError: anything else went wrong.
        """
        found = self.get_object(relative)
        return None if found is None else found[0]

    def get_tail(self, relative: str, octets: int) -> bytes | None:
        """The last ``octets`` bytes of an object (all of it when shorter; one ranged GET), or
        None when there is no such key or the server answers with something else.

        Raises:
            ConfigurationError, UnavailableError: as `get`.
        """
        key = self.location.key(relative)
        try:
            response = self.client.get_object(
                Bucket=self.location.bucket, Key=key, Range=f"bytes=-{octets}"
            )
            data = bytes(response["Body"].read(octets + 1))
        except botocore.exceptions.ClientError as e:
            # 416: a server that will not serve a suffix longer than the object (RFC 9110 says
            # it should send it whole); the caller reads it whole instead.
            if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "InvalidRange"} or (
                e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416
            ):
                return None
            raise translate_s3_error(e, self.location, key, "read") from e
        except botocore.exceptions.BotoCoreError as e:
            raise translate_s3_error(e, self.location, key, "read") from e
        # A server that ignores Range sends the whole object: not a tail, read it whole instead.
        return data if len(data) <= octets else None

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
    # Superseded partial log tiles deleted after timestamp.json (repo_tool/publish/s3_upload.py).
    partial_tiles_deleted: int = 0
    # Snapshot and role versions superseded for longer than the grace (publish/superseded.py).
    superseded_deleted: int = 0
    # SHA-256 of the timestamp.json the bucket served before this publish (None: there was none).
    # The site step compares it with its cache's record (repo_tool/publish/s3_site.py).
    served_before: str | None = field(default=None, repr=False)
    # The role versions the bucket's snapshot listed before this publish (empty: none), from which
    # the site step works out which images are new (repo_tool/publish/site_step.py).
    served_roles: dict[str, int] = field(default_factory=dict, repr=False)
    # The snapshot version that timestamp.json named (plan.py's served_snapshot_version).
    served_snapshot: int | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "to": self.url,
            "snapshot_version": self.snapshot_version,
            "timestamp_version": self.timestamp_version,
            "signed_new_snapshot": self.signed_new_snapshot,
            "uploaded": dict(self.uploaded),
            "already_there": self.already_there,
            "site_uploaded": self.site_uploaded,
            "partial_tiles_deleted": self.partial_tiles_deleted,
            "superseded_deleted": self.superseded_deleted,
        }


def put_immutable(bucket: S3Bucket, relative: str, data: bytes) -> bool:
    """Put an immutable object only if its key is free; True when written, False when the key
    already holds exactly ``data`` (a re-run after a crash, another writer of the same bytes).

    Raises:
        UnavailableError: the key holds other bytes (published files are immutable).
        ConfigurationError, UnavailableError: see ``translate_s3_error``.
    """
    if bucket.put(relative, data, replace=False):
        return True
    if not _same_object(bucket, relative, data):
        raise UnavailableError(
            f"s3://{bucket.location.bucket}/{bucket.location.key(relative)}: exists with different "
            "content, expected the bytes this repository publishes (published files are immutable)",
            hint="publish to an empty prefix or the one this repository published to before",
        )
    return False


def _same_object(bucket: S3Bucket, relative: str, data: bytes) -> bool:
    """Whether the object under ``relative`` holds exactly ``data``: size and ETag first (a HEAD,
    so an image already there is not downloaded), its bytes when the ETag is not an MD5
    (multipart or KMS-encrypted objects) or the server did not say the size."""
    listed = bucket.head(relative)
    if listed is None:
        return False
    if listed.size >= 0:
        if listed.size != len(data):
            return False
        if md5_etag_matches(listed.etag, data):
            return True
    # The size unknown (a server or proxy that leaves Content-Length out): only the bytes tell.
    found = bucket.get(relative)
    return found is not None and hashlib.sha256(found).digest() == hashlib.sha256(data).digest()


def site_cache_dir(repo_path: Path, location: S3Location) -> Path:
    """Where the website for one bucket prefix is built before upload (kept between publishes so
    an unchanged page is neither rewritten nor uploaded)."""
    digest = hashlib.sha256(location.url.encode()).hexdigest()[:16]
    return repo_path / "site-cache" / f"s3-{digest}"
