"""The body of `cfl-repo publish --to s3://BUCKET/PREFIX`: usage checks, progress, the report.

``repo_tool/cli/publish.py`` only declares the options and calls ``run_publish_to_s3``; the work is
``repo_tool.ops.publish_s3``'s and ``repo_tool.publish.s3``'s. Humans read stderr; ``--json`` prints
one document on stdout.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from metadata_templates.errors import ConfigurationError, field_error
from metadata_templates.output import json_document
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.retention import COMPLIANCE, LockPolicy
from repo_tool.publish.s3 import (
    Progress,
    S3Bucket,
    S3PublishReport,
    make_s3_client,
    parse_s3_url,
    site_cache_dir,
)
from repo_tool.publish.s3_lock import LockingS3Bucket, locking_bucket
from repo_tool.publish.s3_site import publish_site_to_s3
from repo_tool.publish.site_step import TreeState, publish_hint
from repo_tool.state.repository import Repository
from repo_tool.verify.memo import VerifyMemo


def doc_lock(locking: LockingS3Bucket | None) -> dict[str, object]:
    """The ``object_lock`` member of ``--json`` (absent without --object-lock-days, so the
    document of a publish without a lock stays as it was)."""
    if locking is None:
        return {}
    return {
        "object_lock": {
            "mode": COMPLIANCE,
            "days": locking.policy.days,
            "retain_until": locking.policy.retain_until.isoformat(),
            "locked": locking.locked,
        }
    }


@contextlib.contextmanager
def _progress(label: str, *, enabled: bool) -> Iterator[Progress | None]:
    """A rich spinner counting uploads, on a terminal only (never in --json mode or in a pipe)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import SpinnerColumn, TextColumn

    with RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed} uploaded, last {task.fields[last]}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None, last="")

        def advance(path: str) -> None:
            bar.update(task, advance=1, last=path)

        yield advance


def run_publish_to_s3(
    open_repo: Callable[[], Repository],
    *,
    to_url: str | None,
    endpoint_url: str | None,
    out: Path | None,
    object_lock_days: int | None = None,
    no_site: bool,
    as_json: bool,
    now: datetime,
    keep_superseded: timedelta | None,
) -> None:
    """Publish to object storage and report.

    Raises:
        ConfigurationError: --endpoint-url or --object-lock-days without --to, --to with
            --out, a bad URL, no credentials, no bucket, access denied, --object-lock-days on a
            bucket without Object Lock (checked before anything is signed or uploaded).
        BusyError: the repository lock or the prefix's lease is held by another process.
        UnavailableError: the endpoint is unreachable, an immutable object differs, or the
            timestamp changed since it was read.
        VerificationError: the bucket's metadata does not verify when the site is rendered.
    """
    if to_url is None and object_lock_days is not None:
        raise ConfigurationError(
            field_error(
                "--object-lock-days",
                object_lock_days,
                "only with --to s3://BUCKET/PREFIX (a folder cannot be locked)",
            )
        )
    if to_url is None:
        raise ConfigurationError(
            field_error("--to", None, "s3://BUCKET/PREFIX whenever --endpoint-url is given")
        )
    if out is not None:
        raise ConfigurationError(
            field_error("--out", str(out), "no --out with --to (one destination per publish)")
        )
    location = parse_s3_url(to_url)
    bucket = S3Bucket(make_s3_client(endpoint_url), location)
    locking: LockingS3Bucket | None = None
    if object_lock_days is not None:
        # Before the repository is opened: a bucket that cannot lock changes nothing anywhere.
        locking = locking_bucket(bucket, LockPolicy(object_lock_days, now))
        bucket = locking
    repo = open_repo()
    bars = contextlib.ExitStack()

    def site(report: S3PublishReport, keep_alive: Callable[[], None]) -> None:
        # Under the repository lock and the prefix's lease still: two publishes never upload
        # two websites at once, nor build them in one R/site-cache folder.
        bars.close()  # the metadata bar ends first (one live display at a time)
        print(
            f"published to {location.url}: snapshot {report.snapshot_version}, timestamp "
            f"{report.timestamp_version}; uploaded {sum(report.uploaded.values())} object(s), "
            f"{report.already_there} already there; deleted {report.partial_tiles_deleted} "
            f"superseded partial log tile(s) and {report.superseded_deleted} superseded metadata "
            "version(s)",
            file=sys.stderr,
        )
        if locking is not None:
            retain_until = locking.policy.retain_until.isoformat()
            print(
                f"object lock: {locking.locked} object(s) locked in {COMPLIANCE} mode until "
                f"{retain_until}; objects already there keep their retention",
                file=sys.stderr,
            )
        if no_site:
            return
        with _progress("website", enabled=not as_json) as advance:

            def uploaded(path: str) -> None:
                keep_alive()
                if advance is not None:
                    advance(path)

            before = TreeState(report.served_roles) if report.served_roles else None
            report.site_uploaded = publish_site_to_s3(
                bucket,
                served_before=report.served_before,
                hint=publish_hint(repo, before),
                trusted_root=repo.metadata_bytes("root", 1),
                site_dir=site_cache_dir(repo.path, location),
                now=now,
                on_upload=uploaded,
                memo=VerifyMemo.of_repository(repo.path),  # verified-role memo (issue 14)
            )
        print(
            f"website: {location.url}site/index.html ({report.site_uploaded} file(s) uploaded)",
            file=sys.stderr,
        )

    with bars:
        advance = bars.enter_context(_progress("metadata and images", enabled=not as_json))
        report = publish_to_s3(
            repo, bucket, now=now, on_upload=advance, then=site, keep_superseded=keep_superseded
        )
    doc = report.to_dict() | doc_lock(locking)
    if as_json:
        print(json_document(doc))
