"""`cfl-repo verify-bucket s3://BUCKET/PREFIX`: is every object that must be immutable locked?

Registered on the root group by repo_tool/cli/main.py; parse, call
``repo_tool.publish.s3_lock.verify_bucket``, render. boto3 is imported only when the command runs,
so the rest of `cfl-repo` never loads it. Needs no repository: it reads only the bucket.
"""

from __future__ import annotations

import sys

import click

from metadata_templates.errors import EXIT_FAILURE
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import utc_now

_now = utc_now
DEFAULT_MIN_DAYS = 30


@click.command("verify-bucket")
@click.argument("url", metavar="s3://BUCKET/PREFIX")
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="An S3-compatible server (MinIO, Ceph, ...) instead of AWS.",
)
@click.option(
    "--min-days",
    type=click.IntRange(0, 36500),
    default=DEFAULT_MIN_DAYS,
    show_default=True,
    metavar="N",
    help="Warn (retention-expiring) about a lock that ends within N days.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout.")
def verify_bucket(url: str, endpoint_url: str | None, min_days: int, as_json: bool) -> None:
    """Check that every object under s3://BUCKET/PREFIX that must be immutable (blobs, root
    versions, full log tiles and index files) is held by S3 Object Lock in compliance mode, in
    every version, not hidden by a delete marker and never written over. timestamp.json, the
    site, the log checkpoint, partial tiles and superseded snapshot and role versions change or
    go by design and are not checked.

    \b
    Exit 0 when nothing is wrong (warnings allowed), 1 with every finding listed otherwise,
    2 on a bad URL, missing credentials or access denied. Example:
      cfl-repo verify-bucket s3://cfl-firmware/library --min-days 90
      cfl-repo verify-bucket s3://cfl-firmware/library --endpoint-url https://s3.example.org --json

    \b
    Finding codes (stable): bucket-lock-disabled, not-locked, governance-mode, retention-expired,
    delete-marker, overwritten (problems); retention-expiring (warning). Credentials: boto3's
    standard chain, allowed s3:GetBucketObjectLockConfiguration, s3:ListBucketVersions,
    s3:GetObjectVersion and s3:GetObjectRetention (without the last, S3 hides every lock and each
    object reads as not-locked). See docs/hosting.md, "Immutable storage (S3 Object Lock)".
    """
    from repo_tool.publish.s3 import S3Bucket, make_s3_client, parse_s3_url
    from repo_tool.publish.s3_lock import verify_bucket as do_verify

    location = parse_s3_url(url, field="URL")
    bucket = S3Bucket(make_s3_client(endpoint_url), location)
    report = do_verify(bucket, now=_now(), min_days=min_days)
    if as_json:
        _emit_json(report.to_dict())
    for finding in report.findings:
        _err(f"{finding.severity}: {finding.code}: {finding.message}")
    summary = (
        f"{report.checked} immutable object(s), {report.versions} version(s) checked, "
        f"{report.skipped} mutable object(s) skipped"
    )
    if report.problems:
        _err(
            f"error: {location.url} failed verification ({len(report.problems)} problem(s), "
            f"{len(report.warnings)} warning(s); {summary})"
        )
        sys.exit(EXIT_FAILURE)
    _err(f"ok: {location.url}: every immutable object is locked ({summary})")
