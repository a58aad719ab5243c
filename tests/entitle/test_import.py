"""`entitlements import` as an operation on a real repository: rights by estate over every hop,
Change of Supplier with its grace, and every refusal leaving the repository as it was."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from entitle.conftest import D1, D2, D3, DAY, FF, S1, S2, S3, TODAY, World, write_inventory
from factory import T0
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.entitle.policy import EntitlementPolicy
from repo_tool.ops.entitlements import ImportResult, import_entitlements, read_estate
from repo_tool.ops.publish import publish
from repo_tool.ops.withdraw import withdraw
from repo_tool.state.config import RepoConfig
from repo_tool.state.entitlements import EntitlementStore
from repo_tool.state.repository import Repository

LONG_AGO = date(2025, 1, 1)


def run_import(
    repo: Repository, path: Path, *, days_later: int = 0, **options: object
) -> ImportResult:
    with repo.locked():
        return import_entitlements(
            repo, read_estate(path), now=T0 + timedelta(days=days_later), **options
        )  # type: ignore[arg-type]


def state_files(repo: Repository) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo.path)): p.read_bytes()
        for p in sorted(repo.path.rglob("*"))
        if p.is_file() and ".lock" not in p.name
    }


def test_rights_cover_every_hop_and_the_image_a_device_runs(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    t = pristine.targets
    path = write_inventory(
        tmp_path / "inv.csv",
        [(D1, S1, LONG_AGO), (D2, S2, LONG_AGO + DAY), (D3, S3, LONG_AGO + 2 * DAY)],
    )
    record = run_import(repo_copy, path).record
    # Firmware 1 reaches a2 (N/A pathway), and a3 only through a2 (Upgrade From CPL-0002).
    assert record.rights_of(S1).since == {t["a2"]: LONG_AGO, t["a3"]: LONG_AGO}
    assert record.rights_of(S2).since == {t["b5"]: LONG_AGO + DAY}
    # Firmware 2 runs a2 already, and a3 applies to it.
    assert set(record.rights_of(S3).since) == {t["a2"], t["a3"]}
    assert record.inventory_date == LONG_AGO + 2 * DAY  # the latest Since, by default
    assert record.devices == 3
    assert {e: r.devices for e, r in record.entities.items()} == {S1: 1, S2: 1, S3: 1}


def test_the_earliest_since_of_a_supplier_s_devices_starts_the_right(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    later = replace(D3, device_id="00000000000000D4", firmware="00000001")
    path = write_inventory(tmp_path / "inv.csv", [(D1, S1, TODAY), (later, S1, TODAY - 9 * DAY)])
    rights = run_import(repo_copy, path).record.rights_of(S1)
    assert rights.since[pristine.targets["a3"]] == TODAY - 9 * DAY


def test_an_unregistered_supplier_is_reported_and_gets_nothing(
    repo_copy: Repository, tmp_path: Path
) -> None:
    path = write_inventory(tmp_path / "inv.csv", [(D1, S1, LONG_AGO), (D3, FF, LONG_AGO)])
    record = run_import(repo_copy, path).record
    assert record.unregistered == {FF: 1}
    assert FF not in record.entities


def test_withdrawn_images_are_on_nobody_s_path(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    with repo_copy.locked():
        withdraw(repo_copy, pristine.targets["a2"], "recalled", now=T0)
    path = write_inventory(tmp_path / "inv.csv", [(D1, S1, LONG_AGO), (D3, S3, LONG_AGO)])
    record = run_import(repo_copy, path).record
    # Without a2, firmware 1 has no first hop, so it cannot reach a3 either.
    assert record.rights_of(S1).since == {}
    assert set(record.rights_of(S3).since) == {pristine.targets["a3"]}


# ------------------------------------------------------------------------- Change of Supplier


def test_change_of_supplier_moves_the_right_and_the_loser_keeps_a_grace(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    t = pristine.targets
    first = write_inventory(tmp_path / "1.csv", [(D1, S1, LONG_AGO), (D2, S2, LONG_AGO)])
    run_import(repo_copy, first)
    moved = TODAY - 3 * DAY
    second = write_inventory(tmp_path / "2.csv", [(D1, S2, moved), (D2, S2, LONG_AGO)])
    result = run_import(repo_copy, second, days_later=1, inventory_date=TODAY)
    record = result.record
    assert record.rights_of(S2).since == {t["a2"]: moved, t["a3"]: moved, t["b5"]: LONG_AGO}
    grace_end = TODAY + 28 * DAY  # the default policy
    assert record.rights_of(S1).since == {}
    assert record.rights_of(S1).grace == {t["a2"]: grace_end, t["a3"]: grace_end}
    assert result.changes[S1].lost == tuple(sorted((t["a2"], t["a3"])))
    assert set(result.changes[S2].gained) == {t["a2"], t["a3"]}
    assert record.rights_of(S1).basis(t["a2"], grace_end) == "grace"
    assert record.rights_of(S1).basis(t["a2"], grace_end + DAY) is None
    assert record.rights_of(S2).basis(t["a2"], moved - DAY) is None
    assert record.rights_of(S2).basis(t["a2"], moved) == "estate"

    # A later import that still lacks the right keeps the grace's last day, never extends it...
    third = write_inventory(tmp_path / "3.csv", [(D1, S2, moved)])
    kept = run_import(repo_copy, third, days_later=2, inventory_date=TODAY + 10 * DAY).record
    assert kept.rights_of(S1).grace == {t["a2"]: grace_end, t["a3"]: grace_end}
    # ... and one after its end drops it.
    fourth = write_inventory(tmp_path / "4.csv", [(D1, S2, moved)])
    later = TODAY + 30 * DAY
    after = run_import(repo_copy, fourth, days_later=3, inventory_date=later)
    assert S1 not in after.record.entities
    assert set(after.changes[S1].expired) == {t["a2"], t["a3"]}


def test_a_transfer_reversed_is_an_ordinary_right_again(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    run_import(repo_copy, write_inventory(tmp_path / "1.csv", [(D1, S1, LONG_AGO)]))
    run_import(
        repo_copy,
        write_inventory(tmp_path / "2.csv", [(D1, S2, TODAY)]),
        days_later=1,
        inventory_date=TODAY,
    )
    back = run_import(
        repo_copy,
        write_inventory(tmp_path / "3.csv", [(D1, S1, TODAY + DAY)]),
        days_later=2,
        inventory_date=TODAY + DAY,
    ).record
    assert back.rights_of(S1).grace == {}
    assert back.rights_of(S1).since[pristine.targets["a2"]] == TODAY + DAY
    assert set(back.rights_of(S2).grace) == {pristine.targets["a2"], pristine.targets["a3"]}


def test_the_grace_period_is_policy(repo_copy: Repository, tmp_path: Path) -> None:
    config = replace(repo_copy.config, entitlements=EntitlementPolicy(cos_grace_days=0))
    config.save(repo_copy.path)
    assert json.loads((repo_copy.path / "cfl-repo.json").read_bytes())["entitlements"] == {
        "cos_grace_days": 0
    }
    repo = Repository.open(repo_copy.path)
    run_import(repo, write_inventory(tmp_path / "1.csv", [(D1, S1, LONG_AGO)]))
    second = write_inventory(tmp_path / "2.csv", [(D1, S2, TODAY)])
    record = run_import(repo, second, days_later=1, inventory_date=TODAY).record
    assert set(record.rights_of(S1).grace.values()) == {TODAY}  # the inventory's own day only


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"cos_grace_days": -1}, "cos_grace_days: found -1"),
        ({"cos_grace_days": "28"}, "cos_grace_days: found '28'"),
        ({"estate_device_types": []}, "estate_device_types: found []"),
        ({"estate_device_types": ["ES ME"]}, "estate_device_types"),
        ({"grace": 3}, "unknown field(s) ['grace']"),
    ],
    ids=["negative", "string", "empty-types", "bad-type", "unknown"],
)
def test_a_bad_policy_is_a_configuration_error(
    repo_copy: Repository, section: dict[str, object], message: str
) -> None:
    path = repo_copy.path / "cfl-repo.json"
    doc = json.loads(path.read_bytes())
    doc["entitlements"] = section
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        RepoConfig.load(repo_copy.path)


# ------------------------------------------------------------------------------- refusals

BAD_ROWS = {
    "device-id": ("0000000000D1,ESME,121D,010A030B,1111,00000001", "Device ID", "'0000000000D1'"),
    "device-type": ("00000000000000D1,ES ME,121D,010A030B,1111,00000001", "Device Type", "'ES ME'"),
    "manufacturer": ("00000000000000D1,ESME,12G,010A030B,1111,00000001", "Manufacturer", "'12G'"),
    "model": ("00000000000000D1,ESME,121D,010A03,1111,00000001", "Model Identifier", "'010A03'"),
    "hardware": ("00000000000000D1,ESME,121D,010A030B,11,00000001", "Hardware Version", "'11'"),
    "firmware": ("00000000000000D1,ESME,121D,010A030B,1111,1", "Firmware Version", "'1'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS), ids=str)
def test_a_malformed_row_names_line_column_value_and_expectation_and_changes_nothing(
    repo_copy: Repository, tmp_path: Path, case: str
) -> None:
    row, column, found = BAD_ROWS[case]
    good = write_inventory(tmp_path / "good.csv", [(D1, S1, LONG_AGO), (D2, S2, LONG_AGO)])
    path = tmp_path / "bad.csv"
    path.write_text(good.read_text() + f"{row},{S1},2025-01-01\n")
    before = state_files(repo_copy)
    with pytest.raises(RejectedInputError) as raised:
        run_import(repo_copy, path)
    message = str(raised.value)
    assert message.startswith(f"{path} line 4: {column}")
    assert f"found {found}" in message and "expected" in message
    assert state_files(repo_copy) == before


@pytest.mark.parametrize(
    ("row", "column"),
    [
        (f"00000000000000D1,ESME,121D,010A030B,1111,00000001,{S1[:-1]},2025-01-01", "Responsible"),
        (f"00000000000000D1,ESME,121D,010A030B,1111,00000001,{S1},2025-13-01", "Since"),
        (f"00000000000000D1,ESME,121D,010A030B,1111,00000001,{S1}", "row"),
    ],
    ids=["supplier", "since", "short-row"],
)
def test_the_supplier_and_since_columns_are_checked_too(
    repo_copy: Repository, tmp_path: Path, row: str, column: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(write_inventory(tmp_path / "g.csv", [(D1, S1, LONG_AGO)]).read_text() + row)
    with pytest.raises(RejectedInputError, match=f"line 3: {column}"):
        run_import(repo_copy, path)


def test_skip_bad_counts_and_lists_what_it_left_out(repo_copy: Repository, tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    good = write_inventory(tmp_path / "g.csv", [(D1, S1, LONG_AGO)]).read_text()
    path.write_text(good + "x,y\n" + good.splitlines(keepends=True)[1])
    result = run_import(repo_copy, path, skip_bad=True)
    assert result.record.bad_rows == 1
    assert result.record.devices == 2
    assert result.skipped == (f"{path} line 3: row: found '2 fields', expected at least 8",)


def test_an_older_inventory_is_refused_unless_forced(repo_copy: Repository, tmp_path: Path) -> None:
    run_import(repo_copy, write_inventory(tmp_path / "new.csv", [(D1, S1, TODAY)]))
    old = write_inventory(tmp_path / "old.csv", [(D1, S2, TODAY - 5 * DAY)])
    before = state_files(repo_copy)
    with pytest.raises(
        RejectedInputError, match=r"inventory date: found '.*', expected on or after"
    ):
        run_import(repo_copy, old, days_later=1)
    assert state_files(repo_copy) == before
    forced = run_import(repo_copy, old, days_later=1, force=True).record
    assert S2 in forced.entities
    events = (repo_copy.path / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["forced"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("Device ID,Device Type\n", "the columns"),
        (
            "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
            "Firmware Version,Responsible Supplier,Since\n",
            "devices: found 0",
        ),
    ],
    ids=["empty", "missing-columns", "no-devices"],
)
def test_an_inventory_without_devices_is_refused(
    repo_copy: Repository, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "inv.csv"
    path.write_text(text)
    before = state_files(repo_copy)
    with pytest.raises(RejectedInputError, match=message):
        run_import(repo_copy, path)
    assert state_files(repo_copy) == before


# ------------------------------------------------------------------------ confidentiality


def test_the_record_is_private_state_never_logged_or_published(
    repo_copy: Repository, tmp_path: Path
) -> None:
    log_size = repo_copy.head.log_size
    result = run_import(repo_copy, write_inventory(tmp_path / "inv.csv", [(D1, S1, LONG_AGO)]))
    store = EntitlementStore(repo_copy.state_dir)
    path = store.path(result.record_sha256)
    assert path.stat().st_mode & 0o777 == 0o600
    assert store.record(result.record_sha256) == result.record
    history = store.history(repo_copy.head)
    assert [e.record for e in history.entries] == [result.record_sha256]
    # The transparency log is public: the import is not in it.
    assert repo_copy.head.log_size == log_size
    event = json.loads((repo_copy.path / "events.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "entitlements-import" and event["record"] == result.record_sha256
    assert S1 not in json.dumps(event)  # the event names no supplier
    before = state_files(repo_copy)
    publish(repo_copy, repo_copy.default_out, now=T0 + DAY)
    after = state_files(repo_copy)
    # Nothing TUF signs changed, so the publish has nothing new to write about it ...
    changed = {p for p in after if before.get(p) != after[p] and p.startswith("public/")}
    assert all("timestamp" in p or "snapshot" in p or p.startswith("public/site") for p in changed)
    # ... and no published byte names the record or the extract it came from.
    for name, data in after.items():
        if name.startswith("public/"):
            assert result.record_sha256.encode() not in data
            assert result.record.inventory_sha256.encode() not in data


def test_a_tampered_record_is_refused_when_read(repo_copy: Repository, tmp_path: Path) -> None:
    result = run_import(repo_copy, write_inventory(tmp_path / "inv.csv", [(D1, S1, LONG_AGO)]))
    store = EntitlementStore(repo_copy.state_dir)
    path = store.path(result.record_sha256)
    os.chmod(path, 0o600)
    path.write_bytes(path.read_bytes().replace(S1.encode(), S2.encode()))
    from metadata_templates.errors import UnavailableError

    with pytest.raises(UnavailableError, match="hashing to"):
        store.record(result.record_sha256)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("00000000000000D9,ESME,121D\x00,010A030B,1111,00000001,{S1},2025-01-01", "Manufacturer"),
        (
            '00000000000000D9,"' + "E" * 200_000 + '",121D,0001,1111,00000001,{S1},2025-01-01',
            "not CSV",
        ),
        ('00000000000000D9,"ES\nME",121D,0001,1111,00000001,{S1},2025-01-01', "Device Type"),
        ('=HYPERLINK("x"),ESME,121D,0001,1111,00000001,{S1},2025-01-01', "Device ID"),
    ],
    ids=["nul-byte", "huge-field", "newline-in-field", "formula"],
)
def test_hostile_csv_is_a_located_refusal(
    repo_copy: Repository, tmp_path: Path, row: str, message: str
) -> None:
    path = tmp_path / "inv.csv"
    good = write_inventory(tmp_path / "g.csv", [(D1, S1, LONG_AGO)]).read_text()
    path.write_text(good + row.replace("{S1}", S1) + "\n")
    before = state_files(repo_copy)
    with pytest.raises(RejectedInputError, match=f"line [34]: {message}"):
        run_import(repo_copy, path)
    assert state_files(repo_copy) == before
