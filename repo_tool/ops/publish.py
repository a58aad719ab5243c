"""Publish to a folder: the one operation that signs a new snapshot and timestamp for whatever the
staged roles changed (repo_tool/ops/snapshot.py) and then has the folder writer
(repo_tool/publish/folder.py) bring the published tree up to date, and, for `cfl-repo publish`,
rebuilds the website from it, all under the repository lock and the folder's, so no other command,
publish or site build runs in between (docs/operator.md, "Two jobs at once").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from metadata_templates.steps import step
from repo_tool.ops.snapshot import stage_snapshot
from repo_tool.output_paths import make_dir
from repo_tool.publish.folder import (
    PublishReport,
    StepHook,
    expire_superseded,
    tree_lock,
    write_tree,
)
from repo_tool.publish.superseded import DEFAULT_GRACE, EXPIRY_STEP
from repo_tool.state.repository import Repository

if TYPE_CHECKING:
    from repo_tool.publish.site_step import PublishedSite


def publish(
    repo: Repository,
    out: Path,
    *,
    now: datetime,
    between_steps: StepHook | None = None,
    keep_superseded: timedelta | None = DEFAULT_GRACE,
) -> PublishReport:
    """Sign a new snapshot/timestamp if anything changed, then bring ``out`` up to date, then
    delete the metadata versions superseded for longer than ``keep_superseded`` (None: never;
    repo_tool/publish/superseded.py).

    ``between_steps`` is called with the name of each step before it runs (tests inject crashes),
    and with ``EXPIRY_STEP`` before the deletes.

    Raises:
        BusyError: a lock is held by another process.
        UnavailableError: a blob is corrupt, or an immutable file conflicts.
        ConfigurationError: ``out`` is, or is under, a regular file.
    """
    make_dir(out, field="--out")
    with repo.locked(), tree_lock(out, repo.lock.policy):
        return _write(repo, out, now, between_steps or (lambda _name: None), keep_superseded)


def _write(
    repo: Repository, out: Path, now: datetime, hook: StepHook, keep: timedelta | None
) -> PublishReport:
    """Sign, write and expire; the caller holds both locks. Each part is a ``step``, so a full
    disk's error line says which one it stopped (metadata_templates/steps.py)."""
    report = PublishReport(out=out)
    with step("signing the snapshot"):
        report.signed_new_snapshot = stage_snapshot(repo, now=now)
    with step(f"writing the published tree {out}"):
        write_tree(repo, out, report, hook)
    hook(EXPIRY_STEP)
    with step(f"deleting superseded metadata from {out}"):
        report.superseded_deleted = expire_superseded(
            repo, out, now=now, grace=keep, served_before=report.served_snapshot
        )
    return report


@dataclass(frozen=True)
class PublishedWithSite:
    """What `publish_with_site` did: the tree, then its website."""

    report: PublishReport
    site: PublishedSite


def publish_with_site(
    repo: Repository,
    out: Path,
    *,
    now: datetime,
    on_published: Callable[[PublishReport], None] | None = None,
    keep_superseded: timedelta | None = DEFAULT_GRACE,
) -> PublishedWithSite:
    """`publish`, then rebuild ``out/site`` told which images this publish added, under the same
    locks: two publishes never build one site at once, nor does a publish land between the tree
    state read for the hint and the build. The site's verification recalls role files from the
    repository's verified-role memo (repo_tool/verify/memo.py). ``on_published`` is told the
    tree's report before the site is built.

    Raises:
        BusyError, UnavailableError, ConfigurationError: as `publish`.
        VerificationError: the tree just written does not verify (the site is left as it was).
    """
    # Imported here: `refresh` and the tests' publishes never render a site (Jinja2).
    from repo_tool.publish.site_step import build_published_site, publish_hint, tree_state
    from repo_tool.verify.memo import VerifyMemo

    make_dir(out, field="--out")
    with repo.locked(), tree_lock(out, repo.lock.policy):
        before = tree_state(out)  # what the tree served before, so the site is told what is new
        report = _write(repo, out, now, lambda _name: None, keep_superseded)
        if on_published is not None:
            on_published(report)
        site = build_published_site(
            out,
            repo.metadata_bytes("root", 1),
            now=now,
            hint=publish_hint(repo, before),
            memo=VerifyMemo.of_repository(repo.path),
        )
    return PublishedWithSite(report, site)
