"""Superseded snapshot and role versions leave a bucket a grace period after they stop being served
(repo_tool/publish/s3_superseded.py), against moto's S3 server: a verifier still reads the
library, root versions stay, an Object Lock bucket keeps every root locked and loses every version
of what expired, and a delete that fails is tried again by the next publish."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from factory import LibraryFactory, standard_library
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.retention import LockPolicy, ObjectKind, kind_of
from repo_tool.publish.s3 import S3Bucket
from repo_tool.publish.s3_lock import locking_bucket, verify_bucket
from repo_tool.publish.s3_superseded import ledger_path
from repo_tool.publish.superseded import Ledger

from .s3_server import S3Server
from .test_publish_s3 import add_image, verified_targets

DAY = timedelta(days=1)


def _metadata_keys(bucket: S3Bucket) -> set[str]:
    return {k.removeprefix("metadata/") for k in bucket.list("metadata/")}


def _snapshots(bucket: S3Bucket) -> list[int]:
    return sorted(int(k.split(".")[0]) for k in _metadata_keys(bucket) if "snapshot" in k)


def _publish_at(factory: LibraryFactory, bucket: S3Bucket, hours: float) -> Any:
    factory.now += timedelta(hours=hours)
    return publish_to_s3(factory.repo, bucket, now=factory.now)


def _three_publishes(factory: LibraryFactory, bucket: S3Bucket) -> int:
    """Three deposits an hour apart; returns the snapshot version the bucket served after the
    second (which a publish a day after it must keep)."""
    _publish_at(factory, bucket, 0)
    fw = 1100
    kept = 0
    for n in range(3):
        add_image(factory, fw + n)
        report = _publish_at(factory, bucket, 1)
        assert report.superseded_deleted == 0  # nothing is a day old yet
        if n == 1:
            kept = report.snapshot_version
    return kept


def test_a_publish_a_day_later_deletes_what_was_superseded_before_then(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    kept = _three_publishes(factory, bucket)
    before = _metadata_keys(bucket)
    add_image(factory, 1200)
    report = _publish_at(factory, bucket, 23)  # a day after the second deposit's publish
    assert report.superseded_deleted > 0
    assert _snapshots(bucket)[0] == kept
    after = _metadata_keys(bucket)
    roots = {k for k in before if k.endswith(".root.json")}
    assert roots and roots <= after  # the root chain stays whole
    assert verified_targets(s3_server, bucket, factory)  # and the library still verifies
    ledger = Ledger.from_bytes(ledger_path(factory.repo.path, bucket).read_bytes())
    assert ledger.floor == kept
    # The next publish names its keys: no listing of metadata/ (the first expiry listed it once).
    add_image(factory, 1201)
    report = _publish_at(factory, bucket, 25)
    assert report.superseded_deleted > 0
    assert _snapshots(bucket)[0] > kept


def test_on_an_object_lock_bucket_roots_stay_locked_and_expired_versions_leave_no_trace(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    raw = s3_server.new_bucket(object_lock=True)
    bucket = locking_bucket(raw, LockPolicy(30, factory.now))
    _three_publishes(factory, bucket)
    add_image(factory, 1200)
    report = _publish_at(factory, bucket, 23)
    assert report.superseded_deleted > 0
    found = verify_bucket(raw, now=factory.now, min_days=1)
    assert found.problems == []
    versions = raw.client.list_object_versions(
        Bucket=raw.location.bucket, Prefix=raw.location.key("metadata/")
    )
    listed = {v["Key"].removeprefix(raw.location.prefix) for v in versions.get("Versions", [])}
    markers = versions.get("DeleteMarkers", [])
    assert markers == []  # every version of each expired key went, so nothing hides behind one
    assert listed == {f"metadata/{k}" for k in _metadata_keys(raw)}
    for key in listed:
        assert kind_of(key) in (ObjectKind.ROOT, ObjectKind.METADATA, ObjectKind.TIMESTAMP)
    assert verified_targets(s3_server, raw, factory)


class RefusingDeletes:
    """A client that refuses DeleteObject on metadata keys, as a policy without the permission
    would; everything else passes through."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.refuse = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_object(self, **kw: Any) -> Any:
        if self.refuse and "/metadata/" in "/" + kw["Key"]:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")
        return self._client.delete_object(**kw)


def test_a_refused_delete_warns_keeps_the_floor_and_is_tried_again(
    tmp_path: Path, s3_server: S3Server, caplog: Any
) -> None:
    factory, _ = standard_library(tmp_path)
    plain = s3_server.new_bucket()
    client = RefusingDeletes(plain.client)
    bucket = S3Bucket(client, plain.location)  # type: ignore[arg-type]
    _three_publishes(factory, bucket)
    add_image(factory, 1200)
    report = _publish_at(factory, bucket, 23)
    assert report.superseded_deleted == 0
    assert "superseded metadata" in caplog.text and "left for the next publish" in caplog.text
    assert Ledger.from_bytes(ledger_path(factory.repo.path, bucket).read_bytes()).floor is None
    assert verified_targets(s3_server, plain, factory)
    client.refuse = False
    add_image(factory, 1201)
    report = _publish_at(factory, bucket, 1)
    assert report.superseded_deleted > 0
