"""The client's search of the transparency log for `withdraw` events (client/log/withdrawal_events.py).

Logs are built with the provider's own append code (`metadata_templates.tlog.append`) in memory; the
"host" is a dict of published files a test may alter. Expected events are the ones the test put at
known indexes, never the searcher's own output.
"""

from __future__ import annotations

import random
import time

import pytest

from client.log.withdrawal_events import logged_withdrawals
from metadata_templates.errors import UnavailableError, VerificationError
from metadata_templates.tlog import events
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileId,
    decode_bundle,
    encode_bundle,
    tile_width,
)


def _event(index: int, withdraw: bool) -> bytes:
    if withdraw:
        body = {
            "event": events.WITHDRAWAL,
            "at": "2026-01-01T00:00:00Z",
            "target": f"121D/ESME-0001-00000002-{index:016x}.ota",
            "sha256": f"{index:064x}",
            "withdrawn": f"2026-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}Z",
            "reason": "bricks meters",
        }
    else:
        body = {"event": events.DEPOSIT, "at": "2026-01-01T00:00:00Z", "target": f"x{index}"}
    return events.encode_event(body)


class Host:
    """A published log/ folder in memory that counts requests."""

    def __init__(self, size: int, withdrawn: set[int], seed: int = 1) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        rng = random.Random(seed)
        done = 0
        root = b""
        while done < size:  # appended in batches of varying size, as commits do
            batch = min(size - done, rng.choice([1, 1, 2, 5, 40, 300]))
            entries = [_event(i, i in withdrawn) for i in range(done, done + batch)]
            appended = append_entries(done, self._tile, entries)
            self.files.update({"log/" + t.path: d for t, d in appended.tiles.items()})
            done, root = appended.size, appended.root_hash
        self.checkpoint = Checkpoint("cfl.test/log", size, root)

    def _tile(self, tile: TileId) -> bytes:
        return self.files["log/" + tile.path]

    def fetch(self, relative: str) -> bytes:
        self.requests.append(relative)
        try:
            return self.files[relative]
        except KeyError as e:
            raise UnavailableError(f"log: {relative}: not found") from e


@pytest.mark.parametrize(
    ("size", "start"),
    [(1, 0), (7, 0), (7, 3), (7, 6), (256, 0), (256, 255), (257, 256), (300, 0), (300, 299),
     (300, 100), (513, 100), (600, 512), (1025, 3)],
)  # fmt: skip
def test_every_withdrawal_from_start_to_the_checkpoint_is_found(size: int, start: int) -> None:
    withdrawn = {i for i in range(size) if i % 37 == 5 or i == size - 1}
    host = Host(size, withdrawn)
    found = logged_withdrawals(host.checkpoint, start, host.fetch)
    assert (found.start, found.size) == (start, size)
    assert [e.index for e in found.events] == sorted(i for i in withdrawn if i >= start)
    for e in found.events:
        assert e.target == f"121D/ESME-0001-00000002-{e.index:016x}.ota"


def test_nothing_new_fetches_nothing() -> None:
    host = Host(300, {5})
    found = logged_withdrawals(host.checkpoint, 300, host.fetch)
    assert found.events == () and host.requests == []


def test_a_later_search_reads_only_the_new_bundle_and_a_few_tiles() -> None:
    host = Host(4100, {4000, 4098})
    found = logged_withdrawals(host.checkpoint, 4097, host.fetch)
    assert [e.index for e in found.events] == [4098]
    bundles = [r for r in host.requests if "/entries/" in r]
    assert len(bundles) == 1
    assert len(host.requests) <= 6, host.requests


def _bundle_path(host: Host, index: int) -> str:
    """The published entry bundle holding entry ``index`` (full, or the partial one at the end)."""
    bundle = index // TILE_WIDTH
    return "log/" + TileId(ENTRIES_LEVEL, bundle, tile_width(0, bundle, host.checkpoint.size)).path


def _entries(host: Host, path: str) -> list[bytes]:
    width = int(path.rpartition("/")[2]) if ".p/" in path else TILE_WIDTH
    return decode_bundle(host.files[path], expected=width, where=path)


def _alter_bundle(host: Host, index: int, change: str) -> None:
    path = _bundle_path(host, index)
    entries = _entries(host, path)
    offset = index % TILE_WIDTH
    if change == "replaced":
        entries[offset] = _event(index, withdraw=False)
    else:
        entries[offset], entries[offset - 1] = entries[offset - 1], entries[offset]
    host.files[path] = encode_bundle(entries)


@pytest.mark.parametrize("change", ["replaced", "swapped"])
@pytest.mark.parametrize("start", [0, 250])
def test_a_host_that_hides_a_withdraw_entry_is_caught_by_the_root(change: str, start: int) -> None:
    host = Host(300, {260})
    _alter_bundle(host, 260, change)
    with pytest.raises(VerificationError, match="found a tree root other than the checkpoint's"):
        logged_withdrawals(host.checkpoint, start, host.fetch)


def test_a_bundle_that_drops_an_entry_is_refused() -> None:
    host = Host(300, {260})
    path = _bundle_path(host, 260)
    entries = _entries(host, path)
    host.files[path] = encode_bundle(entries[:4] + entries[5:])
    with pytest.raises(VerificationError):
        logged_withdrawals(host.checkpoint, 0, host.fetch)


def test_a_forged_hash_tile_left_of_start_is_caught_by_the_root() -> None:
    host = Host(300, {260})
    path = "log/tile/1/000.p/1"  # the hash of entries [0, 256), which the search takes on trust
    host.files[path] = bytes(32) + host.files[path][32:]
    with pytest.raises(VerificationError, match="tree root"):
        logged_withdrawals(host.checkpoint, 258, host.fetch)


def test_a_smaller_log_than_the_home_searched_is_refused() -> None:
    host = Host(7, set())
    with pytest.raises(VerificationError, match="log size: found 7, expected at least 9"):
        logged_withdrawals(host.checkpoint, 9, host.fetch)


def test_a_withdraw_entry_without_its_target_is_refused_naming_the_index() -> None:
    files: dict[str, bytes] = {}
    entries = [_event(0, False), events.encode_event({"event": events.WITHDRAWAL, "at": "x"})]
    appended = append_entries(0, lambda t: files["log/" + t.path], entries)
    files.update({"log/" + t.path: d for t, d in appended.tiles.items()})
    checkpoint = Checkpoint("cfl.test/log", 2, appended.root_hash)
    with pytest.raises(
        VerificationError, match="log entry 1: found a withdraw event with target None"
    ):
        logged_withdrawals(checkpoint, 0, files.__getitem__)


def test_a_first_search_of_a_long_log_costs_one_request_per_256_entries() -> None:
    size = 20_000
    host = Host(size, {19_999, 5})
    started = time.perf_counter()
    found = logged_withdrawals(host.checkpoint, 0, host.fetch)
    elapsed = time.perf_counter() - started
    assert [e.index for e in found.events] == [5, 19_999]
    bundles = [r for r in host.requests if "/entries/" in r]
    assert len(bundles) == -(-size // TILE_WIDTH)
    assert len(host.requests) <= len(bundles) + 4
    assert elapsed < 10, f"{elapsed:.1f} s for {size} entries"
