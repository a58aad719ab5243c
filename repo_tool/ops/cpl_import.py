"""Import the Central Products List: store it and publish it as the provider target ``cfl/cpl.json``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tuf.api.metadata import TargetFile, Targets

from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import format_timestamp
from repo_tool.state.head import provider_version
from repo_tool.state.repository import Repository


def import_cpl(repo: Repository, doc: CplDocument, *, now: datetime) -> int:
    """Store the CPL and publish it as target ``cfl/cpl.json`` of the role that signs provider
    documents (``cfl-provider``, or targets in a repository without it).

    Returns that role's new version.
    """
    data = doc.to_bytes()
    sha = repo.blobs.put(data)

    def change(targets: Targets) -> None:
        targets.targets[naming.CPL_TARGET_PATH] = TargetFile(
            len(data), {"sha256": sha}, naming.CPL_TARGET_PATH
        )

    head = repo.stage_provider_change(change, now)
    repo.commit(
        replace(head, cpl_sha256=sha),
        event={
            "event": "cpl-import",
            "at": format_timestamp(now),
            "cpl_sha256": sha,
            "source_sha256": doc.source_sha256,
            "entries": len(doc.entries),
        },
    )
    return provider_version(head)
