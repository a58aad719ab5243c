"""What `cfl-repo status --prometheus` reports, read from a repository at an injected ``now``.

Each reading answers one operator question, and each is read from the record that decides it:

- when each role and bin expires: the staged signed metadata (what the next publish serves), with
  who renews it (``refresh`` from the timer, a ceremony, or the manufacturer), so an alert can say
  what to do;
- when what suppliers fetch expires, and when it was last replaced: the published
  ``metadata/timestamp.json`` (its signed ``expires``, and the modification time of the file
  every publish that changed anything replaces last);
- how many bundles wait: the ``*.cflb`` entries of each inbox folder, listed the way ``ingest``
  lists them (by name, links not followed);
- how many deposits were rejected, and why: the ``ingest-rejected`` lines of ``events.jsonl``,
  an append-only log, so the count only grows (a Prometheus counter), whatever is pruned from
  ``R/rejected/``;
- how large the transparency log and the event log have grown.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from metadata_templates import naming
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.gateway.model import Code
from repo_tool.intake.inbox import list_inbox
from repo_tool.publish.plan import TIMESTAMP_PATH
from repo_tool.state.head import snapshot_wanted
from repo_tool.state.repository import Repository

EVENTS_FILE = "events.jsonl"
REJECTED_EVENT = "ingest-rejected"
# A reason label outside the gateway's own codes (an older tool's, a hand-edited line) is counted
# under this one, so a label's values stay the small fixed set an alert rule can name.
OTHER_REASON = "other"
_KNOWN_REASONS = frozenset(code.value for code in Code)
# The published timestamp is a few hundred bytes; more is not one of ours.
_TIMESTAMP_LIMIT = 1024 * 1024

# Who renews a role before it expires (the `renewed_by` label).
BY_REFRESH = "refresh"  # the refresh timer, with the online keys
BY_CEREMONY = "ceremony"  # the offline key holders: `cfl-repo ceremony start`
BY_MANUFACTURER = "manufacturer"  # the manufacturer's `submit --renew`


@dataclass(frozen=True)
class RoleExpiry:
    """One staged role (a top-level role, cfl-provider, a manufacturer role or one of its bins)."""

    role: str
    expires: datetime
    renewed_by: str


@dataclass(frozen=True)
class PublishedTree:
    """The published ``metadata/timestamp.json``: its signed expiry and when it was written."""

    timestamp_expires: datetime
    written: float  # seconds since the epoch (the file's modification time)


@dataclass(frozen=True)
class Readings:
    """Everything `status --prometheus` exposes, as plain values (rendered by exposition.py)."""

    now: datetime
    roles: tuple[RoleExpiry, ...]
    published: PublishedTree | None  # None: nothing published in that folder yet
    inboxes: tuple[tuple[str, int], ...]  # (folder as given, bundles in it)
    rejected: int
    rejection_reasons: tuple[tuple[str, int], ...]  # (reason code, rejections that named it)
    unpublished_roles: int
    log_entries: int
    log_bytes: int
    event_log_bytes: int


def read_status(
    repo: Repository, *, now: datetime, published: Path, inboxes: Sequence[Path] = ()
) -> Readings:
    """Read everything `status --prometheus` reports.

    Args:
        repo: the repository.
        now: the time the readings are for (remaining validity is measured from it).
        published: the published tree (``R/public`` or a publish ``--out``); a folder with no
            ``metadata/timestamp.json`` yet has no published readings.
        inboxes: the folders ``ingest`` reads.

    Raises:
        ConfigurationError: an inbox is not a folder.
        RejectedInputError: the published ``timestamp.json`` is not a TUF timestamp.
    """
    rejected, reasons = _rejections(repo.path / EVENTS_FILE)
    return Readings(
        now=now,
        roles=tuple(role_expiries(repo)),
        published=published_tree(published),
        inboxes=tuple((str(folder), inbox_depth(folder)) for folder in inboxes),
        rejected=rejected,
        rejection_reasons=tuple(sorted(reasons.items())),
        unpublished_roles=unpublished_roles(repo),
        log_entries=repo.head.log_size,
        log_bytes=_folder_bytes(repo.log_dir),
        event_log_bytes=_file_bytes(repo.path / EVENTS_FILE),
    )


def role_expiries(repo: Repository) -> Iterator[RoleExpiry]:
    """Every staged role's expiry, top-level roles first, then delegated roles by name."""
    top: list[tuple[str, Metadata[Any] | None]] = [
        (Root.type, repo.root()),
        (Targets.type, repo.targets()),
        (Snapshot.type, repo.snapshot()),
        (Timestamp.type, repo.timestamp()),
    ]
    for name, md in top:
        if md is not None:
            yield RoleExpiry(name, md.signed.expires, _renewed_by(repo, name))
    for name in sorted(repo.head.roles):
        yield RoleExpiry(name, repo.role(name).signed.expires, _renewed_by(repo, name))


