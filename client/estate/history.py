"""A small SQLite record of what was checked, for Change of Supplier.

After a Change of Supplier (or a Supplier of Last Resort event) the gaining supplier needs to know
which meters are new to its estate and which images appeared since it last looked. ``cfl check
--changes`` compares the estate with the last recorded one and the catalogue with the catalogue then.

Estates reach 20 million devices, so device IDs never sit in a Python collection: they are streamed
into a temporary table and compared in SQL, and gained or lost IDs stream out to a caller's sink.
Device IDs are stored as 64-bit integers (an EUI-64 is exactly 8 octets), which keeps the table and
its index small. The clock is a parameter; nothing here reads the time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from types import TracebackType

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import UnavailableError

SCHEMA_VERSION = 1
DEFAULT_ESTATE = "default"
SAMPLE_SIZE = 1_000
_BATCH = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS estates (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY,
    estate_id INTEGER NOT NULL REFERENCES estates(id),
    at TEXT NOT NULL,
    devices INTEGER NOT NULL,
    recorded_devices INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS estate_devices (
    estate_id INTEGER NOT NULL,
    device INTEGER NOT NULL,
    PRIMARY KEY (estate_id, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS known_images (
    estate_id INTEGER NOT NULL,
    target TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (estate_id, target)
) WITHOUT ROWID;
"""


