"""Publish to a folder: the one operation that signs a new snapshot and timestamp for whatever the
staged roles changed (repo_tool/ops/snapshot.py) and then has the folder writer
(repo_tool/publish/folder.py) bring the published tree up to date, both under the repository lock
and the folder's, so no other command or publish runs in between.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from metadata_templates.locking import exclusive_lock
from metadata_templates.steps import step
from repo_tool.ops.snapshot import stage_snapshot
from repo_tool.output_paths import make_dir
from repo_tool.publish.folder import LOCK_NAME, PublishReport, StepHook, write_tree
from repo_tool.state.repository import Repository


def publish(
    repo: Repository, out: Path, *, now: datetime, between_steps: StepHook | None = None
) -> PublishReport:
    """Sign a new snapshot/timestamp if anything changed, then bring ``out`` up to date.

    ``between_steps`` is called with the name of each step before it runs (tests inject crashes).

    Raises:
        UnavailableError: a lock is held, a blob is corrupt, or an immutable file conflicts.
        ConfigurationError: ``out`` is, or is under, a regular file.
    """
    hook = between_steps or (lambda step: None)
    report = PublishReport(out=out)
    make_dir(out, field="--out")
    with repo.locked(), exclusive_lock(out / LOCK_NAME, what="publish into this directory"):
        with step("signing the snapshot"):
            report.signed_new_snapshot = stage_snapshot(repo, now=now)
        with step(f"writing the published tree {out}"):
            write_tree(repo, out, report, hook)
    return report
