"""Which verified images a ``cfl download`` fetches: named targets (full paths or short names), or
every hop of each estate group's upgrade path. Pure: values in (the catalogue, a check report), values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from client.estate.report import CheckReport
from client.trust.catalogue import CatalogueImage
from client.trust.short_names import resolve_target
from metadata_templates import naming
from metadata_templates.errors import VerificationError


@dataclass(frozen=True)
class Wanted:
    """One image to place in the output folder.

    Attributes:
        image: the verified image.
        device_count: devices of the estate it is recommended for (0 when named directly).
    """

    image: CatalogueImage
    device_count: int = 0


def manufacturers_of_targets(targets: Iterable[str]) -> set[str]:
    """The manufacturers whose roles can list these target paths (their first path segment)."""
    found = set()
    for target in targets:
        owner = naming.manufacturer_of_target(target)
        found.add(owner if owner is not None else target.split("/", 1)[0].upper())
    return found


def select_targets(targets: Sequence[str], images: Iterable[CatalogueImage]) -> list[Wanted]:
    """The named targets, in the order given, each a verified image that is not withdrawn.

    Raises:
        VerificationError: a target is not in the verified catalogue, or has been withdrawn.
    """
    index = {image.target_path: image for image in images}
    wanted: list[Wanted] = []
    for given in targets:
        # A full target path, or the short name `cfl list` / `cfl check` show (121D/3f2a).
        target = resolve_target(given, index) or given
        image = index.get(target)
        if image is None:
            raise VerificationError(
                f"TARGET: found {target!r}, expected an image in the verified library "
                "(see `cfl list`)"
            )
        if image.withdrawn:
            raise VerificationError(
                f"TARGET: {target} has been withdrawn by the provider; refusing to download it"
            )
        wanted.append(Wanted(image))
    return wanted


def select_paths(report: CheckReport) -> list[Wanted]:
    """Every image on every group's upgrade path once (a campaign needs each hop, not only the
    last), with how many devices it is for, in target-path order."""
    counts: dict[str, int] = {}
    by_target: dict[str, CatalogueImage] = {}
    for position, group in enumerate(report.groups):
        for hop in report.plan_of(position).path:
            counts[hop.target_path] = counts.get(hop.target_path, 0) + group.device_count
            by_target[hop.target_path] = hop
    return [Wanted(by_target[path], counts[path]) for path in sorted(by_target)]
