"""A kill -9 at a random point of a command that appends to the log leaves log and head consistent,
and the next command and publish succeed (the log audits clean)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.log.audit import audit
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.tiles import ENTRIES_LEVEL, decode_bundle, tiles_for_size
from tests.factory import LibraryFactory
from tests.tlog.test_log_end_to_end import Host

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import itertools, sys
from datetime import UTC, datetime
from pathlib import Path
from securesystemslib.signer import CryptoSigner
from repo_tool.state.repository import Repository
from repo_tool.ops.manufacturers import add_manufacturer as add_manufacturer_op

repo = Repository.open(Path(sys.argv[1]))
for i in itertools.count():
    with repo.locked():
        mid = f"{0xA000 + i:04X}"
        if mid not in repo.head.manufacturers:
            key = CryptoSigner.generate_ed25519().public_key
            add_manufacturer_op(repo, mid, "Crash Test", [key], 1, now=datetime.now(UTC))
    print(i, flush=True)
"""


def _recomputed_root(log_dir: Path, size: int) -> bytes:
    entries: list[bytes] = []
    for tile in tiles_for_size(size):
        if tile.level == ENTRIES_LEVEL:
            data = (log_dir / tile.path).read_bytes()
            entries += decode_bundle(data, expected=tile.width, where=tile.path)
    return append_entries(0, lambda t: b"", entries).root_hash


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_during_append_then_rerun(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    factory = LibraryFactory(tmp_path)
    factory.publish()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(factory.repo.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert child.stdout is not None
    wanted = rng.randrange(3, 30)  # past start-up, then a random moment inside the loop
    for _ in range(wanted):
        assert child.stdout.readline(), "the child stopped early"
    time.sleep(rng.uniform(0, 0.02))
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()

    with factory.repo.locked():
        head = factory.repo.head
        assert head.log_size >= wanted
        assert _recomputed_root(factory.repo.log_dir, head.log_size).hex() == head.log_root
    factory.add_manufacturer("BEEF")  # the re-run: appends over any orphan tiles
    factory.publish()
    report = audit(Host(factory.out), vkey=None)
    assert report.problems == []
    assert report.size == factory.repo.head.log_size
    assert report.events["manufacturer-add"] == len(factory.repo.head.manufacturers)
