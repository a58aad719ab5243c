"""A home reads only the bytes appended to the log's partial tiles (client/log/tile_cache.py).

Logs are built with the provider's own append code into a folder served as ``file://`` (and, for a
host without Range support, over the stdlib HTTP server); the home's copies live in a temporary
folder. Expected byte counts are the encoded sizes of what the test appended, never the reader's
own figures.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from client.log.tile_cache import TileCache
from client.log.transparency import CountingFetch, consistency, inclusion
from client.log.withdrawal_events import logged_withdrawals
from client.trust.transport import CflFetcher
from metadata_templates.errors import VerificationError
from metadata_templates.tlog import events
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.merkle import HASH_SIZE
from metadata_templates.tlog.tiles import TileId, entries_path, tile_path


def _event(index: int, *, withdraw: bool = False) -> bytes:
    body: dict[str, object] = {"event": events.DEPOSIT, "at": "2026-01-01T00:00:00Z"}
    body["target"] = f"121D/ESME-0001-00000002-{index:016x}.ota"
    if withdraw:
        body |= {"event": events.WITHDRAWAL, "withdrawn": "2026-01-02T00:00:00Z", "reason": "x"}
    return events.encode_event(body)


class Log:
    """A log's published ``log/`` folder, grown by the provider's append code."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.size = 0
        self.root = b""

    def _read(self, tile: TileId) -> bytes:
        return (self.folder / "log" / tile.path).read_bytes()

    def append(self, entries: list[bytes]) -> Checkpoint:
        appended = append_entries(self.size, self._read, entries)
        for tile, data in appended.tiles.items():
            path = self.folder / "log" / tile.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.size, self.root = appended.size, appended.root_hash
        return self.checkpoint

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint("cfl.test/log", self.size, self.root)


@pytest.fixture
def log(tmp_path: Path) -> Log:
    return Log(tmp_path / "host")


def _fetch(base: str, home: Path | None) -> CountingFetch:
    tiles = None if home is None else TileCache(home / "log" / "tiles")
    return CountingFetch(CflFetcher(), base, tiles=tiles)


def _encoded(entries: list[bytes]) -> int:
    return sum(2 + len(e) for e in entries)  # a bundle's uint16 length prefix and the entry


def test_a_second_search_reads_only_the_appended_entries_and_hashes(
    log: Log, tmp_path: Path
) -> None:
    base = log.folder.as_uri()
    log.append([_event(i) for i in range(100)])
    first = _fetch(base, tmp_path / "home")
    logged_withdrawals(log.checkpoint, 0, first)
    whole = first.received
    assert whole >= _encoded([_event(i) for i in range(100)])  # the first search reads it all

    new = [_event(100), _event(101, withdraw=True), _event(102)]
    cp = log.append(new)
    second = _fetch(base, tmp_path / "home")
    found = logged_withdrawals(cp, 100, second)
    assert [w.index for w in found.events] == [101]
    # The entry bundle from the byte after the kept 100 entries; the level-0 hash tile, which the
    # first search (from 0, all from entries) never needed, whole.
    assert second.received == _encoded(new) + 103 * HASH_SIZE
    assert second.paths == [
        f"log/{entries_path(0, 103)} (from byte {_encoded([_event(i) for i in range(100)])})",
        f"log/{tile_path(0, 0, 103)}",
    ]
    history = [_event(i, withdraw=i == 101) for i in range(103)]
    later = [_event(103), _event(104)]
    cp = log.append(later)
    third = _fetch(base, tmp_path / "home")
    logged_withdrawals(cp, 103, third)
    assert third.received == _encoded(later) + 2 * HASH_SIZE
    assert third.paths == [
        f"log/{entries_path(0, 105)} (from byte {_encoded(history)})",
        f"log/{tile_path(0, 0, 105)} (from byte {103 * HASH_SIZE})",
    ]
    # Without the home's copies the same search reads both partial tiles whole.
    bare = _fetch(base, None)
    logged_withdrawals(cp, 103, bare)
    assert bare.received == _encoded(history + later) + 105 * HASH_SIZE


