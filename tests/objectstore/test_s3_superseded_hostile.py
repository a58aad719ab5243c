"""The S3 edge of the superseded-metadata expiry against a confused environment: a ledger that
lies about the clock, a ledger path that is no regular file (repo_tool/publish/s3_superseded.py)."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from factory import standard_library
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.retention import LockPolicy, ObjectKind, kind_of
from repo_tool.publish.s3 import S3Bucket
from repo_tool.publish.s3_lock import locking_bucket
from repo_tool.publish.s3_superseded import ledger_path
from repo_tool.publish.superseded import Ledger, Served

from .s3_server import S3Server
from .test_publish_s3 import add_image, verified_targets

DAY = timedelta(days=1)


def _snapshots(bucket: S3Bucket) -> list[int]:
    keys = (k.removeprefix("metadata/") for k in bucket.list("metadata/"))
    return sorted(int(k.split(".")[0]) for k in keys if k.endswith(".snapshot.json"))


def test_a_ledger_that_lies_never_takes_what_the_bucket_served_before(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    report = publish_to_s3(factory.repo, bucket, now=factory.now)
    served_before = report.snapshot_version
    # add_image signs twice (the deposit, then this publish): claim both were served for days
    long_ago = factory.now - 9 * DAY
    forged = Ledger(tuple(Served(long_ago, served_before + n) for n in (1, 2)), floor=None)
    path = ledger_path(factory.repo.path, bucket)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(forged.to_bytes())
    add_image(factory, 1100)
    factory.now += timedelta(minutes=5)
    report = publish_to_s3(factory.repo, bucket, now=factory.now)
    assert report.snapshot_version == served_before + 2
    assert served_before in _snapshots(bucket)
    assert verified_targets(s3_server, bucket, factory)


def test_a_fifo_for_a_ledger_does_not_hang_the_publish(tmp_path: Path, s3_server: S3Server) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.now)
    path = ledger_path(factory.repo.path, bucket)
    path.unlink()
    os.mkfifo(path)
    add_image(factory, 1100)
    factory.now += timedelta(minutes=5)
    done: list[int] = []
    worker = threading.Thread(
        target=lambda: done.append(
            publish_to_s3(factory.repo, bucket, now=factory.now).snapshot_version
        ),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert done, "the publish hung on a FIFO ledger"
    assert path.is_file()


def test_versions_locked_before_the_upgrade_warn_and_do_not_stop_the_rest(
    tmp_path: Path, s3_server: S3Server, caplog: Any
) -> None:
    """Before metadata versions were unlocked (retention.py), every N.snapshot.json and role
    version was put under the compliance lock: an old bucket holds thousands locked for years.
    Those cannot go until their date; the others must, and the floor must move on."""
    factory, _ = standard_library(tmp_path)
    raw = s3_server.new_bucket(object_lock=True)
    bucket = locking_bucket(raw, LockPolicy(30, factory.now))
    publish_to_s3(factory.repo, bucket, now=factory.now)
    # As an older release put them: every versioned metadata key locked for 30 days.
    until = factory.now + 30 * DAY
    old = sorted(k for k in raw.list("metadata/") if kind_of(k) is ObjectKind.METADATA)
    for key in old:
        data = raw.get(key)
        assert data is not None
        raw.client.put_object(
            Bucket=raw.location.bucket,
            Key=raw.location.key(key),
            Body=data,
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
        )
    for fw, hours in ((1100, 1), (1101, 1), (1102, 30), (1103, 30)):
        add_image(factory, fw)
        factory.now += timedelta(hours=hours)
        report = publish_to_s3(factory.repo, bucket, now=factory.now)
    assert report.superseded_deleted > 0  # what was put unlocked since goes
    assert "under Object Lock left" in caplog.text
    ledger = Ledger.from_bytes(ledger_path(factory.repo.path, bucket).read_bytes())
    assert ledger.floor is not None  # the next expiry names its keys, no listing
    assert set(old) & set(raw.list("metadata/")) == set(old)  # the locked ones stay
    assert verified_targets(s3_server, raw, factory)


class NotFoundOnMissing:
    """A client whose server answers DeleteObject of a missing key with 404 NoSuchKey (as some
    S3-compatible servers do) instead of S3's 204."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_object(self, **kw: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=kw["Bucket"], Key=kw["Key"])
        except ClientError:
            error = {"Code": "NoSuchKey", "Message": "gone"}
            raise ClientError(
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 404}}, "DeleteObject"
            ) from None
        return self._client.delete_object(**kw)


def test_a_delete_answered_404_is_a_key_gone_not_a_stop(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    plain = s3_server.new_bucket()
    bucket = S3Bucket(NotFoundOnMissing(plain.client), plain.location)  # type: ignore[arg-type]
    publish_to_s3(factory.repo, bucket, now=factory.now)
    for fw, hours in ((1100, 1), (1101, 1), (1102, 24)):
        add_image(factory, fw)
        factory.now += timedelta(hours=hours)
        publish_to_s3(factory.repo, bucket, now=factory.now)
    floor = Ledger.from_bytes(ledger_path(factory.repo.path, bucket).read_bytes()).floor
    assert floor is not None
    # Someone (another machine, a hand) already deleted a key the next expiry names.
    plain.client.delete_object(
        Bucket=plain.location.bucket, Key=plain.location.key(f"metadata/{floor}.snapshot.json")
    )
    for fw, hours in ((1103, 1), (1104, 48)):
        add_image(factory, fw)
        factory.now += timedelta(hours=hours)
        report = publish_to_s3(factory.repo, bucket, now=factory.now)
    assert report.superseded_deleted > 0
    later = Ledger.from_bytes(ledger_path(factory.repo.path, bucket).read_bytes()).floor
    assert later is not None and later > floor
    assert verified_targets(s3_server, plain, factory)
