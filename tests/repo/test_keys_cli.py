"""`cfl-repo ceremony` and the manufacturer key commands through the real console script: exit codes,
JSON on stdout, one error line for every bad input, and nothing changed by a refused command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFL_")}
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def ok(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = run(*args, cwd=cwd)
    assert done.returncode == 0, (args, done.stderr)
    return done


def refused(code: int, *args: str | Path, cwd: Path, says: str) -> str:
    """The command exits ``code`` with one `error:` line (and at most a `hint:`), no traceback."""
    done = run(*args, cwd=cwd)
    assert done.returncode == code, (args, done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development library: three root keys (2 of 3), published."""
    cwd = tmp_path_factory.mktemp("keys-cli")
    ok("--repo", "R", "init", "--dev-keys", cwd=cwd)
    ok("--repo", "R", "publish", cwd=cwd)
    ok("keygen", "--no-encrypt", "carol.pem", cwd=cwd)
    return cwd


def head(cwd: Path) -> bytes:
    return (cwd / "R" / "state" / "head.json").read_bytes()


def test_root_ceremony_through_the_command_line(library: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "w"
    # each test works on its own copy; dev key URIs are relative to the repository
    subprocess.run(["cp", "-a", str(library), str(cwd)], check=True)
    start = json.loads(
        ok(
            "--repo",
            "R",
            "ceremony",
            "start",
            "root",
            "--add-key",
            "carol.pub.pem",
            "--threshold",
            "3",
            "--out",
            "root-v2.json",
            "--json",
            cwd=cwd,
        ).stdout
    )
    assert start["schema_version"] == 1 and start["version"] == 2
    assert "root: threshold 2 -> 3" in start["changes"]
    before = head(cwd)

    refused(
        2,
        "ceremony",
        "sign",
        "root-v2.json",
        "--signer",
        "file2:carol.pem",
        cwd=cwd,
        says="stdin not a terminal",
    )
    for key in ("R/keys/DEV-ONLY-root-1.pem", "R/keys/DEV-ONLY-root-2.pem"):
        signed = json.loads(
            ok(
                "ceremony",
                "sign",
                "root-v2.json",
                "--signer",
                f"file2:{key}",
                "--yes",
                "--json",
                "--against",
                "R/public/metadata/1.root.json",
                cwd=cwd,
            ).stdout
        )
        assert Path(cwd / signed["signature"]).is_file()
    refused(
        1,
        "--repo",
        "R",
        "ceremony",
        "finish",
        "root-v2.json",
        cwd=cwd,
        says="found 2 valid by the new root's keys",
    )
    assert head(cwd) == before
    ok("ceremony", "sign", "root-v2.json", "--signer", "file2:carol.pem", "--yes", cwd=cwd)
    done = json.loads(
        ok("--repo", "R", "ceremony", "finish", "root-v2.json", "--json", cwd=cwd).stdout
    )
    assert (done["version"], done["already_finished"], len(done["signatures"])) == (2, False, 3)
    again = json.loads(
        ok("--repo", "R", "ceremony", "finish", "root-v2.json", "--json", cwd=cwd).stdout
    )
    assert again["already_finished"] is True
    ok("--repo", "R", "publish", cwd=cwd)
    ok("verify", "R/public", "--root", "R/public/metadata/1.root.json", cwd=cwd)
    status = json.loads(ok("--repo", "R", "status", "--json", cwd=cwd).stdout)
    assert sorted(k["location"] for k in status["keys"]["root"]["keys"]) == [
        "file2",
        "file2",
        "file2",
        "offline",
    ]
    assert status["keys"]["root"]["threshold"] == 3


@pytest.mark.parametrize(
    ("code", "args", "says"),
    [
        (
            2,
            (
                "--repo",
                "R",
                "ceremony",
                "start",
                "targets",
                "--add-key",
                "carol.pub.pem",
                "--out",
                "t.json",
            ),
            "expected them with `root`",
        ),
        (2, ("--repo", "R", "ceremony", "start", "root", "--out", "exists.json"), "exists already"),
        (
            1,
            ("--repo", "R", "ceremony", "start", "root", "--remove-key", "ffff", "--out", "r.json"),
            "matching 0 root key(s)",
        ),
        (
            2,  # a number out of its range is a usage error, as in `rotate-keys --threshold`
            ("--repo", "R", "ceremony", "start", "root", "--threshold", "4", "--out", "r.json"),
            "--threshold: found 4 with 3 root key(s) left",
        ),
        (
            2,  # a file that is not a key is a usage error (issue 9), like `init --key`
            (
                "--repo",
                "R",
                "ceremony",
                "start",
                "root",
                "--add-key",
                "junk.txt",
                "--out",
                "r.json",
            ),
            "found no PEM public key",
        ),
        (
            2,
            (
                "--repo",
                "R",
                "ceremony",
                "start",
                "root",
                "--add-key",
                "carol.pub.pem",
                "--uri",
                "a",
                "--uri",
                "b",
                "--out",
                "r.json",
            ),
            "expected one per --add-key",
        ),
        (
            2,
            ("ceremony", "sign", "missing.json", "--signer", "file2:carol.pem", "--yes"),
            "cannot read",
        ),
        (
            1,
            ("ceremony", "sign", "junk.txt", "--signer", "file2:carol.pem", "--yes"),
            "found no JSON",
        ),
        (
            1,
            ("ceremony", "sign", "exists.json", "--signer", "file2:carol.pem", "--yes"),
            "--signer: found key",
        ),
        (
            2,
            ("ceremony", "sign", "exists.json", "--signer", "hsm:", "--yes"),
            "--public-key: found none",
        ),
        (
            1,
            (
                "ceremony",
                "sign",
                "exists.json",
                "--signer",
                "file2:R/keys/DEV-ONLY-root-1.pem",
                "--yes",
                "--against",
                "R/public/metadata/1.snapshot.json",
            ),
            "expected root",
        ),
        (
            1,
            (
                "ceremony",
                "sign",
                "exists.json",
                "--signer",
                "file2:R/keys/DEV-ONLY-root-1.pem",
                "--yes",
                "--against",
                "junk.txt",
            ),
            "found no TUF metadata",
        ),
        (1, ("--repo", "R", "ceremony", "finish", "exists.json", "junk.txt"), "found no JSON"),
        (
            1,
            ("--repo", "R", "manufacturer", "rotate-key", "121D", "--add", "carol.pub.pem"),
            "expected a registered manufacturer",
        ),
        (2, ("--repo", "R", "manufacturer", "rotate-key", "12G", "--add", "carol.pub.pem"), "ID"),
        (
            1,
            ("--repo", "R", "manufacturer", "suspend", "121D", "--reason", "x"),
            "expected a registered manufacturer",
        ),
        (1, ("--repo", "R", "manufacturer", "resume", "121D", "--reason", "x"), "not suspended"),
    ],
    ids=[
        "targets-with-key-options",
        "proposal-exists",
        "unknown-key",
        "threshold-above-keys",
        "not-a-public-key",
        "uri-count",
        "proposal-missing",
        "proposal-not-json",
        "signer-not-eligible",
        "hsm-without-public-key",
        "against-not-root",
        "against-not-metadata",
        "signature-not-json",
        "rotate-unknown-manufacturer",
        "rotate-bad-id",
        "suspend-unknown-manufacturer",
        "resume-not-suspended",
    ],
)
def test_bad_input_is_refused_with_one_line(
    library: Path, tmp_path: Path, code: int, args: tuple[str, ...], says: str
) -> None:
    cwd = tmp_path / "w"
    subprocess.run(["cp", "-a", str(library), str(cwd)], check=True)
    (cwd / "junk.txt").write_text("not a key, not JSON\n")
    ok("--repo", "R", "ceremony", "start", "root", "--out", "exists.json", cwd=cwd)
    before = head(cwd)
    refused(code, *args, cwd=cwd, says=says)
    assert head(cwd) == before


def test_every_new_command_teaches_in_its_help(library: Path) -> None:
    for command in (
        ("ceremony",),
        ("ceremony", "start"),
        ("ceremony", "sign"),
        ("ceremony", "finish"),
        ("manufacturer", "rotate-key"),
        ("manufacturer", "retire-keys"),
        ("manufacturer", "suspend"),
        ("manufacturer", "resume"),
    ):
        text = ok(*command, "--help", cwd=library).stdout
        assert "Usage: cfl-repo" in text and len(text.splitlines()) > 5, command


def test_manufacturer_key_compromise_drill_through_the_command_line(tmp_path: Path) -> None:
    """The commands of operator.md section 10 and manufacturer.md, with demo data: after rotation
    the retired key's deposit is rejected, `submit --renew --key NEW.pem` is accepted, retire-keys
    drops the old key, and the published tree verifies throughout."""
    cwd = tmp_path
    ok("demo-data", "dd", cwd=cwd)
    declarations = json.loads((cwd / "dd" / "declarations.json").read_text())["images"]
    acme = [d for d in declarations if d["manufacturer_id"] == "121D"][:2]
    ok("--repo", "R", "init", "--dev-keys", "--root-keys", "1", "--root-threshold", "1", cwd=cwd)
    ok("--repo", "R", "cpl", "import", "dd/cpl.csv", cwd=cwd)
    ok("keygen", "--no-encrypt", "acme-1.pem", cwd=cwd)
    ok("keygen", "--no-encrypt", "acme-2.pem", cwd=cwd)
    ok(
        "--repo",
        "R",
        "manufacturer",
        "add",
        "121D",
        "--name",
        "Acme",
        "--key",
        "acme-1.pub.pem",
        cwd=cwd,
    )
    ok("--repo", "R", "publish", cwd=cwd)

    def submit(image: dict[str, object], key: str, out: str) -> None:
        entries = [arg for e in image["cpl_entries"] for arg in ("--cpl-entry", e)]  # type: ignore[attr-defined]
        advisories = [arg for a in image["advisories"] for arg in ("--advisory", a)]  # type: ignore[attr-defined]
        ok(
            "submit",
            f"dd/{image['image']}",
            "--manufacturer",
            "121D",
            "--key",
            key,
            *entries,
            "--reason",
            str(image["reason"]),
            *advisories,
            "--from",
            "R/public",
            "--root",
            "R/public/metadata/1.root.json",
            "--out",
            out,
            cwd=cwd,
        )

    submit(acme[0], "acme-1.pem", "first.cflb")
    ok("--repo", "R", "ingest", "first.cflb", cwd=cwd)
    ok("--repo", "R", "publish", cwd=cwd)
    old_keyid = json.loads(ok("--repo", "R", "status", "--json", cwd=cwd).stdout)["keys"][
        "mfr-121D"
    ]["keys"][0]["keyid"]

    ok("--repo", "R", "manufacturer", "suspend", "121D", "--reason", "key stolen", cwd=cwd)
    ok(
        "--repo",
        "R",
        "manufacturer",
        "rotate-key",
        "121D",
        "--add",
        "acme-2.pub.pem",
        "--remove",
        old_keyid[:8],
        cwd=cwd,
    )
    ok("--repo", "R", "publish", cwd=cwd)
    ok("verify", "R/public", "--root", "R/public/metadata/1.root.json", cwd=cwd)
    status = json.loads(ok("--repo", "R", "status", "--json", cwd=cwd).stdout)["keys"]["mfr-121D"]
    assert status["retiring"] == [old_keyid] and status["suspended"]["reason"] == "key stolen"

    # A deposit signed with the stolen key: `submit` still builds it (the published delegation keeps
    # the retiring key), the gateway rejects it.
    submit(acme[1], "acme-1.pem", "stolen.cflb")
    stolen = json.loads(run("--repo", "R", "ingest", "stolen.cflb", "--json", cwd=cwd).stdout)
    assert "threshold-not-met" in stolen["results"][0]["reasons"]
    assert "manufacturer-suspended" in stolen["results"][0]["reasons"]

    refused(
        1,
        "--repo",
        "R",
        "manufacturer",
        "retire-keys",
        "121D",
        cwd=cwd,
        says="found 0 signature(s) by the new keys",
    )
    ok(
        "submit",
        "--renew",
        "--manufacturer",
        "121D",
        "--key",
        "acme-2.pem",
        "--from",
        "R/public",
        "--root",
        "R/public/metadata/1.root.json",
        "--out",
        "renewal.cflb",
        cwd=cwd,
    )
    renewal = json.loads(ok("--repo", "R", "ingest", "renewal.cflb", "--json", cwd=cwd).stdout)
    assert renewal["results"][0]["status"] == "accepted"
    ok("--repo", "R", "manufacturer", "retire-keys", "121D", cwd=cwd)
    ok("--repo", "R", "manufacturer", "resume", "121D", "--reason", "keys rotated", cwd=cwd)
    ok("--repo", "R", "publish", cwd=cwd)
    ok("verify", "R/public", "--root", "R/public/metadata/1.root.json", cwd=cwd)

    submit(acme[1], "acme-2.pem", "second.cflb")
    second = json.loads(ok("--repo", "R", "ingest", "second.cflb", "--json", cwd=cwd).stdout)
    assert second["results"][0]["status"] == "accepted"
    ok("--repo", "R", "publish", cwd=cwd)
    verified = ok("verify", "R/public", "--root", "R/public/metadata/1.root.json", cwd=cwd)
    assert "2 image(s)" in verified.stderr + verified.stdout