def _to_int(device_id: str) -> int:
    """An EUI-64 (any hyphenation) as a signed 64-bit integer, as SQLite stores integers."""
    value = int(device_id.replace("-", ""), 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def _to_id(value: int) -> str:
    """The inverse of ``_to_int``, in the DUIS form ``00-0D-6F-00-00-00-00-01``."""
    return (value & ((1 << 64) - 1)).to_bytes(8, "big").hex("-").upper()


@dataclass(frozen=True)
class CheckRecord:
    """One recorded check.

    Attributes:
        at: when it ran (UTC, ``custom.format_timestamp`` form).
        devices: devices in the estate then.
        recorded_devices: whether device IDs were recorded (``--changes``), so later device
            comparisons can start from it.
    """

    at: str
    devices: int
    recorded_devices: bool


@dataclass(frozen=True)
class Changes:
    """What changed since the previous check of the same estate.

    Attributes:
        devices_since: time of the last check that recorded device IDs, or None if there was none
            (then every device counts as gained).
        gained_devices: devices in the estate now that were not then.
        gained_sample: the first gained device IDs in ID order, at most ``SAMPLE_SIZE``.
        lost_devices: devices then that are not in the estate now.
        lost_sample: the first lost device IDs in ID order, at most ``SAMPLE_SIZE``.
        images_since: time of the last check of this estate, or None if there was none.
        new_images: applicable targets that were not in the catalogue at ``images_since``, sorted.
    """

    devices_since: str | None
    gained_devices: int
    gained_sample: tuple[str, ...]
    lost_devices: int
    lost_sample: tuple[str, ...]
    images_since: str | None
    new_images: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """A JSON-ready copy (the ``changes`` key of ``cfl check --changes --json``)."""
        return {
            "devices_since": self.devices_since,
            "gained_devices": self.gained_devices,
            "gained_sample": list(self.gained_sample),
            "lost_devices": self.lost_devices,
            "lost_sample": list(self.lost_sample),
            "images_since": self.images_since,
            "new_images": list(self.new_images),
        }


DeviceSink = Callable[[str], None]


class History:
    """The check history in one SQLite file. Use as a context manager; one writer at a time
    (the client home's lock guarantees that)."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the history database.

        Raises:
            UnavailableError: the database cannot be opened or is not a CFL history.
        """
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise UnavailableError(f"history {path}: {e}") from e
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        try:
            # Temporary tables on disk, and a bounded page cache: memory stays flat at 20M devices.
            self._db.execute("PRAGMA temp_store = FILE")
            self._db.execute("PRAGMA cache_size = -65536")  # KiB
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as e:
            raise UnavailableError(f"history {self.path}: {e}") from e
        if row is None:
            self._db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise UnavailableError(
                f"history {self.path}: schema_version: found {row[0]!r}, expected {SCHEMA_VERSION}",
                hint="this history was written by another version of cfl",
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _estate_id(self, estate: str) -> int:
        self._db.execute("INSERT OR IGNORE INTO estates (name) VALUES (?)", (estate,))
        row = self._db.execute("SELECT id FROM estates WHERE name = ?", (estate,)).fetchone()
        return int(row[0])

    def last_check(
        self, estate: str = DEFAULT_ESTATE, *, with_devices: bool = False
    ) -> CheckRecord | None:
        """The most recent check of an estate (only those that recorded devices, if asked)."""
        row = self._db.execute(
            "SELECT c.at, c.devices, c.recorded_devices FROM checks c JOIN estates e "
            "ON e.id = c.estate_id WHERE e.name = ? AND c.recorded_devices >= ? "
            "ORDER BY c.id DESC LIMIT 1",
            (estate, int(with_devices)),
        ).fetchone()
        return None if row is None else CheckRecord(str(row[0]), int(row[1]), bool(row[2]))

    def record(
        self,
        *,
        now: datetime,
        devices: int,
        catalogue_targets: Iterable[str],
        applicable_targets: Iterable[str],
        device_ids: Iterable[str] | None = None,
        estate: str = DEFAULT_ESTATE,
        on_gained: DeviceSink | None = None,
        on_lost: DeviceSink | None = None,
    ) -> Changes:
        """Compare this check with the last one, then record it, in one transaction.

        Args:
            now: the time of this check.
            devices: how many devices the estate has.
            catalogue_targets: every image target in the verified catalogue now.
            applicable_targets: targets that apply to some device of the estate now.
            device_ids: the estate's device IDs (any hyphenation), streamed; None records the
                check without touching the device baseline (a plain ``cfl check``).
            estate: which estate this is, for suppliers who check several.
            on_gained: called with every gained device ID, in ID order.
            on_lost: called with every lost device ID, in ID order.

        Raises:
            UnavailableError: the database cannot be written.
        """
        at = format_timestamp(now)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                estate_id = self._estate_id(estate)
                previous_any = self.last_check(estate)
                new_images = self._compare_images(
                    estate_id, at, catalogue_targets, applicable_targets
                )
                if device_ids is None:
                    device_changes: tuple[str | None, int, tuple[str, ...], int, tuple[str, ...]]
                    device_changes = (None, 0, (), 0, ())
                else:
                    device_changes = self._compare_devices(
                        estate, estate_id, device_ids, on_gained, on_lost
                    )
                self._db.execute(
                    "INSERT INTO checks (estate_id, at, devices, recorded_devices) "
                    "VALUES (?, ?, ?, ?)",
                    (estate_id, at, devices, int(device_ids is not None)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._db.execute("DROP TABLE IF EXISTS temp.current_devices")
        except sqlite3.Error as e:
            raise UnavailableError(f"history {self.path}: {e}") from e
        since, gained, gained_sample, lost, lost_sample = device_changes
        return Changes(
            devices_since=since,
            gained_devices=gained,
            gained_sample=gained_sample,
            lost_devices=lost,
            lost_sample=lost_sample,
            images_since=None if previous_any is None else previous_any.at,
            new_images=new_images,
        )

    def _compare_images(
        self, estate_id: int, at: str, catalogue: Iterable[str], applicable: Iterable[str]
    ) -> tuple[str, ...]:
        known = {
            str(row[0])
            for row in self._db.execute(
                "SELECT target FROM known_images WHERE estate_id = ?", (estate_id,)
            )
        }
        first_check = (
            self._db.execute(
                "SELECT 1 FROM checks WHERE estate_id = ? LIMIT 1", (estate_id,)
            ).fetchone()
            is None
        )
        # On the first check every applicable image is new: there is nothing to compare with.
        new = tuple(sorted({t for t in applicable if first_check or t not in known}))
        self._db.executemany(
            "INSERT OR IGNORE INTO known_images VALUES (?, ?, ?)",
            ((estate_id, target, at) for target in catalogue),
        )
        return new

    def _compare_devices(
        self,
        estate: str,
        estate_id: int,
        device_ids: Iterable[str],
        on_gained: DeviceSink | None,
        on_lost: DeviceSink | None,
    ) -> tuple[str | None, int, tuple[str, ...], int, tuple[str, ...]]:
        baseline = self.last_check(estate, with_devices=True)
        self._db.execute(
            "CREATE TEMP TABLE current_devices (device INTEGER PRIMARY KEY) WITHOUT ROWID"
        )
        ids = iter(device_ids)
        while batch := list(islice(ids, _BATCH)):
            self._db.executemany(
                "INSERT OR IGNORE INTO current_devices VALUES (?)", ((_to_int(d),) for d in batch)
            )
        gained, gained_sample = _drain(
            self._db.execute(
                "SELECT device FROM temp.current_devices c WHERE NOT EXISTS (SELECT 1 FROM "
                "estate_devices e WHERE e.estate_id = ? AND e.device = c.device) ORDER BY device",
                (estate_id,),
            ),
            on_gained,
        )
        lost, lost_sample = _drain(
            self._db.execute(
                "SELECT device FROM estate_devices e WHERE e.estate_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM temp.current_devices c WHERE c.device = e.device) "
                "ORDER BY device",
                (estate_id,),
            ),
            on_lost,
        )
        self._db.execute("DELETE FROM estate_devices WHERE estate_id = ?", (estate_id,))
        self._db.execute(
            "INSERT INTO estate_devices SELECT ?, device FROM temp.current_devices ORDER BY device",
            (estate_id,),
        )
        return (None if baseline is None else baseline.at), gained, gained_sample, lost, lost_sample


def _drain(rows: Iterator[tuple[int]], sink: DeviceSink | None) -> tuple[int, tuple[str, ...]]:
    """Stream device rows to ``sink``; return how many there were and the first few."""
    count = 0
    sample: list[str] = []
    for (value,) in rows:
        device_id = _to_id(value)
        count += 1
        if len(sample) < SAMPLE_SIZE:
            sample.append(device_id)
        if sink is not None:
            sink(device_id)
    return count, tuple(sample)
