"""The growing end of the log a home has read, so a refresh downloads only what was appended.

A C2SP log's rightmost tile at each level is partial, and a partial tile of width W is served whole
(``tile/entries/000.p/W``): after one deposit into a log of 100 entries a client would download all
100 entries again (~45 kB), which made a supplier's warm refresh grow with the log, not with what
changed (issue 26, measured by bench/bench_auto_bins.py). Every version of a tile is a prefix of
the next (entries and hashes are only ever appended), so the home keeps the last partial tile it
read at each level and asks the host for the bytes after it with one HTTP Range request.

Nothing kept here is trusted: a tile read through the cache is checked exactly as one read whole
(the consistency proof, the completeness root of the withdrawal search, the inclusion proof), so a
damaged or planted copy can only make a check fail, never pass. A check that fails after using a
kept copy is run once more with every tile read whole (``CountingFetch.afresh_on_failure``), so a
damaged copy never passes for a log fault either, and is dropped.

Layout: ``H/log/tiles/<level>-<index>-<width>`` (level ``entries`` for entry bundles), at most one
file per level; full tiles are not kept (they never change, and a proof rarely reads one again).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import VerificationError
from metadata_templates.tlog.merkle import HASH_SIZE
from metadata_templates.tlog.tiles import ENTRIES_LEVEL, TILE_WIDTH, TileId, decode_bundle

logger = logging.getLogger(__name__)


def _level_name(level: int) -> str:
    return "entries" if level == ENTRIES_LEVEL else str(level)


class TileCache:
    """The last partial tile read at each level, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _kept(self, level: int) -> list[tuple[int, int, Path]]:
        """(index, width, path) of the copies kept for ``level``."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        found = []
        for name in names:
            parts = name.split("-")
            if len(parts) == 3 and parts[0] == _level_name(level):
                index, width = parts[1], parts[2]
                if _decimal(index) and _decimal(width):
                    found.append((int(index), int(width), self.folder / name))
        return found

    def prefix(self, tile: TileId) -> tuple[int, bytes]:
        """(width, bytes) of the widest kept version of ``tile`` no wider than it, or (0, b"")
        when there is none or it does not parse as a tile of its width (then it is dropped).
        A kept version of the same width is the whole tile: a partial tile never changes."""
        best: tuple[int, Path] | None = None
        for index, width, path in self._kept(tile.level):
            if (
                index == tile.index
                and 0 < width <= tile.width
                and (best is None or width > best[0])
            ):
                best = (width, path)
        if best is None:
            return 0, b""
        width, path = best
        try:
            data = path.read_bytes()
        except OSError:
            return 0, b""
        if not _well_formed(tile.level, width, data):
            with contextlib.suppress(OSError):
                path.unlink()
            return 0, b""
        return width, data

    def keep(self, tile: TileId, data: bytes) -> None:
        """Remember ``data`` as ``tile`` if it is partial, and forget the copies it supersedes.
        Best effort: a copy that cannot be written (a full disk, ``tiles`` not a folder) only
        means the next refresh reads that tile whole."""
        try:
            self._keep(tile, data)
        except OSError as e:
            logger.warning("log tiles: cannot keep %s in %s (%s)", tile.path, self.folder, e)

    def _keep(self, tile: TileId, data: bytes) -> None:
        kept = self._kept(tile.level)
        if any((index, width) >= (tile.index, tile.width) for index, width, _ in kept):
            return  # as wide or further on already: an older tile read for a proof
        if tile.width < TILE_WIDTH and _well_formed(tile.level, tile.width, data):
            name = f"{_level_name(tile.level)}-{tile.index}-{tile.width}"
            atomic_write_bytes(self.folder / name, data)
        for index, width, path in kept:
            if (index, width) < (tile.index, tile.width):
                with contextlib.suppress(OSError):
                    path.unlink()
        self._sweep_torn()

    def _sweep_torn(self) -> None:
        """Remove what a write killed half-way left (``.<name>.<random>.tmp``); the home's lock
        means no other ``cfl`` is writing here."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        (self.folder / name).unlink()

    def forget(self) -> None:
        """Drop every kept tile (after a check failed with them)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            with contextlib.suppress(OSError):
                (self.folder / name).unlink()


def _decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes ``'²'``, which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _well_formed(level: int, width: int, data: bytes) -> bool:
    if level != ENTRIES_LEVEL:
        return len(data) == width * HASH_SIZE
    try:
        decode_bundle(data, expected=width, where="kept tile")
    except VerificationError:
        return False
    return True