def test_a_tile_that_fills_up_is_read_from_the_kept_part_and_the_next_starts_whole(
    log: Log, tmp_path: Path
) -> None:
    base = log.folder.as_uri()
    log.append([_event(i) for i in range(250)])
    logged_withdrawals(log.checkpoint, 0, _fetch(base, tmp_path / "home"))
    cp = log.append([_event(i, withdraw=i == 255) for i in range(250, 260)])
    fetch = _fetch(base, tmp_path / "home")
    found = logged_withdrawals(cp, 250, fetch)
    assert [w.index for w in found.events] == [255]
    assert f"log/{entries_path(0)} (from byte {_encoded([_event(i) for i in range(250)])})" in (
        fetch.paths
    )
    assert f"log/{entries_path(1, 4)}" in fetch.paths  # nothing kept of the new bundle: whole
    kept = sorted(p.name for p in (tmp_path / "home" / "log" / "tiles").iterdir())
    # The search read level 0's full tile 0 (left of 250) and no partial hash tile; nothing full
    # is kept, and the filled bundle's partial copy is gone.
    assert kept == ["entries-1-4"]


def test_consistency_and_inclusion_read_through_the_kept_tiles(log: Log, tmp_path: Path) -> None:
    base = log.folder.as_uri()
    old = log.append([_event(i) for i in range(90)])
    mid = log.append([_event(90)])
    consistency(old, mid, _fetch(base, tmp_path / "home"))  # keeps level 0's partial tile
    new = log.append([_event(i) for i in range(91, 95)])
    fetch = _fetch(base, tmp_path / "home")
    consistency(mid, new, fetch)
    assert fetch.received == 4 * HASH_SIZE
    assert fetch.paths == [f"log/{tile_path(0, 0, 95)} (from byte {91 * HASH_SIZE})"]
    assert inclusion(new, 93, fetch)["target"] == f"121D/ESME-0001-00000002-{93:016x}.ota"


def test_a_kept_tile_damaged_in_the_home_is_dropped_and_the_log_read_whole(
    log: Log, tmp_path: Path
) -> None:
    """A same-length, well-formed but wrong copy is the worst case: it parses, so only the check
    can catch it. The check still succeeds (read again whole), and the copy is replaced."""
    base = log.folder.as_uri()
    old = log.append([_event(i) for i in range(40)])
    mid = log.append([_event(40)])
    consistency(old, mid, _fetch(base, tmp_path / "home"))
    kept = tmp_path / "home" / "log" / "tiles" / "0-0-41"
    kept.write_bytes(bytes(41 * HASH_SIZE))
    new = log.append([_event(41, withdraw=True)])
    consistency(mid, new, _fetch(base, tmp_path / "home"))
    assert (tmp_path / "home" / "log" / "tiles" / "0-0-42").read_bytes() == (
        log.folder / "log" / tile_path(0, 0, 42)
    ).read_bytes()
    (tmp_path / "home" / "log" / "tiles" / "0-0-42").write_bytes(bytes(42 * HASH_SIZE))
    fetch = _fetch(base, tmp_path / "home")
    assert [w.index for w in logged_withdrawals(new, 41, fetch).events] == [41]
    assert fetch.whole  # the first try failed with the damaged copy; the second read all whole
    assert (tmp_path / "home" / "log" / "tiles" / "0-0-42").read_bytes() == (
        log.folder / "log" / tile_path(0, 0, 42)
    ).read_bytes()


def test_a_kept_tile_that_does_not_parse_is_ignored(log: Log, tmp_path: Path) -> None:
    base = log.folder.as_uri()
    log.append([_event(i) for i in range(20)])
    logged_withdrawals(log.checkpoint, 0, _fetch(base, tmp_path / "home"))
    (tmp_path / "home" / "log" / "tiles" / "entries-0-20").write_bytes(b"\xff\xff\x00")
    cp = log.append([_event(20)])
    fetch = _fetch(base, tmp_path / "home")
    logged_withdrawals(cp, 20, fetch)
    assert f"log/{entries_path(0, 21)}" in fetch.paths  # read whole, not from a broken prefix


def test_an_appended_entry_altered_by_the_host_is_still_refused(log: Log, tmp_path: Path) -> None:
    base = log.folder.as_uri()
    log.append([_event(i) for i in range(30)])
    logged_withdrawals(log.checkpoint, 0, _fetch(base, tmp_path / "home"))
    cp = log.append([_event(30, withdraw=True)])
    bundle = log.folder / "log" / entries_path(0, 31)
    data = bundle.read_bytes()
    hidden = _event(30)  # the withdrawal made to look like a deposit, same length or not
    bundle.write_bytes(data[: len(data) - len(_event(30, withdraw=True)) - 2] + _frame(hidden))
    with pytest.raises(VerificationError, match="found a tree root other than the checkpoint's"):
        logged_withdrawals(cp, 30, _fetch(base, tmp_path / "home"))


