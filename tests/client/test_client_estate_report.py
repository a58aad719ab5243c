"""The --report page as values and HTML: the figures, the states, and that it is self-contained."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from client_factories import cpl, cpl_entry, device_id, image, write_estate

from client.estate.check import check_estate, write_estate_report
from client.estate.html_report import (
    MAX_PATH_ROWS,
    STATE_BEHIND,
    STATE_NO_IMAGE,
    STATE_SECURITY,
    STATE_UP_TO_DATE,
    STATES,
    build_report_model,
    product_lines_with_images,
    render_report,
)
from client.estate.report import CheckReport
from client.trust.catalogue import CatalogueImage

V1 = cpl_entry("CPL-1", fw="00000001")
V2 = cpl_entry("CPL-2", fw="00000002")
V3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
V9 = cpl_entry("CPL-9", fw="00000009", upgrade_from=["CPL-404"])  # reachable from nothing
IMG2 = image([V2])
IMG3 = image([V3], reason="security", advisories=["CVE-2026-0001"])
IMG9 = image([V9])
DOC = cpl([V1, V2, V3, V9])
LINE = ("ESME", "121D", "0001", "0001")
FIXED_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GAS = ("GSME", "3F01", "0B0C", "1111")  # no image in the library at all


def _report(tmp_path: Path, images: list[CatalogueImage]) -> CheckReport:
    rows = [(device_id(n), *LINE, "00000001") for n in range(4)]  # -> 2 -> 3 (security)
    rows += [(device_id(10 + n), *LINE, "00000003") for n in range(2)]  # newest 9 out of reach
    rows += [(device_id(20 + n), *GAS, "00000001") for n in range(3)]
    return check_estate(write_estate(tmp_path / "estate.csv", rows), images, DOC)


def test_every_device_lands_in_exactly_one_state(tmp_path: Path) -> None:
    images = [IMG2, IMG3, IMG9]
    report = _report(tmp_path, images)
    model = build_report_model(
        report,
        changes=None,
        generated_at="2026-01-01T00:00:00Z",
        has_image_for_line=product_lines_with_images(images),
    )
    assert model.overall.counts == {
        STATE_SECURITY: 4,  # the path 2 -> 3 carries a security fix
        STATE_BEHIND: 0,
        STATE_UP_TO_DATE: 0,
        STATE_NO_IMAGE: 2 + 3,  # newest unreachable, and a model with no image at all
    }
    assert model.overall.total == model.devices == 9
    assert [line.label for line in model.lines] == ["121D 0001 (ESME)", "3F01 0B0C (GSME)"]
    [path_row, blocked_row] = model.paths
    assert [h[1] for h in path_row.hops] == [IMG2.target_path, IMG3.target_path]
    assert [h[2] for h in path_row.hops] == [False, True]
    assert blocked_row.hops == () and blocked_row.blocked is not None
    assert IMG9.target_path in blocked_row.blocked


def test_without_the_security_fix_the_group_is_behind_and_without_images_up_to_date(
    tmp_path: Path,
) -> None:
    compliance3 = image([V3])
    report = _report(tmp_path, [IMG2, compliance3])
    model = build_report_model(report, changes=None, generated_at="x")
    assert model.overall.counts[STATE_BEHIND] == 4
    assert model.overall.counts[STATE_UP_TO_DATE] == 2 + 3  # no line information given


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "action", "srcset", "poster", "data"} and value:
                self.urls.append(value)


def test_the_page_is_self_contained_and_every_chart_has_its_table(tmp_path: Path) -> None:
    images = [IMG2, IMG3, IMG9]
    report = _report(tmp_path, images)
    changes = {
        "devices_since": None, "gained_devices": 9, "gained_sample": [device_id(20)],
        "lost_devices": 0, "lost_sample": [], "images_since": None,
        "new_images": [IMG3.target_path],
    }  # fmt: skip
    out = tmp_path / "report.html"
    write_estate_report(out, report, images, changes, devices_compared=True, now=FIXED_NOW)
    html = out.read_text(encoding="utf-8")
    parsed = _Collector()
    parsed.feed(html)
    assert "script" not in parsed.tags and "link" not in parsed.tags
    assert "img" not in parsed.tags and "iframe" not in parsed.tags
    assert parsed.urls == []  # nothing to fetch
    assert "default-src 'none'" in html
    assert "@import" not in html and "url(" not in html
    assert "@media print" in html
    for chart, table in (("chart-overall", "table-overall"), ("chart-models", "table-models")):
        assert f'id="{chart}"' in html and f'id="{table}"' in html
    for _state, label, colour in STATES[1:3]:
        assert label in html
    assert html.count(STATES[2][2]) >= 2  # the security colour: legend and bars
    assert IMG2.target_path in html and IMG3.target_path in html
    assert re.search(r'id="gained-count">9<', html)
    assert device_id(20) in html
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".html"] == ["report.html"]


def test_without_changes_the_page_says_gained_meters_need_changes(tmp_path: Path) -> None:
    report = _report(tmp_path, [IMG2])
    html = render_report(build_report_model(report, changes=None, generated_at="x"))
    assert "No history was recorded" in html
    changes = {
        "devices_since": None, "gained_devices": 0, "gained_sample": [], "lost_devices": 0,
        "lost_sample": [], "images_since": "2026-01-01T00:00:00Z", "new_images": [],
    }  # fmt: skip
    html = render_report(build_report_model(report, changes=changes, generated_at="x"))
    assert "only when the check runs with <code>--changes</code>" in html
    assert 'id="gained-count"' not in html


def test_data_in_the_page_is_escaped(tmp_path: Path) -> None:
    report = _report(tmp_path, [IMG2])
    model = build_report_model(report, changes=None, generated_at="<script>x</script>")
    html = render_report(model)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_huge_estate_keeps_the_biggest_groups_in_the_paths_table(tmp_path: Path) -> None:
    report = _report(tmp_path, [IMG2, IMG3])
    many = [
        dataclasses.replace(report.groups[0], key=report.groups[0].key._replace(
            hardware_version=f"{n:04X}"), device_count=n + 1)
        for n in range(MAX_PATH_ROWS + 5)
    ]  # fmt: skip
    big = CheckReport(
        devices=sum(g.device_count for g in many),
        groups=tuple(many),
        plans=tuple(report.plans[0] for _ in many),
    )
    model = build_report_model(big, changes=None, generated_at="x")
    assert len(model.paths) == MAX_PATH_ROWS
    assert model.paths_left_out == 5 and model.devices_left_out == 1 + 2 + 3 + 4 + 5
    assert model.paths[0].devices == MAX_PATH_ROWS + 5
    assert 'id="paths-left-out">5 smaller groups (15 devices)' in render_report(model)
