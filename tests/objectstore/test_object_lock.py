"""S3 Object Lock (DP073) against a real S3-API server that implements it (moto's server mode).

What is shown: a locked publish puts every immutable object in compliance mode until now + N days
and nothing else; S3 then refuses to delete a locked version, even with the governance bypass;
re-publishing onto locked objects skips them, and a re-run after a crash at any step ends clean;
`verify_bucket` is clean on such a bucket and names each tampering with its code; a bucket without
Object Lock is refused before anything is signed or uploaded.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import ConfigurationError, UnavailableError
from metadata_templates.naming import blob_name
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.bucket_check import (
    BUCKET_LOCK_DISABLED,
    DELETE_MARKER,
    GOVERNANCE_MODE,
    NOT_LOCKED,
    OVERWRITTEN,
    RETENTION_EXPIRED,
    RETENTION_EXPIRING,
)
from repo_tool.publish.plan import PUBLISH_STEPS
from repo_tool.publish.retention import COMPLIANCE, GOVERNANCE, LockPolicy, kind_of
from repo_tool.publish.s3 import LEASE_PATH, S3Bucket, site_cache_dir
from repo_tool.publish.s3_lock import BucketReport, LockingS3Bucket, locking_bucket, verify_bucket
from repo_tool.publish.s3_site import publish_site_to_s3

from .s3_server import S3Server

DAYS = 3650


class Crash(Exception):
    """Stands in for a kill at a step boundary."""


def add_image(factory: LibraryFactory, fw: int) -> tuple[str, bytes]:
    """Accept (not publish) one more image of 121D; returns (its blob's path, its bytes)."""
    image = make_image("121D", fw)
    entry = f"CPL-{fw:04d}"
    factory.import_cpl(
        [*factory.entries, make_entry(entry, fw=f"{fw:08X}", image_sha=mi_sha(image))]
    )
    factory.publish()
    result = factory.ingest(factory.submit(image, [entry]))
    assert result.status == "accepted", result.messages
    assert result.target is not None
    return f"targets/{blob_name(result.target, hashlib.sha256(image).hexdigest())}", image


def locked_publish(
    factory: LibraryFactory, bucket: S3Bucket, *, days: int = DAYS, site: bool = False, **kw: Any
) -> LockingS3Bucket:
    now = factory.tick()
    locking = locking_bucket(bucket, LockPolicy(days, now))
    report = publish_to_s3(factory.repo, locking, now=now, **kw)
    if site:
        publish_site_to_s3(
            locking,
            served_before=report.served_before,
            trusted_root=factory.root_bytes,
            site_dir=site_cache_dir(factory.repo.path, bucket.location),
            now=now,
        )
    return locking


def lock_of(bucket: S3Bucket, relative: str) -> tuple[str | None, datetime | None]:
    head = bucket.client.head_object(
        Bucket=bucket.location.bucket, Key=bucket.location.key(relative)
    )
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")


def check(bucket: S3Bucket, factory: LibraryFactory, min_days: int = 30) -> BucketReport:
    return verify_bucket(bucket, now=factory.now, min_days=min_days)


def codes(report: BucketReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.key) for f in report.findings]


def test_a_locked_publish_locks_every_immutable_object_until_now_plus_days_and_nothing_else(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)

    locking = locked_publish(factory, bucket, site=True)

    until = factory.now + timedelta(days=DAYS)
    listed = sorted(bucket.list())
    immutable = [k for k in listed if kind_of(k).locked]
    mutable = [k for k in listed if not kind_of(k).locked]
    assert {k.split("/")[0] for k in immutable} == {"targets", "metadata", "log"}
    assert {"metadata/timestamp.json", "log/checkpoint"} <= set(mutable)
    assert any(k.startswith("site/") for k in mutable)
    assert {k: lock_of(bucket, k) for k in immutable} == dict.fromkeys(
        immutable, (COMPLIANCE, until)
    )
    assert {k: lock_of(bucket, k) for k in mutable} == dict.fromkeys(mutable, (None, None))
    assert locking.locked == len(immutable)

    report = check(bucket, factory)
    assert report.findings == ()
    # The publishers' lease is in the bucket, but neither locked nor counted as the tree's.
    assert bucket.get(LEASE_PATH) is not None and lock_of(bucket, LEASE_PATH) == (None, None)
    assert (report.checked, report.versions, report.skipped) == (
        len(immutable),
        len(immutable),
        len(mutable),
    )
    assert report.to_dict()["ok"] is True


