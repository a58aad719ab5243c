"""The submission bundle: one file a manufacturer hands to the provider.

A ZIP archive (stored, not compressed: firmware is compressed already and stored entries keep ingest
hash-bound) with exactly these members:

- ``cfl-bundle.json``: manifest with the declaration (CPL entries, reason, advisories) and the target path
- ``image.ota``: the image as deposited (no supplier trailer)
- ``role.json``: the manufacturer's signed role metadata, one version above the published one
- ``release-notes.jwe``: optional; the release notes encrypted on the manufacturer's machine to the
  entitled suppliers and the provider's notes custodian (metadata_templates/notes.py), published as
  the role's notes target
- ``release-notes.txt``: the old plaintext member; still parsed only so the gateway can reject it by
  name (``notes-not-encrypted``) instead of as an unknown member
- ``bins/<bin role>.json``: hash bins (TAP 15). A manufacturer split into bins deposits into bins:
  ``role.json`` is then the bin the image goes to (the manifest's ``role`` names it) and a second bin
  here when the image's notes target hashes to another bin. A ``split-bins`` bundle carries the
  manufacturer role's next version (succinct delegation, no targets) in ``role.json`` and every bin
  here, version 1 (or one above, when the bin count grows).
- ``advisory.json``: an ``advisory`` bundle (``cfl-repo advisory submit``) carries one revision of a
  security advisory (metadata_templates/advisory.py), exactly as the role's new advisory target,
  and ``role.json`` (or, for a split manufacturer, the bin the advisory's path goes to); no image.
  ``advisory-detail.jwe``, optional: its technical detail encrypted like release notes.

Reading is strict because a bundle is attacker-controlled: unknown or duplicate members, paths, size
limits, compression other than stored or deflate, a compressed member that inflates past its limit,
and malformed JSON are all rejected.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metadata_templates import SCHEMA_VERSION, naming
from metadata_templates.advisory import MAX_ADVISORY_BYTES
from metadata_templates.atomic import atomic_writer
from metadata_templates.custom import REASONS
from metadata_templates.errors import RejectedInputError
from metadata_templates.notes import MAX_ENVELOPE_BYTES
from repo_tool.output_paths import prepare_file

MANIFEST = "cfl-bundle.json"
IMAGE = "image.ota"
ROLE = "role.json"
RELEASE_NOTES = "release-notes.txt"
RELEASE_NOTES_JWE = "release-notes.jwe"
ADVISORY = "advisory.json"
ADVISORY_DETAIL = "advisory-detail.jwe"
BUNDLE_SUFFIX = ".cflb"

# Generous ceilings so a hostile archive cannot exhaust memory; the gateway applies the real image cap.
MEMBER_LIMITS = {
    MANIFEST: 1_000_000,
    IMAGE: 64 * 1024 * 1024,
    ROLE: 64 * 1024 * 1024,
    RELEASE_NOTES: 5_000_000,
    RELEASE_NOTES_JWE: MAX_ENVELOPE_BYTES,
    ADVISORY: 4 * MAX_ADVISORY_BYTES,  # the gateway applies the real cap (advisory-too-large)
    ADVISORY_DETAIL: MAX_ENVELOPE_BYTES,
}
# The role is parsed as JSON and canonicalised for its signatures, which costs far more than its
# size (a 64 MiB role took 29 s and 3.3 GB): it is refused above this cap before any JSON work.
# Roughly 600 images' worth of targets; the operator raises it in cfl-repo.json (`role_size_cap`).
DEFAULT_ROLE_SIZE_CAP = 1024 * 1024
# Everything the standard library's zipfile, zlib and json may raise on hostile bytes. A bundle is
# attacker-controlled, so each of these is a malformed bundle, never a crash of the ingest run.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    OSError,
    EOFError,
    ValueError,  # includes json.JSONDecodeError, UnicodeDecodeError, int digit limits
    OverflowError,
    NotImplementedError,
    RuntimeError,  # includes RecursionError (deeply nested JSON), encrypted members
    KeyError,
    IndexError,
)
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# APPNOTE 4.4.5 names of the methods a refused member may use, for the rejection line.
_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    12: "bzip2",
    14: "lzma",
    93: "zstd",
    95: "xz",
    98: "ppmd",
}
BINS_DIR = "bins/"
# 2**16 bins at most (metadata_templates/naming.py MAX_BIN_BIT_LENGTH).
MAX_BIN_MEMBERS = 1 << 16
REQUIRED = (MANIFEST, IMAGE, ROLE)
# A renewal re-signs the role with a later expiry and the same targets: no image, no declaration.
KIND_DEPOSIT = "deposit"
KIND_RENEWAL = "renewal"
# Hash bins: the manufacturer role re-signed with a succinct delegation and every bin (migration, or
# a larger bin count); recorded by the provider as a `manufacturer-bins` event.
KIND_SPLIT_BINS = "split-bins"
# A security advisory revision signed under the manufacturer's delegation (no image).
KIND_ADVISORY = "advisory"
REQUIRED_FOR_KIND = {
    KIND_DEPOSIT: REQUIRED,
    KIND_RENEWAL: (MANIFEST, ROLE),
    KIND_SPLIT_BINS: (MANIFEST, ROLE),
    KIND_ADVISORY: (MANIFEST, ROLE, ADVISORY),
}
OPTIONAL_FOR_KIND = {KIND_ADVISORY: (ADVISORY_DETAIL,)}


class BundleError(RejectedInputError):
    """The bundle file itself is unreadable or not shaped as a bundle (code ``malformed-bundle``)."""


@dataclass(frozen=True)
class Declaration:
    """What the manufacturer declares about the image: which CPL entries it is for, and why."""

    cpl_entries: tuple[str, ...]
    reason: str
    advisories: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpl_entries": list(self.cpl_entries),
            "reason": self.reason,
            "advisories": list(self.advisories),
        }

    def problems(self) -> list[str]:
        """Why the declaration is incomplete (code ``missing-declaration``); empty when complete."""
        found: list[str] = []
        if not self.cpl_entries:
            found.append("declaration.cpl_entries: found none, expected at least one CPL Entry ID")
        if self.reason not in REASONS:
            found.append(
                f"declaration.reason: found {_short(self.reason)}, expected one of {', '.join(REASONS)}"
            )
        if self.reason == "security" and not self.advisories:
            found.append(
                "declaration.advisories: found none, expected at least one advisory ID for a security fix"
            )
        if len(set(self.cpl_entries)) != len(self.cpl_entries):
            found.append(
                f"declaration.cpl_entries: found duplicates in {list(self.cpl_entries)}, expected each once"
            )
        return found


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle; ``image`` and ``role_bytes`` are exactly the bytes in the archive.

    ``image`` may be a read-only view into the bundle's bytes (never a second copy), which keeps a
    10 MB ingest bound by hashing rather than by copying.
    """

    manufacturer_id: str
    target: str
    declaration: Declaration
    image: bytes | memoryview
    role_bytes: bytes
    release_notes: bytes | None  # plaintext: only ever read to be rejected (notes-not-encrypted)
    kind: str = KIND_DEPOSIT
    notes_jwe: bytes | None = None  # the encrypted notes, exactly as the role's notes target
    # Hash bins: the role ``role_bytes`` is (empty: the manufacturer role itself) and further signed
    # bins, name -> bytes exactly as signed (``bins/<name>.json`` members).
    role: str = ""
    bins: tuple[tuple[str, bytes], ...] = ()
    # An advisory bundle: the advisory revision and its encrypted detail, exactly as signed targets.
    advisory: bytes | None = None
    advisory_detail: bytes | None = None

    @property
    def role_name(self) -> str:
        """The role ``role_bytes`` claims to be a version of."""
        return self.role or naming.role_name(self.manufacturer_id)


