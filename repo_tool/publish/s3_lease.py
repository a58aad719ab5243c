"""A lease on a bucket prefix, so two `cfl-repo publish --to s3://` from two machines never upload
at once.

Publishes from one repository are kept apart by the flock on ``R/.lock``. Two machines share no
flock (two repositories publishing one prefix: a standby restored from a backup, a migration), so
the lease is an object, ``PREFIX.cfl-publish.lock``, handed on by conditional writes only:

- **take**: put with ``If-None-Match: *`` when there is none, or with ``If-Match`` on the ETag just
  read over a lease that is released, expired, or held by a process of this host that is gone (a
  ``kill -9``). Of two takers exactly one put succeeds; the other reads the winner's record and waits
  (``--wait``) or is refused, naming it: command, PID, host and since when.
- **renew**: ``If-Match`` its own ETag with a new expiry, at each publish step and while uploading,
  once a third of the lease has passed. A lease lost meanwhile (it expired and another took it)
  stops the publish before ``timestamp.json``.
- **release**: a ``released`` record, ``If-Match`` its own ETag. The lease is never deleted, so the
  publishing identity still needs no ``s3:DeleteObject``.

The lease is advice over the real guarantee: ``timestamp.json`` is replaced with ``If-Match`` on the
ETag this publish read (repo_tool/publish/s3.py), so even a publisher that lost its lease never
replaces a timestamp it did not read. A holder on another host is trusted until its lease expires
(``DEFAULT_LEASE_SECONDS``); its clock is compared with ours, so hosts keep NTP time. On a server
without conditional writes (HTTP 501) the lease degrades to read-then-put, as every put there does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from metadata_templates.errors import CflError, UnavailableError
from metadata_templates.locking import (
    BusyError,
    Holder,
    LockPolicy,
    format_since,
)
from repo_tool.publish.s3 import LEASE_PATH, S3Bucket

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 900.0
RECORD_LIMIT = 4096


def pid_alive(pid: int) -> bool:
    """Whether a process of this host (and PID namespace) with this PID runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease object says."""

    holder: Holder
    expires: str
    released: bool

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": 1,
            "state": "released" if self.released else "held",
            **self.holder.to_dict(),
            "expires": self.expires,
        }
        return json.dumps(doc, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord | None:
        """The record; None when the bytes are not one (then it may be taken over)."""
        try:
            doc: Any = json.loads(data[:RECORD_LIMIT])
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        holder = Holder.from_dict(doc)
        if holder is None or doc.get("state") not in ("held", "released"):
            return None
        expires = doc.get("expires")
        if not isinstance(expires, str) or _parse(expires) is None:
            return None
        return cls(holder, expires, doc["state"] == "released")


def _parse(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class BucketLease:
    """This publish's lease on one bucket prefix."""

    def __init__(
        self,
        bucket: S3Bucket,
        policy: LockPolicy,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self.bucket = bucket
        self.policy = policy
        self.lease = timedelta(seconds=lease_seconds)
        self.alive = alive
        self.etag: str | None = None  # of our own record, while we hold it
        self._written_at = 0.0  # policy.monotonic() of our last write

    @property
    def where(self) -> str:
        return self.bucket.location.url + LEASE_PATH

    def _record(self, holder: Holder, *, released: bool = False) -> LeaseRecord:
        return LeaseRecord(holder, format_since(self.policy.utc_now() + self.lease), released)

    def _free(self, record: LeaseRecord) -> bool:
        """Whether a lease found may be taken over."""
        if record.released:
            return True
        expires = _parse(record.expires)
        now = self.policy.utc_now()
        # A lease claiming to outlast two of ours is no publisher's: a broken or hostile writer
        # of the bucket must not block publishing for a year.
        if expires is None or expires <= now or expires > now + 2 * self.lease:
            return True
        return record.holder.host == self.policy.host and not self.alive(record.holder.pid)

    def _write(self, record: LeaseRecord, over: str | None) -> str | None:
        """Put ``record`` over the ETag ``over`` (None: where there is none); its new ETag, or
        None when the object is no longer what we read."""
        data = record.to_bytes()
        put = self.bucket.put(LEASE_PATH, data, replace=over is not None, if_match=over)
        if not put:
            return None
        found = self.bucket.get_object(LEASE_PATH)
        if found is None or found[0] != data:
            return None  # another taker's put landed after ours (servers without conditions)
        self._written_at = self.policy.monotonic()
        return found[1]

    def take(self) -> None:
        """Take the lease, waiting up to ``policy.wait`` seconds for its holder.

        Raises:
            BusyError: another publisher held it for longer than ``policy.wait``.
            ConfigurationError, UnavailableError: the bucket cannot be read or written.
        """
        start = self.policy.monotonic()
        next_report = 0.0
        pause = 0.05
        mine = self.policy.record()
        while True:
            found = self.bucket.get_object(LEASE_PATH)
            record = None if found is None else LeaseRecord.from_bytes(found[0])
            if found is None or record is None or self._free(record):
                if record is not None and not record.released:
                    logger.warning("taking over the stale lease of %s", record.holder.describe())
                etag = self._write(self._record(mine), None if found is None else found[1])
                if etag is not None:
                    self.etag = etag
                    return
                continue  # another taker won the race: read what it wrote
            waited = self.policy.monotonic() - start
            if waited >= self.policy.wait:
                raise BusyError(
                    f"{self.bucket.location.url} is busy: another publish, "
                    f"{record.holder.describe()}, holds {LEASE_PATH} until {record.expires}"
                    + (f"; waited {self.policy.wait:g}s" if self.policy.wait else ""),
                    hint="run again when it has finished, or give --wait SECONDS; a lease whose "
                    "holder was killed on another host is taken over once it expires",
                    holder=record.holder,
                )
            if self.policy.on_wait is not None and waited >= next_report:
                self.policy.on_wait(
                    f"waiting for {self.bucket.location.url}: {record.holder.describe()} holds "
                    f"its lease ({waited:.0f}s of {self.policy.wait:g}s)"
                )
                next_report = waited + self.policy.progress_every
            self.policy.sleep(min(pause, max(self.policy.wait - waited, 0.0)))
            pause = min(pause * 2, max(self.policy.poll, 1.0))

    def keep_alive(self) -> None:
        """Renew the lease once a third of it has passed since our last write.

        Raises:
            UnavailableError: the lease was lost (it expired and another publisher took it).
        """
        if self.etag is None:
            return
        if self.policy.monotonic() - self._written_at < self.lease.total_seconds() / 3:
            return
        etag = self._write(self._record(self.policy.record()), self.etag)
        if etag is None:
            self.etag = None
            raise UnavailableError(
                f"{self.where}: the lease was lost (it expired and another publisher took it); "
                "stopped before timestamp.json",
                hint="run the publish again",
            )
        self.etag = etag

    def release(self) -> None:
        """Mark the lease released (never raises: an unreleased lease expires)."""
        if self.etag is None:
            return
        try:
            self._write(self._record(self.policy.record(), released=True), self.etag)
        except CflError as e:  # the publish's own outcome is what the operator must see
            logger.warning(
                "%s: could not release the lease (%s); it expires by itself", self.where, e
            )
        self.etag = None


@contextlib.contextmanager
def bucket_lease(
    bucket: S3Bucket,
    policy: LockPolicy,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    alive: Callable[[int], bool] = pid_alive,
) -> Iterator[BucketLease]:
    """Hold the prefix's lease for the block (see the module docstring).

    Raises:
        BusyError: another publisher holds it (for longer than ``policy.wait``).
    """
    lease = BucketLease(bucket, policy, lease_seconds=lease_seconds, alive=alive)
    lease.take()
    try:
        yield lease
    finally:
        lease.release()
