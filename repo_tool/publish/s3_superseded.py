"""Deleting superseded snapshot and role versions from a bucket (repo_tool/publish/superseded.py).

The rule is the folder's. What differs is where the ledger lives: a bucket has no place that is
not served, so it is kept beside the site cache in the repository,
``R/site-cache/s3-<hash>.superseded``. A second machine publishing to the same prefix keeps its own:
each entry says "this snapshot was served from then on", which stays true whatever the other
publishes, so a ledger that misses some publishes only expires later, never sooner. The first
expiry lists ``metadata/`` once (a request per 1,000 keys); every later one names its keys.

Runs after ``timestamp.json`` is up and before the website. A delete that fails is a warning and the
floor is not moved, so the next publish tries again; nothing here fails a publish.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import CflError
from repo_tool.publish.folder import expired_names, read_ledger
from repo_tool.publish.s3 import S3Bucket, site_cache_dir
from repo_tool.publish.s3_delete import ObjectLockedError
from repo_tool.publish.superseded import LEDGER_NAME, Ledger
from repo_tool.state.repository import Repository

logger = logging.getLogger(__name__)

METADATA_PREFIX = "metadata/"


def ledger_path(repo_path: Path, bucket: S3Bucket) -> Path:
    """``R/site-cache/s3-<hash>.superseded``: one per bucket prefix."""
    cache = site_cache_dir(repo_path, bucket.location)
    return cache.with_name(cache.name + LEDGER_NAME.replace(".cfl-", "."))


def expire_in_bucket(
    repo: Repository,
    bucket: S3Bucket,
    *,
    now: datetime,
    grace: timedelta | None,
    served_before: int | None = None,
) -> int:
    """Record that the bucket serves the head's snapshot from ``now`` and delete the snapshot and
    role versions superseded for longer than ``grace`` (never, with None). Returns how many keys
    were deleted. The caller holds the repository lock and the prefix's lease."""
    if not repo.head.snapshot_version:
        return 0
    path = ledger_path(repo.path, bucket)
    ledger = Ledger.from_bytes(read_ledger(path))  # never a FIFO's endless wait, nor a link
    head = repo.head.snapshot_version
    recorded = ledger.within(head, now).record(head, now)
    cut = recorded.cut(now, grace, served_before) if grace is not None else None
    deleted = 0
    if cut is not None:

        def listing() -> list[str]:
            names = (key.removeprefix(METADATA_PREFIX) for key in bucket.list(METADATA_PREFIX))
            return [name for name in names if "/" not in name]

        try:
            names = expired_names(repo, recorded, cut, listing)
        except CflError as e:  # UnavailableError too: the cut's snapshot gone from R
            logger.warning("%s: superseded metadata not looked for: %s", bucket.location.url, e)
            names = None
        if names is not None:
            locked = []
            for name in names:
                try:
                    bucket.delete(METADATA_PREFIX + name)
                except ObjectLockedError:
                    # Locked by an older release (every version was): it goes by hand once its
                    # date has passed; the floor moves on, so it is not asked for again.
                    locked.append(name)
                    continue
                except CflError as e:
                    logger.warning(
                        "%s: superseded metadata from %s on not deleted, left for the next "
                        "publish: %s",
                        bucket.location.url,
                        name,
                        e,
                    )
                    names = None
                    break
                deleted += 1
            if locked:
                logger.warning(
                    "%s: %d superseded metadata version(s) under Object Lock left (from %s on); "
                    "delete them once their retention ends",
                    bucket.location.url,
                    len(locked),
                    locked[0],
                )
        if names is not None:
            recorded = recorded.expired_to(cut)
    if recorded != ledger:
        with contextlib.suppress(OSError):
            # Lost, it only delays expiry; never a failed publish after timestamp.json is up.
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, recorded.to_bytes())
    return deleted
