"""`cfl outcomes submit` (issue 24): a counts-only report signed with the organisation key, found
in the verified registry; one per period, final; upload answers explained; no device ID leaves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from client.cli import outcomes as outcomes_cli
from client.cli.main import cli
from client.outcomes.keys import load_organisation_key
from client.outcomes.ledger import device_ids, load_ledger
from client.outcomes.record import run_record
from client.outcomes.submit import run_submit
from client.trust.home import ClientHome
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError
from metadata_templates.outcomes import open_report, upload_path
from outcomes.outcome_library import REVOKED, SECOND, SUPPLIER, OutcomeLibrary

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
IN_NOVEMBER = "2026-11-20T10:00:00Z"
IN_DECEMBER = "2026-12-02T10:00:00Z"


def _home(library: OutcomeLibrary, tmp: Path, rows: list[str]) -> ClientHome:
    home = library.home(tmp / "home")
    results = tmp / "r.csv"
    results.write_text("Device ID,Target,Outcome,Time\n" + "".join(r + "\n" for r in rows))
    run_record(home, results, now=NOW)
    return home


def _rows(library: OutcomeLibrary) -> list[str]:
    t2, t3 = library.targets[2], library.targets[3]
    return [
        f"00-0D-6F-00-00-00-00-01,{t2},activated,{IN_NOVEMBER}",
        f"00-0D-6F-00-00-00-00-02,{t2},hash-mismatch,{IN_NOVEMBER}",
        f"00-0D-6F-00-00-00-00-03,{t3},timeout,{IN_NOVEMBER}",
        f"00-0D-6F-00-00-00-00-04,{t3},activated,{IN_DECEMBER}",  # not in November's report
    ]


def _key(library: OutcomeLibrary, tmp: Path, entity: str = SUPPLIER):  # type: ignore[no-untyped-def]
    return load_organisation_key(library.key_file(tmp / "keys", entity), lambda: "")


def test_the_report_is_signed_by_the_registered_key_and_holds_only_counts(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = _home(library, tmp_path, _rows(library))
    out = tmp_path / "report.dsse.json"
    result = run_submit(home, _key(library, tmp_path), now=NOW, period=None, out=out)
    assert (result.period, result.entity_id, result.images, result.devices) == (
        "2026-11",
        SUPPLIER,
        2,
        3,
    )
    envelope = out.read_bytes()
    report = open_report(envelope, library.certificates[SUPPLIER].cert_pem.decode())
    assert report.entity_id == SUPPLIER and report.period == "2026-11"
    counts = {i.target: dict(i.outcomes) for i in report.images}
    assert counts == {
        library.targets[2]: {"activated": 1, "hash-mismatch": 1},
        library.targets[3]: {"timeout": 1},
    }
    # Privacy: no device ID of the ledger, in any spelling, is in the bytes that leave.
    for device in device_ids(load_ledger(home.path)):
        for spelling in (device, device.replace("-", ""), device.replace("-", "").lower()):
            assert spelling.encode() not in envelope
            assert spelling.encode() not in report.to_bytes()


def test_a_period_is_final_but_the_same_out_again_writes_the_very_same_bytes(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = _home(library, tmp_path, _rows(library))
    key = _key(library, tmp_path)
    out = tmp_path / "report.dsse.json"
    run_submit(home, key, now=NOW, period="2026-11", out=out)
    first = out.read_bytes()
    out.unlink()
    again = run_submit(home, key, now=NOW, period="2026-11", out=out)
    assert again.rerun and out.read_bytes() == first
    with pytest.raises(RejectedInputError, match="already submitted"):
        run_submit(home, key, now=NOW, period="2026-11-20", out=tmp_path / "day.json")
    with pytest.raises(RejectedInputError, match="already submitted"):
        run_submit(home, key, now=NOW, period="2026-11", out=None, put=lambda u, b: (201, ""))
    # New results in the period change its counts: the report stays final.
    more = tmp_path / "more.csv"
    more.write_text(
        f"Device ID,Target,Outcome,Time\n00-0D-6F-00-00-00-00-09,{library.targets[2]},activated,{IN_NOVEMBER}\n"
    )
    assert run_record(home, more, now=NOW).in_submitted == 1
    with pytest.raises(RejectedInputError, match="counts have changed"):
        run_submit(home, key, now=NOW, period="2026-11", out=out)


def test_a_period_that_has_not_ended_or_is_empty_is_refused(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = _home(library, tmp_path, _rows(library))
    key = _key(library, tmp_path)
    with pytest.raises(ConfigurationError, match="a period that has ended"):
        run_submit(home, key, now=NOW, period="2026-12", out=tmp_path / "r.json")
    with pytest.raises(ConfigurationError, match="--period"):
        run_submit(home, key, now=NOW, period="2026-1", out=tmp_path / "r.json")
    with pytest.raises(RejectedInputError, match="no results recorded for 2026-10"):
        run_submit(home, key, now=NOW, period="2026-10", out=tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_an_unknown_key_and_a_revoked_suppliers_key_are_refused_naming_the_fingerprint(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = _home(library, tmp_path, _rows(library))
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = load_organisation_key(stranger, lambda: "")
    with pytest.raises(RejectedInputError, match=key.fingerprint):
        run_submit(home, key, now=NOW, period="2026-11", out=tmp_path / "r.json")
    revoked = _key(library, tmp_path, REVOKED)
    with pytest.raises(RejectedInputError, match=f"{revoked.fingerprint}.*revoked"):
        run_submit(home, revoked, now=NOW, period="2026-11", out=tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()
    assert load_ledger(home.path).submissions == []


def test_an_encrypted_key_asks_for_its_passphrase_and_a_wrong_one_is_a_clear_error(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        library.certificates[SECOND].key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    assert load_organisation_key(encrypted, lambda: "correct horse").fingerprint
    with pytest.raises(ConfigurationError, match="wrong passphrase"):
        load_organisation_key(encrypted, lambda: "wrong")


class _Host:
    """A stand-in for the host's upload location: records PUTs and answers with ``status``."""

    def __init__(self, status: int, reason: str = "") -> None:
        self.status, self.reason = status, reason
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, url: str, body: bytes) -> tuple[int, str]:
        self.calls.append((url, body))
        return self.status, self.reason


