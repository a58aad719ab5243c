"""What a publish to object storage does with the transparency log (repo_tool/publish/s3_upload.py),
against moto's S3 server: it reads and uploads only the log files added since the bucket's
checkpoint, whatever the log's size, and it deletes superseded partial tiles from the bucket after
``timestamp.json``, keeping one publish of grace, as a folder publish does. Requests are counted by
a client wrapper handed to ``S3Bucket``, never by patching.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from client.log.audit import audit
from factory import LibraryFactory, standard_library
from metadata_templates.errors import UnavailableError
from metadata_templates.tlog.tiles import tiles_for_size
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.bucket_check import DELETE_MARKER
from repo_tool.publish.retention import LockPolicy
from repo_tool.publish.s3 import S3Bucket
from repo_tool.publish.s3_lock import LockingS3Bucket, verify_bucket
from repo_tool.publish.s3_upload import PRUNE_STEP
from repo_tool.tlog.provider_log import log_files_added

from .s3_server import S3Server
from .test_publish_s3 import _client_error, add_image, verified_targets


class Crash(Exception):
    """Stands in for a kill."""


class CountingClient:
    """A boto3 S3 client that counts what it is asked per key, and can make a server whose ETags
    are not MD5s (SSE-KMS, multipart uploads) or one that refuses deletes."""

    def __init__(
        self, inner: Any, *, kms_etags: bool = False, deletes: str = "ok", crash_after: int = -1
    ) -> None:
        self.inner = inner
        self.kms_etags = kms_etags
        self.deletes = deletes  # "ok", "denied"
        self.crash_after = crash_after  # raise Crash at this delete (0-based), -1 never
        self.puts: list[str] = []
        self.gets: list[str] = []
        self.heads: list[str] = []
        self.ranged: list[str] = []  # the keys of GETs with a Range
        self.listed: list[str] = []  # the Prefix of each listing
        self.deleted: list[str] = []

    def put_object(self, **kwargs: Any) -> Any:
        self.puts.append(kwargs["Key"])
        return self.inner.put_object(**kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        self.gets.append(kwargs["Key"])
        if "Range" in kwargs:
            self.ranged.append(kwargs["Key"])
        return self.inner.get_object(**kwargs)

    def head_object(self, **kwargs: Any) -> Any:
        self.heads.append(kwargs["Key"])
        response = self.inner.head_object(**kwargs)
        if self.kms_etags:
            response["ETag"] = _kms_etag(response["ETag"])
        return response

    def delete_object(self, **kwargs: Any) -> Any:
        if len(self.deleted) == self.crash_after:
            raise Crash(kwargs["Key"])
        if self.deletes == "denied":
            raise _client_error("AccessDenied", 403)
        self.deleted.append(kwargs["Key"])
        return self.inner.delete_object(**kwargs)

    def get_paginator(self, name: str) -> Any:
        return _CountingPaginator(self.inner.get_paginator(name), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _kms_etag(etag: str) -> str:
    return '"' + hashlib.sha256(etag.encode()).hexdigest()[:32] + '-1"'


class _CountingPaginator:
    def __init__(self, inner: Any, client: CountingClient) -> None:
        self.inner = inner
        self.client = client

    def paginate(self, **kwargs: Any) -> Any:
        self.client.listed.append(kwargs.get("Prefix", ""))
        for page in self.inner.paginate(**kwargs):
            if self.client.kms_etags:
                for item in page.get("Contents", []):
                    item["ETag"] = _kms_etag(item["ETag"])
            yield page


def counted(bucket: S3Bucket, **options: Any) -> tuple[S3Bucket, CountingClient]:
    client = CountingClient(bucket.client, **options)
    return S3Bucket(client, bucket.location), client  # type: ignore[arg-type]


def log_keys(bucket: S3Bucket, keys: list[str]) -> list[str]:
    return [k.removeprefix(bucket.location.prefix) for k in keys if "/log/" in "/" + k]


def partials_in(bucket: S3Bucket) -> set[str]:
    return {
        k.removeprefix("log/") for k in bucket.list() if k.startswith("log/tile/") and ".p/" in k
    }


def partials_of(size: int) -> set[str]:
    return {t.path for t in tiles_for_size(size) if t.width < 256}


def fetcher(bucket: S3Bucket) -> Any:
    def fetch(relative: str) -> bytes:
        data = bucket.get(relative)
        if data is None:
            raise UnavailableError(f"{relative}: 404")
        return data

    return fetch


def grow(factory: LibraryFactory, count: int, fw: list[int]) -> None:
    """Accept ``count`` more images (two log entries each: the CPL import and the deposit)."""
    for _ in range(count):
        fw[0] += 1
        add_image(factory, fw[0])


def test_a_publish_after_one_deposit_reads_and_uploads_only_the_new_log_files(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    fw = [1000]
    grow(factory, 20, fw)
    # ETags that are not MD5s: an object already there can only be compared by reading it, so a
    # publish that looked at every old log file would read each one back from the bucket.
    bucket, client = counted(s3_server.new_bucket(), kms_etags=True)
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    start = factory.repo.log_state().size
    grow(factory, 1, fw)
    size = factory.repo.log_state().size
    client.puts.clear()
    client.gets.clear()

    report = publish_to_s3(factory.repo, bucket, now=factory.tick())

    added = {"log/" + path for path, _ in log_files_added(factory.repo.log_dir, start, size)}
    assert len(added) < 10 < start  # a few tiles and one index file, of a log of 40 entries
    assert set(log_keys(bucket, client.puts)) == added | {"log/checkpoint"}
    assert report.uploaded["log"] == len(added) + 1
    assert log_keys(bucket, client.gets) == ["log/checkpoint"]  # how far the bucket's log goes
    assert audit(fetcher(bucket), vkey=None).problems == []


def test_a_publish_onto_a_foreign_checkpoint_checks_every_tile_of_its_own_size(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    add_image(factory, 4)
    size = factory.repo.log_state().size
    squatted = "log/" + next(t.path for t in tiles_for_size(size) if t.level == -1)
    bucket.put("log/checkpoint", b"not this log's checkpoint\n", replace=True)
    bucket.put(squatted, b"other entries", replace=True)
    old_timestamp = bucket.get("metadata/timestamp.json")

    # The tile the bucket's (unusable) checkpoint would have let it skip is still compared.
    with pytest.raises(UnavailableError, match=f"{squatted}: exists with different content"):
        publish_to_s3(factory.repo, bucket, now=factory.tick())
    assert bucket.get("metadata/timestamp.json") == old_timestamp


def test_superseded_partial_tiles_leave_the_bucket_after_one_publish_of_grace(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket, client = counted(s3_server.new_bucket())
    fw = [1000]
    sizes: list[int] = []
    # Across the 256th entry: the full entry bundle and level-0 tile replace their partials.
    for count in (1, 1, 120, 3, 1, 1):
        grow(factory, count, fw)
        report = publish_to_s3(factory.repo, bucket, now=factory.tick())
        sizes.append(factory.repo.log_state().size)
        expected = partials_of(sizes[-1]) | (partials_of(sizes[-2]) if len(sizes) > 1 else set())
        assert partials_in(bucket) == expected, sizes
        assert report.partial_tiles_deleted == len(client.deleted)
        client.deleted.clear()
        assert audit(fetcher(bucket), vkey=None).problems == []
    assert sizes[2] < 256 < sizes[3]
    assert not any(p.startswith("tile/entries/000.p/") for p in partials_in(bucket))
    # A publish that does not grow the log deletes nothing (the grace copies stay).
    report = publish_to_s3(factory.repo, bucket, now=factory.tick())
    assert report.partial_tiles_deleted == 0
    assert partials_in(bucket) == partials_of(sizes[-1]) | partials_of(sizes[-2])
    assert verified_targets(s3_server, bucket, factory)


def test_a_locked_bucket_keeps_no_version_of_a_deleted_partial_tile_and_checks_clean(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    plain = s3_server.new_bucket(object_lock=True)
    bucket = LockingS3Bucket(plain, LockPolicy(30, factory.now))
    fw = [1000]
    for _ in range(3):
        grow(factory, 1, fw)
        publish_to_s3(factory.repo, bucket, now=factory.tick())
    gone = partials_of(factory.repo.log_state().size - 4)  # two publishes ago
    assert gone and not gone & partials_in(bucket)

    versions = plain.client.list_object_versions(
        Bucket=plain.location.bucket, Prefix=plain.location.key("log/tile/")
    )
    left = {
        v["Key"].removeprefix(plain.location.key("log/"))
        for v in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]
    }
    assert not gone & left  # neither an old version nor a delete marker
    report = verify_bucket(plain, now=factory.tick(), min_days=1)
    assert report.findings == ()
    assert audit(fetcher(plain), vkey=None).problems == []


def test_on_a_versioned_bucket_without_the_lock_a_plain_delete_is_no_finding(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)  # versioned; published without a lock
    fw = [1000]
    for _ in range(3):
        grow(factory, 1, fw)
        publish_to_s3(factory.repo, bucket, now=factory.tick())
    codes = {f.code for f in verify_bucket(bucket, now=factory.tick(), min_days=1).findings}
    assert DELETE_MARKER not in codes  # partial tiles are not immutable objects


def test_a_publisher_not_allowed_to_delete_still_publishes_and_the_next_one_cleans_up(
    tmp_path: Path, s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    factory, _ = standard_library(tmp_path)
    inner = s3_server.new_bucket()
    denied, _ = counted(inner, deletes="denied")
    fw = [1000]
    sizes = []
    for _ in range(3):
        grow(factory, 1, fw)
        report = publish_to_s3(factory.repo, denied, now=factory.tick())
        sizes.append(factory.repo.log_state().size)
    assert report.partial_tiles_deleted == 0
    assert "superseded partial tile(s) not deleted, left for the next publish" in caplog.text
    assert verified_targets(s3_server, inner, factory)
    assert partials_of(sizes[0]) - partials_of(sizes[-1]) <= partials_in(inner)

    grow(factory, 1, fw)
    report = publish_to_s3(factory.repo, inner, now=factory.tick())
    assert report.partial_tiles_deleted > 0
    assert partials_in(inner) == partials_of(sizes[-1]) | partials_of(factory.repo.log_state().size)


@pytest.mark.parametrize("where", ["before-deleting", "mid-delete"])
def test_a_publish_killed_while_deleting_reruns_and_the_next_growth_finishes_the_job(
    tmp_path: Path, s3_server: S3Server, where: str
) -> None:
    factory, _ = standard_library(tmp_path)
    inner = s3_server.new_bucket()
    fw = [1000]
    for _ in range(2):
        grow(factory, 1, fw)
        publish_to_s3(factory.repo, inner, now=factory.tick())
    grow(factory, 1, fw)
    bucket, _ = counted(inner, crash_after=1 if where == "mid-delete" else -1)

    def crash(step: str) -> None:
        if step == PRUNE_STEP and where == "before-deleting":
            raise Crash(step)

    with pytest.raises(Crash):
        publish_to_s3(factory.repo, bucket, now=factory.tick(), between_steps=crash)
    size = factory.repo.log_state().size
    # The timestamp was up: clients see the new library, with every tile its checkpoint needs.
    assert audit(fetcher(inner), vkey=None).problems == []
    publish_to_s3(factory.repo, inner, now=factory.tick())  # the re-run succeeds
    assert verified_targets(s3_server, inner, factory)
    grow(factory, 1, fw)
    publish_to_s3(factory.repo, inner, now=factory.tick())
    assert partials_in(inner) == partials_of(size) | partials_of(factory.repo.log_state().size)
    assert audit(fetcher(inner), vkey=None).problems == []


@pytest.mark.parametrize(
    "relative",
    ["log/tile/entries/000", "metadata/1.root.json", "log/checkpoint", "site/index.html"],
)
def test_nothing_but_a_partial_tile_can_be_deleted(s3_server: S3Server, relative: str) -> None:
    bucket = s3_server.new_bucket()
    bucket.put(relative, b"kept", replace=True)

    with pytest.raises(
        UnavailableError, match=f"^delete key: found '{relative}', expected a partial"
    ):
        bucket.delete(relative)
    assert bucket.get(relative) == b"kept"
