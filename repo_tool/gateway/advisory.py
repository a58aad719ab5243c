"""The gateway's checks of a security advisory bundle (``cfl-repo advisory submit``). Pure.

An advisory is one more target of the manufacturer's own role (or of the hash bin its path goes
to), so it is admitted on the same terms as an image: signed by the registered keys, one role
version up, nothing lodged before altered or dropped. On top of that the advisory itself must hold:

- the document is of the advisory format, its score and severity what the vector gives
  (``advisory-malformed``), within the size cap (``advisory-too-large``);
- it is this manufacturer's (its ID, and every affected CPL entry's Manufacturer Identifier:
  ``manufacturer-mismatch``), and each affected entry is on the CPL (``advisory-unknown-entry``);
- each image that fixes it is an image of this manufacturer in the library (``advisory-fix-missing``)
  and reaches at least one affected entry's devices through the applicability rule, directly or
  through intermediate images (MP231 pathways: ``advisory-fix-not-applicable``);
- its revision is exactly one above the library's latest revision of the same ID (the first is 1:
  ``advisory-stale-revision``); earlier revisions stay, as every lodged target does.

``advisory_findings`` is shared with the manufacturer's ``advisory submit``, which refuses there,
with the same words, what the provider would refuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.advisory import (
    MAX_ADVISORY_BYTES,
    Advisory,
    AdvisoryError,
    parse_advisory_target_path,
)
from metadata_templates.applicability import ApplicabilityIndex
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo, CustomMetadataError
from repo_tool.gateway import bins as gateway_bins
from repo_tool.gateway.model import (
    AcceptedAdvisory,
    Code,
    Findings,
    GatewayContext,
    RegisteredManufacturer,
    StagedRole,
    Verdict,
)
from repo_tool.gateway.roles import _check_role_signatures, check_succession, check_validity
from repo_tool.intake.bundle import Bundle

RoleLookup = Callable[[str], Metadata[Targets] | None]


class _Device(NamedTuple):
    """An affected CPL entry seen as the devices that run it (the rule's ``Device``)."""

    device_type: str
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str


def manufacturer_targets(manufacturer_id: str, current_role: RoleLookup) -> dict[str, TargetFile]:
    """Every target of the manufacturer's staged role, or of all its bins when it is split."""
    role = current_role(naming.role_name(manufacturer_id))
    if role is None:
        return {}
    bits = gateway_bins.split_bit_length(role)
    if bits is None:
        return dict(role.signed.targets)
    found: dict[str, TargetFile] = {}
    for name in naming.bin_roles(manufacturer_id, bits):
        md = current_role(name)
        if md is not None:
            found.update(md.signed.targets)
    return found


def latest_revision(advisory_id: str, targets: Iterable[str]) -> int:
    """The highest revision of ``advisory_id`` among target paths (0: none yet)."""
    revisions = [
        parsed[2]
        for parsed in map(parse_advisory_target_path, targets)
        if parsed is not None and parsed[1] == advisory_id
    ]
    return max(revisions, default=0)


def advisory_findings(
    advisory: Advisory,
    manufacturer_id: str,
    cpl: CplDocument | None,
    targets: Mapping[str, TargetFile],
    found: Findings,
) -> None:
    """What the advisory's content owes the library: owner, entries, fixes, revision.

    Args:
        advisory: the checked document.
        manufacturer_id: the submitting (signing) manufacturer.
        cpl: the CPL the provider has staged.
        targets: the manufacturer's targets before this bundle (role, or every bin).
        found: where the findings go.
    """
    if advisory.manufacturer_id != manufacturer_id:
        found.add(
            Code.MANUFACTURER_MISMATCH,
            f"advisory id: found {advisory.id}, expected an ID of the submitting manufacturer "
            f"(CFL-{manufacturer_id}-<YYYY>-<NNNN>)",
        )
    by_id = cpl.by_id() if cpl is not None else {}
    devices: list[_Device] = []
    for entry_id in advisory.affected_cpl_entries:
        entry = by_id.get(entry_id)
        if entry is None:
            found.add(
                Code.ADVISORY_UNKNOWN_ENTRY,
                f"advisory affected_cpl_entries: found {entry_id!r}, expected an entry on the "
                "imported CPL (no such entry)",
            )
            continue
        if entry.manufacturer_id != manufacturer_id:
            found.add(
                Code.MANUFACTURER_MISMATCH,
                f"CPL entry {entry_id} Manufacturer Identifier: found {entry.manufacturer_id}, "
                f"expected {manufacturer_id} (an advisory covers its manufacturer's own firmware)",
            )
            continue
        devices.append(
            _Device(
                entry.device_type,
                entry.manufacturer_id,
                entry.model_id,
                entry.hardware_version,
                entry.firmware_version,
            )
        )
    images = _images(targets)
    for path in advisory.fixed_by:
        if path not in images:
            found.add(
                Code.ADVISORY_FIX_MISSING,
                f"advisory fixed_by: found {path!r}, expected an image target of "
                f"{naming.role_name(manufacturer_id)} in the library (deposit the fix first, or "
                "name it in a later revision)",
            )
    fixes = [path for path in advisory.fixed_by if path in images]
    if fixes and devices:
        reached = _reachable(devices, images, cpl)
        for path in fixes:
            if path not in reached:
                found.add(
                    Code.ADVISORY_FIX_NOT_APPLICABLE,
                    f"advisory fixed_by: found {path!r}, expected an image that applies to the devices "
                    f"of an affected entry {list(advisory.affected_cpl_entries)[:5]} (the CPL's model, "
                    "hardware version and Upgrade From pathways, directly or through other images)",
                )
    latest = latest_revision(advisory.id, targets)
    if advisory.revision != latest + 1:
        found.add(
            Code.ADVISORY_STALE_REVISION,
            f"advisory {advisory.id} revision: found {advisory.revision}, expected {latest + 1} "
            f"(one above the library's latest revision {latest})",
        )


def _images(targets: Mapping[str, TargetFile]) -> dict[str, CflTargetInfo]:
    found: dict[str, CflTargetInfo] = {}
    for path, target in targets.items():
        if not naming.is_image_target_path(path):
            continue
        try:
            found[path] = CflTargetInfo.from_target_custom(target.custom)
        except CustomMetadataError:
            continue  # admitted by an older gateway; never a fix to point at
    return found


def _reachable(
    devices: Iterable[_Device], images: Mapping[str, CflTargetInfo], cpl: CplDocument | None
) -> set[str]:
    """Every image some affected device can reach, hop by hop, under the applicability rule."""
    index: ApplicabilityIndex[CflTargetInfo] = ApplicabilityIndex(cpl)
    index.add_all((path, info, info) for path, info in images.items())
    reached: set[str] = set()
    for start in devices:
        seen = {start.firmware_version}
        frontier = [start]
        while frontier:
            device = frontier.pop()
            for path, info in index.applicable(device).items():
                reached.add(path)
                if info.firmware_version not in seen:
                    seen.add(info.firmware_version)
                    frontier.append(device._replace(firmware_version=info.firmware_version))
    return reached


@dataclass(frozen=True)
class _Roles:
    """The signed role versions an advisory bundle carries, and the targets before and after."""

    staged: tuple[StagedRole, ...]
    before: dict[str, TargetFile]
    after: dict[str, TargetFile]


def check_advisory_bundle(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer | None,
    current_mfr: Metadata[Targets] | None,
    found: Findings,
) -> Verdict:
    """Every check of an ``advisory`` bundle; never raises for bad input."""
    if manufacturer is not None and manufacturer.id in ctx.suspended:
        found.add(
            Code.MANUFACTURER_SUSPENDED,
            f"manufacturer_id: found {manufacturer.id}, suspended by the provider "
            f"({ctx.suspended[manufacturer.id]}); expected a manufacturer in good standing",
        )
    advisory = _document(bundle, found)
    if bundle.advisory_detail is not None:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            "advisory-detail.jwe: found encrypted detail, expected none (this gateway does not "
            "admit encrypted advisory detail yet; publish the detail in a later revision)",
        )
    roles = _signed_roles(bundle, ctx, manufacturer, current_mfr, found)
    if manufacturer is None or roles is None:
        return Verdict(tuple(found.items), bundle.target or None, None)
    before_all = manufacturer_targets(manufacturer.id, ctx.current_role)
    if advisory is not None:
        advisory_findings(advisory, manufacturer.id, ctx.cpl, before_all, found)
    target = _added_target(bundle, advisory, roles, found)
    if found.items or advisory is None or target is None:
        return Verdict(tuple(found.items), bundle.target or None, None)
    return Verdict(
        (),
        target.path,
        None,
        advisory=AcceptedAdvisory(advisory=advisory, target=target, staged=roles.staged),
    )


