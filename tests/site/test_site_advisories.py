"""Security advisories on the public website: the advisories page, one page per advisory, their
Atom feed and each image page's advisories; hostile strings shown as text, the feed well-formed
XML; a full build, an appended build and a keyed rebuild all giving the bytes of a full render."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from site_samples import (
    GENERATED,
    HOSTILE_MODEL,
    HOSTILE_TITLE,
    advisory_library,
    make_advisory,
    make_image,
    sample_advisories,
    small_library,
)

from metadata_templates.advisory import LIMITS
from repo_tool.site import advisories as site_advisories
from repo_tool.site.build import build_site
from repo_tool.site.pages import render_site
from repo_tool.verify.published import PublishedImage, PublishedLibrary

ATOM = "{http://www.w3.org/2005/Atom}"
LATER = GENERATED + timedelta(minutes=5)


def files_of(library: PublishedLibrary, generated: object = GENERATED) -> dict[str, bytes]:
    return dict(render_site(library, generated=generated))  # type: ignore[arg-type]


def page_of(files: dict[str, bytes], firmware_version: str) -> str:
    (name,) = [k for k in files if k.startswith("image/") and f"-{firmware_version}-" in k]
    return files[name].decode()


def tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def assert_same_as_full(out: Path, library: PublishedLibrary, generated: object) -> None:
    expected = files_of(library, generated)
    actual = tree(out)
    assert sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k)) == []


def test_a_library_without_advisories_has_no_advisory_file_or_link() -> None:
    files = files_of(small_library())
    assert [k for k in files if "advisor" in k] == []
    assert b"advisories.html" not in files["index.html"]
    assert b"advisories.xml" not in files["index.html"]


def test_the_advisories_page_lists_each_advisory_once_newest_update_first() -> None:
    files = files_of(advisory_library())
    assert {"advisories.html", "advisories.xml"} <= set(files)
    html = files["advisories.html"].decode()
    ids = re.findall(r'<a href="advisory/(CFL-[0-9A-F]{4}-\d{4}-\d{4})\.html">', html)
    assert ids == ["CFL-2AB0-2026-0001", "CFL-121D-2026-0001"]  # same date: ID descending
    assert "critical 9.8" in html and "medium 5.3" in html
    # Every page links the advisories once the library has one.
    assert b'<a href="advisories.html">Advisories</a>' in files["index.html"]
    assert (
        b'href="../../advisories.html">Advisories</a>'
        in files[next(k for k in files if k.startswith("image/121D/"))]
    )


def test_each_image_page_lists_what_it_fixes_and_what_affects_it() -> None:
    files = files_of(advisory_library())
    fixed = page_of(files, "ACDCACDD")
    assert "This image fixes:" in fixed and "affected by" not in fixed
    assert 'href="../../advisory/CFL-121D-2026-0001.html"' in fixed
    affected = page_of(files, "ACDCACDC")
    assert "Devices with this image are affected by:" in affected
    assert "This image fixes:" not in affected
    hostile_model = page_of(files, "11223344")
    assert 'href="../../advisory/CFL-2AB0-2026-0001.html"' in hostile_model
    # An image no advisory relates to has no advisory section.
    assert "Security advisories</h2>" not in page_of(files, "00010002")


def test_an_advisory_page_shows_the_public_part_and_never_the_encrypted_detail() -> None:
    files = files_of(advisory_library())
    quiet = files["advisory/CFL-2AB0-2026-0001.html"].decode()
    assert "Encrypted to the entitled suppliers" in quiet
    assert '<time datetime="2026-06-01">2026-06-01</time>' in quiet
    assert "no image of this entry in the library" in quiet  # CPL-999999
    assert "No fix published yet." in quiet
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in quiet  # the hostile model name, as text
    fixed = files["advisory/CFL-121D-2026-0001.html"].decode()
    assert "revision 2" in fixed and "CVE-2026-10001" in fixed
    assert "firmware ACDCACDD</a>" in fixed


def test_public_detail_of_a_later_revision_is_shown_as_text() -> None:
    disclosed = make_advisory(
        "CFL-121D-2026-0002", detail="Stack <b>smash</b> at offset 0x40.\n\nSecond part."
    )
    files = files_of(dataclasses.replace(small_library(), advisories=(disclosed,)))
    page = files["advisory/CFL-121D-2026-0002.html"].decode()
    assert "<p>Stack &lt;b&gt;smash&lt;/b&gt; at offset 0x40.</p>\n<p>Second part.</p>" in page


@pytest.mark.parametrize("name", ["advisories.html", "advisory/CFL-121D-2026-0001.html"])
def test_hostile_strings_on_pages_are_text(name: str) -> None:
    html = files_of(advisory_library())[name].decode()
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "]]>" not in html
    assert "\x01" not in html and "\x0b" not in html
    # CSP: no inline script or style; the only scripts are files of the site.
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html and " style=" not in html
    # The title element holds the whole title, escaped: it does not end early.
    assert html.count("</title>") == 1


def test_the_advisories_feed_is_well_formed_atom_with_the_hostile_title_as_text() -> None:
    data = files_of(advisory_library())["advisories.xml"]
    feed = ET.fromstring(data)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 2
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert f"CFL-121D-2026-0001: {HOSTILE_TITLE.replace(chr(1), chr(0xFFFD))}" in titles
    summary = entries[1].findtext(f"{ATOM}summary") or ""
    assert "<script>alert(2)</script> ]]>" in summary  # text once parsed, never markup
    assert len(summary) < site_advisories.FEED_SUMMARY + 100  # a huge summary is cut in the feed
    assert feed.findtext(f"{ATOM}updated") == "2026-02-20T00:00:00Z"


def test_a_huge_summary_is_shown_whole_on_its_page() -> None:
    (hostile, _quiet) = sample_advisories()
    assert len(hostile.summary) == LIMITS["summary"]
    html = files_of(advisory_library())["advisory/CFL-121D-2026-0001.html"].decode()
    assert html.count("alert(2)") == hostile.summary.count("alert(2)")


def test_the_advisory_files_do_not_change_with_the_build_time() -> None:
    first, later = files_of(advisory_library()), files_of(advisory_library(), LATER)
    for name in first:
        if "advisor" in name:
            assert first[name] == later[name], name


# --- builds on disk: full, keyed, appended ---------------------------------------------------------


def newer(n: int, models: list[tuple[str, str, str]] | None = None) -> PublishedImage:
    return make_image(
        "121D",
        "Acme Meters Ltd",
        "ESME",
        f"B{n:07X}",
        models or [(f"CPL-NEW{n}", "010A030B", "Acme Single Phase")],
        published=f"2026-02-28T00:00:{n:02d}Z",
    )


def grown(
    library: PublishedLibrary, *images: PublishedImage, **changes: object
) -> PublishedLibrary:
    return dataclasses.replace(library, images=library.images + images, **changes)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    out = tmp_path / "site"
    build_site(advisory_library(), out, generated=GENERATED)
    assert_same_as_full(out, advisory_library(), GENERATED)
    return out


def test_an_image_no_advisory_shows_is_appended(site: Path) -> None:
    library = grown(advisory_library(), newer(1))
    result = build_site(library, site, generated=LATER)
    assert result.appended
    assert not any("advisor" in name for name in result.changed)
    assert_same_as_full(site, library, LATER)


def test_an_image_carrying_an_affected_entry_declines_the_append(site: Path) -> None:
    library = grown(advisory_library(), newer(2, [("CPL-999999", "0C0C", HOSTILE_MODEL)]))
    result = build_site(library, site, generated=LATER)
    assert not result.appended
    assert "advisory/CFL-2AB0-2026-0001.html" in result.changed
    assert_same_as_full(site, library, LATER)


def test_a_fix_published_after_its_advisory_declines_the_append(tmp_path: Path) -> None:
    fix = newer(3)
    advisory = make_advisory("CFL-121D-2026-0003", status="fixed", fixed_by=[fix.target_path])
    before = dataclasses.replace(small_library(), advisories=(advisory,))
    out = tmp_path / "site"
    build_site(before, out, generated=GENERATED)
    assert (
        "<code>" + fix.target_path in files_of(before)["advisory/CFL-121D-2026-0003.html"].decode()
    )
    library = grown(before, fix)
    result = build_site(library, out, generated=LATER)
    assert not result.appended
    assert_same_as_full(out, library, LATER)
    assert "This image fixes:" in page_of(tree(out), f"B{3:07X}")


@pytest.mark.parametrize("new_images", [0, 1], ids=["alone", "with-an-image"])
def test_a_revised_advisory_rebuilds_the_pages_it_touches(site: Path, new_images: int) -> None:
    hostile, _quiet = sample_advisories()
    revised = make_advisory(
        "CFL-2AB0-2026-0001",
        2,
        title="Now understood",
        affected_cpl_entries=["CPL-000300", "CPL-000310"],
        published="2026-02-10",
    )
    images = [newer(4)][:new_images]
    library = grown(advisory_library(), *images, advisories=(hostile, revised))
    result = build_site(library, site, generated=LATER)
    assert not result.appended
    assert_same_as_full(site, library, LATER)
    assert "Now understood" in page_of(tree(site), "FFEE0001")
    # Then an image no advisory shows is appended again, under the new digest.
    library = grown(library, newer(6))
    assert build_site(library, site, generated=LATER + timedelta(minutes=1)).appended
    assert_same_as_full(site, library, LATER + timedelta(minutes=1))


def test_the_first_advisory_adds_the_link_to_every_page(tmp_path: Path) -> None:
    out = tmp_path / "site"
    build_site(small_library(), out, generated=GENERATED)
    library = grown(small_library(), newer(5), advisories=sample_advisories())
    result = build_site(library, out, generated=LATER)
    assert not result.appended
    assert_same_as_full(out, library, LATER)
    pages = [name for name in tree(out) if name.endswith(".html")]
    assert all(b"advisories.html" in (out / name).read_bytes() for name in pages)
    # ...and the keyed rebuild after it, with nothing changed, rewrites nothing but stamps.
    again = build_site(library, out, generated=LATER)
    assert not any(name.startswith(("image/", "advisory/")) for name in again.changed)
