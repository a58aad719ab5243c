"""Staging an advisory revision the gateway admitted (repo_tool/gateway/advisory.py): its bytes into
the blob store, the role (or the bin) the manufacturer re-signed exactly as signed, and one commit
whose ``advisory`` event enters the journal and the transparency log.

Nothing is ever replaced: a later revision is a new target beside the earlier ones, so the log and
the published tree keep the advisory's whole history.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from metadata_templates.custom import format_timestamp
from metadata_templates.tlog import events
from repo_tool.gateway.model import AcceptedAdvisory
from repo_tool.state.repository import Repository


def commit_advisory(
    repo: Repository, bundle_path: Path, data: bytes, accepted: AcceptedAdvisory, now: datetime
) -> None:
    """Write the blob and the signed role versions (new immutable files first), then commit."""
    sha = repo.blobs.put(data)
    for role in accepted.staged:
        version = role.role.signed.version
        repo.write_staged(role.name, version, role.data)
        repo.write_added(
            role.name,
            version,
            [accepted.target] if accepted.target.path in role.role.signed.targets else [],
        )
    head = repo.head
    roles = dict(head.roles)
    for role in accepted.staged:
        roles[role.name] = role.role.signed.version
    advisory = accepted.advisory
    repo.commit(
        replace(head, roles=roles),
        event={
            "event": events.ADVISORY,
            "at": format_timestamp(now),
            "bundle": bundle_path.name,
            "target": accepted.target.path,
            "sha256": sha,
            "advisory": advisory.id,
            "revision": advisory.revision,
            "status": advisory.status,
            "severity": advisory.severity,
            "cvss": advisory.cvss,
            "affected_cpl_entries": list(advisory.affected_cpl_entries),
            "fixed_by": list(advisory.fixed_by),
            "role": accepted.staged[0].name,
            "role_version": accepted.staged[0].role.signed.version,
        },
    )
