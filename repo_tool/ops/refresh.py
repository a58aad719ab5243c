"""Re-sign, in one commit, the provider's roles whose remaining validity is below the policy margin."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from tuf.api.metadata import Snapshot, Targets, Timestamp

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from repo_tool.state.repository import Repository

logger = logging.getLogger(__name__)


def refresh(repo: Repository, *, now: datetime, force: bool = False) -> list[str]:
    """Re-sign the roles the provider holds keys for whose remaining validity is below the
    policy's margin, in one commit. Returns the roles re-signed."""
    margin = repo.config.policy.refresh_margin_fraction
    resigned: list[str] = []

    def due(expires: datetime, role: str) -> bool:
        return force or (expires - now) < repo.config.policy.expiry(role) * margin

    head = repo.head
    targets_expires = repo.targets().signed.expires
    if due(targets_expires, Targets.type) and repo.held_offline(Targets.type):
        # An offline targets key must never stop snapshot and timestamp from being re-signed; the
        # targets refresh is a ceremony (status and this warning say when).
        logger.warning(
            "targets expires %s and its keys are offline: run `cfl-repo ceremony start targets`",
            targets_expires.isoformat(),
        )
    elif due(targets_expires, Targets.type):
        head = replace(head, targets_version=repo.stage_targets(lambda t: None, now))
        resigned.append(Targets.type)
    if repo.provider_delegated:
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
    repo.commit(
        head,
        event={
            "event": "refresh",
            "at": format_timestamp(now),
            "resigned": resigned,
            "targets": head.targets_version,
            "snapshot": head.snapshot_version,
        },
    )
    return resigned
