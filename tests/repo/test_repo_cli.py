"""The real `cfl-repo` console script, driven as an operator and a manufacturer would drive it.

One library is built through the command line per module (init, keygen, cpl import, manufacturer
add, publish, submit, ingest, publish); every test then works on its own copy of that directory,
which is possible because `init --dev-keys` records key paths relative to the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory import make_entry, make_image, mi_sha
from metadata_templates.locking import LockPolicy, exclusive_lock
from metadata_templates.naming import blob_name
from repo_tool.dev.demo_data import render_cpl_csv

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
PASSPHRASE = "correct horse battery staple"
INGEST_KEYS = {"bundle", "status", "target", "reasons", "messages"}


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # CFL_REPO would stand in for a missing --repo; the tests decide that themselves.
    base = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def ok(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = run(*args, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def tree_digest(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


@dataclass(frozen=True)
class Built:
    """The module's library and what the commands that built it printed."""

    base: Path
    init: subprocess.CompletedProcess[str]
    ingest: subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Lib:
    """A private copy of the built library."""

    base: Path

    @property
    def repo(self) -> Path:
        return self.base / "R"

    @property
    def out(self) -> Path:
        return self.repo / "public"

    @property
    def root(self) -> Path:
        return self.out / "metadata" / "1.root.json"

    @property
    def key(self) -> Path:
        return self.base / "maker" / "mfr-121D.pem"

    def cli(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run("--repo", self.repo, *args, env=env)

    def status(self) -> dict[str, object]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        doc: dict[str, object] = json.loads(done.stdout)
        return doc

    def submit(
        self,
        image: str,
        entry: str,
        out: str,
        *extra: str | Path,
        env: dict[str, str] | None = None,
    ) -> Path:
        """Sign a deposit of ``image`` with ``cfl-repo submit`` (``extra`` options appended)."""
        bundle = self.base / "outbox" / out
        ok(
            "submit",
            self.base / "images" / image,
            "--manufacturer",
            "121d",
            "--key",
            self.key,
            "--cpl-entry",
            entry,
            "--reason",
            "compliance",
            "--from",
            self.out,
            "--root",
            self.root,
            "--out",
            bundle,
            *extra,
            env={"CFL_KEY_PASSPHRASE": PASSPHRASE, **(env or {})},
        )
        return bundle


IMAGES = {"a2.ota": make_image("121D", 2), "a3.ota": make_image("121D", 3)}
ENTRIES = [
    make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(IMAGES["a2.ota"])),
    make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(IMAGES["a3.ota"])),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("cli")
    lib = Lib(base)
    (base / "images").mkdir()
    for name, data in IMAGES.items():
        (base / "images" / name).write_bytes(data)
    (base / "cpl.csv").write_bytes(render_cpl_csv(ENTRIES))

    init = lib.cli("init", "--dev-keys")
    assert init.returncode == 0, init.stderr
    ok("keygen", lib.key, "--type", "ecdsa", env={"CFL_KEY_PASSPHRASE": PASSPHRASE})
    ok("--repo", lib.repo, "cpl", "import", base / "cpl.csv")
    ok(
        "--repo",
        lib.repo,
        "manufacturer",
        "add",
        "121D",
        "--name",
        "Maker 121D",
        "--key",
        base / "maker" / "mfr-121D.pub.pem",
    )
    ok("--repo", lib.repo, "publish", "--no-site")
    bundle = lib.submit("a2.ota", "CPL-0002", "a2.cflb")
    ingest = lib.cli("ingest", "--json", bundle)
    assert ingest.returncode == 0, ingest.stderr
    ok("--repo", lib.repo, "publish", "--no-site")
    return Built(base, init, ingest)


@pytest.fixture
def lib(built: Built, tmp_path: Path) -> Lib:
    shutil.copytree(built.base, tmp_path / "lib", symlinks=True)
    return Lib(tmp_path / "lib")


def a2_target(lib: Lib) -> str:
    targets = list((lib.out / "targets" / "121D").iterdir())
    assert len(targets) == 1
    _sha, _, name = targets[0].name.partition(".")
    return f"121D/{name}"


# ------------------------------------------------------------------------------------ happy path


def test_init_dev_keys_warns_and_writes_labelled_keys(built: Built) -> None:
    assert "DEVELOPMENT KEYS" in built.init.stderr
    keys = sorted(p.name for p in (built.base / "R" / "keys").glob("*.pem"))
    assert "DEV-ONLY-root-1.pem" in keys and "DEV-ONLY-timestamp-1.pub.pem" in keys
    assert (built.base / "R" / "keys" / "DEV-ONLY-root-1.pem").stat().st_mode & 0o077 == 0


