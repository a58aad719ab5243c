"""The gateway's checks for hash bins (TAP 15) inside a manufacturer's delegation. Pure, like gateway.py.

A manufacturer split into bins keeps its role ``mfr-121D`` (delegated by the provider, its own keys,
``121D/*``), which then holds no targets and one succinct delegation to ``mfr-121D-bin-<hex>``, signed
by the same keys. Three kinds of bundle touch bins:

- a **deposit** re-signs the bin the image's path goes to (and the bin of its notes target, when that
  is another bin): each bin one version up, signed as the succinct delegation lists, every target in
  the bin the rule assigns (``wrong-bin``), and the usual content checks on the union of those bins;
- a **renewal** re-signs some bins and/or the manufacturer role with a later expiry, same content;
- a **split-bins** bundle (migration, or a larger bin count) re-signs the manufacturer role with a
  succinct delegation and no targets, and every bin. It is admitted only when the union of the bins
  is the previous content byte for byte, each target in its assigned bin.

Bin assignment is ``metadata_templates.naming.bin_for_target`` (python-tuf's ``SuccinctRoles``), the
code ngclient walks with, so what the gateway admits is what clients resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tuf.api.metadata import Metadata, SuccinctRoles, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.cpl_document import CplEntry
from repo_tool.gateway.model import (
    Accepted,
    Code,
    Findings,
    GatewayContext,
    RegisteredManufacturer,
    StagedRole,
    Verdict,
)
from repo_tool.gateway.roles import (
    check_signatures,
    check_succession,
    check_validity,
    parse_role,
    registered_delegator,
)
from repo_tool.gateway.targets import check_added_targets
from repo_tool.intake.bundle import BINS_DIR, Bundle
from repo_tool.intake.describe import ImageDigests
from repo_tool.intake.image import OtaHeader


def succinct_of(role: Metadata[Targets] | None) -> SuccinctRoles | None:
    """The succinct delegation of a manufacturer role, or None when it is not split into bins."""
    if role is None or role.signed.delegations is None:
        return None
    return role.signed.delegations.succinct_roles


def split_bit_length(role: Metadata[Targets] | None) -> int | None:
    """How many bits name a bin of this manufacturer role (None: not split)."""
    succinct = succinct_of(role)
    return None if succinct is None else succinct.bit_length


def bin_delegation(
    manufacturer_id: str, keyids: list[str], threshold: int, bit_length: int
) -> SuccinctRoles:
    """The one shape of a manufacturer's succinct delegation: its keys and threshold, its bins."""
    return SuccinctRoles(
        sorted(keyids), threshold, bit_length, naming.bin_name_prefix(manufacturer_id)
    )


def _members(bundle: Bundle) -> list[tuple[str, str, bytes]]:
    """(role name, member name, bytes) of every role a bundle carries, ``role.json`` first."""
    return [(bundle.role_name, "role.json", bundle.role_bytes)] + [
        (name, f"{BINS_DIR}{name}.json", data) for name, data in bundle.bins
    ]


def _bin_signed(
    name: str,
    member: str,
    data: bytes,
    delegator: Metadata[Targets],
    found: Findings,
) -> Metadata[Targets] | None:
    """One bin member, parsed and checked against the manufacturer role that delegates it."""
    md = parse_role(data, member, found)
    if md is None:
        return None
    succinct = succinct_of(delegator)
    assert succinct is not None  # callers pass a split manufacturer role
    if not succinct.is_delegated_role(name):
        found.add(
            Code.WRONG_BIN,
            f"{member} role: found {name!r}, expected one of the bins the manufacturer role delegates "
            f"({succinct.name_prefix}-<{len(f'{succinct.number_of_bins - 1:x}')} hex digits> below "
            f"{succinct.number_of_bins})",
        )
        return None
    keys = delegator.signed.delegations.keys if delegator.signed.delegations else {}
    check_signatures(
        md, name, delegator.signed, keys, "the keys of the succinct delegation", member, found
    )
    _check_assigned(name, md.signed.targets, succinct, found)
    return md