def _document(bundle: Bundle, found: Findings) -> Advisory | None:
    data = bundle.advisory or b""
    if len(data) > MAX_ADVISORY_BYTES:
        found.add(
            Code.ADVISORY_TOO_LARGE,
            f"advisory.json size: found {len(data)} bytes, expected at most {MAX_ADVISORY_BYTES}",
        )
        return None
    try:
        advisory = Advisory.from_bytes(data, "advisory.json")
    except AdvisoryError as e:
        found.add(Code.ADVISORY_MALFORMED, str(e))
        return None
    if bundle.target != advisory.target_path:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"cfl-bundle.json target: found {bundle.target!r}, expected {advisory.target_path!r} "
            "(the advisory's ID and revision)",
        )
    return advisory


def _signed_roles(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer | None,
    current_mfr: Metadata[Targets] | None,
    found: Findings,
) -> _Roles | None:
    """The role (or bins) the bundle re-signs, checked as a deposit's are."""
    split = gateway_bins.split_bit_length(current_mfr) is not None
    if split and manufacturer is not None and current_mfr is not None:
        bins = gateway_bins.check_bin_signatures(bundle, ctx, current_mfr, found)
        if bins is None:
            return None
        data = dict(bundle.bins) | {bundle.role_name: bundle.role_bytes}
        before: dict[str, TargetFile] = {}
        after: dict[str, TargetFile] = {}
        for name, md in bins.items():
            after.update(md.signed.targets)
            current = ctx.current_role(name)
            if current is not None:
                before.update(current.signed.targets)
        staged = tuple(StagedRole(name, md, data[name]) for name, md in bins.items())
        return _Roles(staged, before, after)
    if bundle.role or bundle.bins:
        found.add(
            Code.WRONG_BIN,
            f"cfl-bundle.json role/bins: found {bundle.role_name} and {len(bundle.bins)} bin(s), "
            f"expected the role {naming.role_name(bundle.manufacturer_id)} alone (the manufacturer "
            "is not split into hash bins)",
        )
        return None
    role = _check_role_signatures(bundle, manufacturer, found)
    if role is None or manufacturer is None:
        return None
    name = naming.role_name(manufacturer.id)
    current = ctx.current_role(name)
    if current is None:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{name}: found no role in the library, expected one to add the advisory to (an "
            "advisory covers firmware already lodged: deposit or enrol first)",
        )
        return None
    check_succession(name, current, role.signed, not_before=ctx.now, why="", found=found)
    check_validity(name, role.signed, ctx, found)
    return _Roles(
        (StagedRole(name, role, bundle.role_bytes),),
        dict(current.signed.targets),
        dict(role.signed.targets),
    )


