"""The gateway: may this deposit enter the library? A pure function of bytes and state.

``check_bundle(bundle, context)`` returns a verdict with every reason code that applies (one bundle may
carry several) and, for an accepted bundle, the verified role metadata and target to stage. It reads
no files and no clock: the repository passes in the CPL, the registry, the current role and ``now``.

Codes are stable and machine-readable; each finding also carries a sentence naming the field, the
value found and the value expected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from securesystemslib.signer import Key
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets
from tuf.api.serialization import SerializationError

from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import (
    CUSTOM_KEY,
    CflTargetInfo,
    CustomMetadataError,
    parse_timestamp,
)
from metadata_templates.notes import CustodianDocument, is_notes_target_path
from metadata_templates.policy import DEFAULT_POLICY
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.gateway.notes import (
    NOTES_NOT_ENCRYPTED,
    NOTES_RECIPIENTS_MISMATCH,
    NOTES_TARGET_MISMATCH,
    NotesVerdict,
    check_deposited_notes,
)
from repo_tool.intake.bundle import KIND_RENEWAL, KIND_SPLIT_BINS, Bundle
from repo_tool.intake.describe import (
    ImageDigests,
    describe_image,
    start_digest_image,
    target_path_for,
)
from repo_tool.intake.image import ImageFormatError, OtaHeader, parse_image

DEFAULT_IMAGE_SIZE_CAP = 10_240_000  # octets: the DUIS limit for one image
CLOCK_SKEW = timedelta(hours=1)


class Code(StrEnum):
    """Gateway rejection codes (ARCHITECTURE.md), plus the few this implementation found it needed."""

    MALFORMED_IMAGE = "malformed-image"
    IMAGE_TOO_LARGE = "image-too-large"
    HASH_NOT_ON_CPL = "hash-not-on-cpl"
    MANUFACTURER_MISMATCH = "manufacturer-mismatch"
    FIRMWARE_VERSION_MISMATCH = "firmware-version-mismatch"
    HARDWARE_VERSION_OUT_OF_RANGE = "hardware-version-out-of-range"
    CPL_ENTRY_NOT_ACTIVE = "cpl-entry-not-active"
    DUPLICATE_IMAGE = "duplicate-image"
    BAD_SIGNATURE = "bad-signature"
    THRESHOLD_NOT_MET = "threshold-not-met"
    OUTSIDE_DELEGATION = "outside-delegation"
    STALE_ROLE_VERSION = "stale-role-version"
    UNKNOWN_MANUFACTURER = "unknown-manufacturer"
    MISSING_DECLARATION = "missing-declaration"
    # Additions: a bundle that is not a bundle; signed metadata that does not describe the image it
    # carries; a role that edits or drops what was lodged before; declared entries for different kinds
    # of device; role metadata already expired.
    MALFORMED_BUNDLE = "malformed-bundle"
    TARGET_METADATA_MISMATCH = "target-metadata-mismatch"
    ROLE_CONTENT_ALTERED = "role-content-altered"
    DECLARATION_INCONSISTENT = "declaration-inconsistent"
    ROLE_EXPIRED = "role-expired"
    ROLE_EXPIRY_TOO_FAR = "role-expiry-too-far"
    # Encrypted release notes (metadata_templates/notes.py, repo_tool/gateway/notes.py).
    NOTES_NOT_ENCRYPTED = NOTES_NOT_ENCRYPTED
    NOTES_RECIPIENTS_MISMATCH = NOTES_RECIPIENTS_MISMATCH
    NOTES_TARGET_MISMATCH = NOTES_TARGET_MISMATCH
    # keys branch: the provider suspended the manufacturer (`cfl-repo manufacturer suspend`).
    MANUFACTURER_SUSPENDED = "manufacturer-suspended"
    # Hash bins (repo_tool/gateway/bins.py): a target in a bin the succinct rule does not assign it
    # to, a bin the manufacturer's succinct delegation does not list, or a bin where a role is due.
    WRONG_BIN = "wrong-bin"
    # Issue 13: a first deposit while the targets key is offline; the delegation comes with the
    # manufacturer's enrolment (`cfl-repo manufacturer enrol`), never with a deposit.
    NOT_ENROLLED = "manufacturer-not-enrolled"


@dataclass(frozen=True)
class Finding:
    """One reason a bundle is rejected."""

    code: Code
    message: str


@dataclass(frozen=True)
class RegisteredManufacturer:
    """A manufacturer the provider has registered: its keys and threshold."""

    id: str
    name: str
    keys: Mapping[str, Key]
    threshold: int


@dataclass(frozen=True)
class LibraryIndex:
    """What the library holds already, for the duplicate check."""

    file_sha256: Mapping[str, str] = field(default_factory=dict)  # -> target
    manufacturer_image_sha256: Mapping[str, str] = field(default_factory=dict)  # -> target
    cpl_entries: Mapping[str, str] = field(default_factory=dict)  # CPL Entry ID -> target


@dataclass(frozen=True)
class GatewayContext:
    """Everything the gateway compares a bundle against."""

    cpl: CplDocument | None
    manufacturers: Mapping[str, RegisteredManufacturer]
    current_role: Callable[
        [str], Metadata[Targets] | None
    ]  # role name -> staged role, None if none yet
    index: LibraryIndex
    now: datetime
    image_size_cap: int = DEFAULT_IMAGE_SIZE_CAP
    # (least, most) remaining validity of an admitted manufacturer role: the policy's values.
    role_validity: tuple[timedelta, timedelta] = DEFAULT_POLICY.manufacturer_validity()
    # The published registry and custodian key: who a deposit's release notes must be encrypted to.
    suppliers: SupplierRegistry | None = None
    notes_custodian: CustodianDocument | None = None
    suspended: Mapping[str, str] = field(default_factory=dict)  # manufacturer ID -> reason


@dataclass(frozen=True)
class StagedRole:
    """One signed role version an accepted bundle stages, with its bytes exactly as signed."""

    name: str
    role: Metadata[Targets]
    data: bytes


@dataclass(frozen=True)
class Accepted:
    """What an accepted bundle adds to the library."""

    role_name: str
    role: Metadata[Targets]
    target: TargetFile
    info: CflTargetInfo
    digests: ImageDigests
    notes_target: TargetFile | None = None  # the image's encrypted release notes, when deposited
    # Hash bins: every bin the deposit re-signs (the image's and its notes'), staged together.
    bins: tuple[StagedRole, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The gateway's answer for one bundle."""

    findings: tuple[Finding, ...]
    target: str | None
    accepted: Accepted | None
    renewal: Metadata[Targets] | None = None  # an accepted renewal: the re-signed role
    # What the operator should know about an accepted bundle (not reasons to reject it).
    notes: tuple[str, ...] = ()
    # Hash bins: an accepted renewal of a split manufacturer or a `split-bins` bundle stages these
    # (the manufacturer role first when it is re-signed).
    staged: tuple[StagedRole, ...] = ()

    @property
    def ok(self) -> bool:
        return self.accepted is not None or self.renewal is not None or bool(self.staged)

    @property
    def codes(self) -> list[str]:
        return sorted({f.code.value for f in self.findings})


class Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, code: Code, message: str) -> None:
        self.items.append(Finding(code, message))

    def has(self, *codes: Code) -> bool:
        return any(f.code in codes for f in self.items)


def check_bundle(bundle: Bundle, ctx: GatewayContext) -> Verdict:
    """Run every gateway check on one bundle.

    Never raises for bad input: every problem becomes a finding.
    """
    found = Findings()
    manufacturer = _registered(bundle, ctx, found)
    # Hash bins (repo_tool/gateway/bins.py): a manufacturer split into bins deposits and renews bins;
    # a `split-bins` bundle (re)splits it. Imported here: gateway_bins builds on this module's checks.
    from repo_tool.gateway import bins as gateway_bins

    current_mfr = (
        ctx.current_role(naming.role_name(manufacturer.id)) if manufacturer is not None else None
    )
    if bundle.kind == KIND_SPLIT_BINS:
        return gateway_bins.check_split_bins(bundle, ctx, manufacturer, current_mfr, found)
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


def check_validity(role_name: str, signed: Targets, ctx: GatewayContext, found: Findings) -> None:
    """The policy's window for a role's remaining validity: long enough that one manufacturer's
    lapse cannot strand its images days after a deposit, short enough to be renewed with its keys."""
    least, most = ctx.role_validity
    remaining = signed.expires - ctx.now
    if timedelta(0) < remaining < least:
        found.add(
            Code.ROLE_EXPIRED,
            f"{role_name} expires: found {signed.expires.isoformat()} ({_days(remaining)} from now), "
            f"expected at least {_days(least)} from now (policy manufacturer_min_validity_days)",
        )
    elif remaining > most:
        found.add(
            Code.ROLE_EXPIRY_TOO_FAR,
            f"{role_name} expires: found {signed.expires.isoformat()} ({_days(remaining)} from now), "
            f"expected at most {_days(most)} from now (policy manufacturer_max_validity_days)",
        )


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:.1f} days"


