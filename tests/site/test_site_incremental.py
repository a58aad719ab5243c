"""The incremental build: whatever was in the folder before, ``build_site`` leaves exactly the bytes
``render_site`` produces, while rendering and writing only what changed."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from site_samples import GENERATED, many_library, small_library

from metadata_templates.withdrawals import Withdrawal
from repo_tool.site import render as site_render
from repo_tool.site import search as site_search
from repo_tool.site.build import build_site
from repo_tool.site.pages import render_site
from repo_tool.verify.published import PublishedLibrary


def tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def assert_same_as_full(out: Path, library: PublishedLibrary, **kwargs: object) -> None:
    expected = dict(render_site(library, generated=kwargs.get("generated", GENERATED)))  # type: ignore[arg-type]
    assert tree(out) == expected


def grow(library: PublishedLibrary, extra: int) -> PublishedLibrary:
    """The same library with ``extra`` newer images (many_library is deterministic by index)."""
    bigger = many_library(len(library.images) + extra)
    return dataclasses.replace(library, images=bigger.images)


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, PublishedLibrary]:
    library = many_library(2 * site_render.PAGE_SIZE + 30)
    out = tmp_path / "site"
    build_site(library, out, generated=GENERATED)
    return out, library


def test_one_new_image_renders_only_what_shows_it(built: tuple[Path, PublishedLibrary]) -> None:
    out, library = built
    grown = grow(library, 1)
    newest = max(grown.images, key=lambda i: i.cfl.published)

    result = build_site(grown, out, generated=GENERATED + timedelta(minutes=5))

    assert_same_as_full(out, grown, generated=GENERATED + timedelta(minutes=5))
    changed = set(result.changed)
    mfr = newest.cfl.manufacturer_id
    assert f"image/{newest.target_path}.html" in changed
    expected_pages = {
        "index.html",
        f"manufacturer-{mfr}.html",
        "manufacturers.html",
        "trust.html",
        "feed.xml",
        "index.json",
        "data/images-1.json",
        "search/meta.json",
        f"search/rows-{(len(grown.images) - 1) // site_search.ROWS_PER_SHARD}.json",
        ".cfl-site-files",
    }
    assert expected_pages <= changed
    others = changed - expected_pages - {f"image/{newest.target_path}.html"}
    # the rest are word shards of the new image's words (and the security page if it is one)
    assert all(n.startswith("search/w-") or n == "security.html" for n in others), others
    assert len(others) <= 20
    # No archive page moved.
    assert not any(n.startswith("index-") for n in changed)


def test_an_unchanged_rebuild_writes_nothing(built: tuple[Path, PublishedLibrary]) -> None:
    out, library = built
    result = build_site(library, out, generated=GENERATED)
    assert result.changed == ()


def test_a_withdrawal_rebuilds_the_search_words_and_the_pages_showing_it(
    built: tuple[Path, PublishedLibrary],
) -> None:
    out, library = built
    victim = library.images[7]
    withdrawal = Withdrawal(
        victim.target_path, victim.sha256, "2026-02-01T00:00:00Z", "bricks meters"
    )
    changed_library = dataclasses.replace(library, withdrawals=(withdrawal,))

    result = build_site(changed_library, out, generated=GENERATED)

    assert_same_as_full(out, changed_library)
    assert f"image/{victim.target_path}.html" in result.changed
    assert "withdrawn.html" in result.changed
    assert "search/w-wi.json" in result.changed  # "withdrawn" is now a word of its row


def test_a_new_template_or_url_renders_everything_again(
    built: tuple[Path, PublishedLibrary],
) -> None:
    out, library = built
    result = build_site(library, out, generated=GENERATED, client_init_url="https://cfl.example/")
    assert "trust.html" in result.changed
    assert_same_as_full_url(out, library, "https://cfl.example/")


def assert_same_as_full_url(out: Path, library: PublishedLibrary, url: str) -> None:
    expected = dict(render_site(library, generated=GENERATED, client_init_url=url))
    assert tree(out) == expected


@pytest.mark.parametrize("garbage", [b"", b"not an inputs file\n", b"cfl-site-inputs 1 x\nids\n"])
def test_a_damaged_inputs_file_means_a_full_render(
    built: tuple[Path, PublishedLibrary], garbage: bytes
) -> None:
    out, library = built
    (out / ".cfl-site-inputs").write_bytes(garbage)
    (out / "index.html").write_bytes(b"stale")
    grown = grow(library, 2)
    build_site(grown, out, generated=GENERATED)
    assert_same_as_full(out, grown)


def test_a_crash_while_word_shards_change_forces_a_rebuild_of_them(
    built: tuple[Path, PublishedLibrary],
) -> None:
    """The dirty marker is written before the shards change and removed after the inputs file: a
    kill in between leaves it, and the next build rebuilds the shards rather than merging into
    shards that may hold ids the inputs file does not know."""
    out, library = built
    (out / ".cfl-site-search-dirty").write_bytes(b"")
    # a shard damaged by the interrupted build: it claims a word for an id no image has
    (out / "search" / "w-zz.json").write_bytes(b'{"schema_version":1,"words":{"zzz":[100000]}}\n')
    grown = grow(library, 1)

    build_site(grown, out, generated=GENERATED)

    assert not (out / ".cfl-site-search-dirty").exists()
    assert not (out / "search" / "w-zz.json").exists()  # not produced by a full shard build
    assert_same_as_full(out, grown)


def test_many_small_publishes_end_where_one_build_would(tmp_path: Path) -> None:
    out = tmp_path / "site"
    base = many_library(40)
    build_site(small_library(), out, generated=GENERATED)
    for extra in range(0, 30, 7):
        build_site(grow(base, extra), out, generated=GENERATED)
    final = grow(base, 35)
    build_site(final, out, generated=GENERATED)
    assert_same_as_full(out, final)
