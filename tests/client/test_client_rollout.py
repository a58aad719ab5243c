"""Phased rollout: --phases parsing, stable cohorts, and the hop-by-hop batch plan."""

from __future__ import annotations

import csv
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from client_factories import cpl, cpl_entry, device_id, image, write_estate

from client.estate.check import check_estate, write_estate_devices
from client.estate.rollout import Phases, parse_phases, plan_rollout
from metadata_templates.errors import ConfigurationError, RejectedInputError

V1 = cpl_entry("CPL-1", fw="00000001")
V2 = cpl_entry("CPL-2", fw="00000002")
V3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
IMG2 = image([V2])
IMG3 = image([V3], reason="security", advisories=["CVE-2026-0001"])
DOC = cpl([V1, V2, V3])
OLD = ("ESME", "121D", "0001", "0001", "00000001")


def test_phases_parse_as_cumulative_percentages() -> None:
    assert parse_phases("1,10,100").percentages == (Decimal(1), Decimal(10), Decimal(100))
    assert parse_phases(" 0.5 , 100").percentages == (Decimal("0.5"), Decimal(100))
    assert parse_phases("100").percentages == (Decimal(100),)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("1,10", "last phase 10"),
        ("10,1,100", "'1'"),
        ("1,1,100", "'1'"),
        ("0,100", "'0'"),
        ("-5,100", "'-5'"),
        ("1,x,100", "'x'"),
        ("1,,100", "''"),
        ("1,10,150", "'150'"),
        ("nan", "'nan'"),
        ("", "''"),
    ],
    ids=[
        "not-ending-at-100",
        "decreasing",
        "repeated",
        "zero",
        "negative",
        "not-a-number",
        "empty-item",
        "over-100",
        "nan",
        "empty",
    ],
)
def test_bad_phases_are_a_usage_error_naming_the_value(text: str, found: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_phases(text)
    message = str(caught.value)
    assert message.startswith("--phases: found ") and found in message
    assert "ending at 100" in message
    assert caught.value.exit_code == 2


def test_a_device_phase_depends_only_on_its_id_and_target() -> None:
    phases = parse_phases("1,10,100")
    ids = [device_id(n) for n in range(20_000)]
    first = [phases.phase_of(d, IMG3.target_path) for d in ids]
    # the same answer again, and for any subset of the estate (a Change of Supplier)
    assert [phases.phase_of(d, IMG3.target_path) for d in ids] == first
    assert [phases.phase_of(d, IMG3.target_path) for d in ids[::7]] == first[::7]
    counts = Counter(first)
    # cumulative cohorts: ~1% in phase 1, ~9% more in phase 2, the rest in phase 3
    assert 100 < counts[1] < 300
    assert 1_500 < counts[2] < 2_100
    assert counts[1] + counts[2] + counts[3] == len(ids)
    # cohorts are drawn per target, so one image's pilot group is not every image's
    other = [phases.phase_of(d, IMG2.target_path) for d in ids]
    assert other != first
    # a device in the first 1% is in the first 10% too when the plan is widened
    wider = parse_phases("10,100")
    assert all(wider.phase_of(d, IMG3.target_path) == 1 for d, p in zip(ids, first) if p <= 2)


def test_plan_numbers_batches_by_phase_then_hop_then_target() -> None:
    plan = plan_rollout({(2, 1, "b"): 3, (1, 2, "a"): 1, (1, 1, "z"): 5, (1, 1, "a"): 2}, 2)
    assert [(k, r.first, r.count) for k, r in sorted(plan.items())] == [
        ((1, 1, "a"), 1, 1),
        ((1, 1, "z"), 2, 3),
        ((1, 2, "a"), 5, 1),
        ((2, 1, "b"), 6, 2),
    ]
    with pytest.raises(ValueError, match="found 0"):
        plan_rollout({}, 0)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_devices_out_with_phases_writes_every_hop_in_the_device_phase(tmp_path: Path) -> None:
    rows = [(device_id(n), *OLD) for n in range(3_000)]
    estate = write_estate(tmp_path / "estate.csv", rows)
    report = check_estate(estate, [IMG2, IMG3], DOC)
    out = tmp_path / "devices.csv"
    plan = write_estate_devices(estate, report, out, phases=parse_phases("1,10,100"), limit=500)
    written = _rows(out)
    assert len(written) == 2 * len(rows)  # two hops each
    phases = Phases(parse_phases("1,10,100").percentages)
    by_device: dict[str, list[dict[str, str]]] = {}
    for row in written:
        by_device.setdefault(row["Device ID"], []).append(row)
    for device, hops in by_device.items():
        assert [h["Recommended Target"] for h in hops] == [IMG2.target_path, IMG3.target_path]
        assert [h["Hop"] for h in hops] == ["1", "2"]
        # the phase comes from the final target, so both hops share it
        assert {h["Phase"] for h in hops} == {str(phases.phase_of(device, IMG3.target_path))}
    # every batch: one image, one hop, one phase, at most the limit
    batches: dict[str, set[tuple[str, str, str]]] = {}
    sizes = Counter(r["Batch"] for r in written)
    for r in written:
        batches.setdefault(r["Batch"], set()).add((r["Recommended Target"], r["Hop"], r["Phase"]))
    assert all(len(stage) == 1 for stage in batches.values())
    assert max(sizes.values()) <= 500
    assert sorted(int(b) for b in batches) == list(range(1, len(batches) + 1))
    assert sum(r.devices for r in plan.values()) == len(written)
    # a re-run on the estate after losing half the meters keeps every remaining device's phase
    kept = write_estate(tmp_path / "kept.csv", rows[::2])
    again = tmp_path / "again.csv"
    write_estate_devices(
        kept, check_estate(kept, [IMG2, IMG3], DOC), again, phases=parse_phases("1,10,100")
    )
    for row in _rows(again):
        assert row["Phase"] == by_device[row["Device ID"]][0]["Phase"]


def test_devices_out_with_phases_refuses_an_estate_that_changed(tmp_path: Path) -> None:
    estate = write_estate(tmp_path / "e.csv", [(device_id(1), *OLD)])
    report = check_estate(estate, [IMG2, IMG3], DOC)
    write_estate(tmp_path / "e.csv", [(device_id(1), *OLD[:4], "00000002")])
    with pytest.raises(RejectedInputError, match="first pass did not see"):
        write_estate_devices(estate, report, tmp_path / "d.csv", phases=parse_phases("5,100"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


def test_devices_out_with_phases_refuses_a_group_that_grew_since_the_check(tmp_path: Path) -> None:
    estate = write_estate(tmp_path / "e.csv", [(device_id(1), *OLD)])
    report = check_estate(estate, [IMG2, IMG3], DOC)
    write_estate(tmp_path / "e.csv", [(device_id(n), *OLD) for n in range(1, 3)])
    with pytest.raises(RejectedInputError, match="has 2 devices on this pass, expected 1"):
        write_estate_devices(estate, report, tmp_path / "d.csv", phases=parse_phases("5,100"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]
