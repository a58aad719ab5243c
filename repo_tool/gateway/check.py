"""The gateway: may this deposit enter the library? A pure function of bytes and state.

``check_bundle(bundle, context)`` returns a verdict with every reason code that applies (one bundle may
carry several) and, for an accepted bundle, the verified role metadata and target to stage. It reads
no files and no clock: the repository passes in the CPL, the registry, the current role and ``now``.

Codes are stable and machine-readable; each finding also carries a sentence naming the field, the
value found and the value expected.
"""

from __future__ import annotations

import logging

from tuf.api.metadata import Metadata, Targets

from metadata_templates import naming
from metadata_templates.cpl_document import CplEntry
from repo_tool.gateway import bins as gateway_bins
from repo_tool.gateway.advisory import check_advisory_bundle
from repo_tool.gateway.model import (
    Accepted,
    Code,
    Finding,
    Findings,
    GatewayContext,
    RegisteredManufacturer,
    Verdict,
)
from repo_tool.gateway.roles import _check_role_signatures, check_succession, check_validity
from repo_tool.gateway.targets import check_added_targets
from repo_tool.intake.bundle import KIND_ADVISORY, KIND_RENEWAL, KIND_SPLIT_BINS, Bundle
from repo_tool.intake.describe import (
    ImageDigests,
    start_digest_image,
    target_path_for,
)
from repo_tool.intake.image import ImageFormatError, OtaHeader, parse_image

logger = logging.getLogger(__name__)


def check_bundle(bundle: Bundle, ctx: GatewayContext) -> Verdict:
    """Run every gateway check on one bundle.

    Never raises for bad input: every problem becomes a finding.
    """
    found = Findings()
    manufacturer = _registered(bundle, ctx, found)
    # Hash bins (repo_tool/gateway/bins.py): a manufacturer split into bins deposits and renews bins;
    # a `split-bins` bundle (re)splits it.
    current_mfr = (
        ctx.current_role(naming.role_name(manufacturer.id)) if manufacturer is not None else None
    )
    if bundle.kind == KIND_SPLIT_BINS:
        return gateway_bins.check_split_bins(bundle, ctx, manufacturer, current_mfr, found)
    if bundle.kind == KIND_ADVISORY:
        return check_advisory_bundle(bundle, ctx, manufacturer, current_mfr, found)
    split = gateway_bins.split_bit_length(current_mfr) is not None
    if bundle.kind == KIND_RENEWAL and split and manufacturer is not None:
        return gateway_bins.check_bin_renewal(bundle, ctx, manufacturer, current_mfr, found)
    if (bundle.role or bundle.bins) and not split:
        found.add(
            Code.WRONG_BIN,
            f"cfl-bundle.json role/bins: found {bundle.role_name} and {len(bundle.bins)} bin(s), "
            f"expected the role {naming.role_name(bundle.manufacturer_id)} alone (the manufacturer "
            "is not split into hash bins)",
        )
        return Verdict(tuple(found.items), None, None)
    if bundle.kind == KIND_RENEWAL:
        return _check_renewal(bundle, ctx, manufacturer, found)
    if manufacturer is not None and manufacturer.id in ctx.suspended:
        # keys branch: a suspension stops new images; a renewal (same images, re-signed, e.g. with
        # rotated keys) stays possible so lodged images remain verifiable.
        found.add(
            Code.MANUFACTURER_SUSPENDED,
            f"manufacturer_id: found {manufacturer.id}, suspended by the provider "
            f"({ctx.suspended[manufacturer.id]}); expected a manufacturer in good standing",
        )
    for problem in bundle.declaration.problems():
        found.add(Code.MISSING_DECLARATION, problem)

    header = _check_image(bundle, ctx, found)
    # Hash in the background while the role's signatures are checked: the two SHA-256 passes over
    # up to 10 MB are the bulk of a deposit's cost.
    wait_digests = start_digest_image(bundle.image, header) if header is not None else None
    if split and manufacturer is not None and current_mfr is not None:
        bins = gateway_bins.check_bin_signatures(bundle, ctx, current_mfr, found)
        role = None
    else:
        bins = None
        role = _check_role_signatures(bundle, manufacturer, found)
    digests = wait_digests() if wait_digests is not None else None
    entries = _check_entries(bundle, ctx, header, digests, found)
    notes: tuple[str, ...] = ()
    if digests is not None:
        notes = _check_duplicates(bundle, ctx, digests, found)

    accepted: Accepted | None = None
    expected_target: str | None = None
    if header is not None and digests is not None and entries:
        expected_target = target_path_for(header, entries[0].device_type, digests.file_sha256)
    if role is not None and manufacturer is not None:
        accepted = _check_role_content(
            bundle, ctx, manufacturer, role, header, digests, entries, expected_target, found
        )
    elif bins is not None and manufacturer is not None:
        accepted = gateway_bins.check_bin_content(
            bundle, ctx, manufacturer, bins, header, digests, entries, expected_target, found
        )
    if found.items:
        return Verdict(tuple(found.items), expected_target or None, None)
    return Verdict((), expected_target or None, accepted, notes=notes)


