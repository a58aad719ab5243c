"""The pilot images of a repository's staged state (issue 22), for `release`, `hold`, `refresh`, the
host configuration and the audit.

The terms are read from the manufacturer's signed role, never from anything beside it: the head's
``pilots`` only says which images have not been released yet, so `refresh` need not read every role
to find the few that are due. The release document is the provider's ``cfl/releases.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from tuf.api.metadata import TargetFile, Targets

from metadata_templates import naming
from metadata_templates.custom import CflTargetInfo, CustomMetadataError, PilotTerms
from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from metadata_templates.releases import (
    MAX_REASON_LENGTH,
    ReleaseList,
    ReleaseState,
    release_state,
)
from repo_tool.state.bins import image_role
from repo_tool.state.head import Head

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository


@dataclass(frozen=True)
class PilotImage:
    """A staged image with pilot terms, and where it stands now.

    Attributes:
        target: the image target path.
        sha256: the image file's SHA-256 (its blob is ``targets/<dir>/<sha256>.<name>``).
        terms: the manufacturer's signed ``custom.cfl.pilot``.
        state: its release state at the time asked.
        notes_target: its encrypted release notes target and their SHA-256, when it has notes.
    """

    target: str
    sha256: str
    terms: PilotTerms
    state: ReleaseState
    notes: tuple[str, str] | None = None


def releases(repo: Repository) -> ReleaseList:
    """The staged release document (empty before the first release or hold)."""
    sha = repo.head.releases_sha256
    return ReleaseList.from_bytes(repo.blobs.get(sha)) if sha else ReleaseList()


def pilot_image(repo: Repository, target: str, now: datetime) -> PilotImage | None:
    """The staged image ``target`` if it has pilot terms (None for an image without them).

    Raises:
        KeyError: ``target`` is not a staged image.
    """
    role_name = image_role(repo, target) if naming.is_image_target_path(target) else None
    if role_name is None:
        raise KeyError(target)
    role = repo.role(role_name).signed
    if target not in role.targets:
        raise KeyError(target)
    return _pilot_of(role, role.targets[target], releases(repo), now)


def require_pilot(repo: Repository, target: str, now: datetime) -> PilotImage:
    """The pilot image ``target``, for `release` and `hold`.

    Raises:
        RejectedInputError: not an image of the library, or an image without pilot terms.
    """
    try:
        image = pilot_image(repo, target, now)
    except KeyError:
        raise RejectedInputError(
            field_error("TARGET", target, "an image target in the library")
        ) from None
    if image is None:
        raise RejectedInputError(
            field_error("TARGET", target, "a pilot image (custom.cfl.pilot)")
            + "; this image was never in a pilot and is released to every entitled supplier"
        )
    return image


def checked_reason(reason: str, *, option: str = "--reason") -> str:
    """A reason as recorded: one line, trimmed, not empty, at most MAX_REASON_LENGTH characters.

    Raises:
        ConfigurationError: empty, too long, or with a control character (a line break).
    """
    text = reason.strip()
    if not text or len(text) > MAX_REASON_LENGTH or not text.isprintable():
        raise ConfigurationError(
            field_error(
                option,
                reason[:80],
                f"one line of 1 to {MAX_REASON_LENGTH} printable characters saying why",
            )
        )
    return text


def _pilot_of(
    role: Targets, target: TargetFile, document: ReleaseList, now: datetime
) -> PilotImage | None:
    try:
        info = CflTargetInfo.from_target_custom(dict(target.custom))
    except CustomMetadataError:
        return None  # the gateway admitted it, so this cannot happen; not a pilot either way
    if info.pilot is None:
        return None
    notes = None
    if info.release_notes is not None and info.release_notes.target in role.targets:
        notes_file = role.targets[info.release_notes.target]
        notes = (info.release_notes.target, notes_file.hashes["sha256"])
    return PilotImage(
        target=target.path,
        sha256=target.hashes["sha256"],
        terms=info.pilot,
        state=release_state(info.pilot, document, target.path, now),
        notes=notes,
    )


def waiting(repo: Repository, now: datetime) -> list[PilotImage]:
    """Every image the head lists as not released yet, with its state at ``now`` (released ones
    are those whose date has come and that `refresh` has not recorded yet)."""
    found = []
    for target in sorted(repo.head.pilots):
        try:
            image = pilot_image(repo, target, now)
        except KeyError:
            continue  # cannot happen: an ingest records only what it committed
        if image is not None:
            found.append(image)
    return found


def embargoed(repo: Repository, now: datetime) -> list[PilotImage]:
    """The images only their pilot suppliers may fetch at ``now`` (the host's deny list)."""
    return [image for image in waiting(repo, now) if not image.state.released]


def stage_releases(
    repo: Repository, document: ReleaseList, released: set[str], now: datetime
) -> Head:
    """Store ``document``, sign it as ``cfl/releases.json`` in the provider's role, and return the
    head to commit: it names the document and no longer lists ``released`` as waiting.

    Raises:
        ConfigurationError: the provider's keys at hand do not meet the role's threshold.
    """
    data = document.to_bytes()
    sha = repo.blobs.put(data)

    def change(targets: Targets) -> None:
        targets.targets[naming.RELEASES_TARGET_PATH] = TargetFile(
            len(data), {"sha256": sha}, naming.RELEASES_TARGET_PATH
        )

    head = repo.stage_provider_change(change, now)
    left = {t: day for t, day in head.pilots.items() if t not in released}
    return replace(head, releases_sha256=sha, pilots=left)
