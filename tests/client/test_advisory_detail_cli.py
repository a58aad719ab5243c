"""Issue 23's confidential detail, end to end with the real `cfl-repo` and `cfl` scripts: the
manufacturer encrypts the detail at `advisory submit --detail`, the provider ingests and publishes
it (the website shows only the public part), the entitled supplier reads it after `cfl refresh`
with `cfl advisories --detail`, a supplier of another device type, a stranger's key and a tampered
ciphertext are refused with one line and exit 1; the manufacturer then discloses exactly that
detail (another is refused), and everyone reads it, on the site too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from advisory_factory import DETAIL, authored, detail_library
from notes_factory import p256_pem
from test_cli import as_json, cfl, errors, ok

from factory import LibraryFactory
from metadata_templates.advisory import detail_target_path
from metadata_templates.naming import blob_name

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
ID = "CFL-121D-2026-0001"
SECRET = "SECRET-DETAIL-5c2e"


def cfl_repo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)], capture_output=True, text=True, check=False, timeout=300
    )


def repo_ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = cfl_repo(*args)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The library, the manufacturer's files, and one supplier home per organisation."""
    from cryptography.hazmat.primitives import serialization

    tmp = tmp_path_factory.mktemp("advisory-detail-cli")
    factory, orgs, _custodian = detail_library(tmp)
    files = tmp / "files"
    files.mkdir()
    pem = files / "121d.pem"
    pem.write_bytes(
        factory.mfr_signers["121D"]._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    root = files / "root.json"
    root.write_bytes(factory.root_bytes)
    (files / f"{ID}.json").write_text(json.dumps(authored()))
    (files / "detail.txt").write_bytes(DETAIL)
    (files / "other.txt").write_bytes(DETAIL.replace(b"0x40", b"0x41"))
    _, stranger = p256_pem()
    keys = {"volt": orgs["is"].key_pem, "gasco": orgs["gs"].key_pem, "stranger": stranger}
    homes = {}
    for name, key in keys.items():
        (files / f"{name}.pem").write_bytes(key)
        homes[name] = tmp / f"home-{name}"
    return {"factory": factory, "files": files, "homes": homes, "tmp": tmp}


def signing(world: dict[str, Any]) -> list[str | Path]:
    files = world["files"]
    return [
        "--manufacturer",
        "121D",
        "--key",
        files / "121d.pem",
        "--from",
        world["factory"].out,
        "--root",
        files / "root.json",
    ]


def init(world: dict[str, Any], name: str, url: str | None = None) -> Path:
    home: Path = world["homes"][name]
    factory: LibraryFactory = world["factory"]
    files = world["files"]
    ok(
        cfl(
            "init",
            url or factory.out.as_uri(),
            "--root",
            files / "root.json",
            "--notes-key",
            files / f"{name}.pem",
            "--force",
            home=home,
        )
    )
    return home


def page(world: dict[str, Any]) -> str:
    return (world["factory"].out / "site" / "advisory" / f"{ID}.html").read_text()


def test_the_round_trip_before_and_after_disclosure(world: dict[str, Any]) -> None:
    files, factory = world["files"], world["factory"]
    repo = factory.repo.path
    disclose_at = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    bundle = files / "sealed.cflb"
    # The manufacturer: the detail is encrypted on its machine, the bundle says what it holds.
    shown = json.loads(
        repo_ok(
            "advisory",
            "submit",
            files / f"{ID}.json",
            *signing(world),
            "--detail",
            files / "detail.txt",
            "--disclose-at",
            disclose_at,
            "--out",
            bundle,
            "--json",
        ).stdout
    )
    assert (shown["detail"], shown["disclosure"]) == ("encrypted", disclose_at)
    assert shown["detail_target"] == detail_target_path(ID, 1)
    assert SECRET.encode() not in bundle.read_bytes()
    # The provider: ingest and publish, the website built from the published tree.
    ingested = json.loads(repo_ok("--repo", repo, "ingest", bundle, "--json").stdout)
    assert ingested["results"][0]["status"] == "accepted", ingested
    repo_ok("--repo", repo, "publish")
    before = page(world)
    assert f'Detail disclosed on <time datetime="{shown_date(factory)}">' in before
    assert f'until its public disclosure date, <time datetime="{disclose_at}">' in before
    assert SECRET not in before
    # The entitled supplier (Import Supplier, ESME): refresh, then the detail, also offline.
    volt = init(world, "volt")
    ok(cfl("refresh", home=volt))
    doc = as_json(cfl("advisories", "--detail", ID, "--json", home=volt))
    assert (doc["text"].encode(), doc["via"], doc["entity_id"]) == (
        DETAIL,
        "recipient",
        "0011223344556677",
    )
    assert (doc["detail"], doc["disclosure"], doc["revision"]) == ("encrypted", disclose_at, 1)
    plain = ok(cfl("advisories", "--detail", ID, "--offline", home=volt))
    assert plain.stdout.encode() == DETAIL
    out = world["tmp"] / "detail-out.txt"
    ok(cfl("advisories", "--detail", ID, "--out", out, home=volt))
    assert out.read_bytes() == DETAIL and out.stat().st_mode & 0o777 == 0o600
    listed = as_json(cfl("advisories", "--json", home=volt))
    assert listed["advisories"][0]["detail"] == {
        "state": "encrypted",
        "disclosure": disclose_at,
        "sha256": doc["sha256"],
    }
    # A Gas Supplier is not entitled to ESME firmware: not a recipient, one line, exit 1.
    gasco = init(world, "gasco")
    refused = cfl("advisories", "--detail", ID, home=gasco)
    assert refused.returncode == 1 and refused.stdout == ""
    assert errors(refused) == [
        f"error: advisory detail of {ID}: 8899AABBCCDDEEFF (Gasco) is not a recipient (the detail "
        "is encrypted to the organisations entitled to the affected device types when the "
        "revision was signed)"
    ]
    # A key no registered organisation holds.
    stranger = cfl("advisories", "--detail", ID, home=init(world, "stranger"))
    assert stranger.returncode == 1
    assert "matches no certificate in the published supplier registry" in errors(stranger)[0]
    # A tampered ciphertext on the host fails TUF before anything is decrypted.
    tampered = world["tmp"] / "tampered"
    shutil.copytree(factory.out, tampered)
    role = json.loads(sorted((tampered / "metadata").glob("*.mfr-121D.json"))[-1].read_text())
    target = role["signed"]["targets"][detail_target_path(ID, 1)]
    blob = tampered / "targets" / blob_name(detail_target_path(ID, 1), target["hashes"]["sha256"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    home = init(world, "volt", tampered.as_uri())
    broken = cfl("advisories", "--detail", ID, home=home)
    assert broken.returncode == 1 and len(errors(broken)) == 1, broken.stderr
    assert SECRET not in broken.stdout + broken.stderr
    init(world, "volt")  # back on the real library

    # Disclosure: another plaintext is refused on the manufacturer's machine, exit 1, no bundle.
    disclosed = files / "disclosed.cflb"
    swapped = cfl_repo(
        "advisory", "disclose", ID, "--detail", files / "other.txt", *signing(world),
        "--out", disclosed,
    )  # fmt: skip
    assert swapped.returncode == 1 and not disclosed.exists()
    assert errors(swapped)[0].startswith("error: advisory-detail-swapped: --detail SHA-256: found ")
    # The same file, 30 days early: allowed.
    done = json.loads(
        repo_ok(
            "advisory", "disclose", ID, "--detail", files / "detail.txt", *signing(world),
            "--out", disclosed, "--json",
        ).stdout
    )  # fmt: skip
    assert (done["revision"], done["detail"], done["detail_target"]) == (2, "public", None)
    repo_ok("--repo", repo, "ingest", disclosed)
    repo_ok("--repo", repo, "publish")
    after = page(world)
    assert SECRET in after and "Disclosed publicly on" in after and doc["sha256"] in after
    # Now anyone reads it, the Gas Supplier included, with no key needed.
    ok(cfl("refresh", home=gasco))
    public = as_json(cfl("advisories", "--detail", ID, "--json", home=gasco))
    assert (public["text"].encode(), public["via"], public["entity_id"]) == (
        DETAIL,
        "public",
        None,
    )
    assert public["sha256"] == doc["sha256"]


def shown_date(factory: LibraryFactory) -> str:
    """The date `advisory submit` signed as the revision's `updated` (today, on the real clock)."""
    return datetime.now(UTC).date().isoformat()


def test_usage_errors_are_one_line_exit_2(world: dict[str, Any]) -> None:
    home = init(world, "volt")
    estate = world["tmp"] / "estate.csv"
    estate.write_text("Device ID\n")
    for args, words in [
        (("--detail", ID, "--estate", estate), "--detail: found with --estate/--csaf/--openvex"),
        (("--out", world["tmp"] / "x.txt"), "--out: found without --detail"),
        (("--detail", "CVE-2026-1"), "--detail: found 'CVE-2026-1', expected an advisory ID"),
    ]:
        done = cfl("advisories", *args, home=home)
        assert done.returncode == 2, done.stderr
        assert len(errors(done)) == 1 and words in errors(done)[0], done.stderr
    missing = cfl("advisories", "--detail", "CFL-121D-2026-0099", home=home)
    assert missing.returncode == 1
    assert "expected the ID of an advisory in the library" in errors(missing)[0]
    orphan = cfl_repo(
        "advisory", "submit", world["files"] / f"{ID}.json", *signing(world),
        "--disclose-at", "2026-05-01", "--out", world["tmp"] / "o.cflb",
    )  # fmt: skip
    assert orphan.returncode == 2
    assert "--disclose-at/--allow-recent: found without --detail" in orphan.stderr


def test_help_teaches_with_examples() -> None:
    assert "cfl advisories --detail CFL-121D-2026-0001" in ok(cfl("advisories", "--help")).stdout
    # click wraps lines at hyphens: join them again
    disclose = re.sub(r"-\n\s+", "-", cfl_repo("advisory", "disclose", "--help").stdout)
    assert "Example:" in disclose and "advisory-detail-swapped" in disclose
    assert "--disclose-at" in cfl_repo("advisory", "submit", "--help").stdout
