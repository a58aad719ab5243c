"""The website's part of `cfl-repo publish --to s3://BUCKET/PREFIX`: render it from the metadata the
bucket now serves (verified), in a local cache kept between publishes, and upload only the pages
whose bytes changed. Runs after ``timestamp.json`` lands, under the same locks as the metadata
(repo_tool/ops/publish_s3.py), so two publishes never upload two sites at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

from metadata_templates.errors import UnavailableError
from repo_tool.publish.s3 import (
    SITE_PREFIX,
    ListedObject,
    Progress,
    S3Bucket,
    md5_etag_matches,
)
from repo_tool.verify.memo import VerifyMemo


def upload_site(
    bucket: S3Bucket,
    files: Iterable[tuple[str, bytes]],
    listing: dict[str, ListedObject],
    *,
    on_upload: Progress | None = None,
) -> int:
    """Upload the website's files whose bytes the bucket does not already hold, after the timestamp.

    Args:
        bucket: where to publish.
        files: (path relative to the site folder, bytes).
        listing: the bucket's listing from ``publish_to_s3``.
        on_upload: called with each relative path uploaded.

    Returns:
        How many files were uploaded.

    Raises:
        ConfigurationError, UnavailableError: see ``translate_s3_error``.
    """
    uploaded = 0
    for relative, data in files:
        path = SITE_PREFIX + relative
        listed = listing.get(path)
        if listed is not None and listed.size == len(data) and md5_etag_matches(listed.etag, data):
            continue
        bucket.put(path, data, replace=True)
        uploaded += 1
        if on_upload is not None:
            on_upload(path)
    return uploaded


def bucket_reader(bucket: S3Bucket) -> Callable[[str], bytes]:
    """A ``repo_tool.verify`` reader over the bucket, to render the site from what clients see."""
    from repo_tool.verify.sources import NotFound

    def read(relative: str) -> bytes:
        data = bucket.get(relative)
        if data is None:
            raise NotFound(relative)
        return data

    return read


def publish_site_to_s3(
    bucket: S3Bucket,
    listing: dict[str, ListedObject],
    *,
    trusted_root: bytes,
    site_dir: Path,
    now: datetime,
    on_upload: Progress | None = None,
    memo: VerifyMemo | None = None,
) -> int:
    """Render the website from the metadata the bucket now serves (verified), then upload it.

    ``memo`` (the repository's verified-role memo, repo_tool/verify/memo.py) lets the walk recall
    role files it verified cleanly before; it is pruned to the bucket's roles after a clean walk.

    Returns:
        How many site files were uploaded.

    Raises:
        VerificationError: what the bucket serves does not verify (nothing of the site is uploaded).
        ConfigurationError, UnavailableError: see ``translate_s3_error``.
    """
    from repo_tool.publish.site_step import verified_for_site
    from repo_tool.site.build import build_site

    library = verified_for_site(bucket_reader(bucket), trusted_root, now=now, memo=memo)
    result = build_site(library, site_dir, generated=now)

    def files() -> Iterator[tuple[str, bytes]]:
        for relative in result.files:
            yield relative, (site_dir / relative).read_bytes()

    try:
        return upload_site(bucket, files(), listing, on_upload=on_upload)
    except OSError as e:
        raise UnavailableError(f"site {site_dir}: cannot read: {e}") from e
