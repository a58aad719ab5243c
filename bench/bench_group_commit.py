"""Benchmark of group commit (issue 26): `cfl-repo ingest` over an inbox of 10,000 deposits.

Measured through the command itself (the console script, as cron runs it, every gateway check
kept), beside two figures from the same run:

- the **bare work** per deposit, the floor any ingest must pay: read the bundle file, both SHA-256
  hashes (the file, the Manufacturer Image), and the manufacturer's signature over its role;
- the same command with ``--batch 1`` (one durable commit per deposit, as before group commit) on
  the first ``CFL_BENCH_GROUP_SINGLE`` deposits (default 1,000) of a copy of the same library.

The library holds ``LIBRARY`` images (1,000) of bench_publish's manufacturers, each split into hash
bins first (as automatic bins would have by then); the deposits are signed beforehand, each
manufacturer's bundles chained v+1, v+2, ... (bench_bulk's helpers). Target: at least 200 deposits
per second on 2 cores. ``CFL_BENCH_GROUP_DEPOSITS`` is the scale knob.

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_group_commit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Targets

from bench import bench_bulk, bench_publish
from bench.bench_ingest import BENCH_DIR
from repo_tool.intake.image import manufacturer_image_sha256, parse_image
from repo_tool.intake.inbox import read_bundle_file

DEPOSITS = int(os.environ.get("CFL_BENCH_GROUP_DEPOSITS", "10000"))
SINGLE = min(DEPOSITS, int(os.environ.get("CFL_BENCH_GROUP_SINGLE", str(DEPOSITS))))
LIBRARY = 1_000
TARGET_PER_SECOND = 200
CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def _ingest(repo: Path, inbox: Path, batch: int) -> tuple[float, int]:
    """Wall seconds of `cfl-repo ingest INBOX --json --batch N`, and how many it accepted."""
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    began = time.perf_counter()
    done = subprocess.run(
        [str(CFL_REPO), "--repo", str(repo), "ingest", str(inbox), "--json", "--batch", str(batch)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - began
    results = json.loads(done.stdout)["results"] if done.stdout else []
    refused = [r for r in results if r["status"] != "accepted"]
    if done.returncode != 0 or refused:
        why = refused[0]["messages"] if refused else done.stderr[-2000:]
        raise SystemExit(f"bench_group_commit: {len(refused)} refused, first: {why}")
    return seconds, sum(r["status"] == "accepted" for r in results)


def _bare_work(bundles: list[Path], lib: bench_publish.Library) -> float:
    """Seconds for the floor of every deposit: read, hash twice, check the signature."""
    keys = {mfr: signer.public_key for mfr, signer in lib.signers.items()}
    cap = lib.repo.config.role_size_cap
    began = time.perf_counter()
    for path in bundles:
        bundle = read_bundle_file(path, role_size_cap=cap)
        hashlib.sha256(bundle.image).hexdigest()
        manufacturer_image_sha256(bundle.image, parse_image(bundle.image))
        role = Metadata[Targets].from_bytes(bundle.role_bytes)
        key = keys[bundle.manufacturer_id]
        key.verify_signature(role.signatures[key.keyid], role.signed_bytes)
    return time.perf_counter() - began


def measure() -> dict[str, float]:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-group-", dir=BENCH_DIR) as tmp:
        base = Path(tmp)
        lib = bench_publish.build(LIBRARY, base)
        bench_bulk._split_all(lib, base / "split-inbox")
        inbox = base / "group-inbox"
        # Each signature ticks the library's clock a second: start early enough that the last
        # deposit is not signed in the future of the real clock the command checks against.
        # (A deposit and at most one split each: two seconds a deposit.)
        lib.now = min(lib.now, datetime.now(UTC).replace(microsecond=0)) - timedelta(
            seconds=2 * DEPOSITS
        )
        bench_bulk._inbox(lib, 0x200000, inbox, DEPOSITS, auto_bins=True)
        bundles = sorted(inbox.glob("*.cflb"))
        single_inbox = base / "single-inbox"
        single_inbox.mkdir()
        single_bundles = bundles if SINGLE >= DEPOSITS else bundles[:SINGLE]
        for path in single_bundles:
            os.link(path, single_inbox / path.name)
        single_repo = base / "single-repo"
        shutil.copytree(lib.repo.path, single_repo, symlinks=True)
        grouped_s, accepted = _ingest(lib.repo.path, inbox, 200)
        single_s, single_accepted = _ingest(single_repo, single_inbox, 1)
        assert accepted == len(bundles) and single_accepted == len(single_bundles)
        # Deposits per second: the splits automatic bins signed in between are work the command
        # does, not deposits, so they are not counted.
        deposits = [p for p in bundles if not p.name.endswith("-split.cflb")]
        single = sum(1 for p in single_bundles if not p.name.endswith("-split.cflb"))
        return {
            "deposits": len(deposits),
            "splits": len(bundles) - len(deposits),
            "grouped_per_s": len(deposits) / grouped_s,
            "grouped_s": grouped_s,
            "single_per_s": single / single_s,
            "single_s": single_s,
            "bare_per_s": len(deposits) / _bare_work(deposits, lib),
            "load": os.getloadavg()[0],
        }


def main() -> None:
    print(
        f"group commit benchmark: `cfl-repo ingest` over {DEPOSITS:,} deposits into a library of "
        f"{LIBRARY:,} images (hash bins), every gateway check kept"
    )
    r = measure()
    print(
        f"  grouped (--batch 200)       {r['grouped_per_s']:8.1f} deposits/s ({r['grouped_s']:.1f} s)"
    )
    print(
        f"  one commit each (--batch 1) {r['single_per_s']:8.1f} deposits/s ({r['single_s']:.1f} s)"
    )
    print(f"  (with {r['splits']:,} bin splits automatic bins signed between the deposits)")
    print(
        f"  bare work per deposit       {r['bare_per_s']:8.1f} deposits/s (read, 2 hashes, signature)"
    )
    met = "met" if r["grouped_per_s"] >= TARGET_PER_SECOND else "NOT met"
    print(
        f"  target >= {TARGET_PER_SECOND}/s: {met}; grouped is {r['grouped_per_s'] / r['single_per_s']:.2f}x "
        f"one commit each and {r['bare_per_s'] / r['grouped_per_s']:.2f}x slower than the bare "
        f"work; load average {r['load']:.2f}"
    )


if __name__ == "__main__":
    main()
