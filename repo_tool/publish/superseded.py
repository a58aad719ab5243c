"""Which superseded metadata versions a published tree may delete, and when (issue 26).

Every publish adds a snapshot version and the role versions it changed, and nothing removed the
old ones: ``bench_auto_bins`` found the published ``metadata/`` growing as ``n^1.5`` with the
deposits (27x for 10x deposits from 1,000 to 10,000), because every snapshot lists every bin and
every one was kept for ever. A TUF client never reads a superseded version: it reads
``timestamp.json``, then the snapshot version that names, then the role versions that snapshot
lists (consistent snapshots). Only root versions are read in a chain (``N+1.root.json``), so root
versions are never deleted. What is lodged (DOMAIN.md: the images and other blobs, and the
transparency log's events) is untouched: every image stays listed in its role's current version,
signed by its manufacturer, and every deposit stays in the log.

The one reader a superseded version may still have is a client that read the previous
``timestamp.json`` a moment before a publish and has not fetched what it names yet. So a version is
deleted only once it has been superseded for ``grace`` (a day unless the operator says otherwise),
by the time the destination served it, never counted in publishes: a burst of publishes (a bulk
intake) must not pull a snapshot from under a client that is reading it.

The destination's ledger (``LEDGER_NAME``) records when it began serving each snapshot version and
the snapshot version up to which it was expired (the *floor*). The *cut* is the snapshot the
destination served ``grace`` ago: every snapshot version below it, and every role version below the
one it lists, is superseded for longer than ``grace``. What lies between the floor and the cut is
named exactly (no listing), so an expiry costs what the publishes since the last one changed, not
the library's size. Which versions the cut and the floor list is read from the repository's own
state, never from the destination, so a tampered destination cannot steer the deletions.

Pure: no file system, no clock (``now`` is a parameter).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from metadata_templates.errors import ConfigurationError, field_error

# A dotfile: never served (docs/hosting.md) and never uploaded. Folder: OUT/metadata/<it>.
LEDGER_NAME = ".cfl-superseded"
# The step name a publish's hook is called with before the deletes (after "timestamp").
EXPIRY_STEP = "superseded"
DEFAULT_GRACE = timedelta(days=1)
# Below an hour a slow client or a mirror that copies the tree every few minutes could be caught.
MIN_GRACE = timedelta(hours=1)
# The ledger keeps the snapshots served since the cut; this bounds it against a clock gone wrong.
_MAX_SERVED = 100_000
# A clock that went back less than this is read as no time passing; more, and the ledger restarts.
_CLOCK_SLACK = timedelta(days=1)
# A ledger longer than this does not read (it is an empty one); a reader need not read more.
LEDGER_MAX_BYTES = 16 * 1024 * 1024

_VERSIONED = re.compile(r"([1-9][0-9]*)\.([A-Za-z0-9][A-Za-z0-9_-]*)\.json")
_GRACE = re.compile(r"([1-9][0-9]{0,5})([hd])")


def parse_grace(text: str, *, field: str = "--keep-superseded") -> timedelta | None:
    """``24h``, ``7d`` or ``forever`` (None: never delete).

    Raises:
        ConfigurationError: anything else, or less than `MIN_GRACE`.
    """
    expected = "a number of hours or days such as 24h or 7d (1h to 36500d), or forever"
    if text == "forever":
        return None
    found = _GRACE.fullmatch(text)
    if found is None:
        raise ConfigurationError(field_error(field, text, expected))
    amount, unit = int(found.group(1)), found.group(2)
    grace = timedelta(hours=amount) if unit == "h" else timedelta(days=amount)
    if grace < MIN_GRACE or grace > timedelta(days=36500):
        raise ConfigurationError(field_error(field, text, expected))
    return grace


@dataclass(frozen=True)
class Served:
    """The destination began serving snapshot ``snapshot`` at ``at``."""

    at: datetime
    snapshot: int


@dataclass(frozen=True)
class Ledger:
    """What a destination served and how far it was expired.

    Attributes:
        served: oldest first, snapshot versions rising; the first entry is the floor's or later.
        floor: the snapshot version the last expiry kept as its cut; None before the first
            expiry (that one looks at everything the destination holds, once).
    """

    served: tuple[Served, ...] = field(default_factory=tuple)
    floor: int | None = None

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Ledger:
        """The ledger, or an empty one when it is missing or does not read: that only delays
        expiry (nothing is known superseded until ``grace`` has passed again)."""
        if not data or len(data) > LEDGER_MAX_BYTES:
            return cls()
        try:
            doc = orjson.loads(data)
            floor = doc["floor"]
            served = tuple(
                Served(datetime.fromisoformat(at), int(version)) for at, version in doc["served"]
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return cls()
        if floor is not None and (type(floor) is not int or floor < 1):
            return cls()
        # Before the order: a time without a zone does not compare with one that has one.
        if any(s.at.utcoffset() is None or s.snapshot < 1 for s in served):
            return cls()
        for before, after in itertools.pairwise(served):
            if after.snapshot <= before.snapshot or after.at < before.at:
                return cls()
        return cls(served, floor)

    def to_bytes(self) -> bytes:
        doc = {"floor": self.floor, "served": [[s.at.isoformat(), s.snapshot] for s in self.served]}
        return orjson.dumps(doc) + b"\n"

    def within(self, head: int, now: datetime) -> Ledger:
        """This ledger if it names no snapshot beyond the repository's ``head`` version and no
        time more than `_CLOCK_SLACK` after ``now``, else an empty one: a ledger copied from
        another library, or forged, is no clock for this one, and one dated in the future would
        stop every expiry for ever (`record` never goes back in time). An empty one only delays."""
        if (self.floor or 0) > head or any(s.snapshot > head for s in self.served):
            return Ledger()
        if self.served and self.served[-1].at > now + _CLOCK_SLACK:
            return Ledger()
        return self

    def record(self, snapshot: int, now: datetime) -> Ledger:
        """The destination serves ``snapshot`` from ``now`` on. A clock that went back is read as
        no time passing, so it can only delay an expiry."""
        if self.served and self.served[-1].snapshot >= snapshot:
            return self
        at = max(now, self.served[-1].at) if self.served else now
        return Ledger((*self.served[-_MAX_SERVED + 1 :], Served(at, snapshot)), self.floor)

    def cut(self, now: datetime, grace: timedelta, served_before: int | None = None) -> int | None:
        """The snapshot version the destination served ``grace`` before ``now``, which must stay
        with every role version it lists; None when none is known that old.

        ``served_before`` is the snapshot version the destination's ``timestamp.json`` named before
        this publish (0: one that did not read; None: there was none). The cut is never above it,
        whatever the ledger says: a ledger copied from elsewhere, restored or edited may claim the
        new head was served days ago, and the previous snapshot is what a client mid-refresh reads.
        """
        cutoff = now - grace
        found = None
        for served in self.served:
            if served.at > cutoff:
                break
            found = served.snapshot
        if found is not None and served_before is not None:
            found = min(found, served_before) or None
        if found is None or (self.floor is not None and found <= self.floor):
            return None
        return found

    def expired_to(self, cut: int) -> Ledger:
        """The ledger after an expiry up to ``cut``: the entries before it are dropped."""
        return Ledger(tuple(s for s in self.served if s.snapshot >= cut), cut)


def snapshot_roles(snapshot_bytes: bytes) -> dict[str, int]:
    """``{"targets.json": 7, "mfr-121D.json": 3, ...}``: the role versions a snapshot lists. It is
    the repository's own signed file; a file that does not read lists nothing (nothing is deleted
    for it)."""
    try:
        meta = orjson.loads(snapshot_bytes)["signed"]["meta"]
        return {
            str(name): int(entry["version"])
            for name, entry in meta.items()
            if type(entry.get("version")) is int
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        return {}


def expired_between(
    floor: int, floor_roles: Mapping[str, int], cut: int, cut_roles: Mapping[str, int]
) -> list[str]:
    """The ``metadata/`` names superseded between the floor and the cut: snapshot versions
    ``floor..cut-1`` and, for each role the cut lists, the versions from the floor's up to (not
    including) the cut's. A role the floor does not list is new since: from version 1."""
    names = [f"{version}.snapshot.json" for version in range(floor, cut)]
    for role, version in sorted(cut_roles.items()):
        if role == "root.json":
            continue  # never: clients walk the root chain (TUF lists no root in snapshots anyway)
        names.extend(f"{v}.{role}" for v in range(floor_roles.get(role, 1), version))
    # Only names of the one form a publish writes: never a path, never a root.
    return [name for name in names if _deletable(name)]


def _deletable(name: str) -> bool:
    found = _VERSIONED.fullmatch(name)
    # Not "Root" either: on a case-insensitive file system (a share, APFS) it is the root's file.
    return found is not None and found.group(2).lower() != "root"


def expired_in(names: Iterable[str], cut: int, cut_roles: Mapping[str, int]) -> list[str]:
    """Of the ``metadata/`` names a destination holds, those superseded at the cut: the first
    expiry's rule, for a destination whose earlier versions nothing recorded. Root versions, the
    timestamp, dotfiles and names of roles the cut does not list are never in it."""
    expired = []
    for name in names:
        found = _VERSIONED.fullmatch(name)
        if found is None:
            continue
        version, role = int(found.group(1)), found.group(2)
        if role == "snapshot":
            if version < cut:
                expired.append(name)
        elif role.lower() != "root" and version < cut_roles.get(f"{role}.json", 0):
            expired.append(name)
    return sorted(expired)
