"""The public website never lists an image still in its pilot, and lists it after its release
(issue 22): by `publish`'s site step with injected time, and by `cfl-repo refresh`, which rebuilds
the site when it records a release (again on the next run, should it be killed in between)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from factory import T0
from pilots.pilot_library import PilotLibrary, build_pilot_library
from repo_tool.ops.refresh import refresh
from repo_tool.ops.release import release
from repo_tool.publish.site_step import RELEASES_MARK, build_published_site
from repo_tool.site.pages import render_site
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def _site_mentions(site: Path, text: str) -> list[str]:
    needle = text.encode()
    return sorted(
        str(p.relative_to(site))
        for p in site.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def _build(library: PilotLibrary) -> Path:
    factory = library.factory
    built = build_published_site(factory.out, factory.root_bytes, now=factory.now, hint=None)
    return built.site_dir


@pytest.fixture
def library(tmp_path: Path) -> PilotLibrary:
    return build_pilot_library(tmp_path)


def test_site_omits_the_pilot_until_its_release(library: PilotLibrary) -> None:
    site = _build(library)
    sha = (
        library.factory.repo.role("mfr-121D").signed.targets[library.pilot_target].hashes["sha256"]
    )
    assert _site_mentions(site, library.public_target)
    assert _site_mentions(site, library.pilot_target) == []
    assert _site_mentions(site, sha) == []
    assert _site_mentions(site, "00000003") == []  # not even its firmware version
    # The pure renderer agrees with the build.
    factory = library.factory
    published = verified_library(folder_reader(factory.out), factory.root_bytes, now=factory.now)
    rendered = dict(render_site(published, generated=factory.now))
    assert not any(library.pilot_target.encode() in data for data in rendered.values())

    library.travel(library.release_moment() + timedelta(minutes=1))
    with factory.repo.locked():
        refresh(factory.repo, now=factory.tick())
    factory.publish()
    site = _build(library)
    assert _site_mentions(site, library.pilot_target)
    assert _site_mentions(site, sha)


def test_site_lists_an_early_release_at_once(library: PilotLibrary) -> None:
    _build(library)
    factory = library.factory
    with factory.repo.locked():
        release(factory.repo, library.pilot_target, "pilot done", now=factory.tick())
    factory.publish()
    assert _site_mentions(_build(library), library.pilot_target)


def test_a_manufacturer_with_only_a_pilot_is_not_announced(tmp_path: Path) -> None:
    # Only the pilot deposited: the site must not name 121D's listing either.
    from pilots.pilot_library import IMAGES, PILOT, day_after, pilot_bundle

    bare = build_pilot_library(tmp_path, deposit_pilot=False)
    factory = bare.factory
    # (the public image is there; withdraw nothing: look for the pilot's own marks instead)
    result = factory.ingest(
        pilot_bundle(
            factory,
            IMAGES["spare"],
            ["CPL-E4"],
            suppliers=(PILOT,),
            release_at=day_after(factory.now, 5),
        )
    )
    assert result.status == "accepted" and result.target is not None
    factory.publish()
    site = _build(bare)
    assert _site_mentions(site, result.target) == []
    assert _site_mentions(site, "00000004") == []


def _cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_refresh_command_releases_on_the_date_and_rebuilds_the_site(tmp_path: Path) -> None:
    # Deposited three days ago for a release date that has come by now (the real clock).
    library = build_pilot_library(tmp_path, now=T0 - timedelta(days=3), release_in_days=2)
    repo = library.repo_path
    published = _cli(repo, "publish", "--no-site")
    assert published.returncode == 0, published.stderr
    site = library.factory.out / "site"
    site.mkdir()  # a host with a website (an empty one: refresh rebuilds it whole)
    done = _cli(repo, "refresh")
    assert done.returncode == 0, done.stderr
    assert (
        f"released {library.pilot_target}: release date {library.release_at} reached" in done.stderr
    )
    assert "website:" in done.stderr and "cfl-repo host nginx" in done.stderr
    assert _site_mentions(site, library.pilot_target)
    library.factory.repo.forget_head()  # the command committed in another process
    assert (site / RELEASES_MARK).read_text().strip() == library.factory.repo.head.releases_sha256
    # Killed between the commit and the site build: the next run rebuilds (the mark is behind).
    (site / RELEASES_MARK).unlink()
    again = _cli(repo, "refresh")
    assert again.returncode == 0, again.stderr
    assert "website:" in again.stderr and "released" not in again.stderr
    quiet = _cli(repo, "refresh")
    assert quiet.returncode == 0 and "website:" not in quiet.stderr
