"""Sign a snapshot and timestamp for whatever the staged roles changed (publish calls this first)."""

from __future__ import annotations

from datetime import datetime

from metadata_templates.custom import format_timestamp
from repo_tool.state.head import snapshot_wanted
from repo_tool.state.repository import Repository


def stage_snapshot(repo: Repository, *, now: datetime, force: bool = False) -> bool:
    """Sign a new snapshot and timestamp when the staged roles changed (or ``force``).

    Returns whether anything was signed.
    """
    head = repo.head
    current = repo.snapshot()
    if (
        not force
        and current is not None
        and {k: v.version for k, v in current.signed.meta.items()} == snapshot_wanted(head)
        and repo.log_binding_current(head)
    ):
        return False
    head = repo.sign_snapshot(head, now=now)
    repo.commit(
        head,
        event={
            "event": "snapshot",
            "at": format_timestamp(now),
            "snapshot": head.snapshot_version,
        },
    )
    return True
