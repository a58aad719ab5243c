"""Deleting the log's superseded partial tiles, which c2sp.org/tlog-tiles lets a log delete.

Every commit that grows the log writes the rightmost tile of each level again, one entry wider
(``tile/entries/000.p/1``, ``.p/2``, ...), and nothing removed the narrower ones: after 3,337
single-deposit publishes ``bench_auto_bins`` found 195 MB of log under ``public/log`` (beside
114 MB of TUF metadata), about 58 kB a publish in the provider's state and again on the host, for
a log whose entries are about 450 bytes each. Only the newest width of a tile is ever read: every
proof is computed from the tiles of the size being proved (``TreeHashes(size)``), and a client
reads the size its timestamp binds.

- In the provider's state a partial tile narrower than the committed log's is deleted at once: the
  committed width is never touched, and an append that is not committed yet only writes wider ones.
- On the host one publish of grace: a tile the previous publish served stays, because a client may
  have read that checkpoint just before this publish and not fetched its tiles yet.

Only the tiles near the right edge are looked at (from one tile left of where the previous prune
kept tiles, at each level; that size is the content of the folder's ``.cfl-partials-pruned`` mark),
so a publish costs the same at any log size. The first prune of a folder without the mark looks at
every tile once, which clears what versions before this one left.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from metadata_templates.tlog.tiles import ENTRIES_LEVEL, TILE_HEIGHT, TileId, tile_width

# tile/<L>/<index path>.p/<W> (relative to the log's root), as tiles.tile_path writes it.
_PARTIAL = re.compile(
    r"tile/([0-9]|[1-5][0-9]|6[0-3]|entries)/((?:x[0-9]{3}/)*[0-9]{3})\.p/([0-9]{1,3})"
)


def _levels(size: int) -> list[int]:
    levels = [ENTRIES_LEVEL]
    level = 0
    while size >> (TILE_HEIGHT * level):
        levels.append(level)
        level += 1
    return levels


def prune_partial_tiles(log_root: Path, *, since: int, size: int, keep_from: int) -> int:
    """Delete, under ``log_root``, every partial tile narrower than its width in a log of
    ``keep_from`` entries (full counts as 256), for the tiles a log growing from ``since`` to
    ``size`` entries can have left partial. Returns the number of files deleted.

    ``keep_from`` is the committed size in the provider's state, the size published before this
    publish on the host (one publish of grace). Files that cannot be listed or deleted are left for
    the next publish: nothing here can fail a publish.
    """
    deleted = 0
    for level in _levels(size):
        tree_level = max(level, 0)
        shift = TILE_HEIGHT * (tree_level + 1)
        first = max(0, (since >> shift) - 1)
        for index in range(first, (size >> shift) + 1):
            keep = tile_width(tree_level, index, keep_from)
            if keep:
                deleted += _prune_folder(log_root, TileId(level, index, 1), keep)
    return deleted


def parse_partial(path: str) -> TileId | None:
    """The tile a partial tile's path under the log root names (``tile/0/x001/067.p/8`` ->
    level 0, index 1067, width 8); None for any other path (a full tile, an index file)."""
    found = _PARTIAL.fullmatch(path)
    if found is None:
        return None
    level_text, index_text, width_text = found.groups()
    width = int(width_text)
    if not 0 < width < 1 << TILE_HEIGHT:
        return None
    level = ENTRIES_LEVEL if level_text == "entries" else int(level_text)
    tile = TileId(level, int(index_text.replace("x", "").replace("/", "")), width)
    # Only the one spelling tiles.py writes (no leading zeros in W or in the index's x-segments).
    return tile if tile.path == path else None


def superseded(tile: TileId, keep_from: int) -> bool:
    """Whether partial ``tile`` is narrower than its index's width in a log of ``keep_from``
    entries (full counts as 256): the rule `prune_partial_tiles` deletes by, for a destination
    that lists what it holds (object storage) instead of walking folders."""
    keep = tile_width(max(tile.level, 0), tile.index, keep_from)
    return bool(keep) and tile.width < keep


def _prune_folder(log_root: Path, tile: TileId, keep: int) -> int:
    """Delete the partial widths below ``keep`` of ``tile``'s index (``<N>.p/<W>`` files)."""
    folder = (log_root / tile.path).parent  # tile/<L>/<N>.p
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    deleted = 0
    for name in names:
        if name.isascii() and name.isdigit() and int(name) < keep:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                deleted += 1
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when nothing is left (a full tile has no partial to serve)
    return deleted


SWEPT_MARK = ".cfl-partials-pruned"  # a dotfile: never served (docs/hosting.md), never uploaded


def prune_after_publish(log_root: Path, *, since: int, size: int, keep_from: int) -> int:
    """:func:`prune_partial_tiles` from where the previous prune of this folder kept tiles (the
    size recorded in its mark), so the grace copies it kept are deleted now; over the whole log
    the first time (no mark, or one that does not read)."""
    mark = log_root / SWEPT_MARK
    try:
        text = mark.read_text("ascii").strip()
        kept = int(text) if text.isascii() and text.isdigit() and len(text) < 20 else 0
    except (OSError, UnicodeDecodeError):
        kept = 0
    deleted = prune_partial_tiles(log_root, since=min(since, kept), size=size, keep_from=keep_from)
    if size and log_root.is_dir():
        # Not synced: a mark lost or torn by a crash only means one look at every tile.
        with contextlib.suppress(OSError):
            mark.write_bytes(f"{keep_from}\n".encode("ascii"))
    return deleted
