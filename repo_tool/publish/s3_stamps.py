"""Stamps for a bucket: the role files the website step need not download again.

Before it renders the website, `publish --to s3://` verifies what the bucket serves. The memo
(repo_tool/verify/memo.py) spares verifying a role again, but the walk still downloaded every role
file to check it against the snapshot's pin: at 100,000 images about 2,600 GETs and 100 MB, and
the CPL (43 MB at 100,000 entries), on every publish, for one new image. A folder spares that with
file-system stamps (repo_tool/verify/stamps.py); a bucket has no ``ctime``, so a bucket stamp holds
for as long as nobody else publishes:

- the record (``R/site-cache/s3-<hash>.stamps.json``, beside the site cache) names the files the
  last clean walk downloaded and found matching their pins, and the SHA-256 of the
  ``timestamp.json`` that walk started from;
- the next publish uses it only when the bucket served exactly that timestamp before it
  (``S3PublishReport.served_before``): nobody else has published since, so a file under the same
  versioned name with the same pin is the file the last walk checked. Anything else (another
  publisher, a damaged or missing record) downloads every file, as before;
- a file stamped unchanged is not downloaded; when something needs its bytes (the site never
  does) it is downloaded and checked then. For the CPL only its last 4 kB are fetched (a ranged
  GET), for the envelope the site shows;
- an eighth of the stamped files, at most ``SCRUB``, those checked longest ago, are downloaded
  and checked anyway on each publish, so every file is read again within 8 publishes, or
  (files / ``SCRUB``) when there are more than 256 files: 82 publishes at 2,600 bins.

What it relies on: published names are versioned or hashed and this repository never overwrites
one (``If-None-Match``). Someone else who can put objects under the prefix could replace one
unseen until its scrub; clients would reject it (it no longer matches the snapshot's pin), and
``cfl-repo verify-bucket`` reports every key with more than one version on a versioned bucket.
The record is as trusted as the memo beside it (the repository directory ``R``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from repo_tool.publish.plan import TIMESTAMP_PATH
from repo_tool.publish.s3 import S3Bucket
from repo_tool.verify.stamps import Stat

__all__ = ["SCRUB", "BucketStamps", "stamps_record"]

logger = logging.getLogger(__name__)

_MAGIC = "cfl-bucket-stamps"
_FORMAT = 1
# At most this many files read again per publish although stamped (the longest unchecked first),
# and never more than one in ``SCRUB_SHARE``.
SCRUB = 32
SCRUB_SHARE = 8
# ``stat`` has nothing to say of an object; ``stamp`` ignores what it is handed back.
_NO_STAT: Stat = (0, 0, 0, 0, 0)


def stamps_record(site_dir: Path) -> Path:
    """Where the bucket stamps of the site cache at ``site_dir`` are kept."""
    return site_dir.with_name(site_dir.name + ".stamps.json")


class BucketStamps:
    """``RoleStamps`` over a bucket (module docstring).

    Args:
        bucket: the bucket the walk reads (for the CPL's ranged read).
        record: ``stamps_record`` of the site cache.
        served_before: SHA-256 of the ``timestamp.json`` the bucket served before this publish.
        seen: what the walk's reader has read, by path: ``save`` records the SHA-256 of the
            ``timestamp.json`` in it, the one the walk started from.
    """

    def __init__(
        self, bucket: S3Bucket, record: Path, served_before: str | None, seen: Mapping[str, bytes]
    ) -> None:
        self.bucket = bucket
        self.record = record
        self.served_before = served_before
        self.seen = seen
        self.skipped = 0
        self._old: dict[str, str] = {}  # in the order last checked, longest ago first
        self._due: frozenset[str] = frozenset()
        self._kept: dict[str, str] = {}
        self._read: dict[str, str] = {}

    def load(self) -> None:
        """Read the record; no stamps when it is missing, damaged or of another timestamp."""
        try:
            doc = json.loads(self.record.read_bytes())
            if (
                doc["magic"] != _MAGIC
                or doc["format"] != _FORMAT
                or doc["bucket"] != self.bucket.location.url
                or self.served_before is None
                or doc["served"] != self.served_before
            ):
                return
            for relative, sha256 in doc["files"]:
                if type(relative) is str and type(sha256) is str and len(sha256) == 64:
                    self._old[relative] = sha256
        except Exception as e:  # no record, or a damaged one: nothing is stamped
            logger.debug("bucket stamps: unusable (%s)", e)
            self._old.clear()
        due = min(SCRUB, -(-len(self._old) // SCRUB_SHARE))
        self._due = frozenset(list(self._old)[:due])

    def stat(self, relative: str) -> Stat | None:
        return _NO_STAT

    def unchanged(self, relative: str, sha256: str) -> bool:
        if relative in self._due or self._old.get(relative) != sha256:
            return False
        self._kept[relative] = sha256
        self.skipped += 1
        return True

    def tail_if_unchanged(self, relative: str, sha256: str, octets: int) -> bytes | None:
        if not self.unchanged(relative, sha256):
            return None
        tail = self.bucket.get_tail(relative, octets)
        if tail is None:
            self._kept.pop(relative, None)
            self.skipped -= 1
        return tail

    def stamp(self, relative: str, sha256: str, before: Stat | None) -> None:
        self._kept.pop(relative, None)
        self._read[relative] = sha256

    def save(self) -> None:
        """Keep this walk's stamps: those it kept, longest unchecked first, then those it read."""
        started_from = self.seen.get(TIMESTAMP_PATH)
        if started_from is None:
            return
        order = {relative: n for n, relative in enumerate(self._old)}
        kept = sorted(self._kept, key=lambda relative: order.get(relative, len(order)))
        files = [[r, self._kept[r]] for r in kept] + [[r, s] for r, s in self._read.items()]
        doc = {
            "magic": _MAGIC,
            "format": _FORMAT,
            "bucket": self.bucket.location.url,
            "served": hashlib.sha256(started_from).hexdigest(),
            "files": files,
        }
        try:
            atomic_write_bytes(self.record, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as e:
            logger.warning("bucket stamps: cannot write %s (%s)", self.record, e)