def _added_target(
    bundle: Bundle, advisory: Advisory | None, roles: _Roles, found: Findings
) -> TargetFile | None:
    """Exactly one new target, the advisory, described by the bundled bytes, inside the prefix."""
    added = sorted(set(roles.after) - set(roles.before))
    prefix = naming.delegation_pattern(bundle.manufacturer_id)
    for path in added:
        parsed = parse_advisory_target_path(path)
        if parsed is None or parsed[0] != bundle.manufacturer_id:
            found.add(
                Code.OUTSIDE_DELEGATION,
                f"{bundle.role_name} target path: found {path!r}, expected an advisory path matching "
                f"{prefix!r} (<MFR>/CFL-<MFR>-<YYYY>-<NNNN>.r<N>.advisory.json)",
            )
    if len(added) != 1:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{bundle.role_name} new targets: found {len(added)} ({added[:5]}), expected exactly 1 "
            "(the bundled advisory)",
        )
        return None
    target = roles.after[added[0]]
    if advisory is None:
        return None
    if target.path != advisory.target_path:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{bundle.role_name} new target: found {target.path!r}, expected "
            f"{advisory.target_path!r} (the advisory's ID and revision)",
        )
    data = bundle.advisory or b""
    sha = hashlib.sha256(data).hexdigest()
    extra = sorted(target.unrecognized_fields)
    if target.length != len(data) or target.hashes != {"sha256": sha} or extra:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{target.path} length/hashes/custom: found {target.length} / {target.hashes} / "
            f"{extra}, expected {len(data)} / {{'sha256': '{sha}'}} / [] (the "
            "bundled advisory.json; no custom)",
        )
    if roles.staged and len(roles.staged) > 1:
        found.add(
            Code.WRONG_BIN,
            f"bundle bins: found {[r.name for r in roles.staged]}, expected only the bin the "
            "advisory's path goes to",
        )
    elif roles.staged and target.path not in roles.staged[0].role.signed.targets:
        found.add(
            Code.WRONG_BIN,
            f"role.json ({roles.staged[0].name}): found no {target.path}, expected the advisory in "
            "the bundle's role",
        )
    return target
