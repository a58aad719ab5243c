"""The pure core: upgrade reach over every hop, the stored record's format and its refusals, the
record in force at a moment, and the audit's judgement against it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef
from repo_tool.access.inventory import DeviceKind
from repo_tool.entitle.change import grace_rights
from repo_tool.entitle.judge import EntitlementJudge
from repo_tool.entitle.record import (
    EntitlementHistory,
    EntitlementRecord,
    EntityRights,
    HistoryEntry,
    RecordError,
)
from repo_tool.entitle.rights import UpgradeReach

DAY = timedelta(days=1)
E1, E2 = "00000000000000E1", "00000000000000E2"
T0 = datetime(2026, 3, 1, 6, tzinfo=UTC)


def entry(fw: int, upgrade_from: tuple[str, ...] = ()) -> CplEntry:
    return CplEntry(
        f"CPL-{fw}", "ESME", "121D", "Maker", "0001", "Model", "1111", f"{fw:08X}",
        "SMETS V5.0", "4.2", f"{fw:064x}", "CPA", None, "Active", upgrade_from,
    )  # fmt: skip


def image(fw: int, upgrade_from: tuple[str, ...] = ()) -> tuple[str, CflTargetInfo]:
    target = f"121D/ESME-0001-{fw:08X}-{fw:016x}.ota"
    info = CflTargetInfo(
        device_type="ESME", manufacturer_id="121D", manufacturer_name="Maker", image_type="0001",
        firmware_version=f"{fw:08X}", stack_version="0002", header_string="t",
        hardware_version_min="1111", hardware_version_max="1111",
        manufacturer_image_sha256=f"{fw:064x}", manufacturer_image_length=10,
        cpl_entries=(CplEntryRef(f"CPL-{fw}", "0001", "Model", "1111", "Active", upgrade_from),),
        reason="compliance", advisories=(), published="2026-01-01T00:00:00Z",
    )  # fmt: skip
    return target, info


def device(fw: int) -> DeviceKind:
    return DeviceKind("ESME", "121D", "0001", "1111", f"{fw:08X}")


def reach(*images: tuple[str, CflTargetInfo], entries: list[CplEntry]) -> UpgradeReach:
    return UpgradeReach(images, CplDocument.of(entries, "0" * 64, "2026-01-01T00:00:00Z"))


def test_every_hop_of_a_pathway_is_a_right() -> None:
    # fw2 (N/A), fw3 only from CPL-2, fw4 only from CPL-3: a firmware-1 device needs all three.
    images = (image(2), image(3, ("CPL-2",)), image(4, ("CPL-3",)))
    rule = reach(*images, entries=[entry(1), entry(2), entry(3, ("CPL-2",)), entry(4, ("CPL-3",))])
    assert rule.reachable(device(1)) == {t for t, _ in images}
    assert rule.reachable(device(3)) == {images[1][0], images[2][0]}  # runs fw3, fw4 applies
    assert rule.reachable(device(9)) == frozenset()
    other = DeviceKind("GSME", "121D", "0001", "1111", "00000001")
    assert rule.reachable(other) == frozenset()  # the device type must match too


def test_a_pathway_cycle_terminates() -> None:
    five, six = image(5, ("CPL-6",)), image(6, ("CPL-5",))
    rule = reach(five, six, entries=[entry(5, ("CPL-6",)), entry(6, ("CPL-5",))])
    assert rule.reachable(device(5)) == {five[0], six[0]}


def test_rights_start_on_the_earliest_day_of_any_kind_that_gives_them() -> None:
    images = (image(2), image(3, ("CPL-2",)))
    rule = reach(*images, entries=[entry(1), entry(2), entry(3, ("CPL-2",))])
    d = date(2026, 1, 1)
    rights = rule.rights({device(1): d, device(2): d - DAY})
    assert rights == {images[0][0]: d - DAY, images[1][0]: d - DAY}


def test_a_right_not_begun_by_the_inventory_date_gets_no_grace() -> None:
    target = image(2)[0]
    previous = EntitlementRecord(
        date(2026, 2, 1), T0, "0" * 64, 1, 0, 28, None,
        {E1: EntityRights(since={target: date(2026, 6, 1)})},
    )  # fmt: skip
    grace, changes = grace_rights(previous, {}, inventory_date=date(2026, 3, 1), grace_days=28)
    assert grace == {} and changes == {}


# ------------------------------------------------------------------------------------ record

TARGET = image(2)[0]


def record(**changes: object) -> EntitlementRecord:
    base = EntitlementRecord(
        inventory_date=date(2026, 2, 28), imported=T0, inventory_sha256="a" * 64, devices=2,
        bad_rows=0, grace_days=28, previous=None,
        entities={E1: EntityRights(since={TARGET: date(2025, 1, 1)}, devices=2),
                  E2: EntityRights(grace={TARGET: date(2026, 3, 28)})},
        unregistered={"00000000000000FF": 1},
    )  # fmt: skip
    return EntitlementRecord(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_a_record_reads_back_as_written() -> None:
    data = record().to_bytes()
    assert EntitlementRecord.from_bytes(data) == record()
    assert EntitlementRecord.from_bytes(data).to_bytes() == data  # deterministic


def _tampered(path: list[str], value: object) -> bytes:
    doc = json.loads(record().to_bytes())
    where = doc
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return json.dumps(doc).encode()


ATTACKS = {
    # A target path becomes a map key in nginx.conf: nothing but an image path may get there.
    "target-injects-nginx": (["entities", E1, "rights", "2025-01-01"], ['x"; } server { #']),
    "target-traversal": (["entities", E1, "rights", "2025-01-01"], ["../../etc/passwd"]),
    "target-not-a-string": (["entities", E1, "rights", "2025-01-01"], [7]),
    "entity-not-hex": (["entities"], {"zz": {"devices": 0, "rights": {}, "grace": {}}}),
    "bad-day": (["entities", E1, "rights"], {"2025-1-1": [TARGET]}),
    "negative-count": (["devices"], -1),
    "boolean-count": (["devices"], True),
    "bad-previous": (["previous"], "../x"),
    "bad-sha": (["inventory_sha256"], "A" * 64),
    "bad-time": (["imported"], "yesterday"),
    "wrong-format": (["format"], "cfl-entitlements-2"),
    "wrong-schema": (["schema_version"], 2),
    "rights-not-object": (["entities", E1, "rights"], []),
}


@pytest.mark.parametrize("case", sorted(ATTACKS), ids=str)
def test_a_record_that_is_not_ours_is_refused(case: str) -> None:
    path, value = ATTACKS[case]
    with pytest.raises(RecordError):
        EntitlementRecord.from_bytes(_tampered(path, value))


@pytest.mark.parametrize(
    "data", [b"", b"[]", b"\xff\xfe", b'{"format": "cfl-entitlements-1", "schema_version": 1}']
)
def test_garbage_is_a_record_error(data: bytes) -> None:
    with pytest.raises(RecordError):
        EntitlementRecord.from_bytes(data)


def test_history_refuses_entries_out_of_order() -> None:
    first = HistoryEntry("a" * 64, date(2026, 1, 31), T0, 1)
    second = HistoryEntry("b" * 64, date(2026, 2, 28), T0 - DAY, 1)
    data = EntitlementHistory((first, second)).to_bytes()
    with pytest.raises(RecordError, match="out of import order"):
        EntitlementHistory.from_bytes(data)


# ------------------------------------------------------------------------- in force at a time


def test_the_record_in_force_is_the_last_imported_at_or_before_the_moment() -> None:
    old = record(entities={E1: EntityRights(since={TARGET: date(2025, 1, 1)})})
    new = record(entities={E2: EntityRights(since={TARGET: date(2026, 2, 20)})})
    stored = {"a" * 64: old, "b" * 64: new}
    history = EntitlementHistory(
        (HistoryEntry("a" * 64, date(2026, 1, 31), T0, 1),
         HistoryEntry("b" * 64, date(2026, 2, 28), T0 + 10 * DAY, 1))
    )  # fmt: skip
    loads: list[str] = []

    def load(sha: str) -> EntitlementRecord:
        loads.append(sha)
        return stored[sha]

    judge = EntitlementJudge(history, load)
    assert judge.judge(E1, TARGET, T0 - DAY).record is None  # before the first import
    assert judge.judge(E1, TARGET, T0).basis == "estate"
    assert judge.judge(E2, TARGET, T0 + DAY).basis is None  # E2's right came with the later one
    assert judge.judge(E2, TARGET, T0 + 10 * DAY).basis == "estate"
    assert judge.judge(E1, TARGET, T0 + 10 * DAY).basis is None
    assert judge.judge(None, TARGET, T0 + 11 * DAY).record == "b" * 64
    assert loads == ["a" * 64, "b" * 64]  # each record read once
    assert set(judge.used) == {"a" * 64, "b" * 64}


def test_grace_is_judged_by_day_inclusive() -> None:
    rights = record().rights_of(E2)
    assert rights.basis(TARGET, date(2026, 3, 28)) == "grace"
    assert rights.basis(TARGET, date(2026, 3, 29)) is None
    assert rights.changes_after(date(2026, 3, 1)) == {date(2026, 3, 29)}
