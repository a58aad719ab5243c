"""When a manufacturer's role is split into hash bins, and when its bins double (TAP 15).

``cfl-repo submit`` applies this rule by itself on every deposit, so a manufacturer never has to
know about bins: the deposit that would take an unsplit role past ``split_above_targets`` targets
first splits it, and a deposit into bins whose average size has passed the growth size first
doubles them. It is part of the contract, not of the provider's configuration, for the reason
``RolePolicy.min_recipient_age_days`` is: the manufacturer's ``submit`` has no repository to read,
and a value the provider published is one a thief of its online key could change.

Why these sizes (measured, docs/benchmarks.md "Automatic hash bins"). A supplier's warm refresh
after one deposit downloads the timestamp, the snapshot (one entry of about 141 bytes per bin: name,
version, length and the SHA-256 pin) and the one bin that changed (about 821 bytes per image); the
host keeps that bin and that snapshot for ever. With ``B`` bins holding ``S`` bytes in all, a refresh
costs about ``141 B + S / B``. Doubling to ``2B`` pays when the half bin it saves is larger than the
``B`` entries it adds to the snapshot: when the average bin exceeds ``2 x 141 x B`` bytes. Below
``min_average_bin_bytes`` (about 5 images) bins stay put, so a small manufacturer does not spread
over many near-empty bins that a supplier's first load fetches one request each. An unsplit role is re-signed whole
by every deposit (its published versions grow with the square of its deposits), so it is split
early, past 8 targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from metadata_templates import naming

# What the snapshot spends listing one bin: `"mfr-121D-bin-0a.json": {"hashes": {"sha256": ...},
# "length": ..., "version": ...}` (141 bytes measured at 256 bins).
SNAPSHOT_ENTRY_BYTES = 141


@dataclass(frozen=True)
class BinRule:
    """The sizes at which ``submit`` splits a role into bins and doubles the bins."""

    split_above_targets: int = 8
    min_average_bin_bytes: int = 4_000
    min_bit_length: int = 1
    snapshot_entry_bytes: int = SNAPSHOT_ENTRY_BYTES

    def grow_above(self, bins: int) -> int:
        """The average bin size (bytes) past which ``bins`` bins should double."""
        return max(self.min_average_bin_bytes, 2 * self.snapshot_entry_bytes * bins)

    def bit_length_for(self, total_bytes: int, at_least: int = 0) -> int:
        """The fewest bits (at least ``min_bit_length`` and ``at_least``) whose bins, sharing
        ``total_bytes`` of bin metadata, are on average no larger than the growth size."""
        bits = max(self.min_bit_length, at_least)
        while bits < naming.MAX_BIN_BIT_LENGTH and total_bytes > self.grow_above(1 << bits) << bits:
            bits += 1
        return bits

    def split_due(self, targets_after: int, role_bytes: int) -> int | None:
        """For an unsplit role that would hold ``targets_after`` targets (``role_bytes`` signed
        bytes today): the bit length to split it to first, or None when it stays one role."""
        if targets_after <= self.split_above_targets:
            return None
        return self.bit_length_for(role_bytes)

    def growth_due(self, bits: int, bin_lengths: Mapping[str, int]) -> int | None:
        """For a role split into ``2**bits`` bins whose signed sizes are ``bin_lengths`` (as the
        snapshot lists them): ``bits + 1`` when the average bin has passed the growth size, else
        None. One doubling per deposit: a deposit adds one image, and a wrong length in a snapshot
        (only the provider's online key signs it) can then cost no more than one doubling."""
        if bits >= naming.MAX_BIN_BIT_LENGTH or not bin_lengths:
            return None
        total = sum(bin_lengths.values())
        return bits + 1 if total > self.grow_above(1 << bits) << bits else None


AUTO_BINS = BinRule()
