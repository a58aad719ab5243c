"""``cfl list``: the verified images of some (or all) manufacturers, with their CFL metadata."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from client.trust.catalogue import CatalogueImage
from client.trust.home import ClientHome
from client.trust.library import Catalogue, load_catalogue, open_session, viewer_of
from client.trust.session import UnverifiedRole


@dataclass(frozen=True)
class Listing:
    """The images a ``cfl list`` shows.

    Attributes:
        catalogue: everything verified for the manufacturers asked for.
        shown: the images that pass the device-type filter.
        asked_unverified: unverified roles of manufacturers the user named (an incomplete answer).
    """

    catalogue: Catalogue
    shown: tuple[CatalogueImage, ...]
    asked_unverified: tuple[UnverifiedRole, ...]

    def image_json(self, image: CatalogueImage) -> dict[str, Any]:
        """One image of the ``cfl list --json`` document."""
        withdrawal = self.catalogue.withdrawals.by_target().get(image.target_path)
        doc = {
            "target": image.target_path,
            "length": image.length,
            "sha256": image.sha256,
            "withdrawn": None if withdrawal is None else withdrawal.to_dict(),
            "cfl": image.cfl.to_dict(),
        }
        if image.pilot is not None:
            doc["pilot"] = image.pilot.to_json()  # issue 22: only while it is in its pilot
        # Issue 24: the hold in force (failing in the field), or null.
        doc["held"] = (
            None
            if image.hold is None
            else {"reason": image.hold.reason, "since": image.hold.at, "by": image.hold.by}
        )
        return doc


def list_images(
    home: ClientHome,
    *,
    manufacturers: Collection[str],
    device_types: Collection[str],
    offline: bool,
    now: datetime | None = None,
) -> Listing:
    """The verified images of ``manufacturers`` (all when empty) of ``device_types`` (all when empty),
    as the home's organisation may see them at ``now`` (pilot images: metadata_templates/releases.py).

    Raises:
        ConfigurationError: the home is not initialised, or the host refused its credentials.
        VerificationError: the top-level metadata failed verification.
        UnavailableError: the library could not be reached, or the home is locked.
    """
    home.load_config()
    with home.lock():
        catalogue = load_catalogue(
            open_session(home, offline=offline),
            manufacturers or None,
            viewer=viewer_of(home, now),
        )
    shown = tuple(
        i for i in catalogue.images if not device_types or i.cfl.device_type in device_types
    )
    return Listing(catalogue, shown, catalogue.unverified_among(manufacturers))
