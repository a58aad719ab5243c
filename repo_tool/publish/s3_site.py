"""The website's part of `cfl-repo publish --to s3://BUCKET/PREFIX`: render it from the metadata the
bucket now serves (verified), in a local cache kept between publishes, and upload only the pages
whose bytes changed. Runs after ``timestamp.json`` lands, under the same locks as the metadata
(repo_tool/ops/publish_s3.py), so two publishes never upload two sites at once.

Which pages changed is known without listing the bucket's ``site/`` (100,000 images are about
111,000 pages, a listing request per 1,000): the cache's record (``<cache>.uploaded``, beside it)
holds the SHA-256 of the ``timestamp.json`` its last complete upload was rendered from. When the
bucket served exactly that timestamp before this publish, nobody else has published since and the
bucket's site is the cache, so the pages the build rewrites (``SiteBuildResult.changed``) are all
that is uploaded. Otherwise (first publish, another machine or a ``--no-site`` publish since, a
lost or damaged record) the site is listed and every page compared by ETag, as before. The record
is withdrawn before the build touches the cache and written again only after the last page is
up, so a crash in between makes the next publish compare everything: a page is never left behind.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from metadata_templates.atomic import atomic_write_bytes, fsync_dir
from metadata_templates.errors import UnavailableError
from repo_tool.publish.plan import TIMESTAMP_PATH, published_versions
from repo_tool.publish.s3 import (
    SITE_PREFIX,
    ListedObject,
    Progress,
    S3Bucket,
    md5_etag_matches,
)
from repo_tool.publish.s3_stamps import BucketStamps, stamps_record
from repo_tool.verify.memo import VerifyMemo

if TYPE_CHECKING:
    from repo_tool.publish.site_step import PublishHint
    from repo_tool.verify.published import PublishedLibrary

logger = logging.getLogger(__name__)


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
        listing: the bucket's ``site/`` listing: a file listed with the same size and MD5 ETag is
            not uploaded again; empty uploads every file given.
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


def bucket_reader(bucket: S3Bucket, seen: dict[str, bytes] | None = None) -> Callable[[str], bytes]:
    """A ``repo_tool.verify`` reader over the bucket, to render the site from what clients see;
    the timestamp and snapshot it reads are also kept in ``seen`` (by relative path) when given."""
    from repo_tool.verify.sources import NotFound

    def read(relative: str) -> bytes:
        data = bucket.get(relative)
        if data is None:
            raise NotFound(relative)
        if seen is not None and (relative == TIMESTAMP_PATH or relative.endswith(".snapshot.json")):
            seen[relative] = data
        return data

    return read


_RECORD = re.compile(rb"([0-9a-f]{64})\n?")


def upload_record(site_dir: Path) -> Path:
    """The file that says which served timestamp the cache at ``site_dir`` was last uploaded for."""
    return site_dir.with_name(site_dir.name + ".uploaded")


def _recorded(site_dir: Path) -> str | None:
    """The record's SHA-256, or None when there is none or it is not one (then: compare all)."""
    try:
        with upload_record(site_dir).open("rb") as handle:
            found = _RECORD.fullmatch(handle.read(100))
    except OSError:
        return None
    return found.group(1).decode("ascii") if found else None


def _withdraw(site_dir: Path) -> None:
    record = upload_record(site_dir)
    try:
        record.unlink(missing_ok=True)
        if record.parent.is_dir():
            fsync_dir(record.parent)  # gone before the first page of the cache changes
    except OSError as e:
        raise UnavailableError(f"site cache {record}: cannot remove: {e}") from e