def _string_list(value: Any, field: str, source: str = "bundle") -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise BundleError(
            f"{source}: {MANIFEST}: {field}: found {_short(value)}, expected a list of strings"
        )
    return tuple(value)


def _string(value: Any, field: str, source: str = "bundle") -> str:
    if not isinstance(value, str):
        raise BundleError(
            f"{source}: {MANIFEST}: {field}: found {_short(value)}, expected a string"
        )
    return value


def _short(value: Any, limit: int = 80) -> str:
    """A value for a message, cut short: a hostile manifest must not make a megabyte report line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _said(error: BaseException, limit: int = 200) -> str:
    """An exception's text for a message, cut short: zipfile quotes whole headers in its errors
    (a name length of 0x7FFF made a 32 KB line), and every line reaches the manufacturer."""
    return _cut(str(error), limit)


def _cut(text: str, limit: int = 80) -> str:
    """A manifest string quoted as it is (no repr), cut short like `_short`."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, skip to name length and extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


def _stored_member_view(view: memoryview, info: zipfile.ZipInfo, source: str) -> memoryview:
    """A zero-copy view of a stored (uncompressed) member, located via its local header.

    No CRC check: the gateway hashes these bytes against the CPL and the signed metadata, which is a
    far stronger check than CRC-32, and skipping it saves a pass over 10 MB.

    Raises:
        BundleError: the local header is inconsistent with the central directory.
    """
    start = info.header_offset
    if start + _LOCAL_HEADER.size > len(view):
        raise BundleError(f"{source}: {info.filename}: local header past the end of the file")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(view, start)
    name_start = start + _LOCAL_HEADER.size
    if (
        signature != _LOCAL_SIGNATURE
        or bytes(view[name_start : name_start + name_length]) != info.filename.encode()
    ):
        raise BundleError(
            f"{source}: {info.filename}: local header does not match the central directory"
        )
    data_start = name_start + name_length + extra_length
    if info.compress_size != info.file_size or data_start + info.file_size > len(view):
        raise BundleError(
            f"{source}: {info.filename}: found {info.compress_size} stored bytes for a {info.file_size}-byte "
            "member, expected equal sizes within the file"
        )
    return view[data_start : data_start + info.file_size]


