"""Appending entries to a tiled log, as a pure function of the tiles already there.

Only the right edge is read (the partial entry bundle and at most one partial tile per level), so
appending costs the same for a log of a thousand entries as for one of a million. The caller writes
the returned tiles; every one of them lies beyond the current size, so it never replaces a tile a
committed checkpoint refers to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metadata_templates.tlog.merkle import leaf_hash, root_from_leaf_hashes
from metadata_templates.tlog.proofs import TileReader, TreeHashes
from metadata_templates.tlog.tiles import (
    ENTRIES_LEVEL,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileId,
    decode_bundle,
    encode_bundle,
    split_hashes,
)


@dataclass(frozen=True)
class Appended:
    """The outcome of one append: the new size and root, and the tiles to write."""

    size: int
    root_hash: bytes
    tiles: dict[TileId, bytes]


def _chunks(first_index: int, items: list[bytes]) -> list[tuple[TileId, list[bytes]]]:
    out = []
    for start in range(0, len(items), TILE_WIDTH):
        chunk = items[start : start + TILE_WIDTH]
        out.append((TileId(0, first_index + start // TILE_WIDTH, len(chunk)), chunk))
    return out


def append_entries(size: int, read_tile: TileReader, entries: Sequence[bytes]) -> Appended:
    """Append ``entries`` to the log of ``size`` entries whose tiles ``read_tile`` returns.

    Raises:
        ValueError: an entry is longer than an entry bundle allows (65,535 bytes).
        VerificationError: an edge tile read back is malformed.
        UnavailableError: ``read_tile`` could not read an edge tile.
    """
    tiles: dict[TileId, bytes] = {}
    new_size = size + len(entries)
    if not entries:
        return Appended(size, TreeHashes(size, read_tile).root(), tiles)

    # Entry bundles, then level 0 (leaf hashes), then each level above while full tiles appear.
    first = size // TILE_WIDTH
    old_width = size % TILE_WIDTH
    edge: list[bytes] = []
    if old_width:
        tile = TileId(ENTRIES_LEVEL, first, old_width)
        edge = decode_bundle(read_tile(tile), expected=old_width, where=tile.path)
    for tile, chunk in _chunks(first, [*edge, *entries]):
        bundle = TileId(ENTRIES_LEVEL, tile.index, tile.width)
        tiles[bundle] = encode_bundle(chunk)

    pending = [leaf_hash(e) for e in entries]
    level = 0
    while pending:
        count = size >> (TILE_HEIGHT * level)  # hashes this level had before
        first, old_width = divmod(count, TILE_WIDTH)
        edge = []
        if old_width:
            tile = TileId(level, first, old_width)
            edge = split_hashes(read_tile(tile), width=old_width, where=tile.path)
        promoted = []
        for tile, chunk in _chunks(first, [*edge, *pending]):
            tiles[TileId(level, tile.index, tile.width)] = b"".join(chunk)
            if tile.width == TILE_WIDTH:
                promoted.append(root_from_leaf_hashes(chunk))
        pending = promoted
        level += 1

    def overlay(tile: TileId) -> bytes:
        return tiles[tile] if tile in tiles else read_tile(tile)

    return Appended(new_size, TreeHashes(new_size, overlay).root(), tiles)
