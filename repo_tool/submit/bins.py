"""The manufacturer's side of hash bins (TAP 15): deposits into bins, renewals, and the split.

Once a manufacturer is split (its published role ``mfr-121D`` holds a succinct delegation and no
targets), a deposit re-signs only the bin the image's path goes to (and the bin of its notes target
when that is another one), so its cost and a supplier's warm refresh stay bounded by the bin size,
not by everything the manufacturer ever lodged. ``submit --split-bins BITS`` migrates: it re-signs
the role with the delegation and every bin, version 1 (or one up, when the count grows), with the
targets the rule assigns to each. Bin assignment is ``metadata_templates.naming.bin_for_target``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from securesystemslib.signer import Signer
from tuf.api.metadata import Delegations, Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.errors import RejectedInputError
from metadata_templates.naming import SPEC_VERSION
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.gateway.bins import bin_delegation, split_bit_length, succinct_of
from repo_tool.intake.bundle import KIND_RENEWAL, KIND_SPLIT_BINS, Bundle, Declaration
from repo_tool.state.retirement import retiring_keyids
from repo_tool.verify.published import PublishedLibrary

DEFAULT_EXPIRY = DEFAULT_POLICY.expiry("mfr")


def published_split(library: PublishedLibrary, manufacturer_id: str) -> Metadata[Targets] | None:
    """The manufacturer's published role when it is split into bins, else None."""
    role = library.role_metadata.get(naming.role_name(manufacturer_id))
    return role if split_bit_length(role) is not None else None


def _copy(md: Metadata[Targets]) -> Targets:
    return Metadata[Targets].from_bytes(md.to_bytes()).signed


def _sign(
    signed: Targets, signers: Sequence[Signer], name: str, delegator: Targets
) -> Metadata[Targets]:
    """Sign with every given key, then check them the way the provider and clients will.

    Raises:
        RejectedInputError: the keys do not meet the delegation's threshold.
    """
    md = Metadata(signed)
    for signer in signers:
        md.sign(signer, append=True)
    result = delegator.get_verification_result(name, md.signed_bytes, md.signatures)
    if not result.verified:
        raise RejectedInputError(
            f"{name} signatures: found {len(result.signed)} by keys the manufacturer role delegates "
            f"to, expected {result.threshold}; delegated key IDs are "
            f"{sorted(k[:8] for k in (result.signed | result.unsigned))}"
        )
    return md


def deposit_into_bins(
    *,
    manufacturer_id: str,
    mfr_role: Metadata[Targets],
    library: PublishedLibrary,
    new_targets: Sequence[TargetFile],
    signers: Sequence[Signer],
    now: datetime,
    expiry: timedelta,
) -> tuple[str, Metadata[Targets], tuple[tuple[str, bytes], ...]]:
    """The next version of each bin the new targets go to: (image bin, its metadata, other bins).

    Raises:
        RejectedInputError: a bin is missing from the published library, or the keys do not meet
            the succinct delegation's threshold.
    """
    succinct = succinct_of(mfr_role)
    assert succinct is not None
    changed: dict[str, Targets] = {}
    for target in new_targets:
        name = succinct.get_role_for_target(target.path)
        if name not in changed:
            current = library.role_metadata.get(name)
            if current is None:
                raise RejectedInputError(
                    f"{name}: found no published bin, expected every bin of "
                    f"{naming.role_name(manufacturer_id)} (ask the provider to publish)"
                )
            signed = _copy(current)
            signed.version += 1
            signed.expires = now + expiry
            changed[name] = signed
        changed[name].targets[target.path] = target
    signed_bins = {
        name: _sign(signed, signers, name, mfr_role.signed) for name, signed in changed.items()
    }
    main = succinct.get_role_for_target(new_targets[0].path)
    others = tuple(
        (name, md.to_bytes()) for name, md in sorted(signed_bins.items()) if name != main
    )
    return main, signed_bins[main], others


