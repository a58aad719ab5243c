"""`cfl check` and `cfl list` on a library whose published cfl/outcomes.json holds images (issue 24):
a held image is on no group's path or recommended, paths route around it or stop before it, and
each group says why (``held``). Without a published document nothing changes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from client.cli.main import cli
from client.estate.check import run_check
from client.estate.report import report_json
from client.trust.listing import list_images
from metadata_templates.outcomes import OutcomesDocument
from outcomes.outcome_library import (
    OutcomeLibrary,
    build_outcome_library,
    hold_event,
    publish_outcomes,
)

ESTATE = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version\n"
    + "".join(f"00-0D-6F-00-00-00-00-0{n},ESME,121D,010A030B,1111,00000001\n" for n in range(1, 4))
    + "00-0D-6F-00-00-00-01-01,ESME,121D,010A030B,1111,00000002\n"
)


@pytest.fixture
def fresh(tmp_path: Path) -> OutcomeLibrary:
    """Its own library: these tests publish holds."""
    return build_outcome_library(tmp_path / "lib")


def _groups(library: OutcomeLibrary, tmp: Path) -> list[dict[str, Any]]:
    home = library.home(tmp / "home")
    estate = tmp / "estate.csv"
    estate.write_text(ESTATE)
    run = run_check(home, estate, now=library.factory.now, offline=True)
    return list(report_json(run.report)["groups"])


def _document(library: OutcomeLibrary, *fws: int) -> OutcomesDocument:
    at = library.factory.now - timedelta(hours=1)
    events = tuple(
        hold_event(library.targets[fw], "0" * 64, at, f"3 of 10 delivered devices failed (fw {fw})")
        for fw in fws
    )
    return OutcomesDocument(updated="2026-12-01T00:00:00Z", events=events)


def test_without_a_published_document_the_check_is_as_before(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    on_one, on_two = _groups(library, tmp_path)
    assert on_one["path"] == [library.targets[3]] and on_one["recommended"] == library.targets[3]
    assert on_one["held"] == [] and on_two["held"] == []


def test_a_held_image_is_routed_around_and_the_group_says_why(
    fresh: OutcomeLibrary, tmp_path: Path
) -> None:
    publish_outcomes(fresh, _document(fresh, 3))
    on_one, on_two = _groups(fresh, tmp_path / "a")
    t2, t3 = fresh.targets[2], fresh.targets[3]
    # Firmware 1 could go straight to 3; 3 is held, so the path ends at 2.
    assert on_one["path"] == [t2] and on_one["recommended"] == t2
    assert [h["target"] for h in on_one["held"]] == [t3]
    (held,) = on_one["held"]
    assert held["by"] == "policy" and "3 of 10" in held["reason"] and held["since"]
    assert on_one["newest_unreachable"]["code"] == "held"
    # Firmware 2's only way on is the held image: the path stops before it.
    assert on_two["path"] == [] and on_two["recommended"] is None
    assert [h["target"] for h in on_two["held"]] == [t3]
    assert t3 in [a["target"] for a in on_two["applicable"]]  # it still applies; it is not sent


def test_holding_the_only_way_through_stops_the_path_before_it(
    fresh: OutcomeLibrary, tmp_path: Path
) -> None:
    publish_outcomes(fresh, _document(fresh, 2, 3))
    on_one, _on_two = _groups(fresh, tmp_path / "b")
    assert on_one["path"] == [] and on_one["recommended"] is None
    assert sorted(h["target"] for h in on_one["held"]) == sorted(
        [fresh.targets[2], fresh.targets[3]]
    )


def test_cfl_list_marks_held_images_and_check_json_keeps_its_shape(
    fresh: OutcomeLibrary, tmp_path: Path
) -> None:
    publish_outcomes(fresh, _document(fresh, 3))
    home = fresh.home(tmp_path / "home")
    listing = list_images(home, manufacturers=(), device_types=(), offline=True)
    held = {i.target_path: listing.image_json(i)["held"] for i in listing.shown}
    assert held[fresh.targets[2]] is None
    assert held[fresh.targets[3]]["by"] == "policy"
    estate = tmp_path / "estate.csv"
    estate.write_text(ESTATE)
    runner = CliRunner()
    result = runner.invoke(cli, ["--home", str(home.path), "check", str(estate), "--offline"])
    assert result.exit_code == 0, result.output
    assert "held:" in result.stderr and "3 of 10" in result.stderr
    doc = json.loads(
        runner.invoke(
            cli, ["--home", str(home.path), "check", str(estate), "--offline", "--json"]
        ).stdout
    )
    group = doc["groups"][0]
    assert set(group) >= {"applicable", "recommended", "path", "newest", "newest_unreachable"}
    assert group["held"][0]["target"] == fresh.targets[3]


def test_the_campaign_report_charts_published_and_own_outcomes(
    fresh: OutcomeLibrary, tmp_path: Path
) -> None:
    from metadata_templates.outcomes import Figures, ImageOutcomes

    t3 = fresh.targets[3]
    figures = Figures({"activated": 940, "activation-failed": 50, "timeout": 10})
    document = _document(fresh, 3)
    publish_outcomes(
        fresh,
        OutcomesDocument(
            updated=document.updated,
            images=(ImageOutcomes(t3, "0" * 64, figures, suppliers=2, reports=2),),
            events=document.events,
        ),
    )
    home = fresh.home(tmp_path / "home")
    results = tmp_path / "r.csv"
    results.write_text(
        f"Device ID,Target,Outcome,Time\n00-0D-6F-00-00-00-00-01,{t3},activated,"
        f"{(fresh.factory.now - timedelta(hours=3)).strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
    )
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["--home", str(home.path), "outcomes", "record", str(results)]).exit_code
        == 0
    )
    estate = tmp_path / "estate.csv"
    estate.write_text(ESTATE)
    page = tmp_path / "report.html"
    done = runner.invoke(
        cli, ["--home", str(home.path), "check", str(estate), "--offline", "--report", str(page)]
    )
    assert done.exit_code == 0, done.output
    html = page.read_text()
    section = html[html.index('id="outcomes"') : html.index('id="changes"')]
    assert t3 in section and "ON HOLD" in section
    assert "All suppliers (published) (2 suppliers)" in section
    assert "Your own (recorded in this home)" in section
    assert "1,000 attempted, 990 delivered, 50 failed (5.1%)" in section
    assert section.count("<svg") == 2 and "<rect" in section
    assert "<script" not in html
