"""The ``withdraw`` events of the transparency log, read by the client and proved complete.

The online ``cfl-provider`` key signs the withdrawal list, but every withdrawal is also an entry of
the append-only log (docs/transparency.md), which the provider cannot rewrite without every home
that kept a checkpoint noticing. So where the client verifies the log (``cfl refresh``, ``cfl
download``) it reads the entries it has not searched yet, ``[start, size)`` of the checkpoint it now
trusts, and the withdrawal list must hold each ``withdraw`` among them
(client/trust/withdrawal_history.py).

Completeness, not just inclusion: a host that left an entry out of a bundle would hide a withdrawal
from the search. The entries read are therefore hashed into the tree and the result must be the
checkpoint's signed root: the perfect subtrees left of ``start`` come from the served hash tiles,
everything from ``start`` on from the entries themselves, so a root that matches (SHA-256 being
collision resistant) means these are exactly the logged entries. The first search of a home reads
the whole log (one request per 256 entries); later ones read only what was appended since.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from client.log.transparency import Fetch, afresh_on_failure, check_home_log, tile_reader
from client.trust.home import ClientHome
from client.trust.withdrawal_guard import WithdrawalGuard
from client.trust.withdrawal_history import (
    LoggedWithdrawal,
    LoggedWithdrawals,
    LogWithdrawalsReader,
)
from metadata_templates.errors import VerificationError
from metadata_templates.tlog import events
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.merkle import (
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
)
from metadata_templates.tlog.proofs import TreeHashes
from metadata_templates.tlog.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileId,
    decode_bundle,
    tile_width,
)


def logged_withdrawals(checkpoint: Checkpoint, start: int, fetch: Fetch) -> LoggedWithdrawals:
    """The ``withdraw`` events among entries ``[start, checkpoint.size)``, proved to be all of them.

    Raises:
        VerificationError: the log is smaller than ``start``, the entries served do not hash to the
            checkpoint's root, or a ``withdraw`` entry lacks its target or time.
        UnavailableError: an entry bundle or tile could not be fetched.
    """
    size = checkpoint.size
    if start > size:
        raise VerificationError(
            f"log size: found {size}, expected at least {start} (searched for withdrawals before); "
            "a log never shrinks"
        )
    if start == size:
        return LoggedWithdrawals(start, size)  # nothing appended: a warm refresh fetches nothing
    return afresh_on_failure(fetch, lambda: _search(checkpoint, start, fetch))


def _search(checkpoint: Checkpoint, start: int, fetch: Fetch) -> LoggedWithdrawals:
    size = checkpoint.size
    read = tile_reader(fetch)
    found: list[LoggedWithdrawal] = []
    leaves: list[bytes] = []
    for bundle in range(start // TILE_WIDTH, -(-size // TILE_WIDTH)):
        tile = TileId(ENTRIES_LEVEL, bundle, tile_width(0, bundle, size))
        entries = decode_bundle(read(tile), expected=tile.width, where=tile.path)
        for offset, entry in enumerate(entries):
            index = bundle * TILE_WIDTH + offset
            if index < start:
                continue
            leaves.append(leaf_hash(entry))
            event = events.decode_event(entry, index=index)
            if event["event"] == events.WITHDRAWAL:
                found.append(_withdrawal(event, index))
    if _root(size, start, leaves, TreeHashes(size, read)) != (checkpoint.root_hash):
        raise VerificationError(
            f"log entries {start}..{size - 1}: found a tree root other than the checkpoint's "
            f"{checkpoint.root_hash.hex()[:16]}..., expected the logged entries (an entry bundle "
            "was altered or cut)"
        )
    return LoggedWithdrawals(start, size, tuple(found))


def _withdrawal(event: dict[str, object], index: int) -> LoggedWithdrawal:
    target, withdrawn = event.get("target"), event.get("withdrawn")
    if not isinstance(target, str) or not isinstance(withdrawn, str):
        raise VerificationError(
            f"log entry {index}: found a withdraw event with target {target!r} and withdrawn "
            f"{withdrawn!r}, expected both as strings"
        )
    return LoggedWithdrawal(index, target, withdrawn)


def _root(size: int, start: int, leaves: Sequence[bytes], tree: TreeHashes) -> bytes:
    """MTH of the log of ``size``: subtrees left of ``start`` from the served tiles, the rest from
    ``leaves`` (the hashes of entries ``start`` onwards), by the RFC 6962 recursion."""

    def subtree(lo: int, hi: int) -> bytes:
        if hi <= start:
            return tree.subtree(lo, hi)
        if lo >= start:
            return root_from_leaf_hashes(leaves[lo - start : hi - start])
        k = largest_power_of_two_below(hi - lo)
        return node_hash(subtree(lo, lo + k), subtree(lo + k, hi))

    return subtree(0, size)


def home_log_withdrawals(home: ClientHome, *, now: datetime) -> LogWithdrawalsReader:
    """The reader ``refresh_library`` calls: move the home's log checkpoint forward (consistency,
    witnesses: ``check_home_log``), then search what was appended since ``start``."""

    def read(start: int) -> LoggedWithdrawals | None:
        checkpoint, fetch = check_home_log(home, now=now)
        if checkpoint is None:
            return None  # a library that has never had a log
        return logged_withdrawals(checkpoint, start, fetch)

    return read


def cross_check(guard: WithdrawalGuard, checkpoint: Checkpoint, fetch: Fetch) -> None:
    """The withdrawal list the guard accepted must hold every withdrawal logged up to
    ``checkpoint`` (no list verified yet: nothing to check).

    Raises:
        VerificationError: it lacks one (the trusted state is restored), or the log is unusable.
    """
    if guard.document is None:
        return
    guard.accept(guard.document, logged_withdrawals(checkpoint, guard.log_size(), fetch))
