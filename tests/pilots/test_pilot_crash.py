"""kill -9 at every commit point of `release`, `hold` and the `refresh` that releases a pilot on its
date (issue 22), then the same command again: it succeeds, the published tree verifies, the
decision is recorded exactly once (document, journal, log) and the journal holds every commit once.

strace injects SIGKILL at the K-th rename or fsync (tests/kill_points.py) at the points of the
budget there (the first, every sixth from a daily offset, the last; ``CFL_KILL_STRIDE=1`` kills at
every one), each kill followed by the recovery check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from kill_points import assert_recovered, kill_loop

from client.log.audit import audit
from conftest import require_system
from factory import T0
from metadata_templates.releases import ReleaseList
from pilots.pilot_library import build_pilot_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
MAX_POINTS = 200


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}


def _cli(
    base: Path, args: list[str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), str(CFL_REPO), "--repo", str(base / "repo"), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=180,
        check=False,
    )


def _recorded_once(base: Path, target: str, action: str) -> None:
    repo = base / "repo"
    lines = (repo / "events.jsonl").read_bytes().splitlines()
    events = [json.loads(line) for line in lines]
    assert sum(1 for e in events if e["event"] == action and e.get("target") == target) == 1
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(1, len(seqs) + 1))
    head = json.loads((repo / "state" / "head.json").read_bytes())
    assert head["event_seq"] == seqs[-1]
    sha = head["releases_sha256"]
    document = ReleaseList.from_bytes((repo / "blobs" / sha[:2] / sha).read_bytes())
    assert [e.action for e in document.for_target(target)] == [action]
    public = repo / "public"
    report = audit(lambda path: (public / path).read_bytes(), vkey=None)
    assert report.problems == [] and report.events[action] == 1


def _kill_loop(tmp: Path, pristine: Path, args: list[str], check: Callable[[Path], None]) -> int:
    def recover(base: Path, point: int) -> None:
        assert_recovered(lambda a: _cli(base, a), args, base / "repo" / "public", point)
        check(base)

    points, _ = kill_loop(
        tmp, pristine, lambda base, prefix: _cli(base, args, prefix), recover, max_points=MAX_POINTS
    )
    return points


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.parametrize("command", ["release", "hold"])
def test_kill_release_or_hold_at_every_rename_then_rerun(tmp_path: Path, command: str) -> None:
    require_system("strace")
    library = build_pilot_library(tmp_path / "pristine")
    args = [command, library.pilot_target, "--reason", "decided"]
    points = _kill_loop(
        tmp_path,
        tmp_path / "pristine",
        args,
        lambda b: _recorded_once(b, library.pilot_target, command),
    )
    assert points >= 2, f"{command}: killed at only {points} point(s)"


@pytest.mark.system
@pytest.mark.slow
def test_kill_the_refresh_that_releases_on_the_date_then_rerun(tmp_path: Path) -> None:
    require_system("strace")
    # Deposited three days ago for a date that has come by the real clock the command reads.
    library = build_pilot_library(tmp_path / "pristine", now=T0 - timedelta(days=3))
    points = _kill_loop(
        tmp_path,
        tmp_path / "pristine",
        ["refresh"],
        lambda b: _recorded_once(b, library.pilot_target, "release"),
    )
    assert points >= 2, f"refresh: killed at only {points} point(s)"