def test_s3_refuses_to_delete_a_locked_version_even_with_the_governance_bypass(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _images = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    client, name = bucket.client, bucket.location.bucket

    for relative in (
        next(k for k in bucket.list() if k.startswith("targets/121D/")),
        "metadata/1.root.json",
    ):
        key = bucket.location.key(relative)
        version = client.head_object(Bucket=name, Key=key)["VersionId"]
        before = bucket.get(relative)
        for bypass in (False, True):
            with pytest.raises(botocore.exceptions.ClientError) as refused:
                client.delete_object(
                    Bucket=name, Key=key, VersionId=version, BypassGovernanceRetention=bypass
                )
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert bucket.get(relative) == before
    assert check(bucket, factory).findings == ()


def test_republishing_onto_locked_objects_skips_them_and_locks_only_what_is_new(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    first_until = factory.now + timedelta(days=DAYS)

    again = locked_publish(factory, bucket, days=DAYS // 2)  # nothing new: nothing uploaded
    assert again.locked == 0
    blob, _ = add_image(factory, 4)
    later = locked_publish(factory, bucket, days=DAYS // 2)

    assert later.locked > 0
    assert lock_of(bucket, blob) == (COMPLIANCE, factory.now + timedelta(days=DAYS // 2))
    assert lock_of(bucket, "metadata/1.root.json") == (COMPLIANCE, first_until)  # kept its first
    assert check(bucket, factory).findings == ()


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_a_locked_publish_killed_at_any_step_reruns_to_a_clean_bucket(
    tmp_path: Path, s3_server: S3Server, step: str
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    add_image(factory, 4)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        locked_publish(factory, bucket, between_steps=crash)
    locked_publish(factory, bucket)

    assert check(bucket, factory).findings == ()


def _put(bucket: S3Bucket, relative: str, data: bytes, **lock: Any) -> None:
    bucket.client.put_object(
        Bucket=bucket.location.bucket, Key=bucket.location.key(relative), Body=data, **lock
    )


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("governance", GOVERNANCE_MODE),
        ("unlocked", NOT_LOCKED),
        ("expired", RETENTION_EXPIRED),
        ("expiring", RETENTION_EXPIRING),
        ("delete-marker", DELETE_MARKER),
        ("overwritten", OVERWRITTEN),
    ],
)
def test_each_tampering_with_a_locked_bucket_has_its_code(
    tmp_path: Path, s3_server: S3Server, tamper: str, code: str
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    blob, image = add_image(factory, 4)
    now = factory.now
    # Seeded before the publish, the blob is "already there with the same bytes" and skipped:
    # what a hand upload, another tool or a lapsed lock leaves behind.
    seeded = {
        "governance": {
            "ObjectLockMode": GOVERNANCE,
            "ObjectLockRetainUntilDate": now + timedelta(days=DAYS),
        },
        "unlocked": {},
        "expired": {
            "ObjectLockMode": COMPLIANCE,
            "ObjectLockRetainUntilDate": now - timedelta(days=1),
        },
        "expiring": {
            "ObjectLockMode": COMPLIANCE,
            "ObjectLockRetainUntilDate": now + timedelta(days=5),
        },
    }
    if tamper in seeded:
        _put(bucket, blob, image, **seeded[tamper])
    locked_publish(factory, bucket)
    if tamper == "delete-marker":
        bucket.client.delete_object(Bucket=bucket.location.bucket, Key=bucket.location.key(blob))
    if tamper == "overwritten":  # compliance mode stops deletes, not a new version over the key
        _put(
            bucket,
            blob,
            b"x" * len(image),
            ObjectLockMode=COMPLIANCE,
            ObjectLockRetainUntilDate=now + timedelta(days=DAYS),
        )

    report = check(bucket, factory)

    assert codes(report) == [(code, blob)]
    assert report.to_dict()["ok"] is (code == RETENTION_EXPIRING)
    assert report.findings[0].message.startswith(blob)


def test_deleting_the_delete_marker_restores_the_object_and_a_clean_check(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    client, name, key = (
        bucket.client,
        bucket.location.bucket,
        bucket.location.key("metadata/1.root.json"),
    )
    marker = client.delete_object(Bucket=name, Key=key)["VersionId"]
    assert codes(check(bucket, factory)) == [(DELETE_MARKER, "metadata/1.root.json")]

    client.delete_object(Bucket=name, Key=key, VersionId=marker)  # the remedy docs/hosting.md gives

    assert check(bucket, factory).findings == ()


def test_a_multipart_copy_of_the_same_bytes_is_not_an_overwrite_but_other_bytes_are(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    blob, image = add_image(factory, 4)
    locked_publish(factory, bucket)
    client, name, key = bucket.client, bucket.location.bucket, bucket.location.key(blob)
    lock = {
        "ObjectLockMode": COMPLIANCE,
        "ObjectLockRetainUntilDate": factory.now + timedelta(days=DAYS),
    }

    def multipart(data: bytes) -> None:  # an ETag that is no MD5 ("...-1"): bytes must decide
        upload = client.create_multipart_upload(Bucket=name, Key=key, **lock)["UploadId"]
        part = client.upload_part(Bucket=name, Key=key, UploadId=upload, PartNumber=1, Body=data)
        done = client.complete_multipart_upload(
            Bucket=name,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
        # moto ignores the lock on create_multipart_upload; S3 would apply it. Set it as S3 has it.
        client.put_object_retention(
            Bucket=name,
            Key=key,
            VersionId=done["VersionId"],
            Retention={"Mode": COMPLIANCE, "RetainUntilDate": lock["ObjectLockRetainUntilDate"]},
        )

    multipart(image)
    assert check(bucket, factory).findings == ()
    multipart(bytes(reversed(image)))
    assert codes(check(bucket, factory)) == [(OVERWRITTEN, blob)]


def test_a_bucket_without_object_lock_is_refused_before_anything_is_signed_or_uploaded(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    head = (factory.repo.path / "state" / "head.json").read_bytes()

    with pytest.raises(
        ConfigurationError, match=r"Object Lock: found not enabled, expected a bucket"
    ):
        locked_publish(factory, bucket)

    assert bucket.list() == {}
    assert (factory.repo.path / "state" / "head.json").read_bytes() == head


def test_a_bucket_without_object_lock_checks_as_disabled_with_every_object_unlocked(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())

    report = check(bucket, factory)

    immutable = sorted(k for k in bucket.list() if kind_of(k).locked)
    assert codes(report) == [(BUCKET_LOCK_DISABLED, None)] + [(NOT_LOCKED, k) for k in immutable]


def test_a_lockable_bucket_published_without_a_lock_has_every_immutable_object_unlocked(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    publish_to_s3(factory.repo, bucket, now=factory.tick())

    report = check(bucket, factory)

    immutable = sorted(k for k in bucket.list() if kind_of(k).locked)
    assert codes(report) == [(NOT_LOCKED, k) for k in immutable]
    assert report.to_dict()["problems"] == len(immutable)


def test_a_locked_squatter_with_other_bytes_stops_a_locked_publish_before_the_timestamp(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    locked_publish(factory, bucket)
    timestamp = bucket.get("metadata/timestamp.json")
    blob, image = add_image(factory, 4)
    squat = b"y" * len(image)
    _put(
        bucket,
        blob,
        squat,
        ObjectLockMode=COMPLIANCE,
        ObjectLockRetainUntilDate=factory.now + timedelta(days=DAYS),
    )

    with pytest.raises(UnavailableError, match=f"{blob}: exists with different content"):
        locked_publish(factory, bucket)

    assert bucket.get(blob) == squat
    assert bucket.get("metadata/timestamp.json") == timestamp
