"""Publish to S3-compatible object storage: the operation that lists the bucket prefix, signs a new
snapshot and timestamp for whatever the staged roles changed (repo_tool/ops/snapshot.py), and then
has the S3 writer (repo_tool/publish/s3.py) upload what the bucket lacks, all under the repository
lock. Apart from repo_tool/ops/publish.py so that publishing to a folder never loads boto3.
"""

from __future__ import annotations

from datetime import datetime

from repo_tool.ops.snapshot import stage_snapshot
from repo_tool.publish.folder import StepHook
from repo_tool.publish.s3 import ListedObject, Progress, S3Bucket, S3PublishReport, upload_staged
from repo_tool.state.repository import Repository


def publish_to_s3(
    repo: Repository,
    bucket: S3Bucket,
    *,
    now: datetime,
    between_steps: StepHook | None = None,
    on_upload: Progress | None = None,
) -> tuple[S3PublishReport, dict[str, ListedObject]]:
    """Sign a new snapshot/timestamp if anything changed, then bring the bucket prefix up to date.

    Args:
        repo: the repository.
        bucket: where to publish.
        now: the time (signing, expiry).
        between_steps: called with each step's name before it runs (tests inject crashes).
        on_upload: called with each relative path uploaded (progress display).

    Returns:
        The report, and the listing taken at the start (for ``upload_site``).

    Raises:
        ConfigurationError: no credentials, no bucket, access denied.
        UnavailableError: unreachable endpoint, a lock held, a corrupt blob, or an immutable object
            that exists with other bytes (then ``timestamp.json`` is left as it was).
    """
    hook = between_steps or (lambda step: None)
    report = S3PublishReport(url=bucket.location.url)
    with repo.locked():
        listing = bucket.list()
        report.signed_new_snapshot = stage_snapshot(repo, now=now)
        upload_staged(repo, bucket, listing, report, hook, on_upload)
    return report, listing
