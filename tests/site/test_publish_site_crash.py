"""kill -9 at every rename and fsync of `publish` + its told site build, then the same publish
again: the site must hold exactly what a full build of the published library renders.

strace injects SIGKILL at the K-th rename or fsync (per thread) of a run of
``publish_site_crash.py`` (what `cfl-repo publish` runs), for K = 1, 2, ... until the run completes.
The re-run finds the tree already published (so it has nothing new to tell the site) and, when
the kill landed inside the site build, the site's unfinished-build marker; either way the result
must be the full build's bytes. The budget of tests/kill_points.py picks the points checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kill_points import KILLED, strace_killing_at, walk
from test_publish_site_hint import NEW_FIRMWARE, _entry, lodge, publish_with_site, tree

from conftest import require_system
from factory import make_entry, make_image, mi_sha, standard_library
from repo_tool.site.build import build_site
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

MAX_POINTS = 400
SCRIPT = Path(__file__).with_name("publish_site_crash.py")


def _run(repo: Path, now: datetime, point: int | None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), os.getcwd()]),
        "PYTHONDONTWRITEBYTECODE": "1",  # no .pyc renames among the points
    }
    strace = strace_killing_at(point) if point is not None else []
    return subprocess.run(
        [*strace, sys.executable, str(SCRIPT), str(repo), now.isoformat()],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """A library with its site built, and one new image ingested, not yet published."""
    base = tmp_path_factory.mktemp("template")
    factory, _ = standard_library(base / "lib")
    factory.import_cpl(
        [
            *factory.entries,
            *(
                make_entry(_entry(n), fw=f"{n:08X}", image_sha=mi_sha(make_image("121D", n)))
                for n in NEW_FIRMWARE
            ),
        ]
    )
    publish_with_site(factory)
    lodge(factory, NEW_FIRMWARE[0])
    return base / "lib", factory.tick()


@pytest.mark.system
@pytest.mark.slow
def test_kill_at_every_write_of_publish_then_rerun_gives_the_full_build(
    tmp_path: Path, template: tuple[Path, datetime]
) -> None:
    require_system("strace")
    lib, now = template
    untouched = tmp_path / "untouched"
    shutil.copytree(lib, untouched)
    done = _run(untouched / "repo", now, None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hinted=1 appended=True"  # the path under test
    shutil.rmtree(untouched)

    def attempt(point: int) -> bool:
        work = tmp_path / f"point-{point}"
        shutil.copytree(lib, work)
        killed = _run(work / "repo", now, point)
        if killed.returncode == 0:
            shutil.rmtree(work)
            return False  # ran to completion
        if killed.returncode not in KILLED:
            pytest.fail(f"point {point}: failed instead of being killed: {killed.stderr[-2000:]}")
        later = now + timedelta(minutes=1)
        rerun = _run(work / "repo", later, None)
        assert rerun.returncode == 0, f"point {point}: {rerun.stderr[-2000:]}"
        out = work / "repo" / "public"
        library = verified_library(
            folder_reader(out),
            (out / "metadata" / "1.root.json").read_bytes(),
            now=later,
            check_blobs=False,
        )
        assert len(library.images) == 4
        generated = json.loads((out / "site" / "search" / "meta.json").read_bytes())
        fresh = work / "fresh"
        build_site(library, fresh, generated=datetime.fromisoformat(generated["generated"]))
        assert tree(out / "site") == tree(fresh), f"killed at point {point}"
        shutil.rmtree(work)
        return True

    points = walk(attempt, max_points=MAX_POINTS)
    assert points >= 10, f"killed at only {points} point(s); the loop tested nothing"
