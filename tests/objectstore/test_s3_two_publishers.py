"""Two `publish --to s3://` at once, against a real S3-API server (moto's server mode on loopback).

Publishes from one repository are kept apart by its flock; publishes from two machines (two
repositories on one prefix: here a copy of the repository, as a standby would be) by the prefix's
lease object (repo_tool/publish/s3_lease.py), and, underneath it, by `timestamp.json` being
replaced only over the ETag that was read and never with an older version.

What is shown, in this process with injected clocks: the lease is taken, refused naming its
holder, waited for, taken over once expired, held by a dead process of this host or absurdly long,
renewed, and lost (the publish then stops before `timestamp.json`); a timestamp replaced meanwhile
is never overwritten. With real processes: two publishes of one repository at once; a publisher
of another repository paused holding the lease turns the second away naming it, or keeps it
waiting, after which the stale one is refused rather than roll the bucket back; a publisher killed
with SIGKILL holding the lease is taken over at once by the next.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import UnavailableError
from metadata_templates.locking import BusyError, Holder, LockPolicy
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.s3 import LEASE_PATH, TIMESTAMP_PATH, S3Bucket
from repo_tool.publish.s3_lease import BucketLease, LeaseRecord, bucket_lease
from repo_tool.verify.sources import url_reader
from repo_tool.verify.walk import load_verified_library

from .s3_server import S3Server, credentials_env

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
T = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@dataclass
class Clocks:
    """Wall and monotonic time that only the test and `sleep` move."""

    wall: datetime = T
    mono: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    def policy(self, command: str, *, host: str = "provider-a", wait: float = 0) -> LockPolicy:
        return LockPolicy(
            command=command,
            wait=wait,
            host=host,
            monotonic=lambda: self.mono,
            sleep=self.sleep,
            utc_now=lambda: self.wall,
        )


def lease_record(bucket: S3Bucket) -> LeaseRecord:
    data = bucket.get(LEASE_PATH)
    assert data is not None
    record = LeaseRecord.from_bytes(data)
    assert record is not None
    return record


# ------------------------------------------------------------------- the lease, in this process


def test_the_lease_is_taken_released_never_deleted_and_not_part_of_the_tree(
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket()
    clocks = Clocks()
    with bucket_lease(bucket, clocks.policy("cfl-repo publish --to s3://x")) as lease:
        held = lease_record(bucket)
        assert (held.released, held.holder.host, held.holder.pid) == (
            False,
            "provider-a",
            os.getpid(),
        )
        assert held.holder.since == "2026-12-06T10:00:00Z"
        assert held.expires == "2026-12-06T10:15:00Z"
        assert lease.etag is not None
    released = lease_record(bucket)
    assert released.released and released.holder == held.holder
    assert LEASE_PATH not in bucket.list()  # the listing a publish plans from leaves it out


def test_a_second_publisher_is_refused_naming_the_holder_and_its_lease(
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket()
    clocks = Clocks()
    with (
        bucket_lease(bucket, clocks.policy("cfl-repo publish --to s3://a", host="provider-a")),
        pytest.raises(BusyError) as caught,
    ):
        BucketLease(bucket, clocks.policy("cfl-repo publish --to s3://b", host="standby")).take()
    assert str(caught.value) == (
        f"{bucket.location.url} is busy: another publish, cfl-repo publish --to s3://a (PID "
        f"{os.getpid()} on provider-a, since 2026-12-06T10:00:00Z), holds .cfl-publish.lock "
        "until 2026-12-06T10:15:00Z"
    )
    assert caught.value.exit_code == 1


def test_a_waiting_publisher_takes_the_lease_once_it_expires(s3_server: S3Server) -> None:
    """The holder on another host vanished (its machine died): its lease lapses, nobody waits forever."""
    bucket = s3_server.new_bucket()
    clocks = Clocks()
    crashed = clocks.policy("crashed publish", host="provider-a")
    BucketLease(bucket, crashed, lease_seconds=60).take()  # never released
    lines: list[str] = []
    waiter = replace(
        clocks.policy("standby publish", host="standby", wait=600), on_wait=lines.append
    )
    BucketLease(bucket, waiter, lease_seconds=60).take()
    assert lease_record(bucket).holder.command == "standby publish"
    assert 60 <= clocks.mono < 62  # it waited for the lease to expire, polling
    assert lines[0].startswith(f"waiting for {bucket.location.url}: crashed publish (PID ")


@pytest.mark.parametrize(
    ("stale", "why"),
    [
        ({"host": "provider-a", "alive": False}, "its holder on this host is gone (kill -9)"),
        ({"host": "elsewhere", "expires_in": timedelta(days=365)}, "a year-long lease is no one's"),
        ({"garbage": b'{"state": "held", "pid": "x"'}, "not a lease record"),
        ({"garbage": b"[" * 100_000}, "nested past the parser"),
        ({"released": True}, "released"),
    ],
    ids=["dead-holder", "absurd-expiry", "torn", "deep-nesting", "released"],
)
def test_a_lease_that_binds_no_one_is_taken_over_at_once(
    s3_server: S3Server, stale: dict[str, object], why: str
) -> None:
    bucket = s3_server.new_bucket()
    clocks = Clocks()
    if "garbage" in stale:
        bucket.put(LEASE_PATH, stale["garbage"], replace=True)  # type: ignore[arg-type]
    else:
        holder = Holder(
            4_000_000, "old publish", str(stale.get("host", "provider-a")), "2026-12-06T09:00:00Z"
        )
        expires = T + stale.get("expires_in", timedelta(minutes=10))  # type: ignore[operator]
        record = LeaseRecord(
            holder, expires.strftime("%Y-%m-%dT%H:%M:%SZ"), bool(stale.get("released"))
        )
        bucket.put(LEASE_PATH, record.to_bytes(), replace=True)
    lease = BucketLease(
        bucket,
        clocks.policy("new publish", host="provider-a"),
        alive=lambda pid: bool(stale.get("alive", True)),
    )
    lease.take()
    assert lease_record(bucket).holder.command == "new publish", why
    assert clocks.mono == 0  # no waiting


def test_a_live_holder_on_this_host_is_waited_for_not_taken_over(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    clocks = Clocks()
    BucketLease(bucket, clocks.policy("running publish")).take()
    with pytest.raises(BusyError, match=r"running publish .*; waited 3s$"):
        BucketLease(bucket, clocks.policy("second", wait=3), alive=lambda pid: True).take()


def add_image(factory: LibraryFactory, fw: int) -> str:
    image = make_image("121D", fw)
    entry = f"CPL-{fw:04d}"
    factory.import_cpl(
        [*factory.entries, make_entry(entry, fw=f"{fw:08X}", image_sha=mi_sha(image))]
    )
    factory.publish()
    result = factory.ingest(factory.submit(image, [entry]))
    assert result.status == "accepted" and result.target is not None
    return result.target


def test_a_publish_that_lost_its_lease_stops_before_the_timestamp(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    before = bucket.get(TIMESTAMP_PATH)
    add_image(factory, 4)

    def steal(step: str) -> None:
        if step == "snapshot":  # its lease lapsed meanwhile, and another publisher took it
            thief = Holder(1, "another publish", "standby", "2026-12-06T10:00:00Z")
            record = LeaseRecord(
                thief,
                (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                False,
            )
            bucket.put(LEASE_PATH, record.to_bytes(), replace=True)

    with pytest.raises(UnavailableError, match="the lease was lost"):
        publish_to_s3(
            factory.repo, bucket, now=factory.tick(), between_steps=steal, lease_seconds=0
        )
    assert bucket.get(TIMESTAMP_PATH) == before
    assert lease_record(bucket).holder.command == "another publish"  # not released over the thief's


def test_a_timestamp_another_publisher_replaced_meanwhile_is_not_overwritten(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    add_image(factory, 4)
    theirs = b'{"signed": "someone else\'s timestamp"}'

    def race(step: str) -> None:
        if step == "timestamp":
            bucket.put(TIMESTAMP_PATH, theirs, replace=True)

    with pytest.raises(UnavailableError, match="changed since this publish read it"):
        publish_to_s3(factory.repo, bucket, now=factory.tick(), between_steps=race)
    assert bucket.get(TIMESTAMP_PATH) == theirs


# ------------------------------------------------------------------------- real processes


def cfl_repo(*args: str | Path, wait: str = "0") -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CFL_LOCK"))}
    return subprocess.Popen(
        [str(CFL_REPO), "--wait", wait, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**base, **credentials_env()},
    )


def publish_args(repo: Path, bucket: S3Bucket, server: S3Server) -> list[str | Path]:
    url = f"s3://{bucket.location.bucket}/{bucket.location.prefix}"
    return ["--repo", repo, "publish", "--to", url, "--endpoint-url", server.endpoint]


def done(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def verified_targets(server: S3Server, bucket: S3Bucket, factory: LibraryFactory) -> set[str]:
    library, problems = load_verified_library(
        url_reader(server.http_url(bucket)), factory.root_bytes, now=datetime.now(UTC)
    )
    assert problems == [] and library is not None
    return {image.target_path for image in library.images}


def hold_lease(
    process: subprocess.Popen[str], bucket: S3Bucket, action: Callable[[], None]
) -> None:
    """Run ``action`` (a signal) once ``process`` holds the prefix's lease."""
    deadline = time.monotonic() + 120
    while True:
        data = bucket.get(LEASE_PATH)
        record = LeaseRecord.from_bytes(data) if data else None
        if record and not record.released and record.holder.pid == process.pid:
            action()
            return
        assert process.poll() is None, "the publish ended before it was caught holding the lease"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_two_publishes_of_one_repository_at_once(tmp_path: Path, s3_server: S3Server) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    target = add_image(factory, 4)
    args = publish_args(factory.repo.path, bucket, s3_server)
    results = [done(p) for p in [cfl_repo(*args, wait="300"), cfl_repo(*args, wait="300")]]
    assert [code for code, _ in results] == [0, 0], results
    assert target in verified_targets(s3_server, bucket, factory)
    assert lease_record(bucket).released


