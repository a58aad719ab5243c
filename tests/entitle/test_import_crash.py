"""kill -9 `entitlements import` at every rename and fsync it makes, then run it again: the re-run
succeeds, the history and its records read, and every commit is logged once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kill_points import KILLED, strace_killing_at, walk

from conftest import require_system
from entitle.conftest import D1, D2, S1, S2, TODAY, World, write_inventory
from repo_tool.state.entitlements import EntitlementStore
from repo_tool.state.repository import Repository

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
MAX_POINTS = 100


def _run(prefix: list[str], repo: Path, inventory: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CFL_REPO"}
    return subprocess.run(
        [*prefix, str(CFL_REPO), "--repo", str(repo), "entitlements", "import", str(inventory)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.system
@pytest.mark.slow
def test_kill_at_every_point_then_rerun_succeeds(pristine: World, tmp_path: Path) -> None:
    require_system("strace")
    since = TODAY.replace(year=TODAY.year - 1)
    first = write_inventory(tmp_path / "1.csv", [(D1, S1, since), (D2, S2, since)])
    second = write_inventory(tmp_path / "2.csv", [(D1, S2, TODAY), (D2, S2, since)])
    base = tmp_path / "base"
    shutil.copytree(pristine.repo_path, base, symlinks=True)
    assert _run([], base, first).returncode == 0  # the second import has a record to build on

    def attempt(point: int) -> bool:
        repo = tmp_path / f"killed-{point}"
        shutil.copytree(base, repo, symlinks=True)
        if _run(strace_killing_at(point), repo, second).returncode not in KILLED:
            return False
        again = _run([], repo, second)
        assert again.returncode == 0, (point, again.stderr)
        opened = Repository.open(repo)
        store = EntitlementStore(opened.state_dir)
        entries = store.history(opened.head).entries
        assert len(entries) in (2, 3)  # the killed run committed, or it did not
        for entry in entries:
            store.record(entry.record)
        current = store.record(entries[-1].record)
        assert set(current.rights_of(S1).grace) == set(current.rights_of(S2).since) - set(
            store.record(entries[0].record).rights_of(S2).since
        )
        lines = (repo / "events.jsonl").read_bytes().splitlines()
        seqs = [json.loads(line)["seq"] for line in lines if b'"seq"' in line]
        assert seqs == list(range(1, len(seqs) + 1))
        imports = [line for line in lines if b'"entitlements-import"' in line]
        assert len(imports) == len(entries)
        shutil.rmtree(repo)
        return True

    points = walk(attempt, max_points=MAX_POINTS)
    assert points >= 3, points