def _check_assigned(
    name: str, targets: Mapping[str, TargetFile], succinct: SuccinctRoles, found: Findings
) -> None:
    for path in sorted(targets):
        due = succinct.get_role_for_target(path)
        if due != name:
            found.add(
                Code.WRONG_BIN,
                f"{name} target {path}: found it in bin {name}, expected bin {due} (the first "
                f"{succinct.bit_length} bits of SHA-256 of the path)",
            )


def check_bin_signatures(
    bundle: Bundle, ctx: GatewayContext, current_mfr: Metadata[Targets], found: Findings
) -> dict[str, Metadata[Targets]] | None:
    """Every bin a deposit carries, parsed, signed as delegated, one version up, within the policy's
    validity, each target in its bin. None when a member is not signed metadata at all.
    """
    if not bundle.role:
        found.add(
            Code.WRONG_BIN,
            f"cfl-bundle.json role: found {bundle.role_name}, expected the bin of the image "
            f"({naming.bin_name_prefix(bundle.manufacturer_id)}-<hex>): this manufacturer is split into "
            "hash bins (rebuild the bundle with the current `cfl-repo submit`)",
        )
        return None
    bins: dict[str, Metadata[Targets]] = {}
    for name, member, data in _members(bundle):
        if name in bins:
            found.add(
                Code.MALFORMED_BUNDLE, f"{member}: found {name} twice, expected each bin once"
            )
            return None
        md = _bin_signed(name, member, data, current_mfr, found)
        if md is None:
            return None
        check_succession(
            name, ctx.current_role(name), md.signed, not_before=ctx.now, why="", found=found
        )
        check_validity(name, md.signed, ctx, found)
        bins[name] = md
    return bins


def check_bin_content(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer,
    bins: Mapping[str, Metadata[Targets]],
    header: OtaHeader | None,
    digests: ImageDigests | None,
    entries: list[CplEntry],
    expected_target: str | None,
    found: Findings,
) -> Accepted | None:
    """The deposit's content checks (gateway.check_added_targets) on the union of its bins."""
    after: dict[str, TargetFile] = {}
    before: dict[str, TargetFile] = {}
    for name, md in bins.items():
        after.update(md.signed.targets)
        current = ctx.current_role(name)
        if current is not None:
            before.update(current.signed.targets)
    main = bins[bundle.role_name]
    accepted = check_added_targets(
        bundle,
        ctx,
        manufacturer,
        bundle.role_name,
        main,
        after,
        before,
        header,
        digests,
        entries,
        expected_target,
        found,
    )
    if accepted is None:
        return None
    if accepted.target.path not in main.signed.targets:
        found.add(
            Code.WRONG_BIN,
            f"role.json ({bundle.role_name}): found no {accepted.target.path}, expected the image in the "
            "bundle's main bin (cfl-bundle.json role)",
        )
        return None
    return replace(
        accepted,
        bins=tuple(StagedRole(name, md, _data(bundle, name)) for name, md in bins.items()),
    )


