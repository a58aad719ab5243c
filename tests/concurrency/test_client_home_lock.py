"""Two `cfl` processes on one client home: `cfl refresh` and `cfl download` started together.

Both succeed with `--wait`; while one holds the home (a refresh paused holding it), the other is
turned away at once naming it (command, PID, host, since), or waits saying for whom and then
succeeds. The home verifies afterwards: the downloads are the published images, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory import LibraryFactory, standard_library

CFL = Path(sys.executable).with_name("cfl")


def cfl(home: Path, *args: str | Path, wait: str = "0") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_HOME", "CFL_LOCK_WAIT")}
    return subprocess.Popen(
        [str(CFL), "--wait", wait, "--home", str(home), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def done(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


@dataclass(frozen=True)
class Supplier:
    factory: LibraryFactory
    images: dict[str, bytes]
    home: Path
    base: Path

    @property
    def targets(self) -> list[str]:
        return sorted(self.factory.repo.role("mfr-121D").signed.targets)


@pytest.fixture
def supplier(tmp_path: Path) -> Supplier:
    factory, images = standard_library(tmp_path / "lib")
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    home = tmp_path / "home"
    code, err = done(cfl(home, "init", factory.out.resolve().as_uri(), "--root", root))
    assert code == 0, err
    return Supplier(factory, images, home, tmp_path)


def downloaded(out: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.ota")}


def home_holder(home: Path) -> int | None:
    try:
        return int(json.loads((home / "lock").read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def paused_refresh(supplier: Supplier) -> subprocess.Popen[str]:
    """A real `cfl refresh` paused (SIGSTOP) while it holds the home's lock."""
    for _attempt in range(5):
        holder = cfl(supplier.home, "refresh")
        deadline = time.monotonic() + 120
        while home_holder(supplier.home) != holder.pid and holder.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        holder.send_signal(signal.SIGSTOP)
        if holder.poll() is None and home_holder(supplier.home) == holder.pid:
            return holder
        holder.send_signal(signal.SIGCONT)
        done(holder)
    pytest.fail("could not catch a refresh holding the home in 5 attempts")


def test_refresh_and_download_started_together_with_wait_both_succeed(supplier: Supplier) -> None:
    out = supplier.base / "downloads"
    started = [
        cfl(supplier.home, "refresh", wait="300"),
        cfl(supplier.home, "download", *supplier.targets, "--out", out, wait="300"),
    ]
    results = [done(p) for p in started]
    assert [code for code, _ in results] == [0, 0], results
    wanted = {hashlib.sha256(supplier.images[k]).hexdigest() for k in ("a2", "a3")}
    assert downloaded(out) == wanted


def test_a_download_while_a_refresh_holds_the_home_names_it_or_waits_for_it(
    supplier: Supplier,
) -> None:
    holder = paused_refresh(supplier)
    named = (
        rf"cfl --wait 0 --home {re.escape(str(supplier.home))} refresh \(PID {holder.pid} on \S+, "
        r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"
    )
    out = supplier.base / "downloads"
    try:
        code, err = done(cfl(supplier.home, "download", *supplier.targets, "--out", out))
        assert code == 1
        lines = err.splitlines()
        assert re.fullmatch(
            rf"error: the client home {re.escape(str(supplier.home))} is busy: {named}", lines[0]
        ), err
        assert lines[1].startswith(f"hint: the lock ({supplier.home / 'lock'}) is released")
        assert not out.exists()
        waiting = cfl(supplier.home, "download", *supplier.targets, "--out", out, wait="300")
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert re.match(
            rf"waiting for the client home {re.escape(str(supplier.home))}: {named} holds it", line
        ), line
    finally:
        holder.send_signal(signal.SIGCONT)
    assert done(holder)[0] == 0
    code, err = done(waiting)
    assert code == 0, err
    assert downloaded(out) == {hashlib.sha256(supplier.images[k]).hexdigest() for k in ("a2", "a3")}
    assert (supplier.home / "lock").read_bytes() == b""  # released cleanly, no record left
