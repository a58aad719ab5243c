"""Publish to S3-compatible object storage: the operation that signs a new snapshot and timestamp
for whatever the staged roles changed (repo_tool/ops/snapshot.py), has the S3 writer
(repo_tool/publish/s3_upload.py) upload what the bucket lacks and delete superseded partial log
tiles and superseded metadata versions, and then runs the website step, all under the repository lock and the prefix's lease
(repo_tool/publish/s3_lease.py), so neither another command of this repository nor a publish from
another machine runs in between. Apart from repo_tool/ops/publish.py so that publishing to a folder
never loads boto3.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from repo_tool.ops.snapshot import stage_snapshot
from repo_tool.publish.folder import StepHook
from repo_tool.publish.s3 import Progress, S3Bucket, S3PublishReport
from repo_tool.publish.s3_lease import DEFAULT_LEASE_SECONDS, bucket_lease
from repo_tool.publish.s3_superseded import expire_in_bucket
from repo_tool.publish.s3_upload import upload_staged
from repo_tool.publish.superseded import DEFAULT_GRACE, EXPIRY_STEP
from repo_tool.state.repository import Repository

# Run after timestamp.json, still under both locks: (the report, a keep-alive to call now and then
# so a long site upload keeps the lease).
AfterPublish = Callable[[S3PublishReport, Callable[[], None]], None]


def publish_to_s3(
    repo: Repository,
    bucket: S3Bucket,
    *,
    now: datetime,
    between_steps: StepHook | None = None,
    on_upload: Progress | None = None,
    then: AfterPublish | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    keep_superseded: timedelta | None = DEFAULT_GRACE,
) -> S3PublishReport:
    """Sign a new snapshot/timestamp if anything changed, then bring the bucket prefix up to date.

    Args:
        repo: the repository (its lock policy also governs the lease: --wait, the record).
        bucket: where to publish.
        now: the time (signing, expiry).
        between_steps: called with each step's name before it runs (tests inject crashes).
        on_upload: called with each relative path uploaded (progress display).
        then: the website step (see ``AfterPublish``).
        lease_seconds: how long the prefix's lease lasts unrenewed.
        keep_superseded: how long a superseded snapshot or role version stays before a publish
            deletes it (None: for ever; repo_tool/publish/superseded.py).

    Returns:
        What was uploaded and deleted.

    Raises:
        ConfigurationError: no credentials, no bucket, access denied.
        BusyError: this repository's lock, or the prefix's lease, is held by another process.
        UnavailableError: unreachable endpoint, a corrupt blob, an immutable object that exists
            with other bytes, a ``timestamp.json`` another publisher replaced since it was read,
            or a lease lost meanwhile (then ``timestamp.json`` is left as it was).
    """
    report = S3PublishReport(url=bucket.location.url)
    with (
        repo.locked(),
        bucket_lease(bucket, repo.lock.policy, lease_seconds=lease_seconds) as lease,
    ):

        def hook(step: str) -> None:
            lease.keep_alive()
            if between_steps is not None:
                between_steps(step)

        def uploaded(path: str) -> None:
            lease.keep_alive()
            if on_upload is not None:
                on_upload(path)

        report.signed_new_snapshot = stage_snapshot(repo, now=now)
        upload_staged(repo, bucket, report, hook, uploaded)
        hook(EXPIRY_STEP)
        report.superseded_deleted = expire_in_bucket(
            repo, bucket, now=now, grace=keep_superseded, served_before=report.served_snapshot
        )
        if then is not None:
            then(report, lease.keep_alive)
    return report
