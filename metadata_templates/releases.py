"""Pilots and embargo (issue 22): the provider's release document and an image's release state.

A manufacturer may deposit an image for named pilot suppliers with a release date: the terms are
``custom.cfl.pilot``, signed by the manufacturer. What the provider decides afterwards is the
provider document ``cfl/releases.json`` (signed by the online ``cfl-provider`` role): an append-only
list of ``release`` and ``hold`` events, each also lodged in the transparency log.

`release_state` is the one rule, a pure function of (terms, document, now), that the supplier's
client, the public site, the host configuration, the audit and the provider's commands all call,
so none of them can disagree with another:

- an image without terms is public;
- a recorded ``release`` releases it, early or late, for good;
- otherwise a recorded ``hold`` keeps it in its pilot, past its date, until a release;
- otherwise it is released from the first instant (UTC) of its release date.

The provider's ``refresh`` on or after the date records the release, so a client or a host whose
clock is behind still learns of it from the signed document rather than from its own clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.custom import PilotTerms, format_timestamp, parse_timestamp
from metadata_templates.errors import field_error
from metadata_templates.naming import RELEASES_TARGET_PATH as RELEASES_TARGET_PATH

ACTION_RELEASE = "release"
ACTION_HOLD = "hold"
ACTIONS = (ACTION_RELEASE, ACTION_HOLD)
# The phases of an image: in its pilot (before its date), held (by the provider), released.
PILOT = "pilot"
HELD = "held"
RELEASED = "released"
# A pilot is a trial before general release, not a private channel: the gateway refuses a release
# date further ahead than this (release-date-invalid).
MAX_EMBARGO_DAYS = 365
MAX_REASON_LENGTH = 500

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ReleaseEvent:
    """One recorded release or hold of a pilot image."""

    target: str
    sha256: str  # the image file's SHA-256, as the manufacturer's role lists it
    action: str  # ACTION_RELEASE | ACTION_HOLD
    at: str  # UTC timestamp, custom.format_timestamp form
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sha256": self.sha256,
            "action": self.action,
            "at": self.at,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ReleaseEvent:
        """Read one event, naming the field that is wrong.

        Raises:
            ValueError: a field is missing or of the wrong form.
        """
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, type(doc).__name__, "an object"))
        values = {}
        for name in ("target", "sha256", "action", "at", "reason"):
            value = doc.get(name)
            if not isinstance(value, str):
                raise ValueError(field_error(f"{where}.{name}", value, "a string"))
            values[name] = value
        if values["action"] not in ACTIONS:
            raise ValueError(field_error(f"{where}.action", values["action"], " or ".join(ACTIONS)))
        if not _SHA256.fullmatch(values["sha256"]):
            raise ValueError(field_error(f"{where}.sha256", values["sha256"], "64 hex digits"))
        try:
            parse_timestamp(values["at"])
        except ValueError as e:
            raise ValueError(
                field_error(f"{where}.at", values["at"], "YYYY-MM-DDTHH:MM:SSZ")
            ) from e
        return cls(**values)


@dataclass(frozen=True)
class ReleaseList:
    """Every release and hold, oldest first (``cfl/releases.json``)."""

    events: tuple[ReleaseEvent, ...] = ()

    def for_target(self, target: str) -> tuple[ReleaseEvent, ...]:
        return tuple(e for e in self.events if e.target == target)

    def with_added(self, *events: ReleaseEvent) -> ReleaseList:
        return ReleaseList((*self.events, *events))

    def as_of(self, moment: datetime) -> ReleaseList:
        """The document as it stood at ``moment``: what the audit judges a past request by."""
        return ReleaseList(tuple(e for e in self.events if parse_timestamp(e.at) <= moment))

    def to_bytes(self) -> bytes:
        doc = {"schema_version": SCHEMA_VERSION, "events": [e.to_dict() for e in self.events]}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReleaseList:
        """Parse a published release document.

        Raises:
            ValueError: not JSON, wrong schema version, or an event is malformed.
        """
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"releases.json: not JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(field_error("releases.schema_version", found, str(SCHEMA_VERSION)))
        events = doc.get("events")
        if not isinstance(events, list):
            raise ValueError(field_error("releases.events", events, "a list"))
        return cls(
            tuple(ReleaseEvent.from_dict(e, f"releases.events[{i}]") for i, e in enumerate(events))
        )


@dataclass(frozen=True)
class ReleaseState:
    """Where an image stands.

    Attributes:
        phase: PILOT (before its date), HELD (the provider holds it) or RELEASED.
        terms: the pilot terms the manufacturer signed (None: never a pilot image).
        event: the recorded release or hold that decided the phase (None: the date decided, or
            the image is no pilot).
    """

    phase: str
    terms: PilotTerms | None = None
    event: ReleaseEvent | None = None

    @property
    def released(self) -> bool:
        return self.phase == RELEASED

    @property
    def recorded(self) -> bool:
        """Whether the provider's document records the release (or the hold)."""
        return self.event is not None

    def may_fetch(self, entity_id: str | None) -> bool:
        """Released to everyone, or in a pilot that names ``entity_id``."""
        return self.released or (
            entity_id is not None and self.terms is not None and entity_id in self.terms.suppliers
        )

    def to_json(self) -> dict[str, Any]:
        """The ``pilot`` object of the client's and the provider's JSON outputs."""
        assert self.terms is not None
        return {
            "state": self.phase,
            "release_at": self.terms.release_at,
            "suppliers": list(self.terms.suppliers),
            "event": None if self.event is None else self.event.to_dict(),
        }


PUBLIC = ReleaseState(RELEASED)


def release_moment(terms: PilotTerms) -> datetime:
    """The first instant (UTC) of the release date."""
    return datetime.combine(terms.release_date, time(0), tzinfo=UTC)


def release_state(
    terms: PilotTerms | None, releases: ReleaseList, target: str, now: datetime
) -> ReleaseState:
    """The release state of the image ``target`` with ``terms`` at ``now`` (see the module doc).

    Every event of the document counts, whatever ``now`` says: the document is signed and fresh,
    and a clock that is behind must not undo a release (the audit passes ``releases.as_of(t)`` to
    ask about a past moment).
    """
    if terms is None:
        return PUBLIC
    events = releases.for_target(target)
    for event in events:
        if event.action == ACTION_RELEASE:
            return ReleaseState(RELEASED, terms, event)
    holds = [e for e in events if e.action == ACTION_HOLD]
    if holds:
        return ReleaseState(HELD, terms, holds[-1])
    if now >= release_moment(terms):
        return ReleaseState(RELEASED, terms)
    return ReleaseState(PILOT, terms)


def release_date_problem(text: str, now: datetime, field: str) -> str | None:
    """Why ``text`` cannot be a pilot's release date at ``now`` (None when it can): a real date
    after today (UTC) and at most MAX_EMBARGO_DAYS ahead. Today's date would release it at once."""
    try:
        day = (
            date.fromisoformat(text) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) else None
        )
    except ValueError:
        day = None
    today = now.astimezone(UTC).date()
    latest = today + timedelta(days=MAX_EMBARGO_DAYS)
    expected = f"a date from {today + timedelta(days=1)} to {latest} (after today, UTC, and at most {MAX_EMBARGO_DAYS} days ahead)"
    if day is None:
        return field_error(field, text, "a real date YYYY-MM-DD, " + expected)
    if not today < day <= latest:
        return field_error(field, text, expected)
    return None


def release_event(
    target: str, sha256: str, action: str, *, now: datetime, reason: str
) -> ReleaseEvent:
    """A new event at ``now``."""
    return ReleaseEvent(target, sha256, action, format_timestamp(now), reason)
