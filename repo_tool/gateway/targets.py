"""The gateway's checks of the targets a role version adds: paths inside the delegation, lengths and hashes of the bytes the bundle carries, and the CFL custom metadata each image declares. Shared by deposits and hash bins. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates import SCHEMA_VERSION, naming
from metadata_templates.cpl_document import CplEntry
from metadata_templates.custom import (
    CUSTOM_KEY,
    CflTargetInfo,
    CustomMetadataError,
    parse_timestamp,
    unknown_fields,
)
from metadata_templates.notes import is_notes_target_path
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.gateway.model import (
    CLOCK_SKEW,
    Accepted,
    Code,
    Findings,
    GatewayContext,
    RegisteredManufacturer,
)
from repo_tool.gateway.notes import (
    NotesVerdict,
    check_deposited_notes,
)
from repo_tool.gateway.pilots import check_pilot
from repo_tool.intake.bundle import Bundle
from repo_tool.intake.describe import (
    ImageDigests,
    describe_image,
)
from repo_tool.intake.image import OtaHeader


def check_added_targets(
    bundle: Bundle,
    ctx: GatewayContext,
    manufacturer: RegisteredManufacturer,
    role_name: str,
    role: Metadata[Targets],
    targets: Mapping[str, TargetFile],
    previous: Mapping[str, TargetFile],
    header: OtaHeader | None,
    digests: ImageDigests | None,
    entries: list[CplEntry],
    expected_target: str | None,
    found: Findings,
) -> Accepted | None:
    """What a deposit adds: exactly the image (and its notes), described as the image says, inside
    the manufacturer's prefix. ``targets``/``previous`` are the role's, or the union of the bins a
    deposit re-signs (repo_tool/gateway/bins.py) before and after."""
    pattern = naming.delegation_pattern(manufacturer.id)
    outside = sorted(
        path
        for path in targets
        if (naming.manufacturer_of_target(path) or _notes_owner(path)) != manufacturer.id
    )
    for path in outside:
        found.add(
            Code.OUTSIDE_DELEGATION,
            f"{role_name} target path: found {path!r}, expected a path matching {pattern!r} in the CFL naming "
            "scheme",
        )

    added_all = sorted(set(targets) - set(previous))
    added_notes = {p: targets[p] for p in added_all if is_notes_target_path(p)}
    added = [p for p in added_all if p not in added_notes]
    if len(added) != 1:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{role_name} new targets: found {len(added)} ({added[:5]}), expected exactly 1 (the bundled image)",
        )
        return None
    path = added[0]
    target = targets[path]
    if bundle.target != path:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"cfl-bundle.json target: found {bundle.target!r}, expected {path!r} (the role's new target)",
        )
    if header is None or digests is None or not entries or expected_target is None:
        return None  # the image or declaration failed already; nothing to compare against
    if path != expected_target and path not in outside:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{role_name} target path: found {path!r}, expected {expected_target!r} (derived from the image)",
        )
    if target.length != len(bundle.image) or target.hashes != {"sha256": digests.file_sha256}:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{path} length/hashes: found {target.length} / {target.hashes}, expected {len(bundle.image)} / "
            f"{{'sha256': '{digests.file_sha256}'}} (the bundled image; one hash algorithm)",
        )
    notes = check_deposited_notes(
        plaintext=bundle.release_notes,
        envelope_bytes=bundle.notes_jwe,
        image_target=path,
        added_notes=added_notes,
        device_type=entries[0].device_type,
        registry=ctx.suppliers,
        custodian=ctx.notes_custodian,
    )
    for code, message in notes.findings:
        found.add(Code(code), message)
    info = _check_custom(
        bundle, manufacturer, target, header, digests, entries, ctx.now, found, notes, ctx.suppliers
    )
    if info is None or notes.findings:
        return None
    return Accepted(
        role_name=role_name,
        role=role,
        target=target,
        info=info,
        digests=digests,
        notes_target=notes.target,
    )


def _notes_owner(path: str) -> str | None:
    """The manufacturer a ``*.notes.jwe`` target path belongs to (None for any other path)."""
    return path.split("/", 1)[0] if is_notes_target_path(path) else None


def _check_custom(
    bundle: Bundle,
    manufacturer: RegisteredManufacturer,
    target: TargetFile,
    header: OtaHeader,
    digests: ImageDigests,
    entries: list[CplEntry],
    now: datetime,
    found: Findings,
    notes: NotesVerdict | None = None,
    registry: SupplierRegistry | None = None,
) -> CflTargetInfo | None:
    try:
        signed_info = CflTargetInfo.from_target_custom(target.custom)
    except CustomMetadataError as e:
        found.add(_code_for(e.field), f"{target.path} {e}")
        return None
    unknown = unknown_fields(target.custom[CUSTOM_KEY], signed_info)
    if unknown:
        # Readers ignore fields they do not know (metadata_templates/custom.py); the gateway is
        # where a field is first admitted, so it admits only those it can check.
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{target.path} {', '.join(unknown)}: found field(s) this gateway does not know, "
            f"expected only the fields of custom.cfl schema version {SCHEMA_VERSION}",
        )
    if signed_info.pilot is not None:
        check_pilot(signed_info.pilot, entries[0].device_type, registry, now, found)
    extra = sorted(set(target.custom) - {CUSTOM_KEY})
    if extra:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"{target.path} custom: found extra keys {extra}, expected only 'cfl'",
        )
    published = parse_timestamp(signed_info.published)
    if published > now + CLOCK_SKEW:
        found.add(
            Code.TARGET_METADATA_MISMATCH,
            f"custom.cfl.published: found {signed_info.published}, expected a time not after {now.isoformat()}",
        )
    try:
        expected = describe_image(
            header=header,
            digests=digests,
            entries=entries,
            declaration=bundle.declaration,
            published=signed_info.published,
            # The plaintext's hash comes from the note's authenticated header: the gateway never
            # sees the plaintext (a plaintext member is refused as notes-not-encrypted).
            release_notes_sha256=None if notes is None else notes.plaintext_sha256,
            release_notes=None if notes is None else notes.ref,
            pilot=signed_info.pilot,  # the manufacturer's terms, checked above (check_pilot)
        )
    except CustomMetadataError as e:
        found.add(Code.MISSING_DECLARATION, f"declaration: {e}")
        return None
    # Both were validated on the way in (describe_image, from_target_custom): compare only.
    want, got = expected.to_dict(validate_schema=False), signed_info.to_dict(validate_schema=False)
    skip: set[str] = set()
    if notes is not None and notes.findings:
        skip = {"release_notes", "release_notes_sha256"}  # reported with the notes' own codes
    elif notes is not None and (notes.ref is not None or signed_info.release_notes is not None):
        named = None if signed_info.release_notes is None else signed_info.release_notes.target
        wanted = None if notes.ref is None else notes.ref.target
        if named != wanted:
            skip = {"release_notes"}
            found.add(
                Code.NOTES_TARGET_MISMATCH,
                f"custom.cfl.release_notes.target: found {named!r}, expected {wanted!r} (the notes "
                "target deposited with the image)",
            )
    for key in sorted((set(want) | set(got)) - skip):
        if want.get(key) != got.get(key):
            found.add(
                Code.TARGET_METADATA_MISMATCH,
                f"custom.cfl.{key}: found {got.get(key)!r}, expected {want.get(key)!r} (from the image, CPL and declaration)",
            )
    return signed_info


def _code_for(field: str) -> Code:
    """A signed ``custom.cfl`` the schema refuses: pilot terms get the pilot codes (issue 22)."""
    if field == "custom.cfl.pilot.release_at":
        return Code.RELEASE_DATE_INVALID
    if field.startswith("custom.cfl.pilot.suppliers"):
        return Code.PILOT_SUPPLIER_UNKNOWN
    return Code.TARGET_METADATA_MISMATCH
