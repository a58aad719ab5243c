"""Issue 23, end to end with the real `cfl` and `cfl-repo` scripts: a manufacturer files an advisory
for firmware already in the field; after one publish every supplier whose estate runs it sees the
devices counted with the path to the fix, its cron job fails on it, the CSAF export validates
against the official CSAF 2.0 schema, and an estate that runs none of it is left alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from advisory_factory import MEDIUM, authored, image_target, lodge
from client_factories import device_id, write_estate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT7, DRAFT202012
from test_cli import as_json, cfl, errors, ok

from factory import LibraryFactory, standard_library
from repo_tool.signing.keys import write_keypair

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
CSAF_SCHEMAS = Path(__file__).parents[1] / "data" / "csaf-2.0"
ESME_A = ("ESME", "121D", "010A030B", "1111")
GSME_B = ("GSME", "3F01", "0B0C", "1111")


def csaf_validator() -> jsonschema.protocols.Validator:
    """The official CSAF 2.0 schema with the FIRST CVSS schemas it references, no network."""

    def load(name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((CSAF_SCHEMAS / name).read_text())
        return loaded

    registry: Registry[Any] = Registry().with_resources(
        [
            (
                "https://www.first.org/cvss/cvss-v2.0.json",
                DRAFT4.create_resource(load("cvss-v2.0.json")),
            ),
            (
                "https://www.first.org/cvss/cvss-v3.0.json",
                DRAFT4.create_resource(load("cvss-v3.0.json")),
            ),
            (
                "https://www.first.org/cvss/cvss-v3.1.json",
                DRAFT7.create_resource(load("cvss-v3.1.json")),
            ),
        ]
    )
    schema = load("csaf_json_schema.json")
    Resource.from_contents(schema, default_specification=DRAFT202012)
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[LibraryFactory, Path, Path]:
    """The standard library, its root as a file, and a supplier home initialised on it."""
    tmp = tmp_path_factory.mktemp("advisories-cli")
    factory, _images = standard_library(tmp)
    root = tmp / "root.json"
    root.write_bytes(factory.root_bytes)
    home = tmp / "home"
    ok(cfl("init", factory.out.as_uri(), "--root", root, home=home))
    return factory, root, home


AFFECTED_ESTATE = [
    (device_id(1), *ESME_A, "00000001"),
    (device_id(2), *ESME_A, "00000001"),
    (device_id(3), *ESME_A, "00000002"),
    (device_id(4), *ESME_A, "00000002"),
    (device_id(5), *ESME_A, "00000002"),
    (device_id(6), *ESME_A, "00000003"),
    (device_id(7), *GSME_B, "00000001"),
]
CLEAN_ESTATE = [(device_id(8), *GSME_B, "00000001"), (device_id(9), *ESME_A, "00000003")]


def test_a_supplier_sees_cron_fails_and_csaf_validates_after_one_publish(
    library: tuple[LibraryFactory, Path, Path], tmp_path: Path
) -> None:
    factory, _root, home = library
    estate = write_estate(tmp_path / "estate.csv", AFFECTED_ESTATE)
    clean = write_estate(tmp_path / "clean.csv", CLEAN_ESTATE)
    before = ok(cfl("check", estate, "--json", home=home)).stdout
    assert "advisories" not in json.loads(before)["groups"][0]  # nothing published: unchanged
    assert ok(cfl("check", estate, "--fail-on-advisory", "low", home=home)).returncode == 0

    fix = image_target(factory, "CPL-0003")
    a2 = image_target(factory, "CPL-0002")
    lodge(
        factory,
        authored(affected_cpl_entries=["CPL-0001", "CPL-0002"], status="fixed", fixed_by=[fix]),
    )
    lodge(
        factory,
        authored(id="CFL-121D-2026-0002", cvss=MEDIUM, cve=[], affected_cpl_entries=["CPL-0003"]),
    )

    doc = as_json(cfl("advisories", "--estate", estate, "--json", home=home))
    by_id = {a["id"]: a for a in doc["advisories"]}
    first = by_id["CFL-121D-2026-0001"]
    assert (first["severity"], first["score"], first["affected_devices"]) == ("critical", 9.8, 5)
    groups = {g["firmware_version"]: (g["device_count"], g["fix_path"]) for g in first["groups"]}
    assert groups == {"00000001": (2, [a2, fix]), "00000002": (3, [fix])}
    assert first["fix_path"] == [fix] and first["unfixed_devices"] == 0
    second = by_id["CFL-121D-2026-0002"]
    assert (second["affected_devices"], second["fix_path"], second["unfixed_devices"]) == (1, [], 1)
    assert [a["id"] for a in doc["advisories"]] == ["CFL-121D-2026-0001", "CFL-121D-2026-0002"]

    check = as_json(cfl("check", estate, "--json", home=home))
    marked = {
        g["firmware_version"]: g["advisories"]
        for g in check["groups"]
        if g["manufacturer_id"] == "121D"
    }
    assert [a["id"] for a in marked["00000002"]] == ["CFL-121D-2026-0001"]
    assert marked["00000002"][0]["recommended_fixes"] is True
    assert [a["id"] for a in marked["00000003"]] == ["CFL-121D-2026-0002"]

    failed = cfl("check", estate, "--fail-on-advisory", "high", home=home)
    assert failed.returncode == 1
    assert any(
        "CFL-121D-2026-0001 (critical 9.8): found 3 device(s) on ESME/121D/010A030B/1111/00000002"
        in e
        for e in errors(failed)
    )
    assert "Traceback" not in failed.stderr
    assert ok(cfl("check", clean, "--fail-on-advisory", "critical", home=home.parent / "home"))
    medium = cfl("check", clean, "--fail-on-advisory", "medium", home=home)
    assert medium.returncode == 1 and "CFL-121D-2026-0002" in medium.stderr

    out = tmp_path / "csaf"
    vex = tmp_path / "vex.json"
    ok(cfl("advisories", "--estate", estate, "--csaf", out, "--openvex", vex, home=home))
    validator = csaf_validator()
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["cfl-121d-2026-0001.json", "cfl-121d-2026-0002.json"]
    for path in files:
        document = json.loads(path.read_text())
        problems = sorted(validator.iter_errors(document), key=str)
        assert problems == [], (path.name, [p.message for p in problems[:3]])
    critical = json.loads(files[0].read_text())
    assert critical["vulnerabilities"][0]["cve"] == "CVE-2026-10001"
    assert critical["vulnerabilities"][0]["product_status"]["known_affected"] == [
        "CPL-0001",
        "CPL-0002",
    ]
    assert critical["vulnerabilities"][0]["product_status"]["fixed"] == ["CPL-0003"]
    statements = json.loads(vex.read_text())["statements"]
    status = {
        (s["vulnerability"]["name"], s["products"][0]["@id"]): s["status"] for s in statements
    }
    assert status[("CFL-121D-2026-0001", a2)] == "affected"
    assert status[("CFL-121D-2026-0001", fix)] == "fixed"
    assert status[("CFL-121D-2026-0002", fix)] == "affected"


def test_without_an_estate_every_advisory_is_listed(
    library: tuple[LibraryFactory, Path, Path],
) -> None:
    _factory, _root, home = library
    doc = as_json(cfl("advisories", "--json", home=home))
    assert doc["advisories"] and all(a["affected_devices"] is None for a in doc["advisories"])
    human = ok(cfl("advisories", home=home))
    assert "CFL-121D-2026-0001" in human.stderr


def test_bad_options_are_one_error_line(
    library: tuple[LibraryFactory, Path, Path], tmp_path: Path
) -> None:
    _factory, _root, home = library
    estate = write_estate(tmp_path / "e.csv", AFFECTED_ESTATE)
    bad = cfl("check", estate, "--fail-on-advisory", "severe", home=home)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    (tmp_path / "file").write_text("x")
    clash = cfl("advisories", "--csaf", tmp_path / "file", home=home)
    assert clash.returncode == 2 and "is a file" in clash.stderr and "Traceback" not in clash.stderr


def test_cfl_repo_advisory_submit_signs_a_bundle_the_gateway_accepts(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    factory, _images = standard_library(tmp_path)
    # 121D's registered key as the PEM a manufacturer keeps (factory keys live in memory).
    pem = tmp_path / "121d.pem"
    private = factory.mfr_signers["121D"]._private_key
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    stranger = tmp_path / "stranger.pem"
    write_keypair(stranger)
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    doc = tmp_path / "CFL-121D-2026-0009.json"
    doc.write_text(json.dumps(authored(id="CFL-121D-2026-0009")))
    out = tmp_path / "a.cflb"

    def submit(*args: Any) -> subprocess.CompletedProcess[str]:
        command = ["advisory", "submit", doc, *args, "--from", factory.out, "--root", root]
        return subprocess.run(
            [str(CFL_REPO), *map(str, command), "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
        return [line for line in done.stderr.splitlines() if line.startswith("error:")]

    other = submit("--manufacturer", "3F01", "--key", pem)
    assert other.returncode == 1 and not out.exists()
    assert error_lines(other) == [
        "error: CFL-121D-2026-0009.json: id: found 'CFL-121D-2026-0009', expected an ID of "
        "manufacturer 3F01 (CFL-3F01-<YYYY>-<NNNN>)"
    ]
    strange = submit("--manufacturer", "121D", "--key", stranger)
    assert strange.returncode == 1 and not out.exists()
    assert "mfr-121D signatures: found 0" in error_lines(strange)[0]
    done = submit("--manufacturer", "121D", "--key", pem, "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["advisory"], shown["revision"], shown["severity"]) == (
        "CFL-121D-2026-0009",
        1,
        "critical",
    )
    result = factory.ingest(out)
    assert result.status == "accepted", result.messages
    help_text = subprocess.run(
        [str(CFL_REPO), "advisory", "submit", "--help"], capture_output=True, text=True, check=False
    )
    assert "Example:" in help_text.stdout
