"""`cfl-repo entitlements import|show`, `host nginx --access estate` and `audit` as commands: the
stable JSON, one `error:` line per bad input with the right exit code, an unchanged repository."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from access.pki import issue, make_ca

from entitle.conftest import D1, D2, D3, FF, S1, S2, S3, TODAY, World, inventory, write_inventory

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
SINCE = TODAY.replace(year=TODAY.year - 1)


def cfl_repo(repo: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(repo), *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def repo(pristine: World, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(pristine.repo_path, copy, symlinks=True)
    return copy


def snapshot(repo: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_import_json_names_the_record_suppliers_and_the_unregistered(
    repo: Path, pristine: World, tmp_path: Path
) -> None:
    rows = [(D1, S1, SINCE), (D2, S2, SINCE), (D3, FF, SINCE)]
    path = tmp_path / "inventory.csv.gz"
    path.write_bytes(gzip.compress(inventory(rows).encode()))
    result = cfl_repo(repo, "entitlements", "import", path, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert doc["devices"] == 3 and doc["bad_rows"] == 0
    assert doc["inventory_date"] == SINCE.isoformat()
    assert [(s["entity_id"], s["images"], s["devices"]) for s in doc["suppliers"]] == [
        (S1, 2, 1),
        (S2, 1, 1),
    ]
    assert doc["unregistered"] == [{"entity_id": FF, "devices": 1}]
    assert f"{FF}: not registered (1 device(s) give it nothing)" in result.stderr
    import hashlib

    assert doc["inventory_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    shown = cfl_repo(repo, "entitlements", "show", S1, "--json", "--history")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["record"] == doc["record"]
    assert [i["target"] for i in view["images"]] == sorted(
        (pristine.targets["a2"], pristine.targets["a3"])
    )
    assert all(i["since"] == SINCE.isoformat() and i["in_force"] for i in view["images"])
    assert view["grace"] == []
    assert [h["record"] for h in view["history"]] == [doc["record"]]
    text = cfl_repo(repo, "entitlements", "show", S1)
    assert f"{pristine.targets['a3']}  since {SINCE.isoformat()}" in text.stdout


def test_a_change_of_supplier_shows_on_both_sides(
    repo: Path, pristine: World, tmp_path: Path
) -> None:
    first = write_inventory(tmp_path / "1.csv", [(D1, S1, SINCE)])
    assert cfl_repo(repo, "entitlements", "import", first).returncode == 0
    second = write_inventory(tmp_path / "2.csv", [(D1, S2, TODAY)])
    result = cfl_repo(repo, "entitlements", "import", second, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    by_entity = {s["entity_id"]: s for s in doc["suppliers"]}
    assert sorted(by_entity[S1]["lost"]) == sorted(by_entity[S2]["gained"])
    assert "gained 2, lost 0" in result.stderr and "lost 2 into a 28-day grace" in result.stderr
    gainer = json.loads(cfl_repo(repo, "entitlements", "show", S2, "--json").stdout)
    assert {i["since"] for i in gainer["images"]} == {TODAY.isoformat()}
    loser = json.loads(cfl_repo(repo, "entitlements", "show", S1, "--json").stdout)
    assert loser["images"] == []
    until = TODAY.toordinal() + 28
    assert {g["until"] for g in loser["grace"]} == {TODAY.fromordinal(until).isoformat()}
    later = TODAY.fromordinal(until + 1).isoformat()
    ended = json.loads(cfl_repo(repo, "entitlements", "show", S1, "--json", "--on", later).stdout)
    assert not any(g["in_force"] for g in ended["grace"])


BAD_ARGUMENTS = {
    "missing-file": (
        ["import", "nope.csv"],
        2,
        "INVENTORY: found 'nope.csv', expected an existing file",
    ),
    "bad-date": (
        ["import", "{inv}", "--inventory-date", "31/03/2026"],
        2,
        "--inventory-date: found '31/03/2026'",
    ),
    "bad-entity": (["show", "XYZ"], 2, "ENTITY: found 'XYZ', expected 16 hex digits"),
    "unknown-entity": (["show", "00000000000000EE"], 1, "expected a registered Entity ID"),
    "bad-on": (["show", S1, "--on", "tomorrow"], 2, "--on: found 'tomorrow'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS), ids=str)
def test_bad_arguments_are_one_error_line(repo: Path, tmp_path: Path, case: str) -> None:
    inv = write_inventory(tmp_path / "inv.csv", [(D1, S1, SINCE)])
    assert cfl_repo(repo, "entitlements", "import", inv).returncode == 0
    args, code, message = BAD_ARGUMENTS[case]
    before = snapshot(repo)
    result = cfl_repo(repo, "entitlements", *[str(inv) if a == "{inv}" else a for a in args])
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(repo) == before


def test_a_bad_row_is_exit_1_and_skip_bad_imports_the_rest(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_text(
        inventory([(D1, S1, SINCE)])
        + f"00000000000000D9,ESME,121D,010A030B,1111,XYZ,{S1},2025-01-01\n"
    )
    before = snapshot(repo)
    refused = cfl_repo(repo, "entitlements", "import", path)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"error: {path} line 3: Firmware Version: found 'XYZ', expected 8 hex digits"
    )
    assert snapshot(repo) == before
    skipped = cfl_repo(repo, "entitlements", "import", path, "--skip-bad", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["bad_rows"] == 1
    assert "line 3: Firmware Version" in skipped.stderr


def test_an_older_inventory_needs_force(repo: Path, tmp_path: Path) -> None:
    new = write_inventory(tmp_path / "new.csv", [(D1, S1, TODAY)])
    old = write_inventory(tmp_path / "old.csv", [(D1, S2, SINCE)])
    assert cfl_repo(repo, "entitlements", "import", new).returncode == 0
    refused = cfl_repo(repo, "entitlements", "import", old)
    assert refused.returncode == 1
    assert "inventory date: found" in refused.stderr and "hint: " in refused.stderr
    assert cfl_repo(repo, "entitlements", "import", old, "--force").returncode == 0


def test_show_before_any_import_says_what_to_do(repo: Path) -> None:
    result = cfl_repo(repo, "entitlements", "show", S1)
    assert result.returncode == 2
    assert "run `cfl-repo entitlements import" in result.stderr


def test_every_new_command_teaches_with_an_example(repo: Path) -> None:
    for args in (["entitlements", "import", "--help"], ["entitlements", "show", "--help"]):
        text = cfl_repo(repo, *args).stdout
        assert "cfl-repo --repo R entitlements" in text
    assert "--access [role|estate]" in cfl_repo(repo, "host", "nginx", "--help").stdout


def _host_args(tmp_path: Path, repo: Path) -> list[object]:
    ca, server_ca = make_ca(), make_ca("server CA")
    cert, key = issue(server_ca, "localhost", server=True).write(tmp_path, "server")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    return ["host", "nginx", "--server-name", "localhost", "--listen", "127.0.0.1:8443",
            "--tls-cert", cert, "--tls-key", key, "--supplier-ca", tmp_path / "ca.pem",
            "--out", tmp_path / "cfl.conf"]  # fmt: skip


def test_host_estate_before_an_import_is_a_configuration_error(repo: Path, tmp_path: Path) -> None:
    result = cfl_repo(repo, *_host_args(tmp_path, repo), "--access", "estate")
    assert result.returncode == 2
    assert "error: --access estate: found no entitlements imported" in result.stderr
    assert not (tmp_path / "cfl.conf").exists()
    on = cfl_repo(repo, *_host_args(tmp_path, repo), "--on", "2026-01-01")
    assert on.returncode == 2 and "no --on without --access estate" in on.stderr


def test_host_estate_json_reports_the_maps(repo: Path, pristine: World, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv.csv", [(D1, S1, SINCE), (D3, S3, SINCE)])
    assert cfl_repo(repo, "entitlements", "import", inv).returncode == 0
    result = cfl_repo(repo, *_host_args(tmp_path, repo), "--access", "estate", "--json")
    assert result.returncode == 0, result.stderr
    estate = json.loads(result.stdout)["estate"]
    assert estate["rights"] == 4 and estate["images_held"] == 2
    assert estate["images_unheld"] == 1  # b5: nobody's GSME device is in the inventory
    assert estate["config_bytes"] == (tmp_path / "cfl.conf").stat().st_size
    assert "warning: 1 image(s) in the library no supplier may fetch" in result.stderr
    text = (tmp_path / "cfl.conf").read_text()
    assert f'{pristine.targets["a3"]} ":1:3:";' in text


def test_audit_without_a_history_is_as_before(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    result = cfl_repo(repo, "audit", log, "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"schema_version", "downloads", "suppliers"}
    assert "entitlement by device not checked" in result.stderr
