"""What the public website may list (issue 22): never an image still in its pilot.

Pure: the verified library and the build time in, the library the site renders out. Both the full
build and the append path start from this view, so a pilot image appears the first time a build
runs after its release (recorded in ``cfl/releases.json``, or its date reached), exactly as a newly
deposited image would, and never before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from metadata_templates.releases import release_state
from repo_tool.verify.lazy import LazyImages
from repo_tool.verify.published import PublishedImage, PublishedLibrary


def _listed(image: PublishedImage, library: PublishedLibrary, now: datetime) -> bool:
    return release_state(image.cfl.pilot, library.releases, image.target_path, now).released


def _any_pilot(images: Sequence[PublishedImage]) -> bool:
    return any(image.cfl.pilot is not None for image in images)


def public_library(library: PublishedLibrary, now: datetime) -> PublishedLibrary:
    """``library`` without the images only their pilot suppliers may see at ``now`` (and without
    a manufacturer none of whose images is left: its name would announce the pilot)."""
    images = library.images
    if not (images.any_pilot if isinstance(images, LazyImages) else _any_pilot(images)):
        return library  # no pilot ever: the library as verified, untouched
    images = tuple(image for image in library.images if _listed(image, library, now))
    makers = {image.cfl.manufacturer_id for image in images}
    return replace(
        library,
        images=images,
        manufacturers={k: v for k, v in library.manufacturers.items() if k in makers},
    )


def public_images(
    images: Sequence[PublishedImage] | None, library: PublishedLibrary, now: datetime
) -> Sequence[PublishedImage] | None:
    """The images of a publish's hint (``added``) that the site may list at ``now``."""
    if images is None:
        return None
    return [image for image in images if _listed(image, library, now)]
