"""The site in a real browser: Debian's Chromium driven by Playwright, served from 127.0.0.1.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; ``make system`` does it). Without it the
tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from site_samples import (
    GENERATED,
    HOSTILE_ATTR,
    HOSTILE_HEADER,
    HOSTILE_MANUFACTURER,
    HOSTILE_MODEL,
    HOSTILE_TITLE,
    advisory_library,
    many_library,
    small_library,
)

from conftest import require_system
from repo_tool.site.build import build_site
from repo_tool.site.render import CONTENT_SECURITY_POLICY, PAGE_SIZE

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROWS = "#images tbody tr[data-target]"
SEARCH_ROWS = 50  # search.js MAX_ROWS: results drawn at most


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_system(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _serve(root: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # Served below a sub-path on purpose: the site must not assume it sits at the host's root.
        yield f"http://127.0.0.1:{server.server_port}/public/site/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def small_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small")
    build_site(
        small_library(),
        root / "public" / "site",
        generated=GENERATED,
        client_init_url="https://cfl.example/lib/",
    )
    return root


@pytest.fixture(scope="module")
def small_url(small_site: Path) -> Iterator[str]:
    yield from _serve(small_site)


@pytest.fixture(scope="module")
def big_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("big")
    build_site(many_library(2 * PAGE_SIZE + 50), root / "public" / "site", generated=GENERATED)
    yield from _serve(root)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.dialogs = dialogs
    page.errors = errors
    yield page
    context.close()
    assert dialogs == [], "a dialog opened: metadata ran as script"


def _targets(page: Any) -> list[str]:
    return page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.target)")


def _search(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    # Clear first so the wait below sees this query's status, not the previous one's.
    page.fill("#search", "")
    expect(page.locator("#search-status")).to_have_text("")
    if text:
        page.fill("#search", text)
        expect(page.locator("#search-status")).to_contain_text("match")


def _settled_targets(page: Any, expected: list[str], seconds: float = 10.0) -> list[str]:
    """The shown targets once the search has settled: a query that fetches several index shards
    updates the status before the last shard arrives, so poll (bounded) for the final rows."""
    deadline = time.monotonic() + seconds
    shown = sorted(_targets(page))
    while shown != expected and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        shown = sorted(_targets(page))
    return shown


def test_rows_present(page: Any, small_url: str) -> None:
    page.goto(small_url + "index.html")
    assert sorted(_targets(page)) == sorted(i.target_path for i in small_library().images)
    assert page.errors == []


def _by(predicate: Any) -> list[str]:
    return sorted(i.target_path for i in small_library().images if predicate(i))


_IMAGES = small_library().images
_ACME_POLY = next(i for i in _IMAGES if any(e.model_name == "Acme Poly" for e in i.cfl.cpl_entries))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("acme meters", _by(lambda i: i.cfl.manufacturer_id == "121D")),
        ("2ab0", _by(lambda i: i.cfl.manufacturer_id == "2AB0")),
        ("Acme Poly", [_ACME_POLY.target_path]),
        ("0c0d", _by(lambda i: any(e.model_id == "0C0D" for e in i.cfl.cpl_entries))),
        ("acdcacdd", _by(lambda i: i.cfl.firmware_version == "ACDCACDD")),
        (_IMAGES[3].sha256, [_IMAGES[3].target_path]),
        (_IMAGES[3].target_path, [_IMAGES[3].target_path]),
        (_IMAGES[1].cfl.manufacturer_image_sha256[:12].upper(), [_IMAGES[1].target_path]),
        ("GSME", _by(lambda i: i.cfl.device_type == "GSME")),
        (
            "esme security",
            _by(lambda i: i.cfl.device_type == "ESME" and i.cfl.reason == "security"),
        ),
        ("CVE-2026-12345", _by(lambda i: "CVE-2026-12345" in i.cfl.advisories)),
        ("no such firmware", []),
        # Words match from their start: the middle of a hash is not a hit (it made short queries
        # such as a manufacturer ID match thousands of hashes).
        (_IMAGES[3].sha256[20:32], []),
    ],
    ids=[
        "manufacturer-name",
        "manufacturer-id",
        "model-name",
        "model-id",
        "version",
        "file-hash",
        "pasted-target-path",
        "manufacturer-image-hash-prefix",
        "device-type",
        "two-words",
        "advisory",
        "nothing",
        "middle-of-hash",
    ],
)
def test_search_filters_rows(page: Any, small_url: str, query: str, expected: list[str]) -> None:
    page.goto(small_url + "index.html")
    _search(page, query)
    assert _settled_targets(page, expected) == expected
    _search(page, "")
    assert len(_targets(page)) == len(_IMAGES)
    assert page.errors == []


def test_search_covers_every_page_and_draws_rows_like_the_server(page: Any, big_url: str) -> None:
    page.goto(big_url + "index.html")
    static_rows = page.eval_on_selector_all(
        ROWS, "rows => rows.map(r => [r.dataset.target, r.innerText, r.querySelector('a.fw').href])"
    )
    wanted_target, wanted_text, wanted_href = static_rows[7]
    page.goto(big_url + "index-1.html")  # the oldest images; the wanted one is on the front page
    assert wanted_target not in _targets(page)
    assert page.is_visible("nav.pages")
    firmware = page.evaluate("t => t.split('-')[2]", wanted_target)
    _search(page, firmware)
    row = page.locator(f'{ROWS}[data-target="{wanted_target}"]')
    assert row.inner_text() == wanted_text
    # The link is the same page; hrefs differ only by the page they were read on (same folder).
    assert row.locator("a.fw").get_attribute("href") == wanted_href.split("/public/site/")[1]
    assert page.is_hidden("nav.pages")
    assert page.inner_text("#images caption") == "Search results"
    _search(page, "")
    assert page.inner_text("#images caption") == "Firmware images, 1\u2013500"
    assert len(_targets(page)) == PAGE_SIZE
    assert page.is_visible("nav.pages")


def test_search_reports_and_caps_large_results(page: Any, big_url: str) -> None:
    from playwright.sync_api import expect

    status = page.locator("#search-status")
    page.goto(big_url + "index.html")
    _search(page, "alpha")
    # Until the search index has loaded, the status reports this page's matches only ("183 on
    # this page match. Loading..."); the whole library's count follows, so wait for it (a loaded
    # machine once caught the interim line).
    expect(status).to_contain_text("350 images match", timeout=15_000)
    _search(page, "model")
    expect(status).to_contain_text("1050 images match", timeout=15_000)
    assert len(_targets(page)) == SEARCH_ROWS
    assert f"Showing the first {SEARCH_ROWS}" in page.inner_text("#search-status")


def test_markup_in_metadata_is_text_not_script(page: Any, small_url: str) -> None:
    page.goto(small_url + "index.html")
    body = page.inner_text("body")
    for hostile in (HOSTILE_MODEL, HOSTILE_ATTR, HOSTILE_MANUFACTURER):
        assert hostile in body
    page.get_by_text(HOSTILE_ATTR).first.hover()
    _search(page, "0c0c")  # rows drawn by search.js get the same treatment
    assert HOSTILE_MODEL in page.inner_text("#images")
    page.get_by_text(HOSTILE_ATTR).first.hover()
    hostile_image = next(i for i in _IMAGES if i.cfl.header_string == HOSTILE_HEADER)
    page.goto(small_url + f"image/{hostile_image.target_path}.html")
    assert HOSTILE_HEADER in page.inner_text("body")
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onmouseover]').length") == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []


def test_no_request_leaves_the_site(browser: Any, small_url: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(small_url + "index.html")
    _search(page, "acme")
    for link in ("Manufacturers", "Security fixes", "Withdrawn", "Trust", "Images"):
        page.click(f"header nav >> text={link}")
        page.wait_for_load_state("load")
    page.click("#images a.fw >> nth=0")
    page.wait_for_load_state("load")
    context.close()
    assert requests, "no requests recorded"
    assert {urlsplit(url).hostname for url in requests} == {"127.0.0.1"}
    assert any(url.endswith("/search/meta.json") for url in requests)
    assert any(url.endswith("/static/style.css") for url in requests)


def test_csp_blocks_inline_script(page: Any, small_url: str) -> None:
    page.goto(small_url + "index.html")
    content = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    assert content == CONTENT_SECURITY_POLICY
    violations = page.evaluate(
        """() => new Promise(resolve => {
            const seen = [];
            document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));
            const script = document.createElement('script');
            script.textContent = 'window.__inline = 1';
            document.body.appendChild(script);
            const button = document.createElement('button');
            button.setAttribute('onclick', 'window.__handler = 1');
            document.body.appendChild(button);
            button.click();
            setTimeout(() => resolve(seen), 200);
        })"""
    )
    assert page.evaluate("[typeof window.__inline, typeof window.__handler]") == [
        "undefined",
        "undefined",
    ]
    assert violations and all(v.startswith("script-src") for v in violations)


def test_works_without_javascript(browser: Any, big_url: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(big_url + "index.html")
    assert len(_targets(page)) == PAGE_SIZE + 50  # the front page holds the newest 500..999
    assert page.is_hidden("#search-box")  # no search box that cannot work
    page.click("nav.pages >> text=Older >> nth=0")
    page.wait_for_load_state("load")
    assert page.url.endswith("/index-1.html")
    assert len(_targets(page)) == PAGE_SIZE
    context.close()


def test_small_site_without_javascript_shows_the_full_table(browser: Any, small_url: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(small_url + "index.html")
    assert sorted(_targets(page)) == sorted(i.target_path for i in _IMAGES)
    assert page.is_visible(ROWS + " >> nth=4")
    context.close()


def test_opened_from_a_file(page: Any, small_site: Path) -> None:
    """From file:// the pages, styles and links work; search falls back to the rows on the page."""
    page.goto((small_site / "public" / "site" / "index.html").as_uri())
    assert len(_targets(page)) == len(_IMAGES)
    background = page.evaluate(
        "getComputedStyle(document.querySelector('header.site')).backgroundColor"
    )
    assert background == "rgb(29, 79, 145)"  # the stylesheet loaded
    page.fill("#search", "GSME")
    from playwright.sync_api import expect

    expect(page.locator("#search-status")).to_contain_text("only this page")
    assert _targets(page) == _by(lambda i: i.cfl.device_type == "GSME")
    page.click("header nav >> text=Trust")
    page.wait_for_load_state("load")
    assert "cfl init https://cfl.example/lib/ --root ROOT.json" in page.inner_text("main")


