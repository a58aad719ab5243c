"""Judge one supplier's outcome report (issue 24): pure, given the registry, the library's images
and the reports received before. Every refusal is a stable code with one house-form message.

The provider keeps every accepted report (its envelope bytes and its parsed counts) in a private
ledger; only the combined figures are published. A report per supplier per period is final: one
overlapping a received report of the same supplier is a replay, however it is dressed up, so no
device is ever counted twice; the very same bytes again are "already ingested", not an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metadata_templates.errors import field_error
from metadata_templates.outcomes import (
    MAX_REPORT_BYTES,
    OutcomeReport,
    open_report,
    period_bounds,
    periods_overlap,
    report_file_name,
    report_payload_unverified,
)
from metadata_templates.suppliers import SupplierRegistry

TOO_LARGE = "outcome-report-too-large"
MALFORMED = "outcome-report-malformed"
SUPPLIER_UNKNOWN = "outcome-supplier-unknown"
SUPPLIER_REVOKED = "outcome-supplier-revoked"
BAD_SIGNATURE = "outcome-bad-signature"
PERIOD_OPEN = "outcome-period-open"
REPLAYED = "outcome-report-replayed"
UNKNOWN_IMAGE = "outcome-unknown-image"
MISNAMED = "outcome-report-misnamed"
CODES = (
    TOO_LARGE,
    MALFORMED,
    SUPPLIER_UNKNOWN,
    SUPPLIER_REVOKED,
    BAD_SIGNATURE,
    PERIOD_OPEN,
    REPLAYED,
    UNKNOWN_IMAGE,
    MISNAMED,
)


@dataclass(frozen=True)
class Received:
    """One report the provider accepted: what the private ledger keeps."""

    entity_id: str
    period: str
    envelope_sha256: str  # the envelope's bytes are in the repository's blob store
    received: str  # UTC timestamp
    report: OutcomeReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "period": self.period,
            "envelope_sha256": self.envelope_sha256,
            "received": self.received,
            "report": json.loads(self.report.to_bytes()),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Received:
        return cls(
            entity_id=doc["entity_id"],
            period=doc["period"],
            envelope_sha256=doc["envelope_sha256"],
            received=doc["received"],
            report=OutcomeReport.from_bytes(json.dumps(doc["report"]).encode()),
        )


def ledger_to_bytes(ledger: Iterable[Received]) -> bytes:
    doc = {"schema_version": 1, "reports": [r.to_dict() for r in ledger]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def ledger_from_bytes(data: bytes) -> tuple[Received, ...]:
    return tuple(Received.from_dict(r) for r in json.loads(data)["reports"])


@dataclass(frozen=True)
class Verdict:
    """What became of one report file."""

    source: str
    status: str  # "accepted" | "already" | "rejected"
    entity_id: str | None = None
    period: str | None = None
    reasons: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    report: OutcomeReport | None = None
    envelope_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": self.source,
            "status": self.status,
            "entity_id": self.entity_id,
            "period": self.period,
            "reasons": list(self.reasons),
            "messages": list(self.messages),
            "images": 0 if self.report is None else len(self.report.images),
        }


def _refused(source: str, code: str, message: str, **known: str | None) -> Verdict:
    return Verdict(source, "rejected", reasons=(code,), messages=(message,), **known)  # type: ignore[arg-type]


def judge_report(
    source: str,
    data: bytes,
    *,
    registry: SupplierRegistry,
    image_sha256: Callable[[str], str | None],
    received: Iterable[Received],
    now: datetime,
    expect_name: bool,
) -> Verdict:
    """Judge the envelope ``data`` read from ``source``.

    ``image_sha256(target)`` is the SHA-256 the library's signed role lists for an image (None:
    no such image); ``received`` is every report accepted before (this batch's included);
    ``expect_name``: the file came from the upload folder, so its name must be the one the host
    lets its sender write (``report_file_name``), naming the same supplier and period.
    """
    if len(data) > MAX_REPORT_BYTES:
        return _refused(
            source,
            TOO_LARGE,
            field_error("report size", f"{len(data)} bytes", f"at most {MAX_REPORT_BYTES} bytes"),
        )
    sha = hashlib.sha256(data).hexdigest()
    earlier = list(received)
    for r in earlier:
        if r.envelope_sha256 == sha:
            return Verdict(source, "already", r.entity_id, r.period, envelope_sha256=sha)
    payload = report_payload_unverified(data)
    claimed: Any = None
    if payload is not None:
        try:
            claimed = json.loads(payload).get("entity_id")
        except (ValueError, AttributeError):
            claimed = None
    if not isinstance(claimed, str):
        return _refused(
            source,
            MALFORMED,
            field_error("envelope", "no readable report payload", "a DSSE envelope of a report"),
        )
    supplier = registry.by_entity_id().get(claimed.upper())
    if supplier is None:
        return _refused(
            source,
            SUPPLIER_UNKNOWN,
            field_error("report.entity_id", claimed[:40], "a registered supplier's Entity ID"),
        )
    if not supplier.active:
        return _refused(
            source,
            SUPPLIER_REVOKED,
            f"report.entity_id: {supplier.entity_id} was revoked ({supplier.revoked}: "
            f"{supplier.revocation_reason}); expected an active registration",
            entity_id=supplier.entity_id,
        )
    try:
        report = open_report(data, supplier.certificate_pem)
    except ValueError as e:
        code = BAD_SIGNATURE if str(e).startswith("envelope.signatures") else MALFORMED
        return _refused(source, code, str(e), entity_id=supplier.entity_id)
    if report.entity_id != supplier.entity_id:  # the payload checked is the one named
        return _refused(
            source, MALFORMED, field_error("report.entity_id", report.entity_id, supplier.entity_id)
        )
    known = {"entity_id": report.entity_id, "period": report.period}
    if expect_name:
        wanted = report_file_name(report.entity_id, report.period)
        name = source.replace("\\", "/").rsplit("/", 1)[-1]
        if name != wanted:
            return _refused(source, MISNAMED, field_error("file name", name, wanted), **known)
    _start, end = period_bounds(report.period)
    if end > now:
        return _refused(
            source,
            PERIOD_OPEN,
            field_error(
                "report.period", report.period, f"a period that ended before {now:%Y-%m-%d}"
            ),
            **known,
        )
    for r in earlier:
        if r.entity_id == report.entity_id and periods_overlap(r.period, report.period):
            return _refused(
                source,
                REPLAYED,
                f"report.period: {report.entity_id} reported {r.period} already (received "
                f"{r.received}); expected a period that overlaps none of its earlier reports",
                **known,
            )
    problems = []
    for i, image in enumerate(report.images):
        listed = image_sha256(image.target)
        if listed is None:
            problems.append(
                field_error(f"report.images[{i}].target", image.target, "an image of the library")
            )
        elif listed != image.sha256:
            problems.append(field_error(f"report.images[{i}].sha256", image.sha256, listed))
    if problems:
        return Verdict(
            source,
            "rejected",
            report.entity_id,
            report.period,
            reasons=(UNKNOWN_IMAGE,),
            messages=tuple(problems[:5]),
        )
    return Verdict(
        source, "accepted", report.entity_id, report.period, report=report, envelope_sha256=sha
    )
