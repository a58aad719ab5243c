"""A full disk at every stage of ingest, publish, refresh and a site build: one error line naming
the step and the path, nothing half-written served, and the same command succeeds once space is back.

The repository lives on a real, size-limited tmpfs (mounted by the test, which needs root; CI runs
as root), filled to leave K bytes free for a rising series of K, so the first write that does not
fit moves through the command from its first file to its last. After each failure the published
tree must still verify, and after the filler is removed the same command must succeed with nothing
lost (the recovery check of the kill -9 loops, tests/repo/test_crash_recovery.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_crash_recovery import (  # the kill -9 loops' world and recovery check
    CFL_REPO,
    Scenario,
    _assert_recovered,
    _env,
    _nothing,
    _role_has,
    pristine,  # noqa: F401 (a fixture)
)

from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

# Free bytes left on the disk, rising: each level lets the command get a little further.
FREE_LEVELS = [0, 4096, 16_384, 49_152, 131_072, 262_144, 524_288, 1_048_576, 4_194_304]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, mounted for this test only."""
    if os.geteuid() != 0:
        message = "mounting a size-limited tmpfs needs root"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    if free > leave:
        with filler.open("wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, free - leave)
    return filler


def _run(base: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    # stdout and stderr are pipes, as under cron: the error line itself never needs the full disk.
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(base / "repo"), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _scenarios(names: dict[str, str]) -> dict[str, Scenario]:
    return {
        "ingest": Scenario(
            "ingest",
            lambda b: ["ingest", str(b / names["next"])],
            _role_has("mfr-121D", "121D/ESME-0001-00000004-"),
        ),
        "publish": Scenario("publish", lambda b: ["publish"], _nothing),
        "refresh": Scenario("refresh", lambda b: ["refresh", "--force"], _nothing),
        "site-build": Scenario("site-build", lambda b: ["site", "build"], _nothing),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ingest", "publish", "refresh", "site-build"])
def test_a_full_disk_is_one_clear_error_and_a_retry_once_space_is_back(
    small_disk: Path,
    pristine: tuple[Path, bytes, dict[str, str]],  # noqa: F811 (the fixture imported above)
    name: str,
) -> None:
    source, root, names = pristine
    scenario = _scenarios(names)[name]
    failures = 0
    for leave in FREE_LEVELS:
        base = small_disk / "lib"
        shutil.copytree(source, base, symlinks=True)
        filler = _fill(small_disk, leave)
        done = _run(base, scenario.args(base))
        if done.returncode == 0:
            filler.unlink(missing_ok=True)
            shutil.rmtree(base)
            break
        failures += 1
        assert done.returncode == 1, (leave, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert "No space left on device" in errors[0], errors[0]
        assert str(small_disk) in errors[0] or "R/" in errors[0] or "/" in errors[0], errors[0]
        assert done.stderr.count("hint: the file system is full") == 1, done.stderr
        # Nothing half-written is served: what a client reads still verifies.
        public = base / "repo" / "public"
        if (public / "metadata" / "1.root.json").exists():
            _, problems = load_verified_library(folder_reader(public), root, now=datetime.now(UTC))
            assert problems == [], (leave, problems)
        filler.unlink()
        _assert_recovered(base, scenario, root)
        shutil.rmtree(base)
    assert failures >= 2, f"{name}: the disk was full at only {failures} level(s); tested nothing"