def _registered(
    bundle: Bundle, ctx: GatewayContext, found: Findings
) -> RegisteredManufacturer | None:
    manufacturer = ctx.manufacturers.get(bundle.manufacturer_id)
    if manufacturer is None:
        found.add(
            Code.UNKNOWN_MANUFACTURER,
            f"manufacturer_id: found {bundle.manufacturer_id!r}, expected one of the registered "
            f"manufacturers {sorted(ctx.manufacturers)}",
        )
    return manufacturer


def _check_renewal(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer | None,
    found: Findings,
) -> Verdict:
    """A renewal re-signs the manufacturer's role one version up with a later expiry and exactly the
    same targets, so a library that grows for decades never strands a manufacturer's images."""
    role = _check_role_signatures(bundle, manufacturer, found)
    if role is None or manufacturer is None:
        return Verdict(tuple(found.items), None, None)
    role_name = naming.role_name(manufacturer.id)
    current = ctx.current_role(role_name)
    if current is None:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{role_name}: found no role in the library, expected one to renew (deposit an image first)",
        )
        return Verdict(tuple(found.items), None, None)
    signed = role.signed
    check_succession(
        role_name,
        current,
        signed,
        not_before=max(ctx.now, current.signed.expires),
        why=" (a renewal must extend the role)",
        found=found,
    )
    check_validity(role_name, signed, ctx, found)
    for path in sorted(set(signed.targets) - set(current.signed.targets)):
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{role_name} target {path}: found it added by a renewal, expected the same targets "
            "(deposit images in deposit bundles)",
        )
    return Verdict(tuple(found.items), None, None, None if found.items else role)


def _check_image(bundle: Bundle, ctx: GatewayContext, found: Findings) -> OtaHeader | None:
    size = len(bundle.image)
    if size > ctx.image_size_cap:
        found.add(
            Code.IMAGE_TOO_LARGE,
            f"image size: found {size} octets, expected at most {ctx.image_size_cap} (the configured cap)",
        )
        return None
    try:
        header = parse_image(bundle.image)
    except ImageFormatError as e:
        found.add(Code.MALFORMED_IMAGE, f"image: {e}")
        return None
    if header.manufacturer_id != bundle.manufacturer_id:
        found.add(
            Code.MANUFACTURER_MISMATCH,
            f"image header manufacturer code: found {header.manufacturer_id}, expected "
            f"{bundle.manufacturer_id} (the submitting manufacturer)",
        )
    return header


def _check_entries(
    bundle: Bundle,
    ctx: GatewayContext,
    header: OtaHeader | None,
    digests: ImageDigests | None,
    found: Findings,
) -> list[CplEntry]:
    """BR03: each declared CPL entry exists, is Active, and matches the image exactly."""
    by_id = ctx.cpl.by_id() if ctx.cpl is not None else {}
    entries: list[CplEntry] = []
    for entry_id in bundle.declaration.cpl_entries:
        entry = by_id.get(entry_id)
        if entry is None:
            found.add(
                Code.CPL_ENTRY_NOT_ACTIVE,
                f"declaration.cpl_entries: found {entry_id!r}, expected an entry on the imported CPL "
                "(no such entry)",
            )
            continue
        entries.append(entry)
        if entry.status != "Active":
            found.add(
                Code.CPL_ENTRY_NOT_ACTIVE,
                f"CPL entry {entry_id} status: found {entry.status!r}, expected 'Active'",
            )
        if header is None or digests is None:
            continue
        if entry.manufacturer_id != header.manufacturer_id:
            found.add(
                Code.MANUFACTURER_MISMATCH,
                f"CPL entry {entry_id} Manufacturer Identifier: found {entry.manufacturer_id}, expected "
                f"{header.manufacturer_id} (the image header's manufacturer code)",
            )
        if entry.manufacturer_image_sha256 != digests.manufacturer_image_sha256:
            found.add(
                Code.HASH_NOT_ON_CPL,
                f"CPL entry {entry_id} Manufacturer Image Hash: found {entry.manufacturer_image_sha256 or '(empty)'}, "
                f"expected {digests.manufacturer_image_sha256} (SHA-256 of this image's Manufacturer Image)",
            )
        if entry.firmware_version != header.firmware_version:
            found.add(
                Code.FIRMWARE_VERSION_MISMATCH,
                f"CPL entry {entry_id} Firmware Version: found {entry.firmware_version}, expected "
                f"{header.firmware_version} (the image header's file version)",
            )
        low, high = header.hardware_version_min, header.hardware_version_max
        hw = int(entry.hardware_version, 16)
        if low is None or high is None:
            found.add(
                Code.HARDWARE_VERSION_OUT_OF_RANGE,
                f"image header hardware versions: found none (field control bit 2 clear), expected a "
                f"range containing CPL entry {entry_id}'s Hardware Version {entry.hardware_version}",
            )
        elif not low <= hw <= high:
            found.add(
                Code.HARDWARE_VERSION_OUT_OF_RANGE,
                f"CPL entry {entry_id} Hardware Version: found {entry.hardware_version}, expected within "
                f"the image's range {header.hardware_version_min_hex}..{header.hardware_version_max_hex}",
            )
    if len({e.device_type for e in entries}) > 1:
        found.add(
            Code.DECLARATION_INCONSISTENT,
            f"declaration.cpl_entries: found device types {sorted({e.device_type for e in entries})}, "
            "expected one device type per image",
        )
    if ctx.cpl is None and bundle.declaration.cpl_entries:
        found.add(
            Code.CPL_ENTRY_NOT_ACTIVE,
            "CPL: found none imported, expected `cfl-repo cpl import` first",
        )
    return entries


