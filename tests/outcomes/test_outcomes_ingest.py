"""`cfl-repo outcomes ingest|show` and the hold they cause (issue 24, provider side).

Two suppliers report the same image; the provider publishes the combined figures signed by
cfl-provider; past the policy the image is held by itself and a third supplier's `cfl check`
says why; `cfl-repo release` lifts the hold and only new failures bring it back. Every refusal
has its stable code and changes nothing; nothing is counted twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.estate.check import run_check
from client.estate.report import report_json
from metadata_templates.outcomes import (
    previous_month,
    report_file_name,
)
from outcomes.outcome_library import (
    FAILING,
    REVOKED,
    SECOND,
    SUPPLIER,
    OutcomeLibrary,
    build_outcome_library,
    envelope,
    ingest,
)
from repo_tool.cli.main import cli as repo_cli
from repo_tool.ops import outcomes as ops
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


@pytest.fixture
def lib(tmp_path: Path) -> OutcomeLibrary:
    return build_outcome_library(tmp_path / "lib")


def check_groups(lib: OutcomeLibrary, tmp: Path) -> list[dict[str, object]]:
    home = lib.home(tmp)
    estate = tmp.parent / f"{tmp.name}-estate.csv"
    estate.write_text(
        "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
        "Firmware Version\n00-0D-6F-00-00-00-00-01,ESME,121D,010A030B,1111,00000001\n"
    )
    run = run_check(home, estate, now=lib.factory.now, offline=True)
    return list(report_json(run.report)["groups"])


def test_two_suppliers_combined_held_and_a_third_supplier_sees_why(
    lib: OutcomeLibrary, tmp_path: Path
) -> None:
    target = lib.targets[2]
    first = ingest(lib, ("b1", envelope(lib, SUPPLIER, FAILING)))
    assert first.accepted == 1 and first.held == ()  # one supplier alone never holds
    second = ingest(lib, ("b2", envelope(lib, SECOND, {"activated": 200, "hash-mismatch": 5})))
    assert second.held == (target,)
    image = second.document.image(target)
    assert image is not None
    assert (image.figures.delivered, image.figures.failures, image.suppliers) == (525, 25, 2)
    lib.factory.publish()
    # Published, signed by cfl-provider, and the independent walk accepts the tree.
    _library, problems = load_verified_library(
        folder_reader(lib.factory.out), lib.factory.root_bytes, now=lib.factory.now
    )
    assert problems == []
    published = json.loads(
        (lib.factory.out / "targets" / "cfl").glob("*.outcomes.json").__next__().read_bytes()
    )
    assert published["images"][0]["failures"] == 25
    assert "00-0D-6F" not in json.dumps(published)  # counts only
    [group] = check_groups(lib, tmp_path / "third")
    assert target not in group["path"]  # type: ignore[operator]
    assert [h["target"] for h in group["held"]] == [target]  # type: ignore[index, union-attr]
    assert "25 of 525" in group["held"][0]["reason"]  # type: ignore[index]


def test_release_lifts_and_only_new_failures_hold_again(lib: OutcomeLibrary) -> None:
    target = lib.targets[2]
    ingest(lib, ("b1", envelope(lib, SUPPLIER, FAILING)))
    ingest(lib, ("b2", envelope(lib, SECOND, FAILING)))
    repo = lib.factory.repo
    assert ops.is_held(repo, target)
    with repo.locked():
        ops.change_hold(
            repo,
            target,
            "release",
            "manufacturer confirmed a head-end fault",
            now=lib.factory.tick(),
        )
    assert not ops.is_held(repo, target)
    # The same evidence does not hold it again: a new, clean month does not either.
    later = "2025-01" if previous_month(lib.factory.now) != "2025-01" else "2025-02"
    result = ingest(lib, ("b1-clean", envelope(lib, SUPPLIER, {"activated": 900}, period=later)))
    assert result.accepted == 1 and result.held == ()
    # New failures from two suppliers after the release do.
    result = ingest(
        lib,
        ("b1-bad", envelope(lib, SUPPLIER, FAILING, period="2024-06")),
        ("b2-bad", envelope(lib, SECOND, FAILING, period="2024-06")),
    )
    assert result.held == (target,)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (
            lambda lib: envelope(lib, "00000000000000C9", FAILING, signer_of=SUPPLIER),
            "outcome-supplier-unknown",
        ),
        (lambda lib: envelope(lib, REVOKED, FAILING), "outcome-supplier-revoked"),
        (lambda lib: envelope(lib, SUPPLIER, FAILING, signer_of=SECOND), "outcome-bad-signature"),
        (lambda lib: envelope(lib, SUPPLIER, FAILING, period="2999-01"), "outcome-period-open"),
        (lambda lib: envelope(lib, SUPPLIER, FAILING, sha256="ab" * 32), "outcome-unknown-image"),
        (lambda lib: b"{" * (2 << 20), "outcome-report-too-large"),
        (lambda lib: b'{"payload": 7}', "outcome-report-malformed"),
        (lambda lib: b"\x00\xff not json", "outcome-report-malformed"),
    ],
)
def test_each_refusal_has_its_code_and_changes_nothing(
    lib: OutcomeLibrary, make: object, code: str
) -> None:
    repo = lib.factory.repo
    before = repo.head
    result = ingest(lib, ("bad", make(lib)))  # type: ignore[operator]
    assert [v.reasons for v in result.verdicts] == [(code,)]
    # One message in the house form (field, found, expected) for every code.
    assert len(result.verdicts[0].messages) == 1
    assert "found" in result.verdicts[0].messages[0] or "expected" in result.verdicts[0].messages[0]
    assert repo.head == before


def test_nothing_is_counted_twice(lib: OutcomeLibrary) -> None:
    data = envelope(lib, SUPPLIER, FAILING)
    assert ingest(lib, ("b1", data)).accepted == 1
    again = ingest(lib, ("b1-again", data))
    assert [v.status for v in again.verdicts] == ["already"]
    month = previous_month(lib.factory.now)
    day = f"{month}-15"
    replay = ingest(lib, ("b1-day", envelope(lib, SUPPLIER, {"activated": 5}, period=day)))
    assert [v.reasons for v in replay.verdicts] == [("outcome-report-replayed",)]
    image = ops.document(lib.factory.repo).image(lib.targets[2])
    assert image is not None and image.figures.attempted == 320


def test_the_upload_folder_names_its_sender(lib: OutcomeLibrary, tmp_path: Path) -> None:
    data = envelope(lib, SUPPLIER, FAILING)
    right = report_file_name(SUPPLIER, previous_month(lib.factory.now))
    wrong = report_file_name(SECOND, previous_month(lib.factory.now))
    result = ingest(lib, (str(tmp_path / wrong), data), folder=True)
    assert [v.reasons for v in result.verdicts] == [("outcome-report-misnamed",)]
    assert ingest(lib, (str(tmp_path / right), data), folder=True).accepted == 1


def test_the_commands_ingest_show_and_refuse_in_one_line(
    lib: OutcomeLibrary, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    period = previous_month(datetime.now().astimezone())
    good = inbox / report_file_name(SUPPLIER, period)
    good.write_bytes(envelope(lib, SUPPLIER, FAILING, period=period))
    (inbox / report_file_name(SECOND, period)).write_bytes(b"garbage")
    repo = ["--repo", str(lib.factory.repo.path)]
    runner = CliRunner()
    done = runner.invoke(repo_cli, [*repo, "outcomes", "ingest", "--from", str(inbox), "--json"])
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    doc = json.loads(done.stdout)
    assert sorted(r["status"] for r in doc["results"]) == ["accepted", "rejected"]
    again = runner.invoke(repo_cli, [*repo, "outcomes", "ingest", str(good)])
    assert again.exit_code == 0 and "already ingested" in again.output
    shown = runner.invoke(repo_cli, [*repo, "outcomes", "show", "--json"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["images"][0]["attempted"] == 320
    # The real console script, whose one error handler maps errors to exit codes.
    cfl_repo = Path(sys.executable).with_name("cfl-repo")
    for args, code, said in (
        (["outcomes", "ingest", str(tmp_path / "nope.json")], 2, "cannot be read"),
        (["outcomes", "ingest", str(inbox / report_file_name(SECOND, period))], 1, "rejected"),
        (["hold", lib.targets[2], "--reason", "field reports"], 0, "no client recommends it"),
        (["hold", lib.targets[2], "--reason", "field reports"], 0, "nothing changed"),
        (["release", lib.targets[2]], 2, "--reason"),  # lifting a hold needs a reason
        (["release", lib.targets[2], "--reason", "fixed head-end"], 0, "lifted"),
        (
            ["release", lib.targets[1], "--reason", "x"],
            1,
            "a pilot image",
        ),  # neither held nor pilot
    ):
        run = subprocess.run([cfl_repo, *repo, *args], capture_output=True, text=True, check=False)
        assert (run.returncode, "Traceback" in run.stderr) == (code, False), run.stderr
        assert said in run.stderr, run.stderr