def _frame(entry: bytes) -> bytes:
    return len(entry).to_bytes(2, "big") + entry


@pytest.fixture
def plain_http(log: Log) -> Iterator[str]:
    """The stdlib HTTP server, which ignores Range and answers 200 with the whole file."""
    log.folder.mkdir(parents=True, exist_ok=True)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(log.folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_host_without_range_support_sends_the_whole_tile_and_that_is_used(
    log: Log, tmp_path: Path, plain_http: str
) -> None:
    log.append([_event(i) for i in range(50)])
    logged_withdrawals(log.checkpoint, 0, _fetch(plain_http, tmp_path / "home"))
    cp = log.append([_event(50, withdraw=True)])
    fetch = _fetch(plain_http, tmp_path / "home")
    assert [w.index for w in logged_withdrawals(cp, 50, fetch).events] == [50]
    assert fetch.received == _encoded(
        [_event(i) for i in range(50)] + [_event(50, withdraw=True)]
    ) + (51 * HASH_SIZE)
    assert fetch.paths == [f"log/{entries_path(0, 51)} (from byte 0)", f"log/{tile_path(0, 0, 51)}"]


def test_a_write_killed_half_way_leaves_nothing_that_is_read_or_kept(
    log: Log, tmp_path: Path
) -> None:
    base = log.folder.as_uri()
    tiles = tmp_path / "home" / "log" / "tiles"
    log.append([_event(i) for i in range(10)])
    logged_withdrawals(log.checkpoint, 0, _fetch(base, tmp_path / "home"))
    (tiles / ".entries-0-11.abc123.tmp").write_bytes(b"\x00\x05torn")  # as a kill -9 leaves it
    cp = log.append([_event(10)])
    fetch = _fetch(base, tmp_path / "home")
    logged_withdrawals(cp, 10, fetch)
    assert (
        fetch.paths[0]
        == f"log/{entries_path(0, 11)} (from byte {_encoded([_event(i) for i in range(10)])})"
    )
    assert sorted(p.name for p in tiles.iterdir()) == ["0-0-11", "entries-0-11"]


@pytest.mark.parametrize("name", ["entries-²-1", "0-0-١٢", "entries-0-", "--", "entries-x-1"])
def test_a_kept_file_with_an_odd_name_is_ignored(log: Log, tmp_path: Path, name: str) -> None:
    """``str.isdigit`` takes '²' and Arabic-Indic digits, ``int`` does not: never a traceback."""
    base = log.folder.as_uri()
    tiles = tmp_path / "home" / "log" / "tiles"
    tiles.mkdir(parents=True)
    (tiles / name).write_bytes(b"x")
    cp = log.append([_event(0, withdraw=True)])
    assert [w.index for w in logged_withdrawals(cp, 0, _fetch(base, tmp_path / "home")).events] == [
        0
    ]


def test_a_tiles_path_that_is_not_a_folder_costs_whole_reads_not_a_refresh(
    log: Log, tmp_path: Path
) -> None:
    base = log.folder.as_uri()
    (tmp_path / "home" / "log").mkdir(parents=True)
    (tmp_path / "home" / "log" / "tiles").write_bytes(b"not a folder")
    cp = log.append([_event(0), _event(1, withdraw=True)])
    for _ in range(2):
        found = logged_withdrawals(cp, 0, _fetch(base, tmp_path / "home"))
        assert [w.index for w in found.events] == [1]


def test_a_planted_copy_too_deeply_nested_to_decode_is_dropped_and_read_whole(
    log: Log, tmp_path: Path
) -> None:
    """A kept bundle as wide as the tile is used as it is; if its entries do not decode (JSON
    nested beyond the decoder's reach), the search runs again from the host, once."""
    base = log.folder.as_uri()
    log.append([_event(i) for i in range(5)])
    logged_withdrawals(log.checkpoint, 0, _fetch(base, tmp_path / "home"))
    cp = log.append([_event(5, withdraw=True)])
    tiles = tmp_path / "home" / "log" / "tiles"
    kept = (tiles / "entries-0-5").read_bytes()
    deep = b"[" * 3000
    (tiles / "entries-0-6").write_bytes(kept + len(deep).to_bytes(2, "big") + deep)
    (tiles / "entries-0-5").unlink()
    for _ in range(2):
        found = logged_withdrawals(cp, 5, _fetch(base, tmp_path / "home"))
        assert [w.index for w in found.events] == [5]
