"""`cfl-repo publish` tells the website which images it added (repo_tool.publish.site_step).

Whatever the hint says, the site must hold the bytes a full build of the same library renders: the
hint only decides how much work that takes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from repo_tool.ops.ingest import IngestResult
from repo_tool.publish.site_step import (
    BASIS_NAME,
    PublishedSite,
    PublishHint,
    build_published_site,
    publish_hint,
    tree_state,
)
from repo_tool.site import append as site_append
from repo_tool.site.build import build_site
from repo_tool.submit.bins import build_split
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def library_of(factory: LibraryFactory) -> PublishedLibrary:
    return verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now, check_blobs=False
    )


def assert_full_build_bytes(factory: LibraryFactory, site: Path, tmp_path: Path) -> None:
    """``site`` holds what a full build of the published library, at the same time, renders."""
    generated = json.loads((site / "search" / "meta.json").read_bytes())["generated"]
    fresh = tmp_path / "fresh-site"
    library = library_of(factory)
    result = build_site(library, fresh, generated=datetime.fromisoformat(generated))
    assert not result.appended
    assert tree(site) == tree(fresh)


NEW_FIRMWARE = (7, 8)


def _entry(firmware: int) -> str:
    return f"CPL-9{firmware:03d}"


def lodge(factory: LibraryFactory, firmware: int) -> IngestResult:
    """Sign and ingest the new 121D image of ``firmware`` (one of ``NEW_FIRMWARE``; not
    published)."""
    entry = _entry(firmware)
    result = factory.ingest(factory.submit(make_image("121D", firmware), [entry]), name=entry)
    assert result.status == "accepted", result.messages
    return result


def publish_with_site(factory: LibraryFactory) -> PublishedSite:
    """What `cfl-repo publish` runs: the tree state before, the publish, the told site build."""
    before = tree_state(factory.out)
    factory.publish()
    return build_published_site(
        factory.out, factory.root_bytes, now=factory.now, hint=publish_hint(factory.repo, before)
    )


@pytest.fixture
def built(tmp_path: Path) -> LibraryFactory:
    """The standard library, published, with its site built completely once."""
    factory, _ = standard_library(tmp_path / "lib")
    factory.import_cpl(
        [
            *factory.entries,
            *(
                make_entry(_entry(n), fw=f"{n:08X}", image_sha=mi_sha(make_image("121D", n)))
                for n in NEW_FIRMWARE
            ),
        ]
    )
    first = publish_with_site(factory)
    assert first.hinted is None and not first.result.appended  # no basis yet: a full build
    assert (first.site_dir / BASIS_NAME).is_file()
    return factory


def test_publish_tells_the_site_the_image_it_added(built: LibraryFactory, tmp_path: Path) -> None:
    lodge(built, 7)

    site = publish_with_site(built)

    assert site.hinted == 1 and site.result.appended
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_the_hint_names_exactly_what_the_publish_added(built: LibraryFactory) -> None:
    before = tree_state(built.out)
    assert before is not None
    added = lodge(built, 7)
    built.publish()

    hint = publish_hint(built.repo, before)

    assert hint is not None and hint.since == before.digest
    assert hint.targets == {added.target}


def test_no_tree_before_means_no_hint(tmp_path: Path) -> None:
    assert tree_state(tmp_path / "empty") is None
    factory = LibraryFactory(tmp_path / "lib")
    assert publish_hint(factory.repo, None) is None


def test_a_site_that_missed_a_publish_is_not_told(built: LibraryFactory, tmp_path: Path) -> None:
    """A publish without a site build (`refresh`, `--no-site`) in between: the hint would miss an
    image, so it is withheld and the site finds both new images itself."""
    lodge(built, 7)
    built.publish()  # no site build
    lodge(built, 8)

    site = publish_with_site(built)

    assert site.hinted is None
    assert site.result.appended  # found by the append path's own pass, not a full render
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def _wrong_targets(factory: LibraryFactory, new: str) -> dict[str, frozenset[str]]:
    old = next(i.target_path for i in library_of(factory).images if i.target_path != new)
    return {
        "nothing": frozenset(),
        "an-old-image-instead": frozenset({old}),
        "an-old-image-too": frozenset({old, new}),
        "not-a-target": frozenset({"121D/nothing/here"}),
    }


@pytest.mark.parametrize(
    "case", ["nothing", "an-old-image-instead", "an-old-image-too", "not-a-target"]
)
def test_a_wrong_hint_still_gives_the_full_build_bytes(
    built: LibraryFactory, tmp_path: Path, case: str
) -> None:
    before = tree_state(built.out)
    assert before is not None
    added = lodge(built, 7)
    built.publish()
    hint = PublishHint(before.digest, _wrong_targets(built, added.target)[case])

    site = build_published_site(built.out, built.root_bytes, now=built.now, hint=hint)

    assert site.hinted == len(hint.targets - {"121D/nothing/here"})
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_a_forged_basis_record_still_gives_the_full_build_bytes(
    built: LibraryFactory, tmp_path: Path
) -> None:
    """A basis record that lies (the site missed a publish but claims it did not): the append
    path's own count check still refuses the short hint."""
    lodge(built, 7)
    built.publish()  # no site build
    before = tree_state(built.out)
    assert before is not None
    (built.out / "site" / BASIS_NAME).write_text(before.digest + "\n")
    lodge(built, 8)
    built.publish()

    site = build_published_site(
        built.out, built.root_bytes, now=built.now, hint=publish_hint(built.repo, before)
    )

    assert site.hinted == 1
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_an_unfinished_site_build_is_rebuilt_in_full(built: LibraryFactory, tmp_path: Path) -> None:
    """A site build killed half-way leaves its marker (and no basis record): the next publish has
    nothing new to publish, and the site still ends as the full build renders it."""
    lodge(built, 7)
    built.publish()
    site_dir = built.out / "site"
    (site_dir / site_append.DIRTY_NAME).write_bytes(b"")
    (site_dir / "index.html").write_bytes(b"half-written")
    (site_dir / BASIS_NAME).unlink()

    site = publish_with_site(built)

    assert site.hinted is None and not site.result.appended
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_cfl_repo_publish_tells_the_site(built: LibraryFactory, tmp_path: Path) -> None:
    lodge(built, 7)

    done = subprocess.run(
        [str(CFL_REPO), "--repo", str(built.repo.path), "publish", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1
    assert doc["site_build"] == {
        "appended": True,
        "told_new_images": 1,
        "changed_files": doc["site_build"]["changed_files"],
        # The fixture's site was built without a memo: both manufacturer roles verified in full.
        "verify_memo": {"recalled": 0, "verified": 2, "remembered": 2},
    }
    assert doc["site_build"]["changed_files"] > 0
    assert_full_build_bytes(built, Path(doc["site"]), tmp_path)


def split_into_bins(factory: LibraryFactory) -> None:
    """121D moves its images into 16 hash bins (ingested, not published)."""
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=4,
        signers=[factory.mfr_signers["121D"]],
        library=library_of(factory),
        now=factory.tick(),
    )
    assert factory.ingest(split, "split").status == "accepted"


def test_images_in_hash_bins_are_listed_and_told(built: LibraryFactory, tmp_path: Path) -> None:
    split_into_bins(built)
    moved = publish_with_site(built)  # every 121D image changes role: not an append
    assert not moved.result.appended
    added = lodge(built, 7)

    site = publish_with_site(built)

    assert site.hinted == 1 and site.result.appended
    image = next(i for i in library_of(built).images if i.target_path == added.target)
    assert image.role.startswith("mfr-121D-")  # a bin, not the manufacturer's own role
    listed = (site.site_dir / "index.html").read_text(encoding="utf-8")
    assert image.target_path in listed
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_the_trust_page_shows_a_manufacturer_s_bins_as_one_row(
    built: LibraryFactory,
) -> None:
    """Thousands of bins share one delegation: one row gives their count, versions and the
    earliest expiry, right after the manufacturer's own role, instead of a row per bin."""
    split_into_bins(built)
    publish_with_site(built)
    lodge(built, 7)  # one bin moves one version on
    site = publish_with_site(built)

    page = (site.site_dir / "trust.html").read_text(encoding="utf-8")
    assert "<code>mfr-121D-bin-* (16 hash bins)</code>" in page
    assert "mfr-121D-bin-0" not in page  # no row per bin
    assert page.index("<code>mfr-121D</code>") < page.index("mfr-121D-bin-*")
    library = library_of(built)
    bins = [r for r in library.roles if r.name.startswith("mfr-121D-bin-")]
    versions = sorted({r.version for r in bins})
    assert f'<td class="num">{versions[0]}–{versions[-1]}</td>' in page
    soonest = min(r.expires for r in bins).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = page[page.index("mfr-121D-bin-*") :].split("</tr>")[0]
    assert f'datetime="{soonest}"' in row


def test_a_migration_the_site_missed_is_not_appended_by_hint(
    built: LibraryFactory, tmp_path: Path
) -> None:
    """Split into bins and published without a site build, then one image: the count adds up
    for a hint of one image, but every image's role changed (the image pages and data/ show it).
    The basis record withholds the hint and the append path's own pass sees the roles move: a
    full build. (Without the record the told append leaves the old roles on the pages.)"""
    split_into_bins(built)
    built.publish()  # no site build
    lodge(built, 7)

    site = publish_with_site(built)

    assert site.hinted is None and not site.result.appended
    assert_full_build_bytes(built, site.site_dir, tmp_path)
