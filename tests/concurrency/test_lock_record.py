"""The lock and its holder's record (metadata_templates/locking.py), with injected clocks.

What is shown: the record is written once the flock is held and cleared on a clean exit; a second
taker is refused at once naming the holder, or waits (reporting progress) and gets the lock when
the holder lets go; a record left by a killed holder is harmless; a hostile or torn record never
crashes the refusal nor reaches the terminal; secrets never reach the record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metadata_templates.errors import UnavailableError
from metadata_templates.locking import (
    MASK,
    BusyError,
    Holder,
    LockPolicy,
    describe_command,
    exclusive_lock,
)

SINCE = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """Monotonic time that only `sleep` moves; ``at`` runs actions once their time has come."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)
    at: list[tuple[float, contextlib.ExitStack]] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        for when, stack in list(self.at):
            if self.now >= when:
                stack.close()
                self.at.remove((when, stack))


def policy(clock: FakeClock, **kw: object) -> LockPolicy:
    return LockPolicy(
        host="provider-1",
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        utc_now=lambda: SINCE,
        **kw,  # type: ignore[arg-type]
    )


def test_the_holder_records_itself_once_it_holds_the_lock_and_clears_it_on_exit(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "R" / ".lock"
    with exclusive_lock(lock, subject="the repository", policy=policy(FakeClock(), command="x")):
        record = json.loads(lock.read_bytes())
        assert record == {
            "pid": os.getpid(),
            "command": "x",
            "host": "provider-1",
            "since": "2026-12-06T10:00:00Z",
        }
    assert lock.read_bytes() == b""  # a record found later was left by a killed holder


def test_a_second_taker_is_refused_at_once_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    clock = FakeClock()
    holder = policy(clock, command="cfl-repo --repo R publish")
    with (
        exclusive_lock(lock, subject="the repository", policy=holder),
        pytest.raises(BusyError) as caught,
        exclusive_lock(lock, subject="the repository", policy=policy(clock)),
    ):
        pass
    assert str(caught.value) == (
        f"the repository is busy: cfl-repo --repo R publish (PID {os.getpid()} on provider-1, "
        "since 2026-12-06T10:00:00Z)"
    )
    assert caught.value.hint == (
        f"the lock ({lock}) is released when that process exits; run again then, or give "
        "--wait SECONDS (env CFL_LOCK_WAIT) to wait for it"
    )
    assert caught.value.holder == Holder(
        os.getpid(), "cfl-repo --repo R publish", "provider-1", "2026-12-06T10:00:00Z"
    )
    assert caught.value.exit_code == 1
    assert clock.now == 0.0  # no waiting


def test_a_waiter_reports_progress_and_takes_the_lock_when_the_holder_lets_go(
    tmp_path: Path,
) -> None:
    lock = tmp_path / ".lock"
    clock = FakeClock()
    lines: list[str] = []
    holding = contextlib.ExitStack()
    holding.enter_context(
        exclusive_lock(lock, subject="the repository", policy=policy(clock, command="cron ingest"))
    )
    clock.at.append((25.0, holding))  # the holder finishes 25 s into the wait

    waiter = policy(clock, command="cfl-repo withdraw", wait=60, on_wait=lines.append)
    with exclusive_lock(lock, subject="the repository", policy=waiter):
        assert json.loads(lock.read_bytes())["command"] == "cfl-repo withdraw"

    assert 25.0 <= clock.now < 26.0
    assert max(clock.slept) <= waiter.poll  # it polls, never sleeps past the release by much
    who = f"cron ingest (PID {os.getpid()} on provider-1, since 2026-12-06T10:00:00Z)"
    assert lines == [
        f"waiting for the repository: {who} holds it (0s of 60s)",
        f"waiting for the repository: {who} holds it (10s of 60s)",
        f"waiting for the repository: {who} holds it (20s of 60s)",
    ]


def test_a_waiter_gives_up_after_its_wait_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    clock = FakeClock()
    with (
        exclusive_lock(lock, subject="the repository", policy=policy(clock, command="publish")),
        pytest.raises(BusyError, match=r"is busy: publish \(PID .*\); waited 5s$"),
        exclusive_lock(lock, subject="the repository", policy=policy(clock, wait=5)),
    ):
        pass
    assert 5.0 <= clock.now < 5.5


def test_a_record_left_by_a_killed_holder_is_harmless(tmp_path: Path) -> None:
    """kill -9: the kernel releases the flock; the record stays until the next holder's."""
    lock = tmp_path / ".lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from metadata_templates.locking import LockPolicy, exclusive_lock
                with exclusive_lock(Path({str(lock)!r}), subject="t", policy=LockPolicy(command="victim")):
                    print("held", flush=True)
                    time.sleep(120)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with (
        pytest.raises(BusyError, match=rf"victim \(PID {holder.pid} "),
        exclusive_lock(lock, subject="t", policy=policy(FakeClock())),
    ):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    holder.stdout.close()
    assert json.loads(lock.read_bytes())["command"] == "victim"  # stale, and nobody holds it

    with exclusive_lock(lock, subject="t", policy=policy(FakeClock(), command="next")):
        assert json.loads(lock.read_bytes())["command"] == "next"


@pytest.mark.parametrize(
    "record",
    [
        b"",  # the holder has not written its record yet
        b"1234\n",  # an older cfl wrote only its PID
        b'{"pid": 1, "command": "x"',  # torn
        b'{"pid": true, "command": "x", "host": "h", "since": "s"}\n',
        b'{"pid": -5, "command": "x", "host": "h", "since": "s"}\n',
        b'{"pid": 7, "command": "\\u001b[2Jgotcha", "host": "h", "since": "s"}\n',
        b"[" * 100_000,  # nested past the parser's stack
        b"\xff\xfe" * 10,
        b'{"pid": 7, "command": "' + b"a" * 10_000 + b'", "host": "h", "since": "s"}\n',
    ],
    ids=[
        "empty",
        "old-pid-only",
        "torn",
        "pid-bool",
        "pid-negative",
        "terminal-escape",
        "deep-nesting",
        "not-utf8",
        "oversized",
    ],
)
def test_a_record_that_is_not_one_is_reported_as_no_record(tmp_path: Path, record: bytes) -> None:
    lock = tmp_path / ".lock"
    lock.write_bytes(record)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held without writing a record, as a foreign holder
        clock = FakeClock()
        with (
            pytest.raises(BusyError) as caught,
            exclusive_lock(lock, subject="the repository", policy=policy(clock)),
        ):
            pass
    finally:
        os.close(fd)
    assert caught.value.holder is None
    assert str(caught.value) == (
        f"the repository is busy: another process holds {lock} (no record of it yet)"
    )
    assert clock.now < 0.2  # it looked again briefly for a record, then said so


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--repo", "R", "publish"], "cfl-repo --repo R publish"),
        (
            ["supplier", "add", "X", "--name", "Acme Energy"],
            "cfl-repo supplier add X --name 'Acme Energy'",
        ),
        (["init", "--token", "s3cr3t"], f"cfl-repo init --token '{MASK}'"),
        (["init", "--hsm-pin=1234"], f"cfl-repo init '--hsm-pin={MASK}'"),
        (
            ["init", "--key", "root", "r.pem", "hsm:?pin-value=1234"],
            f"cfl-repo init --key root r.pem 'hsm:?pin-value={MASK}'",
        ),
        (["ingest", *[f"inbox/{n}.cflb" for n in range(200)]], None),
    ],
    ids=["plain", "quoted", "secret-option", "secret-option-equals", "pin-in-uri", "long"],
)
def test_the_command_in_the_record_never_carries_a_secret(
    argv: list[str], expected: str | None
) -> None:
    described = describe_command("cfl-repo", argv)
    if expected is None:
        assert len(described) == 400 and described.endswith("...")
    else:
        assert described == expected


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_lock_file_that_is_a_link_or_special_file_is_refused_and_its_target_untouched(
    tmp_path: Path, kind: str
) -> None:
    """Whoever can write the folder must not make the holder's record overwrite another file."""
    lock = tmp_path / ".lock"
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"keep me")
    if kind == "symlink":
        lock.symlink_to(victim)
    else:
        os.mkfifo(lock)
    with (
        pytest.raises(UnavailableError, match="found a symbolic link or special file") as caught,
        exclusive_lock(lock, subject="the repository", policy=policy(FakeClock())),
    ):
        pass
    assert not isinstance(caught.value, BusyError)
    assert victim.read_bytes() == b"keep me"
