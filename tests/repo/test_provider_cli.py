"""The issue-13 commands through the real `cfl-repo` console script: `provider adopt|rotate-key`,
`enrol` (manufacturer) and `manufacturer enrol` (provider), their `--json`, and their one-line
refusals (exit 1 rejected, 2 configuration; never a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from factory import make_entry, make_image, mi_sha
from repo_tool.dev.demo_data import render_cpl_csv

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    stderr = done.stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_a_new_repository_enrols_a_manufacturer_and_rotates_its_provider_key(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "R"
    ok("--repo", repo, "init", "--dev-keys")
    cpl = tmp_path / "cpl.csv"
    cpl.write_bytes(
        render_cpl_csv([make_entry("CPL-0002", image_sha=mi_sha(make_image("121D", 2)))])
    )
    imported = ok("--repo", repo, "cpl", "import", cpl)
    assert "staged cfl-provider version 2" in imported.stderr
    # Already delegated by init: adopting is a no-op that says so.
    adopted = ok("--repo", repo, "provider", "adopt", "--dev-key", "--json")
    assert json.loads(adopted.stdout) | {"schema_version": 1} == json.loads(adopted.stdout)
    assert json.loads(adopted.stdout)["already"] is True
    # The manufacturer signs its enrolment; the provider enrols it.
    ok("keygen", tmp_path / "maker" / "mfr.pem", "--no-encrypt")
    ok(
        "--repo", repo, "manufacturer", "add", "121D", "--name", "Maker",
        "--key", tmp_path / "maker" / "mfr.pub.pem",
    )  # fmt: skip
    bundle = tmp_path / "enrol-121D.json"
    made = ok(
        "enrol", "--manufacturer", "121d", "--key", tmp_path / "maker" / "mfr.pem",
        "--out", bundle, "--json",
    )  # fmt: skip
    assert json.loads(made.stdout)["manufacturer"] == "121D"
    assert json.loads(made.stdout)["schema_version"] == 1
    edited = tmp_path / "edited.json"
    doc = json.loads(bundle.read_bytes())
    doc["signed"]["version"] = 2
    edited.write_text(json.dumps(doc))
    line = _one_error_line(run("--repo", repo, "manufacturer", "enrol", "121D", edited), 1)
    assert "version: found 2, expected 1" in line
    enrolled = ok("--repo", repo, "manufacturer", "enrol", "121D", bundle, "--json")
    assert json.loads(enrolled.stdout)["done"] == "enrolled 121D (mfr-121D v1)"
    again = ok("--repo", repo, "manufacturer", "enrol", "121D", bundle)
    assert "enrolled already" in again.stderr
    # A targets ceremony no longer carries cfl/* changes: the routine command does it online.
    line = _one_error_line(
        run(
            "--repo",
            repo,
            "ceremony",
            "start",
            "targets",
            "--cpl",
            cpl,
            "--out",
            tmp_path / "p.json",
        ),
        2,
    )
    assert "cfl-provider" in line
    # Rotate the online key directly (the development targets key is at hand).
    ok("keygen", tmp_path / "p2.pem", "--no-encrypt")
    status = json.loads(ok("--repo", repo, "status", "--json").stdout)
    old = status["keys"]["cfl-provider"]["keys"][0]["keyid"]
    ok(
        "--repo", repo, "provider", "rotate-key", "--add", tmp_path / "p2.pub.pem",
        "--uri", f"file2:{tmp_path / 'p2.pem'}", "--remove", old[:8],
    )  # fmt: skip
    status = json.loads(ok("--repo", repo, "status", "--json").stdout)
    assert [k["keyid"] for k in status["keys"]["cfl-provider"]["keys"]] != [old]
    # The same command again (a re-run after a crash past its commit) succeeds and changes nothing.
    head = (repo / "state" / "head.json").read_bytes()
    again = ok(
        "--repo", repo, "provider", "rotate-key", "--add", tmp_path / "p2.pub.pem",
        "--uri", f"file2:{tmp_path / 'p2.pem'}", "--remove", old[:8], "--json",
    )  # fmt: skip
    assert json.loads(again.stdout)["already"] is True
    assert "has these keys already" in again.stderr
    assert (repo / "state" / "head.json").read_bytes() == head
    # A different URI for the key is not the same rotation: refused as before.
    elsewhere = run(
        "--repo", repo, "provider", "rotate-key", "--add", tmp_path / "p2.pub.pem",
        "--uri", "file2:/elsewhere.pem", "--remove", old[:8],
    )  # fmt: skip
    line = _one_error_line(elsewhere, 1)
    assert "matching 0 cfl-provider key(s)" in line
    ok("--repo", repo, "publish")
    root = repo / "public" / "metadata" / "1.root.json"
    ok("verify", repo / "public", "--root", root)
    line = _one_error_line(
        run("--repo", repo, "provider", "rotate-key", "--add", tmp_path / "p2.pub.pem"), 2
    )
    assert "--uri: found 0, expected one per --add (1)" in line
