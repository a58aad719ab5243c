"""Where encrypted release notes live in the library: target paths only, no cryptography.

Split from ``metadata_templates.notes`` (which re-exports these names) so that code which only
needs to recognise a notes target, such as the client's catalogue on every ``cfl check``, does not
import jwcrypto and ``cryptography.x509`` to do it.
"""

from __future__ import annotations

import re

NOTES_SUFFIX = ".notes.jwe"
GRANTS_PREFIX = "cfl/grants/"

IMAGE_PATH = re.compile(r"[0-9A-F]{4}/[A-Za-z0-9._-]+\.ota")


def notes_target_path(image_target: str) -> str:
    """The manufacturer-signed target that holds an image's encrypted notes."""
    return f"{image_target}{NOTES_SUFFIX}"


def is_notes_target_path(path: str) -> bool:
    """True for a manufacturer's notes target (``<image target>.notes.jwe``)."""
    return (
        path.endswith(NOTES_SUFFIX) and IMAGE_PATH.fullmatch(path[: -len(NOTES_SUFFIX)]) is not None
    )


def grant_target_path(entity_id: str, image_target: str) -> str:
    """The provider-signed grant of one image's notes to one organisation."""
    return f"{GRANTS_PREFIX}{entity_id}/{image_target.replace('/', '-')}{NOTES_SUFFIX}"


def is_grant_target_path(path: str) -> bool:
    """True for a provider-signed grant target (``cfl/grants/<Entity ID>/...notes.jwe``)."""
    return path.startswith(GRANTS_PREFIX) and path.endswith(NOTES_SUFFIX)
