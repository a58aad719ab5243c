"""An exclusive lock on a working directory (a repository, a published tree, a client home), so two
processes never interleave writes, and a record of who holds it, so the one turned away can say who.

The lock is an ``flock`` on a file. The kernel releases it when the holder exits, however it exits
(``kill -9`` included), so no lock is ever left behind. Once it holds the flock, the holder writes one
JSON line into the same file: ``{"pid", "command", "host", "since"}``. The record only feeds the
message a second process prints; nothing decides anything from it, so a record left by a killed
holder is harmless (nobody holds the flock; the next holder rewrites it).

A second process fails at once (``wait`` 0) or polls for up to ``wait`` seconds, reporting progress
through ``on_wait``. Time is injected (``LockPolicy``), so tests need no real waiting. Shared by both
sides, which may not import each other.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metadata_templates.atomic import errors_name
from metadata_templates.errors import UnavailableError

WAIT_ENV = "CFL_LOCK_WAIT"
RECORD_LIMIT = 4096  # a record is one short line; more is not ours
COMMAND_LIMIT = 400  # an ingest of a thousand files would otherwise fill the message
# Options whose value may be a secret rather than a path: masked in the record. (Neither tool takes a
# secret on its command line today: passphrases and PINs come from the environment or a prompt.)
_SECRET_OPTION = re.compile(r"--[\w-]*(passphrase|password|secret|token|pin)[\w-]*", re.IGNORECASE)
_SECRET_PARAM = re.compile(r"((?:pin-value|pin|passphrase|password|secret|token)=)[^&\s]*")
MASK = "***"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def format_since(moment: datetime) -> str:
    """``2026-12-06T10:00:00Z``: UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_command(program: str, argv: Sequence[str]) -> str:
    """The holder's command line for its record: ``program`` and its arguments, shell-quoted, with
    the value of any option named like a secret masked, and cut to ``COMMAND_LIMIT`` characters.

    Both tools take paths and identifiers on their command line, never secrets; the masking is a
    second line of defence for a record other local users may read.
    """
    words = [program]
    mask_next = False
    for arg in argv:
        if mask_next:
            words.append(MASK)
            mask_next = False
            continue
        name, eq, _value = arg.partition("=")
        if _SECRET_OPTION.fullmatch(name):
            words.append(f"{name}={MASK}" if eq else arg)
            mask_next = not eq
            continue
        words.append(_SECRET_PARAM.sub(rf"\g<1>{MASK}", arg))
    text = shlex.join(words)
    return text if len(text) <= COMMAND_LIMIT else text[: COMMAND_LIMIT - 3] + "..."


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: what its record says."""

    pid: int
    command: str
    host: str
    since: str

    def describe(self) -> str:
        """``cfl-repo publish (PID 1234 on host, since 2026-12-06T10:00:00Z)``."""
        return f"{self.command} (PID {self.pid} on {self.host}, since {self.since})"

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": self.command, "host": self.host, "since": self.since}

    def to_line(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_dict(cls, doc: Any) -> Holder | None:
        """The holder a record names; None when it is not a well-formed record."""
        if not isinstance(doc, dict):
            return None
        pid, command, host, since = (doc.get(k) for k in ("pid", "command", "host", "since"))
        if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
            return None
        if not all(isinstance(v, str) and v.isprintable() for v in (command, host, since)):
            return None
        return cls(pid, str(command), str(host), str(since))

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder | None:
        """The holder the first line of a lock file names; None when there is none (a free lock,
        a holder that has not written its record yet, or bytes that are not a record)."""
        line = data[:RECORD_LIMIT].split(b"\n", 1)[0]
        try:
            return cls.from_dict(json.loads(line))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None


@dataclass(frozen=True)
class LockPolicy:
    """How a process takes a lock: what it records about itself, and how long it waits.

    Attributes:
        command: the command line its record names (see ``describe_command``).
        wait: seconds to keep trying while another process holds the lock (0: fail at once).
        on_wait: told a line of progress when waiting starts and every ``progress_every`` seconds.
        host: the host its record names.
        monotonic, sleep, utc_now: the clocks (injected in tests).
        poll: the longest pause between two attempts, in seconds.
        progress_every: seconds between two progress lines.
    """

    command: str = "a cfl process"
    wait: float = 0.0
    on_wait: Callable[[str], None] | None = None
    host: str = field(default_factory=socket.gethostname)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    utc_now: Callable[[], datetime] = _utc_now
    poll: float = 0.25
    progress_every: float = 10.0

    def record(self) -> Holder:
        """This process's record, as of now."""
        return Holder(os.getpid(), self.command, self.host, format_since(self.utc_now()))


