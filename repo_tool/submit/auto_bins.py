"""Automatic hash bins: the split (or doubling) a deposit makes first, so nobody has to ask for it.

``cfl-repo submit`` weighs the manufacturer's published role by the contract's rule
(metadata_templates/bin_rule.py) before it signs a deposit. When the deposit would take an unsplit
role past the rule's target count, or the bins' average size (as the verified snapshot lists them)
has passed the growth size, it signs a ``split-bins`` bundle first, exactly the one ``submit
--split-bins BITS`` writes and the gateway checks today (repo_tool/gateway/bins.py), and then signs
the deposit on top of it: into the new bins, each one version above the split's. The provider
ingests the split, then the deposit (``ingest`` takes an inbox in name order, and the split's file
name sorts first); both are judged in full, each in its own commit.

Why split first rather than deposit first: the deposit then never carries a large unsplit role (the
gateway caps a role's size), and a split changes no content, so a split whose deposit is refused
(an image not on the CPL) is harmless, and the next ``submit`` builds on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from metadata_templates import naming
from metadata_templates.bin_rule import AUTO_BINS, BinRule
from repo_tool.gateway.bins import split_bit_length
from repo_tool.intake.bundle import BUNDLE_SUFFIX, Bundle
from repo_tool.submit.bins import build_split
from repo_tool.verify.published import PublishedLibrary


@dataclass(frozen=True)
class AutoSplit:
    """A split signed ahead of a deposit, and the library as it is once the split is ingested."""

    bundle: Bundle
    role_version: int
    bit_length: int
    library: PublishedLibrary


def split_path_for(out_file_name: str) -> str:
    """The split bundle's file name beside the deposit's: ``121D-fw5.cflb`` gets
    ``121D-fw5-split.cflb``, which sorts before it ('-' < '.') so an inbox ingests it first."""
    return out_file_name.removesuffix(BUNDLE_SUFFIX) + "-split" + BUNDLE_SUFFIX


def due_bit_length(
    library: PublishedLibrary, manufacturer_id: str, new_targets: int, rule: BinRule = AUTO_BINS
) -> int | None:
    """The bit length the manufacturer's role should be split to before a deposit adding
    ``new_targets`` targets, or None when it stays as it is (also when it has no role yet)."""
    mfr = library.role_metadata.get(naming.role_name(manufacturer_id))
    if mfr is None:
        return None
    bits = split_bit_length(mfr)
    if bits is None:
        return rule.split_due(len(mfr.signed.targets) + new_targets, len(mfr.to_bytes()))
    lengths = {
        name: library.role_lengths[name]
        for name in naming.bin_roles(manufacturer_id, bits)
        if name in library.role_lengths
    }
    return rule.growth_due(bits, lengths)


def split_first(
    *,
    manufacturer_id: str,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    load_every_bin: Callable[[], PublishedLibrary],
    new_targets: int,
    now: datetime,
    rule: BinRule = AUTO_BINS,
) -> AutoSplit | None:
    """The split the rule asks for before this deposit, or None. ``library`` is what the deposit
    verified (its own bins only); ``load_every_bin`` verifies every bin of the manufacturer, which a
    doubling redistributes (once per doubling, so its cost is shared by the deposits between).

    Raises:
        RejectedInputError: the keys do not meet the published delegation's threshold.
        VerificationError, UnavailableError: ``load_every_bin`` cannot verify the bins.
    """
    bits = due_bit_length(library, manufacturer_id, new_targets, rule)
    if bits is None:
        return None
    split_from = library
    if split_bit_length(library.role_metadata[naming.role_name(manufacturer_id)]) is not None:
        split_from = load_every_bin()
    bundle, version = build_split(
        manufacturer_id=manufacturer_id,
        bit_length=bits,
        signers=signers,
        library=split_from,
        now=now,
    )
    # The deposit signs on top of the split: the role with its succinct delegation and every bin,
    # as the provider will hold them once the split is ingested.
    after = {
        name: md
        for name, md in library.role_metadata.items()
        if naming.manufacturer_of_bin(name) != manufacturer_id  # bins of the old count leave
    }
    after[naming.role_name(manufacturer_id)] = Metadata[Targets].from_bytes(bundle.role_bytes)
    after.update((name, Metadata[Targets].from_bytes(data)) for name, data in bundle.bins)
    return AutoSplit(bundle, version, bits, replace(library, role_metadata=after))
