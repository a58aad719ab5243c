"""A security advisory fixed by a pilot image (issues 22 and 23 together).

The manufacturer publishes an advisory on CPL-E2 fixed by its pilot build (CPL-E3). The pilot
supplier's `cfl check` and `cfl advisories` give the pilot as the way out; any other supplier's
client sees the advisory with no fix yet (it does not know the pilot image exists) until the
release, after which both show the same fix path. Time is injected.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from advisory_factory import authored, lodge

from client.estate.advisory_check import run_advisories
from client.estate.check import run_check
from client.trust.home import ClientConfig, ClientHome
from pilots.pilot_library import OTHER, PILOT, PilotLibrary, build_pilot_library
from repo_tool.ops.release import release

ESTATE_CSV = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version\n00-0D-6F-00-00-00-00-01,ESME,121D,010A030B,1111,00000002\n"
)


@pytest.fixture
def library(tmp_path: Path) -> PilotLibrary:
    library = build_pilot_library(tmp_path / "lib")
    lodge(
        library.factory,
        authored(affected_cpl_entries=["CPL-E2"], fixed_by=[library.pilot_target]),
    )
    return library


def _home(library: PilotLibrary, tmp: Path, entity: str) -> ClientHome:
    home = ClientHome(tmp / f"home-{entity}")
    config = ClientConfig(repository_url=library.factory.out.resolve().as_uri(), entity_id=entity)
    with home.lock():
        home.initialise(config, library.factory.root_bytes)
    return home


def _fix_paths(home: ClientHome, library: PilotLibrary, tmp: Path) -> tuple[list[str], list[str]]:
    """The advisory's fix path for the estate's group: by `cfl check`, by `cfl advisories`."""
    estate = tmp / "estate.csv"
    estate.write_text(ESTATE_CSV)
    now = library.factory.now
    checked = run_check(home, estate, now=now).report
    listed = run_advisories(home, estate, offline=False, now=now).report
    paths = []
    for report in (checked, listed):
        assert report is not None and report.advisories is not None
        (alerts,) = report.advisories
        (alert,) = alerts
        assert alert.advisory.id == "CFL-121D-2026-0001"
        paths.append([image.target_path for image in alert.fix_path])
    return paths[0], paths[1]


def test_the_pilot_is_the_fix_only_for_its_supplier_until_released(
    library: PilotLibrary, tmp_path: Path
) -> None:
    pilot, other = _home(library, tmp_path, PILOT), _home(library, tmp_path, OTHER)
    assert _fix_paths(pilot, library, tmp_path) == ([library.pilot_target],) * 2
    assert _fix_paths(other, library, tmp_path) == ([], [])

    factory = library.factory
    with factory.repo.locked():
        release(factory.repo, library.pilot_target, reason="fix for everyone", now=factory.tick())
    factory.publish()
    assert _fix_paths(other, library, tmp_path) == ([library.pilot_target],) * 2
    assert _fix_paths(pilot, library, tmp_path) == ([library.pilot_target],) * 2
