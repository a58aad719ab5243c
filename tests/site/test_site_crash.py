"""kill -9 at every rename and fsync of a site rebuild, then the same build again: the folder must
hold exactly what a full build renders, and the next publish must take the append path again.

strace injects SIGKILL at the K-th rename or fsync of the build (every file the site writes ends
in one; the append path writes its ``.cfl-site-dirty`` marker first and removes it after its state),
for K = 1, 2, ... until the build runs to completion. Scenarios: the append path (one new image
into a built site) and the keyed full build (a withdrawal, which the append path leaves to it).
The budget of ``tests/kill_points.py`` picks the points checked, as in ``tests/repo/test_crash_recovery.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import site_crash_build
from kill_points import KILLED, strace_killing_at, walk
from site_samples import GENERATED, many_library

from conftest import require_system
from repo_tool.site import append as site_append
from repo_tool.site.build import build_site
from repo_tool.site.pages import render_site

MAX_POINTS = 400
BASE = 1030  # two archive pages' worth: the append path reads rows back from pages
SCRIPT = Path(__file__).with_name("site_crash_build.py")


def _tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def _killed_at(out: Path, args: list[str], point: int) -> bool:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), os.getcwd()]),
        "PYTHONDONTWRITEBYTECODE": "1",  # no .pyc renames among the points
    }
    done = subprocess.run(
        [
            *strace_killing_at(point),
            sys.executable,
            str(SCRIPT),
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode not in (*KILLED, 0):
        pytest.fail(f"the build failed instead of being killed: {done.stderr[-2000:]}")
    return done.returncode != 0


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "site"
    build_site(many_library(BASE), out, generated=GENERATED)
    return out


LATER = GENERATED + timedelta(minutes=5)
SCENARIOS = {
    # one new image: the append path
    "append": (BASE + 1, False),
    # a withdrawal: the keyed full build (it drops the append state before it writes)
    "withdrawal": (BASE, True),
}


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kill_at_every_write_then_rerun_gives_the_full_build(
    tmp_path: Path, pristine: Path, name: str
) -> None:
    require_system("strace")
    count, withdraw = SCENARIOS[name]
    library = site_crash_build.library(count, withdraw)
    expected = dict(render_site(library, generated=LATER))
    args = [str(count), "5", *(["withdraw"] if withdraw else [])]

    def attempt(point: int) -> bool:
        out = tmp_path / f"point-{point}"
        shutil.copytree(pristine, out)
        if not _killed_at(out, args, point):
            shutil.rmtree(out)
            return False  # ran to completion
        unfinished = (out / site_append.DIRTY_NAME).exists()
        result = build_site(library, out, generated=LATER)
        assert _tree(out) == expected, f"killed at point {point}"
        assert not (out / site_append.DIRTY_NAME).exists()
        if name == "append":
            # Killed before the marker landed: nothing changed, the append path runs again.
            assert result.appended == (not unfinished), f"point {point}"
        # Either way the next publish takes the append path again.
        nxt = site_crash_build.library(count + 1, withdraw)
        assert build_site(nxt, out, generated=LATER).appended, f"point {point}"
        shutil.rmtree(out)
        return True

    points = walk(attempt, max_points=MAX_POINTS)
    # strace counts calls per thread: point K kills whichever thread (main or one of the writer
    # threads) first makes its K-th rename or fsync, so a few points cover the whole build.
    assert points >= 3, f"killed at only {points} point(s); the loop tested nothing"
