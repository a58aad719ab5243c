"""`cfl-repo entitlements import|show`: entitlement by estate (issue 22).

Registered on the main group by `repo_tool.cli.main`. Each command parses, calls one library
function and renders; the work is in `repo_tool.ops.entitlements` and `repo_tool.entitle`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from metadata_templates.suppliers import entity_id as _entity_id
from repo_tool.cli.console import emit_json, utc_now
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo

if TYPE_CHECKING:
    from repo_tool.access.host_estate import EstateMaps
    from repo_tool.entitle.record import EntitlementRecord
    from repo_tool.ops.entitlements import ImportResult
    from repo_tool.state.repository import Repository


def parse_day(value: str | None, option: str) -> date | None:
    """An option's ``YYYY-MM-DD`` (None when not given).

    Raises:
        ConfigurationError: not a date.
    """
    if value is None:
        return None
    try:
        if len(value) == len("YYYY-MM-DD"):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise ConfigurationError(field_error(option, value, "a date YYYY-MM-DD"))


@click.group()
def entitlements() -> None:
    """Entitlement by estate: the images each supplier's devices give it the right to.

    \b
    `import` reads a Smart Metering Inventory extract and records, for every registered supplier,
    every image on the upgrade path of a device it is responsible for. `host nginx --access estate`
    enforces the record in force; `audit` judges downloads against the record in force at their
    time. The extract itself is never stored. See docs/operator.md, "Entitlements by estate".
    """


@entitlements.command("import")
@click.argument("inventory", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--inventory-date",
    metavar="YYYY-MM-DD",
    help="The extract's date [default: its latest Since]; grace periods count from it.",
)
@click.option("--skip-bad", is_flag=True, help="Import the good rows; count and list the bad.")
@click.option("--force", is_flag=True, help="Import an extract older than the one in force.")
@click.option("--json", "as_json", is_flag=True, help="Print what was imported on stdout.")
@click.pass_context
def entitlements_import(
    ctx: click.Context,
    inventory: Path,
    inventory_date: str | None,
    skip_bad: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Import INVENTORY (CSV, optionally gzipped) and put its entitlements in force.

    \b
    Columns: Device ID, Device Type, Manufacturer Identifier, Model Identifier, Hardware Version,
    Firmware Version, Responsible Supplier, Since. A malformed row is refused with its line,
    column, value found and value expected, and nothing changes (--skip-bad: counted and listed).
    A Responsible Supplier that is not registered is reported and gets nothing. Change of
    Supplier: the gaining supplier is entitled from its Since; the losing one keeps its rights
    for the grace period (cfl-repo.json "entitlements": {"cos_grace_days": 28}). Then apply it:
      cfl-repo --repo R entitlements import sm-inventory-2026-03-31.csv.gz
      cfl-repo --repo R host nginx --access estate ... --out /etc/cfl/nginx.conf && nginx -s reload
    """
    from repo_tool.ops.entitlements import import_entitlements, read_estate

    day = parse_day(inventory_date, "--inventory-date")
    repo = _open_repo(ctx)
    if not inventory.is_file():
        raise ConfigurationError(field_error("INVENTORY", str(inventory), "an existing file"))
    estate = read_estate(inventory)
    with repo.locked():
        result = import_entitlements(
            repo, estate, now=utc_now(), inventory_date=day, skip_bad=skip_bad, force=force
        )
    names = {s.entity_id: s.name for s in repo.suppliers().suppliers}
    if as_json:
        emit_json(_import_doc(result, names))
    for line in _import_lines(result, names):
        _err(line)


def _import_doc(result: ImportResult, names: dict[str, str]) -> dict[str, Any]:
    record = result.record
    return {
        "record": result.record_sha256,
        "inventory_date": record.inventory_date.isoformat(),
        "imported": format_timestamp(record.imported),
        "inventory_sha256": record.inventory_sha256,
        "devices": record.devices,
        "bad_rows": record.bad_rows,
        "skipped": list(result.skipped),
        "images": result.images,
        "grace_days": record.grace_days,
        "previous": record.previous,
        "suppliers": [
            {
                "entity_id": entity,
                "name": names.get(entity),
                "devices": rights.devices,
                "images": len(rights.since),
                "grace": len(rights.grace),
                "gained": list(result.changes[entity].gained) if entity in result.changes else [],
                "lost": list(result.changes[entity].lost) if entity in result.changes else [],
            }
            for entity, rights in record.entities.items()
        ],
        "unregistered": [
            {"entity_id": entity, "devices": count} for entity, count in record.unregistered.items()
        ],
    }


