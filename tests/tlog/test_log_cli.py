"""The log commands as operators, auditors, witnesses and suppliers run them (installed scripts in
subprocesses): `cfl-repo log key`, `cfl-repo log add-cosignatures`, `cfl log verify`,
`cfl witness init|cosign`, `cfl log witnesses`, and `cfl refresh` refusing an inconsistent log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from repo_tool.site.pages import render_site
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library
from tests.factory import LibraryFactory, standard_library
from tests.repo.test_repo_cli import run
from tests.tlog.test_log_end_to_end import _grow, _republish_without

CFL = Path(sys.executable).with_name("cfl")


def cfl(*args: str | Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `cfl` script; CFL_HOME from the caller's environment never leaks in."""
    command = [str(CFL), *(["--home", str(home)] if home else []), *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"} | {"COLUMNS": "200"}
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc = json.loads(ok(result).stdout)
    assert isinstance(doc, dict) and doc["schema_version"] == 1
    return doc


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def _witness_cosigns(url: str, vkey: str, tmp_path: Path) -> tuple[str, Path]:
    """A witness w.test/1 made for the log ``vkey`` cosigns the checkpoint served at ``url``:
    its vkey and the cosigned checkpoint file."""
    witness_dir = tmp_path / "witness"
    witness = ok(
        cfl("witness", "init", "--state", witness_dir, "--name", "w.test/1", "--log-vkey", vkey)
    ).stdout.strip()
    cosigned = tmp_path / "cosigned.txt"
    ok(cfl("witness", "cosign", url, "--state", witness_dir, "--out", cosigned))
    return witness, cosigned


@pytest.fixture
def published(tmp_path: Path) -> tuple[LibraryFactory, str]:
    factory, _ = standard_library(tmp_path)
    return factory, factory.out.as_uri()


def test_log_key_verify_witness_and_cosignatures_round_trip(
    published: tuple[LibraryFactory, str], tmp_path: Path
) -> None:
    factory, url = published
    repo = factory.repo.path
    vkey = run("--repo", repo, "log", "key").stdout.strip()
    assert factory.repo.config.log is not None and vkey == factory.repo.config.log.vkey

    doc = as_json(cfl("log", "verify", url, "--vkey", vkey, "--json"))
    assert doc["ok"] is True and doc["size"] == 7 and doc["images_checked"] == 3

    witness, cosigned = _witness_cosigns(url, vkey, tmp_path)
    added = run("--repo", repo, "log", "add-cosignatures", cosigned, "--witness", witness)
    assert added.returncode == 0, added.stderr
    assert run("--repo", repo, "refresh", "--force").returncode == 0
    assert run("--repo", repo, "publish", "--no-site").returncode == 0
    doc = as_json(cfl("log", "verify", url, "--witness", witness, "--json"))
    assert doc["cosigned_by"] == ["w.test/1"]


def test_cosignatures_added_are_served_by_the_next_publish(
    published: tuple[LibraryFactory, str], tmp_path: Path
) -> None:
    """docs/transparency.md's steps: publish, a witness cosigns, add-cosignatures, publish. The
    second publish changed no commit, and used to replay the first's outcome (repo_tool/publish/
    unchanged.py) without serving the cosignature: every home requiring the witness refused."""
    factory, url = published
    repo = factory.repo.path
    assert run("--repo", repo, "publish", "--no-site").returncode == 0  # records its outcome
    vkey = run("--repo", repo, "log", "key").stdout.strip()
    witness, cosigned = _witness_cosigns(url, vkey, tmp_path)
    ok(run("--repo", repo, "log", "add-cosignatures", cosigned, "--witness", witness))
    ok(run("--repo", repo, "publish", "--no-site"))
    assert b"w.test/1" in (factory.out / "log" / "checkpoint").read_bytes()
    doc = as_json(cfl("log", "verify", url, "--witness", witness, "--json"))
    assert doc["cosigned_by"] == ["w.test/1"]


def test_log_verify_reports_a_republished_log_without_an_event(
    published: tuple[LibraryFactory, str], tmp_path: Path
) -> None:
    factory, url = published
    home = tmp_path / "home"
    ok(cfl("init", url, "--root", _root_file(factory, tmp_path), home=home))
    ok(cfl("refresh", home=home))
    _grow(factory)
    _republish_without(factory, drop=5)

    audit = cfl("log", "verify", url)
    assert audit.returncode == 1
    assert "no deposit event in the log" in audit.stderr
    assert len(errors(audit)) == 1 and "Traceback" not in audit.stderr

    refresh = cfl("refresh", home=home)
    assert refresh.returncode == 1, refresh.stderr
    assert "INCONSISTENT" in errors(refresh)[0]
    assert "SECAS" in refresh.stderr and "Traceback" not in refresh.stderr
    assert list((home / "log" / "evidence").iterdir())


def test_a_home_with_kept_tiles_still_refuses_a_rewritten_log(
    published: tuple[LibraryFactory, str], tmp_path: Path
) -> None:
    """After two refreshes the home keeps the log's partial tiles and reads only appended bytes;
    a log rewritten under it must still be INCONSISTENT (not hidden by, nor blamed on, the copies)."""
    factory, url = published
    home = tmp_path / "home"
    ok(cfl("init", url, "--root", _root_file(factory, tmp_path), home=home))
    ok(cfl("refresh", home=home))
    _grow(factory)
    factory.publish()
    ok(cfl("refresh", home=home))  # a consistency proof: the hash tiles are kept now
    kept = sorted(p.name for p in (home / "log" / "tiles").iterdir())
    assert kept and all(name.split("-")[0] in ("entries", "0") for name in kept), kept
    _republish_without(factory, drop=5)
    refresh = cfl("refresh", home=home)
    assert refresh.returncode == 1, refresh.stderr
    assert "INCONSISTENT" in errors(refresh)[0] and "Traceback" not in refresh.stderr
    assert list((home / "log" / "evidence").iterdir())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["log", "verify", "URL", "--vkey", "not-a-vkey"], 2, "--vkey: vkey: found"),
        (["witness", "init", "--state", "W", "--name", "a b", "--log-vkey", "x+y+z"], 2, "vkey"),
        (["witness", "cosign", "URL", "--state", "EMPTY"], 2, "not a witness"),
    ],
    ids=["bad-vkey", "bad-witness-vkey", "no-witness-state"],
)
def test_bad_input_is_one_error_line(
    published: tuple[LibraryFactory, str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    _, url = published
    argv = [url if a == "URL" else str(tmp_path / a) if a in ("W", "EMPTY") else a for a in args]
    done = cfl(*argv)
    assert done.returncode == code, done.stderr
    assert len(errors(done)) == 1 and message in errors(done)[0], done.stderr
    assert "Traceback" not in done.stderr


def test_home_can_require_witness_cosignatures(
    published: tuple[LibraryFactory, str], tmp_path: Path
) -> None:
    factory, url = published
    home = tmp_path / "home"
    ok(cfl("init", url, "--root", _root_file(factory, tmp_path), home=home))
    assert factory.repo.config.log is not None
    witness = ok(
        cfl(
            "witness", "init", "--state", tmp_path / "w", "--name", "w.test/1",
            "--log-vkey", factory.repo.config.log.vkey,
        )
    ).stdout.strip()  # fmt: skip
    ok(cfl("log", "witnesses", "--witness", witness, "--threshold", "1", home=home))
    refused = cfl("refresh", home=home)
    assert refused.returncode == 1 and "expected at least 1" in errors(refused)[0]
    too_many = cfl("log", "witnesses", "--witness", witness, "--threshold", "2", home=home)
    assert too_many.returncode == 2 and "threshold: found 2, expected 0..1" in too_many.stderr


def test_trust_page_shows_the_log_vkey(published: tuple[LibraryFactory, str]) -> None:
    factory, _ = published
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now, check_blobs=False
    )
    pages = dict(render_site(library, generated=factory.now))
    assert factory.repo.config.log is not None
    assert factory.repo.config.log.vkey.encode() in pages["trust.html"]


def _root_file(factory: LibraryFactory, tmp_path: Path) -> Path:
    path = tmp_path / "root.json"
    path.write_bytes(factory.root_bytes)
    return path
