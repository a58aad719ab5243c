"""Delivery outcomes on the public website (issue 24): each image page shows the combined figures as
a small SVG bar with the numbers beside it, a held image is marked on its page and in every listing,
and an ingest re-renders only the pages whose figures or holds changed.

Built through the provider's own code: two suppliers' signed reports ingested, the tree published,
the site built by the publish step from the verified tree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metadata_templates.errors import VerificationError
from outcomes.outcome_library import (
    FAILING,
    SECOND,
    SUPPLIER,
    OutcomeLibrary,
    build_outcome_library,
    envelope,
    ingest,
)
from repo_tool.ops import outcomes as ops
from repo_tool.ops.publish import publish_with_site
from repo_tool.publish.site_step import build_published_site
from repo_tool.site.render import image_page

SVG = re.compile(r'<svg class="outcome-bar"[^>]*>.*?</svg>', re.S)


@pytest.fixture
def lib(tmp_path: Path) -> OutcomeLibrary:
    return build_outcome_library(tmp_path / "lib")


def site(lib: OutcomeLibrary) -> tuple[Path, tuple[str, ...]]:
    """What `cfl-repo publish` does: publish the tree, then build its site told what is new."""
    factory = lib.factory
    built = publish_with_site(factory.repo, factory.out, now=factory.tick()).site
    return built.site_dir, built.result.changed


def page_of(site_dir: Path, target: str) -> str:
    return (site_dir / image_page(target)).read_text()


def test_an_image_page_charts_the_combined_figures_with_the_numbers_beside_them(
    lib: OutcomeLibrary,
) -> None:
    target = lib.targets[2]
    ingest(lib, ("b1", envelope(lib, SUPPLIER, {"activated": 300, "not-retrieved": 100})))
    ingest(lib, ("b2", envelope(lib, SECOND, {"activated": 95, "hash-mismatch": 5})))
    site_dir, _ = site(lib)
    page = page_of(site_dir, target)
    [svg] = SVG.findall(page)
    # Three pieces over 500 attempted devices, stacked left to right, widths in proportion.
    rects = re.findall(r'<rect class="seg (\w+)" x="([\d.]+)" y="0" width="([\d.]+)"', svg)
    assert rects == [
        ("frame", "0", "300"),
        ("success", "0.0", "237.0"),
        ("failure", "237.0", "3.0"),
        ("undelivered", "240.0", "60.0"),
    ]
    assert 'aria-label="500 devices attempted: activated 395, failed 5, not delivered 100"' in svg
    # The numbers beside it, failures over delivered devices (undelivered ones do not count).
    assert "Activated <strong>395</strong> (79.0%)" in page
    assert (
        "500 devices attempted, 400 delivered; <strong>5 failed (1.2% of delivered)</strong>"
        in page
    )
    assert "Reported by 2 suppliers in 2 reports." in page
    assert "<code>hash-mismatch</code>" in page and "<code>timeout</code>" not in page
    assert "more than 2.0% failures" in page  # the policy, as published
    # Under the threshold: not held, and no supplier's own figures or device appear.
    assert 'class="notice held"' not in page and SUPPLIER not in page and "B1" not in page
    # An image nobody reported has no outcome section; no script is needed for any of it.
    other = page_of(site_dir, lib.targets[1])
    assert "Delivery outcomes" not in other and "<svg" not in other
    assert "<script" not in SVG.sub("", page).split("</main>")[0]


def test_a_held_image_is_marked_on_its_page_and_in_the_listings(lib: OutcomeLibrary) -> None:
    target = lib.targets[2]
    ingest(lib, ("b1", envelope(lib, SUPPLIER, FAILING)), ("b2", envelope(lib, SECOND, FAILING)))
    site_dir, _ = site(lib)
    page = page_of(site_dir, target)
    assert '<div class="notice held" role="note">' in page
    assert "by the library&#39;s outcome policy" in page
    assert "40 of 640 delivered devices failed (6.2%)" in page
    assert '<span class="status held">On hold</span>' in page
    index = (site_dir / "index.html").read_text()
    row = next(r for r in index.split("<tr ") if f'data-target="{target}"' in r)
    assert '<span class="status held">On hold</span>' in row
    others = [r for r in index.split("<tr ") if "data-target=" in r and target not in r]
    assert others and all("status held" not in r for r in others)
    maker = (site_dir / "manufacturer-121D.html").read_text()
    assert maker.count('<span class="status held">On hold</span>') == 1


def test_a_release_is_shown_and_the_mark_goes(lib: OutcomeLibrary) -> None:
    target = lib.targets[2]
    ingest(lib, ("b1", envelope(lib, SUPPLIER, FAILING)), ("b2", envelope(lib, SECOND, FAILING)))
    site(lib)
    repo = lib.factory.repo
    with repo.locked():
        ops.change_hold(
            repo, target, "release", "head-end fault, not firmware", now=lib.factory.tick()
        )
    site_dir, changed = site(lib)
    page = page_of(site_dir, target)
    assert "status held" not in page and "notice held" not in page
    assert "by the CFL provider: head-end fault, not firmware." in page
    assert image_page(target) in changed


def test_a_provider_hold_reason_is_text_never_markup(lib: OutcomeLibrary) -> None:
    target = lib.targets[3]
    repo = lib.factory.repo
    with repo.locked():
        ops.change_hold(
            repo, target, "hold", '<script>alert(1)</script> "bricks"', now=lib.factory.tick()
        )
    site_dir, _ = site(lib)
    page = page_of(site_dir, target)
    assert "<script>alert(1)" not in page
    assert "Reason: &lt;script&gt;alert(1)&lt;/script&gt; &#34;bricks&#34;" in page
    assert "by the CFL provider" in page
    assert "No supplier has reported outcomes for this image yet." in page


def test_an_ingest_renders_only_the_pages_its_figures_change(lib: OutcomeLibrary) -> None:
    site(lib)
    ingest(lib, ("b1", envelope(lib, SUPPLIER, {"activated": 50})))
    _site_dir, changed = site(lib)
    image_pages = sorted(p for p in changed if p.startswith("image/"))
    assert image_pages == [image_page(lib.targets[2])]
    # Under the threshold the rows read the same; a hold changes the row on its listings only.
    assert "manufacturer-121D.html" not in changed
    ingest(lib, ("b1b", envelope(lib, SUPPLIER, FAILING, period="2024-06")))
    ingest(lib, ("b2b", envelope(lib, SECOND, FAILING, period="2024-06")))
    _site_dir, changed = site(lib)
    assert sorted(p for p in changed if p.startswith("image/")) == [image_page(lib.targets[2])]
    assert "manufacturer-121D.html" in changed and "manufacturer-3A7F.html" not in changed


def test_the_append_path_steps_aside_when_the_figures_changed(lib: OutcomeLibrary) -> None:
    site(lib)
    ingest(lib, ("b1", envelope(lib, SUPPLIER, {"activated": 50})))
    factory = lib.factory
    built = publish_with_site(factory.repo, factory.out, now=factory.tick()).site
    assert not built.result.appended
    assert "Delivery outcomes" in page_of(built.site_dir, lib.targets[2])
    # Nothing new since: the next publish may append (nothing) and the page keeps its figures.
    again = publish_with_site(factory.repo, factory.out, now=factory.tick()).site
    assert "Delivery outcomes" in page_of(again.site_dir, lib.targets[2])


def test_a_tampered_outcomes_document_fails_the_site_build(lib: OutcomeLibrary) -> None:
    ingest(lib, ("b1", envelope(lib, SUPPLIER, {"activated": 50})))
    lib.factory.publish()
    [blob] = (lib.factory.out / "targets" / "cfl").glob("*.outcomes.json")
    blob.write_bytes(blob.read_bytes().replace(b'"activated":50}', b'"activated":5000}'))
    with pytest.raises(VerificationError, match=r"outcomes\.json"):
        build_published_site(
            lib.factory.out, lib.factory.root_bytes, now=lib.factory.now, hint=None
        )
