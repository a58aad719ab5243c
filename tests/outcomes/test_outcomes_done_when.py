"""Issue 24's "done when", through both sides' own code: two suppliers record per-device results
and submit signed counts; the provider ingests both and publishes the combined figures; the image
failing above the threshold is held and no client recommends it; a third supplier's `cfl check`
shows why; no device ID ever leaves a supplier.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from client.estate.check import run_check
from client.estate.report import report_json
from client.outcomes.keys import load_organisation_key
from client.outcomes.record import run_record
from client.outcomes.submit import run_submit
from outcomes.outcome_library import SECOND, SUPPLIER, OutcomeLibrary
from repo_tool.ops.outcomes import ingest_reports

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
ESTATE = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version\n00-0D-6F-00-00-00-09-01,ESME,121D,010A030B,1111,00000001\n"
)


def _device(supplier: int, n: int) -> str:
    return f"00-0D-6F-00-{supplier:02X}-00-{n >> 8:02X}-{n & 0xFF:02X}"


def test_two_suppliers_report_the_image_is_held_and_a_third_supplier_sees_why(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    target = library.targets[2]
    envelopes = []
    for s, entity in enumerate((SUPPLIER, SECOND), start=1):
        home = library.home(tmp_path / f"home-{s}")
        rows = [
            f"{_device(s, n)},{target},{'activation-failed' if n < 8 else 'activated'},"
            "2026-11-20T10:00:00Z"
            for n in range(300)
        ]
        results = tmp_path / f"results-{s}.csv"
        results.write_text("Device ID,Target,Outcome,Time\n" + "\n".join(rows) + "\n")
        run_record(home, results, now=NOW)
        key = load_organisation_key(library.key_file(tmp_path / "keys", entity), lambda: "")
        out = tmp_path / f"report-{s}.dsse.json"
        run_submit(home, key, now=NOW, period="2026-11", out=out)
        data = out.read_bytes()
        for n in range(300):  # privacy: not one device ID, in any spelling, leaves the supplier
            plain = _device(s, n).replace("-", "")
            assert plain.encode() not in data and plain.lower().encode() not in data
        envelopes.append((str(out), data))
    repo = library.factory.repo
    with repo.locked():
        result = ingest_reports(repo, envelopes, now=NOW, from_folder=False)
    assert [v.status for v in result.verdicts] == ["accepted", "accepted"]
    assert result.held == (target,)  # 16 of 600 delivered (2.7%) from two suppliers
    library.factory.publish()
    published = json.loads(
        next((library.factory.out / "targets" / "cfl").glob("*.outcomes.json")).read_bytes()
    )
    [figures] = [i for i in published["images"] if i["target"] == target]
    assert (figures["attempted"], figures["failures"], figures["suppliers"]) == (600, 16, 2)
    third = library.home(tmp_path / "home-third")
    estate = tmp_path / "estate.csv"
    estate.write_text(ESTATE)
    run = run_check(third, estate, now=NOW, offline=True)
    [group] = report_json(run.report)["groups"]
    assert target not in group["path"] and group["recommended"] != target
    [held] = group["held"]
    assert held["target"] == target and "16 of 600" in held["reason"]