def test_keygen_writes_an_encrypted_private_key_and_its_public_pem(lib: Lib) -> None:
    assert b"ENCRYPTED" in lib.key.read_bytes()
    assert lib.key.stat().st_mode & 0o077 == 0
    assert lib.key.with_name("mfr-121D.pub.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")


def test_ingest_json_has_the_stable_shape(built: Built, lib: Lib) -> None:
    doc = json.loads(built.ingest.stdout)
    assert doc == {
        "schema_version": 1,
        "results": [
            {
                "bundle": "a2.cflb",
                "status": "accepted",
                "target": a2_target(lib),
                "reasons": [],
                "messages": [],
            }
        ],
    }
    assert "accepted  a2.cflb" in built.ingest.stderr  # people read stderr


def test_ingest_json_reports_each_bundle_of_an_inbox_and_exits_1_on_a_rejection(lib: Lib) -> None:
    inbox = lib.base / "inbox"
    inbox.mkdir()
    shutil.copy(lib.submit("a3.ota", "CPL-0003", "a3.cflb"), inbox / "b-good.cflb")
    (inbox / "a-junk.cflb").write_bytes(b"not a zip")
    (inbox / "notes.txt").write_text("not a bundle name: ignored")

    done = lib.cli("ingest", "--json", inbox)

    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert set(doc) == {"schema_version", "results"} and doc["schema_version"] == 1
    junk, good = doc["results"]
    assert set(good) == INGEST_KEYS
    assert (good["bundle"], good["status"], good["reasons"], good["messages"]) == (
        "b-good.cflb",
        "accepted",
        [],
        [],
    )
    assert good["target"].startswith("121D/ESME-0001-00000003-")
    # A rejected result carries where the bundle was kept, in addition to the stable keys.
    assert set(junk) == INGEST_KEYS | {"kept_at"}
    assert (junk["bundle"], junk["status"], junk["target"], junk["reasons"]) == (
        "a-junk.cflb",
        "rejected",
        None,
        ["malformed-bundle"],
    )
    assert len(junk["messages"]) == 1 and junk["messages"][0].startswith("malformed-bundle: ")
    assert (lib.repo / junk["kept_at"] / "report.json").is_file()
    assert "1 accepted, 1 rejected" in done.stderr


def test_status_json_after_publish(lib: Lib) -> None:
    doc = lib.status()
    assert doc["schema_version"] == 1
    assert doc["dev_keys"] is True
    assert doc["manufacturers"] == {
        "121D": {
            "name": "Maker 121D",
            "threshold": 1,
            "keys": 1,
            "delegated": True,
            "bins": None,  # not split into hash bins
        }
    }
    roles = doc["roles"]
    assert isinstance(roles, dict)
    assert set(roles) == {"root", "targets", "snapshot", "timestamp", "mfr-121D", "cfl-provider"}
    assert roles["cfl-provider"]["targets"] == 1  # the CPL, signed online (issue 13)
    assert roles["mfr-121D"]["version"] == 1 and roles["mfr-121D"]["targets"] == 1
    assert (doc["cpl_entries"], doc["images"], doc["withdrawn"]) == (2, 1, 0)
    assert doc["unpublished_changes"] == []


def test_status_lists_unpublished_changes(lib: Lib) -> None:
    ok("--repo", lib.repo, "ingest", lib.submit("a3.ota", "CPL-0003", "a3.cflb"))
    assert lib.status()["unpublished_changes"] == ["mfr-121D"]


def test_publish_json_reports_what_it_wrote(lib: Lib) -> None:
    ok("--repo", lib.repo, "ingest", lib.submit("a3.ota", "CPL-0003", "a3.cflb"))
    done = lib.cli("publish", "--no-site", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1
    assert doc["written"] == {
        "roots": 0,
        "blobs": 1,
        "delegated-roles": 1,
        "targets": 0,
        "snapshot": 1,
        "log": 4,  # entry bundle, level-0 tile, deposit index, checkpoint
        "timestamp": 1,
    }


def test_verify_passes_then_names_a_tampered_blob(lib: Lib) -> None:
    good = run("verify", lib.out, "--root", lib.root)
    assert good.returncode == 0, good.stderr
    assert "verifies" in good.stderr and "1 image(s)" in good.stderr

    target = a2_target(lib)
    sha = hashlib.sha256(IMAGES["a2.ota"]).hexdigest()
    blob = lib.out / "targets" / blob_name(target, sha)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))

    bad = run("verify", lib.out, "--root", lib.root, "--json")
    assert bad.returncode == 1
    problem = f"targets/{blob_name(target, sha)}: found {len(data)} bytes hashing to "
    assert f"problem: {problem}" in bad.stderr
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 1
    assert doc["problems"][0].startswith(problem) and doc["problems"][0].endswith(sha)


