"""The stored entitlement history: one immutable record per import, and the list of them.

What the provider keeps of a confidential inventory is only this (the extract itself is never
stored or published): for each registered supplier, the image target paths it has the right to,
each with the first day of the right, and the rights it is losing by Change of Supplier, each with
the last day of its grace period; the inventory's date, when it was imported, its SHA-256 and its
counts. An audit reads the record that was in force when a download happened.

Record (``cfl-entitlements-1``, compact JSON, keys sorted; targets grouped by day to stay small)::

    {"format": "cfl-entitlements-1", "schema_version": 1,
     "inventory_date": "2026-03-31", "imported": "2026-04-01T06:00:00Z",
     "inventory_sha256": "...", "devices": 20000000, "bad_rows": 0, "grace_days": 28,
     "previous": "<sha256 of the record before>" | null,
     "entities": {"90B3D51F30010000": {"devices": 812345,
                                       "rights": {"2024-01-31": ["121D/ESME-...ota", ...]},
                                       "grace": {"2026-04-28": ["3F01/GSME-...ota"]}}},
     "unregistered": {"00000000000000FF": 12}}

History (``cfl-entitlements-history-1``): ``{"records": [{"record", "inventory_date", "imported",
"devices"}, ...]}`` oldest first; the head names the current history document, whose last entry
is the record in force.

Pure: values in, bytes out and back; parsing checks every field it reads.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.custom import format_timestamp, parse_timestamp
from metadata_templates.naming import is_image_target_path

RECORD_FORMAT = "cfl-entitlements-1"
HISTORY_FORMAT = "cfl-entitlements-history-1"
ESTATE = "estate"  # the basis of a right: a device in the estate
GRACE = "grace"  # or a device lost by Change of Supplier, within the grace period

_ENTITY = re.compile(r"[0-9A-F]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class RecordError(ValueError):
    """A stored record or history document that does not read (corrupt or not ours)."""


@dataclass(frozen=True)
class EntityRights:
    """One supplier's rights in one record.

    Attributes:
        since: target -> the first day of the right (the earliest ``Since`` of a device giving it).
        grace: target -> the last day a right lost by Change of Supplier is kept.
        devices: the devices the inventory lists for this supplier.
    """

    since: Mapping[str, date] = field(default_factory=dict)
    grace: Mapping[str, date] = field(default_factory=dict)
    devices: int = 0

    def basis(self, target: str, day: date) -> str | None:
        """Why the supplier may fetch ``target`` on ``day`` (`ESTATE` or `GRACE`), or None."""
        first = self.since.get(target)
        if first is not None and first <= day:
            return ESTATE
        last = self.grace.get(target)
        if last is not None and day <= last:
            return GRACE
        return None

    def on(self, day: date) -> set[str]:
        """Every target the supplier may fetch on ``day``."""
        found = {target for target, first in self.since.items() if first <= day}
        found.update(target for target, last in self.grace.items() if day <= last)
        return found

    def changes_after(self, day: date) -> set[date]:
        """Days after ``day`` on which what `on` returns changes (a right begins, a grace ends)."""
        found = {first for first in self.since.values() if first > day}
        found.update(last + timedelta(days=1) for last in self.grace.values() if last >= day)
        return found


@dataclass(frozen=True)
class EntitlementRecord:
    """What one import put in force."""

    inventory_date: date
    imported: datetime
    inventory_sha256: str
    devices: int
    bad_rows: int
    grace_days: int
    previous: str | None
    entities: Mapping[str, EntityRights]
    unregistered: Mapping[str, int] = field(default_factory=dict)

    def rights_of(self, entity_id: str) -> EntityRights:
        """The supplier's rights (none when the record does not name it)."""
        return self.entities.get(entity_id) or EntityRights()

    def to_bytes(self) -> bytes:
        """The stored form (deterministic)."""
        doc = {
            "format": RECORD_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "inventory_date": self.inventory_date.isoformat(),
            "imported": format_timestamp(self.imported),
            "inventory_sha256": self.inventory_sha256,
            "devices": self.devices,
            "bad_rows": self.bad_rows,
            "grace_days": self.grace_days,
            "previous": self.previous,
            "entities": {
                entity: {
                    "devices": rights.devices,
                    "rights": _by_day(rights.since),
                    "grace": _by_day(rights.grace),
                }
                for entity, rights in self.entities.items()
            },
            "unregistered": dict(self.unregistered),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EntitlementRecord:
        """Parse a stored record.

        Raises:
            RecordError: not a ``cfl-entitlements-1`` record, or a field is wrong.
        """
        doc = _document(data, RECORD_FORMAT)
        try:
            entities = {}
            for entity, item in _mapping(doc["entities"], "entities").items():
                _check(_ENTITY, entity, "entities", "an Entity ID (16 hex digits)")
                item = _mapping(item, f"entities.{entity}")
                entities[entity] = EntityRights(
                    since=_from_days(item["rights"], f"entities.{entity}.rights"),
                    grace=_from_days(item["grace"], f"entities.{entity}.grace"),
                    devices=_count(item["devices"], f"entities.{entity}.devices"),
                )
            unregistered = {
                _check(_ENTITY, entity, "unregistered", "an Entity ID"): _count(n, "unregistered")
                for entity, n in _mapping(doc["unregistered"], "unregistered").items()
            }
            previous = doc["previous"]
            if previous is not None:
                _check(_SHA256, previous, "previous", "a SHA-256 or null")
            return cls(
                inventory_date=_day(doc["inventory_date"], "inventory_date"),
                imported=_time(doc["imported"], "imported"),
                inventory_sha256=_check(
                    _SHA256, doc["inventory_sha256"], "inventory_sha256", "a SHA-256"
                ),
                devices=_count(doc["devices"], "devices"),
                bad_rows=_count(doc["bad_rows"], "bad_rows"),
                grace_days=_count(doc["grace_days"], "grace_days"),
                previous=previous,
                entities=entities,
                unregistered=unregistered,
            )
        except KeyError as e:
            raise RecordError(f"entitlement record: {e.args[0]}: missing") from e


@dataclass(frozen=True)
class HistoryEntry:
    """One import, as the history lists it."""

    record: str  # SHA-256 of the record's bytes
    inventory_date: date
    imported: datetime
    devices: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "inventory_date": self.inventory_date.isoformat(),
            "imported": format_timestamp(self.imported),
            "devices": self.devices,
        }


