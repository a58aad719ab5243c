"""Ingest suppliers' delivery-outcome reports, publish the combined figures, hold failing firmware
(issue 24).

One ingest is one commit: every accepted report's envelope into the blob store, the private
ledger (every report ever accepted, per supplier: never published), and a new ``cfl/outcomes.json``
signed by the online ``cfl-provider`` role with the combined figures per image and, appended, a
hold for each image the policy now stops (``due_holds``). The transparency log gets one
``outcomes-ingest`` event (how many reports, the document's hash: nothing about who reported
what) and one ``outcome-hold`` event per hold. A crash before the commit leaves nothing; after it,
a re-run finds the same bytes "already ingested".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from tuf.api.metadata import TargetFile, Targets

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import RejectedInputError, field_error
from metadata_templates.outcomes import (
    ACTION_HOLD,
    ACTION_RELEASE,
    BY_POLICY,
    BY_PROVIDER,
    OutcomesDocument,
    combine,
    due_holds,
    hold_reason,
    new_event,
)
from repo_tool.outcomes.checks import (
    Received,
    Verdict,
    judge_report,
    ledger_from_bytes,
    ledger_to_bytes,
)
from repo_tool.state import pilots
from repo_tool.state.bins import image_role
from repo_tool.state.head import Head
from repo_tool.state.repository import Repository

INGEST_EVENT = "outcomes-ingest"
HOLD_EVENT = "outcome-hold"
RELEASE_EVENT = "outcome-release"


@dataclass(frozen=True)
class IngestResult:
    verdicts: tuple[Verdict, ...]
    document: OutcomesDocument
    held: tuple[str, ...]  # targets the policy held in this ingest

    @property
    def accepted(self) -> int:
        return sum(v.status == "accepted" for v in self.verdicts)

    @property
    def rejected(self) -> int:
        return sum(v.status == "rejected" for v in self.verdicts)


def document(repo: Repository) -> OutcomesDocument:
    """The staged ``cfl/outcomes.json`` (an empty one before the first ingest)."""
    sha = repo.head.outcomes_sha256
    if sha is None:
        return OutcomesDocument(updated="1970-01-01T00:00:00Z", policy=repo.config.outcomes)
    return OutcomesDocument.from_bytes(repo.blobs.get(sha))


def ledger(repo: Repository) -> tuple[Received, ...]:
    """Every report accepted so far, oldest first (private to the provider)."""
    sha = repo.head.outcome_reports_sha256
    return ledger_from_bytes(repo.blobs.get(sha)) if sha else ()


def _image_sha256(
    repo: Repository, target: str, roles: dict[str, Targets] | None = None
) -> str | None:
    """The SHA-256 the library's signed role lists for the image ``target`` (None: no such
    image). ``roles`` caches the roles read, so a report of thousands of images in one bin
    parses that bin once."""
    if not naming.is_image_target_path(target):
        return None
    role = image_role(repo, target)
    if role is None:
        return None
    cache = {} if roles is None else roles
    if role not in cache:
        cache[role] = repo.role(role).signed
    listed = cache[role].targets.get(target)
    return None if listed is None else str(listed.hashes["sha256"])


def ingest_reports(
    repo: Repository, reports: list[tuple[str, bytes]], *, now: datetime, from_folder: bool
) -> IngestResult:
    """Judge and commit ``reports`` ((source, envelope bytes), in order). The caller holds the
    repository lock. Nothing is committed when none is accepted.

    Raises:
        ConfigurationError: the provider's keys at hand cannot sign cfl/outcomes.json.
    """
    registry = repo.suppliers()
    received = list(ledger(repo))
    roles: dict[str, Targets] = {}
    verdicts = []
    for source, data in reports:
        verdict = judge_report(
            source,
            data,
            registry=registry,
            image_sha256=lambda t: _image_sha256(repo, t, roles),
            received=received,
            now=now,
            expect_name=from_folder,
        )
        if verdict.status == "accepted":
            assert verdict.report is not None and verdict.envelope_sha256 is not None
            repo.blobs.put(data)
            received.append(
                Received(
                    verdict.report.entity_id,
                    verdict.report.period,
                    verdict.envelope_sha256,
                    format_timestamp(now),
                    verdict.report,
                )
            )
        verdicts.append(verdict)
    earlier = document(repo)
    accepted = [v for v in verdicts if v.status == "accepted"]
    if not accepted:
        return IngestResult(tuple(verdicts), earlier, ())
    policy = repo.config.outcomes
    images = combine(r.report for r in received)
    since = _suppliers_since_release(received, earlier)
    base = replace(
        earlier, updated=format_timestamp(now), policy=policy, images=tuple(images.values())
    )
    holds = [
        new_event(
            image,
            image.target,
            image.sha256,
            ACTION_HOLD,
            BY_POLICY,
            now=now,
            reason=hold_reason(image, policy),
        )
        for image in due_holds(images, base, policy, since)
    ]
    updated = replace(base, events=(*base.events, *holds))
    head = _stage(repo, updated, received, now)
    events = {f"hold{i}": {"event": HOLD_EVENT, **event.to_dict()} for i, event in enumerate(holds)}
    repo.commit(
        head,
        event={
            "event": INGEST_EVENT,
            "at": format_timestamp(now),
            "reports": len(accepted),
            "document_sha256": head.outcomes_sha256,
        },
        **events,
    )
    return IngestResult(tuple(verdicts), updated, tuple(e.target for e in holds))


def _suppliers_since_release(
    received: list[Received], document: OutcomesDocument
) -> dict[str, int]:
    """Per target, how many suppliers reported it after its last release (for ``due_holds``)."""
    found: dict[str, set[str]] = {}
    for r in received:
        for image in r.report.images:
            last = document.last_release(image.target)
            if last is None or r.received > last.at:
                found.setdefault(image.target, set()).add(r.entity_id)
    return {t: len(s) for t, s in found.items()}


def _stage(
    repo: Repository, updated: OutcomesDocument, received: list[Received], now: datetime
) -> Head:
    data = updated.to_bytes()
    sha = repo.blobs.put(data)
    ledger_sha = repo.blobs.put(ledger_to_bytes(received))

    def change(targets: Targets) -> None:
        targets.targets[naming.OUTCOMES_TARGET_PATH] = TargetFile(
            len(data), {"sha256": sha}, naming.OUTCOMES_TARGET_PATH
        )

    head = repo.stage_provider_change(change, now)
    return replace(head, outcomes_sha256=sha, outcome_reports_sha256=ledger_sha)


def is_held(repo: Repository, target: str) -> bool:
    return target in document(repo).holds()


def change_hold(
    repo: Repository, target: str, action: str, reason: str | None, *, now: datetime
) -> tuple[object, bool]:
    """The provider holds a released image (``ACTION_HOLD``) or lifts a hold (``ACTION_RELEASE``);
    signed, published, logged. Returns the event and whether this call recorded it (False: the
    same decision with the same reason is in force already). The caller holds the lock.

    Raises:
        RejectedInputError: not an image of the library; lifting an image that is not held.
        ConfigurationError: no reason, or not one line.
    """
    text = pilots.checked_reason(reason or "")
    sha = _image_sha256(repo, target)
    if sha is None:
        raise RejectedInputError(field_error("TARGET", target, "an image target in the library"))
    current = document(repo)
    held = current.holds()
    if action == ACTION_RELEASE and target not in held:
        raise RejectedInputError(
            field_error("TARGET", target, "an image on hold (`cfl-repo outcomes show`)")
        )
    if action == ACTION_HOLD and target in held:
        earlier = held[target]
        if earlier.reason == text:
            return earlier, False
        raise RejectedInputError(
            f"TARGET: {target} is on hold already ({earlier.at}, reason {earlier.reason!r}); "
            "expected `cfl-repo release TARGET --reason TEXT` to lift it first"
        )
    event = new_event(current.image(target), target, sha, action, BY_PROVIDER, now=now, reason=text)
    updated = replace(
        current,
        updated=format_timestamp(now),
        policy=repo.config.outcomes,
        events=(*current.events, event),
    )
    head = _stage(repo, updated, list(ledger(repo)), now)
    kind = HOLD_EVENT if action == ACTION_HOLD else RELEASE_EVENT
    repo.commit(head, event={"event": kind, **event.to_dict()})
    return event, True
