"""`cfl-repo audit` on the log a real nginx wrote, and its parts on hand-made input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from access.conftest import Served
from access.test_host_nginx import get
from repo_tool.access.audit import MalformedLineError, parse_line
from repo_tool.access.inventory import read_inventory

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since\n"
)


def audit(served: Served, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(served.factory.repo.path), "audit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _requests(served: Served, tmp_path: Path) -> Path:
    """Make the requests the test judges; return a log holding only their lines."""
    start = served.access_log.stat().st_size if served.access_log.exists() else 0
    for caller, resource in [
        ("IS", "ESME"),  # entitled by role and by device
        ("GS", "ESME"),  # outside its role (refused)
        ("revoked", "PPMID"),  # revoked (refused)
        ("no-certificate", "GSME"),  # unregistered (refused)
        ("manufacturer", "ESME"),  # unregistered certificate (refused)
        ("IS+GS", "GSME"),  # role fine, but responsible for no gas meter
        ("IS", "timestamp"),  # not an image request: not in the report
    ]:
        get(served, caller, served.paths[resource])
    # nginx writes a line after it has answered: wait for the last one.
    deadline = time.monotonic() + 10
    data = served.access_log.read_bytes()[start:]
    while data.count(b"\n") < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
        data = served.access_log.read_bytes()[start:]
    log = tmp_path / "access.log"
    log.write_bytes(data)
    return log


def _inventory(served: Served, tmp_path: Path) -> Path:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    path = tmp_path / "inventory.csv"
    path.write_text(
        HEADER
        + f"0000000000000001,ESME,121D,010A030B,1111,00000001,{served.entity['IS']},{yesterday}\n"
        + f"0000000000000002,GSME,3F01,0B0C,1111,00000005,{served.entity['GS']},{yesterday}\n"
        + "not,a,row\n"
    )
    return path


@pytest.mark.system
def test_audit_of_the_nginx_log(served: Served, tmp_path: Path) -> None:
    log = _requests(served, tmp_path)
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    result = audit(served, gz, "--inventory", _inventory(served, tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    entries = doc["downloads"]
    assert {tuple(sorted(e)) for e in entries} == {
        ("bytes", "certificate_sha256", "entitled", "entity_id", "findings", "path", "status",
         "target", "time")
    }  # fmt: skip
    by = {(e["entity_id"], e["target"].split(".")[0].split("-")[0][5:]): e for e in entries}
    ent = served.entity
    assert by[(ent["IS"], "ESME")]["findings"] == []
    assert by[(ent["IS"], "ESME")]["entitled"] is True
    assert by[(ent["IS"], "ESME")]["status"] == 200
    assert by[(ent["IS"], "ESME")]["bytes"] > 0
    assert by[(ent["GS"], "ESME")]["findings"] == ["outside-role", "no-applicable-device"]
    assert by[(ent["GS"], "ESME")]["status"] == 403
    assert "revoked-certificate" in by[(ent["revoked"], "PPMID")]["findings"]
    assert by[(ent["IS+GS"], "GSME")]["findings"] == ["no-applicable-device"]
    unregistered = [e for e in entries if e["entity_id"] is None]
    assert len(unregistered) == 2
    assert all(e["findings"] == ["unregistered-certificate"] for e in unregistered)
    # The manufacturer's certificate is named by its SHA-256 though it is not registered.
    assert sorted(e["certificate_sha256"] is None for e in unregistered) == [False, True]
    suppliers = {s["entity_id"]: s for s in doc["suppliers"]}
    assert suppliers[ent["IS"]]["downloads"] == 1
    assert suppliers[ent["IS"]]["flagged"] == 0
    assert suppliers[ent["GS"]]["flagged"] == 1
    assert "row 4" in result.stderr  # the bad inventory row, by line number


@pytest.mark.system
def test_audit_without_inventory_has_null_entitlement_and_a_text_report(
    served: Served, tmp_path: Path
) -> None:
    log = _requests(served, tmp_path)
    with log.open("ab") as handle:
        handle.write(b"garbage line\n")
    result = audit(served, log)
    assert result.returncode == 0, result.stderr
    assert "outside-role" in result.stdout
    assert f"{log}:8" in result.stdout  # the malformed line, by number
    as_json = json.loads(audit(served, log, "--json").stdout)
    assert all(e["entitled"] is None for e in as_json["downloads"])
    assert all("no-applicable-device" not in e["findings"] for e in as_json["downloads"])


BLOB = "/targets/121D/" + "a" * 64 + ".ESME-0001-00000002-" + "b" * 16 + ".ota"


def _line(**fields: object) -> bytes:
    doc: dict[str, object] = {
        "format": "cfl-access-1", "time": "2026-01-02T03:04:05+00:00", "entity_id": "",
        "certificate_sha256": "", "certificate_sha1": "", "verify": "NONE", "certificate": "",
        "remote_addr": "127.0.0.1", "method": "GET", "path": BLOB, "status": 200, "bytes": 10,
    } | fields  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "line",
    [
        b"not json at all",
        b'{"format":"cfl-access-1"',
        _line(status="200"),
        _line(time="yesterday"),
        _line(bytes=None),
        b'{"format":"other"}',
    ],
    ids=["not-json", "truncated", "status-not-int", "bad-time", "bytes-null", "other-format"],
)
def test_malformed_lines_are_named(line: bytes) -> None:
    with pytest.raises(MalformedLineError):
        parse_line(line)


def test_a_parsed_line_names_target_and_device_type() -> None:
    record = parse_line(_line())
    assert record is not None
    assert record.target == "121D/ESME-0001-00000002-" + "b" * 16 + ".ota"
    assert record.device_type == "ESME"
    assert record.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_line(_line(path="/metadata/1.root.json")) is None


def test_inventory_keeps_one_entry_per_kind_with_the_earliest_since() -> None:
    rows = [
        f"{i:016X},ESME,121D,010A030B,1111,00000001,00000000000000A1,2026-0{1 + i % 3}-01\n"
        for i in range(300)
    ]
    index = read_inventory(
        [HEADER, *rows, "XYZ,ESME,121D,010A030B,1111,00000001,00000000000000A1,2026-01-01\n"]
    )
    assert index.devices == 300
    assert index.bad_rows == 1
    assert index.problems == ["row 302: Device ID: found 'XYZ', expected 16 hex digits"]
    (kinds,) = index.since.values()
    assert list(kinds.values()) == [date(2026, 1, 1)]


def test_a_path_that_is_not_utf8_is_a_request_not_a_malformed_line() -> None:
    # nginx's escape=json passes bytes >= 0x80 through unescaped.
    line = _line(path="/site/x").replace(b"/site/x", b"/targets/\xff\xfe")
    assert parse_line(line) is None
