"""HSM everywhere, on a real SoftHSM token: online snapshot/timestamp keys used by an unattended
`refresh` (stdin closed, PIN from CFL_HSM_PIN), and a root key holder who signs a 2-of-3 ceremony on
the token while the other two use key files on their own machines.

Everything runs through the real `cfl-repo` console script in subprocesses, as cron and key holders
would run it; SoftHSM reads its token directory from SOFTHSM2_CONF in each process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from securesystemslib.signer import HSMSigner, SSlibKey
from test_hsm import require_python_pkcs11, run_tool, softhsm_module
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from conftest import require_system

pytestmark = pytest.mark.system

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
LABEL = "cfl-keys-token"
PIN = "975310"
SO_PIN = "86420864"
KEY_IDS = {"root-hsm": 3, "snapshot": 4, "timestamp": 5, "cfl-provider": 6}


@dataclass(frozen=True)
class Token:
    env: dict[str, str]  # SOFTHSM2_CONF, PYKCS11LIB, CFL_HSM_PIN
    uris: dict[str, str]
    pubs: dict[str, Path]
    keys: dict[str, SSlibKey]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    require_system("softhsm2-util", "pkcs11-tool")
    require_python_pkcs11()
    module = softhsm_module()
    if module is None:
        require_system("libsofthsm2.so")
        raise AssertionError("unreachable: require_system skips or fails")
    home = tmp_path_factory.mktemp("softhsm-keys")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {"SOFTHSM2_CONF": str(conf), "PYKCS11LIB": module, "CFL_HSM_PIN": PIN}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        run_tool(
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        )
        uris, pubs, keys = {}, {}, {}
        for name, key_id in KEY_IDS.items():
            run_tool(
                "pkcs11-tool",
                "--module",
                module,
                "--token-label",
                LABEL,
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--id",
                f"{key_id:02x}",
                "--label",
                name,
            )
            uri, key = HSMSigner.import_(key_id, LABEL, lambda _: PIN)
            pub = home / f"{name}.pub.pem"
            pub.write_text(str(key.keyval["public"]))
            uris[name], pubs[name], keys[name] = uri, pub, key
        try:
            yield Token(env, uris, pubs, keys)
        finally:
            import pkcs11

            pkcs11.unload(module)


def cfl_repo(
    *args: str | Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("CFL_", "SOFTHSM2", "PYKCS11"))
    }
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, **env},
        stdin=subprocess.DEVNULL,  # as under cron: nobody to type a PIN
        timeout=120,
        check=False,
        cwd=cwd,
    )


def ok(
    *args: str | Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = cfl_repo(*args, env=env, cwd=cwd)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.fixture
def repo(token: Token, tmp_path: Path) -> Path:
    """A repository whose root is 2 of 3 (alice, bob: key files; the third on the token), targets a
    key file, and snapshot/timestamp keys on the token."""
    for name in ("alice", "bob", "targets", "log"):
        ok("keygen", "--no-encrypt", tmp_path / "holders" / f"{name}.pem", env={})
    holders = tmp_path / "holders"
    r = tmp_path / "R"
    ok(
        "--repo",
        r,
        "init",
        "--log-key",  # the transparency log's Ed25519 note key, unencrypted for cron in this test
        holders / "log.pem",
        "--root-threshold",
        "2",
        "--key",
        "root",
        holders / "alice.pub.pem",
        f"file2:{holders / 'alice.pem'}",
        "--key",
        "root",
        holders / "bob.pub.pem",
        f"file2:{holders / 'bob.pem'}",
        "--key",
        "root",
        token.pubs["root-hsm"],
        token.uris["root-hsm"],
        "--key",
        "targets",
        holders / "targets.pub.pem",
        f"file2:{holders / 'targets.pem'}",
        "--key",
        "snapshot",
        token.pubs["snapshot"],
        token.uris["snapshot"],
        "--key",
        "timestamp",
        token.pubs["timestamp"],
        token.uris["timestamp"],
        env=token.env,
    )
    ok("--repo", r, "publish", env=token.env)
    return r


def test_unattended_refresh_signs_with_hsm_keys_and_pin_from_the_environment(
    token: Token, repo: Path
) -> None:
    ok("--repo", repo, "refresh", "--force", env=token.env)
    ts = Metadata[Timestamp].from_bytes(
        (repo / "public" / "metadata" / "timestamp.json").read_bytes()
    )
    (sig,) = ts.signatures.values()
    token.keys["timestamp"].verify_signature(sig, ts.signed_bytes)
    snap = Metadata[Snapshot].from_bytes(
        (
            repo / "public" / "metadata" / f"{ts.signed.snapshot_meta.version}.snapshot.json"
        ).read_bytes()
    )
    (sig,) = snap.signatures.values()
    token.keys["snapshot"].verify_signature(sig, snap.signed_bytes)
    ok("verify", repo / "public", "--root", repo / "public" / "metadata" / "1.root.json", env={})


def test_cfl_provider_on_the_hsm_signs_routine_documents_and_cron_refreshes_it(
    token: Token, repo: Path, tmp_path: Path
) -> None:
    """Issue 13: the online cfl-provider key on the token; a CPL import and an unattended refresh
    sign it with the PIN from the environment; the import does not touch targets."""
    from factory import make_entry, make_image, mi_sha
    from repo_tool.dev.demo_data import render_cpl_csv

    ok(
        "--repo", repo, "provider", "adopt",
        "--key", token.pubs["cfl-provider"], token.uris["cfl-provider"],
        env=token.env,
    )  # fmt: skip
    targets_before = json.loads((repo / "state" / "head.json").read_bytes())["targets_version"]
    cpl = tmp_path / "cpl.csv"
    cpl.write_bytes(
        render_cpl_csv([make_entry("CPL-0001", image_sha=mi_sha(make_image("121D", 1)))])
    )
    ok("--repo", repo, "cpl", "import", cpl, env=token.env)
    head = json.loads((repo / "state" / "head.json").read_bytes())
    assert head["targets_version"] == targets_before  # the import signed cfl-provider only
    ok("--repo", repo, "refresh", "--force", env=token.env)
    head = json.loads((repo / "state" / "head.json").read_bytes())
    version = head["roles"]["cfl-provider"]
    assert version == 3  # adopted (1), the CPL import (2), the refresh (3)
    role = Metadata[Targets].from_bytes(
        (repo / "state" / "metadata" / "cfl-provider" / f"{version}.json").read_bytes()
    )
    (sig,) = role.signatures.values()
    token.keys["cfl-provider"].verify_signature(sig, role.signed_bytes)
    assert "cfl/cpl.json" in role.signed.targets
    ok("--repo", repo, "publish", env=token.env)
    ok("verify", repo / "public", "--root", repo / "public" / "metadata" / "1.root.json", env={})


def test_refresh_without_the_pin_fails_with_one_line_and_a_rerun_completes(
    token: Token, repo: Path
) -> None:
    def online_versions() -> tuple[int, int]:
        head = json.loads((repo / "state" / "head.json").read_bytes())
        return head["snapshot_version"], head["timestamp_version"]

    before = online_versions()
    env = {k: v for k, v in token.env.items() if k != "CFL_HSM_PIN"}
    done = cfl_repo("--repo", repo, "refresh", "--force", env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(
        "error: a pin is needed but stdin is not a terminal; set CFL_HSM_PIN"
    )
    assert online_versions() == before
    ok("--repo", repo, "refresh", "--force", env=token.env)
    assert online_versions() == (before[0] + 1, before[1] + 1)
    ok("verify", repo / "public", "--root", repo / "public" / "metadata" / "1.root.json", env={})


def test_status_says_where_keys_live_and_never_the_uri(token: Token, repo: Path) -> None:
    doc = json.loads(ok("--repo", repo, "status", "--json", env={}).stdout)
    locations = {
        role: [k["location"] for k in doc["keys"][role]["keys"]]
        for role in ("root", "snapshot", "timestamp")
    }
    assert sorted(locations["root"]) == ["file2", "file2", "hsm"]
    assert locations["snapshot"] == locations["timestamp"] == ["hsm"]
    assert LABEL not in json.dumps(doc["keys"]) and PIN not in json.dumps(doc)
    assert doc["keys"]["timestamp"]["expires"] is not None


def test_root_ceremony_with_one_holder_on_the_hsm(token: Token, repo: Path, tmp_path: Path) -> None:
    holders = tmp_path / "holders"
    ok("keygen", "--no-encrypt", holders / "carol.pem", env={})
    proposal = tmp_path / "ceremony" / "root-v2.json"
    proposal.parent.mkdir()
    ok(
        "--repo",
        repo,
        "ceremony",
        "start",
        "root",
        "--add-key",
        holders / "carol.pub.pem",
        "--remove-key",
        token.keys["root-hsm"].keyid[:8],
        "--threshold",
        "2",
        "--out",
        proposal,
        env={},
    )
    # A 2-of-3 change that removes the HSM holder still needs 2 of the old keys: alice and the HSM.
    ok("ceremony", "sign", proposal, "--signer", f"file2:{holders / 'alice.pem'}", "--yes", env={})
    hsm = ok(
        "ceremony",
        "sign",
        proposal,
        "--signer",
        token.uris["root-hsm"],
        "--public-key",
        token.pubs["root-hsm"],
        "--yes",
        "--json",
        env=token.env,
    )
    assert json.loads(hsm.stdout)["keyid"] == token.keys["root-hsm"].keyid
    short = cfl_repo("--repo", repo, "ceremony", "finish", proposal, env={})
    assert short.returncode == 1 and "new root's keys" in short.stderr  # carol or bob must sign too
    ok("ceremony", "sign", proposal, "--signer", f"file2:{holders / 'carol.pem'}", "--yes", env={})
    done = json.loads(
        ok("--repo", repo, "ceremony", "finish", proposal, "--json", env=token.env).stdout
    )
    assert done["version"] == 2 and done["notes"] == []
    ok("--repo", repo, "publish", env=token.env)
    root = Metadata[Root].from_bytes((repo / "public" / "metadata" / "2.root.json").read_bytes())
    assert token.keys["root-hsm"].keyid in root.signatures
    assert token.keys["root-hsm"].keyid not in root.signed.roles["root"].keyids
    ok("verify", repo / "public", "--root", repo / "public" / "metadata" / "1.root.json", env={})