@pytest.fixture(scope="module")
def advisory_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("advisories")
    build_site(advisory_library(), root / "public" / "site", generated=GENERATED)
    yield from _serve(root)


def test_hostile_advisory_strings_are_text_on_every_advisory_page(
    page: Any, advisory_url: str
) -> None:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.goto(advisory_url + "index.html")
    page.click("header nav >> text=Advisories")
    page.wait_for_load_state("load")
    assert HOSTILE_TITLE.replace("\x01", "\ufffd") in page.inner_text("#main")
    page.click("a[href='advisory/CFL-121D-2026-0001.html']")
    page.wait_for_load_state("load")
    assert page.title().startswith("CFL-121D-2026-0001: </title><script>alert(1)</script>")
    assert "<script>alert(2)</script> ]]>" in page.inner_text("#main")
    assert page.evaluate("document.querySelectorAll('main script, main img, main b').length") == 0
    page.click("main >> text=firmware ACDCACDD")  # the fix's page links back
    page.wait_for_load_state("load")
    assert "This image fixes:" in page.inner_text("#main")
    assert page.dialogs == [] and page.errors == []
    assert [v for v in violations if "Content Security Policy" in v] == []


@pytest.fixture(scope="module")
def outcomes_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A library where two suppliers' reports put firmware 2 on hold (issue 24), published with
    its site by the provider's own code."""
    from outcomes.outcome_library import FAILING, SECOND, SUPPLIER, build_outcome_library
    from outcomes.outcome_library import envelope as outcome_envelope
    from outcomes.outcome_library import ingest as outcome_ingest

    from repo_tool.ops.publish import publish_with_site

    lib = build_outcome_library(tmp_path_factory.mktemp("outcomes") / "lib")
    outcome_ingest(
        lib,
        ("b1", outcome_envelope(lib, SUPPLIER, {**FAILING, "timeout": 30})),
        ("b2", outcome_envelope(lib, SECOND, FAILING)),
    )
    publish_with_site(lib.factory.repo, lib.factory.out, now=lib.factory.tick())
    assert lib.factory.out.name == "public"  # served below /public/site/ as the others are
    return lib.factory.out.parent, lib.targets[2]


def test_outcome_chart_draws_without_javascript_under_the_csp(
    browser: Any, outcomes_site: tuple[Path, str]
) -> None:
    from repo_tool.site.render import image_page

    tmp, target = outcomes_site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    for url in _serve(tmp):  # the published tree's site, served as a host would
        page.goto(url + image_page(target))
        bars = page.eval_on_selector_all(
            "svg.outcome-bar rect.seg:not(.frame)",
            "rs => rs.map(r => [r.classList[1], Math.round(r.getBoundingClientRect().width),"
            " getComputedStyle(r).fill])",
        )
        # 600 activated, 40 failed, 30 not delivered of 670, drawn 300 wide in the page's colours.
        assert bars == [
            ["success", 269, "rgb(46, 125, 50)"],
            ["failure", 18, "rgb(198, 40, 40)"],
            ["undelivered", 13, "rgb(117, 117, 117)"],
        ]
        text = page.inner_text("main")
        assert "On hold since" in text and "40 failed (6.2% of delivered)" in text
        page.goto(url + "index.html")
        assert page.inner_text(f"tr[data-target='{target}'] .status") == "On hold"
    context.close()
    assert [v for v in violations if "Content Security Policy" in v] == []
