"""Target paths and role names: how both sides spell the things they agree on.

Delegation patterns match one path segment per ``*`` (TUF's fnmatch per segment), so every image
target lives exactly one segment below its manufacturer ID: ``121D/ESME-0001-ACDCACDC-3f2a9c1d0b7e4a51.ota``.
The file name is readable (device type, image type, firmware version) and unique per image (a prefix
of the file's SHA-256). Provider-owned targets live under ``cfl/``, which no manufacturer ID can spell.
"""

from __future__ import annotations

import re

from tuf.api.metadata import SuccinctRoles

# The TUF specification version every role of the library declares (python-tuf writes this one).
SPEC_VERSION = "1.0.31"
MANUFACTURER_ROLE_PREFIX = "mfr-"
CPL_TARGET_PATH = "cfl/cpl.json"
WITHDRAWALS_TARGET_PATH = "cfl/withdrawals.json"
SUPPLIERS_TARGET_PATH = "cfl/suppliers.json"  # the registry (metadata_templates/suppliers.py)
# issue 22: releases and holds of pilot images (metadata_templates/releases.py)
RELEASES_TARGET_PATH = "cfl/releases.json"
# issue 24: combined delivery outcomes and the holds they caused (metadata_templates/outcomes.py)
OUTCOMES_TARGET_PATH = "cfl/outcomes.json"
PROVIDER_TARGET_PATHS = (
    CPL_TARGET_PATH,
    WITHDRAWALS_TARGET_PATH,
    SUPPLIERS_TARGET_PATH,
    RELEASES_TARGET_PATH,
    OUTCOMES_TARGET_PATH,
)
# issue 13: the provider's online delegated role. It signs every ``cfl/...`` document (CPL,
# withdrawals, registry, suspensions, notes custodian and grants) so routine work needs no offline
# targets key; targets delegates it terminating, for these patterns only (one segment per ``*``:
# grants live three segments down, cfl/grants/<entity>/<file>).
PROVIDER_ROLE = "cfl-provider"
PROVIDER_PATTERNS = ("cfl/*", "cfl/*/*/*")
IMAGE_SUFFIX = ".ota"
TARGET_HASH_PREFIX_LENGTH = 16

_ROLE = re.compile(r"mfr-([0-9A-F]{4})")
_IMAGE_TARGET = re.compile(r"([0-9A-F]{4})/[A-Z0-9]+-[0-9A-F]{4}-[0-9A-F]{8}-[0-9a-f]{16}\.ota")


def role_name(manufacturer_id: str) -> str:
    """The delegated role that holds one manufacturer's images: ``mfr-121D``."""
    return f"{MANUFACTURER_ROLE_PREFIX}{manufacturer_id.upper()}"


def manufacturer_of_role(role: str) -> str | None:
    """The manufacturer ID a role name stands for, or None if it is not a manufacturer role."""
    match = _ROLE.fullmatch(role)
    return match.group(1) if match else None


# --- hash bins (TAP 15) inside a manufacturer's delegation ---------------------------------------
# `mfr-121D` may hold a succinct delegation to `mfr-121D-bin-<hex>`; a target goes to the bin named by
# the first `bit_length` bits of SHA-256(path). python-tuf's SuccinctRoles computes it, the same code
# ngclient walks with, so the gateway, verify, the client and the site cannot disagree with clients.
BIN_INFIX = "-bin"
MAX_BIN_BIT_LENGTH = 16  # 65,536 bins: snapshot lists every bin, so more would dwarf the images
_BIN_ROLE = re.compile(r"mfr-([0-9A-F]{4})-bin-([0-9a-f]{1,4})")


def bin_name_prefix(manufacturer_id: str) -> str:
    """The ``name_prefix`` of a manufacturer's succinct delegation: ``mfr-121D-bin``."""
    return f"{role_name(manufacturer_id)}{BIN_INFIX}"


def bin_roles(manufacturer_id: str, bit_length: int) -> list[str]:
    """Every bin role name of a manufacturer split into ``2**bit_length`` bins, in bin order."""
    return list(_succinct(manufacturer_id, bit_length).get_roles())


def bin_for_target(manufacturer_id: str, path: str, bit_length: int) -> str:
    """The bin role a target path belongs to (``SuccinctRoles.get_role_for_target``)."""
    return _succinct(manufacturer_id, bit_length).get_role_for_target(path)


def manufacturer_of_bin(role: str) -> str | None:
    """The manufacturer ID a bin role name belongs to, or None if it is not a bin role."""
    match = _BIN_ROLE.fullmatch(role)
    return match.group(1) if match else None


def owner_of_role(role: str) -> str | None:
    """The manufacturer whose keys sign ``role``: a manufacturer role or one of its bins."""
    return manufacturer_of_role(role) or manufacturer_of_bin(role)


def _succinct(manufacturer_id: str, bit_length: int) -> SuccinctRoles:
    # Keys play no part in naming; python-tuf checks bit_length (1..32) itself.
    return SuccinctRoles([], 1, bit_length, bin_name_prefix(manufacturer_id))


def is_provider_role(role: str) -> bool:
    """True for the provider's own delegated role (``cfl-provider``), which holds no images."""
    return role == PROVIDER_ROLE


def is_provider_target(path: str) -> bool:
    """True for a provider document's target path (``cfl/...``), which no manufacturer can spell."""
    return path.startswith("cfl/")


def delegation_pattern(manufacturer_id: str) -> str:
    """The single path pattern a manufacturer's delegation is restricted to."""
    return f"{manufacturer_id.upper()}/*"


def image_target_path(
    manufacturer_id: str, device_type: str, image_type: str, firmware_version: str, sha256: str
) -> str:
    """The target path of one image; every argument is already normalised."""
    name = f"{device_type}-{image_type}-{firmware_version}-{sha256[:TARGET_HASH_PREFIX_LENGTH]}"
    return f"{manufacturer_id}/{name}{IMAGE_SUFFIX}"


def is_image_target_path(path: str) -> bool:
    """True when ``path`` has exactly the shape ``image_target_path`` produces."""
    return _IMAGE_TARGET.fullmatch(path) is not None


def manufacturer_of_target(path: str) -> str | None:
    """The manufacturer ID an image target path starts with, or None."""
    match = _IMAGE_TARGET.fullmatch(path)
    return match.group(1) if match else None


def blob_name(target_path: str, sha256: str) -> str:
    """Where a consistent-snapshot host stores a target: ``<dir>/<sha256>.<basename>``."""
    directory, _, base = target_path.rpartition("/")
    prefix = f"{directory}/" if directory else ""
    return f"{prefix}{sha256}.{base}"
