"""Release a pilot image to every entitled supplier (issue 22): early, after a hold, or on its date
ahead of `refresh`. A ``release`` event in the journal and the transparency log, and a new
``cfl/releases.json`` signed by the online provider role; the image itself does not change."""

from __future__ import annotations

from datetime import datetime

from metadata_templates.errors import RejectedInputError
from metadata_templates.releases import ACTION_RELEASE, ReleaseEvent, release_event
from metadata_templates.tlog import events
from repo_tool.state import pilots
from repo_tool.state.repository import Repository

DEFAULT_REASON = "released by the provider"


def release(
    repo: Repository, target: str, reason: str | None = None, *, now: datetime
) -> tuple[ReleaseEvent, bool]:
    """Record the release of the pilot image ``target``. Returns the release and whether this call
    recorded it (False: it was recorded before, with the same reason: a re-run changes nothing).

    Raises:
        RejectedInputError: not a pilot image of the library, or released already for another
            reason (a release is recorded once and never edited).
        ConfigurationError: a reason that is empty or not one line.
    """
    text = pilots.checked_reason(reason) if reason is not None else DEFAULT_REASON
    image = pilots.require_pilot(repo, target, now)
    earlier = image.state.event
    if image.state.released and earlier is not None:
        if earlier.reason == text:
            return earlier, False
        raise RejectedInputError(
            f"TARGET: {target} was released already ({earlier.at}, reason {earlier.reason!r}); "
            "a release is recorded once and never edited"
        )
    event = release_event(image.target, image.sha256, ACTION_RELEASE, now=now, reason=text)
    document = pilots.releases(repo).with_added(event)
    head = pilots.stage_releases(repo, document, {image.target}, now)
    repo.commit(head, event={"event": events.RELEASE, **event.to_dict()})
    return event, True
