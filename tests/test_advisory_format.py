"""The advisory contract (metadata_templates/advisory.py): ID pattern, fields, CVSS scores computed
by the maintained library, target paths, and one named refusal per bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from metadata_templates import advisory as adv

V31_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
V40_HIGH = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U"


def authored(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "CFL-121D-2026-0001",
        "title": "Remote code execution in the HAN stack",
        "summary": "A crafted ZigBee frame <b>overflows</b> a buffer.",
        "cve": ["CVE-2026-12345"],
        "cvss": V31_CRITICAL,
        "affected_cpl_entries": ["CPL-0002"],
        "fixed_by": ["121D/ESME-0001-00000003-0123456789abcdef.ota"],
        "status": "fixed",
        "workaround": "Disable joining.",
        "published": "2026-03-01",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def parse(doc: dict[str, Any], mfr: str = "121D") -> adv.Advisory:
    return adv.parse_authored(json.dumps(doc).encode(), manufacturer_id=mfr, today="2026-03-02")


def test_scores_come_from_the_cvss_library_for_both_versions() -> None:
    v31 = adv.score_cvss(V31_CRITICAL)
    assert (v31.version, v31.score, v31.rating) == ("3.1", 9.8, "critical")
    v40 = adv.score_cvss(V40_HIGH)
    assert (v40.version, v40.score, v40.rating) == ("4.0", 8.1, "high")
    none = adv.score_cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N")
    assert (none.score, none.rating) == (0.0, "none")


def test_a_vector_is_normalised_to_the_specification_order() -> None:
    shuffled = "CVSS:3.1/C:H/I:H/A:H/AV:N/AC:L/PR:N/UI:N/S:U"
    assert adv.score_cvss(shuffled).vector == V31_CRITICAL


def test_an_authored_advisory_round_trips_through_its_published_form() -> None:
    advisory = adv.with_revision(parse(authored()), 1)
    assert advisory.severity == "critical" and advisory.updated == "2026-03-02"
    again = adv.Advisory.from_bytes(advisory.to_bytes())
    assert again == advisory
    assert again.target_path == "121D/CFL-121D-2026-0001.r1.advisory.json"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": "CFL-121d-2026-0001"}, "id"),
        ({"id": "SA-2026-1"}, "id"),
        ({"cvss": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}, "cvss"),
        ({"cvss": "CVSS:3.1/AV:N"}, "cvss"),
        ({"cvss": "CVSS:4.0/AV:X/AC:L"}, "cvss"),
        ({"cvss": 9.8}, "cvss"),
        ({"status": "closed"}, "status"),
        ({"status": "fixed", "fixed_by": []}, "fixed_by"),
        ({"affected_cpl_entries": []}, "affected_cpl_entries"),
        ({"affected_cpl_entries": ["CPL 1"]}, "affected_cpl_entries"),
        ({"affected_cpl_entries": ["CPL-1", "CPL-1"]}, "affected_cpl_entries"),
        ({"cve": ["CVE-26-1"]}, "cve"),
        ({"fixed_by": ["../etc/passwd"]}, "fixed_by"),
        ({"published": "2026-02-30"}, "published"),
        ({"updated": "2026-02-01"}, "updated"),
        ({"title": "x" * 201}, "title"),
        ({"title": "  "}, "title"),
        ({"score": 1.0}, "score"),
        ({"severity": "low"}, "severity"),
        ({"colour": "red"}, "fields"),
        ({"revision": 0}, "revision"),
        ({"revision": True}, "revision"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else v,
)
def test_each_bad_field_is_refused_naming_it(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(adv.AdvisoryError, match=rf"ADVISORY.json: {field}: found .*, expected"):
        parse(authored(**changes))


def test_missing_required_field_is_named() -> None:
    doc = authored()
    del doc["title"]
    with pytest.raises(adv.AdvisoryError, match="found 'no title'"):
        parse(doc)


def test_another_manufacturers_id_is_refused() -> None:
    with pytest.raises(adv.AdvisoryError, match="an ID of manufacturer 3F01"):
        parse(authored(), mfr="3F01")


def test_an_oversized_document_is_refused_before_parsing() -> None:
    data = b" " * (adv.MAX_ADVISORY_BYTES + 1)
    with pytest.raises(adv.AdvisoryError, match="size"):
        adv.Advisory.from_bytes(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("score", 2.0), ("severity", "low"), ("cvss_version", "4.0"), ("manufacturer_id", "3F01")],
)
def test_a_published_form_with_a_forged_computed_field_is_refused(field: str, value: Any) -> None:
    doc = json.loads(adv.with_revision(parse(authored()), 1).to_bytes())
    doc[field] = value
    with pytest.raises(adv.AdvisoryError, match=f"{field}: found"):
        adv.Advisory.from_bytes(json.dumps(doc).encode())


def test_target_paths_are_one_segment_below_the_prefix_and_name_the_owner() -> None:
    path = adv.advisory_target_path("CFL-121D-2026-0001", 12)
    assert path == "121D/CFL-121D-2026-0001.r12.advisory.json"
    assert adv.parse_advisory_target_path(path) == ("121D", "CFL-121D-2026-0001", 12)
    # Another manufacturer's advisory ID under this prefix, revision 0, a nested path: none.
    assert adv.parse_advisory_target_path("121D/CFL-3F01-2026-0001.r1.advisory.json") is None
    assert adv.parse_advisory_target_path("121D/CFL-121D-2026-0001.r0.advisory.json") is None
    assert adv.parse_advisory_target_path("121D/x/CFL-121D-2026-0001.r1.advisory.json") is None


def test_latest_revision_wins() -> None:
    paths = [adv.advisory_target_path("CFL-121D-2026-0001", r) for r in (1, 3, 2)]
    assert adv.latest_revisions([*paths, "121D/ESME.ota"]) == {"CFL-121D-2026-0001": (3, paths[1])}


def test_severity_ranks_order_the_scale() -> None:
    assert [adv.severity_rank(s) for s in adv.SEVERITIES] == [0, 1, 2, 3, 4]
    with pytest.raises(adv.AdvisoryError, match="severity"):
        adv.severity_rank("urgent")