def member_limits(role_size_cap: int = DEFAULT_ROLE_SIZE_CAP) -> dict[str, int]:
    """The size each member may have, the role capped by the operator's policy."""
    return MEMBER_LIMITS | {ROLE: min(role_size_cap, MEMBER_LIMITS[ROLE])}


def bundle_size_limit(role_size_cap: int = DEFAULT_ROLE_SIZE_CAP) -> int:
    """The largest bundle file worth reading: every member at its limit plus ZIP overhead."""
    return sum(member_limits(role_size_cap).values()) + 64 * 1024


def parse_bundle(
    data: bytes, *, source: str = "bundle", role_size_cap: int = DEFAULT_ROLE_SIZE_CAP
) -> Bundle:
    """Read a bundle from its bytes.

    Every size is checked against its limit (the role against ``role_size_cap``) from the ZIP
    directory, before a member is read or any JSON is parsed.

    Raises:
        BundleError: not a ZIP, unexpected or missing members, oversized members, bad manifest;
            whatever the bytes are, nothing else escapes.
    """
    try:
        return _parse_bundle(data, source, member_limits(role_size_cap))
    except BundleError:
        raise
    except _READ_ERRORS as e:
        raise BundleError(
            f"{source}: unreadable ({type(e).__name__}: {_said(e)}); expected a ZIP archive made by "
            "`cfl-repo submit`"
        ) from e