@dataclass(frozen=True)
class EntitlementHistory:
    """Every import, oldest first (by import time: each import appends)."""

    entries: tuple[HistoryEntry, ...] = ()

    @property
    def current(self) -> HistoryEntry | None:
        """The record in force now (the last import), or None before the first."""
        return self.entries[-1] if self.entries else None

    def in_force_at(self, moment: datetime) -> HistoryEntry | None:
        """The record in force at ``moment``: the last one imported at or before it."""
        times = [entry.imported for entry in self.entries]
        position = bisect_right(times, moment)
        return self.entries[position - 1] if position else None

    def with_added(self, entry: HistoryEntry) -> EntitlementHistory:
        return EntitlementHistory((*self.entries, entry))

    def to_bytes(self) -> bytes:
        doc = {
            "format": HISTORY_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "records": [entry.to_dict() for entry in self.entries],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EntitlementHistory:
        """Parse a stored history.

        Raises:
            RecordError: not a ``cfl-entitlements-history-1`` document, or a field is wrong.
        """
        doc = _document(data, HISTORY_FORMAT)
        records = doc.get("records")
        if not isinstance(records, list):
            raise RecordError(f"entitlement history: records: found {records!r}, expected a list")
        entries = []
        try:
            for item in records:
                item = _mapping(item, "records[]")
                entries.append(
                    HistoryEntry(
                        record=_check(_SHA256, item["record"], "records[].record", "a SHA-256"),
                        inventory_date=_day(item["inventory_date"], "records[].inventory_date"),
                        imported=_time(item["imported"], "records[].imported"),
                        devices=_count(item["devices"], "records[].devices"),
                    )
                )
        except KeyError as e:
            raise RecordError(f"entitlement history: records[].{e.args[0]}: missing") from e
        if any(a.imported > b.imported for a, b in pairwise(entries)):
            raise RecordError("entitlement history: records: found them out of import order")
        return cls(tuple(entries))


# ---------------------------------------------------------------------------------- helpers


def _by_day(targets: Mapping[str, date]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for target, day in targets.items():
        grouped.setdefault(day.isoformat(), []).append(target)
    return {day: sorted(items) for day, items in sorted(grouped.items())}


def _from_days(value: object, where: str) -> dict[str, date]:
    found: dict[str, date] = {}
    for text, targets in _mapping(value, where).items():
        day = _day(text, where)
        if not isinstance(targets, list):
            raise RecordError(f"entitlement record: {where}: found {targets!r}, expected a list")
        for target in targets:
            if not isinstance(target, str) or not is_image_target_path(target):
                raise RecordError(
                    f"entitlement record: {where}: found {target!r}, expected an image target path"
                )
            found[target] = day
    return found


def _document(data: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError(f"{kind}: not JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != kind:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise RecordError(f"format: found {found!r}, expected {kind!r}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(
            f"{kind}: schema_version: found {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    return doc


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"entitlement record: {where}: found {value!r:.60}, expected an object")
    return value


def _check(pattern: re.Pattern[str], value: object, where: str, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RecordError(f"entitlement record: {where}: found {value!r:.80}, expected {expected}")
    return value


def _count(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise RecordError(f"entitlement record: {where}: found {value!r}, expected a count")
    return value


def _day(value: object, where: str) -> date:
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise RecordError(f"entitlement record: {where}: found {value!r}, expected YYYY-MM-DD")


def _time(value: object, where: str) -> datetime:
    try:
        if isinstance(value, str):
            return parse_timestamp(value)
    except ValueError:
        pass
    raise RecordError(
        f"entitlement record: {where}: found {value!r}, expected YYYY-MM-DDTHH:MM:SSZ"
    )
