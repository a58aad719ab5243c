"""What a publish writes, and in which order: a pure plan shared by the folder and the S3 writers.

Order: blobs, delegated roles, targets, snapshot, every root version, and ``timestamp.json`` last.
Everything but ``timestamp.json`` is named by version or hash and immutable, so files written before
a crash stay invisible to clients until the timestamp that references them lands.

A new root goes up just before the timestamp, not first: clients probe ``N+1.root.json`` on every
refresh, and a root that rotates the targets, snapshot or timestamp keys would make them reject the
still-current (old-key) metadata for as long as the rest of the upload takes. Landing it right
before the timestamp signed under it shrinks that window to one request, which matters on object
storage where an upload of many blobs can take minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePosixPath
from typing import Any

import orjson
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from metadata_templates import naming
from metadata_templates.errors import UnavailableError

# "log" plans no file here: the writers copy the transparency log's tiles and checkpoint
# (repo_tool/tlog/provider_log.py) at that step, after the snapshot and before a new root and the timestamp.
PUBLISH_STEPS = ("blobs", "delegated-roles", "targets", "snapshot", "log", "roots", "timestamp")
TIMESTAMP_PATH = f"metadata/{Timestamp.type}.json"

# Reads ``metadata/<version>.snapshot.json`` from a destination; None when it is not there.
SnapshotReader = Callable[[int], bytes | None]


class Kind(Enum):
    """How a planned file may be written."""

    # Named by version or hash: written once, never replaced, cacheable forever.
    IMMUTABLE = "immutable"
    # metadata/timestamp.json: replaced on every publish, never cached.
    MUTABLE = "mutable"


@dataclass(frozen=True)
class PlannedFile:
    """One file of the published tree.

    Attributes:
        step: one of ``PUBLISH_STEPS``.
        path: relative POSIX path inside the tree (``metadata/3.targets.json``).
        kind: immutable, or the one mutable file.
        role: for metadata, the role name; None for a blob.
        version: for metadata, the version to write; None for a blob.
        sha256: for a blob, its SHA-256; None for metadata.
    """

    step: str
    path: str
    kind: Kind
    role: str | None = None
    version: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class StagedVersions:
    """The versions a publish brings the tree up to (the repository's head, as plain values)."""

    root: int
    targets: int
    snapshot: int
    timestamp: int
    roles: Mapping[str, int]


def _metadata(step: str, role: str, version: int) -> PlannedFile:
    return PlannedFile(
        step, f"metadata/{version}.{role}.json", Kind.IMMUTABLE, role=role, version=version
    )


def blob_path(target_path: str, sha256: str) -> str:
    """``targets/<dirs>/<sha256>.<name>`` for one target.

    Raises:
        UnavailableError: the target path would steer a write outside the tree.
    """
    parts = PurePosixPath(target_path).parts
    if ".." in parts or target_path.startswith("/") or not parts:
        # Only a provider-signed target could get here (the gateway checks manufacturers'), but a
        # path must never steer a write outside the tree.
        raise UnavailableError(f"target path {target_path!r}: escapes the targets directory")
    return f"targets/{naming.blob_name(target_path, sha256)}"


def new_roles(staged: StagedVersions, published: Mapping[str, int]) -> list[str]:
    """Delegated roles whose staged version the destination's current snapshot does not list."""
    return [name for name, v in sorted(staged.roles.items()) if published.get(name) != v]


def plan_publish(
    staged: StagedVersions,
    published: Mapping[str, int],
    blobs: Iterable[tuple[str, str]],
) -> list[PlannedFile]:
    """Every file a publish must make sure of, in the order it must land.

    Args:
        staged: the versions to publish.
        published: role name -> version as listed by the snapshot the destination's current
            timestamp names (empty when there is none); roles already there are not planned.
        blobs: (target path, SHA-256) of every blob that may be missing at the destination.

    Returns:
        The files, ordered by ``PUBLISH_STEPS``; a blob listed twice is planned once.

    Raises:
        UnavailableError: a target path escapes the targets directory.
    """
    plan: list[PlannedFile] = []
    seen: set[str] = set()
    for target_path, sha256 in blobs:
        path = blob_path(target_path, sha256)
        if path not in seen:
            seen.add(path)
            plan.append(PlannedFile("blobs", path, Kind.IMMUTABLE, sha256=sha256))
    for name in new_roles(staged, published):
        plan.append(_metadata("delegated-roles", name, staged.roles[name]))
    plan.append(_metadata("targets", Targets.type, staged.targets))
    plan.append(_metadata("snapshot", Snapshot.type, staged.snapshot))
    for version in range(1, staged.root + 1):
        plan.append(_metadata("roots", Root.type, version))
    plan.append(
        PlannedFile(
            "timestamp", TIMESTAMP_PATH, Kind.MUTABLE, role=Timestamp.type, version=staged.timestamp
        )
    )
    return plan


def published_versions(
    timestamp_bytes: bytes | None, read_snapshot: SnapshotReader
) -> dict[str, int]:
    """Role name -> version listed by the snapshot a destination's ``timestamp.json`` names.

    Args:
        timestamp_bytes: the destination's current ``metadata/timestamp.json``, or None.
        read_snapshot: returns the bytes of ``metadata/<version>.snapshot.json``, or None.

    Returns:
        The versions; empty when there is no readable timestamp or snapshot (then every role is
        planned and the writer compares what it finds).
    """
    if timestamp_bytes is None:
        return {}
    # Plain JSON, not Metadata.from_bytes: nothing here is verified either way (the versions only
    # choose what to copy, and the writer compares what it finds), and at 2,600 bins a snapshot
    # costs 2 ms to read so against 11 ms as python-tuf objects, paid by every publish up to four
    # times (the plan, the site's hint and its record, the S3 plan).
    version = _listed_version(_signed_meta(timestamp_bytes), "snapshot.json")
    snapshot_bytes = read_snapshot(version) if version is not None else None
    listed = _signed_meta(snapshot_bytes) if snapshot_bytes is not None else None
    if listed is None:
        return {}
    versions = {name.removesuffix(".json"): _listed_version(listed, name) for name in listed}
    if any(v is None for v in versions.values()):
        return {}
    return {name: v for name, v in versions.items() if v is not None}


def served_snapshot_version(timestamp_bytes: bytes | None) -> int | None:
    """The snapshot version a destination's ``timestamp.json`` names: None when there is none, 0
    when it does not read (repo_tool/publish/superseded.py then deletes nothing)."""
    if timestamp_bytes is None:
        return None
    return _listed_version(_signed_meta(timestamp_bytes), "snapshot.json") or 0


def _signed_meta(data: bytes) -> dict[str, Any] | None:
    """``signed.meta`` of a timestamp or snapshot document, or None when it has another shape."""
    try:
        meta = orjson.loads(data)["signed"]["meta"]
    except (orjson.JSONDecodeError, KeyError, TypeError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _listed_version(meta: dict[str, Any] | None, name: str) -> int | None:
    entry = meta.get(name) if meta is not None else None
    version = entry.get("version") if isinstance(entry, dict) else None
    return version if type(version) is int and version > 0 else None


def refuse_rollback(
    published: bytes | None, staged: bytes, staged_version: int, where: str = TIMESTAMP_PATH
) -> None:
    """Refuse to replace a destination's ``timestamp.json`` with an older one, or with other bytes
    of the same version (``where`` names it in the error).

    Two ways lead there. Another repository publishes to the same destination (a standby, a
    migration) and put a newer one there; or this repository was restored from a backup taken
    before its last publish (docs/operator.md, "Backup and restore") and is behind what clients
    have seen. Either way, replacing it would roll the host back, which clients refuse (and stop
    updating) and new clients would believe. Nothing is written then. A timestamp that does not
    parse is left to the writer.

    Raises:
        UnavailableError: the destination's timestamp is at or above ``staged_version`` and differs.
    """
    if published is None or published == staged:
        return
    try:
        version = Metadata[Timestamp].from_bytes(published).signed.version
    except (RepositoryError, ValueError, KeyError, TypeError):
        return  # not metadata: replaced as before
    if version >= staged_version:
        raise UnavailableError(
            f"{where}: timestamp version: found {version} published, expected below "
            f"{staged_version} (this repository's): another repository publishes here, or this "
            "one is behind what clients have seen (restored from a backup older than the last "
            "publish?); not rolled back",
            hint="publish each destination from one repository, into a new folder or prefix, or "
            "restore a backup taken after that publish (docs/operator.md, 'Two jobs at once' and "
            "'Backup and restore')",
        )
