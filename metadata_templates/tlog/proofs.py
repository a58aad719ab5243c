"""Root hashes, inclusion proofs and consistency proofs computed from tiles (RFC 6962 section 2.1).

Any hash of a perfect, aligned subtree of height h = 8*L + r is the Merkle root of 2**r consecutive
hashes in one tile at level L, so a proof needs O(log n) hashes from at most a few tiles per level,
whatever the log's size. Tiles come from a callable, so the same code reads files (provider) or
HTTP (client, witness) and tests count what was fetched.
"""

from __future__ import annotations

from collections.abc import Callable

from metadata_templates.tlog.merkle import (
    EMPTY_ROOT,
    largest_power_of_two_below,
    node_hash,
    root_from_leaf_hashes,
)
from metadata_templates.tlog.tiles import TILE_HEIGHT, TileId, split_hashes, tile_width

TileReader = Callable[[TileId], bytes]
"""Returns a tile's bytes; raises UnavailableError when it cannot be read."""


class TreeHashes:
    """The hashes of a tree of ``size`` entries as served in tiles, read lazily and cached."""

    def __init__(self, size: int, read_tile: TileReader) -> None:
        self.size = size
        self._read_tile = read_tile
        self._tiles: dict[TileId, list[bytes]] = {}

    def _tile(self, tile: TileId) -> list[bytes]:
        hashes = self._tiles.get(tile)
        if hashes is None:
            hashes = split_hashes(self._read_tile(tile), width=tile.width, where=tile.path)
            self._tiles[tile] = hashes
        return hashes

    def node(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree over entries [index * 2**height, (index + 1) * 2**height),
        which must lie inside the tree."""
        if (index + 1) << height > self.size:
            raise ValueError(f"node {height}/{index} is not complete in a tree of size {self.size}")
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest
        n, offset = divmod(first, 1 << TILE_HEIGHT)
        width = tile_width(level, n, self.size)
        hashes = self._tile(TileId(level, n, width))
        return root_from_leaf_hashes(hashes[offset : offset + (1 << rest)])

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 6962's recursions visit (start aligned)."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        k = largest_power_of_two_below(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self) -> bytes:
        """MTH of the whole tree."""
        return self.subtree(0, self.size) if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 6962 section 2.1.1."""
        if not 0 <= index < self.size:
            raise ValueError(f"index {index} is outside a tree of size {self.size}")
        return self._path(index, 0, self.size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < start + k:
            return [*self._path(m, start, start + k), self.subtree(start + k, end)]
        return [*self._path(m, start + k, end), self.subtree(start, start + k)]

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:size]) of RFC 6962 section 2.1.2 (empty for 0 or equal sizes)."""
        if not 0 <= old_size <= self.size:
            raise ValueError(f"old size {old_size} is outside 0..{self.size}")
        if old_size in (0, self.size):
            return []
        return self._subproof(old_size, 0, self.size, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.subtree(start, end)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self.subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree(start, start + k)]
