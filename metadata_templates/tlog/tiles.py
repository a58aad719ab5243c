"""The C2SP tlog-tiles layout: tile and entry-bundle paths, bundle encoding, which tiles a size has.

A tile at level L holds up to 256 consecutive hashes; at level 0 they are leaf hashes, at level L+1
each is the root of a full tile at level L. The rightmost tiles of a tree are partial and carry their
width in the path (``.p/W``); a full tile's path has no suffix. See c2sp.org/tlog-tiles.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from metadata_templates.errors import VerificationError
from metadata_templates.tlog.merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8,192 bytes when full
MAX_ENTRY_SIZE = 0xFFFF  # entries are uint16 length-prefixed in a bundle
ENTRIES_LEVEL = -1  # our name for the entry-bundle "level" in TileId


@dataclass(frozen=True, order=True)
class TileId:
    """One tile (``level >= 0``) or entry bundle (``level == ENTRIES_LEVEL``) of a given width."""

    level: int
    index: int
    width: int

    @property
    def path(self) -> str:
        """The tile's path under the log prefix, e.g. ``tile/0/x001/x234/067.p/8``."""
        if self.level == ENTRIES_LEVEL:
            return entries_path(self.index, self.width)
        return tile_path(self.level, self.index, self.width)


def encode_index(index: int) -> str:
    """The zero-padded, ``x``-prefixed 3-digit path elements of a tile index (1234067 ->
    ``x001/x234/067``), which keep files and directories from colliding on a file system."""
    if index < 0:
        raise ValueError(f"tile index: found {index}, expected a non-negative integer")
    parts = [f"{index % 1000:03d}"]
    index //= 1000
    while index > 0:
        parts.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(parts))


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width: found {width}, expected 1..{TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``."""
    if not 0 <= level <= 63:
        raise ValueError(f"tile level: found {level}, expected 0..63")
    return f"tile/{level}/{encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{encode_index(index)}{_suffix(width)}"


def tile_width(level: int, index: int, size: int) -> int:
    """Width of tile ``index`` at ``level`` in a tree of ``size`` (0 when the tree has no such tile)."""
    full = size >> (TILE_HEIGHT * (level + 1))
    if index < full:
        return TILE_WIDTH
    if index == full:
        return (size >> (TILE_HEIGHT * level)) % TILE_WIDTH
    return 0


def tiles_for_size(size: int) -> Iterator[TileId]:
    """Every tile and entry bundle a tree of ``size`` is served as (full ones, then the partial one),
    level by level, entry bundles first."""
    level = 0
    for n in range(size // TILE_WIDTH + 1):
        width = tile_width(0, n, size)
        if width:
            yield TileId(ENTRIES_LEVEL, n, width)
    while size >> (TILE_HEIGHT * level):
        for n in range((size >> (TILE_HEIGHT * (level + 1))) + 1):
            width = tile_width(level, n, size)
            if width:
                yield TileId(level, n, width)
        level += 1


def tiles_added(old_size: int, new_size: int) -> Iterator[TileId]:
    """The tiles a tree of ``new_size`` has that one of ``old_size`` has not (a full tile replaces
    the partial one with the same index; a wider partial tile is a new file)."""
    level = ENTRIES_LEVEL
    while True:
        tree_level = max(level, 0)
        shift = TILE_HEIGHT * tree_level
        if not new_size >> shift:
            return
        first = old_size >> (shift + TILE_HEIGHT)  # the first tile that can differ
        for n in range(first, (new_size >> (shift + TILE_HEIGHT)) + 1):
            width = tile_width(tree_level, n, new_size)
            if width and width != tile_width(tree_level, n, old_size):
                yield TileId(level, n, width)
        level += 1


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes.

    Raises:
        ValueError: an entry is longer than 65,535 bytes.
    """
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise ValueError(
                f"log entry: found {len(entry)} bytes, expected at most {MAX_ENTRY_SIZE}"
            )
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes, *, expected: int, where: str) -> list[bytes]:
    """The entries of a bundle that must hold exactly ``expected`` of them.

    Raises:
        VerificationError: truncated, trailing bytes, or another number of entries.
    """
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise VerificationError(f"{where}: truncated length prefix at byte {offset}")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + length > len(data):
            raise VerificationError(
                f"{where}: entry {len(entries)} declares {length} bytes, only "
                f"{len(data) - offset} remain"
            )
        entries.append(data[offset : offset + length])
        offset += length
    if len(entries) != expected:
        raise VerificationError(f"{where}: found {len(entries)} entries, expected {expected}")
    return entries


def split_hashes(data: bytes, *, width: int, where: str) -> list[bytes]:
    """The ``width`` hashes of a tile.

    Raises:
        VerificationError: the tile is not exactly ``width`` * 32 bytes.
    """
    if len(data) != width * HASH_SIZE:
        raise VerificationError(
            f"{where}: found {len(data)} bytes, expected {width * HASH_SIZE} ({width} hashes)"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
