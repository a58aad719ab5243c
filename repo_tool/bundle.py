"""The submission bundle: one file a manufacturer hands to the provider.

A ZIP archive (stored, not compressed: firmware is compressed already and stored entries keep ingest
hash-bound) with exactly these members:

- ``cfl-bundle.json``: manifest with the declaration (CPL entries, reason, advisories) and the target path
- ``image.ota``: the image as deposited (no supplier trailer)
- ``role.json``: the manufacturer's signed role metadata, one version above the published one
- ``release-notes.txt``: optional; kept by the provider, never published

Reading is strict because a bundle is attacker-controlled: unknown or duplicate members, paths, size
limits, a compressed member that inflates past its limit, and malformed JSON are all rejected.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_writer
from metadata_templates.custom import REASONS
from metadata_templates.errors import RejectedInputError

MANIFEST = "cfl-bundle.json"
IMAGE = "image.ota"
ROLE = "role.json"
RELEASE_NOTES = "release-notes.txt"
BUNDLE_SUFFIX = ".cflb"

# Generous ceilings so a hostile archive cannot exhaust memory; the gateway applies the real image cap.
MEMBER_LIMITS = {
    MANIFEST: 1_000_000,
    IMAGE: 64 * 1024 * 1024,
    ROLE: 64 * 1024 * 1024,
    RELEASE_NOTES: 5_000_000,
}
REQUIRED = (MANIFEST, IMAGE, ROLE)


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
                f"declaration.reason: found {self.reason!r}, expected one of {', '.join(REASONS)}"
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
    """A parsed bundle; ``image`` and ``role_bytes`` are exactly the bytes in the archive."""

    manufacturer_id: str
    target: str
    declaration: Declaration
    image: bytes
    role_bytes: bytes
    release_notes: bytes | None


def _string_list(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise BundleError(f"{MANIFEST}: {field}: found {value!r}, expected a list of strings")
    return tuple(value)


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BundleError(f"{MANIFEST}: {field}: found {value!r}, expected a string")
    return value


def parse_bundle(data: bytes, *, source: str = "bundle") -> Bundle:
    """Read a bundle from its bytes.

    Raises:
        BundleError: not a ZIP, unexpected or missing members, oversized members, bad manifest.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise BundleError(
            f"{source}: not a bundle ({e}); expected a ZIP archive made by `cfl-repo submit`"
        ) from e
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        unexpected = sorted(set(names) - set(MEMBER_LIMITS))
        if unexpected:
            raise BundleError(
                f"{source}: members: found unexpected {unexpected}, expected only {sorted(MEMBER_LIMITS)}"
            )
        if len(names) != len(set(names)):
            raise BundleError(
                f"{source}: members: found duplicate names in {names}, expected each once"
            )
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise BundleError(f"{source}: members: missing {missing}, expected {list(REQUIRED)}")
        members: dict[str, bytes] = {}
        for info in infos:
            limit = MEMBER_LIMITS[info.filename]
            if info.file_size > limit:
                raise BundleError(
                    f"{source}: {info.filename}: found {info.file_size} bytes, expected at most {limit}"
                )
            try:
                with archive.open(info) as handle:
                    # Ask for no more than the declared size (checked against the limit above)
                    # plus one byte: zlib then never inflates more than that, whatever the
                    # compressed stream holds, and a lying header fails its CRC check.
                    content = handle.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as e:
                raise BundleError(f"{source}: {info.filename}: unreadable ({e})") from e
            if len(content) > limit:
                raise BundleError(f"{source}: {info.filename}: inflates past {limit} bytes")
            members[info.filename] = content
    try:
        manifest = json.loads(members[MANIFEST])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{source}: {MANIFEST}: not JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise BundleError(
            f"{source}: {MANIFEST}: found {type(manifest).__name__}, expected an object"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{source}: {MANIFEST}: schema_version: found {manifest.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    declaration = manifest.get("declaration")
    if not isinstance(declaration, dict):
        raise BundleError(
            f"{source}: {MANIFEST}: declaration: found {declaration!r}, expected an object"
        )
    return Bundle(
        manufacturer_id=_string(manifest.get("manufacturer_id"), "manufacturer_id").upper(),
        target=_string(manifest.get("target"), "target"),
        declaration=Declaration(
            cpl_entries=_string_list(declaration.get("cpl_entries"), "declaration.cpl_entries"),
            reason=_string(declaration.get("reason"), "declaration.reason"),
            advisories=_string_list(declaration.get("advisories", []), "declaration.advisories"),
        ),
        image=members[IMAGE],
        role_bytes=members[ROLE],
        release_notes=members.get(RELEASE_NOTES),
    )


def read_bundle(path: Path) -> Bundle:
    """Read a bundle file.

    Raises:
        BundleError: unreadable or malformed.
    """
    try:
        size = path.stat().st_size
        limit = sum(MEMBER_LIMITS.values()) + 1_000_000
        if size > limit:
            raise BundleError(f"{path}: found {size} bytes, expected at most {limit}")
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror})") from e
    return parse_bundle(data, source=str(path))


def write_bundle(path: Path, bundle: Bundle) -> None:
    """Write a bundle atomically (a crash leaves no half-written bundle)."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "manufacturer_id": bundle.manufacturer_id,
        "target": bundle.target,
        "declaration": bundle.declaration.to_dict(),
    }
    with (
        atomic_writer(path) as handle,
        zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive,
    ):
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        archive.writestr(IMAGE, bundle.image)
        archive.writestr(ROLE, bundle.role_bytes)
        if bundle.release_notes is not None:
            archive.writestr(RELEASE_NOTES, bundle.release_notes)
