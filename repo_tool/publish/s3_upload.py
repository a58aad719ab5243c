"""What one publish to object storage uploads and deletes, in order, over an ``S3Bucket``.

``upload_staged`` runs the steps of ``repo_tool.publish.plan`` (blobs, delegated roles, targets,
snapshot, the transparency log, roots, ``timestamp.json`` last), uploading only what the bucket
lacks, and then deletes the log's superseded partial tiles. Every step costs what changed since the
last publish, not the library's size:

- **The log** (``upload_log``): the bucket's ``log/checkpoint`` says how far its log goes (every
  tile it needs was uploaded before it), so only the tiles and ``cfl-index`` files added since are
  read from ``R/state/log`` and uploaded, then the new checkpoint. A checkpoint this log did not sign
  for that size (another log's, or none) makes it upload, and compare, every tile of its own size.
  Each file it uploads is compared with what the bucket may already hold (ETag or bytes), as any
  immutable object is: a different one stops the publish before ``timestamp.json``.
- **Superseded partial tiles** (``delete_superseded``): after ``timestamp.json`` is up, and only
  when this publish grew the log, the partial tiles ``log/tile/.../<N>.p/<W>`` narrower than the
  width the log had when the previous publish landed are deleted: the rule of the folder publish
  (repo_tool/tlog/partial_tiles.py), which keeps one publish of grace for a client that read the
  previous checkpoint. A folder deletes them right after its checkpoint is written; the bucket
  waits for the timestamp too. A delete that fails is a warning, never a failed publish: what is
  left is deleted by the next publish that grows the log, which finds it in its listing.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass

from metadata_templates.errors import CflError, UnavailableError
from repo_tool.publish.folder import StepHook, planned_bytes, repository_plan
from repo_tool.publish.plan import (
    PUBLISH_STEPS,
    TIMESTAMP_PATH,
    Kind,
    PlannedFile,
    published_versions,
    served_snapshot_version,
)
from repo_tool.publish.s3 import (
    LOG_CHECKPOINT_PATH,
    Progress,
    S3Bucket,
    S3PublishReport,
    put_immutable,
)
from repo_tool.state.repository import Repository
from repo_tool.tlog.partial_tiles import parse_partial, prune_after_publish, superseded
from repo_tool.tlog.provider_log import (
    log_files_added,
    own_checkpoint_size,
    served_size,
    signed_checkpoint,
)

logger = logging.getLogger(__name__)

LOG_PREFIX = "log/"
# The pseudo-step ``upload_staged`` calls its hook with before deleting partial tiles (after
# "timestamp"; not one of PUBLISH_STEPS, which name what is uploaded).
PRUNE_STEP = "partial-tiles"


@dataclass(frozen=True)
class LogUpload:
    """What the log step did: ``start``, the size of the log the bucket held before (0 when its
    checkpoint was not this log's), ``size``, the size now published, ``uploaded``, files put."""

    start: int
    size: int
    uploaded: int


def upload_staged(
    repo: Repository,
    bucket: S3Bucket,
    report: S3PublishReport,
    hook: StepHook,
    on_upload: Progress | None,
) -> None:
    """Bring the bucket prefix up to date with the snapshot and timestamp ``repo`` has staged
    already (repo_tool/ops/publish_s3.py signs them first), step by step in `PUBLISH_STEPS` order,
    then delete superseded partial tiles, and record in ``report`` what was done. Nothing is listed
    but ``log/tile/``: what the plan needs of the bucket it reads by name (a missing key reads as
    None), and each object is put only if its key is free (``If-None-Match``), compared when it is
    not. ``hook`` is called with each step's name before it runs (and with `PRUNE_STEP` before the
    deletes), ``on_upload`` with each relative path uploaded.

    Raises:
        ConfigurationError, UnavailableError: see ``translate_s3_error``; an immutable object that
            exists with other bytes (then ``timestamp.json`` is left as it was).
    """
    head = repo.head
    # Read with its ETag: the new timestamp replaces exactly this one (If-Match), so a publish
    # from another repository that landed meanwhile is never rolled back (docs/hosting.md).
    current = bucket.get_object(TIMESTAMP_PATH)
    timestamp_now, timestamp_etag = current if current is not None else (None, None)
    report.served_before = (
        None if timestamp_now is None else hashlib.sha256(timestamp_now).hexdigest()
    )

    @functools.cache
    def read_snapshot(version: int) -> bytes | None:
        return bucket.get(f"metadata/{version}.snapshot.json")

    plan = repository_plan(repo, timestamp_now, read_snapshot, bucket.location.url + TIMESTAMP_PATH)
    # What the site step's hint starts from (the snapshot is cached: read once).
    report.served_roles = published_versions(timestamp_now, read_snapshot)
    report.served_snapshot = served_snapshot_version(timestamp_now)
    by_step: dict[str, list[PlannedFile]] = {step: [] for step in PUBLISH_STEPS}
    for planned in plan:
        by_step[planned.step].append(planned)
    log: LogUpload | None = None
    for step in PUBLISH_STEPS:
        hook(step)
        if step == "log" and repo.config.log is not None:
            log = upload_log(repo, bucket, on_upload)
            report.uploaded["log"] += log.uploaded
        for planned in by_step[step]:
            if _upload_planned(repo, bucket, planned, timestamp_now, timestamp_etag):
                report.uploaded[step] += 1
                if on_upload is not None:
                    on_upload(planned.path)
            else:
                report.already_there += 1
    report.snapshot_version = head.snapshot_version
    report.timestamp_version = head.timestamp_version
    if log is not None and log.start < log.size:
        # As the folder does: only a publish that grows the log deletes, with one publish of
        # grace counted from the size the timestamp clients were reading binds.
        hook(PRUNE_STEP)
        keep_from = min(log.start, served_size(timestamp_now))
        report.partial_tiles_deleted = delete_superseded(bucket, keep_from=keep_from)


def upload_log(repo: Repository, bucket: S3Bucket, on_upload: Progress | None) -> LogUpload:
    """The transparency log's files this publish adds: tiles and ``cfl-index`` files (immutable,
    uploaded once), then the checkpoint the new timestamp binds (module docstring).

    Raises:
        ConfigurationError, UnavailableError: see ``translate_s3_error``; a file that exists with
            other bytes; a tile or the checkpoint of the committed size missing from the state.
    """
    state = repo.log_state()
    published = bucket.get(LOG_CHECKPOINT_PATH)
    own = own_checkpoint_size(repo.log_dir, published)
    start = own if own is not None and own <= state.size else 0
    uploaded = 0
    for path, data in log_files_added(repo.log_dir, start, state.size):
        relative = LOG_PREFIX + path
        if not put_immutable(bucket, relative, data):
            continue
        uploaded += 1
        if on_upload is not None:
            on_upload(relative)
    if state.size:
        checkpoint = signed_checkpoint(repo.log_dir, state.size)
        if published != checkpoint:
            bucket.put(LOG_CHECKPOINT_PATH, checkpoint, replace=True)
            uploaded += 1
            if on_upload is not None:
                on_upload(LOG_CHECKPOINT_PATH)
    if start < state.size:
        # The state's own superseded partial tiles, at once (what a folder publish also does).
        prune_after_publish(repo.log_dir, since=start, size=state.size, keep_from=state.size)
    return LogUpload(start, state.size, uploaded)


def delete_superseded(bucket: S3Bucket, *, keep_from: int) -> int:
    """Delete the partial tiles under ``log/tile/`` narrower than their width in a log of
    ``keep_from`` entries (``repo_tool.tlog.partial_tiles.superseded``). Partial tiles are never
    locked (``retention.kind_of``), so this works on an Object Lock bucket too, where every version
    of each is deleted. Returns how many were deleted; a failure is logged, not raised.

    It lists ``log/tile/`` (a full tile holds 256 entries, so one listing request covers a log of
    about 256,000 events) rather than working out which widths were uploaded: a delete that failed
    before is then found again by the next publish that grows the log.
    """
    doomed = []
    for relative in bucket.list(LOG_PREFIX + "tile/"):
        if relative.startswith(LOG_PREFIX + "tile/") and ".p/" in relative:
            tile = parse_partial(relative.removeprefix(LOG_PREFIX))
            if tile is not None and superseded(tile, keep_from):
                doomed.append(relative)
    deleted = 0
    for relative in sorted(doomed):
        try:
            bucket.delete(relative)
        except CflError as e:
            logger.warning(
                "%s: %d superseded partial tile(s) not deleted, left for the next publish: %s",
                bucket.location.url,
                len(doomed) - deleted,
                e,
            )
            break
        deleted += 1
    return deleted


def _upload_planned(
    repo: Repository,
    bucket: S3Bucket,
    planned: PlannedFile,
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
    return put_immutable(bucket, planned.path, data)
