"""The demo's sample supplier material (repo_tool/dev/demo_suppliers.py): certificates the registry
accepts, keys that match them, and results the client's own reader takes, which together fail one
image of the demo above the default hold policy and one supplier's alone do not hold it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from client.outcomes.results import open_results, read_results
from metadata_templates.custom import parse_timestamp
from metadata_templates.outcomes import DEFAULT_OUTCOME_POLICY, Figures, period_bounds
from repo_tool.access.certificates import check_certificate
from repo_tool.cli.main import cli as repo_cli
from repo_tool.dev.demo_data import make_demo_dataset, write_demo_dataset
from repo_tool.dev.demo_suppliers import (
    LABEL,
    make_supplier_samples,
    outcome_image,
    write_supplier_samples,
)

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _written(directory: Path, now: datetime = NOW) -> dict:
    dataset = make_demo_dataset(0)
    write_demo_dataset(dataset, directory)
    manifest = write_supplier_samples(make_supplier_samples(dataset, now=now), directory)
    return json.loads(manifest.read_text())


def _counts(path: Path, now: datetime = NOW) -> Counter[str]:
    with open_results(path) as source:
        rows = read_results(source, now=now, where=str(path))
    return Counter(row.outcome for row in rows)


def test_certificates_chain_to_the_ca_and_pass_the_registrys_own_checks(tmp_path: Path) -> None:
    manifest = _written(tmp_path)
    assert manifest["development_only"] is True
    assert "DEVELOPMENT ONLY" in (tmp_path / "suppliers" / "README.txt").read_text()
    ca_pem = (tmp_path / manifest["supplier_ca"]).read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert not list((tmp_path / "suppliers").glob("*ca*key*"))  # nothing more can be issued
    suppliers = manifest["suppliers"]
    assert len(suppliers) == 2 and len({s["entity_id"] for s in suppliers}) == 2
    for s in suppliers:
        cert_pem = (tmp_path / s["cert"]).read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(ca)
        assert LABEL in cert.subject.rfc4514_string()
        checked = check_certificate(cert_pem, now=NOW, ca_pem=ca_pem)  # as `supplier add` does
        assert s["name"] in checked.subject
        key_path = tmp_path / s["key"]
        assert key_path.stat().st_mode & 0o077 == 0
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        assert key.public_key().public_bytes(*public) == cert.public_key().public_bytes(*public)


def test_results_parse_with_the_clients_reader_and_fail_the_image_only_combined(
    tmp_path: Path,
) -> None:
    manifest = _written(tmp_path)
    image = outcome_image(make_demo_dataset(0))
    assert image.reason == "security" and image.advisories
    declared = json.loads((tmp_path / "declarations.json").read_text())["images"]
    sha = manifest["image"]["manufacturer_image_sha256"]
    assert sha == image.manufacturer_image_sha256
    assert sha in {d["manufacturer_image_sha256"] for d in declared}
    start, end = period_bounds(manifest["period"])
    assert manifest["period"] == "2026-11"
    combined = Figures({})
    for s in manifest["suppliers"]:
        path = tmp_path / s["results"]
        with open_results(path) as source:
            rows = read_results(source, now=NOW, where=str(path))
        assert {row.target for row in rows} == {sha}
        assert len({row.device_id for row in rows}) == len(rows) == 300
        # every result in the period `cfl outcomes submit` reports by default
        assert all(start <= parse_timestamp(row.time) < end for row in rows)
        own = Figures(dict(Counter(row.outcome for row in rows)))
        assert own.failures and own.delivered < own.attempted  # failures and undelivered both
        assert not DEFAULT_OUTCOME_POLICY.exceeded(own, suppliers=1)
        combined = combined.plus(own.outcomes)
    assert combined.delivered >= DEFAULT_OUTCOME_POLICY.min_devices
    assert combined.failure_rate > DEFAULT_OUTCOME_POLICY.max_failure_rate
    assert DEFAULT_OUTCOME_POLICY.exceeded(combined, suppliers=2)


@pytest.mark.parametrize(
    "now", [datetime(2027, 1, 1, tzinfo=UTC), datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)]
)
def test_results_fall_in_the_month_before_now_at_the_edges(tmp_path: Path, now: datetime) -> None:
    manifest = _written(tmp_path, now)
    _start, end = period_bounds(manifest["period"])
    assert end <= now
    for s in manifest["suppliers"]:
        # read_results refuses a time after `now`, so parsing at `now` is the "not in the future" check
        assert sum(_counts(tmp_path / s["results"], now).values()) == 300


def test_same_seed_and_month_give_the_same_names_ids_and_results(tmp_path: Path) -> None:
    first, second = _written(tmp_path / "a"), _written(tmp_path / "b")
    assert first == second
    for s in first["suppliers"]:
        assert (tmp_path / "a" / s["results"]).read_bytes() == (
            tmp_path / "b" / s["results"]
        ).read_bytes()


def test_demo_data_command_writes_the_supplier_material(tmp_path: Path) -> None:
    done = CliRunner().invoke(repo_cli, ["demo-data", str(tmp_path / "dd")])
    assert done.exit_code == 0, done.output
    assert "development-only" in done.output
    manifest = json.loads((tmp_path / "dd" / "suppliers" / "suppliers.json").read_text())
    for s in manifest["suppliers"]:
        for name in ("cert", "key", "results"):
            assert (tmp_path / "dd" / s[name]).is_file()
