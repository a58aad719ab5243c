"""`cfl outcomes record` (issue 24): strict reading, resolution against the verified library, the
ledger kept only in the home, retries superseding, idempotent re-recording, nothing changed on error.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import outcomes as outcomes_cli
from client.cli.main import cli
from client.outcomes.ledger import ledger_path, load_ledger
from client.outcomes.record import run_record
from client.outcomes.results import ResultsError
from factory import mi_sha
from metadata_templates.custom import format_timestamp
from outcomes.outcome_library import IMAGES, OutcomeLibrary

NOW = datetime.now(UTC).replace(microsecond=0)
EARLIER = format_timestamp(NOW - timedelta(days=2))
LATER = format_timestamp(NOW - timedelta(days=1))
HEADER = "Device ID,Target,Outcome,Time,Firmware Version\n"


def dev(n: int) -> str:
    return f"00-0D-6F-00-00-{n >> 16 & 0xFF:02X}-{n >> 8 & 0xFF:02X}-{n & 0xFF:02X}"


def write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def test_records_counts_per_image_and_outcome_by_path_or_hash(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    t2, t3 = library.targets[2], library.targets[3]
    results = write(
        tmp_path / "r.csv",
        [
            f"{dev(1)},{t2},activated,{EARLIER},00000002",
            f"{dev(2)},{mi_sha(IMAGES[2]).upper()},hash-mismatch,{EARLIER},",
            f"{dev(3)},{t3},timeout,{EARLIER.replace('Z', '+00:00')},",
        ],
    )
    summary = run_record(home, results, now=NOW)
    assert summary.new == 3
    assert summary.counts == {t2: {"activated": 1, "hash-mismatch": 1}, t3: {"timeout": 1}}
    ledger = load_ledger(home.path)
    assert ledger.outcome(dev(2), t2) == "hash-mismatch"
    assert ledger.images[t3].devices[dev(3)] == (EARLIER, "timeout")
    assert ledger_path(home.path).stat().st_mode & 0o077 == 0  # device IDs: owner only


def test_activated_with_another_firmware_read_back_counts_as_version_not_confirmed(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    results = write(
        tmp_path / "r.csv", [f"{dev(1)},{library.targets[2]},activated,{EARLIER},00000001"]
    )
    summary = run_record(home, results, now=NOW)
    assert summary.version_not_confirmed == 1
    assert load_ledger(home.path).outcome(dev(1), library.targets[2]) == "version-not-confirmed"


def test_a_later_retry_supersedes_and_the_same_file_again_records_nothing(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    t2 = library.targets[2]
    first = write(tmp_path / "a.csv", [f"{dev(1)},{t2},not-retrieved,{EARLIER},"])
    retry = write(tmp_path / "b.csv", [f"{dev(1)},{t2},activated,{LATER},"])
    run_record(home, first, now=NOW)
    assert run_record(home, retry, now=NOW).updated == 1
    again = run_record(home, first, now=NOW)  # the earlier attempt, recorded again
    assert (again.new, again.updated, again.older) == (0, 0, 1)
    before = ledger_path(home.path).read_bytes()
    same = run_record(home, retry, now=NOW)
    assert (same.new, same.updated, same.unchanged) == (0, 0, 1)
    assert ledger_path(home.path).read_bytes() == before
    assert load_ledger(home.path).outcome(dev(1), t2) == "activated"


@pytest.mark.parametrize(
    ("row", "column", "found"),
    [
        ("00-0D-6F-XX-00-00-00-01,{t},activated,{e},", "Device ID", "00-0D-6F-XX-00-00-00-01"),
        ("{d},{t},bricked,{e},", "Outcome", "bricked"),
        ("{d},{t},activated,2026-13-01T00:00:00Z,", "Time", "2026-13-01T00:00:00Z"),
        ("{d},{t},activated,2026-01-01 00:00:00,", "Time", "2026-01-01 00:00:00"),
        ("{d},{t},activated,{e},0000002G", "Firmware Version", "0000002G"),
        ("{d},{t},activated,{e},", "(row)", ""),  # replaced below by a short row
    ],
)
def test_a_malformed_row_refuses_the_file_naming_row_column_found_and_expected(
    library: OutcomeLibrary, tmp_path: Path, row: str, column: str, found: str
) -> None:
    home = library.home(tmp_path / "home")
    good = f"{dev(9)},{library.targets[2]},activated,{EARLIER},"
    text = row.format(d=dev(1), t=library.targets[2], e=EARLIER)
    if column == "(row)":
        text = f"{dev(1)},{library.targets[2]}"
    results = write(tmp_path / "r.csv", [good, text])
    with pytest.raises(ResultsError) as raised:
        run_record(home, results, now=NOW)
    message = str(raised.value)
    assert "row 3:" in message and column in message and found in message and "expected" in message
    assert not ledger_path(home.path).exists()  # the good row was not recorded either


def test_a_time_in_the_future_is_refused(library: OutcomeLibrary, tmp_path: Path) -> None:
    home = library.home(tmp_path / "home")
    future = format_timestamp(NOW + timedelta(hours=1))
    results = write(tmp_path / "r.csv", [f"{dev(1)},{library.targets[2]},activated,{future},"])
    with pytest.raises(ResultsError, match="not in the future"):
        run_record(home, results, now=NOW)


def test_an_oversized_field_is_refused_without_echoing_it_whole(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    results = write(tmp_path / "r.csv", [f"{dev(1)},{'A' * 5000},activated,{EARLIER},"])
    with pytest.raises(ResultsError) as raised:
        run_record(home, results, now=NOW)
    assert "at most 256 characters" in str(raised.value)
    assert len(str(raised.value)) < 1000


def test_unknown_images_are_refused_including_a_hash_the_library_does_not_have(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    foreign = "ab" * 32  # another manufacturer's image, never deposited in this library
    results = write(
        tmp_path / "r.csv",
        [
            f"{dev(1)},{foreign},activated,{EARLIER},",
            f"{dev(2)},121D/ESME-0001-00000007-0000000000000000.ota,activated,{EARLIER},",
        ],
    )
    with pytest.raises(ResultsError) as raised:
        run_record(home, results, now=NOW)
    assert "row 2:" in str(raised.value) and "row 3:" in str(raised.value)
    assert foreign in str(raised.value)
    assert not ledger_path(home.path).exists()


def test_the_same_device_twice_for_one_image_is_refused_even_by_path_and_by_hash(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    results = write(
        tmp_path / "r.csv",
        [
            f"{dev(1)},{library.targets[2]},timeout,{EARLIER},",
            f"{dev(1).replace('-', '')},{mi_sha(IMAGES[2])},activated,{LATER},",
        ],
    )
    with pytest.raises(ResultsError, match="also on row 2"):
        run_record(home, results, now=NOW)


def test_a_conflicting_outcome_at_the_same_time_refuses_the_file_and_keeps_the_ledger(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = library.home(tmp_path / "home")
    t2 = library.targets[2]
    run_record(home, write(tmp_path / "a.csv", [f"{dev(1)},{t2},activated,{EARLIER},"]), now=NOW)
    before = ledger_path(home.path).read_bytes()
    other = write(
        tmp_path / "b.csv",
        [f"{dev(2)},{t2},activated,{EARLIER},", f"{dev(1)},{t2},timeout,{EARLIER},"],
    )
    with pytest.raises(ResultsError, match="same Time"):
        run_record(home, other, now=NOW)
    assert ledger_path(home.path).read_bytes() == before


def test_200000_rows_record_in_seconds(library: OutcomeLibrary, tmp_path: Path) -> None:
    home = library.home(tmp_path / "home")
    t2, t3 = library.targets[2], library.targets[3]
    rows = [
        f"{dev(n)},{t2 if n % 2 else t3},{'activated' if n % 50 else 'activation-failed'},{EARLIER},"
        for n in range(200_000)
    ]
    results = write(tmp_path / "big.csv", rows)
    started = time.monotonic()
    summary = run_record(home, results, now=NOW)
    assert summary.new == 200_000
    assert time.monotonic() - started < 30  # bounded work: a few seconds on a shared machine


def test_cli_record_json_and_a_bad_file_exits_1_with_one_error(
    library: OutcomeLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = library.home(tmp_path / "home")
    monkeypatch.setattr(outcomes_cli, "_now", lambda: NOW)
    results = write(tmp_path / "r.csv", [f"{dev(1)},{library.targets[2]},activated,{EARLIER},"])
    runner = CliRunner()
    ok = runner.invoke(
        cli, ["--home", str(home.path), "outcomes", "record", str(results), "--json"]
    )
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["schema_version"] == 1 and doc["new"] == 1
    assert doc["images"] == [
        {"target": library.targets[2], "outcomes": {"activated": 1}, "devices": 1}
    ]
    bad = write(tmp_path / "bad.csv", [f"{dev(2)},{library.targets[2]},nope,{EARLIER},"])
    refused = runner.invoke(cli, ["--home", str(home.path), "outcomes", "record", str(bad)])
    assert refused.exit_code == 1
    assert "error: " in refused.stderr and "Traceback" not in refused.output
    missing = runner.invoke(
        cli,
        [
            "--home",
            str(home.path),
            "outcomes",
            "record",
            str(write(tmp_path / "h.csv", [], "a,b\n")),
        ],
    )
    assert missing.exit_code == 1 and "missing: Device ID, Target, Outcome, Time" in missing.stderr