def _import_lines(result: ImportResult, names: dict[str, str]) -> list[str]:
    record = result.record
    lines = [
        f"imported {record.devices} device(s) as of {record.inventory_date.isoformat()}: "
        f"{len(record.entities)} supplier(s) entitled among {result.images} image(s); record "
        f"{result.record_sha256[:16]}"
    ]
    if record.bad_rows:
        lines.append(f"{record.bad_rows} bad row(s) left out (--skip-bad):")
        lines.extend(f"  {problem}" for problem in result.skipped)
        if record.bad_rows > len(result.skipped):
            lines.append(f"  ... and {record.bad_rows - len(result.skipped)} more")
    for entity, rights in record.entities.items():
        change = result.changes.get(entity)
        moved = (
            f"; gained {len(change.gained)}, lost {len(change.lost)} into a "
            f"{record.grace_days}-day grace"
            if change and (change.gained or change.lost)
            else ""
        )
        lines.append(
            f"  {entity} {names.get(entity, '')!r}: {rights.devices} device(s), "
            f"{len(rights.since)} image(s), {len(rights.grace)} in grace{moved}"
        )
    for entity, count in record.unregistered.items():
        lines.append(
            f"  {entity}: not registered ({count} device(s) give it nothing); register it with "
            "`cfl-repo supplier add`, then import again"
        )
    lines.append("apply it at the host: `cfl-repo host nginx --access estate ...`, then reload")
    return lines


@entitlements.command("show")
@click.argument("entity")
@click.option(
    "--on", "on_day", metavar="YYYY-MM-DD", help="The day to show rights for [default: today]."
)
@click.option("--history", is_flag=True, help="Also list the supplier's rights in every import.")
@click.option("--json", "as_json", is_flag=True, help="Print the supplier's rights on stdout.")
@click.pass_context
def entitlements_show(
    ctx: click.Context, entity: str, on_day: str | None, history: bool, as_json: bool
) -> None:
    """Show the images ENTITY (an Entity ID) has the right to in the record in force.

    \b
    Each image with the day its right began (a Change of Supplier gain counts from its Since),
    and the images kept for a grace period after a loss, with their last day:
      cfl-repo --repo R entitlements show 90B3D51F30010000
      cfl-repo --repo R entitlements show 90B3D51F30010000 --history --json
    """
    from repo_tool.state.entitlements import EntitlementStore

    day = parse_day(on_day, "--on") or utc_now().date()
    try:
        eid = _entity_id(entity, "ENTITY")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    repo = _open_repo(ctx)
    supplier = repo.suppliers().by_entity_id().get(eid)
    store = EntitlementStore(repo.state_dir)
    entries = store.history(repo.head).entries
    if not entries:
        raise ConfigurationError(
            "entitlements: none imported yet; run `cfl-repo entitlements import INVENTORY.csv`"
        )
    current = store.record(entries[-1].record)
    if supplier is None:
        devices = current.unregistered.get(eid)
        raise RejectedInputError(
            field_error("ENTITY", eid, "a registered Entity ID (`cfl-repo supplier list`)"),
            hint=f"the inventory in force lists {devices} device(s) for it" if devices else None,
        )
    doc = _show_doc(current, entries[-1].record, eid, day)
    doc["name"] = supplier.name
    if history:
        doc["history"] = [
            _history_item(store.record(entry.record), entry.record, eid) for entry in entries
        ]
    if as_json:
        emit_json(doc)
        return
    for line in _show_lines(doc):
        click.echo(line)


