"""Write the static tree a host serves, in an order that keeps it valid for clients at every instant.

Order: every root version, then blobs, delegated roles, targets, snapshot, the transparency log
(tiles, then ``log/checkpoint``) and ``timestamp.json`` last. Everything but ``timestamp.json`` and
``log/checkpoint`` is immutable and named by version, hash or size, so files written before a crash
are invisible to clients until the timestamp that references them lands, and the previous timestamp
keeps pointing at a complete previous state. Each file is written atomically.

Only what the out directory lacks is written: publishing one image into a large library writes that
image, its manufacturer's role, targets (if changed), snapshot and timestamp, and reads nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from metadata_templates import naming
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError
from metadata_templates.locking import exclusive_lock
from repo_tool.ops.snapshot import stage_snapshot
from repo_tool.output_paths import make_dir
from repo_tool.repository import Repository
from repo_tool.tlog import publish_log

PUBLISH_STEPS = ("roots", "blobs", "delegated-roles", "targets", "snapshot", "log", "timestamp")
LOCK_NAME = ".cfl-publish.lock"

StepHook = Callable[[str], None]


@dataclass
class PublishReport:
    """What one publish wrote."""

    out: Path
    snapshot_version: int = 0
    timestamp_version: int = 0
    signed_new_snapshot: bool = False
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PUBLISH_STEPS, 0))

    def to_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "snapshot_version": self.snapshot_version,
            "timestamp_version": self.timestamp_version,
            "signed_new_snapshot": self.signed_new_snapshot,
            "written": dict(self.written),
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


def _published_versions(metadata_dir: Path) -> dict[str, int]:
    """Role name -> version, as listed by the snapshot that ``timestamp.json`` in ``metadata_dir``
    names; empty when there is none or it is unreadable (then every role is checked)."""
    try:
        timestamp = Metadata[Timestamp].from_bytes((metadata_dir / "timestamp.json").read_bytes())
        version = timestamp.signed.snapshot_meta.version
        snapshot = Metadata[Snapshot].from_bytes(
            (metadata_dir / f"{version}.{Snapshot.type}.json").read_bytes()
        )
    except (OSError, RepositoryError):
        return {}
    return {name.removesuffix(".json"): m.version for name, m in snapshot.signed.meta.items()}


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
        report.signed_new_snapshot = stage_snapshot(repo, now=now)
        head = repo.head
        metadata_dir = out / "metadata"
        targets_dir = out / "targets"

        hook("roots")
        for version in range(1, head.root_version + 1):
            if _write_once(
                metadata_dir / f"{version}.{Root.type}.json",
                repo.metadata_bytes(Root.type, version),
            ):
                report.written["roots"] += 1

        hook("blobs")
        # A role version the out directory's current snapshot lists was written by a publish
        # that completed; any other is written now, or compared if a file squats on its name.
        done = _published_versions(metadata_dir)
        new_roles = [
            name for name, version in sorted(head.roles.items()) if done.get(name) != version
        ]
        blobs = [(t.path, t.hashes["sha256"]) for t in repo.targets().signed.targets.values()]
        for name in new_roles:
            # Incremental when the out tree has an earlier version: only what was added since
            # (recorded at ingest) can be missing, so a large role is not parsed for one image.
            added = repo.added_since(name, done[name], head.roles[name]) if name in done else None
            if added is None:
                added = [
                    (t.path, t.hashes["sha256"]) for t in repo.role(name).signed.targets.values()
                ]
            blobs.extend(added)
        for path, sha in blobs:
            destination = targets_dir / naming.blob_name(path, sha)
            if ".." in Path(path).parts or Path(path).is_absolute():
                # Only a provider-signed target could get here (the gateway checks manufacturers'),
                # but a path must never steer a write outside the tree.
                raise UnavailableError(f"target path {path!r}: escapes the targets directory")
            if not destination.exists():
                atomic_write_bytes(destination, repo.blobs.get(sha))
                report.written["blobs"] += 1

        hook("delegated-roles")
        for name in new_roles:
            version = head.roles[name]
            if _write_once(
                metadata_dir / f"{version}.{name}.json", repo.metadata_bytes(name, version)
            ):
                report.written["delegated-roles"] += 1

        hook("targets")
        version = head.targets_version
        if _write_once(
            metadata_dir / f"{version}.{Targets.type}.json",
            repo.metadata_bytes(Targets.type, version),
        ):
            report.written["targets"] += 1

        hook("snapshot")
        version = head.snapshot_version
        if _write_once(
            metadata_dir / f"{version}.{Snapshot.type}.json",
            repo.metadata_bytes(Snapshot.type, version),
        ):
            report.written["snapshot"] += 1

        hook("log")  # tlog hook: tiles, then the checkpoint the new timestamp binds
        if repo.config.log is not None:
            report.written["log"] += publish_log(repo.log_dir, out / "log", repo.log_state())

        hook("timestamp")
        timestamp = repo.metadata_bytes(Timestamp.type, head.timestamp_version)
        current = metadata_dir / f"{Timestamp.type}.json"
        if not current.exists() or current.read_bytes() != timestamp:
            atomic_write_bytes(current, timestamp)
            report.written["timestamp"] += 1
        report.snapshot_version = head.snapshot_version
        report.timestamp_version = head.timestamp_version
    return report