def build_split(
    *,
    manufacturer_id: str,
    bit_length: int,
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta = DEFAULT_EXPIRY,
) -> tuple[Bundle, int]:
    """A ``split-bins`` bundle: the manufacturer role's next version with a succinct delegation to
    ``2**bit_length`` bins and no targets, and every bin holding the targets the rule assigns to it.

    Returns the bundle and the new manufacturer role version.

    Raises:
        RejectedInputError: no published role, a bin count not above today's, or keys that do not
            meet the published delegation's threshold.
    """
    mfr_name = naming.role_name(manufacturer_id)
    current = library.role_metadata.get(mfr_name)
    if current is None:
        raise RejectedInputError(
            f"{mfr_name}: found no published role, expected one to split (deposit an image first)"
        )
    old_bits = split_bit_length(current) or 0
    if not old_bits < bit_length <= naming.MAX_BIN_BIT_LENGTH:
        raise RejectedInputError(
            f"--split-bins: found {bit_length}, expected more than today's {old_bits} and at most "
            f"{naming.MAX_BIN_BIT_LENGTH}"
        )
    delegator = _delegation_from_library(library, mfr_name)
    delegations = delegator.delegations
    assert delegations is not None and delegations.roles is not None  # checked by the lookup
    role = delegations.roles[mfr_name]
    # During a key rotation the delegation still lists the retiring keys (so lodged images stay
    # verifiable); the bins' delegation lists only the keys the provider registered.
    keyids = sorted(set(role.keyids) - retiring_keyids(role))
    targets: dict[str, TargetFile] = dict(current.signed.targets)
    for name in naming.bin_roles(manufacturer_id, old_bits) if old_bits else []:
        old_bin = library.role_metadata.get(name)
        if old_bin is not None:
            targets.update(old_bin.signed.targets)
    signed = _copy(current)
    signed.version += 1
    signed.expires = now + expiry
    signed.targets = {}
    signed.delegations = Delegations(
        keys={keyid: delegations.keys[keyid] for keyid in keyids},
        roles=None,
        succinct_roles=bin_delegation(manufacturer_id, keyids, role.threshold, bit_length),
    )
    mfr_md = _sign(signed, signers, mfr_name, delegator)
    bins: list[tuple[str, bytes]] = []
    for name in naming.bin_roles(manufacturer_id, bit_length):
        old_bin = library.role_metadata.get(name)
        bin_signed = Targets(version=1 if old_bin is None else old_bin.signed.version + 1)
        bin_signed.spec_version = SPEC_VERSION
        bin_signed.expires = now + expiry
        bin_signed.targets = {
            path: target
            for path, target in sorted(targets.items())
            if naming.bin_for_target(manufacturer_id, path, bit_length) == name
        }
        bins.append((name, _sign(bin_signed, signers, name, mfr_md.signed).to_bytes()))
    bundle = Bundle(
        manufacturer_id=manufacturer_id,
        target="",
        declaration=Declaration((), "", ()),
        image=b"",
        role_bytes=mfr_md.to_bytes(),
        release_notes=None,
        kind=KIND_SPLIT_BINS,
        bins=tuple(bins),
    )
    return bundle, signed.version


def build_bin_renewal(
    *,
    manufacturer_id: str,
    mfr_role: Metadata[Targets],
    signers: Sequence[Signer],
    library: PublishedLibrary,
    now: datetime,
    expiry: timedelta,
) -> tuple[Bundle, int]:
    """Re-sign what of a split manufacturer is near expiry (less than half its period left): the
    manufacturer role and/or bins, each one version up, same content. When nothing is near expiry,
    everything is re-signed (a renewal is asked for on purpose).

    Returns the bundle and the highest version it signs.

    Raises:
        RejectedInputError: the keys do not meet the delegations' thresholds.
    """
    mfr_name = naming.role_name(manufacturer_id)
    succinct = succinct_of(mfr_role)
    assert succinct is not None
    names = [mfr_name, *succinct.get_roles()]
    margin = now + expiry * DEFAULT_POLICY.refresh_margin_fraction
    present = {n: library.role_metadata[n] for n in names if n in library.role_metadata}
    due = [n for n, md in present.items() if md.signed.expires <= margin] or list(present)
    delegation = _delegation_from_library(library, mfr_name)
    signed_roles: list[tuple[str, Metadata[Targets]]] = []
    for name in due:
        signed = _copy(present[name])
        signed.version += 1
        signed.expires = now + expiry
        delegator = delegation if name == mfr_name else mfr_role.signed
        signed_roles.append((name, _sign(signed, signers, name, delegator)))
    first_name, first = signed_roles[0]
    bundle = Bundle(
        manufacturer_id=manufacturer_id,
        target="",
        declaration=Declaration((), "", ()),
        image=b"",
        role_bytes=first.to_bytes(),
        release_notes=None,
        kind=KIND_RENEWAL,
        role="" if first_name == mfr_name else first_name,
        bins=tuple((name, md.to_bytes()) for name, md in signed_roles[1:]),
    )
    return bundle, max(md.signed.version for _, md in signed_roles)


def _delegation_from_library(library: PublishedLibrary, mfr_name: str) -> Targets:
    """The published top-level targets, which delegates the manufacturer role (keys, threshold).

    Raises:
        RejectedInputError: the library does not delegate the role.
    """
    targets = library.targets_metadata
    if (
        targets is None
        or targets.signed.delegations is None
        or mfr_name not in (targets.signed.delegations.roles or {})
    ):
        raise RejectedInputError(
            f"{mfr_name}: found no delegation in the published targets, expected one to sign under"
        )
    return targets.signed