def check_bin_renewal(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer,
    current_mfr: Metadata[Targets] | None,
    found: Findings,
) -> Verdict:
    """A renewal of a split manufacturer: the manufacturer role and/or some bins, each one version up
    with a later expiry and exactly the content it had (the same targets, the same delegation)."""
    assert current_mfr is not None
    staged: list[StagedRole] = []
    mfr_name = naming.role_name(manufacturer.id)
    seen: set[str] = set()
    for name, member, data in _members(bundle):
        if name in seen:
            found.add(
                Code.MALFORMED_BUNDLE, f"{member}: found {name} twice, expected each role once"
            )
            continue
        seen.add(name)
        if name == mfr_name:
            md = parse_role(data, member, found)
            if md is None:
                continue
            check_signatures(
                md,
                name,
                registered_delegator(manufacturer),
                manufacturer.keys,
                f"{manufacturer.id}'s keys",
                member,
                found,
            )
            _check_same_delegation(name, current_mfr, md, found)
            current: Metadata[Targets] | None = current_mfr
        else:
            md = _bin_signed(name, member, data, current_mfr, found)
            if md is None:
                continue
            current = ctx.current_role(name)
            check_succession(
                name,
                current,
                md.signed,
                not_before=max(ctx.now, current.signed.expires) if current else ctx.now,
                why=" (a renewal must extend the role)",
                found=found,
            )
            if current is not None:
                for path in sorted(set(md.signed.targets) - set(current.signed.targets)):
                    found.add(
                        Code.TARGET_METADATA_MISMATCH,
                        f"{name} target {path}: found it added by a renewal, expected the same targets "
                        "(deposit images in deposit bundles)",
                    )
        check_validity(name, md.signed, ctx, found)
        staged.append(StagedRole(name, md, data))
    if found.items:
        return Verdict(tuple(found.items), None, None)
    return Verdict((), None, None, staged=tuple(staged))


def _check_same_delegation(
    name: str, current: Metadata[Targets], md: Metadata[Targets], found: Findings
) -> None:
    """A re-signed split manufacturer role: one version up, later expiry, no targets, and the very
    delegation it had (changing the bins is a `split-bins` bundle)."""
    signed, old = md.signed, current.signed
    if signed.version != old.version + 1:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{name} version: found {signed.version}, expected {old.version + 1} (one above the "
            f"library's version {old.version}; rebuild the bundle from the latest published library)",
        )
    if signed.expires <= old.expires:
        found.add(
            Code.ROLE_EXPIRED,
            f"{name} expires: found {signed.expires.isoformat()}, expected a time after "
            f"{old.expires.isoformat()} (a renewal must extend the role)",
        )
    if signed.targets:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{name} targets: found {len(signed.targets)}, expected none (images live in the bins)",
        )
    before = old.delegations.to_dict() if old.delegations else None
    after = signed.delegations.to_dict() if signed.delegations else None
    if before != after:
        found.add(
            Code.WRONG_BIN,
            f"{name} delegations: found {after}, expected them unchanged ({before}); changing the bins "
            "is a split-bins bundle",
        )