def _parse_bundle(data: bytes, source: str, limits: dict[str, int]) -> Bundle:
    try:
        view = memoryview(data).toreadonly()
        archive = zipfile.ZipFile(io.BytesIO(data))  # BytesIO shares the bytes, no copy
    except _READ_ERRORS as e:
        raise BundleError(
            f"{source}: not a bundle ({_said(e)}); expected a ZIP archive made by `cfl-repo submit`"
        ) from e
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        bin_names = [name for name in names if _is_bin_member(name)]
        if len(bin_names) > MAX_BIN_MEMBERS:
            raise BundleError(
                f"{source}: members: found {len(bin_names)} bins, expected at most {MAX_BIN_MEMBERS}"
            )
        limits = limits | {name: limits[ROLE] for name in bin_names}
        unexpected = sorted(set(names) - set(limits))
        if unexpected:
            raise BundleError(
                f"{source}: members: found unexpected {_short(unexpected, 400)}, expected only "
                f"{_short(sorted(limits), 400)}"
            )
        if len(names) != len(set(names)):
            raise BundleError(
                f"{source}: members: found duplicate names in {_short(names, 400)}, expected each once"
            )
        for info in infos:
            # Stored (what `cfl-repo submit` writes) or deflate, nothing else: an LZMA member sets
            # its own dictionary size, and a corrupt one had the decompressor ask for gigabytes
            # before a byte was read; a corrupt stream let LZMAError out (both found by tests/fuzz).
            if info.compress_type not in _METHODS:
                method = _METHOD_NAMES.get(info.compress_type, "unknown")
                raise BundleError(
                    f"{source}: {info.filename}: compression: found method {info.compress_type} "
                    f"({method}), expected stored (0) or deflate (8)"
                )
            if info.file_size > limits[info.filename]:
                raise BundleError(
                    f"{source}: {info.filename}: found {info.file_size} bytes, expected at most "
                    f"{limits[info.filename]}"
                )
        manifest = _read_manifest(archive, source)
        kind = _kind(manifest, source)
        required = REQUIRED_FOR_KIND[kind]
        missing = [name for name in required if name not in names]
        if missing:
            raise BundleError(f"{source}: members: missing {missing}, expected {list(required)}")
        allowed = (
            set(required)
            | set(OPTIONAL_FOR_KIND.get(kind, ()))
            | (set(bin_names) if kind != KIND_DEPOSIT else set())
        )
        if kind != KIND_DEPOSIT and set(names) - allowed:
            raise BundleError(
                f"{source}: members: found {_short(sorted(set(names) - allowed), 400)} in a {kind}, "
                "expected only "
                f"{sorted(set(required) | set(OPTIONAL_FOR_KIND.get(kind, ())))} and "
                "bins/<bin role>.json"
            )
        if kind == KIND_DEPOSIT and {ADVISORY, ADVISORY_DETAIL} & set(names):
            raise BundleError(
                f"{source}: members: found {sorted({ADVISORY, ADVISORY_DETAIL} & set(names))} in a "
                "deposit, expected advisories in their own bundle (`cfl-repo advisory submit`)"
            )
        members: dict[str, bytes | memoryview] = {}
        for info in infos:
            if info.filename == MANIFEST:
                continue
            limit = limits[info.filename]
            if (
                info.filename == IMAGE
                and info.compress_type == zipfile.ZIP_STORED
                and not info.flag_bits & 1
            ):
                members[IMAGE] = _stored_member_view(view, info, source)
                continue
            content = _read_member(archive, info, source)
            if len(content) > limit:
                raise BundleError(f"{source}: {info.filename}: inflates past {limit} bytes")
            members[info.filename] = content
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{source}: {MANIFEST}: schema_version: found {_short(manifest.get('schema_version'))}, "
            f"expected {SCHEMA_VERSION}"
        )
    manufacturer_id = _string(manifest.get("manufacturer_id"), "manufacturer_id", source).upper()
    role = _string(manifest.get("role", ""), "role", source)
    if role and naming.manufacturer_of_bin(role) != manufacturer_id:
        raise BundleError(
            f"{source}: {MANIFEST}: role: found {_short(role)}, expected a bin role of "
            f"{_cut(manufacturer_id)} ({_cut(naming.bin_name_prefix(manufacturer_id))}-<hex>) or none"
        )
    bins = tuple(
        (name.removeprefix(BINS_DIR).removesuffix(".json"), bytes(members[name]))
        for name in sorted(bin_names)
    )
    if kind == KIND_ADVISORY:
        return Bundle(
            manufacturer_id=manufacturer_id,
            target=_string(manifest.get("target"), "target", source),
            declaration=Declaration((), "", ()),
            image=b"",
            role_bytes=bytes(members[ROLE]),
            release_notes=None,
            kind=kind,
            role=role,
            bins=bins,
            advisory=bytes(members[ADVISORY]),
            advisory_detail=(
                bytes(members[ADVISORY_DETAIL]) if ADVISORY_DETAIL in members else None
            ),
        )
    if kind != KIND_DEPOSIT:
        return Bundle(
            manufacturer_id=manufacturer_id,
            target="",
            declaration=Declaration((), "", ()),
            image=b"",
            role_bytes=bytes(members[ROLE]),
            release_notes=None,
            kind=kind,
            role=role,
            bins=bins,
        )
    declaration = manifest.get("declaration")
    if not isinstance(declaration, dict):
        raise BundleError(
            f"{source}: {MANIFEST}: declaration: found {_short(declaration)}, expected an object"
        )
    return Bundle(
        manufacturer_id=manufacturer_id,
        target=_string(manifest.get("target"), "target", source),
        declaration=Declaration(
            cpl_entries=_string_list(
                declaration.get("cpl_entries"), "declaration.cpl_entries", source
            ),
            reason=_string(declaration.get("reason"), "declaration.reason", source),
            advisories=_string_list(
                declaration.get("advisories", []), "declaration.advisories", source
            ),
        ),
        image=members[IMAGE],
        role_bytes=bytes(members[ROLE]),
        release_notes=None if RELEASE_NOTES not in members else bytes(members[RELEASE_NOTES]),
        notes_jwe=None if RELEASE_NOTES_JWE not in members else bytes(members[RELEASE_NOTES_JWE]),
        role=role,
        bins=bins,
    )