def check_succession(
    role_name: str,
    current: Metadata[Targets] | None,
    signed: Targets,
    *,
    not_before: datetime,
    why: str,
    found: Findings,
) -> None:
    """What every new version of a manufacturer role owes the one before it, deposit or renewal:
    exactly one version up, not expired (not before ``not_before``), no further delegation, and
    every lodged target kept exactly as it was."""
    current_version = current.signed.version if current is not None else 0
    if signed.version != current_version + 1:
        found.add(
            Code.STALE_ROLE_VERSION,
            f"{role_name} version: found {signed.version}, expected {current_version + 1} (one above the "
            f"library's version {current_version}; rebuild the bundle from the latest published library)",
        )
    if signed.expires <= not_before:
        found.add(
            Code.ROLE_EXPIRED,
            f"{role_name} expires: found {signed.expires.isoformat()}, expected a time after "
            f"{not_before.isoformat()}{why}",
        )
    if signed.delegations is not None:
        found.add(
            Code.OUTSIDE_DELEGATION,
            f"{role_name} delegations: found {sorted((signed.delegations.roles or {}).keys())}, expected none "
            "(a manufacturer role may not delegate)",
        )
    previous = current.signed.targets if current is not None else {}
    for path, old in sorted(previous.items()):
        new = signed.targets.get(path)
        if new is None:
            found.add(
                Code.ROLE_CONTENT_ALTERED,
                f"{role_name} target {path}: found it removed, expected every lodged target kept (withdrawal "
                "is the provider's recorded event)",
            )
        elif new != old:
            found.add(
                Code.ROLE_CONTENT_ALTERED,
                f"{role_name} target {path}: found {_first_difference(old.to_dict(), new.to_dict())}, "
                "expected it exactly as lodged",
            )


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


def manufacturer_delegation(
    manufacturer_id: str, keyids: list[str], threshold: int
) -> DelegatedRole:
    """The one shape of a manufacturer's delegation: its keys and threshold, its single path prefix,
    terminating (so no other role is consulted for its paths). The gateway verifies with it and the
    repository publishes it, so the two cannot drift apart."""
    return DelegatedRole(
        name=naming.role_name(manufacturer_id),
        keyids=sorted(keyids),
        threshold=threshold,
        terminating=True,
        paths=[naming.delegation_pattern(manufacturer_id)],
    )


def registered_delegator(manufacturer: RegisteredManufacturer) -> Targets:
    """A throw-away delegator holding only the registered keys, so python-tuf does the verifying."""
    role = manufacturer_delegation(manufacturer.id, list(manufacturer.keys), manufacturer.threshold)
    return Targets(delegations=Delegations(keys=dict(manufacturer.keys), roles={role.name: role}))


def _check_role_signatures(
    bundle: Bundle, manufacturer: RegisteredManufacturer | None, found: Findings
) -> Metadata[Targets] | None:
    role = parse_role(bundle.role_bytes, "role.json", found)
    if role is None:
        return None
    if manufacturer is None:
        return role
    delegator = registered_delegator(manufacturer)
    check_signatures(
        role,
        naming.role_name(manufacturer.id),
        delegator,
        manufacturer.keys,
        f"{manufacturer.id}'s keys",
        "role.json",
        found,
    )
    return role


