"""RFC 6962 Merkle tree hashing and the RFC 9162 (section 2.1.3 and 2.1.4) proof verification algorithms.

These verifiers are deliberately independent of the proof generators in :mod:`.proofs`, so a bug in
one cannot hide a bug in the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from metadata_templates.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962 section 2.1: the largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[0:n]) from the n leaf hashes, by the RFC 6962 recursion (iteratively: a stack of the
    perfect subtrees seen so far, merged as they become equal in size)."""
    if not hashes:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (size, hash), sizes strictly decreasing
    for h in hashes:
        size, node = 1, h
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, node = left_size + size, node_hash(left, node)
        stack.append((size, node))
    _, root = stack.pop()
    while stack:
        _, left = stack.pop()
        root = node_hash(left, root)
    return root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is entry ``index`` of the tree of ``size`` with ``root``.

    Raises:
        VerificationError: the proof does not lead from the leaf to the root.
    """
    if not 0 <= index < size:
        raise VerificationError(f"inclusion proof: index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof: longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof: shorter than the tree is deep")
    if r != root:
        raise VerificationError(
            f"inclusion proof: entry {index} leads to root {r.hex()[:16]}..., expected "
            f"{root.hex()[:16]}... (the checkpoint's)"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` extends the tree of ``old_size`` (RFC 9162 2.1.4.2).

    Raises:
        VerificationError: the new tree does not contain the old one unchanged.
    """
    if old_size > new_size:
        raise VerificationError(
            f"consistency: tree size went down from {old_size} to {new_size}; a log only grows"
        )
    if old_size == new_size:
        if proof or old_root != new_root:
            raise VerificationError(
                f"consistency: two different roots for the same size {old_size}: "
                f"{old_root.hex()[:16]}... and {new_root.hex()[:16]}..."
            )
        return
    if old_size == 0:
        if proof:
            raise VerificationError("consistency: a proof from the empty tree must be empty")
        return
    if not proof:
        raise VerificationError("consistency: empty proof between different sizes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof: longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof: shorter than the tree is deep")
    if fr != old_root or sr != new_root:
        raise VerificationError(
            f"consistency: the log at size {new_size} (root {new_root.hex()[:16]}...) does not "
            f"contain the log at size {old_size} (root {old_root.hex()[:16]}...) unchanged"
        )
