"""Write the static tree a host serves, in an order that keeps it valid for clients at every instant.

The order and the list of files come from ``repo_tool.publish.plan`` (shared with the S3 writer in
``repo_tool.publish.s3``): blobs, delegated roles, targets, snapshot, the transparency log (tiles,
then ``log/checkpoint``), roots, ``timestamp.json`` last. Everything but ``timestamp.json`` and
``log/checkpoint`` is immutable and named by version, hash or size, so files written
before a crash are invisible to clients until the timestamp that references them lands, and the
previous timestamp keeps pointing at a complete previous state. Each file is written atomically.

Only what the out directory lacks is written: publishing one image into a large library writes that
image, its manufacturer's role, targets (if changed), snapshot and timestamp, and reads nothing else.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from tuf.api.metadata import Timestamp

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError
from metadata_templates.locking import LockPolicy, exclusive_lock
from repo_tool.publish.plan import (
    PUBLISH_STEPS,
    TIMESTAMP_PATH,
    Kind,
    PlannedFile,
    SnapshotReader,
    StagedVersions,
    plan_publish,
    published_versions,
    refuse_rollback,
    served_snapshot_version,
)
from repo_tool.publish.superseded import (
    LEDGER_MAX_BYTES,
    LEDGER_NAME,
    Ledger,
    expired_between,
    expired_in,
    snapshot_roles,
)
from repo_tool.state.repository import Repository
from repo_tool.tlog.provider_log import publish_log

__all__ = [
    "LOCK_NAME",
    "PUBLISH_STEPS",
    "PublishReport",
    "StepHook",
    "expire_superseded",
    "read_ledger",
    "repository_plan",
    "tree_lock",
    "write_tree",
]

LOCK_NAME = ".cfl-publish.lock"


@contextlib.contextmanager
def tree_lock(out: Path, policy: LockPolicy) -> Iterator[None]:
    """Hold a published tree's own lock, ``OUT/.cfl-publish.lock``: every publish into ``out``
    (from any repository) and every site build of it take it, so none of them interleave. It
    records its holder and waits as the repository lock does (metadata_templates/locking.py).

    Raises:
        BusyError: another process holds it.
    """
    with exclusive_lock(out / LOCK_NAME, subject=f"the published tree {out}", policy=policy):
        yield


StepHook = Callable[[str], None]


@dataclass
class PublishReport:
    """What one publish wrote."""

    out: Path
    snapshot_version: int = 0
    timestamp_version: int = 0
    signed_new_snapshot: bool = False
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PUBLISH_STEPS, 0))
    # Metadata versions superseded for longer than the grace, deleted (repo_tool/publish/superseded.py).
    superseded_deleted: int = 0
    # The snapshot version the tree's timestamp.json named before this publish (plan.py's
    # served_snapshot_version); the expiry never cuts above it.
    served_snapshot: int | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "snapshot_version": self.snapshot_version,
            "timestamp_version": self.timestamp_version,
            "signed_new_snapshot": self.signed_new_snapshot,
            "written": dict(self.written),
            "superseded_deleted": self.superseded_deleted,
        }


def _write_once(path: Path, data: bytes) -> bool:
    """Write an immutable file; refuse to replace different bytes. Returns whether it was written.

    Raises:
        UnavailableError: the file exists with other content (another library's tree?).
    """
    if path.exists():
        if path.stat().st_size != len(data) or path.read_bytes() != data:
            raise UnavailableError(
                f"{path}: exists with different content; published files are immutable",
                hint="publish into an empty directory or the one this repository published before",
            )
        return False
    atomic_write_bytes(path, data)
    return True


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def repository_plan(
    repo: Repository,
    timestamp_bytes: bytes | None,
    read_snapshot: SnapshotReader,
    where: str = TIMESTAMP_PATH,
) -> list[PlannedFile]:
    """The plan that brings a destination holding ``timestamp_bytes`` up to the repository's head
    (``where`` names it in errors).

    Reads only the repository: the CPL and withdrawals (targets), and for each role the
    destination lacks, what was added since the version it has (recorded at ingest), so a large
    role is not parsed for one image.

    Raises:
        UnavailableError: a target path escapes the targets directory, or the destination
            already serves a newer timestamp, or other bytes of the same version (another
            repository publishes there, or this one was restored from an older backup:
            `refuse_rollback`).
    """
    head = repo.head
    staged = StagedVersions(
        root=head.root_version,
        targets=head.targets_version,
        snapshot=head.snapshot_version,
        timestamp=head.timestamp_version,
        # Retired bins too: the snapshot lists them, so a new destination must serve them.
        roles=head.retired_roles | head.roles,
    )
    refuse_rollback(
        timestamp_bytes,
        repo.metadata_bytes(Timestamp.type, head.timestamp_version),
        head.timestamp_version,
        where,
    )
    done = published_versions(timestamp_bytes, read_snapshot)
    blobs = [(t.path, t.hashes["sha256"]) for t in repo.targets().signed.targets.values()]
    blobs.extend(targets_gained(repo, done))
    return plan_publish(staged, done, blobs)


def targets_gained(repo: Repository, published: dict[str, int]) -> list[tuple[str, str]]:
    """(path, sha256) of every target the head's delegated roles hold beyond the ``published``
    role versions: what was added since (recorded at ingest), so a large role is not parsed for one
    image; the whole role when it is new to the destination or its ingest record is missing."""
    gained: list[tuple[str, str]] = []
    for name, version in sorted(repo.head.roles.items()):
        if published.get(name) == version:
            continue
        added = repo.added_since(name, published[name], version) if name in published else None
        if added is None:
            added = [(t.path, t.hashes["sha256"]) for t in repo.role(name).signed.targets.values()]
        gained.extend(added)
    return gained


def planned_bytes(repo: Repository, planned: PlannedFile) -> bytes:
    """The content of one planned file, from the repository.

    Raises:
        UnavailableError: a blob is missing or corrupt in the store.
    """
    if planned.sha256 is not None:
        return repo.blobs.get(planned.sha256)
    assert planned.role is not None and planned.version is not None
    return repo.metadata_bytes(planned.role, planned.version)


def _write_planned(repo: Repository, path: Path, planned: PlannedFile) -> bool:
    """Write one planned file if the folder needs it; returns whether it was written."""
    if planned.kind is Kind.MUTABLE:
        data = planned_bytes(repo, planned)
        if _read_or_none(path) == data:
            return False
        atomic_write_bytes(path, data)
        return True
    if planned.step == "blobs":
        # A blob is named by its hash and may be 10 MB: its presence is enough.
        if path.exists():
            return False
        atomic_write_bytes(path, planned_bytes(repo, planned))
        return True
    return _write_once(path, planned_bytes(repo, planned))


def write_tree(repo: Repository, out: Path, report: PublishReport, hook: StepHook) -> None:
    """Bring ``out`` up to date with the snapshot and timestamp ``repo`` has staged already
    (repo_tool/ops/publish.py signs them first), step by step in `PUBLISH_STEPS` order, and record
    in ``report`` what was written. The caller holds the repository lock and ``out``'s
    (`LOCK_NAME`); ``hook`` is called with the name of each step before it runs.

    Raises:
        UnavailableError: a blob is corrupt, or an immutable file conflicts.
    """
    head = repo.head
    metadata_dir = out / "metadata"
    served = _read_or_none(metadata_dir / "timestamp.json")
    report.served_snapshot = served_snapshot_version(served)
    plan = repository_plan(
        repo,
        served,
        lambda version: _read_or_none(metadata_dir / f"{version}.snapshot.json"),
        str(metadata_dir / "timestamp.json"),
    )
    by_step: dict[str, list[PlannedFile]] = {step: [] for step in PUBLISH_STEPS}
    for planned in plan:
        by_step[planned.step].append(planned)
    for step in PUBLISH_STEPS:
        hook(step)
        if step == "log" and repo.config.log is not None:
            # Tiles, then the checkpoint the new timestamp binds (repo_tool/tlog/provider_log.py).
            report.written["log"] += publish_log(repo.log_dir, out / "log", repo.log_state())
        for planned in by_step[step]:
            if _write_planned(repo, out / planned.path, planned):
                report.written[step] += 1
    report.snapshot_version = head.snapshot_version
    report.timestamp_version = head.timestamp_version


def read_ledger(path: Path) -> bytes | None:
    """The ledger's bytes when it is a regular file of this folder: never through a link (another
    destination's ledger is no clock for this one, and the write replaces the link, not its
    target), never a FIFO or a device (a read that would block the publish, or never end), never
    more than a ledger may hold."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, LEDGER_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def expired_names(
    repo: Repository, ledger: Ledger, cut: int, listing: Callable[[], list[str]]
) -> list[str]:
    """The ``metadata/`` names superseded at ``cut`` and not expired before (by the ledger's
    floor), from the versions the repository's own snapshots list; ``listing`` (what the
    destination's ``metadata/`` holds) is called only for a first expiry, or when the floor's
    snapshot is no longer in the repository's state.

    Raises:
        UnavailableError: the cut's snapshot is not in the repository's state.
    """
    cut_roles = snapshot_roles(repo.metadata_bytes("snapshot", cut))
    if ledger.floor is not None:
        try:
            floor_roles = snapshot_roles(repo.metadata_bytes("snapshot", ledger.floor))
        except UnavailableError:
            pass
        else:
            return expired_between(ledger.floor, floor_roles, cut, cut_roles)
    return expired_in(listing(), cut, cut_roles)


