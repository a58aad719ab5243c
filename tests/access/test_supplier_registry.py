"""The supplier registry: certificate checks, registration, revocation, state and publication."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from tuf.api.metadata import Metadata, Targets

from access.pki import Issued, issue, make_ca
from factory import T0, LibraryFactory
from metadata_templates.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CflError,
    ConfigurationError,
    RejectedInputError,
)
from metadata_templates.naming import blob_name
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, SupplierRegistry
from repo_tool.access.certificates import check_certificate
from repo_tool.ops.suppliers import add_supplier, registered, revoke_supplier, revoked

CA = make_ca()
OTHER_CA = make_ca("Somebody else's CA")
GOOD = issue(CA, "Acme Energy")
ENTITY = "90B3D51F30010000"

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def _add(registry: SupplierRegistry, **overrides: object) -> SupplierRegistry:
    args: dict[str, object] = {
        "entity": ENTITY,
        "name": "Acme Energy",
        "roles": ["IS"],
        "certificate": GOOD.cert_pem,
        "now": T0,
        "ca_pem": CA.cert_pem,
    } | overrides
    return registered(registry, **args)[0]  # type: ignore[arg-type]


def test_registration_records_entity_roles_and_fingerprint() -> None:
    registry = _add(SupplierRegistry(), entity="90b3-d51f-3001-0000", roles=["gs", "IS"])
    (entry,) = registry.suppliers
    assert entry.entity_id == ENTITY
    assert entry.roles == ("IS", "GS")
    assert entry.active
    assert check_certificate(GOOD.cert_pem, now=T0).sha256 == entry.certificate_sha256
    assert SupplierRegistry.from_bytes(registry.to_bytes()) == registry


# Arguments in the wrong form (an Entity ID that is none, no name, a file that is no certificate)
# are usage errors, exit 2; a real certificate the checks refuse is a rejection, exit 1.
BAD_REGISTRATIONS: dict[str, tuple[dict[str, object], str, int]] = {
    "entity-not-hex": ({"entity": "90B3D51F3001000G"}, "ENTITY_ID", EXIT_USAGE),
    "entity-too-short": ({"entity": "90B3"}, "ENTITY_ID", EXIT_USAGE),
    "no-role": ({"roles": []}, "--role", EXIT_USAGE),
    "unknown-role": ({"roles": ["MAP"]}, "--role", EXIT_USAGE),
    "duplicate-role": ({"roles": ["IS", "is"]}, "--role", EXIT_USAGE),
    "empty-name": ({"name": "  "}, "--name", EXIT_USAGE),
    "name-with-newline": ({"name": "Acme\nforged 200"}, "--name", EXIT_USAGE),
    "not-pem": ({"certificate": b"hello"}, "--cert", EXIT_USAGE),
    "two-certificates": ({"certificate": GOOD.cert_pem + GOOD.cert_pem}, "--cert", EXIT_USAGE),
    "rsa-or-ed25519-key": (
        {"certificate": issue(CA, "Ed", key=ed25519.Ed25519PrivateKey.generate()).cert_pem},
        "--cert public key",
        EXIT_FAILURE,
    ),
    "p384-key": (
        {"certificate": issue(CA, "P384", key=ec.generate_private_key(ec.SECP384R1())).cert_pem},
        "--cert public key curve",
        EXIT_FAILURE,
    ),
    "expired": (
        {"certificate": issue(CA, "Old", not_before=T0 - timedelta(days=400)).cert_pem},
        "--cert notAfter",
        EXIT_FAILURE,
    ),
    "not-yet-valid": (
        {"certificate": issue(CA, "Early", not_before=T0 + timedelta(days=1)).cert_pem},
        "--cert notBefore",
        EXIT_FAILURE,
    ),
    "a-ca-certificate": (
        {"certificate": issue(CA, "Sub CA", is_ca=True).cert_pem},
        "CA",
        EXIT_FAILURE,
    ),
    "other-ca": (
        {"certificate": issue(OTHER_CA, "Mallory").cert_pem},
        "--cert issuer",
        EXIT_FAILURE,
    ),
    "self-signed": ({"certificate": OTHER_CA.cert_pem}, "--cert", EXIT_FAILURE),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRATIONS), ids=str)
def test_bad_registration_names_the_field(case: str) -> None:
    overrides, field, exit_code = BAD_REGISTRATIONS[case]
    with pytest.raises(CflError) as caught:
        _add(SupplierRegistry(), **overrides)
    message = str(caught.value)
    assert field in message
    assert "\n" not in message
    assert caught.value.exit_code == exit_code


def test_entity_and_certificate_are_never_registered_twice() -> None:
    registry = _add(SupplierRegistry())
    with pytest.raises(RejectedInputError, match="ENTITY_ID"):
        _add(registry, certificate=issue(CA, "Acme 2").cert_pem)
    with pytest.raises(RejectedInputError, match="held by 90B3D51F30010000"):
        _add(registry, entity="90B3D51F30010001")
    # A revoked Entity ID is not reused either: old logs must still resolve to one organisation.
    gone, _ = revoked(registry, entity=ENTITY, reason="left", now=T0)
    with pytest.raises(RejectedInputError, match="revoked"):
        _add(gone, certificate=issue(CA, "Acme 3").cert_pem)


def test_revocation_keeps_the_entry_and_refuses_twice_or_unknown() -> None:
    registry, entry = revoked(_add(SupplierRegistry()), entity=ENTITY, reason=" left ", now=T0)
    assert not entry.active
    assert entry.revocation_reason == "left"
    assert len(registry.suppliers) == 1
    with pytest.raises(RejectedInputError, match="an active registration"):
        revoked(registry, entity=ENTITY, reason="again", now=T0)
    with pytest.raises(RejectedInputError, match="a registered Entity ID"):
        revoked(registry, entity="0000000000000001", reason="who", now=T0)
    with pytest.raises(ConfigurationError, match="--reason"):
        revoked(_add(SupplierRegistry()), entity=ENTITY, reason="", now=T0)


def _published_registry(factory: LibraryFactory) -> SupplierRegistry:
    factory.publish()
    meta = factory.out / "metadata"
    version = max(int(p.name.split(".")[0]) for p in meta.glob("*.targets.json"))
    targets = Metadata[Targets].from_file(str(meta / f"{version}.targets.json")).signed
    target = targets.targets[SUPPLIERS_TARGET_PATH]
    blob = factory.out / "targets" / blob_name(SUPPLIERS_TARGET_PATH, target.hashes["sha256"])
    data = blob.read_bytes()
    assert len(data) == target.length
    return SupplierRegistry.from_bytes(data)


def test_registry_is_state_signed_published_and_recorded(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    repo = factory.repo
    with repo.locked():
        add_supplier(
            repo,
            entity=ENTITY,
            name="Acme",
            roles=["IS"],
            certificate=GOOD.cert_pem,
            now=factory.tick(),
        )
    assert [s.entity_id for s in _published_registry(factory).suppliers] == [ENTITY]
    with repo.locked():
        revoke_supplier(repo, entity=ENTITY, reason="left the market", now=factory.tick())
    (entry,) = _published_registry(factory).suppliers
    assert entry.status == "revoked"
    events = [json.loads(line) for line in (repo.path / "events.jsonl").read_text().splitlines()]
    mine = [e for e in events if e["event"].startswith("supplier")]
    assert [e["event"] for e in mine] == ["supplier-add", "supplier-revoke"]
    assert mine[-1]["suppliers_sha256"] == repo.head.suppliers_sha256


def test_a_rejected_registration_changes_nothing(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    repo = factory.repo
    head = (repo.state_dir / "head.json").read_bytes()
    events = (repo.path / "events.jsonl").read_bytes()
    with repo.locked(), pytest.raises(RejectedInputError):
        add_supplier(
            repo,
            entity=ENTITY,
            name="Acme",
            roles=["IS"],
            certificate=issue(OTHER_CA, "x").cert_pem,
            now=factory.tick(),
            ca_pem=CA.cert_pem,
        )
    assert (repo.state_dir / "head.json").read_bytes() == head
    assert (repo.path / "events.jsonl").read_bytes() == events


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def cli_repo(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    repo = tmp_path / "R"
    assert _run("--repo", repo, "init", "--dev-keys").returncode == 0

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return _run("--repo", repo, *args)

    return run


def _pki(tmp_path: Path, issued: Issued, name: str) -> Path:
    return issued.write(tmp_path / "pki", name)[0]


def test_cli_add_list_revoke(
    tmp_path: Path, cli_repo: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    now_ca = make_ca(now=T0 + timedelta(hours=1))
    cert = _pki(tmp_path, issue(now_ca, "Acme", now=T0 + timedelta(hours=1)), "acme")
    ca = tmp_path / "pki" / "ca.pem"
    ca.write_bytes(now_ca.cert_pem)
    added = cli_repo(
        "supplier", "add", ENTITY, "--name", "Acme", "--role", "IS", "--role", "gs",
        "--cert", cert, "--supplier-ca", ca,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = cli_repo("supplier", "list", "--json")
    doc = json.loads(listed.stdout)
    assert doc["schema_version"] == 1
    assert [(s["entity_id"], s["roles"], s["status"]) for s in doc["suppliers"]] == [
        (ENTITY, ["IS", "GS"], "active")
    ]
    assert cli_repo("supplier", "revoke", ENTITY, "--reason", "gone").returncode == 0
    assert json.loads(cli_repo("supplier", "list", "--json").stdout)["suppliers"][0]["status"] == (
        "revoked"
    )


@pytest.mark.parametrize(
    ("args", "code", "field"),
    [
        (("supplier", "add", "XYZ", "--name", "A", "--role", "IS", "--cert", "{cert}"), 2, "ENTITY_ID"),
        (("supplier", "add", ENTITY, "--name", "A", "--role", "IS", "--cert", "{missing}"), 2, "--cert"),
        (("supplier", "add", ENTITY, "--name", "A", "--role", "XX", "--cert", "{cert}"), 2, "--role"),
        (("supplier", "add", ENTITY, "--name", "A", "--role", "IS", "--cert", "{cert}",
          "--supplier-ca", "{garbage}"), 2, "--supplier-ca"),
        (("supplier", "revoke", ENTITY, "--reason", "x"), 1, "ENTITY_ID"),
    ],
    ids=["bad-entity", "missing-cert-file", "bad-role", "bad-ca-file", "revoke-unknown"],
)  # fmt: skip
def test_cli_bad_input_is_one_error_line(
    tmp_path: Path,
    cli_repo: Callable[..., subprocess.CompletedProcess[str]],
    args: tuple[str, ...],
    code: int,
    field: str,
) -> None:
    cert = _pki(tmp_path, issue(CA, "A", now=T0 + timedelta(hours=1)), "a")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    paths = {"cert": cert, "missing": tmp_path / "nope.pem", "garbage": garbage}
    result = cli_repo(*(a.format(**paths) for a in args))
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert field in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, result.stderr


def test_the_same_registration_or_revocation_again_is_done_and_anything_else_refused(
    tmp_path: Path,
) -> None:
    # A re-run after kill -9 (or a retried script) must succeed without a second event; a request
    # that differs in any detail is still a conflict.
    factory = LibraryFactory(tmp_path)
    repo = factory.repo

    def add(name: str, roles: list[str]) -> None:
        with repo.locked():
            add_supplier(
                repo, entity=ENTITY, name=name, roles=roles, certificate=GOOD.cert_pem,
                now=factory.tick(),
            )  # fmt: skip

    def events() -> list[str]:
        lines = (repo.path / "events.jsonl").read_text().splitlines()
        return [e["event"] for e in map(json.loads, lines) if e["event"].startswith("supplier")]

    add("Acme", ["IS"])
    head = (repo.state_dir / "head.json").read_bytes()
    add("Acme", ["is"])
    assert (repo.state_dir / "head.json").read_bytes() == head
    for name, roles in (("Acme Ltd", ["IS"]), ("Acme", ["IS", "GS"])):
        with pytest.raises(RejectedInputError, match="ENTITY_ID"):
            add(name, roles)
    # A repeat the checks would refuse as malformed (a role twice) is refused, never taken as done.
    with pytest.raises(RejectedInputError, match="ENTITY_ID"):
        add("Acme", ["IS", "IS"])
    for reason in ("left the market", " left the market "):
        with repo.locked():
            revoke_supplier(repo, entity=ENTITY, reason=reason, now=factory.tick())
    with repo.locked(), pytest.raises(RejectedInputError, match="active registration"):
        revoke_supplier(repo, entity=ENTITY, reason="another reason", now=factory.tick())
    assert events() == ["supplier-add", "supplier-revoke"]