def test_withdraw_then_publish_and_verify(lib: Lib) -> None:
    target = a2_target(lib)
    done = lib.cli("withdraw", target, "--reason", "bricks meters on cold start")
    assert done.returncode == 0, done.stderr
    assert f"withdrew {target}" in done.stderr
    ok("--repo", lib.repo, "publish", "--no-site")

    assert lib.status()["withdrawn"] == 1
    assert run("verify", lib.out, "--root", lib.root).returncode == 0
    listed = [
        p for p in (lib.out / "targets" / "cfl").iterdir() if p.name.endswith("withdrawals.json")
    ]
    assert len(listed) == 1 and target in listed[0].read_text()
    again = lib.cli("withdraw", target, "--reason", "twice")
    assert again.returncode == 1 and "was withdrawn already" in again.stderr


# ------------------------------------------------------------------------------------ exit codes


def test_missing_repo_is_a_usage_error() -> None:
    done = run("status")
    assert done.returncode == 2
    assert "this command needs --repo R" in done.stderr


def test_unknown_option_is_a_usage_error() -> None:
    done = run("publish", "--no-such-option")
    assert done.returncode == 2
    assert "No such option" in done.stderr


@pytest.mark.parametrize("bad", ["XYZ1", "121", "121D0"])
def test_bad_manufacturer_id_is_a_usage_error(lib: Lib, bad: str) -> None:
    before = tree_digest(lib.repo, skip=(".lock",))
    done = lib.cli(
        "manufacturer", "add", bad, "--name", "X", "--key", lib.key.with_name("mfr-121D.pub.pem")
    )
    assert done.returncode == 2
    assert "MANUFACTURER_ID" in done.stderr and repr(bad) in done.stderr
    assert tree_digest(lib.repo, skip=(".lock",)) == before


def test_repository_that_is_not_one_is_a_configuration_error(tmp_path: Path) -> None:
    done = run("--repo", tmp_path, "status")
    assert done.returncode == 2
    assert "cfl-repo.json: not found" in done.stderr


def test_bad_cpl_row_is_rejected_naming_row_column_value_and_expected(lib: Lib) -> None:
    csv = render_cpl_csv(ENTRIES).decode().replace("00000003", "3.0.1", 1)
    bad = lib.base / "bad.csv"
    bad.write_text(csv)
    before = tree_digest(lib.repo, skip=(".lock",))

    done = lib.cli("cpl", "import", bad)

    assert done.returncode == 1
    assert "row 3, Firmware Version: found '3.0.1', expected 8 hex digits" in done.stderr
    assert tree_digest(lib.repo, skip=(".lock",)) == before


def test_a_command_fails_fast_while_another_holds_the_repository(lib: Lib) -> None:
    holder = LockPolicy(command="cfl-repo --repo R ingest inbox/")
    with exclusive_lock(lib.repo / ".lock", subject="the repository", policy=holder):
        done = lib.cli("publish", "--no-site")
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: the repository is busy: cfl-repo --repo R ingest inbox/ (PID {os.getpid()} on "
    )
    assert (
        f"hint: the lock ({lib.repo / '.lock'}) is released when that process exits" in done.stderr
    )


def test_submit_with_a_wrong_key_is_refused_before_a_bundle_is_written(lib: Lib) -> None:
    stranger = lib.base / "maker" / "stranger.pem"
    ok("keygen", stranger, "--no-encrypt")
    out = lib.base / "outbox" / "stranger.cflb"
    done = run(
        "submit",
        lib.base / "images" / "a3.ota",
        "--manufacturer",
        "121D",
        "--key",
        stranger,
        "--cpl-entry",
        "CPL-0003",
        "--reason",
        "compliance",
        "--from",
        lib.out,
        "--root",
        lib.root,
        "--out",
        out,
    )
    assert done.returncode == 1
    assert (
        "mfr-121D signatures: found 0 by keys the library delegates to, expected 1" in done.stderr
    )
    assert not out.exists()
