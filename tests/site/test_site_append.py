"""The append path (``repo_tool.site.append``): after new images it renders only what they change,
and the folder then holds exactly what a full build of the grown library holds; whenever it cannot
vouch for that it steps aside and the keyed full build runs, with the same bytes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from site_samples import (
    GENERATED,
    HOSTILE_ATTR,
    HOSTILE_HEADER,
    HOSTILE_MANUFACTURER,
    HOSTILE_MODEL,
    make_image,
    many_library,
)

from metadata_templates.withdrawals import Withdrawal
from repo_tool.site import append as site_append
from repo_tool.site import render as site_render
from repo_tool.site.build import build_site
from repo_tool.site.pages import render_site
from repo_tool.verify.published import PublishedImage, PublishedLibrary

BASE = 2 * site_render.PAGE_SIZE + 30
LATER = GENERATED + timedelta(minutes=5)


def tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def assert_same_as_full(out: Path, library: PublishedLibrary, generated: object = LATER) -> None:
    expected = dict(render_site(library, generated=generated))  # type: ignore[arg-type]
    actual = tree(out)
    differing = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
    assert differing == []


def newer(n: int, **kwargs: object) -> PublishedImage:
    """An image published in 2026, after every image of ``many_library``."""
    mfr = str(kwargs.pop("mfr", "1A1A"))
    name = str(kwargs.pop("name", "Alpha Meters"))
    models = kwargs.pop("models", [(f"CPL-N{n}", "0A0A", f"Model N{n}")])
    return make_image(
        mfr,
        name,
        "ESME",
        f"F{n:07X}",
        models,  # type: ignore[arg-type]
        published=f"2026-02-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
        **kwargs,  # type: ignore[arg-type]
    )


def with_images(
    library: PublishedLibrary, *extra: PublishedImage, **names: str
) -> PublishedLibrary:
    manufacturers = {**library.manufacturers, **names}
    return dataclasses.replace(library, images=library.images + extra, manufacturers=manufacturers)


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, PublishedLibrary]:
    library = many_library(BASE)
    out = tmp_path / "site"
    build_site(library, out, generated=GENERATED)
    assert (out / site_append.STATE_NAME).exists()
    return out, library


def grown_by(count: int) -> Callable[[PublishedLibrary], PublishedLibrary]:
    return lambda library: dataclasses.replace(library, images=many_library(BASE + count).images)


APPENDS: dict[str, Callable[[PublishedLibrary], PublishedLibrary]] = {
    "one-image": grown_by(1),
    "a-few-images": grown_by(7),
    # 500 more fills archive pages of the index, every manufacturer and the security page
    "archive-pages-fill": grown_by(site_render.PAGE_SIZE),
    "a-security-fix": lambda lib: with_images(
        lib, newer(1, reason="security", advisories=("CFL-ADV-1",))
    ),
    "a-new-model": lambda lib: with_images(lib, newer(2, models=[("CPL-X", "7777", "Brand New")])),
    "a-new-manufacturer": lambda lib: with_images(
        lib, newer(3, mfr="4D4D", name="Delta Devices"), **{"4D4D": "Delta Devices"}
    ),
    "an-unregistered-manufacturer": lambda lib: with_images(
        lib, newer(4, mfr="5E5E", name="Cfl Name Only")
    ),
    "a-registration-without-images": lambda lib: with_images(lib, **{"6F6F": "Not Yet Ltd"}),
    "a-registration-with-an-empty-name": lambda lib: with_images(
        lib,
        newer(8, mfr="8B8B", name="Cfl Name"),
        newer(9, mfr="8B8B", name="Cfl Name"),
        **{"8B8B": ""},
    ),
    "nothing-new-but-the-time": lambda lib: lib,
    "hostile-text": lambda lib: with_images(
        lib,
        newer(
            5,
            name=HOSTILE_MANUFACTURER,
            mfr="7A7A",
            models=[("CPL-H", "0B0B", HOSTILE_MODEL + '\n<tr data-target="x">')],
            header_string=HOSTILE_HEADER,
        ),
        newer(
            6,
            name=HOSTILE_ATTR,
            mfr="7A7A",
            models=[("CPL-I", "0B0C", HOSTILE_ATTR)],
        ),
    ),
}


@pytest.mark.parametrize("change", list(APPENDS), ids=list(APPENDS))
def test_an_append_renders_what_a_full_build_renders(
    built: tuple[Path, PublishedLibrary], change: str
) -> None:
    out, library = built
    grown = APPENDS[change](library)

    result = build_site(grown, out, generated=LATER)

    assert result.appended
    assert_same_as_full(out, grown)
    # and the next append builds on the state this one left
    again = with_images(grown, newer(40))
    assert build_site(again, out, generated=LATER + timedelta(minutes=1)).appended
    assert_same_as_full(out, again, LATER + timedelta(minutes=1))


def test_one_new_image_changes_only_what_shows_it(built: tuple[Path, PublishedLibrary]) -> None:
    out, library = built
    image = newer(1)

    result = build_site(with_images(library, image), out, generated=LATER)

    assert result.appended
    others = {
        n
        for n in result.changed
        if not n.startswith("search/w-") and n != f"image/{image.target_path}.html"
    }
    assert others == {
        "index.html",
        "manufacturer-1A1A.html",
        "manufacturers.html",
        "trust.html",
        "feed.xml",
        "index.json",
        "data/images-1.json",
        f"search/rows-{BASE // 16}.json",
        "search/meta.json",
        ".cfl-site-files",
    }


def test_told_the_new_images_it_reads_nothing_of_the_rest(
    built: tuple[Path, PublishedLibrary],
) -> None:
    """``added=``: the library's other images are not even looked at (here they are not there)."""
    out, library = built
    image = newer(1)
    grown = with_images(library, image)
    hollow = dataclasses.replace(grown, images=(image,) * len(grown.images))

    result = build_site(hollow, out, generated=LATER, added=[image])

    assert result.appended
    assert_same_as_full(out, grown)


