"""`cfl-repo entitlements import`: the rights each supplier's estate gives it, as of an inventory.

Two steps, so the repository lock is not held while 20 million rows are read:
`read_estate` indexes the extract by (supplier, device kind) with the earliest ``Since``
(repo_tool/access/inventory.py: memory grows with the estate's variety, never with its devices);
`import_entitlements`, under the lock, turns the index into rights against the current library
(repo_tool/entitle/rights.py), carries Change of Supplier grace over from the record in force
(repo_tool/entitle/change.py), stores the new record and history (repo_tool/state/entitlements.py)
and commits one head with an ``entitlements-import`` event. The inventory itself is never stored,
and the event never enters the public transparency log (metadata_templates/tlog/events.py).

Nothing changes when the input is refused: bad rows (unless ``skip_bad``), an inventory older than
the one in force (unless ``force``), an empty extract.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import RejectedInputError, field_error
from repo_tool.access.audit import AuditLibrary
from repo_tool.access.inventory import InventoryIndex, read_inventory_file
from repo_tool.entitle.change import EntityChange, grace_rights
from repo_tool.entitle.record import EntitlementRecord, EntityRights, HistoryEntry
from repo_tool.entitle.rights import UpgradeReach
from repo_tool.state.entitlements import EntitlementStore

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository

EVENT = "entitlements-import"


@dataclass(frozen=True)
class Estate:
    """An inventory extract, indexed (what `read_estate` read).

    Attributes:
        source: the file, for messages.
        index: supplier -> device kind -> first day, and the counts.
        sha256: the file's SHA-256 (recorded; the file is not).
    """

    source: str
    index: InventoryIndex
    sha256: str


@dataclass(frozen=True)
class ImportResult:
    """What an import put in force.

    Attributes:
        record_sha256: the new record.
        record: the new record.
        previous: the record it replaced (None for the first import).
        changes: entity -> how its rights moved (Change of Supplier).
        skipped: bad rows left out (with ``skip_bad``), and the first of them.
        images: images in the library when the rights were computed.
    """

    record_sha256: str
    record: EntitlementRecord
    previous: EntitlementRecord | None
    changes: dict[str, EntityChange]
    skipped: tuple[str, ...] = field(default_factory=tuple)
    images: int = 0


def read_estate(path: Path) -> Estate:
    """Read and index an inventory file (no lock: it touches no repository state).

    Raises:
        ConfigurationError: the file cannot be opened.
        UnavailableError: it cannot be read to the end.
        RejectedInputError: empty, or a column is missing.
    """
    index, sha256 = read_inventory_file(path)
    return Estate(str(path), index, sha256)


def _located(estate: Estate) -> list[str]:
    return [f"{estate.source} line {line}: {message}" for line, message in estate.index.located]


def _check(estate: Estate, *, skip_bad: bool) -> None:
    index = estate.index
    if index.bad_rows and not skip_bad:
        first = _located(estate)[0]
        raise RejectedInputError(
            f"{first} ({index.bad_rows} bad row(s) in all; nothing imported)",
            hint="fix the extract, or import the good rows with --skip-bad",
        )
    if not index.devices:
        raise RejectedInputError(
            field_error(f"{estate.source}: devices", 0, "at least one well-formed device row")
        )


def _inventory_date(
    estate: Estate, inventory_date: date | None, previous: HistoryEntry | None, *, force: bool
) -> date:
    day = inventory_date or estate.index.latest
    assert day is not None  # at least one row was read (_check)
    if previous is not None and day < previous.inventory_date and not force:
        raise RejectedInputError(
            field_error(
                f"{estate.source}: inventory date",
                day.isoformat(),
                f"on or after {previous.inventory_date.isoformat()}, the date of the inventory "
                "in force",
            ),
            hint="an older extract would undo Changes of Supplier; --force imports it anyway",
        )
    return day


def import_entitlements(
    repo: Repository,
    estate: Estate,
    *,
    now: datetime,
    inventory_date: date | None = None,
    skip_bad: bool = False,
    force: bool = False,
) -> ImportResult:
    """Compute every registered supplier's rights from ``estate`` and commit them (the caller
    holds the lock).

    Args:
        repo: the repository.
        estate: the indexed extract (`read_estate`).
        now: the import time (what the audit compares downloads with).
        inventory_date: the extract's date; default the latest ``Since`` in it.
        skip_bad: import the well-formed rows when some are malformed (they are counted).
        force: import an extract older than the one in force.

    Raises:
        RejectedInputError: bad rows without ``skip_bad``, no devices, or an older extract
            without ``force``.
        UnavailableError: the stored history cannot be read or written.
    """
    _check(estate, skip_bad=skip_bad)
    store = EntitlementStore(repo.state_dir)
    history = store.history(repo.head)
    current = history.current
    day = _inventory_date(estate, inventory_date, current, force=force)
    previous = store.record(current.record) if current is not None else None

    withdrawn = repo.withdrawals().by_target()
    roles = [repo.role(name).signed for name in sorted(repo.head.roles)]
    library = AuditLibrary.of(roles, repo.cpl())
    images = [(t, image.info) for t, image in library.images.items() if t not in withdrawn]
    reach = UpgradeReach(images, library.cpl)

    registered = {s.entity_id for s in repo.suppliers().suppliers}
    index = estate.index
    rights = {
        entity: reach.rights(kinds) for entity, kinds in index.since.items() if entity in registered
    }
    grace_days = repo.config.entitlements.cos_grace_days
    grace, changes = grace_rights(previous, rights, inventory_date=day, grace_days=grace_days)
    entities = {
        entity: EntityRights(
            since=rights.get(entity, {}),
            grace=grace.get(entity, {}),
            devices=index.per_supplier.get(entity, 0),
        )
        for entity in sorted(set(rights) | set(grace))
    }
    record = EntitlementRecord(
        inventory_date=day,
        imported=now,
        inventory_sha256=estate.sha256,
        devices=index.devices,
        bad_rows=index.bad_rows,
        grace_days=grace_days,
        previous=current.record if current is not None else None,
        entities=entities,
        unregistered={
            entity: count
            for entity, count in sorted(index.per_supplier.items())
            if entity not in registered
        },
    )
    record_sha = store.put(record.to_bytes())
    new_history = history.with_added(HistoryEntry(record_sha, day, now, index.devices))
    history_sha = store.put(new_history.to_bytes())
    # events.jsonl only: the event names no supplier and no device, and is never in the public log.
    repo.commit(
        replace(repo.head, entitlements_sha256=history_sha),
        event={
            "event": EVENT,
            "at": format_timestamp(now),
            "record": record_sha,
            "inventory_date": day.isoformat(),
            "inventory_sha256": estate.sha256,
            "devices": index.devices,
            "bad_rows": index.bad_rows,
            "suppliers": len(entities),
            "unregistered": len(record.unregistered),
            "forced": bool(force and current is not None and day < current.inventory_date),
        },
    )
    return ImportResult(
        record_sha256=record_sha,
        record=record,
        previous=previous,
        changes=changes,
        skipped=tuple(_located(estate)) if index.bad_rows else (),
        images=len(images),
    )
