"""Re-sign, in one commit, the provider's roles whose remaining validity is below the policy margin,
and record the release of every pilot image whose release date has come (issue 22)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from tuf.api.metadata import Snapshot, Targets, Timestamp

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.releases import ACTION_RELEASE, ReleaseEvent, release_event
from metadata_templates.tlog import events
from repo_tool.state import pilots
from repo_tool.state.head import Head, provider_signing_role
from repo_tool.state.repository import Repository

logger = logging.getLogger(__name__)


def refresh(repo: Repository, *, now: datetime, force: bool = False) -> list[str]:
    """Re-sign the roles the provider holds keys for whose remaining validity is below the
    policy's margin, in one commit. Returns the roles re-signed.

    Pilot images whose release date has come and that the provider does not hold are released in
    the same commit: one ``release`` event each (journal and transparency log) and a new
    ``cfl/releases.json``, so clients and the host need not rely on their own clocks."""
    margin = repo.config.policy.refresh_margin_fraction
    resigned: list[str] = []

    def due(expires: datetime, role: str) -> bool:
        return force or (expires - now) < repo.config.policy.expiry(role) * margin

    head, released = _release_due(repo, now)
    if released:
        resigned.append(provider_signing_role(head))
    targets_expires = repo.targets().signed.expires
    if Targets.type in resigned:
        pass  # the releases were signed into targets (no cfl-provider): re-signed already
    elif due(targets_expires, Targets.type) and repo.held_offline(Targets.type):
        # An offline targets key must never stop snapshot and timestamp from being re-signed; the
        # targets refresh is a ceremony (status and this warning say when).
        logger.warning(
            "targets expires %s and its keys are offline: run `cfl-repo ceremony start targets`",
            targets_expires.isoformat(),
        )
    elif due(targets_expires, Targets.type):
        head = replace(head, targets_version=repo.stage_targets(lambda t: None, now))
        resigned.append(Targets.type)
    if repo.provider_delegated and naming.PROVIDER_ROLE not in resigned:
        # The online cfl-provider role lives 30 days and is re-signed here, by cron, like snapshot.
        provider = naming.PROVIDER_ROLE
        provider_expires = repo.role(provider).signed.expires
        if due(provider_expires, provider) and repo.held_offline(provider):
            # Like targets: keys it cannot use must not stop snapshot and timestamp.
            logger.warning(
                "%s expires %s and its keys are not usable here: give it an online key with "
                "`cfl-repo provider rotate-key --proposal`",
                provider,
                provider_expires.isoformat(),
            )
        elif due(provider_expires, provider):
            version = repo.stage_provider_role(lambda t: None, now)
            head = replace(head, roles={**head.roles, provider: version})
            resigned.append(provider)
    snapshot, timestamp = repo.snapshot(), repo.timestamp()
    stale = (
        snapshot is None
        or timestamp is None
        or due(snapshot.signed.expires, Snapshot.type)
        or due(timestamp.signed.expires, Timestamp.type)
    )
    if not (stale or resigned):
        return resigned
    head = repo.sign_snapshot(head, now=now)
    resigned += [Snapshot.type, Timestamp.type]
    # One lodged `release` event per image released (the refresh itself is not logged).
    more: dict[str, dict[str, Any]] = {
        f"release-{i}": {"event": events.RELEASE, **e.to_dict()} for i, e in enumerate(released)
    }
    repo.commit(
        head,
        event={
            "event": "refresh",
            "at": format_timestamp(now),
            "resigned": resigned,
            "targets": head.targets_version,
            "snapshot": head.snapshot_version,
        },
        **more,
    )
    return resigned


def _release_due(repo: Repository, now: datetime) -> tuple[Head, list[ReleaseEvent]]:
    """Stage the release of every waiting pilot image whose date has come and that is not held;
    returns the head to build on and the events staged (none: the committed head)."""
    ready = [
        image
        for image in pilots.waiting(repo, now)
        if image.state.released and not image.state.recorded
    ]
    if not ready:
        return repo.head, []
    if not repo.provider_delegated and repo.held_offline(Targets.type):
        # Without cfl-provider the document is a targets change, a ceremony: clients and the site
        # release by the date alone meanwhile; the host keeps refusing until it is recorded.
        logger.warning(
            "%d pilot image(s) reached their release date but %s is signed by the offline "
            "targets key: adopt cfl-provider (`cfl-repo provider adopt`) to record releases",
            len(ready),
            naming.RELEASES_TARGET_PATH,
        )
        return repo.head, []
    released = [
        release_event(
            image.target,
            image.sha256,
            ACTION_RELEASE,
            now=now,
            reason=f"release date {image.terms.release_at} reached",
        )
        for image in ready
    ]
    document = pilots.releases(repo).with_added(*released)
    head = pilots.stage_releases(repo, document, {e.target for e in released}, now)
    return head, released