def test_the_file_list_after_an_append_is_the_full_builds(
    built: tuple[Path, PublishedLibrary], tmp_path: Path
) -> None:
    out, library = built
    grown = grown_by(3)(library)
    appended = build_site(grown, out, generated=LATER)
    full = build_site(grown, tmp_path / "fresh", generated=LATER)
    assert appended.appended and not full.appended
    assert appended.files == full.files
    assert appended.image_count == full.image_count and appended.index_pages == full.index_pages


def _withdraw(library: PublishedLibrary) -> PublishedLibrary:
    victim = library.images[7]
    withdrawal = Withdrawal(victim.target_path, victim.sha256, "2026-02-01T00:00:00Z", "bricks")
    return dataclasses.replace(library, withdrawals=(withdrawal,))


def _older_image(library: PublishedLibrary) -> PublishedLibrary:
    old = make_image(
        "1A1A",
        "Alpha Meters",
        "GSME",
        "0BADBEEF",
        [("CPL-O", "0C0C", "Old")],
        published="2024-06-01T00:00:00Z",
    )
    return with_images(library, old)


def _renamed(library: PublishedLibrary) -> PublishedLibrary:
    return with_images(library, newer(1), **{"2B2B": "Beta Gas Renamed"})


def _rebinned(library: PublishedLibrary) -> PublishedLibrary:
    """Hash bins: every image of a manufacturer moves to a bin role (the image page shows it)."""
    images = tuple(
        dataclasses.replace(i, role=f"{i.role}-bin-0") if i.role.endswith("1A1A") else i
        for i in library.images
    )
    return dataclasses.replace(library, images=images)


def _withdrawn_on_arrival(library: PublishedLibrary) -> PublishedLibrary:
    image = newer(1, withdrawal=("2026-02-02T00:00:00Z", "recalled"))
    return with_images(library, image)


FALLBACKS: dict[str, Callable[[PublishedLibrary], PublishedLibrary]] = {
    "a-withdrawal": _withdraw,
    "an-image-older-than-the-newest": _older_image,
    "a-renamed-manufacturer": _renamed,
    "images-moved-to-hash-bins": _rebinned,
    "a-new-image-already-withdrawn": _withdrawn_on_arrival,
}


