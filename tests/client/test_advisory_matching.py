"""The pure join of advisories to an estate (client/advisories/matching.py, client/estate/advisories.py):
which groups are affected, which images fix, the fix path, the fail-on threshold, the report page."""

from __future__ import annotations

import json
from typing import Any

from client_factories import cpl, cpl_entry, image

from client.advisories.exports import csaf_document, openvex_document
from client.advisories.matching import AdvisoryIndex
from client.estate.advisories import at_or_above
from client.estate.check import plan_estate
from client.estate.html_report import build_report_model, render_report
from client.estate.reader import EstateSummary, GroupKey
from client.estate.report import report_json
from metadata_templates.advisory import Advisory, parse_authored, with_revision

# One product line: fw 1 (no image), 2 (N/A), 3 (only from fw 2), 4 (N/A).
E1 = cpl_entry("CPL-1", fw="00000001")
E2 = cpl_entry("CPL-2", fw="00000002")
E3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=("CPL-2",))
E4 = cpl_entry("CPL-4", fw="00000004")
CPL = cpl([E1, E2, E3, E4])
I2, I3, I4 = image([E2]), image([E3]), image([E4])
LINE = ("121D", "0001", "0001")


def advisory(**changes: Any) -> Advisory:
    doc = {
        "id": "CFL-121D-2026-0001",
        "title": "<b>overflow</b>",
        "summary": "s",
        "cvss": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "affected_cpl_entries": ["CPL-1", "CPL-2"],
        "fixed_by": [I3.target_path],
        "status": "fixed",
        "published": "2026-03-01",
    } | changes
    return with_revision(
        parse_authored(json.dumps(doc).encode(), manufacturer_id="121D", today="2026-03-02"), 1
    )


def key(fw: int) -> GroupKey:
    return GroupKey("ESME", "121D", "0001", "0001", f"{fw:08X}")


def summary(counts: dict[int, int]) -> EstateSummary:
    groups = {key(fw): n for fw, n in counts.items()}
    return EstateSummary(groups, sum(counts.values()), 0, (), 0)


def test_the_named_fix_and_later_unlisted_firmware_fix_an_affected_line() -> None:
    a = advisory()
    index = AdvisoryIndex([a], [I2, I3, I4])
    assert [x.id for x in index.affecting(["CPL-2"])] == [a.id]
    assert index.affecting(["CPL-3"]) == ()
    assert index.image_fixes(a, I3, LINE) and index.image_fixes(a, I4, LINE)
    assert not index.image_fixes(a, I2, LINE)  # itself listed as affected
    listed = advisory(affected_cpl_entries=["CPL-2", "CPL-4"])
    assert not AdvisoryIndex([listed], [I2, I3, I4]).image_fixes(listed, I4, LINE)


def test_each_group_gets_its_advisories_and_the_path_out() -> None:
    a = advisory()
    report = plan_estate(
        summary({1: 2, 2: 3, 3: 1}), [I2, I3, I4], CPL, AdvisoryIndex([a], [I2, I3, I4])
    )
    assert report.advisories is not None
    alerts = dict(
        zip([g.key.firmware_version for g in report.groups], report.advisories, strict=True)
    )
    assert alerts["00000003"] == ()
    [fw2] = alerts["00000002"]
    # fw 2 plans 2 -> 4 (N/A, one hop); fw 4 is not listed and is above the fix: the plan fixes it.
    assert fw2.plan_fixes and [i.target_path for i in fw2.fix_path] == [I4.target_path]
    doc = report_json(report)
    assert doc["groups"][0]["advisories"][0]["id"] == a.id
    hits = at_or_above(
        [(g.key, g.device_count, x) for g, x in zip(report.groups, report.advisories, strict=True)],
        "critical",
    )
    assert [(k.firmware_version, n) for k, n, _a in hits] == [("00000001", 2), ("00000002", 3)]


def test_without_a_reachable_fix_the_fix_path_is_empty() -> None:
    a = advisory(affected_cpl_entries=["CPL-3"], fixed_by=[], status="affected")
    report = plan_estate(summary({3: 1}), [I2, I3], CPL, AdvisoryIndex([a], [I2, I3]))
    assert report.advisories is not None
    [[alert]] = report.advisories
    assert alert.fix_path == () and not alert.plan_fixes


def test_no_advisories_leaves_the_check_json_and_page_as_they_were() -> None:
    plain = plan_estate(summary({2: 1}), [I2, I3], CPL)
    empty = plan_estate(summary({2: 1}), [I2, I3], CPL, AdvisoryIndex([], [I2, I3]))
    assert report_json(plain) == report_json(empty)
    assert "advisories" not in report_json(plain)["groups"][0]
    page = render_report(
        build_report_model(plain, changes=None, generated_at="2026-03-02T00:00:00Z")
    )
    assert 'id="advisories"' not in page


def test_the_report_page_lists_advisories_escaped() -> None:
    a = advisory()
    report = plan_estate(summary({1: 2}), [I2, I3, I4], CPL, AdvisoryIndex([a], [I2, I3, I4]))
    page = render_report(
        build_report_model(report, changes=None, generated_at="2026-03-02T00:00:00Z")
    )
    assert 'id="advisories"' in page and "CFL-121D-2026-0001" in page
    assert "&lt;b&gt;overflow&lt;/b&gt;" in page and "<b>overflow</b>" not in page


def test_exports_say_affected_fixed_and_not_affected() -> None:
    from datetime import UTC, datetime

    a = advisory(cvss="CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
    doc = csaf_document(a, [I2, I3, I4], CPL)
    [vulnerability] = doc["vulnerabilities"]
    assert "scores" not in vulnerability  # CSAF 2.0 has no CVSS v4.0 field: a note carries it
    assert any(n["title"] == "CVSS v4.0" for n in vulnerability["notes"])
    assert vulnerability["product_status"] == {
        "known_affected": ["CPL-1", "CPL-2"],
        "fixed": ["CPL-3"],
    }
    vex = openvex_document([a], [I2, I3, I4], now=datetime(2026, 3, 2, tzinfo=UTC))
    status = {s["products"][0]["@id"]: s["status"] for s in vex["statements"]}
    assert status == {I2.target_path: "affected", I3.target_path: "fixed", I4.target_path: "fixed"}
    investigating = advisory(status="investigating", fixed_by=[])
    doc = csaf_document(investigating, [I2], CPL)
    assert doc["document"]["tracking"]["status"] == "interim"
    assert doc["vulnerabilities"][0]["product_status"] == {
        "under_investigation": ["CPL-1", "CPL-2"]
    }