def _is_bin_member(name: str) -> bool:
    """``bins/<bin role>.json`` for a well-formed bin role name (anything else is unexpected)."""
    stem = name.removeprefix(BINS_DIR).removesuffix(".json")
    return (
        name.startswith(BINS_DIR)
        and name.endswith(".json")
        and naming.manufacturer_of_bin(stem) is not None
    )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    """A member's bytes, never more than its declared size plus one.

    Raises:
        BundleError: the member cannot be read (bad CRC, unsupported compression, truncation).
    """
    try:
        with archive.open(info) as handle:
            # Ask for no more than the declared size (checked against its limit already) plus one
            # byte: zlib then never inflates more than that, whatever the compressed stream holds,
            # and a lying header fails its CRC check.
            return handle.read(info.file_size + 1)
    except _READ_ERRORS as e:
        raise BundleError(f"{source}: {info.filename}: unreadable ({_said(e)})") from e


def _read_manifest(archive: zipfile.ZipFile, source: str) -> dict[str, Any]:
    """The manifest as a JSON object; read first because its kind decides which members are due.

    Raises:
        BundleError: missing, unreadable, not JSON, or not an object.
    """
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError as e:
        raise BundleError(f"{source}: members: missing ['{MANIFEST}']") from e
    content = _read_member(archive, info, source)
    try:
        manifest = json.loads(content)
    except _READ_ERRORS as e:
        raise BundleError(f"{source}: {MANIFEST}: not JSON ({_said(e)})") from e
    if not isinstance(manifest, dict):
        raise BundleError(
            f"{source}: {MANIFEST}: found {type(manifest).__name__}, expected an object"
        )
    return manifest


def _kind(manifest: dict[str, Any], source: str) -> str:
    kind = manifest.get("kind", KIND_DEPOSIT)
    if not isinstance(kind, str) or kind not in REQUIRED_FOR_KIND:
        raise BundleError(
            f"{source}: {MANIFEST}: kind: found {_short(kind)}, expected one of {sorted(REQUIRED_FOR_KIND)}"
        )
    return kind


def read_bundle(path: Path, *, role_size_cap: int = DEFAULT_ROLE_SIZE_CAP) -> Bundle:
    """Read a bundle file.

    Raises:
        BundleError: unreadable, larger than any well-formed bundle, or malformed.
    """
    try:
        size = path.stat().st_size
        limit = bundle_size_limit(role_size_cap)
        if size > limit:
            raise BundleError(f"{path.name}: size: found {size} bytes, expected at most {limit}")
        # One read into private memory, then views: a mapping would let whoever can still write
        # the inbox file change the bytes between the gateway's hashing and the blob store's write.
        with path.open("rb") as handle:
            # The file may grow after stat: read no more than it had (plus one byte to notice).
            data = handle.read(size + 1)
    except OSError as e:
        raise BundleError(f"{path.name}: cannot read ({e.strerror})") from e
    if len(data) > size:
        raise BundleError(
            f"{path.name}: size: found it growing while read (more than {size} bytes), expected a "
            "complete bundle"
        )
    # Messages name the bundle by its file name: reports travel back to the manufacturer, who has
    # no business seeing the provider's inbox layout.
    return parse_bundle(data, source=path.name, role_size_cap=role_size_cap)


def write_bundle(path: Path, bundle: Bundle) -> None:
    """Write a bundle atomically (a crash leaves no half-written bundle).

    Raises:
        ConfigurationError: ``path`` is a folder or under a regular file.
        UnavailableError: its folder cannot be created.
    """
    prepare_file(path, field="--out")
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": bundle.kind,
        "manufacturer_id": bundle.manufacturer_id,
    }
    if bundle.kind == KIND_DEPOSIT:
        manifest |= {"target": bundle.target, "declaration": bundle.declaration.to_dict()}
    if bundle.kind == KIND_ADVISORY:
        manifest["target"] = bundle.target
    if bundle.role:
        manifest["role"] = bundle.role
    with (
        atomic_writer(path) as handle,
        zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive,
    ):
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        if bundle.kind == KIND_DEPOSIT:
            archive.writestr(IMAGE, bundle.image)
        archive.writestr(ROLE, bundle.role_bytes)
        if bundle.release_notes is not None:
            archive.writestr(RELEASE_NOTES, bundle.release_notes)
        if bundle.notes_jwe is not None:
            archive.writestr(RELEASE_NOTES_JWE, bundle.notes_jwe)
        if bundle.advisory is not None:
            archive.writestr(ADVISORY, bundle.advisory)
        if bundle.advisory_detail is not None:
            archive.writestr(ADVISORY_DETAIL, bundle.advisory_detail)
        for name, data in bundle.bins:
            archive.writestr(f"{BINS_DIR}{name}.json", data)