def _check_duplicates(
    bundle: Bundle, ctx: GatewayContext, digests: ImageDigests, found: Findings
) -> tuple[str, ...]:
    """The "gateway" option: a duplicate is held back, never added twice.

    A duplicate is the same file bytes, or a declared CPL entry that has an image already. The same
    Manufacturer Image under another OTA header is a different file for other entries (the DCC's
    sample ESME and PPMID images share one): it is accepted, and the returned note says so.
    """
    index = ctx.index
    notes: list[str] = []
    if digests.file_sha256 in index.file_sha256:
        found.add(
            Code.DUPLICATE_IMAGE,
            f"image SHA-256: found {digests.file_sha256}, expected bytes not yet in the library "
            f"(already published as {index.file_sha256[digests.file_sha256]})",
        )
    elif digests.manufacturer_image_sha256 in index.manufacturer_image_sha256:
        notes.append(
            f"Manufacturer Image SHA-256 {digests.manufacturer_image_sha256} is already in the library "
            f"as {index.manufacturer_image_sha256[digests.manufacturer_image_sha256]} under another OTA "
            "header; accepted as a separate file for the declared CPL entries"
        )
    for entry_id in bundle.declaration.cpl_entries:
        if entry_id in index.cpl_entries:
            found.add(
                Code.DUPLICATE_IMAGE,
                f"CPL entry {entry_id}: found an image already ({index.cpl_entries[entry_id]}), expected an "
                "entry with no image yet",
            )
    return tuple(notes)


def _check_role_content(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer,
    role: Metadata[Targets],
    header: OtaHeader | None,
    digests: ImageDigests | None,
    entries: list[CplEntry],
    expected_target: str | None,
    found: Findings,
) -> Accepted | None:
    signed = role.signed
    role_name = naming.role_name(manufacturer.id)
    current = ctx.current_role(role_name)
    check_succession(role_name, current, signed, not_before=ctx.now, why="", found=found)
    check_validity(role_name, signed, ctx, found)
    previous = current.signed.targets if current is not None else {}
    return check_added_targets(
        bundle,
        ctx,
        manufacturer,
        role_name,
        role,
        signed.targets,
        previous,
        header,
        digests,
        entries,
        expected_target,
        found,
    )


def judge(bundle: Bundle, context: GatewayContext) -> Verdict:
    """The gateway's verdict, and a rejection (never a crash of the whole run) should it fail.

    The fuzzer (tests/repo/test_bundle_fuzz.py) finds no input that makes ``check_bundle`` raise;
    this is the last line for one it has not found: that bundle is rejected and kept, and the next
    bundle in the inbox is still checked.
    """
    try:
        return check_bundle(bundle, context)
    except Exception as e:
        # The traceback only with -v: the operator sees the rejection, a developer the details.
        logger.debug("gateway failed on %s", bundle.target or bundle.manufacturer_id, exc_info=True)
        return Verdict(
            (
                Finding(
                    Code.MALFORMED_BUNDLE,
                    f"bundle: found content the gateway could not judge ({type(e).__name__}), "
                    "expected a bundle made by `cfl-repo submit`; kept for the provider to investigate",
                ),
            ),
            None,
            None,
        )
