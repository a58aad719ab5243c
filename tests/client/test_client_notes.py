"""The supplier's release notes, end to end: a library built and published by repo_tool's own code,
read through ngclient by client/notes/release_notes.py and by the real `cfl` and `cfl-repo` console scripts.

Expected plaintext is the bytes the test gave the manufacturer, never the client's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from notes_factory import PLAINTEXT, NotesLibrary, Org, notes_library, p256_pem, publish_registry

from client.notes.release_notes import VIA_GRANT, VIA_RECIPIENT, read_notes
from client.trust.catalogue import build_catalogue
from factory import FolderFetcher
from metadata_templates.errors import RejectedInputError, VerificationError
from metadata_templates.naming import blob_name
from metadata_templates.notes import NotRecipientError, notes_target_path
from repo_tool.ops.notes_grant import grant_notes

CFL = Path(sys.executable).with_name("cfl")
CFL_REPO = Path(sys.executable).with_name("cfl-repo")
GAS_NOTES = b"GSME: valve test first. SECRET-MARKER-7f3a91 gas\n"
MARKER = b"SECRET-MARKER-7f3a91"


@dataclass
class Deposited:
    lib: NotesLibrary
    esme: str  # with notes, ESME (IS)
    gsme: str  # with notes, GSME (GS)
    plain: str  # ESME without notes


@pytest.fixture
def dep(tmp_path: Path) -> Deposited:
    lib = notes_library(tmp_path / "lib")
    factory = lib.factory
    esme = factory.deposit(lib.images["esme"], ["CPL-0002"], release_notes=PLAINTEXT).target
    gsme = factory.deposit(
        lib.images["gsme"], ["CPL-0101"], mfr="3F01", release_notes=GAS_NOTES
    ).target
    plain = factory.deposit(lib.images["esme3"], ["CPL-0003"]).target
    assert esme and gsme and plain
    return Deposited(lib, esme, gsme, plain)


def test_an_entitled_supplier_decrypts_through_tuf(dep: Deposited, tmp_path: Path) -> None:
    org = dep.lib.orgs["is"]
    notes = read_notes(dep.lib.session(tmp_path / "c"), dep.esme, org.key)
    assert (notes.plaintext, notes.via, notes.entity_id) == (
        PLAINTEXT,
        VIA_RECIPIENT,
        org.entity_id,
    )
    gas = read_notes(dep.lib.session(tmp_path / "g"), dep.gsme, dep.lib.orgs["gs"].key)
    assert gas.plaintext == GAS_NOTES
    # The client's cache holds only ciphertext: plaintext goes only where the caller writes it.
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file() and MARKER in p.read_bytes()]


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("gs", "is not a recipient and holds no grant"),
        ("revoked", "is not a recipient and holds no grant"),
    ],
    ids=["other-fuel", "revoked"],
)
def test_a_registered_but_not_entitled_supplier_is_told_it_is_not_a_recipient(
    dep: Deposited, tmp_path: Path, who: str, message: str
) -> None:
    with pytest.raises(NotRecipientError, match=message):
        read_notes(dep.lib.session(tmp_path), dep.esme, dep.lib.orgs[who].key)


def test_a_manufacturer_or_the_host_holding_no_registered_key_cannot_decrypt(
    dep: Deposited, tmp_path: Path
) -> None:
    stranger = Org("0000000000000001", "Manufacturer", ("IS",), p256_pem()[1], b"")
    with pytest.raises(NotRecipientError, match="matches no certificate"):
        read_notes(dep.lib.session(tmp_path), dep.esme, stranger.key)
    # What the host serves holds no plaintext at all, byte-wise.
    out = dep.lib.factory.out
    assert not [p for p in out.rglob("*") if p.is_file() and MARKER in p.read_bytes()]
    assert not [
        p for p in dep.lib.factory.repo.path.rglob("*") if p.is_file() and MARKER in p.read_bytes()
    ]


def test_a_tampered_ciphertext_on_the_host_is_refused_by_tuf(
    dep: Deposited, tmp_path: Path
) -> None:
    role = dep.lib.factory.repo.role("mfr-121D").signed
    path = notes_target_path(dep.esme)
    relative = "targets/" + blob_name(path, role.targets[path].hashes["sha256"])
    fetcher = FolderFetcher(dep.lib.factory.out)
    original = (dep.lib.factory.out / relative).read_bytes()
    doc = json.loads(original)
    doc["ciphertext"] = ("A" if doc["ciphertext"][0] != "A" else "B") + doc["ciphertext"][1:]
    fetcher.tamper[relative] = json.dumps(doc).encode()
    with pytest.raises(VerificationError):
        read_notes(dep.lib.session(tmp_path, fetcher), dep.esme, dep.lib.orgs["is"].key)


def test_an_image_without_notes_says_so(dep: Deposited, tmp_path: Path) -> None:
    with pytest.raises(RejectedInputError, match="deposited without notes"):
        read_notes(dep.lib.session(tmp_path), dep.plain, dep.lib.orgs["is"].key)


def test_notes_targets_are_not_reported_as_bad_images(dep: Deposited, tmp_path: Path) -> None:
    session = dep.lib.session(tmp_path)
    session.refresh()
    images, problems = build_catalogue(session.verified_targets(None), session.withdrawals())
    assert problems == ()
    assert {i.target_path for i in images} == {dep.esme, dep.gsme, dep.plain}


def test_a_grant_gives_a_later_registered_supplier_access(dep: Deposited, tmp_path: Path) -> None:
    lib, late = dep.lib, dep.lib.orgs["late"]
    orgs = [lib.orgs["is"], lib.orgs["gs"], lib.orgs["revoked"], late]
    publish_registry(lib.factory, orgs, revoked=("1111222233334444",))
    with pytest.raises(NotRecipientError, match="holds no grant"):
        read_notes(lib.session(tmp_path / "before"), dep.esme, late.key)
    with lib.factory.repo.locked():
        grant_notes(lib.factory.repo, late.entity_id, lib.custodian_key, now=lib.factory.tick())
    lib.factory.publish()
    notes = read_notes(lib.session(tmp_path / "after"), dep.esme, late.key)
    assert (notes.plaintext, notes.via) == (PLAINTEXT, VIA_GRANT)
    gas = read_notes(lib.session(tmp_path / "gas"), dep.gsme, late.key)
    assert gas.plaintext == GAS_NOTES
    # Another organisation cannot use late's grant.
    with pytest.raises(NotRecipientError):
        read_notes(lib.session(tmp_path / "gs"), dep.esme, lib.orgs["gs"].key)


# ------------------------------------------------------------------------------------------ CLI


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CFL_REPO", "CFL_HOME", "CFL_KEY_PASSPHRASE")
    }
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=60,
        env=base | (env or {}),
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _home_for(dep: Deposited, tmp_path: Path, org: Org) -> Path:
    key = tmp_path / f"{org.entity_id}.key.pem"
    key.write_bytes(org.key_pem)
    home = tmp_path / f"home-{org.entity_id}"
    url = dep.lib.factory.out.resolve().as_uri()
    root = tmp_path / "1.root.json"
    root.write_bytes(dep.lib.factory.root_bytes)
    done = _run(CFL, "--home", home, "init", url, "--root", root, "--notes-key", key)
    assert done.returncode == 0, done.stderr
    return home


def test_cfl_notes_writes_the_plaintext_and_json(dep: Deposited, tmp_path: Path) -> None:
    home = _home_for(dep, tmp_path, dep.lib.orgs["is"])
    out = tmp_path / "notes.txt"
    done = _run(CFL, "--home", home, "notes", dep.esme, "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == PLAINTEXT
    assert out.stat().st_mode & 0o777 == 0o600
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1
    assert (doc["target"], doc["via"], doc["length"]) == (dep.esme, "recipient", len(PLAINTEXT))


def test_cfl_notes_for_a_non_recipient_is_one_line_and_exit_1(
    dep: Deposited, tmp_path: Path
) -> None:
    home = _home_for(dep, tmp_path, dep.lib.orgs["gs"])
    out = tmp_path / "notes.txt"
    done = _run(CFL, "--home", home, "notes", dep.esme, "--out", out)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not a recipient" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_cfl_download_with_notes(dep: Deposited, tmp_path: Path) -> None:
    home = _home_for(dep, tmp_path, dep.lib.orgs["is"])
    out = tmp_path / "out"
    done = _run(
        CFL, "--home", home, "download", dep.esme, dep.plain, "--out", out, "--with-notes", "--json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [n["target"] for n in doc["notes"]] == [dep.esme]
    assert Path(doc["notes"][0]["out"]).read_bytes() == PLAINTEXT


def test_cfl_repo_notes_grant_with_an_encrypted_custodian_key(
    dep: Deposited, tmp_path: Path
) -> None:
    lib, late = dep.lib, dep.lib.orgs["late"]
    publish_registry(
        lib.factory,
        [lib.orgs["is"], lib.orgs["gs"], lib.orgs["revoked"], late],
        revoked=("1111222233334444",),
    )
    key = serialization.load_pem_private_key(lib.custodian_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encrypted = tmp_path / "custodian.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    repo = lib.factory.repo.path
    wrong = _run(
        CFL_REPO,
        "--repo",
        repo,
        "notes",
        "grant",
        late.entity_id,
        "--custodian-key",
        encrypted,
        env={"CFL_KEY_PASSPHRASE": "wrong"},
    )
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr
    done = _run(
        CFL_REPO,
        "--repo",
        repo,
        "notes",
        "grant",
        late.entity_id,
        "--custodian-key",
        encrypted,
        "--json",
        env={"CFL_KEY_PASSPHRASE": "correct horse"},
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [g["target"] for g in doc["granted"]] == sorted([dep.esme, dep.gsme])
    revoked = _run(
        CFL_REPO,
        "--repo",
        repo,
        "notes",
        "grant",
        "1111222233334444",
        "--custodian-key",
        encrypted,
        env={"CFL_KEY_PASSPHRASE": "correct horse"},
    )
    assert revoked.returncode == 1
    errors = [line for line in revoked.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "revoked" in errors[0], revoked.stderr


def test_cfl_repo_notes_custodian_refuses_a_key_that_is_not_p256(
    dep: Deposited, tmp_path: Path
) -> None:
    pem = tmp_path / "rsa.pub.pem"
    pem.write_bytes(
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = (dep.lib.factory.repo.path / "state" / "head.json").read_bytes()
    done = _run(
        CFL_REPO, "--repo", dep.lib.factory.repo.path, "notes", "custodian", "--public-key", pem
    )
    assert done.returncode == 2  # the wrong kind of key file on the command line: a usage error
    assert "an ECDSA P-256 public key" in done.stderr and "Traceback" not in done.stderr
    assert (dep.lib.factory.repo.path / "state" / "head.json").read_bytes() == head


def _p256_public_pem(path: Path) -> Path:
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def test_cfl_repo_notes_custodian_without_a_terminal_refuses_to_replace_without_yes(
    dep: Deposited, tmp_path: Path
) -> None:
    repo = dep.lib.factory.repo.path
    old = dep.lib.custodian_key.thumbprint()
    pem = _p256_public_pem(tmp_path / "new.pub.pem")
    head = (repo / "state" / "head.json").read_bytes()
    refused = _run(CFL_REPO, "--repo", repo, "notes", "custodian", "--public-key", pem)
    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--yes" in errors[0], refused.stderr
    assert f"replacing notes custodian key {old} with " in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (repo / "state" / "head.json").read_bytes() == head
    done = _run(
        CFL_REPO, "--repo", repo, "notes", "custodian", "--public-key", pem, "--yes", "--json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["replaced"] == old and doc["changed"] is True and doc["thumbprint"] != old
    assert (repo / "state" / "head.json").read_bytes() != head


def test_cfl_repo_notes_custodian_asks_on_a_terminal_and_a_no_changes_nothing(
    dep: Deposited, tmp_path: Path
) -> None:
    repo = dep.lib.factory.repo.path
    pem = _p256_public_pem(tmp_path / "new.pub.pem")
    head = (repo / "state" / "head.json").read_bytes()
    controller, terminal = os.openpty()
    try:
        os.write(controller, b"n\n")
        env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_HOME")}
        answered = subprocess.run(
            [str(CFL_REPO), "--repo", str(repo), "notes", "custodian", "--public-key", str(pem)],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        os.close(controller)
        os.close(terminal)
    assert "Replace the notes custodian key?" in answered.stderr
    assert answered.returncode == 1, answered.stderr
    assert "nothing was changed" in answered.stderr
    assert (repo / "state" / "head.json").read_bytes() == head


def test_cfl_repo_notes_custodian_with_the_same_key_changes_nothing(
    dep: Deposited, tmp_path: Path
) -> None:
    repo = dep.lib.factory.repo.path
    same = tmp_path / "same.pub.pem"
    same.write_bytes(
        serialization.load_pem_private_key(dep.lib.custodian_pem, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = (repo / "state" / "head.json").read_bytes()
    done = _run(CFL_REPO, "--repo", repo, "notes", "custodian", "--public-key", same, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "schema_version": 1,
        "thumbprint": dep.lib.custodian_key.thumbprint(),
        "replaced": None,
        "changed": False,
    }
    assert (repo / "state" / "head.json").read_bytes() == head


def test_revocation_stops_new_notes_but_what_was_readable_stays_readable(
    dep: Deposited, tmp_path: Path
) -> None:
    """docs/design.md "Revocation": published ciphertexts are immutable, nothing can un-share them."""
    lib, volt = dep.lib, dep.lib.orgs["is"]
    orgs = [volt, lib.orgs["gs"], lib.orgs["revoked"]]
    publish_registry(lib.factory, orgs, revoked=("1111222233334444", volt.entity_id))
    assert read_notes(lib.session(tmp_path / "old"), dep.esme, volt.key).plaintext == PLAINTEXT
    # ...while a revoked organisation receives no grant (tests/repo/test_notes.py) and is not a
    # recipient of notes deposited after its revocation (the "revoked" organisation above).


def test_download_with_notes_but_no_notes_key_stops_before_fetching(
    dep: Deposited, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    root = tmp_path / "1.root.json"
    root.write_bytes(dep.lib.factory.root_bytes)
    url = dep.lib.factory.out.resolve().as_uri()
    assert _run(CFL, "--home", home, "init", url, "--root", root).returncode == 0
    out = tmp_path / "out"
    done = _run(CFL, "--home", home, "download", dep.esme, "--out", out, "--with-notes")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "notes key" in errors[0], done.stderr
    assert not out.exists()
