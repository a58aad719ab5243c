"""The catalogue: every image the client verified, with what the CFL says about it.

Building it is pure: the session (the only module that talks to ngclient) hands over verified target
entries and the verified withdrawal list; this module turns them into values matching and listing
work on, and leaves out anything that contradicts the delegation it came through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metadata_templates import naming
from metadata_templates.advisory import (
    is_advisory_detail_target_path,
    is_advisory_target_path,
    parse_advisory_target_path,
)
from metadata_templates.custom import CflTargetInfo, CustomMetadataError
from metadata_templates.errors import field_error
from metadata_templates.notes_paths import is_notes_target_path
from metadata_templates.outcomes import HoldEvent
from metadata_templates.releases import ReleaseList, ReleaseState, release_state
from metadata_templates.withdrawals import WithdrawalList

# A viewer without a clock: only the provider's recorded releases count, no date ever passes.
_NO_CLOCK = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CatalogueImage:
    """One verified image target.

    Attributes:
        target_path: the TUF target path, e.g. ``121D/ESME-0001-ACDCACDC-3f2a9c1d0b7e4a51.ota``.
        length: the file length TUF verified.
        sha256: the file's SHA-256 TUF verified (of the whole OTA file, not the SR 11.3 hash).
        cfl: the manufacturer's signed ``custom.cfl``.
        withdrawn: the provider has withdrawn it; it is listed but never recommended or applicable.
        pilot: issue 22: the image is still in a pilot that names this organisation (its release
            state); None for every other image this client sees.
        fixes: IDs of the published advisories that name it in ``fixed_by`` (client/advisories/).
        hold: issue 24: the hold in force on it in the verified ``cfl/outcomes.json`` (failing
            in the field), or None. A held image is listed and applies, but no path goes
            through it and it is never recommended (client/estate/paths.py).
    """

    target_path: str
    length: int
    sha256: str
    cfl: CflTargetInfo
    withdrawn: bool = False
    pilot: ReleaseState | None = None
    fixes: tuple[str, ...] = ()
    hold: HoldEvent | None = None

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
class Viewer:
    """Who looks at the catalogue, and when: what decides which pilot images it may see.

    Attributes:
        entity_id: the organisation's Entity ID from the home's configuration (None: unknown, so
            a member of no pilot).
        now: the time of the command (None: no clock, only the provider's recorded releases).
    """

    entity_id: str | None = None
    now: datetime | None = None


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
    targets: Iterable[VerifiedTarget],
    withdrawals: WithdrawalList,
    *,
    releases: ReleaseList | None = None,
    viewer: Viewer | None = None,
    holds: Mapping[str, HoldEvent] | None = None,
) -> tuple[tuple[CatalogueImage, ...], tuple[CatalogueProblem, ...]]:
    """Interpret verified targets as images, sorted by target path.

    An image still in a pilot (issue 22, metadata_templates/releases.py) is in the catalogue only
    when the pilot names the viewer, marked with its state; for anyone else it does not exist
    until its release (neither listed, nor applicable, nor downloadable), as the host refuses it.
    ``holds`` (target -> hold in force, from the verified outcomes document) marks held images.

    A target is left out (with a problem) when its path is not an image path, its ``custom.cfl`` is
    missing or invalid, or it names a manufacturer other than the one whose role and path prefix
    it came through: TUF proves who signed it, and a manufacturer may only speak for its own
    devices. Bad targets become problems rather than errors, so one manufacturer's mistake does not
    stop a supplier's check.
    """
    withdrawn = withdrawals.by_target()
    held = holds or {}
    document = releases if releases is not None else ReleaseList()
    who = viewer if viewer is not None else Viewer()
    images: list[CatalogueImage] = []
    problems: list[CatalogueProblem] = []
    for target in targets:
        if (
            naming.is_provider_target(target.path)
            or is_notes_target_path(target.path)
            or is_advisory_target_path(target.path)
            or is_advisory_detail_target_path(target.path)
        ):
            # Provider documents, encrypted release notes, advisories and their encrypted detail
            # are not images.
            continue
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
        state = release_state(cfl.pilot, document, target.path, who.now or _NO_CLOCK)
        if not state.may_fetch(who.entity_id):
            continue  # another organisation's pilot: not offered, like the host's 403
        images.append(
            CatalogueImage(
                target_path=target.path,
                length=target.length,
                sha256=target.sha256,
                cfl=cfl,
                withdrawn=target.path in withdrawn,
                pilot=None if state.released else state,
                hold=held.get(target.path),
            )
        )
    images.sort(key=lambda image: image.target_path)
    return tuple(images), tuple(problems)