@pytest.mark.parametrize("change", list(FALLBACKS), ids=list(FALLBACKS))
def test_what_an_append_cannot_vouch_for_gets_a_full_build(
    built: tuple[Path, PublishedLibrary], change: str
) -> None:
    out, library = built
    build_site(grown_by(2)(library), out, generated=GENERATED)  # an append first
    changed = FALLBACKS[change](grown_by(2)(library))

    result = build_site(changed, out, generated=LATER)

    assert not result.appended
    assert_same_as_full(out, changed)
    # the keyed build left a state the next append can use
    again = with_images(changed, newer(50))
    assert build_site(again, out, generated=LATER).appended
    assert_same_as_full(out, again)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "no-state": lambda out: (out / site_append.STATE_NAME).unlink(),
    "garbage-state": lambda out: (out / site_append.STATE_NAME).write_bytes(b"{not json"),
    "another-version": lambda out: (out / site_append.STATE_NAME).write_text(
        json.dumps({"magic": "cfl-site-state 0"})
    ),
    "a-state-missing-fields": lambda out: (out / site_append.STATE_NAME).write_text(
        json.dumps(
            {
                "magic": "cfl-site-state 1",
                "fingerprint": json.loads((out / site_append.STATE_NAME).read_bytes())[
                    "fingerprint"
                ],
            }
        )
    ),
    "an-unfinished-build": lambda out: (out / site_append.DIRTY_NAME).write_bytes(b""),
    # Files are trusted as the last build wrote them (as the keyed build trusts its keys), but
    # what the append path reads back must have the shape it wrote, or it steps aside.
    "a-truncated-front-page": lambda out: (out / "index.html").write_bytes(
        (out / "index.html").read_bytes()[:20_000]
    ),
    "a-front-page-gone": lambda out: (out / "manufacturer-2B2B.html").unlink(),
    "a-front-page-reformatted": lambda out: (out / "security.html").write_bytes(
        (out / "security.html").read_bytes().replace(b"\n<tr data-target", b"\n <tr data-target")
    ),
    "a-truncated-data-part": lambda out: (out / "data" / "images-1.json").write_bytes(
        (out / "data" / "images-1.json").read_bytes()[:-100]
    ),
    "a-data-part-reformatted": lambda out: (out / "data" / "images-1.json").write_text(
        json.dumps(json.loads((out / "data" / "images-1.json").read_bytes()), indent=1)
    ),
    "an-edited-rows-shard": lambda out: (out / "search" / f"rows-{BASE // 16}.json").write_bytes(
        b'{"schema_version":1,"rows":[\n]}\n'
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_or_missing_record_means_a_full_build(
    built: tuple[Path, PublishedLibrary], damage: str
) -> None:
    out, library = built
    DAMAGE[damage](out)
    grown = grown_by(1)(library)

    result = build_site(grown, out, generated=LATER)

    assert not result.appended
    assert_same_as_full(out, grown)
    assert not (out / site_append.DIRTY_NAME).exists()


def test_a_wrong_hint_about_what_was_added_is_not_trusted(
    built: tuple[Path, PublishedLibrary],
) -> None:
    """The count must add up and the told images must be newer than every listed one; a hint
    that does not is set aside and the append path finds the new images itself."""
    out, library = built
    grown = grown_by(2)(library)
    assert build_site(grown, out, generated=LATER, added=grown.images[-1:]).appended
    assert_same_as_full(out, grown)
    older = _older_image(grown)
    assert not build_site(older, out, generated=LATER, added=older.images[-1:]).appended
    assert_same_as_full(out, older)


# Attack: a state whose fields had the wrong JSON shape (hand-edited, or written by another tool)
# crashed every later build with a traceback (IndexError, TypeError) instead of stepping aside, so
# a damaged state file stopped every publish until someone deleted it.
WRONG_SHAPES: dict[str, tuple[str, object]] = {
    "newest-empty": ("newest", []),
    "newest-not-strings": ("newest", [1, 2]),
    "shards-null": ("shards", None),
    "shards-a-number": ("shards", 5),
    "shards-with-null": ("shards", [None]),
    "count-a-string": ("count", "12"),
    "count-negative": ("count", -1),
    "listings-a-list": ("listings", [1]),
    "manufacturers-of-numbers": ("manufacturers", [1]),
    "feed-recent-a-string": ("feed_recent", "x"),
    "roles-of-strings": ("roles", {"mfr-1A1A": "many"}),
    "generated-a-number": ("generated", 5),
}


@pytest.mark.parametrize("shape", list(WRONG_SHAPES), ids=list(WRONG_SHAPES))
def test_a_state_field_of_the_wrong_shape_means_a_full_build(
    built: tuple[Path, PublishedLibrary], shape: str
) -> None:
    out, library = built
    field, value = WRONG_SHAPES[shape]
    state = json.loads((out / site_append.STATE_NAME).read_bytes())
    (out / site_append.STATE_NAME).write_text(json.dumps(state | {field: value}))
    grown = grown_by(1)(library)

    result = build_site(grown, out, generated=LATER)

    assert not result.appended
    assert_same_as_full(out, grown)
