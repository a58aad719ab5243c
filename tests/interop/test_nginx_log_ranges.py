"""A home's log reads over a real nginx: the bytes after its kept tiles, by HTTP Range (206).

nginx answers ranges on static files by default; this holds the host configuration the interop
tests use (docs/hosting.md's) to it, through the client's own fetcher and tile cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.log.tile_cache import TileCache
from client.log.transparency import CountingFetch
from client.log.withdrawal_events import logged_withdrawals
from client.trust.transport import CflFetcher
from metadata_templates.tlog import events
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.merkle import HASH_SIZE
from metadata_templates.tlog.tiles import TileId, entries_path, tile_path

from .conftest import IMMUTABLE, NO_CACHE, NO_STORE, NginxServer, cache_control

pytestmark = pytest.mark.system


def _entry(index: int) -> bytes:
    kind = events.WITHDRAWAL if index % 7 == 3 else events.DEPOSIT
    body = {"event": kind, "at": "2026-01-01T00:00:00Z", "target": f"t{index}", "withdrawn": "w"}
    return events.encode_event(body)


def _append(folder: Path, size: int, count: int) -> tuple[int, bytes]:
    def read(tile: TileId) -> bytes:
        return (folder / "log" / tile.path).read_bytes()

    appended = append_entries(size, read, [_entry(i) for i in range(size, size + count)])
    for tile, data in appended.tiles.items():
        (folder / "log" / tile.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / "log" / tile.path).write_bytes(data)
    return appended.size, appended.root_hash


def test_nginx_serves_the_appended_bytes_of_a_partial_tile(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    from metadata_templates.tlog.checkpoint import Checkpoint

    host = tmp_path / "host"
    base = nginx_server(_prepared(host))
    tiles = TileCache(tmp_path / "home" / "log" / "tiles")
    size, root = _append(host, 0, 120)
    logged_withdrawals(
        Checkpoint("o", size, root), 0, CountingFetch(CflFetcher(), base, tiles=tiles)
    )
    for start, count in ((120, 4), (124, 3)):
        size, root = _append(host, start, count)
        fetch = CountingFetch(CflFetcher(), base, tiles=tiles)
        found = logged_withdrawals(Checkpoint("o", size, root), start, fetch)
        assert [w.index for w in found.events] == [i for i in range(start, size) if i % 7 == 3]
    kept_entries = sum(2 + len(_entry(i)) for i in range(124))
    assert fetch.paths == [
        f"log/{entries_path(0, 127)} (from byte {kept_entries})",
        f"log/{tile_path(0, 0, 127)} (from byte {124 * HASH_SIZE})",
    ]
    assert fetch.received == sum(2 + len(_entry(i)) for i in range(124, 127)) + 3 * HASH_SIZE

    begins, tail = CflFetcher().fetch_from(base + "log/" + tile_path(0, 0, 127), 100, 1 << 20)
    whole = (host / "log" / tile_path(0, 0, 127)).read_bytes()
    assert (begins, tail) == (100, whole[100:])


def test_nginx_serves_the_logs_cache_headers(tmp_path: Path, nginx_server: NginxServer) -> None:
    """docs/hosting.md's table for log/: the checkpoint revalidated, every tile immutable (a tile
    grown wider is a new file), and a superseded partial tile, once pruned, a 404 never stored."""
    host = tmp_path / "host"
    base = nginx_server(_prepared(host))
    _append(host, 0, 300)  # a full tile at each of the two lowest levels, partial ones beside
    (host / "log" / "checkpoint").write_text("o\n300\nroot\n\n— o sig\n")
    (host / "log" / "cfl-index").mkdir()
    (host / "log" / "cfl-index" / ("ab" * 32)).write_text("3\n")

    assert cache_control(base + "log/checkpoint") == (200, NO_CACHE)
    assert cache_control(base + "log/" + tile_path(0, 0)) == (200, IMMUTABLE)
    assert cache_control(base + "log/" + entries_path(0)) == (200, IMMUTABLE)
    assert cache_control(base + "log/" + tile_path(0, 1, 44)) == (200, IMMUTABLE)
    assert cache_control(base + "log/" + entries_path(1, 44)) == (200, IMMUTABLE)
    assert cache_control(base + "log/cfl-index/" + "ab" * 32) == (200, IMMUTABLE)
    # a width a later publish pruned, or one never written
    assert cache_control(base + "log/" + tile_path(0, 1, 43)) == (404, NO_STORE)
    (host / "log" / "checkpoint").unlink()  # before the first publish that logs anything
    assert cache_control(base + "log/checkpoint") == (404, NO_STORE)


def _prepared(host: Path) -> Path:
    (host / "log").mkdir(parents=True)
    return host
