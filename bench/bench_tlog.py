"""Benchmark of the transparency log (issue 12, Performance).

1. Appending one event to a log of 1,000,000 entries vs one of 1,000 (target: about the same; the
   ratio is printed from one run). The real `repo_tool.tlog.provider_log.append` is timed, writing its tiles
   atomically with fsync on the project disk, as a commit does.
2. A client's consistency check after 1,000 new events: the tiles the proof needs are counted and
   their bytes reported (target: at most a few tiles), and the proof is verified.

The logs are built in batches with the same code (not timed). Run: ``python -m bench`` or
``python -m bench.bench_tlog``.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_ingest import BENCH_DIR
from metadata_templates.tlog import events
from metadata_templates.tlog.merkle import verify_consistency
from metadata_templates.tlog.proofs import TreeHashes
from metadata_templates.tlog.tiles import TileId
from repo_tool.tlog import provider_log as tlog

SIZES = (1_000, 1_000_000)
ROUNDS = 15
NEW_EVENTS = 1_000
BATCH = 100_000


def _event(i: int) -> bytes:
    return events.encode_event(
        {
            "event": "ingest-accepted",
            "at": "2026-11-30T00:00:00Z",
            "target": f"121D/ESME-0001-{i:08X}-0123456789abcdef.ota",
            "sha256": f"{i:064x}",
        }
    )


def build(log_dir: Path, size: int) -> tlog.LogState:
    state = tlog.LogState()
    for start in range(0, size, BATCH):
        state = tlog.append(
            log_dir, state, [_event(i) for i in range(start, min(size, start + BATCH))]
        )
    return state


def time_appends(log_dir: Path, state: tlog.LogState) -> tuple[list[float], tlog.LogState]:
    times = []
    for n in range(ROUNDS):
        event = [_event(10_000_000 + n)]
        started = time.perf_counter()
        state = tlog.append(log_dir, state, event)
        times.append((time.perf_counter() - started) * 1000)
    return times, state


def consistency_cost(log_dir: Path, old: tlog.LogState) -> tuple[int, int, int]:
    """Append NEW_EVENTS, then prove consistency from ``old`` reading tiles as a client would.
    Returns (tiles fetched, bytes fetched, proof hashes)."""
    new = tlog.append(log_dir, old, [_event(20_000_000 + i) for i in range(NEW_EVENTS)])
    read = tlog.tile_reader(log_dir)
    fetched: list[int] = []

    def counting(tile: TileId) -> bytes:
        data = read(tile)
        fetched.append(len(data))
        return data

    proof = TreeHashes(new.size, counting).consistency_proof(old.size)
    verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    return len(fetched), sum(fetched), len(proof)


def main() -> None:
    """Print append times for each log size, their ratio, and the client's consistency cost."""
    print(
        f"tlog benchmark: append one event ({ROUNDS} rounds, fsync'd on the project disk) to logs "
        f"of {', '.join(f'{s:,}' for s in SIZES)}; consistency after {NEW_EVENTS:,} new events"
    )
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    results = []
    work = Path(tempfile.mkdtemp(prefix="tlog-", dir=BENCH_DIR))
    try:
        for size in SIZES:
            log_dir = work / str(size)
            started = time.perf_counter()
            state = build(log_dir, size)
            built = time.perf_counter() - started
            times, state = time_appends(log_dir, state)
            tiles, octets, hashes = consistency_cost(log_dir, state)
            results.append(
                {
                    "size": size,
                    "build_s": built,
                    "best_ms": min(times),
                    "median_ms": statistics.median(times),
                    "tiles": tiles,
                    "bytes": octets,
                    "hashes": hashes,
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = (
        ("entries in log", "size", "{:,.0f}"),
        ("build, not timed (s)", "build_s", "{:.1f}"),
        ("append best (ms)", "best_ms", "{:.2f}"),
        ("append median (ms)", "median_ms", "{:.2f}"),
        (f"+{NEW_EVENTS} consistency: tiles", "tiles", "{:.0f}"),
        ("  bytes fetched", "bytes", "{:,.0f}"),
        ("  proof hashes", "hashes", "{:.0f}"),
    )
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>14}" for r in results)
        print(f"  {label:<28}{cells}")
    ratio = results[-1]["median_ms"] / results[0]["median_ms"]
    best = results[-1]["best_ms"] / results[0]["best_ms"]
    print(f"  append ratio {SIZES[-1]:,} / {SIZES[0]:,}: {ratio:.2f} by median, {best:.2f} by best")


if __name__ == "__main__":
    main()