def parse_role(data: bytes, member: str, found: Findings) -> Metadata[Targets] | None:
    """One bundle member as signed targets metadata, or None with a ``malformed-bundle`` finding."""
    try:
        role = Metadata[Targets].from_bytes(data)
    except Exception as e:  # python-tuf raises DeserializationError and ValueError subclasses
        found.add(
            Code.MALFORMED_BUNDLE, f"{member}: found no valid TUF targets metadata ({_short(e)})"
        )
        return None
    if not isinstance(role.signed, Targets):
        found.add(
            Code.MALFORMED_BUNDLE, f"{member} type: found {role.signed.type!r}, expected 'targets'"
        )
        return None
    odd = [
        (keyid, sig.signature)
        for keyid, sig in role.signatures.items()
        if not isinstance(keyid, str) or not isinstance(sig.signature, str)
    ]
    if odd:
        found.add(
            Code.MALFORMED_BUNDLE,
            f"{member} signatures: found keyid/sig {_short(odd[0])}, expected hex strings",
        )
        return None
    try:
        # Signatures cover the canonical JSON form, which has no floats and no duplicate keys: a
        # role that cannot be canonicalised cannot have been signed as it stands.
        role.signed_bytes  # noqa: B018 (computed for its error; verification recomputes it)
    except SerializationError as e:
        found.add(
            Code.MALFORMED_BUNDLE,
            f"{member} signed: found a value canonical JSON cannot encode ({_short(e.__cause__ or e)}), "
            "expected only strings, integers, booleans, null, lists and objects",
        )
        return None
    return role


def check_signatures(
    role: Metadata[Targets],
    role_name: str,
    delegator: Targets,
    keys: Mapping[str, Key],
    whose: str,
    member: str,
    found: Findings,
) -> None:
    """python-tuf's verification of ``role`` as ``role_name`` delegated by ``delegator``, turned into
    ``bad-signature`` (a listed key's signature fails) or ``threshold-not-met`` findings."""
    result = delegator.get_verification_result(role_name, role.signed_bytes, role.signatures)
    bad = sorted(k[:8] for k in role.signatures if k in keys and k not in result.signed)
    if bad:
        found.add(
            Code.BAD_SIGNATURE,
            f"{member} signatures: found invalid signature(s) by registered key(s) {bad}, expected valid "
            f"signatures over the role by {whose}",
        )
    elif not result.verified:
        strangers = sorted(k[:8] for k in role.signatures if k not in keys)
        found.add(
            Code.THRESHOLD_NOT_MET,
            f"{member} signatures: found {len(result.signed)} valid by registered keys"
            + (f" (and {len(strangers)} by unregistered keys {strangers})" if strangers else "")
            + f", expected at least {result.threshold}",
        )


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
        bundle, manufacturer, target, header, digests, entries, ctx.now, found, notes
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
) -> CflTargetInfo | None:
    try:
        signed_info = CflTargetInfo.from_target_custom(target.custom)
    except CustomMetadataError as e:
        found.add(Code.TARGET_METADATA_MISMATCH, f"{target.path} {e}")
        return None
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


def verify_role_against(delegator: Targets, role_name: str, role: Metadata[Targets]) -> None:
    """Re-verify a role with its real delegator before anything is written (verify before you write).

    Raises:
        RepositoryError: the threshold is not met.
    """
    try:
        delegator.verify_delegate(role_name, role.signed_bytes, role.signatures)
    except Exception as e:
        raise RepositoryError(f"{role_name}: {e}") from e


def _first_difference(before: dict[str, object], after: dict[str, object], where: str = "") -> str:
    """Name the first field that differs between two JSON-like dicts, with both values."""
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            return _first_difference(old, new, f"{where}{key}.")
        return f"{where}{key} changed from {old!r} to {new!r}"
    return "no difference"


def _short(value: object, limit: int = 200) -> str:
    """A value for a message, cut short: hostile input must not make a megabyte report line."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