def _renewed_by(repo: Repository, role: str) -> str:
    if naming.owner_of_role(role):
        return BY_MANUFACTURER
    if role == Root.type:
        return BY_CEREMONY
    # refresh re-signs targets and cfl-provider only while it holds their keys (ops/refresh.py).
    if role in (Targets.type, naming.PROVIDER_ROLE) and repo.held_offline(role):
        return BY_CEREMONY
    return BY_REFRESH


def unpublished_roles(repo: Repository) -> int:
    """How many staged role versions the staged snapshot does not list yet (accepted deposits,
    renewals and re-signed roles the next publish will sign into a snapshot)."""
    snapshot = repo.snapshot()
    listed = {k: v.version for k, v in snapshot.signed.meta.items()} if snapshot else {}
    return sum(listed.get(name) != v for name, v in snapshot_wanted(repo.head).items())


def inbox_depth(folder: Path) -> int:
    """How many entries of ``folder`` `ingest` would judge: every ``*.cflb`` name, links and
    special files included (ingest rejects those), nothing opened or followed.

    Raises:
        ConfigurationError: ``folder`` is not a folder.
    """
    if not folder.is_dir():
        found = "no such folder" if not folder.exists() else "not a folder"
        raise ConfigurationError(
            f"--inbox {folder}: found {found}, expected the folder `ingest` reads"
        )
    return len(list_inbox([folder]))


def published_tree(out: Path) -> PublishedTree | None:
    """The published timestamp's expiry and write time, or None when ``out`` has none yet.

    Raises:
        RejectedInputError: ``metadata/timestamp.json`` is a link, not a file, too large, or not
            a TUF timestamp.
    """
    path = out / TIMESTAMP_PATH
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        # publish writes a regular file; a link here is not its doing, and is never followed.
        raise RejectedInputError(f"published {path}: found not a regular file, expected a file")
    with path.open("rb") as handle:
        data = handle.read(_TIMESTAMP_LIMIT + 1)
    if len(data) > _TIMESTAMP_LIMIT:
        raise RejectedInputError(
            f"published {path}: size: found more than {_TIMESTAMP_LIMIT} bytes, "
            "expected a TUF timestamp"
        )
    try:
        md = Metadata[Timestamp].from_bytes(data)
    except Exception as e:  # tuf wraps every parse failure, but says so only in prose
        raise RejectedInputError(
            f"published {path}: found unreadable metadata ({e}), expected a TUF timestamp"
        ) from e
    if not isinstance(md.signed, Timestamp):
        raise RejectedInputError(
            f"published {path}: _type: found {md.signed.type!r}, expected 'timestamp'"
        )
    return PublishedTree(md.signed.expires, info.st_mtime)


def _rejections(events: Path) -> tuple[int, Counter[str]]:
    """The number of ``ingest-rejected`` events and how often each reason code appears in them."""
    rejected = 0
    reasons: Counter[str] = Counter()
    marker = f'"event":"{REJECTED_EVENT}"'.encode()
    try:
        handle = events.open("rb")
    except FileNotFoundError:
        return 0, reasons
    with handle:
        for line in handle:
            # The log is compact JSON with sorted keys (journal.json_line); a quote inside a
            # string value is escaped, so only a real event field matches, and the other lines
            # cost no JSON parse.
            if marker not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the torn last line a kill can leave (journal.repair_tail cuts it)
            if not isinstance(event, dict) or event.get("event") != REJECTED_EVENT:
                continue
            rejected += 1
            codes = event.get("reasons")
            for code in codes if isinstance(codes, list) else []:
                reasons[code if code in _KNOWN_REASONS else OTHER_REASON] += 1
    return rejected, reasons


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _folder_bytes(folder: Path) -> int:
    """The bytes of the regular files under ``folder`` (links not followed)."""
    total = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            total += _folder_bytes(Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total