def expire_superseded(
    repo: Repository,
    out: Path,
    *,
    now: datetime,
    grace: timedelta | None,
    served_before: int | None = None,
) -> int:
    """After the timestamp has landed: record that ``out`` serves the head's snapshot from ``now``
    and delete the metadata versions superseded for longer than ``grace`` (never, with None).
    Returns how many files were deleted. The caller holds both locks. ``served_before``: the
    snapshot version ``out`` served before this publish (`Ledger.cut`).

    Crash-safe in any order: the files go first, then the ledger, so a kill in between only makes
    the next publish look for files that are gone. Nothing here can fail a publish but a full disk
    on the ledger's write: a version that cannot be deleted is left (the next first-expiry
    listing finds it), and a ledger that does not read only delays expiry.
    """
    if not repo.head.snapshot_version:
        return 0
    metadata_dir = out / "metadata"
    ledger_path = metadata_dir / LEDGER_NAME
    ledger = Ledger.from_bytes(read_ledger(ledger_path))
    head = repo.head.snapshot_version
    recorded = ledger.within(head, now).record(head, now)
    cut = recorded.cut(now, grace, served_before) if grace is not None else None
    deleted = 0
    if cut is not None:
        try:
            names = expired_names(repo, recorded, cut, lambda: os.listdir(metadata_dir))
        except (UnavailableError, OSError):
            names = None  # the cut's snapshot is gone from the state: nothing is known to delete
        if names is not None:
            deleted, finished = _delete_versions(metadata_dir, names)
            if finished:
                recorded = recorded.expired_to(cut)
    if recorded != ledger:
        # A directory in the ledger's place: no clock is kept, so nothing more is deleted.
        with contextlib.suppress(IsADirectoryError):
            atomic_write_bytes(ledger_path, recorded.to_bytes())
    return deleted


def _delete_versions(metadata_dir: Path, names: list[str]) -> tuple[int, bool]:
    """Unlink each name that is a file (or a link); a directory so named is no version and is left.
    Returns how many went, and False when one could not be deleted (the floor then stays, so the
    next publish tries again)."""
    deleted = 0
    for name in names:
        path = metadata_dir / name
        try:
            if stat.S_ISDIR(path.lstat().st_mode):
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            return deleted, False
        deleted += 1
    return deleted, True
