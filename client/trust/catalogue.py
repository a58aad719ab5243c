"""The catalogue: every image the client verified, with what the CFL says about it.

Building it is pure: the session (the only module that talks to ngclient) hands over verified target
entries and the verified withdrawal list; this module turns them into values matching and listing
work on, and leaves out anything that contradicts the delegation it came through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metadata_templates import naming
from metadata_templates.advisory import is_advisory_target_path, parse_advisory_target_path
from metadata_templates.custom import CflTargetInfo, CustomMetadataError
from metadata_templates.errors import field_error
from metadata_templates.notes_paths import is_notes_target_path
from metadata_templates.withdrawals import WithdrawalList


@dataclass(frozen=True)
class CatalogueImage:
    """One verified image target.

    Attributes:
        target_path: the TUF target path, e.g. ``121D/ESME-0001-ACDCACDC-3f2a9c1d0b7e4a51.ota``.
        length: the file length TUF verified.
        sha256: the file's SHA-256 TUF verified (of the whole OTA file, not the SR 11.3 hash).
        cfl: the manufacturer's signed ``custom.cfl``.
        withdrawn: the provider has withdrawn it; it is listed but never recommended or applicable.
        fixes: IDs of the published advisories that name it in ``fixed_by`` (client/advisories/).
    """

    target_path: str
    length: int
    sha256: str
    cfl: CflTargetInfo
    withdrawn: bool = False
    fixes: tuple[str, ...] = ()

    @property
    def firmware_number(self) -> int:
        """The firmware version as a number, for ordering."""
        return int(self.cfl.firmware_version, 16)

    @property
    def is_security_fix(self) -> bool:
        """True when the manufacturer declared it fixes a vulnerability, in the image or in an
        advisory: upgrade paths prefer such images (client/estate/paths.py)."""
        return self.cfl.reason == "security" or bool(self.fixes)


@dataclass(frozen=True)
class VerifiedTarget:
    """What the session hands over for each target: verified by ngclient, not yet interpreted.

    Attributes:
        path: the target path.
        role: the delegated role whose signed metadata listed it.
        length: the verified length.
        sha256: the verified SHA-256.
        custom: the target's ``custom`` mapping.
    """

    path: str
    role: str
    length: int
    sha256: str
    custom: Mapping[str, Any]


@dataclass(frozen=True)
class CatalogueProblem:
    """A verified target the client will not use, and why."""

    target: str
    message: str


def advisory_targets(targets: Iterable[VerifiedTarget]) -> tuple[VerifiedTarget, ...]:
    """The verified advisory targets, each signed through its own manufacturer's role or bins
    (the path names the manufacturer; TUF proved who signed it), sorted by path."""
    found = []
    for target in targets:
        parsed = parse_advisory_target_path(target.path)
        if parsed is not None and naming.owner_of_role(target.role) == parsed[0]:
            found.append(target)
    return tuple(sorted(found, key=lambda t: t.path))


def build_catalogue(
    targets: Iterable[VerifiedTarget], withdrawals: WithdrawalList
) -> tuple[tuple[CatalogueImage, ...], tuple[CatalogueProblem, ...]]:
    """Interpret verified targets as images, sorted by target path.

    A target is left out (with a problem) when its path is not an image path, its ``custom.cfl`` is
    missing or invalid, or it names a manufacturer other than the one whose role and path prefix
    it came through: TUF proves who signed it, and a manufacturer may only speak for its own
    devices. Bad targets become problems rather than errors, so one manufacturer's mistake does not
    stop a supplier's check.
    """
    withdrawn = withdrawals.by_target()
    images: list[CatalogueImage] = []
    problems: list[CatalogueProblem] = []
    for target in targets:
        if (
            naming.is_provider_target(target.path)
            or is_notes_target_path(target.path)
            or is_advisory_target_path(target.path)
        ):
            continue  # provider documents, encrypted release notes and advisories are not images
        owner = naming.manufacturer_of_target(target.path)
        if owner is None:
            problems.append(
                CatalogueProblem(
                    target.path, f"target path {target.path!r} is not an image target path"
                )
            )
            continue
        try:
            cfl = CflTargetInfo.from_target_custom(dict(target.custom))
        except CustomMetadataError as e:
            problems.append(CatalogueProblem(target.path, str(e)))
            continue
        if owner != cfl.manufacturer_id:
            problems.append(
                CatalogueProblem(
                    target.path,
                    field_error("custom.cfl.manufacturer_id", cfl.manufacturer_id, repr(owner))
                    + " (the target path's manufacturer prefix)",
                )
            )
            continue
        # The manufacturer's role, or one of its hash bins (signed by the same keys).
        if naming.owner_of_role(target.role) != owner:
            problems.append(
                CatalogueProblem(
                    target.path,
                    field_error(
                        "signing role",
                        target.role,
                        f"{naming.role_name(owner)!r} or one of its bins",
                    ),
                )
            )
            continue
        images.append(
            CatalogueImage(
                target_path=target.path,
                length=target.length,
                sha256=target.sha256,
                cfl=cfl,
                withdrawn=target.path in withdrawn,
            )
        )
    images.sort(key=lambda image: image.target_path)
    return tuple(images), tuple(problems)