class BusyError(UnavailableError):
    """Another process holds the lock (exit 1: try again later, or wait for it).

    Attributes:
        holder: what the holder's record says; None when it has recorded nothing yet.
    """

    def __init__(self, message: str, *, hint: str | None, holder: Holder | None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


def busy_message(subject: str, holder: Holder | None, where: str, waited: float) -> str:
    """``the repository is busy: cfl-repo publish (PID 1234 on host, since ...)``."""
    who = holder.describe() if holder else f"another process holds {where} (no record of it yet)"
    return f"{subject} is busy: {who}" + (f"; waited {waited:g}s" if waited else "")


def busy_hint(where: str) -> str:
    return (
        f"the lock ({where}) is released when that process exits; run again then, or give "
        f"--wait SECONDS (env {WAIT_ENV}) to wait for it"
    )


def _read_record(fd: int) -> Holder | None:
    try:
        return Holder.from_bytes(os.pread(fd, RECORD_LIMIT, 0))
    except OSError:
        return None


def _acquire(fd: int, path: Path, subject: str, policy: LockPolicy) -> None:
    start = policy.monotonic()
    next_report = 0.0
    pause = 0.02
    unrecorded = 0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = _read_record(fd)
        waited = policy.monotonic() - start
        if waited >= policy.wait:
            # A holder between its flock and its record (or its release) has no record: look
            # again a few times rather than report a lock without a name.
            if holder is None and unrecorded < 5:
                unrecorded += 1
                policy.sleep(0.02)
                continue
            raise BusyError(
                busy_message(subject, holder, str(path), round(policy.wait, 3)),
                hint=busy_hint(str(path)),
                holder=holder,
            )
        if policy.on_wait is not None and waited >= next_report:
            who = holder.describe() if holder else "another process"
            policy.on_wait(
                f"waiting for {subject}: {who} holds it ({waited:.0f}s of {policy.wait:g}s)"
            )
            next_report = waited + policy.progress_every
        policy.sleep(min(pause, max(policy.wait - waited, 0.0)))
        pause = min(pause * 2, policy.poll)


def _open_lock_file(path: Path) -> int:
    """The lock file, opened for the record; never through a link or onto a special file, whose
    target the record would otherwise overwrite.

    Raises:
        UnavailableError: ``path`` is a symbolic link or not a regular file.
    """
    refused = UnavailableError(
        f"{path}: found a symbolic link or special file, expected a regular lock file",
        hint="remove it; the next command creates it again",
    )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise refused from e
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refused
    return fd


@contextlib.contextmanager
def exclusive_lock(
    path: Path, *, subject: str, policy: LockPolicy | None = None
) -> Iterator[Holder]:
    """Hold an flock on ``path`` for the block, with this process's record in it.

    Args:
        path: the lock file (created if missing, with its folder).
        subject: what is locked, for messages (``the repository``).
        policy: the record to write and how long to wait (default: fail at once).

    Yields:
        The record written.

    Raises:
        BusyError: another process held the lock for longer than ``policy.wait``.
        UnavailableError: the lock file is a symbolic link or a special file.
        OSError: the lock file cannot be created or opened.
    """
    policy = policy or LockPolicy()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(path)
    try:
        _acquire(fd, path, subject, policy)
        record = policy.record()
        line = record.to_line()
        # The new line first, then the cut: a reader sees the old record or the new one's line.
        # A full disk fails here with no file name; errors_name gives it the lock's path.
        with errors_name(path):
            os.pwrite(fd, line, 0)
            os.ftruncate(fd, len(line))
        try:
            yield record
        finally:
            # A clean exit leaves no record, so one found later was left by a killed holder.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock
