"""kill -9 at every commit point of every state-changing command, then the same command again.

strace injects SIGKILL at the K-th rename or fsync the command makes (every atomic write and every
commit ends in a rename; the fsyncs after them are the windows between a commit and what follows it,
such as the event log), for K = 1, 2, ... until the command runs to completion. After each kill the same
command is run again without strace; it must succeed, the published tree must verify with python-tuf,
nothing accepted may be lost, and the event log must hold every commit exactly once.

The budget (``tests/kill_points.py``, ``walk``): each command is killed at point 1, at every sixth
point after it from an offset that moves daily, and at its last point, each kill followed by the
whole recovery check (``CFL_KILL_STRIDE=1`` kills at every point, ``CFL_KILL_SEED`` repeats a run). ``CFL_KILL_RANDOM=N``
adds N random-delay kills per command (timer-based, not tied to a syscall) for long soak runs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from access.pki import issue, make_ca
from kill_points import KILLED, strace_killing_at, walk

from conftest import require_system
from factory import make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from repo_tool.dev.demo_data import render_cpl_csv
from repo_tool.gateway.enrolment import build_enrolment
from repo_tool.signing.keys import write_keypair
from repo_tool.submit.bins import build_split
from repo_tool.verify.memo import MEMO_DIR_NAME, VerifyMemo, decode_entry
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
RANDOM_KILLS = int(os.environ.get("CFL_KILL_RANDOM", "0"))
MAX_POINTS = 200  # a command with more renames than this is itself a bug worth seeing


@dataclass(frozen=True)
class Scenario:
    """A pristine repository to copy, and one command to kill."""

    name: str
    args: Callable[[Path], list[str]]  # given the copy's base dir
    accepted: Callable[[Path], None]  # asserts the command's effect is in the state after recovery


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}


def _cli(base: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(base / "repo"), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )


def _killed_at(base: Path, args: list[str], point: int) -> bool:
    """Run the command with SIGKILL injected at its ``point``-th rename; True if it was killed."""
    done = subprocess.run(
        [
            *strace_killing_at(point),
            str(CFL_REPO),
            "--repo",
            str(base / "repo"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    return done.returncode in KILLED


def _killed_after(base: Path, args: list[str], delay: float) -> None:
    process = subprocess.Popen(
        [str(CFL_REPO), "--repo", str(base / "repo"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    time.sleep(delay)
    process.kill()
    process.wait()


def _assert_recovered(base: Path, scenario: Scenario, root: bytes) -> None:
    again = _cli(base, scenario.args(base))
    assert again.returncode == 0, (scenario.name, again.stdout, again.stderr)
    assert "Traceback" not in again.stderr
    published = _cli(base, ["publish", "--no-site"])
    assert published.returncode == 0, published.stderr
    _, problems = load_verified_library(
        folder_reader(base / "repo" / "public"), root, now=datetime.now(UTC)
    )
    assert problems == [], problems
    scenario.accepted(base)
    _assert_journal(base / "repo")


def _assert_journal(repo: Path) -> None:
    """Every commit is logged once, in order; the last one the head holds is among them."""
    lines = (repo / "events.jsonl").read_bytes().splitlines()
    seqs = [json.loads(line)["seq"] for line in lines if b'"seq"' in line]
    assert seqs == list(range(1, len(seqs) + 1))
    head = json.loads((repo / "state" / "head.json").read_bytes())
    assert head["event_seq"] == seqs[-1]


def _run_kill_loop(tmp_path: Path, pristine: Path, scenario: Scenario, root: bytes) -> int:
    def attempt(point: int) -> bool:
        base = tmp_path / f"{scenario.name}-{point}"
        shutil.copytree(pristine, base, symlinks=True)
        killed = _killed_at(base, scenario.args(base), point)
        if killed:
            _assert_recovered(base, scenario, root)
        shutil.rmtree(base)
        return killed

    points = walk(attempt, max_points=MAX_POINTS)
    rng = random.Random(points + 1)
    for n in range(RANDOM_KILLS):
        base = tmp_path / f"{scenario.name}-random-{n}"
        shutil.copytree(pristine, base, symlinks=True)
        _killed_after(base, scenario.args(base), rng.uniform(0.2, 3.0))
        _assert_recovered(base, scenario, root)
        shutil.rmtree(base)
    return points


# ------------------------------------------------------------------------------------ scenarios

NEW_IMAGE = make_image("121D", 4)
FIRST_IMAGE = make_image("2AB0", 7)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, dict[str, str]]:
    """A published library, plus two bundles waiting in an inbox and a new CPL to import."""
    base = tmp_path_factory.mktemp("pristine")
    factory, _ = standard_library(base)
    factory.entries += [
        make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(NEW_IMAGE)),
        make_entry(
            "CPL-0201", mfr="2AB0", model="0C0D", fw="00000007", image_sha=mi_sha(FIRST_IMAGE)
        ),
    ]
    factory.import_cpl()
    factory.add_manufacturer("2AB0")
    factory.publish()
    bundles = {
        "next": factory.write(factory.submit(NEW_IMAGE, ["CPL-0004"]), "next"),
        # A manufacturer's first deposit also adds its delegation to targets.
        "first": factory.write(factory.submit(FIRST_IMAGE, ["CPL-0201"], mfr="2AB0"), "first"),
    }
    # Hash bins: the migration of 121D into 4 bins (repo_tool/gateway/bins.py), one commit.
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=2,
        signers=[factory.mfr_signers["121D"]],
        library=verified_library(
            folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
        ),
        now=factory.now,
    )
    bundles["split"] = factory.write(split, "split")
    complete = [e for e in factory.entries if e.manufacturer_image_sha256]
    extra = make_entry("CPL-0009", fw="00000009", image_sha=mi_sha(make_image("121D", 9)))
    (base / "cpl.csv").write_bytes(render_cpl_csv([*complete, extra]))
    names = {k: str(v.relative_to(base)) for k, v in bundles.items()}
    names["withdraw"] = sorted(factory.repo.role("mfr-121D").signed.targets)[0]
    # Issue 13: an online cfl-provider key to adopt (outside the repository, like an HSM's), and
    # 2AB0's enrolment bundle (its signed empty role v1).
    _key, uri = write_keypair(base / "provider-key" / "provider.pem")
    names["provider_pub"] = str(base / "provider-key" / "provider.pub.pem")
    names["provider_uri"] = uri
    enrolment = build_enrolment(
        [factory.mfr_signers["2AB0"]], now=datetime.now(UTC), expires_in=timedelta(days=365)
    )
    (base / "enrol-2AB0.json").write_bytes(enrolment)
    # A manufacturer's key rotation: 121D's new key, and the key ID it replaces.
    write_keypair(base / "maker" / "121D-2.pem")
    names["mfr_new_pub"] = str(base / "maker" / "121D-2.pub.pem")
    (names["mfr_old_keyid"],) = factory.repo.head.manufacturers["121D"].keys
    # A top-level key rotation (`rotate-keys`): a new root version and every role re-signed.
    _key, names["ts_new_uri"] = write_keypair(base / "keys-2" / "timestamp-2.pem")
    names["ts_new_pub"] = str(base / "keys-2" / "timestamp-2.pub.pem")
    (names["ts_old_keyid"],) = [ref.keyid for ref in factory.repo.config.signers["timestamp"]]
    # Issue 25: the access and notes commands. A supplier to register (its certificate valid now:
    # `cfl-repo` reads the real clock), one registered already to revoke, and a custodian key.
    now = datetime.now(UTC)
    ca = make_ca(now=now)
    ca_pem = base / "pki" / "supplier-ca.pem"
    ca.write(base / "pki", "ca")
    ca_pem.write_bytes(ca.cert_pem)
    issue(ca, "Acme Energy", now=now).write(base / "pki", "acme")
    issue(ca, "Beta Gas", now=now).write(base / "pki", "beta")
    registered = _cli(
        base,
        ["supplier", "add", REVOKED_SUPPLIER, "--name", "Beta Gas", "--role", "gs",
         "--cert", str(base / "pki" / "beta.crt.pem"), "--supplier-ca", str(ca_pem)],
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    write_keypair(base / "custodian" / "custodian.pem", key_type="ecdsa")
    names["custodian_pub"] = str(base / "custodian" / "custodian.pub.pem")
    return base, factory.root_bytes, names


ADDED_SUPPLIER = "90B3D51F30010000"
REVOKED_SUPPLIER = "90B3D51F30020000"


def _supplier_status(entity: str, status: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        listed = _cli(base, ["supplier", "list", "--json"])
        assert listed.returncode == 0, listed.stderr
        doc = json.loads(listed.stdout)
        rows = doc["suppliers"] if isinstance(doc, dict) else doc
        (row,) = [r for r in rows if r["entity_id"] == entity]
        assert row["status"] == status

    return check


def _custodian_published(base: Path) -> None:
    head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
    version = head["targets_version"]
    targets = json.loads(
        (base / "repo" / "state" / "metadata" / "targets" / f"{version}.json").read_bytes()
    )
    assert "cfl/notes-custodian.json" in targets["signed"]["targets"]


def _role_has(role: str, target_prefix: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        factory_repo = base / "repo"
        head = json.loads((factory_repo / "state" / "head.json").read_bytes())
        version = head["roles"][role]
        doc = json.loads(
            (factory_repo / "state" / "metadata" / role / f"{version}.json").read_bytes()
        )
        assert any(t.startswith(target_prefix) for t in doc["signed"]["targets"])

    return check


def _nothing(base: Path) -> None:
    return None


def _memo_consistent(base: Path) -> None:
    """The verified-role memo the website step left holds only well-formed entries (no stray
    temporary file), one per role, and recalls exactly the library a memo-free walk gives."""
    public = base / "repo" / "public"
    root = (public / "metadata" / "1.root.json").read_bytes()
    folder = base / "repo" / "cache" / MEMO_DIR_NAME
    for path in folder.iterdir():
        data = path.read_bytes()
        role = json.loads(data.split(b"\n")[0])["role"]
        assert decode_entry(data, path.name.removesuffix(".json"), role) is not None, path.name
    now = datetime.now(UTC)
    memo = VerifyMemo(folder)
    recalled, problems = load_verified_library(folder_reader(public), root, now=now, memo=memo)
    assert problems == []
    assert recalled == load_verified_library(folder_reader(public), root, now=now)[0]
    assert memo.misses == 0 and memo.hits == len(list(folder.iterdir())) > 0


def _enrolled(manufacturer: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        assert head["roles"][f"mfr-{manufacturer}"] == 1
        enrolment = (base / f"enrol-{manufacturer}.json").read_bytes()
        staged = base / "repo" / "state" / "metadata" / f"mfr-{manufacturer}" / "1.json"
        assert staged.read_bytes() == enrolment

    return check


def _adopted(base: Path) -> None:
    head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
    assert head["roles"]["cfl-provider"] == 1
    doc = json.loads(
        (base / "repo" / "state" / "metadata" / "cfl-provider" / "1.json").read_bytes()
    )
    assert "cfl/cpl.json" in doc["signed"]["targets"]
    config = json.loads((base / "repo" / "cfl-repo.json").read_bytes())
    assert len(config["signers"]["cfl-provider"]) == 1  # the committed configuration followed


def _withdrawn(target: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        lines = (base / "repo" / "events.jsonl").read_bytes().splitlines()
        assert (
            sum(
                1
                for line in lines
                if json.loads(line).get("target") == target
                and json.loads(line)["event"] == "withdraw"
            )
            == 1
        )

    return check


def _split_into(manufacturer_id: str, bits: int) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        bins = sorted(r for r in head["roles"] if naming.manufacturer_of_bin(r) == manufacturer_id)
        assert bins == naming.bin_roles(manufacturer_id, bits)

    return check


def _keys_of(manufacturer: str, public_pem: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        from repo_tool.signing.keys import public_key_from_pem

        key = public_key_from_pem(Path(public_pem).read_bytes(), source=public_pem)
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        assert list(head["manufacturers"][manufacturer]["keys"]) == [key.keyid]

    return check


def _timestamp_key(public_pem: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        from repo_tool.signing.keys import public_key_from_pem

        key = public_key_from_pem(Path(public_pem).read_bytes(), source=public_pem)
        config = json.loads((base / "repo" / "cfl-repo.json").read_bytes())
        assert [s["keyid"] for s in config["signers"]["timestamp"]] == [key.keyid]
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        root = json.loads(
            (
                base / "repo" / "state" / "metadata" / "root" / f"{head['root_version']}.json"
            ).read_bytes()
        )
        assert root["signed"]["roles"]["timestamp"]["keyids"] == [key.keyid]

    return check


SCENARIO_NAMES = [
    "publish",
    "refresh",
    "cpl-import",
    "withdraw",
    "ingest-next",
    "ingest-first",
    "ingest-split",
    "provider-adopt",
    "manufacturer-enrol",
    "manufacturer-rotate-key",
    "rotate-keys",
    "supplier-add",
    "supplier-revoke",
    "notes-custodian",
]


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_kill_at_every_rename_then_rerun_succeeds(
    tmp_path: Path, pristine: tuple[Path, bytes, dict[str, str]], name: str
) -> None:
    require_system("strace")
    base, root, names = pristine
    scenario = {
        "publish": Scenario("publish", lambda b: ["publish"], _memo_consistent),
        "refresh": Scenario("refresh", lambda b: ["refresh", "--force"], _nothing),
        "cpl-import": Scenario(
            "cpl-import", lambda b: ["cpl", "import", str(b / "cpl.csv")], _nothing
        ),
        "withdraw": Scenario(
            "withdraw",
            lambda b: ["withdraw", names["withdraw"], "--reason", "recalled"],
            _withdrawn(names["withdraw"]),
        ),
        "ingest-next": Scenario(
            "ingest-next",
            lambda b: ["ingest", str(b / names["next"])],
            _role_has("mfr-121D", "121D/ESME-0001-00000004-"),
        ),
        "ingest-first": Scenario(
            "ingest-first",
            lambda b: ["ingest", str(b / names["first"])],
            _role_has("mfr-2AB0", "2AB0/"),
        ),
        "ingest-split": Scenario(
            "ingest-split",
            lambda b: ["ingest", str(b / names["split"])],
            _split_into("121D", 2),
        ),
        "provider-adopt": Scenario(
            "provider-adopt",
            lambda b: ["provider", "adopt", "--key", names["provider_pub"], names["provider_uri"]],
            _adopted,
        ),
        "manufacturer-enrol": Scenario(
            "manufacturer-enrol",
            lambda b: ["manufacturer", "enrol", "2AB0", str(b / "enrol-2AB0.json")],
            _enrolled("2AB0"),
        ),
        "manufacturer-rotate-key": Scenario(
            "manufacturer-rotate-key",
            lambda b: [
                "manufacturer",
                "rotate-key",
                "121D",
                "--add",
                names["mfr_new_pub"],
                "--remove",
                names["mfr_old_keyid"][:16],
            ],
            _keys_of("121D", names["mfr_new_pub"]),
        ),
        "rotate-keys": Scenario(
            "rotate-keys",
            lambda b: [
                "rotate-keys",
                "timestamp",
                "--add",
                names["ts_new_pub"],
                names["ts_new_uri"],
                "--remove",
                names["ts_old_keyid"][:16],
            ],
            _timestamp_key(names["ts_new_pub"]),
        ),
        "supplier-add": Scenario(
            "supplier-add",
            lambda b: [
                "supplier",
                "add",
                ADDED_SUPPLIER,
                "--name",
                "Acme Energy",
                "--role",
                "is",
                "--cert",
                str(b / "pki" / "acme.crt.pem"),
                "--supplier-ca",
                str(b / "pki" / "supplier-ca.pem"),
            ],
            _supplier_status(ADDED_SUPPLIER, "active"),
        ),
        "supplier-revoke": Scenario(
            "supplier-revoke",
            lambda b: ["supplier", "revoke", REVOKED_SUPPLIER, "--reason", "left the market"],
            _supplier_status(REVOKED_SUPPLIER, "revoked"),
        ),
        "notes-custodian": Scenario(
            "notes-custodian",
            lambda b: ["notes", "custodian", "--public-key", names["custodian_pub"], "--yes"],
            _custodian_published,
        ),
    }[name]

    points = _run_kill_loop(tmp_path, base, scenario, root)

    assert points >= 2, f"{name}: killed at only {points} point(s); the loop tested nothing"


# --- issue 13: replacing a stolen online provider key --------------------------------------------


@pytest.fixture(scope="module")
def adopted(
    pristine: tuple[Path, bytes, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, bytes, dict[str, str]]:
    """The pristine library after `provider adopt`, and a second online key to rotate to."""
    base, root, names = pristine
    copy = tmp_path_factory.mktemp("adopted") / "lib"
    shutil.copytree(base, copy, symlinks=True)
    done = _cli(copy, ["provider", "adopt", "--key", names["provider_pub"], names["provider_uri"]])
    assert done.returncode == 0, done.stderr
    config = json.loads((copy / "repo" / "cfl-repo.json").read_bytes())
    (old,) = config["signers"]["cfl-provider"]
    _key, uri = write_keypair(copy / "provider-key" / "provider-2.pem")
    more = {
        **names,
        "old_keyid": old["keyid"],
        "new_pub": str(copy / "provider-key" / "provider-2.pub.pem"),
        "new_uri": uri,
    }
    return copy, root, more


def _rotated(old_keyid: str) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        config = json.loads((base / "repo" / "cfl-repo.json").read_bytes())
        keyids = [s["keyid"] for s in config["signers"]["cfl-provider"]]
        assert len(keyids) == 1 and keyids != [old_keyid]
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        targets = json.loads(
            (
                base / "repo" / "state" / "metadata" / "targets" / f"{head['targets_version']}.json"
            ).read_bytes()
        )
        (role,) = [
            r for r in targets["signed"]["delegations"]["roles"] if r["name"] == "cfl-provider"
        ]
        assert role["keyids"] == keyids  # the delegation and the configuration agree

    return check


@pytest.fixture(scope="module")
def stale_memo(
    pristine: tuple[Path, bytes, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pristine library published with its site (so its verified-role memo is warm), then one
    more image ingested: the next publish verifies 121D again and prunes its old entry."""
    base, _, names = pristine
    copy = tmp_path_factory.mktemp("stale-memo") / "base"
    shutil.copytree(base, copy, symlinks=True)
    for args in (["publish"], ["ingest", str(copy / names["next"])]):
        done = _cli(copy, args)
        assert done.returncode == 0, done.stderr
    assert any((copy / "repo" / "cache" / MEMO_DIR_NAME).iterdir())
    return copy


@pytest.mark.system
@pytest.mark.slow
def test_kill_provider_rotate_key_at_every_rename_then_rerun_succeeds(
    tmp_path: Path, adopted: tuple[Path, bytes, dict[str, str]]
) -> None:
    require_system("strace")
    base, root, names = adopted
    scenario = Scenario(
        "provider-rotate-key",
        lambda b: [
            "provider",
            "rotate-key",
            "--add",
            names["new_pub"],
            "--uri",
            names["new_uri"],
            "--remove",
            names["old_keyid"][:16],
        ],
        _rotated(names["old_keyid"]),
    )

    points = _run_kill_loop(tmp_path, base, scenario, root)

    assert points >= 2, f"provider-rotate-key: killed at only {points} point(s)"


@pytest.mark.system
@pytest.mark.slow
def test_kill_publish_while_it_updates_the_verify_memo_then_rerun_succeeds(
    tmp_path: Path, pristine: tuple[Path, bytes, dict[str, str]], stale_memo: Path
) -> None:
    require_system("strace")
    _, root, _ = pristine
    scenario = Scenario("publish-memo", lambda b: ["publish"], _memo_consistent)

    points = _run_kill_loop(tmp_path, stale_memo, scenario, root)

    assert points >= 2, f"killed at only {points} point(s); the loop tested nothing"


