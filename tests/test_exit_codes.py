"""One exit-code rule across both command lines, checked command by command.

2 (EXIT_USAGE): the command line is wrong: a file it names is missing, unreadable or not the kind of
file the option takes (a key, a certificate), an identifier not in its form, a number outside its
range, an empty reason. 1 (EXIT_FAILURE): a well-formed request was refused: data that fails its
checks (a CPL, an image, an estate, metadata), or a name the library does not hold.

Every case must print exactly one error line, no traceback, and leave the repository unchanged.
The world is built with the real command lines and the real clock, as an operator would.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from metadata_templates.errors import EXIT_FAILURE, EXIT_USAGE

BIN = Path(sys.executable).parent
CFL_REPO = str(BIN / "cfl-repo")
CFL = str(BIN / "cfl")
ACME_KEY = ("--key", "acme.pub.pem")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CFL_REPO", "CFL_HOME", "CFL_KEY_PASSPHRASE", "CFL_HSM_PIN")
    }
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env | {"COLUMNS": "200"},
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class World:
    """A published library made by `cfl-repo`, a client home trusting it, and some bad files."""

    folder: Path

    def state(self) -> tuple[bytes, bytes]:
        """What every refused command must leave as it was."""
        repo = self.folder / "R"
        return (repo / "state" / "head.json").read_bytes(), (repo / "events.jsonl").read_bytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("exit-codes")
    for args in (
        [CFL_REPO, "demo-data", "."],
        [CFL_REPO, "--repo", "R", "init", "--dev-keys"],
        [CFL_REPO, "--repo", "R", "cpl", "import", "cpl.csv"],
        [CFL_REPO, "keygen", "acme.pem", "--no-encrypt"],
        [CFL_REPO, "--repo", "R", "manufacturer", "add", "121D", "--name", "Acme", *ACME_KEY],
        [CFL_REPO, "--repo", "R", "publish"],
        [CFL, "--home", "H", "init", "R/public", "--root", "R/public/metadata/1.root.json"],
    ):
        done = _run(args, folder)
        assert done.returncode == 0, (args, done.stderr)
    (folder / "junk.txt").write_text("junk\n")
    return World(folder)


# (command line as a shell would split it, exit code, text the one error line must hold)
CASES: dict[str, tuple[str, int, str]] = {
    # --- cfl-repo: usage and configuration errors -----------------------------------------------
    "supplier-add-entity-not-hex": (
        "cfl-repo --repo R supplier add XYZ --name A --role IS --cert junk.txt",
        EXIT_USAGE,
        "ENTITY_ID: found 'XYZ', expected 16 hex digits",
    ),
    "supplier-add-cert-not-pem": (
        "cfl-repo --repo R supplier add 0011223344556677 --name A --role IS --cert junk.txt",
        EXIT_USAGE,
        "--cert: found '5 bytes that are not a PEM certificate'",
    ),
    "supplier-add-cert-missing": (
        "cfl-repo --repo R supplier add 0011223344556677 --name A --role IS --cert missing.pem",
        EXIT_USAGE,
        "--cert missing.pem: cannot read",
    ),
    "supplier-revoke-empty-reason": (
        "cfl-repo --repo R supplier revoke 0011223344556677 --reason ' '",
        EXIT_USAGE,
        "--reason: found ' '",
    ),
    "supplier-revoke-entity-not-hex": (
        "cfl-repo --repo R supplier revoke XYZ --reason left",
        EXIT_USAGE,
        "ENTITY_ID: found 'XYZ'",
    ),
    "submit-key-not-a-key": (
        "cfl-repo submit images/121D-ESME-010A030B-01010000.ota --manufacturer 121D --key junk.txt --cpl-entry CPL-0001 --reason compliance --from R/public --out b.cflb",
        EXIT_USAGE,
        "junk.txt: cannot read the private key",
    ),
    "submit-key-missing": (
        "cfl-repo submit images/121D-ESME-010A030B-01010000.ota --manufacturer 121D --key missing.pem --cpl-entry CPL-0001 --reason compliance --from R/public --out b.cflb",
        EXIT_USAGE,
        "'missing.pem' does not exist",
    ),
    "submit-manufacturer-not-hex": (
        "cfl-repo submit images/121D-ESME-010A030B-01010000.ota --manufacturer XYZ --key acme.pem --cpl-entry CPL-0001 --reason compliance --from R/public --out b.cflb",
        EXIT_USAGE,
        "--manufacturer: found 'XYZ', expected 4 hex digits",
    ),
    "ceremony-start-cpl-missing": (
        "cfl-repo --repo R ceremony start targets --out p.json --cpl missing.csv",
        EXIT_USAGE,
        "CPL file missing.csv: cannot read",
    ),
    "ceremony-start-threshold-above-keys": (
        "cfl-repo --repo R ceremony start root --out p.json --threshold 9",
        EXIT_USAGE,
        "--threshold: found 9 with 3 root key(s) left",
    ),
    "ceremony-start-threshold-zero": (
        "cfl-repo --repo R ceremony start root --out p.json --threshold 0",
        EXIT_USAGE,
        "--threshold",
    ),
    "ceremony-sign-proposal-missing": (
        "cfl-repo ceremony sign missing.json --signer file2:acme.pem",
        EXIT_USAGE,
        "PROPOSAL missing.json: cannot read",
    ),
    "cpl-import-missing": (
        "cfl-repo --repo R cpl import missing.csv",
        EXIT_USAGE,
        "'missing.csv' does not exist",
    ),
    "manufacturer-add-key-not-a-key": (
        "cfl-repo --repo R manufacturer add 3F01 --name B --key junk.txt",
        EXIT_USAGE,
        "junk.txt: found no PEM public key",
    ),
    "manufacturer-add-threshold-above-keys": (
        "cfl-repo --repo R manufacturer add 3F01 --name B --key acme.pub.pem --threshold 2",
        EXIT_USAGE,
        "--threshold: found 2",
    ),
    "manufacturer-rotate-nothing": (
        "cfl-repo --repo R manufacturer rotate-key 121D",
        EXIT_USAGE,
        "found nothing to change",
    ),
    "manufacturer-rotate-threshold-above-keys": (
        "cfl-repo --repo R manufacturer rotate-key 121D --threshold 3",
        EXIT_USAGE,
        "--threshold: found 3 with 1 key(s) left",
    ),
    "withdraw-empty-reason": (
        "cfl-repo --repo R withdraw 121D/x.ota --reason ' '",
        EXIT_USAGE,
        "--reason: found an empty reason",
    ),
    "notes-custodian-key-not-a-key": (
        "cfl-repo --repo R notes custodian --public-key junk.txt",
        EXIT_USAGE,
        "--public-key: found 'unreadable PEM'",
    ),
    "rotate-keys-threshold-above-keys": (
        "cfl-repo --repo R rotate-keys root --threshold 9",
        EXIT_USAGE,
        "--threshold: found 9",
    ),
    "audit-log-missing": (
        "cfl-repo --repo R audit missing.log",
        EXIT_USAGE,
        "ACCESS_LOG: found 'missing.log'",
    ),
    "verify-root-missing": (
        "cfl-repo verify R/public --root missing.json",
        EXIT_USAGE,
        "'missing.json' does not exist",
    ),
    "no-repository": (
        "cfl-repo --repo nowhere status",
        EXIT_USAGE,
        "nowhere/cfl-repo.json: not found",
    ),
    # --- cfl-repo: well-formed requests that are refused ---------------------------------------
    "supplier-revoke-unknown": (
        "cfl-repo --repo R supplier revoke 0011223344556677 --reason left",
        EXIT_FAILURE,
        "ENTITY_ID: found '0011223344556677', expected a registered Entity ID",
    ),
    "submit-image-not-ota": (
        "cfl-repo submit junk.txt --manufacturer 121D --key acme.pem --cpl-entry CPL-0001 --reason compliance --from R/public --root R/public/metadata/1.root.json --out b.cflb",
        EXIT_FAILURE,
        "file length: found 5",
    ),
    "ceremony-start-cpl-refused": (
        "cfl-repo --repo R ceremony start targets --out p.json --cpl junk.txt",
        EXIT_FAILURE,
        "missing required column(s)",
    ),
    "cpl-import-refused": (
        "cfl-repo --repo R cpl import junk.txt",
        EXIT_FAILURE,
        "missing required column(s)",
    ),
    "manufacturer-rotate-unregistered": (
        "cfl-repo --repo R manufacturer rotate-key 3F01 --add acme.pub.pem",
        EXIT_FAILURE,
        "expected a registered manufacturer",
    ),
    "withdraw-unknown-target": (
        "cfl-repo --repo R withdraw 121D/x.ota --reason recalled",
        EXIT_FAILURE,
        "TARGET: found '121D/x.ota'",
    ),
    "verify-root-not-metadata": (
        "cfl-repo verify R/public --root junk.txt",
        EXIT_FAILURE,
        "failed verification",
    ),
    # --- cfl: usage and configuration errors ----------------------------------------------------
    "init-root-missing": (
        "cfl --home H2 init R/public --root missing.json",
        EXIT_USAGE,
        "'missing.json' does not exist",
    ),
    "init-url-scheme": (
        "cfl --home H2 init ftp://x --root R/public/metadata/1.root.json",
        EXIT_USAGE,
        "repository URL: found 'ftp://x'",
    ),
    "init-notes-key-not-a-key": (
        "cfl --home H2 init R/public --root R/public/metadata/1.root.json --notes-key junk.txt",
        EXIT_USAGE,
        "junk.txt: found 'unreadable or wrong passphrase'",
    ),
    "init-deadline-zero": (
        "cfl --home H2 init R/public --root R/public/metadata/1.root.json --deadline 0",
        EXIT_USAGE,
        "--deadline",
    ),
    "list-manufacturer-not-hex": (
        "cfl --home H list --manufacturer XYZ",
        EXIT_USAGE,
        "--manufacturer: found 'XYZ', expected 4 hex digits",
    ),
    "check-estate-missing": (
        "cfl --home H check missing.csv",
        EXIT_USAGE,
        "'missing.csv' does not exist",
    ),
    "check-phases-not-percentages": (
        "cfl --home H check estate.csv --devices-out d.csv --phases x",
        EXIT_USAGE,
        "--phases: found 'x'",
    ),
    "refresh-no-home": (
        "cfl --home nowhere refresh",
        EXIT_USAGE,
        "no client home at nowhere",
    ),
    "log-witnesses-threshold-above-witnesses": (
        "cfl --home H log witnesses --threshold 2",
        EXIT_USAGE,
        "--threshold",
    ),
    # --- cfl: well-formed requests that are refused ---------------------------------------------
    "init-root-not-metadata": (
        "cfl --home H2 init R/public --root junk.txt",
        EXIT_FAILURE,
        "root file given: not TUF metadata",
    ),
    "check-estate-refused": (
        "cfl --home H check junk.txt",
        EXIT_FAILURE,
        "estate header: found ['junk']",
    ),
    "download-unknown-target": (
        "cfl --home H download 121D/x.ota --out o",
        EXIT_FAILURE,
        "TARGET: found '121D/x.ota'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_each_mistake_gets_its_exit_code_one_error_line_and_changes_nothing(
    world: World, case: str
) -> None:
    line, code, text = CASES[case]
    program, *args = shlex.split(line)
    before = world.state()
    done = _run([str(BIN / program), *args], world.folder)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    # Our handler prints `error:`; click's own usage errors print `Error:` after the usage line.
    lines = [line for line in done.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert text in lines[0], done.stderr
    assert world.state() == before
    # A refused `cfl init` leaves no configuration (its lock file may stay; a re-run works).
    assert not (world.folder / "H2" / "config.json").exists()
