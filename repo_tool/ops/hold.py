"""Hold a pilot image past its release date (issue 22): only its pilot suppliers keep it until the
provider releases it (`cfl-repo release`). A ``hold`` event in the journal and the transparency log,
and a new ``cfl/releases.json`` signed by the online provider role."""

from __future__ import annotations

from datetime import datetime

from metadata_templates.errors import RejectedInputError
from metadata_templates.releases import ACTION_HOLD, ReleaseEvent, release_event
from metadata_templates.tlog import events
from repo_tool.state import pilots
from repo_tool.state.repository import Repository


def hold(repo: Repository, target: str, reason: str, *, now: datetime) -> tuple[ReleaseEvent, bool]:
    """Record a hold of the pilot image ``target``. Returns the hold and whether this call recorded
    it (False: held before with the same reason, so a re-run changes nothing).

    Raises:
        RejectedInputError: not a pilot image; released already (by its date or by the provider:
            what was released cannot be taken back, only withdrawn); or held for another reason.
        ConfigurationError: a reason that is empty or not one line.
    """
    text = pilots.checked_reason(reason)
    image = pilots.require_pilot(repo, target, now)
    state = image.state
    if state.released:
        when = state.event.at if state.event is not None else f"{image.terms.release_at} (its date)"
        raise RejectedInputError(
            f"TARGET: {target} was released at {when}; a released image cannot be held, "
            "expected one still in its pilot",
            hint=f"to take it out of circulation: cfl-repo withdraw {target} --reason TEXT",
        )
    earlier = state.event
    if earlier is not None:
        if earlier.reason == text:
            return earlier, False
        raise RejectedInputError(
            f"TARGET: {target} is held already ({earlier.at}, reason {earlier.reason!r}); "
            "a hold is recorded once, expected `cfl-repo release` to end it"
        )
    event = release_event(image.target, image.sha256, ACTION_HOLD, now=now, reason=text)
    document = pilots.releases(repo).with_added(event)
    head = pilots.stage_releases(repo, document, set(), now)
    repo.commit(head, event={"event": events.HOLD, **event.to_dict()})
    return event, True
