"""The check report: stable JSON, the summary table, SR 11.1 batching and the per-device CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from client_factories import cpl, cpl_entry, device_id, image, write_estate
from rich.console import Console

from client.cli.tables import render_summary
from client.estate.check import check_estate, write_estate_devices
from client.estate.matching import match_estate
from client.estate.reader import EstateProblem, GroupKey
from client.estate.report import CheckReport, report_json
from client.estate.rollout import ROLLOUT_CSV_COLUMNS
from metadata_templates.errors import RejectedInputError

V1 = cpl_entry("CPL-1", fw="00000001")
V2 = cpl_entry("CPL-2", fw="00000002")
V3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
DOC = cpl([V1, V2, V3])
IMG2 = image([V2])
IMG3 = image([V3], reason="security", advisories=["CVE-2026-0001"])
OLD = GroupKey("ESME", "121D", "0001", "0001", "00000001")
MID = GroupKey("ESME", "121D", "0001", "0001", "00000002")
NEW = GroupKey("ESME", "121D", "0001", "0001", "00000003")


def test_json_has_exactly_the_documented_shape() -> None:
    groups = match_estate({NEW: 1, OLD: 3, MID: 2}, [IMG2, IMG3], DOC)
    problem = EstateProblem(7, "Device ID", "x", "an EUI-64")
    doc = report_json(CheckReport(6, groups, skipped_rows=1, problems=(problem,), problem_count=1))
    assert json.loads(json.dumps(doc)) == doc
    assert doc["schema_version"] == 1
    assert doc["devices"] == 6
    assert set(doc) == {"schema_version", "devices", "groups", "skipped_rows", "problem_count",
                        "problems"}  # fmt: skip
    group_keys = {
        "device_type", "manufacturer_id", "model_id", "hardware_version", "firmware_version",
        "device_count", "applicable", "recommended", "path", "newest", "newest_unreachable",
        "held",  # issue 24: images on hold that apply (empty unless cfl/outcomes.json holds one)
    }  # fmt: skip
    assert all(set(g) == group_keys for g in doc["groups"])
    assert [g["firmware_version"] for g in doc["groups"]] == ["00000001", "00000002", "00000003"]
    old, mid, new = doc["groups"]
    assert old["applicable"] == [
        {
            "target": IMG2.target_path,
            "firmware_version": "00000002",
            "reason": "compliance",
            "advisories": [],
            "manufacturer_image_sha256": IMG2.cfl.manufacturer_image_sha256,
        }
    ]
    assert old["recommended"] == IMG2.target_path
    assert mid["applicable"][0]["reason"] == "security"
    assert mid["applicable"][0]["advisories"] == ["CVE-2026-0001"]
    assert new == {**new, "applicable": [], "recommended": None, "device_count": 1}
    assert doc["problems"][0]["row"] == 7


def test_summary_flags_security_and_prints_data_verbatim() -> None:
    evil = cpl_entry("CPL-[bold]x[/bold]", fw="00000009")
    groups = match_estate({OLD: 3, MID: 2}, [IMG2, IMG3, image([evil])], cpl([V1, V2, V3, evil]))
    out = io.StringIO()
    problem = EstateProblem(4, "Model Identifier", "[red]oops[/red]", "4 or 8 hex digits")
    report = CheckReport(5, groups, skipped_rows=1, problems=(problem,), problem_count=2)
    render_summary(report, Console(file=out, width=250, color_system=None))
    text = out.getvalue()
    assert "SECURITY CVE-2026-0001" in text
    assert "[red]oops[/red]" in text
    assert "1 bad row(s) skipped (2 problem(s))" in text
    assert "and 1 more" in text


def test_devices_csv_lists_every_device_with_target_hash_and_batch(tmp_path: Path) -> None:
    rows = [(device_id(i), "ESME", "121D", "0001", "0001", "00000001") for i in range(7)]
    rows += [(device_id(100 + i), "ESME", "121D", "0001", "0001", "00000002") for i in range(3)]
    rows += [(device_id(200), "ESME", "121D", "0001", "0001", "00000003"), ("bad", *rows[0][1:])]
    estate = write_estate(tmp_path / "estate.csv", rows)
    report = check_estate(estate, [IMG2, IMG3], DOC)
    out = tmp_path / "out" / "devices.csv"
    plan = write_estate_devices(estate, report, out, limit=3)
    # firmware 1 reaches IMG3 through IMG2 (IMG3's pathway lists only CPL-2): two hops
    assert {k: (r.count, r.devices) for k, r in plan.items()} == {
        (1, 1, IMG2.target_path): (3, 7),
        (1, 1, IMG3.target_path): (1, 3),
        (1, 2, IMG3.target_path): (3, 7),
    }
    assert [r.first for _, r in sorted(plan.items())] == [1, 4, 5]  # sent hop 1 first
    with out.open(newline="") as handle:
        written = list(csv.reader(handle))
    assert tuple(written[0]) == ROLLOUT_CSV_COLUMNS
    body = written[1:]
    assert len(body) == 18  # every good device and hop, the bad row left out
    by_id: dict[str, list[list[str]]] = {}
    for row in body:
        by_id.setdefault(row[0], []).append(row)
    assert len(by_id) == 11
    assert [r[1:3] for r in by_id[device_id(0)]] == [
        [IMG2.target_path, IMG2.cfl.manufacturer_image_sha256],
        [IMG3.target_path, IMG3.cfl.manufacturer_image_sha256],
    ]
    assert [r[4:] for r in by_id[device_id(0)]] == [["1", "1"], ["2", "1"]]
    assert [r[1:3] for r in by_id[device_id(100)]] == [
        [IMG3.target_path, IMG3.cfl.manufacturer_image_sha256]
    ]
    assert by_id[device_id(200)] == [[device_id(200), "", "", "", "", ""]]
    batches = Counter((r[1], r[3]) for r in body if r[1])
    assert max(batches.values()) <= 3
    assert len({b for _, b in batches}) == len(batches)  # a batch never mixes targets
    assert [p.name for p in out.parent.iterdir()] == ["devices.csv"]


def test_devices_csv_refuses_an_estate_that_changed_and_leaves_nothing(tmp_path: Path) -> None:
    estate = write_estate(tmp_path / "e.csv", [(device_id(1), "ESME", "121D", "0001", "0001",
                                                "00000001")])  # fmt: skip
    report = check_estate(estate, [IMG2], DOC)
    write_estate(tmp_path / "e.csv", [(device_id(i), "ESME", "121D", "0001", "0001", "00000001")
                                      for i in range(2)])  # fmt: skip
    out = tmp_path / "devices.csv"
    with pytest.raises(RejectedInputError, match="estate changed"):
        write_estate_devices(estate, report, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]
