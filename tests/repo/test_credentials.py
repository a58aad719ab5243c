"""An unattended run finds the key passphrase in a systemd credential (LoadCredential=), so no unit
file or environment holds it; the environment variable still wins when an operator sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metadata_templates.errors import ConfigurationError
from repo_tool.signing.secrets import (
    CREDENTIALS_ENV,
    HSM_PIN_ENV,
    PASSPHRASE_ENV,
    environment_secret,
)

CFL_REPO = str(Path(sys.executable).parent / "cfl-repo")
PASSPHRASE = "correct horse battery staple"


def credentials(tmp_path: Path, **files: bytes) -> Path:
    folder = tmp_path / "credentials"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name.replace("_", "-")).write_bytes(data)
    return folder


def test_the_credential_is_read_when_the_variable_is_unset(tmp_path: Path) -> None:
    folder = credentials(tmp_path, cfl_key_passphrase=b"s3cret\n", cfl_hsm_pin=b"1234")
    env = {CREDENTIALS_ENV: str(folder)}
    assert environment_secret(PASSPHRASE_ENV, env) == "s3cret"  # as $(cat FILE) would give
    assert environment_secret(HSM_PIN_ENV, env) == "1234"


def test_the_variable_wins_over_the_credential(tmp_path: Path) -> None:
    folder = credentials(tmp_path, cfl_key_passphrase=b"from the credential")
    env = {CREDENTIALS_ENV: str(folder), PASSPHRASE_ENV: "from the operator"}
    assert environment_secret(PASSPHRASE_ENV, env) == "from the operator"


def test_no_variable_and_no_credential_is_none(tmp_path: Path) -> None:
    assert environment_secret(PASSPHRASE_ENV, {}) is None
    assert environment_secret(PASSPHRASE_ENV, {CREDENTIALS_ENV: str(tmp_path)}) is None
    # Only the two names cfl-repo asks for; another variable never reads a credential file.
    folder = credentials(tmp_path, HOME=b"x")
    assert environment_secret("HOME", {CREDENTIALS_ENV: str(folder)}) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x" * (64 * 1024 + 1), "size: found more than"),
        (b"\xff\xfe not text", "not UTF-8"),
        (None, "cannot read"),
    ],
    ids=["oversized", "not-utf8", "a-folder"],
)
def test_a_credential_that_is_no_secret_is_a_configuration_error(
    tmp_path: Path, data: bytes | None, message: str
) -> None:
    folder = tmp_path / "credentials"
    folder.mkdir()
    path = folder / "cfl-key-passphrase"
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    with pytest.raises(ConfigurationError, match=message):
        environment_secret(PASSPHRASE_ENV, {CREDENTIALS_ENV: str(folder)})


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CFL_REPO", PASSPHRASE_ENV, HSM_PIN_ENV, CREDENTIALS_ENV)
    }
    return subprocess.run(
        [CFL_REPO, *args],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_refresh_signs_with_encrypted_keys_unlocked_by_the_credential(tmp_path: Path) -> None:
    keys = []
    for role in ("root", "targets", "snapshot", "timestamp"):
        made = _run(["keygen", f"{role}.pem"], tmp_path, **{PASSPHRASE_ENV: PASSPHRASE})
        assert made.returncode == 0, made.stderr
        keys += ["--key", role, f"{role}.pub.pem", f"encfile:{tmp_path / role}.pem"]
    init = _run(
        ["--repo", "R", "init", "--root-threshold", "1", *keys],
        tmp_path,
        **{PASSPHRASE_ENV: PASSPHRASE},
    )
    assert init.returncode == 0, init.stderr
    locked = _run(["--repo", "R", "refresh", "--force"], tmp_path)
    assert locked.returncode == 2
    assert [line for line in locked.stderr.splitlines() if line.startswith("error:")] != []
    folder = credentials(tmp_path, cfl_key_passphrase=f"{PASSPHRASE}\n".encode())
    done = _run(["--repo", "R", "refresh", "--force"], tmp_path, **{CREDENTIALS_ENV: str(folder)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "R" / "public" / "metadata" / "timestamp.json").is_file()
    wrong = credentials(tmp_path / "w", cfl_key_passphrase=b"wrong")
    refused = _run(["--repo", "R", "refresh", "--force"], tmp_path, **{CREDENTIALS_ENV: str(wrong)})
    assert refused.returncode == 2, refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.startswith("error:")]) == 1
    assert "Traceback" not in refused.stderr
