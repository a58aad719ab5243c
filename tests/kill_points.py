"""The kill -9 loops' one way to kill a command at its K-th commit point.

strace injects SIGKILL at the K-th rename or fsync (per thread) a command makes: every atomic write
and every commit ends in a rename, and the fsyncs after them are the windows between a commit and
what follows it. strace reports the tracee's death by signal as its own exit status 128 + 9.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)


def strace_killing_at(point: int) -> list[str]:
    """The strace prefix that runs a command and kills it at its ``point``-th rename or fsync."""
    calls = "rename,renameat,renameat2,fsync,fdatasync"
    return [
        "strace",
        "-f",
        "-o",
        os.devnull,
        "-e",
        f"trace={calls}",
        "-e",
        f"inject={calls}:signal=KILL:when={point}",
    ]


# --- the budget (docs/testing.md, "kill -9 at every commit point") ------------------------------
# A kill and its checks cost one interpreter start for the killed run and, for the recovery (re-run,
# publish, python-tuf verify), two or three more. CI does not kill at every point K = 1, 2, ... of
# every command: ``walk`` kills at point 1, then at every STRIDE-th point from an offset that moves
# with the seed, until the command completes, then finds the last point by bisection between the
# last point killed and the one that completed. Every point it kills at gets the whole check, so each
# run checks the first and the last point, and successive days check every point in between.
# CFL_KILL_STRIDE=1 kills at and checks every point (the long run); CFL_KILL_SEED=N repeats a run's
# choice (the default seed is the UTC day number, so a day's runs agree).
STRIDE = max(1, int(os.environ.get("CFL_KILL_STRIDE", "6")))
SEED = int(os.environ.get("CFL_KILL_SEED", str(datetime.now(UTC).date().toordinal())))
OFFSET = SEED % STRIDE


def checks(point: int) -> bool:
    """Whether ``walk`` tries ``point`` (1-based) on its way up (it also tries the points of the
    bisection that finds the last one)."""
    return point == 1 or (point - 1) % STRIDE == OFFSET


def walk(attempt: Callable[[int], bool], *, max_points: int) -> int:
    """Drive a kill loop; returns the number of commit points N of the command (it is killed at
    every point 1..N and completes when told to die at N+1).

    ``attempt(point)`` runs the command on a fresh copy, killed at its ``point``-th commit point,
    and returns False if it completed instead; when killed it checks everything the loop checks
    after a kill (the recovery among it). ``walk`` calls it at the points of the budget
    (``checks``) in order, until the command completes, then bisects for the last point, each point
    at most once; with ``STRIDE`` 1 that is every point in order. Fails the test when the command
    is still killed at ``max_points``.
    """
    last_killed = 0
    for point in range(1, max_points + 1):
        if not (checks(point) or point == max_points):
            continue
        if not attempt(point):
            break
        last_killed = point
    else:
        pytest.fail(f"more than {max_points} commit points: the command never completed")
    completed = point
    while completed - last_killed > 1:
        middle = (last_killed + completed) // 2
        if attempt(middle):
            last_killed = middle
        else:
            completed = middle
    return last_killed


def kill_loop(
    tmp: Path,
    pristine: Path,
    run: Callable[[Path, list[str]], subprocess.CompletedProcess[str]],
    recover: Callable[[Path, int], None],
    *,
    after_kill: Callable[[Path, subprocess.CompletedProcess[str]], None] | None = None,
    max_points: int = 200,
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Kill a command at its commit points (the budget's: ``walk``), each time on a fresh copy of
    ``pristine`` under ``tmp/point-K``; returns how many commit points it has and a completed run.

    ``run(base, prefix)`` runs the command on the copy ``base`` with ``prefix`` before it (the
    strace killing it, or nothing); after each kill, ``after_kill(base, killed)`` checks the killed
    copy and ``recover(base, point)`` checks the recovery (the same command again, and what must
    hold after it).
    """
    runs: list[subprocess.CompletedProcess[str]] = []

    def attempt(point: int) -> bool:
        base = tmp / f"point-{point}"
        shutil.copytree(pristine, base, symlinks=True)
        done = run(base, strace_killing_at(point))
        if done.returncode not in KILLED:
            shutil.rmtree(base)
            runs.append(done)
            return False
        if after_kill is not None:
            after_kill(base, done)
        recover(base, point)
        shutil.rmtree(base)
        return True

    points = walk(attempt, max_points=max_points)
    return points, runs[-1]


def assert_recovered(
    cli: Callable[[list[str]], subprocess.CompletedProcess[str]],
    args: list[str],
    public: Path,
    point: int,
) -> None:
    """The recovery ``kill_loop``'s ``recover`` checks first, after a kill at ``point``: the same
    command (``cli(args)``) again succeeds without a traceback, then ``publish --no-site`` succeeds
    and the tree it wrote to ``public`` verifies with python-tuf from its ``1.root.json``. What the
    command itself must have left (recorded once, counted once) the caller checks after it."""
    again = cli(args)
    assert again.returncode == 0, (point, again.stderr)
    assert "Traceback" not in again.stderr
    published = cli(["publish", "--no-site"])
    assert published.returncode == 0, published.stderr
    root = (public / "metadata" / "1.root.json").read_bytes()
    _, problems = load_verified_library(folder_reader(public), root, now=datetime.now(UTC))
    assert problems == [], (point, problems)
