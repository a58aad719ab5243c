"""The local rollout gate of `cfl check --devices-out F --phases` (issue 24): a phase after the first
is gated until the supplier's own outcomes for the previous phase are in and under the threshold.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from client.cli.main import cli
from client.outcomes.record import run_record
from metadata_templates.custom import format_timestamp
from outcomes.outcome_library import OutcomeLibrary

ESTATE = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version\n"
    + "".join(f"00-0D-6F-00-00-00-01-{n:02X},ESME,121D,010A030B,1111,00000002\n" for n in range(40))
)
NOW = datetime.now(UTC).replace(microsecond=0)


def _check(home: Path, estate: Path, out: Path) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "check", str(estate), "--offline", "--json",
         "--devices-out", str(out), "--phases", "25,100"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _first_phase(out: Path) -> list[dict[str, str]]:
    with out.open() as f:
        return [row for row in csv.DictReader(f) if row["Phase"] == "1"]


def _record(library: OutcomeLibrary, home: Path, tmp: Path, rows: list[tuple[str, str]]) -> None:
    results = tmp / f"r{len(list(tmp.glob('r*.csv')))}.csv"
    at = format_timestamp(NOW - timedelta(hours=1))
    results.write_text(
        "Device ID,Target,Outcome,Time\n"
        + "".join(f"{d},{library.targets[3]},{o},{at}\n" for d, o in rows)
    )
    from client.trust.home import ClientHome

    run_record(ClientHome(home), results, now=NOW)


def test_the_second_phase_is_gated_until_the_first_reports_under_the_threshold(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home").path
    estate = tmp_path / "estate.csv"
    estate.write_text(ESTATE)
    out = tmp_path / "devices.csv"
    doc = _check(home, estate, out)
    first, second = doc["phases"]
    assert first["gate"]["state"] == "open"
    assert (
        second["gate"]["state"] == "gated"
        and "waiting for the outcomes" in second["gate"]["reason"]
    )
    cohort = [row["Device ID"] for row in _first_phase(out)]
    assert 0 < len(cohort) == first["devices"] < 40
    # All but one in: still gated, naming how many are missing.
    _record(library, home, tmp_path, [(d, "activated") for d in cohort[1:]])
    assert (
        f"1 of the {len(cohort)} devices"
        in _check(home, estate, out)["phases"][1]["gate"]["reason"]
    )
    # The last one failed: over 2%, gated, with the figures.
    _record(library, home, tmp_path, [(cohort[0], "activation-failed")])
    gate = _check(home, estate, out)["phases"][1]["gate"]
    assert gate["state"] == "gated"
    assert (
        f"1 of {len(cohort)} delivered devices failed" in gate["reason"]
        and "2.0%" in gate["reason"]
    )


def test_the_gate_opens_when_the_first_phase_succeeded(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home").path
    estate = tmp_path / "estate.csv"
    estate.write_text(ESTATE)
    out = tmp_path / "devices.csv"
    _check(home, estate, out)
    cohort = [row["Device ID"] for row in _first_phase(out)]
    rows = [(d, "activated") for d in cohort[1:]] + [(cohort[0], "timeout")]  # undelivered
    _record(library, home, tmp_path, rows)
    gate = _check(home, estate, out)["phases"][1]["gate"]
    assert gate["state"] == "open"
    assert f"0 of {len(cohort) - 1} delivered devices failed" in gate["reason"]