def publish_site_to_s3(
    bucket: S3Bucket,
    *,
    served_before: str | None,
    trusted_root: bytes,
    site_dir: Path,
    now: datetime,
    hint: PublishHint | None = None,
    on_upload: Progress | None = None,
    memo: VerifyMemo | None = None,
) -> int:
    """Render the website from the metadata the bucket now serves (verified), then upload it.

    ``served_before`` is the SHA-256 of the ``timestamp.json`` the bucket served before this
    publish (``S3PublishReport.served_before``): when the cache's record names it, only the pages
    the build changed are uploaded; otherwise ``site/`` is listed and every page compared (module
    docstring). ``memo`` (the repository's verified-role memo, repo_tool/verify/memo.py) lets the
    walk recall role files it verified cleanly before; it is pruned to the bucket's roles after a
    clean walk. ``hint`` (``site_step.publish_hint`` of the roles the bucket served before) names
    the images this publish added; when the cache was last built from exactly those roles, the
    walk is the flat one (unchanged role files not downloaded, repo_tool/publish/s3_stamps.py) and
    the site renders only what the new images change, as a folder publish does.

    Returns:
        How many site files were uploaded.

    Raises:
        VerificationError: what the bucket serves does not verify (nothing of the site is uploaded).
        ConfigurationError, UnavailableError: see ``translate_s3_error``; the cache or its record
            cannot be written.
    """
    from repo_tool.publish.site_step import BASIS_NAME, TreeState, images_named, site_basis
    from repo_tool.site.build import build_site
    from repo_tool.site.files import MANIFEST_NAME
    from repo_tool.verify.lazy import LazyRecallError

    told = hint if hint is not None and site_basis(site_dir) == hint.since else None
    in_step = served_before is not None and _recorded(site_dir) == served_before
    flat = told is not None and memo is not None
    try:
        library, seen = _verified(bucket, trusted_root, now, memo, served_before, site_dir, flat)
    except LazyRecallError as e:
        # A memo entry damaged between its header and its body: walk again, in full.
        logger.warning("%s; verifying the bucket in full", e)
        library, seen = _verified(bucket, trusted_root, now, memo, served_before, site_dir, False)
    timestamp = seen[TIMESTAMP_PATH]
    rendered = TreeState(published_versions(timestamp, lambda v: seen.get(_snapshot(v))))
    _withdraw(site_dir)
    added = images_named(library, told.targets) if told is not None else None
    try:
        (site_dir / BASIS_NAME).unlink(missing_ok=True)  # claims a complete build: not until it is
    except OSError as e:
        raise UnavailableError(f"site {site_dir / BASIS_NAME}: cannot remove: {e}") from e
    result = build_site(library, site_dir, generated=now, added=added)
    if in_step:
        # The pages only: the build's manifest (MANIFEST_NAME, 111,000 lines at 100,000 images,
        # rewritten whenever an image is added) is its bookkeeping, not the site, which the full
        # compare below never uploads either.
        names, listing = tuple(n for n in result.changed if n != MANIFEST_NAME), {}
    else:
        names, listing = result.files, bucket.list(SITE_PREFIX)

    def files() -> Iterator[tuple[str, bytes]]:
        for relative in names:
            yield relative, (site_dir / relative).read_bytes()

    try:
        uploaded = upload_site(bucket, files(), listing, on_upload=on_upload)
    except OSError as e:
        raise UnavailableError(f"site {site_dir}: cannot read: {e}") from e
    for record, line in (
        (site_dir / BASIS_NAME, rendered.digest),
        (upload_record(site_dir), hashlib.sha256(timestamp).hexdigest()),
    ):
        try:
            atomic_write_bytes(record, f"{line}\n".encode("ascii"))
        except OSError as e:
            raise UnavailableError(f"site cache {record}: cannot write: {e}") from e
    logger.info(
        "site: told %s new image(s); %s; %s",
        "no" if added is None else len(added),
        "appended" if result.appended else "keyed build",
        "changed pages only" if in_step else "every page compared",
    )
    return uploaded


def _snapshot(version: int) -> str:
    return f"metadata/{version}.snapshot.json"


def _verified(
    bucket: S3Bucket,
    trusted_root: bytes,
    now: datetime,
    memo: VerifyMemo | None,
    served_before: str | None,
    site_dir: Path,
    flat: bool,
) -> tuple[PublishedLibrary, dict[str, bytes]]:
    from repo_tool.publish.site_step import verified_for_site

    seen: dict[str, bytes] = {}
    stamps = None
    if flat:
        stamps = BucketStamps(bucket, stamps_record(site_dir), served_before, seen)
        stamps.load()
    library = verified_for_site(
        bucket_reader(bucket, seen), trusted_root, now=now, memo=memo, lazy=flat, stamps=stamps
    )
    if stamps is not None:
        logger.info("bucket stamps: %d role file(s) not downloaded again", stamps.skipped)
    return library, seen
