"""The `cfl` start-up budget: what a check imports, and that what it leaves out is never needed.

`cfl check` must beat one csv.DictReader pass end to end (bench/bench_client_check.py), so its
start-up is part of the target. These tests pin the modules the real process loads, so a new
top-level import of a heavy library fails here instead of slowing every supplier's check silently.
Each runs a fresh interpreter: the block in client/cli/entry.py must never touch the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_factories import device_id, write_estate

from factory import standard_library

REPO_ROOT = Path(__file__).resolve().parents[2]

# What `cfl check` never uses: signing back-ends (boto3 for AWS KMS, python-pkcs11 for HSMs),
# release-notes crypto (jwcrypto, x509 certificates), the --report template engine, and the
# download path with its transparency-log verifier.
NOT_ON_THE_CHECK_PATH = (
    "boto3",
    "botocore",
    "s3transfer",
    "pkcs11",
    "jwcrypto",
    "cryptography.x509",
    "jinja2",
    "client.fetch.retrieval",
    "client.log.transparency",
    "metadata_templates.tlog",
)

# Writes the names of the modules loaded when the process exits, then runs the console script's
# own entry point with the given arguments.
_RECORDING_ENTRY = """
import atexit, json, os, sys
def _record():
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    with open(os.environ["CFL_TEST_MODULES_OUT"], "w") as out:
        json.dump(loaded, out)
atexit.register(_record)
sys.argv = ["cfl", *sys.argv[1:]]
from client.cli.entry import main
main()
"""


def _run_cfl(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"}
    env["CFL_TEST_MODULES_OUT"] = str(out)
    done = subprocess.run(
        [sys.executable, "-c", _RECORDING_ENTRY, *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    return done, set(json.loads(out.read_text()))


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_the_console_script_is_the_entry_point() -> None:
    script = Path(sys.executable).with_name("cfl")
    if not script.is_file():
        pytest.fail(f"the cfl console script is not installed next to {sys.executable}")
    assert "from client.cli.entry import main" in script.read_text()


def test_cfl_check_verifies_without_loading_what_it_never_uses(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path / "lib")
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    home = str(tmp_path / "home")
    init, _ = _run_cfl(tmp_path, "--home", home, "init", factory.out.as_uri(), "--root", str(root))
    assert init.returncode == 0, init.stderr
    estate = write_estate(
        tmp_path / "estate.csv", [(device_id(1), "ESME", "121D", "010A030B", "1111", "00000001")]
    )

    check, loaded = _run_cfl(tmp_path, "--home", home, "check", str(estate), "--json")

    assert check.returncode == 0, check.stderr
    doc = json.loads(check.stdout)
    assert doc["devices"] == 1
    assert doc["groups"][0]["applicable"], "the check verified and matched the library's images"
    assert {"tuf.ngclient", "securesystemslib.signer"} <= loaded  # verification did happen
    unexpected = sorted(
        name
        for name in loaded
        if any(name == top or name.startswith(f"{top}.") for top in NOT_ON_THE_CHECK_PATH)
    )
    assert unexpected == []


def test_the_blocked_packages_are_ones_securesystemslib_treats_as_optional() -> None:
    # The block makes the process look like an install without boto3 and python-pkcs11:
    # securesystemslib records each as missing (instead of failing) and still verifies signatures.
    done = _python(
        "from client.cli.entry import block_unused_imports\n"
        "blocked = block_unused_imports()\n"
        "from securesystemslib.signer import _aws_signer, _hsm_signer, CryptoSigner\n"
        "signer = CryptoSigner.generate_ed25519()\n"
        "signature = signer.sign(b'data')\n"
        "signer.public_key.verify_signature(signature, b'data')\n"
        "print(blocked, bool(_aws_signer.AWS_IMPORT_ERROR), bool(_hsm_signer.PKCS11_IMPORT_ERROR))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['boto3',", "'pkcs11']", "True", "True"]


def test_no_client_module_needs_a_blocked_package() -> None:
    # Every module of the client package (commands import some of them lazily) imports cleanly
    # with the block in place, so no `cfl` command can need boto3 or python-pkcs11.
    done = _python(
        "import importlib, pkgutil\n"
        "from client.cli.entry import block_unused_imports\n"
        "block_unused_imports()\n"
        "import client\n"
        "names = [m.name for m in pkgutil.walk_packages(client.__path__, 'client.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 25


def test_the_block_leaves_imported_packages_alone() -> None:
    done = _python(
        "import json\n"
        "from client.cli.entry import block_unused_imports\n"
        "print(block_unused_imports(['json', 'not_a_package_cfl_knows']))\n"
        "import json\n"
        "print(json.dumps([1]))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['not_a_package_cfl_knows']", "[1]"]