# --- issue 25: a root ceremony's finish --------------------------------------------------------


@pytest.fixture(scope="module")
def ceremony_ready(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A library whose root is held offline by alice, bob and carol (2 of 3), with a proposal for
    root v3 and two holders' signature files beside it: what `ceremony finish` is given."""
    from key_drills import offline_root_library

    from repo_tool.ceremony.start import KeyChange, propose_root

    base = tmp_path_factory.mktemp("ceremony")
    factory, holders = offline_root_library(base)
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(),
        now=datetime.now(UTC),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    folder = base / "ceremony"
    folder.mkdir()
    (folder / "root-3.proposal.json").write_bytes(proposal.to_bytes())
    for name, signature in holders.sign(proposal, "alice", "bob"):
        (folder / name).write_bytes(signature.to_bytes())
    return base, factory.root_bytes


def _root_version(version: int) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        assert head["root_version"] == version

    return check


@pytest.mark.system
@pytest.mark.slow
def test_kill_ceremony_finish_at_every_rename_then_rerun_succeeds(
    tmp_path: Path, ceremony_ready: tuple[Path, bytes]
) -> None:
    require_system("strace")
    base, root = ceremony_ready
    scenario = Scenario(
        "ceremony-finish",
        lambda b: [
            "ceremony",
            "finish",
            str(b / "ceremony" / "root-3.proposal.json"),
            str(b / "ceremony" / "alice.sig.json"),
            str(b / "ceremony" / "bob.sig.json"),
        ],
        _root_version(3),
    )
    points = _run_kill_loop(tmp_path, base, scenario, root)
    assert points >= 2, f"ceremony finish: killed at only {points} point(s)"
