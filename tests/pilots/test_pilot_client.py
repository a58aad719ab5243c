"""The supplier's client on a library with a pilot image (issue 22), with injected time.

The pilot supplier's `cfl list` and `cfl check` show the image marked as its pilot; any other
supplier's client (or one that never named its organisation) does not offer it at all: not listed,
not applicable, not downloadable. After the provider's `refresh` on the date every client offers
it, even one whose clock is behind. Homes read the published folder over ``file://``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from client.estate.check import run_check
from client.estate.report import report_json
from client.fetch.retrieval import download_images
from client.trust.home import ClientConfig, ClientHome
from client.trust.listing import list_images
from metadata_templates.errors import VerificationError
from pilots.pilot_library import OTHER, PILOT, PilotLibrary, build_pilot_library
from repo_tool.ops.hold import hold
from repo_tool.ops.refresh import refresh
from repo_tool.ops.release import release

CFL = Path(sys.executable).with_name("cfl")
ESTATE_CSV = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version\n"
    + "".join(f"00-0D-6F-00-00-00-00-0{n},ESME,121D,010A030B,1111,00000002\n" for n in range(1, 4))
)


@pytest.fixture
def library(tmp_path: Path) -> PilotLibrary:
    return build_pilot_library(tmp_path / "lib")


def _home(library: PilotLibrary, tmp: Path, entity: str | None) -> ClientHome:
    home = ClientHome(tmp / f"home-{entity}")
    config = ClientConfig(repository_url=library.factory.out.resolve().as_uri(), entity_id=entity)
    with home.lock():
        home.initialise(config, library.factory.root_bytes)
    return home


def _listed(home: ClientHome, library: PilotLibrary) -> dict[str, dict[str, object] | None]:
    """target -> the ``pilot`` object of its `cfl list --json` entry (None: no mark)."""
    listing = list_images(
        home, manufacturers=(), device_types=(), offline=False, now=library.factory.now
    )
    return {i.target_path: listing.image_json(i).get("pilot") for i in listing.shown}  # type: ignore[misc]


def _applicable(home: ClientHome, library: PilotLibrary, tmp: Path) -> list[dict[str, object]]:
    estate = tmp / "estate.csv"
    estate.write_text(ESTATE_CSV)
    run = run_check(home, estate, now=library.factory.now)
    (group,) = report_json(run.report)["groups"]
    return list(group["applicable"])


def _provider_refresh(library: PilotLibrary) -> None:
    factory = library.factory
    with factory.repo.locked():
        refresh(factory.repo, now=factory.tick())
    factory.publish()


def test_before_the_date_only_the_pilot_supplier_is_offered_it(
    library: PilotLibrary, tmp_path: Path
) -> None:
    pilot, other, anonymous = (_home(library, tmp_path, e) for e in (PILOT, OTHER, None))
    marked = _listed(pilot, library)
    assert marked[library.public_target] is None
    mark = marked[library.pilot_target]
    assert mark is not None
    assert mark["state"] == "pilot" and mark["release_at"] == library.release_at
    assert mark["suppliers"] == [PILOT] and mark["event"] is None
    (applicable,) = _applicable(pilot, library, tmp_path)
    assert applicable["target"] == library.pilot_target and applicable["pilot"] == mark
    for home in (other, anonymous):
        assert set(_listed(home, library)) == {library.public_target}
        assert _applicable(home, library, tmp_path) == []
        with pytest.raises(VerificationError, match="expected an image in the verified library"):
            download_images(
                home,
                out_dir=tmp_path / "out",
                targets=[library.pilot_target],
                now=library.factory.now,
            )
    placed = download_images(
        pilot,
        out_dir=tmp_path / "pilot-out",
        targets=[library.pilot_target],
        now=library.factory.now,
    )
    assert [p.target for p in placed.placed] == [library.pilot_target]


def test_after_the_refresh_on_the_date_everyone_is_offered_it(
    library: PilotLibrary, tmp_path: Path
) -> None:
    pilot, other = _home(library, tmp_path, PILOT), _home(library, tmp_path, OTHER)
    slow_clock = library.factory.now
    library.travel(library.release_moment() + timedelta(minutes=1))
    _provider_refresh(library)
    library.factory.now = slow_clock  # the clients' clocks are behind: the document decides
    for home in (pilot, other):
        assert _listed(home, library) == {library.public_target: None, library.pilot_target: None}
        (applicable,) = _applicable(home, library, tmp_path)
        assert applicable["target"] == library.pilot_target and "pilot" not in applicable


def test_a_client_clock_past_the_date_offers_it_before_the_refresh(
    library: PilotLibrary, tmp_path: Path
) -> None:
    other = _home(library, tmp_path, OTHER)
    library.travel(library.release_moment())
    assert set(_listed(other, library)) == {library.public_target, library.pilot_target}


def test_a_held_pilot_stays_with_its_supplier_past_its_date(
    library: PilotLibrary, tmp_path: Path
) -> None:
    factory = library.factory
    with factory.repo.locked():
        hold(factory.repo, library.pilot_target, "a fault in the field", now=factory.tick())
    factory.publish()
    library.travel(library.release_moment() + timedelta(days=3))
    _provider_refresh(library)
    pilot, other = _home(library, tmp_path, PILOT), _home(library, tmp_path, OTHER)
    mark = _listed(pilot, library)[library.pilot_target]
    assert mark is not None and mark["state"] == "held"
    assert mark["event"]["reason"] == "a fault in the field"  # type: ignore[index]
    assert library.pilot_target not in _listed(other, library)


def test_an_early_release_reaches_everyone_before_the_date(
    library: PilotLibrary, tmp_path: Path
) -> None:
    factory = library.factory
    with factory.repo.locked():
        release(factory.repo, library.pilot_target, "pilot done", now=factory.tick())
    factory.publish()
    other = _home(library, tmp_path, OTHER)
    assert _listed(other, library)[library.pilot_target] is None


# ------------------------------------------------------------------------- the cfl command


def _cfl(home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL), "--home", str(home), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cfl_init_entity_and_list_marks_the_pilot(library: PilotLibrary, tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(library.factory.root_bytes)
    url = library.factory.out.resolve().as_uri()
    homes = {}
    for entity in (PILOT.lower(), OTHER):
        homes[entity.upper()] = tmp_path / f"cli-{entity}"
        done = _cfl(homes[entity.upper()], "init", url, "--root", root, "--entity", entity)
        assert done.returncode == 0, done.stderr
    config = json.loads((homes[PILOT] / "config.json").read_bytes())
    assert config["entity_id"] == PILOT  # normalised to upper case
    listed = _cfl(homes[PILOT], "list", "--json")
    assert listed.returncode == 0, listed.stderr
    images = {i["target"]: i for i in json.loads(listed.stdout)["images"]}
    assert images[library.pilot_target]["pilot"]["state"] == "pilot"
    assert "pilot" not in images[library.public_target]
    table = _cfl(homes[PILOT], "list", "--wide")
    assert f"PILOT until {library.release_at}" in table.stderr
    other = json.loads(_cfl(homes[OTHER], "list", "--json").stdout)
    assert [i["target"] for i in other["images"]] == [library.public_target]


def test_cfl_init_without_entity_writes_the_configuration_as_before(
    library: PilotLibrary, tmp_path: Path
) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(library.factory.root_bytes)
    home = tmp_path / "plain"
    done = _cfl(home, "init", library.factory.out.resolve().as_uri(), "--root", root)
    assert done.returncode == 0, done.stderr
    assert "entity_id" not in json.loads((home / "config.json").read_bytes())


@pytest.mark.parametrize(
    "entity", ["A1", "00000000000000G1", ""], ids=["short", "not-hex", "empty"]
)
def test_cfl_init_refuses_a_malformed_entity(
    library: PilotLibrary, tmp_path: Path, entity: str
) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(library.factory.root_bytes)
    home = tmp_path / "bad"
    done = _cfl(
        home, "init", library.factory.out.resolve().as_uri(), "--root", root, "--entity", entity
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --entity: found {entity!r}, expected 16 hex digits (an EUI-64)"]
    assert not (home / "config.json").exists()


def test_a_hand_edited_entity_in_the_configuration_is_refused(
    library: PilotLibrary, tmp_path: Path
) -> None:
    home = _home(library, tmp_path, PILOT)
    config = json.loads(home.config_path.read_bytes())
    config["entity_id"] = "a1"
    home.config_path.write_text(json.dumps(config))
    done = _cfl(home.path, "list")
    assert done.returncode == 2
    assert "entity_id: found 'a1', expected 16 upper-case hex digits or null" in done.stderr
