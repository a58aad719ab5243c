"""The outcomes contract (issue 24): report shape, DSSE signature by the organisation key, the
published document and the hold rule."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from access.pki import issue, make_ca
from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner

from metadata_templates.outcomes import (
    ACTION_RELEASE,
    BY_PROVIDER,
    OutcomePolicy,
    OutcomeReport,
    OutcomesDocument,
    ReportImage,
    combine,
    due_holds,
    new_event,
    open_report,
    period_bounds,
    periods_overlap,
    previous_month,
    sign_report,
)

TARGET = "121D/ESME-0001-00000002-924ab26069ac2057.ota"
SHA = "ab" * 32
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def report(entity: str, counts: dict[str, int], period: str = "2026-11") -> OutcomeReport:
    return OutcomeReport(
        entity, period, "2026-12-01T00:00:00Z", (ReportImage(TARGET, SHA, counts),)
    )


@pytest.fixture(scope="module")
def organisation() -> tuple[CryptoSigner, str, str]:
    ca = make_ca("Test SMKI CA")
    other = issue(ca, "Someone else")
    mine = issue(ca, "Supplier One")
    key = serialization.load_pem_private_key(mine.key_pem, None)
    return CryptoSigner(key), mine.cert_pem.decode(), other.cert_pem.decode()


def test_a_signed_report_opens_with_its_certificate_and_no_other(
    organisation: tuple[CryptoSigner, str, str],
) -> None:
    signer, mine, other = organisation
    envelope = sign_report(report("90B3D51F30010001", {"activated": 9, "timeout": 1}), signer)
    assert open_report(envelope, mine).images[0].outcomes == {"activated": 9, "timeout": 1}
    with pytest.raises(ValueError, match=r"envelope\.signatures"):
        open_report(envelope, other)


def test_a_payload_changed_after_signing_is_refused(
    organisation: tuple[CryptoSigner, str, str],
) -> None:
    signer, mine, _ = organisation
    doc = json.loads(sign_report(report("90B3D51F30010001", {"activated": 9}), signer))
    forged = report("90B3D51F30010001", {"activated": 9000}).to_bytes()

    doc["payload"] = base64.b64encode(forged).decode()
    with pytest.raises(ValueError, match=r"envelope\.signatures"):
        open_report(json.dumps(doc).encode(), mine)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(devices=["0001"]), "report field"),
        (lambda d: d["images"][0].update(device_ids=["x"]), "images[0] field"),
        (lambda d: d["images"][0]["outcomes"].update(bricked=1), "outcomes key"),
        (lambda d: d["images"][0]["outcomes"].update(activated=-1), "outcomes.activated"),
        (lambda d: d["images"][0]["outcomes"].update(activated=True), "outcomes.activated"),
        (lambda d: d.update(period="2026-13"), "report.period"),
        (lambda d: d["images"].append(dict(d["images"][0])), "each image listed once"),
        (lambda d: d["images"][0].update(target="../etc/passwd"), "images[0].target"),
    ],
)
def test_a_malformed_report_names_its_field(change: object, field: str) -> None:
    doc = json.loads(report("90B3D51F30010001", {"activated": 1}).to_bytes())
    change(doc)  # type: ignore[operator]
    with pytest.raises(ValueError, match=field.replace(".", r"\.").replace("[", r"\[")):
        OutcomeReport.from_bytes(json.dumps(doc).encode())


def test_periods_are_months_or_days_and_overlap_as_time_does() -> None:
    assert period_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert periods_overlap("2026-11", "2026-11-30")
    assert not periods_overlap("2026-11", "2026-12-01")
    assert previous_month(NOW) == "2026-11"
    for bad in ("2026-1", "2026-02-30", "november"):
        with pytest.raises(ValueError, match="period"):
            period_bounds(bad)


def test_undelivered_devices_do_not_count_against_the_image() -> None:
    combined = combine(
        [
            report(
                "90B3D51F30010001",
                {"activated": 480, "activation-failed": 20, "not-retrieved": 500},
            )
        ]
    )
    figures = combined[TARGET].figures
    assert (figures.attempted, figures.delivered, figures.failures) == (1000, 500, 20)
    assert figures.failure_rate == pytest.approx(0.04)


def test_the_policy_needs_two_suppliers_and_enough_devices() -> None:
    policy = OutcomePolicy()
    empty = OutcomesDocument(updated="2026-12-01T00:00:00Z")
    one = combine([report("90B3D51F30010001", {"activated": 900, "activation-failed": 100})])
    assert due_holds(one, empty, policy) == []  # one supplier only
    two = combine(
        [
            report("90B3D51F30010001", {"activated": 300, "activation-failed": 10}),
            report("90B3D51F30010002", {"activated": 200, "hash-mismatch": 5}),
        ]
    )
    assert [i.target for i in due_holds(two, empty, policy)] == [TARGET]
    few = combine(
        [
            report("90B3D51F30010001", {"activated": 100, "activation-failed": 10}),
            report("90B3D51F30010002", {"activated": 100, "activation-failed": 10}),
        ]
    )
    assert due_holds(few, empty, policy) == []  # 220 delivered < 500


def test_a_release_answers_the_evidence_it_saw() -> None:
    policy = OutcomePolicy()
    two = combine(
        [
            report("90B3D51F30010001", {"activated": 300, "activation-failed": 10}),
            report("90B3D51F30010002", {"activated": 200, "hash-mismatch": 5}),
        ]
    )
    image = two[TARGET]
    released = OutcomesDocument(
        updated="2026-12-01T00:00:00Z",
        events=(
            new_event(image, TARGET, SHA, ACTION_RELEASE, BY_PROVIDER, now=NOW, reason="checked"),
        ),
    )
    assert due_holds(two, released, policy) == []
    roundtrip = OutcomesDocument.from_bytes(released.to_bytes())
    assert roundtrip == released
