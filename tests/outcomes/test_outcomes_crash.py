"""kill -9 at every commit point of `cfl-repo outcomes ingest` (issue 24), then the same command
again: it succeeds, each report counts exactly once (figures, private ledger, log), the hold it
causes is recorded once, the journal holds every commit once and the published tree verifies and
passes the supplier's audit of the transparency log.

strace injects SIGKILL at the K-th rename or fsync (tests/kill_points.py) at the points of the
budget there (the first, every sixth from a daily offset, the last; ``CFL_KILL_STRIDE=1`` kills at
every one), each kill followed by the recovery check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kill_points import assert_recovered, kill_loop

from client.log.audit import audit
from conftest import require_system
from outcomes.outcome_library import FAILING, SECOND, SUPPLIER, build_outcome_library, envelope

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
MAX_POINTS = 200


def _cli(
    base: Path, args: list[str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        [*(prefix or []), str(CFL_REPO), "--repo", str(base / "lib" / "repo"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
        cwd=base,  # the report files are named relative to the copy
    )


def _counted_once(base: Path, target: str) -> None:
    repo = base / "lib" / "repo"
    shown = _cli(base, ["outcomes", "show", "--json"])
    assert shown.returncode == 0, shown.stderr
    [image] = json.loads(shown.stdout)["images"]
    assert (image["target"], image["delivered"], image["failures"]) == (target, 640, 40)
    assert (image["suppliers"], image["reports"]) == (2, 2)
    assert image["held"]["by"] == "policy"
    events = [json.loads(line) for line in (repo / "events.jsonl").read_bytes().splitlines()]
    ingests = [e for e in events if e["event"] == "outcomes-ingest"]
    assert sum(e["reports"] for e in ingests) == 2  # one commit, or two if killed between files
    assert sum(1 for e in events if e["event"] == "outcome-hold") == 1
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(1, len(seqs) + 1))
    head = json.loads((repo / "state" / "head.json").read_bytes())
    assert head["event_seq"] == seqs[-1]
    public = repo / "public"
    report = audit(lambda path: (public / path).read_bytes(), vkey=None)
    assert report.problems == [] and report.events["outcome-hold"] == 1


@pytest.mark.system
@pytest.mark.slow
def test_kill_outcomes_ingest_at_every_rename_then_rerun(tmp_path: Path) -> None:
    require_system("strace")
    pristine = tmp_path / "pristine"
    library = build_outcome_library(pristine / "lib")
    (pristine / "b1.json").write_bytes(envelope(library, SUPPLIER, FAILING))
    (pristine / "b2.json").write_bytes(envelope(library, SECOND, FAILING))
    args = ["outcomes", "ingest", "b1.json", "b2.json"]
    target = library.targets[2]

    def recover(base: Path, point: int) -> None:
        assert_recovered(lambda a: _cli(base, a), args, base / "lib" / "repo" / "public", point)
        _counted_once(base, target)

    points, _ = kill_loop(
        tmp_path,
        pristine,
        lambda base, prefix: _cli(base, args, prefix),
        recover,
        max_points=MAX_POINTS,
    )
    assert points >= 2, f"killed at only {points} point(s)"
