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
from datetime import UTC, date, datetime
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
# Every loop kills its command at every point K = 1, 2, ... (that is how it finds the end), but the
# recovery check after a kill (re-run, publish, python-tuf verify: three interpreter starts) runs at
# point 1 and then at every STRIDE-th point from an offset that moves with the seed, so successive
# runs cover different points. CFL_KILL_STRIDE=1 checks every point (the long run); CFL_KILL_SEED=N
# repeats a run's choice (the default seed is the UTC day number, so a day's runs agree).
STRIDE = max(1, int(os.environ.get("CFL_KILL_STRIDE", "3")))
SEED = int(os.environ.get("CFL_KILL_SEED", str(date.today().toordinal())))
OFFSET = SEED % STRIDE


def checks(point: int) -> bool:
    """Whether the loop checks the recovery after a kill at ``point`` (1-based)."""
    return point == 1 or (point - 1) % STRIDE == OFFSET


def kill_loop(
    tmp: Path,
    pristine: Path,
    run: Callable[[Path, list[str]], subprocess.CompletedProcess[str]],
    recover: Callable[[Path, int], None],
    *,
    after_kill: Callable[[Path, subprocess.CompletedProcess[str]], None] | None = None,
    max_points: int = 200,
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Kill a command at its 1st, 2nd, ... commit point, each time on a fresh copy of
    ``pristine`` under ``tmp/point-K``, until it completes; returns how many points it was killed
    at and the completed run.

    ``run(base, prefix)`` runs the command on the copy ``base`` with ``prefix`` before it (the
    strace killing it, or nothing); ``after_kill(base, killed)`` checks every killed copy;
    ``recover(base, point)`` checks the recovery (the same command again, and what must hold
    after it) at the points of the budget (``checks``).
    """
    for point in range(1, max_points + 1):
        base = tmp / f"point-{point}"
        shutil.copytree(pristine, base, symlinks=True)
        done = run(base, strace_killing_at(point))
        if done.returncode not in KILLED:
            shutil.rmtree(base)
            return point - 1, done
        if after_kill is not None:
            after_kill(base, done)
        if checks(point):
            recover(base, point)
        shutil.rmtree(base)
    pytest.fail(f"more than {max_points} commit points: the command never completed")


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
