"""`cfl check --report` in a real browser: the charts render, on screen and in print, and the page
fetches nothing. Beside the site's browser tests to share their Chromium fixture; needs
``/usr/bin/chromium`` (``make system``) and skips locally without it, failing under CI=true.
"""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_site_browser import browser  # noqa: F401  (the shared module-scoped Chromium)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from client_factories import cpl, cpl_entry, device_id, image, write_estate

from client.estate.check import check_estate, write_estate_report
from client.estate.html_report import STATES

pytestmark = pytest.mark.system

E1 = cpl_entry("CPL-1", fw="00000001")
E2 = cpl_entry("CPL-2", fw="00000002")
E3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
G5 = cpl_entry("CPL-G5", device_type="GSME", mfr="3F01", model="0B0C", fw="00000005")
IMAGES = [
    image([E2]),
    image([E3], reason="security", advisories=["CVE-2026-0001"]),
    image([G5]),
]
ESME = ("ESME", "121D", "0001", "0001")
GSME = ("GSME", "3F01", "0B0C", "0001")


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    rows = [(device_id(n), *ESME, "00000001") for n in range(40)]  # security fix pending
    rows += [(device_id(100 + n), *GSME, "00000001") for n in range(30)]  # behind
    rows += [(device_id(200 + n), *GSME, "00000006") for n in range(20)]  # up to date
    rows += [(device_id(300 + n), "ESME", "121D", "0001", "2222", "00000001") for n in range(10)]
    report = check_estate(write_estate(tmp / "estate.csv", rows), IMAGES, cpl([E1, E2, E3, G5]))
    changes = {
        "devices_since": None, "gained_devices": len(rows), "gained_sample": [device_id(0)],
        "lost_devices": 0, "lost_sample": [], "images_since": None, "new_images": [],
    }  # fmt: skip
    out = tmp / "report.html"
    write_estate_report(
        out, report, IMAGES, changes, devices_compared=True, now=datetime(2026, 3, 1, tzinfo=UTC)
    )
    return out


def _rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def _colours_on(png: bytes) -> set[tuple[int, int, int]]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as shot:
        counted = shot.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return {rgb for _count, rgb in counted}


@pytest.mark.parametrize("media", ["screen", "print"])
def test_the_charts_render_in_every_state_colour(
    browser: Any,  # noqa: F811
    report_page: Path,
    media: str,
) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.emulate_media(media=media)
        page.goto(report_page.as_uri())
        for chart in ("#chart-overall", "#chart-models"):
            box = page.locator(chart).bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 20, chart
        colours = _colours_on(page.locator("#chart-overall").screenshot())
        for _state, label, colour in STATES:
            assert _rgb(colour) in colours, f"{label} ({colour}) not drawn in the {media} chart"
        # each model has its bar: three product lines, four bars' worth of colours in all
        colours = _colours_on(page.locator("#chart-models").screenshot())
        assert {_rgb(c) for _, _, c in STATES} <= colours
        # and the same figures as a table
        cells = page.locator("#table-overall tbody td").all_inner_texts()
        assert cells == ["20", "30", "40", "10", "100"]
    finally:
        page.close()
    assert requests == [report_page.as_uri()]


def test_the_page_makes_no_network_request_even_when_the_network_is_there(
    browser: Any,  # noqa: F811
    report_page: Path,
) -> None:
    context = browser.new_context()
    seen: list[str] = []

    def refuse(route: Any) -> None:
        seen.append(route.request.url)
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", refuse)
    page = context.new_page()
    try:
        page.goto(report_page.as_uri(), wait_until="networkidle")
        assert page.title() == "Firmware campaign report"
        assert page.locator("#table-paths tbody tr").count() == 2
    finally:
        context.close()
    assert seen == [report_page.as_uri()]