def check_split_bins(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer | None,
    current_mfr: Metadata[Targets] | None,
    found: Findings,
) -> Verdict:
    """A migration into bins, or to a larger bin count: the manufacturer role's next version holds
    only the succinct delegation (the registered keys and threshold, at least one bit more than
    today), every bin is carried, and the union of the bins is the previous content exactly."""
    if manufacturer is None:
        return Verdict(tuple(found.items), None, None)
    mfr_name = naming.role_name(manufacturer.id)
    if current_mfr is None:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{mfr_name}: found no role in the library, expected one to split (deposit an image first)",
        )
        return Verdict(tuple(found.items), None, None)
    if bundle.role:
        found.add(
            Code.WRONG_BIN,
            f"cfl-bundle.json role: found {bundle.role}, expected none (role.json is {mfr_name})",
        )
        return Verdict(tuple(found.items), None, None)
    md = parse_role(bundle.role_bytes, "role.json", found)
    if md is None:
        return Verdict(tuple(found.items), None, None)
    check_signatures(
        md,
        mfr_name,
        registered_delegator(manufacturer),
        manufacturer.keys,
        f"{manufacturer.id}'s keys",
        "role.json",
        found,
    )
    signed = md.signed
    old = current_mfr.signed
    if signed.version != old.version + 1:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{mfr_name} version: found {signed.version}, expected {old.version + 1} (one above the "
            f"library's version {old.version})",
        )
    check_validity(mfr_name, signed, ctx, found)
    if signed.targets:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{mfr_name} targets: found {len(signed.targets)}, expected none (images move into the bins)",
        )
    succinct = succinct_of(md)
    old_bits = split_bit_length(current_mfr) or 0
    delegations = signed.delegations
    if succinct is None or delegations is None:
        found.add(
            Code.WRONG_BIN,
            f"{mfr_name} delegations: found {None if delegations is None else delegations.to_dict()}, "
            "expected one succinct delegation to its bins",
        )
        return Verdict(tuple(found.items), None, None)
    want = bin_delegation(
        manufacturer.id, list(manufacturer.keys), manufacturer.threshold, succinct.bit_length
    )
    if succinct != want or dict(delegations.keys) != dict(manufacturer.keys):
        found.add(
            Code.WRONG_BIN,
            f"{mfr_name} succinct delegation: found {succinct.to_dict()} with keys "
            f"{sorted(k[:8] for k in delegations.keys)}, expected {want.to_dict()} with the registered "
            f"keys {sorted(k[:8] for k in manufacturer.keys)}",
        )
    if not old_bits < succinct.bit_length <= naming.MAX_BIN_BIT_LENGTH:
        found.add(
            Code.WRONG_BIN,
            f"{mfr_name} bit_length: found {succinct.bit_length}, expected more than today's {old_bits} "
            f"and at most {naming.MAX_BIN_BIT_LENGTH}",
        )
    if found.items:
        return Verdict(tuple(found.items), None, None)
    # The previous content: the role's own targets, or the union of today's bins.
    previous: dict[str, TargetFile] = dict(old.targets)
    if old_bits:
        for name in naming.bin_roles(manufacturer.id, old_bits):
            current_bin = ctx.current_role(name)
            if current_bin is not None:
                previous.update(current_bin.signed.targets)
    carried = dict(bundle.bins)
    due = naming.bin_roles(manufacturer.id, succinct.bit_length)
    missing = [name for name in due if name not in carried]
    if missing:
        found.add(
            Code.WRONG_BIN,
            f"bins: found {len(carried)} of {len(due)}, expected every bin (missing {missing[:5]}); a "
            "bin the delegation lists must have metadata or clients cannot walk it",
        )
    staged = [StagedRole(mfr_name, md, bundle.role_bytes)]
    union: dict[str, TargetFile] = {}
    for name, data in sorted(carried.items()):
        member = f"{BINS_DIR}{name}.json"
        bin_md = _bin_signed(name, member, data, md, found)
        if bin_md is None:
            continue
        current_bin = ctx.current_role(name)
        expected_version = 1 if current_bin is None else current_bin.signed.version + 1
        if bin_md.signed.version != expected_version:
            found.add(
                Code.STALE_ROLE_VERSION,
                f"{name} version: found {bin_md.signed.version}, expected {expected_version}",
            )
        if bin_md.signed.delegations is not None:
            found.add(
                Code.OUTSIDE_DELEGATION,
                f"{name} delegations: found some, expected none (a bin may not delegate)",
            )
        check_validity(name, bin_md.signed, ctx, found)
        union.update(bin_md.signed.targets)
        staged.append(StagedRole(name, bin_md, data))
    for path, target in sorted(previous.items()):
        moved = union.get(path)
        if moved is None:
            found.add(
                Code.ROLE_CONTENT_ALTERED,
                f"bins target {path}: found it in no bin, expected every lodged target kept "
                "(withdrawal is the provider's recorded event)",
            )
        elif moved.to_dict() != target.to_dict():
            found.add(
                Code.ROLE_CONTENT_ALTERED,
                f"bins target {path}: found {moved.to_dict()}, expected it exactly as lodged "
                f"({target.to_dict()})",
            )
    for path in sorted(set(union) - set(previous)):
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"bins target {path}: found it added by a split, expected only the lodged targets "
            "(deposit images in deposit bundles)",
        )
    if found.items:
        return Verdict(tuple(found.items), None, None)
    return Verdict((), None, None, staged=tuple(staged))


def _data(bundle: Bundle, name: str) -> bytes:
    for role, _, data in _members(bundle):
        if role == name:
            return data
    raise KeyError(name)
