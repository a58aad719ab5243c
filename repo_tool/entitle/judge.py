"""The entitlement in force at a moment, for the audit: which record, and on what basis.

A download at time T is judged against the record that was in force at T (the last one imported
at or before T), on T's day: a right by estate counts from its first day, a grace right until its
last day. Records are loaded on demand through an injected reader and only the few most recently
used are kept, so an audit over years of imports holds a couple of records in memory, not all.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from repo_tool.entitle.record import EntitlementHistory, EntitlementRecord, HistoryEntry

KEPT_RECORDS = 3  # logs are read in time order, so one or two records are in use at a time


@dataclass(frozen=True)
class Verdict:
    """The entitlement of one request.

    Attributes:
        record: the record in force (SHA-256), or None before the first import.
        basis: `ESTATE`, `GRACE`, or None when the record gives no right (or there is none).
    """

    record: str | None
    basis: str | None


class EntitlementJudge:
    """Judges (supplier, target, time) against the history.

    Args:
        history: every import.
        load: reads one record by its SHA-256 (the repository's store).
        covers: whether a device type's images are restricted to the estate (policy
            ``estate_device_types``); others are judged by User Role only, as the host does.
    """

    def __init__(
        self,
        history: EntitlementHistory,
        load: Callable[[str], EntitlementRecord],
        covers: Callable[[str], bool] = lambda _device_type: True,
    ) -> None:
        self.history = history
        self.covers = covers
        self._load = load
        self._records: OrderedDict[str, EntitlementRecord] = OrderedDict()
        self.used: dict[str, HistoryEntry] = {}
        self._times = [entry.imported for entry in history.entries]

    def record(self, entry: HistoryEntry) -> EntitlementRecord:
        """The record of ``entry``, from the small cache or the store."""
        found = self._records.get(entry.record)
        if found is None:
            found = self._load(entry.record)
            self._records[entry.record] = found
            if len(self._records) > KEPT_RECORDS:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(entry.record)
        return found

    def judge(self, entity_id: str | None, target: str, moment: datetime) -> Verdict:
        """The record in force at ``moment`` and the basis of ``entity_id``'s right to ``target``."""
        position = bisect_right(self._times, moment)
        if not position:
            return Verdict(None, None)
        entry = self.history.entries[position - 1]
        self.used.setdefault(entry.record, entry)
        if entity_id is None:
            return Verdict(entry.record, None)
        rights = self.record(entry).rights_of(entity_id)
        return Verdict(entry.record, rights.basis(target, moment.date()))