def _https_home(library: OutcomeLibrary, tmp: Path) -> ClientHome:
    home = _home(library, tmp, _rows(library))
    config = json.loads(home.config_path.read_text())
    config["repository_url"] = "https://cfl.example/library/"
    home.config_path.write_text(json.dumps(config))
    return home


def test_upload_puts_the_envelope_at_the_upload_path(
    library: OutcomeLibrary, tmp_path: Path
) -> None:
    home = _https_home(library, tmp_path)
    host = _Host(201)
    result = run_submit(
        home, _key(library, tmp_path), now=NOW, period="2026-11", out=None, put=host
    )
    ((url, body),) = host.calls
    assert url == "https://cfl.example/library" + upload_path(SUPPLIER, "2026-11")
    assert result.upload and result.destination == url
    open_report(body, library.certificates[SUPPLIER].cert_pem.decode())
    assert [s.period for s in load_ledger(home.path).submissions] == ["2026-11"]


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (409, RejectedInputError, "already has a report from you for 2026-11"),
        (413, RejectedInputError, "larger than the host accepts"),
        (403, ConfigurationError, "registered supplier's client certificate"),
        (502, UnavailableError, "HTTP 502"),
    ],
)
def test_upload_answers_are_explained_and_nothing_is_recorded(
    library: OutcomeLibrary, tmp_path: Path, status: int, error: type[Exception], words: str
) -> None:
    home = _https_home(library, tmp_path)
    with pytest.raises(error, match=words):
        run_submit(
            home, _key(library, tmp_path), now=NOW, period="2026-11", out=None, put=_Host(status)
        )
    assert load_ledger(home.path).submissions == []


def test_upload_from_a_file_url_home_is_refused(library: OutcomeLibrary, tmp_path: Path) -> None:
    home = _home(library, tmp_path, _rows(library))
    with pytest.raises(ConfigurationError, match="https"):
        run_submit(
            home, _key(library, tmp_path), now=NOW, period="2026-11", out=None, put=_Host(201)
        )


def test_cli_submit_json_and_usage_errors(
    library: OutcomeLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _home(library, tmp_path, _rows(library))
    monkeypatch.setattr(outcomes_cli, "_now", lambda: NOW)
    key = library.key_file(tmp_path / "keys", SUPPLIER)
    out = tmp_path / "report.dsse.json"
    runner = CliRunner()
    base = ["--home", str(home.path), "outcomes", "submit", "--key", str(key)]
    done = runner.invoke(cli, [*base, "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc == {
        "schema_version": 1,
        "file": str(out),
        "period": "2026-11",
        "entity_id": SUPPLIER,
        "images": 2,
        "devices": 3,
        "rerun": False,
    }
    neither = runner.invoke(cli, base)
    assert neither.exit_code == 2 and "expected exactly one" in neither.stderr
    both = runner.invoke(cli, [*base, "--out", str(out), "--upload"])
    assert both.exit_code == 2
    future = runner.invoke(cli, [*base, "--out", str(out), "--period", "2027-01"])
    assert future.exit_code == 2 and "Traceback" not in future.output