def test_a_publisher_of_another_repository_is_kept_out_and_then_refused_a_rollback(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    standby = tmp_path / "standby"
    shutil.copytree(factory.repo.path, standby)  # a second machine's copy, as of now
    target = add_image(factory, 4)

    first = cfl_repo(*publish_args(factory.repo.path, bucket, s3_server))
    try:
        hold_lease(first, bucket, lambda: first.send_signal(signal.SIGSTOP))
        # Turned away at once, naming the paused publisher.
        code, err = done(cfl_repo(*publish_args(standby, bucket, s3_server)))
        assert code == 1
        assert err.splitlines()[0].startswith(
            f"error: {bucket.location.url} is busy: another publish, cfl-repo --wait 0 --repo "
            f"{factory.repo.path} publish --to "
        )
        assert f"(PID {first.pid} on " in err
        # Waiting instead: it says for whom, and goes on when the lease is released.
        waiting = cfl_repo(*publish_args(standby, bucket, s3_server), wait="300")
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert line.startswith(f"waiting for {bucket.location.url}: cfl-repo --wait 0 --repo ")
    finally:
        first.send_signal(signal.SIGCONT)
    assert done(first)[0] == 0
    code, err = done(waiting)
    # The standby's state is older than what the bucket now serves: refused, not rolled back.
    assert code == 1
    assert re.search(
        rf"error: {re.escape(bucket.location.url)}metadata/timestamp.json: timestamp version: "
        r"found (\d+) published, expected below (\d+) \(this repository's\): another "
        "repository publishes here, or this one is behind what clients have seen",
        err,
    ), err
    assert target in verified_targets(s3_server, bucket, factory)


def test_a_publisher_killed_holding_the_lease_is_taken_over_at_once(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    target = add_image(factory, 4)
    args = publish_args(factory.repo.path, bucket, s3_server)
    victim = cfl_repo(*args)
    hold_lease(victim, bucket, lambda: victim.send_signal(signal.SIGKILL))
    victim.communicate(timeout=60)
    stale = lease_record(bucket)
    assert not stale.released and stale.holder.pid == victim.pid  # left behind by the kill

    start = time.monotonic()
    code, err = done(cfl_repo(*args))  # no --wait: a dead holder binds no one
    assert code == 0, err
    assert time.monotonic() - start < 60
    assert "taking over the stale lease of cfl-repo --wait 0 --repo" in err
    assert target in verified_targets(s3_server, bucket, factory)
    assert lease_record(bucket).released
    assert json.loads(bucket.get(TIMESTAMP_PATH) or b"{}")["signed"]["_type"] == "timestamp"
