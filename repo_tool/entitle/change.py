"""Change of Supplier between two imports: what the gaining supplier gets, what the losing one keeps.

The gaining supplier is entitled from its ``Since``: that is simply the first day of its new right
(`repo_tool.entitle.rights`). The losing supplier's right disappears from the next inventory; it
keeps it for a grace period (policy ``cos_grace_days``, default 28, docs/operator.md) counted from
that inventory's date, then loses it. The grace counts from the inventory date, not from the
gaining supplier's ``Since``, because the record keeps no device IDs: the provider knows that a
right is gone, not which device took it away.

A right that comes back (an erroneous transfer reversed) is an ordinary right again and its grace
ends; a grace still running when another import also lacks the right keeps its original last day,
so repeated imports never extend it.

Pure: the previous record and the new rights in; the grace rights and a summary of changes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from repo_tool.entitle.record import EntitlementRecord

DEFAULT_GRACE_DAYS = 28


@dataclass(frozen=True)
class EntityChange:
    """How one supplier's rights moved between the previous record and the new one.

    Attributes:
        gained: targets it has now and had no right to before (grace rights included).
        lost: targets whose right ended with this import and that enter a grace period.
        expired: targets whose grace period ended before this inventory's date.
    """

    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()


def grace_rights(
    previous: EntitlementRecord | None,
    rights: Mapping[str, Mapping[str, date]],
    *,
    inventory_date: date,
    grace_days: int,
) -> tuple[dict[str, dict[str, date]], dict[str, EntityChange]]:
    """The rights kept in grace, and each supplier's change, after an import.

    Args:
        previous: the record in force before this import (None for the first import).
        rights: entity -> target -> first day, from the new inventory.
        inventory_date: the new inventory's date.
        grace_days: how long a lost right is kept.

    Returns:
        (entity -> target -> last day of grace, entity -> change); suppliers without grace rights
        or changes are left out.
    """
    grace: dict[str, dict[str, date]] = {}
    changes: dict[str, EntityChange] = {}
    last_day = inventory_date + timedelta(days=grace_days)
    entities = set(rights) | set(previous.entities if previous is not None else ())
    for entity in sorted(entities):
        now = rights.get(entity, {})
        before = previous.rights_of(entity) if previous is not None else None
        kept: dict[str, date] = {}
        lost, expired = [], []
        if before is not None:
            for target, first in before.since.items():
                # A right that had not begun by this inventory's date was never exercised.
                if target not in now and first <= inventory_date:
                    kept[target] = last_day
                    lost.append(target)
            for target, until in before.grace.items():
                if target in now or target in kept:
                    continue
                if until >= inventory_date:
                    kept[target] = until
                else:
                    expired.append(target)
        had = set(before.since) | set(before.grace) if before is not None else set()
        gained = sorted(set(now) - had)
        if kept:
            grace[entity] = kept
        if gained or lost or expired:
            changes[entity] = EntityChange(
                tuple(gained), tuple(sorted(lost)), tuple(sorted(expired))
            )
    return grace, changes