def _show_doc(record: EntitlementRecord, sha: str, eid: str, day: date) -> dict[str, Any]:
    rights = record.rights_of(eid)
    return {
        "entity_id": eid,
        "record": sha,
        "inventory_date": record.inventory_date.isoformat(),
        "imported": format_timestamp(record.imported),
        "on": day.isoformat(),
        "devices": rights.devices,
        "images": [
            {"target": t, "since": first.isoformat(), "in_force": first <= day}
            for t, first in sorted(rights.since.items())
        ],
        "grace": [
            {"target": t, "until": last.isoformat(), "in_force": day <= last}
            for t, last in sorted(rights.grace.items())
        ],
    }


def _history_item(record: EntitlementRecord, sha: str, eid: str) -> dict[str, Any]:
    rights = record.rights_of(eid)
    return {
        "record": sha,
        "inventory_date": record.inventory_date.isoformat(),
        "imported": format_timestamp(record.imported),
        "devices": rights.devices,
        "images": len(rights.since),
        "grace": len(rights.grace),
    }


def _show_lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"{doc['entity_id']} {doc['name']!r}: record {doc['record'][:16]} (inventory of "
        f"{doc['inventory_date']}, imported {doc['imported']}), {doc['devices']} device(s)",
        f"images by estate ({len(doc['images'])}):",
    ]
    for item in doc["images"]:
        note = "" if item["in_force"] else f" (not before {item['since']})"
        lines.append(f"  {item['target']}  since {item['since']}{note}")
    if doc["grace"]:
        lines.append(f"kept after a Change of Supplier ({len(doc['grace'])}):")
        for item in doc["grace"]:
            note = "" if item["in_force"] else " (ended)"
            lines.append(f"  {item['target']}  until {item['until']}{note}")
    for item in doc.get("history", ()):
        lines.append(
            f"history: {item['imported']} inventory of {item['inventory_date']}: "
            f"{item['devices']} device(s), {item['images']} image(s), {item['grace']} in grace"
        )
    return lines


# ------------------------------------------------------------------ host nginx --access estate


def estate_for_host(repo: Repository, day: date) -> EstateMaps:
    """The estate maps of the record in force, for `host nginx --access estate` on ``day``.

    Raises:
        ConfigurationError: nothing imported yet.
        UnavailableError: the stored record cannot be read.
    """
    from metadata_templates.naming import is_image_target_path
    from repo_tool.access.host_estate import estate_maps
    from repo_tool.state.entitlements import EntitlementStore

    store = EntitlementStore(repo.state_dir)
    current = store.history(repo.head).current
    if current is None:
        raise ConfigurationError(
            "--access estate: found no entitlements imported, expected at least one import",
            hint="run `cfl-repo entitlements import INVENTORY.csv` first",
        )
    library = [
        path
        for name in sorted(repo.head.roles)
        for path in repo.role(name).signed.targets
        if is_image_target_path(path)
    ]
    return estate_maps(
        store.record(current.record),
        current.record,
        repo.suppliers(),
        day=day,
        library=library,
        policy=repo.config.entitlements,
    )


def estate_doc(maps: EstateMaps, config_bytes: int) -> dict[str, Any]:
    """The ``estate`` part of `host nginx --json`."""
    return {
        "record": maps.record,
        "on": maps.day.isoformat(),
        "rights": maps.rights,
        "images_held": len(maps.holders),
        "images_unheld": maps.unheld,
        "map_entries": maps.map_entries,
        "config_bytes": config_bytes,
        "device_types": list(maps.device_types) if maps.device_types is not None else None,
        "next_change": maps.next_change.isoformat() if maps.next_change else None,
    }


def estate_lines(maps: EstateMaps) -> list[str]:
    """What the operator is told about the estate maps (stderr)."""
    lines = [
        f"access by estate: record {maps.record[:16]} on {maps.day.isoformat()}: {maps.rights} "
        f"right(s) to {len(maps.holders)} image(s)"
    ]
    if maps.unheld:
        lines.append(
            f"warning: {maps.unheld} image(s) in the library no supplier may fetch: no registered "
            "supplier's device is on their upgrade path, or they were published after the import "
            "in force (import a current inventory)"
        )
    if maps.next_change is not None:
        lines.append(
            f"regenerate on {maps.next_change.isoformat()}: a right begins or a grace period "
            "ends that day (or simply regenerate daily)"
        )
    return lines
