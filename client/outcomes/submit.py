"""``cfl outcomes submit``: the period's counts from the ledger, signed with the organisation key,
written to a file (air-gapped hand-over) or PUT to the library's host.

A report per supplier per period is final: the period must have ended, and a period that overlaps
one already submitted is refused, except a re-run with ``--out`` for the very same period whose
counts have not changed, which writes the very same bytes again (the envelope is kept in the home).
Only counts per image and outcome are in the report; the ledger's device IDs never are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from client.notes.release_notes import published_registry
from client.outcomes.keys import OrganisationKey, supplier_of_key
from client.outcomes.ledger import Ledger, Submission, load_ledger, reports_dir, save_ledger
from client.trust.home import ClientHome
from client.trust.library import open_session
from client.trust.transport import CflFetcher, to_cfl_error
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    VerificationError,
    field_error,
)
from metadata_templates.outcomes import (
    MAX_REPORT_BYTES,
    MAX_REPORT_IMAGES,
    OutcomeReport,
    ReportImage,
    period_bounds,
    periods_overlap,
    previous_month,
    report_file_name,
    sign_report,
    upload_path,
)

# (url, body) -> (HTTP status, the server's reason): the transport's PUT, or a test double.
Put = Callable[[str, bytes], tuple[int, str]]
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class SubmitResult:
    destination: str
    upload: bool
    period: str
    entity_id: str
    images: int
    devices: int
    rerun: bool  # the very same bytes written again

    def to_json(self) -> dict[str, Any]:
        return {
            ("url" if self.upload else "file"): self.destination,
            "period": self.period,
            "entity_id": self.entity_id,
            "images": self.images,
            "devices": self.devices,
            "rerun": self.rerun,
        }


def chosen_period(period: str | None, now: datetime) -> str:
    """``--period`` (default: the last complete month), which must have ended at ``now``.

    Raises:
        ConfigurationError: malformed, or not over yet.
    """
    chosen = period if period is not None else previous_month(now)
    try:
        _start, end = period_bounds(chosen, "--period")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if end > now:
        raise ConfigurationError(
            field_error(
                "--period",
                chosen,
                f"a period that has ended (this one ends {format_timestamp(end)}; "
                "a report per period is final)",
            )
        )
    return chosen


def build_report(ledger: Ledger, entity: str, period: str, created: str) -> OutcomeReport:
    """The report of ``period``: counts per image and outcome, no device ID.

    Raises:
        RejectedInputError: nothing recorded in the period, or too many images for one report.
    """
    figures = ledger.figures_in(period)
    if not figures:
        raise RejectedInputError(
            f"no results recorded for {period}",
            hint="cfl outcomes record RESULTS.csv first (results are counted by their Time)",
        )
    if len(figures) > MAX_REPORT_IMAGES:
        raise RejectedInputError(
            field_error(
                f"report for {period}: images", len(figures), f"at most {MAX_REPORT_IMAGES}"
            ),
            hint="report by day: --period YYYY-MM-DD",
        )
    images = tuple(
        ReportImage(target, ledger.images[target].sha256, dict(f.outcomes))
        for target, f in sorted(figures.items())
    )
    return OutcomeReport(entity, period, created, images)


def counts_digest(report: OutcomeReport) -> str:
    """SHA-256 of the report without its creation time: equal when the counts are."""
    return hashlib.sha256(
        OutcomeReport(report.entity_id, report.period, "", report.images).to_bytes()
    ).hexdigest()


def _explain(status: int, reason: str, url: str, period: str) -> None:
    said = f' (server says "{reason}")' if reason else ""
    if status in (200, 201, 204):
        return
    if status == 403:
        raise ConfigurationError(
            f"{url}: HTTP 403{said}: the host accepts reports only over TLS with a registered "
            "supplier's client certificate, for its own Entity ID",
            hint="check --client-cert/--client-key given at cfl init",
        )
    if status == 409:
        raise RejectedInputError(
            f"{url}: HTTP 409: the host already has a report from you for {period}"
        )
    if status == 413:
        raise RejectedInputError(
            f"{url}: HTTP 413{said}: the report is larger than the host accepts; "
            "report by day (--period YYYY-MM-DD)"
        )
    raise UnavailableError(f"{url}: HTTP {status}{said}: the host did not take the report")


def _refuse_overlap(previous: Submission, period: str, changed: bool) -> RejectedInputError:
    why = " (and its counts have changed since)" if changed and previous.period == period else ""
    return RejectedInputError(
        f"period {period}: a report for {previous.period} was already submitted on "
        f"{previous.created} to {previous.destination}{why}; a report per supplier per period "
        "is final",
        hint="only --out for the same period with unchanged counts writes the same report again",
    )


def run_submit(
    home: ClientHome,
    key: OrganisationKey,
    *,
    now: datetime,
    period: str | None,
    out: Path | None,
    put: Put | None = None,
) -> SubmitResult:
    """``cfl outcomes submit``: sign the period's report and hand it over (``out`` or upload).

    Raises:
        ConfigurationError: a bad period, an unusable home, or the host refused the credentials.
        RejectedInputError: nothing recorded, unknown or revoked key, a period already reported,
            or the host's 409/413.
        UnavailableError: the host could not be reached.
    """
    chosen = chosen_period(period, now)
    config = home.load_config()
    with home.lock():
        registry = published_registry(open_session(home, offline=True))
        if not registry.suppliers:
            raise VerificationError(
                "the home's verified library lists no supplier registry (cfl/suppliers.json)",
                hint="cfl refresh, then submit again",
            )
        supplier = supplier_of_key(registry, key)
        ledger = load_ledger(home.path)
        report = build_report(ledger, supplier.entity_id, chosen, format_timestamp(now))
        digest = counts_digest(report)
        devices = sum(sum(i.outcomes.values()) for i in report.images)
        kept = reports_dir(home.path) / report_file_name(supplier.entity_id, chosen)
        for previous in ledger.submissions:
            if not periods_overlap(previous.period, chosen):
                continue
            same = previous.period == chosen and previous.payload_sha256 == digest
            if out is None or not same or not kept.is_file():
                raise _refuse_overlap(previous, chosen, not same)
            envelope = kept.read_bytes()
            if hashlib.sha256(envelope).hexdigest() != previous.envelope_sha256:
                raise VerificationError(f"{kept}: changed on disk since it was submitted")
            atomic_write_bytes(out, envelope)
            return SubmitResult(
                str(out), False, chosen, supplier.entity_id, len(report.images), devices, True
            )
        envelope = sign_report(report, key.signer)
        if len(envelope) > MAX_REPORT_BYTES:
            raise RejectedInputError(
                field_error("report size", len(envelope), f"at most {MAX_REPORT_BYTES} bytes"),
                hint="report by day: --period YYYY-MM-DD",
            )
        if out is not None:
            destination = str(out)
            atomic_write_bytes(out, envelope)
        else:
            base = config.repository_url.rstrip("/")
            if not base.startswith(("https://", "http://")):
                raise ConfigurationError(
                    field_error("library URL for --upload", base, "an https:// URL"),
                    hint="hand the report over as a file instead: --out REPORT",
                )
            destination = base + upload_path(supplier.entity_id, chosen)
            sender = put or _transport_put(home)
            try:
                status, reason = sender(destination, envelope)
            except Exception as e:
                from tuf.api.exceptions import DownloadError

                if isinstance(e, DownloadError):
                    raise to_cfl_error(e) from e
                raise
            _explain(status, reason, destination, chosen)
        try:
            kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_bytes(kept, envelope)
        except OSError as e:
            raise UnavailableError(f"{kept}: cannot write ({e.strerror or e})") from e
        ledger.submissions.append(
            Submission(
                period=chosen,
                entity_id=supplier.entity_id,
                created=report.created,
                envelope_sha256=hashlib.sha256(envelope).hexdigest(),
                payload_sha256=digest,
                destination=destination,
                images=len(report.images),
                devices=devices,
            )
        )
        save_ledger(home.path, ledger)
    return SubmitResult(
        destination, out is None, chosen, supplier.entity_id, len(report.images), devices, False
    )


def _transport_put(home: ClientHome) -> Put:
    fetcher = CflFetcher(home.load_config().transport_settings())

    def put(url: str, body: bytes) -> tuple[int, str]:
        return fetcher.put(url, body, CONTENT_TYPE)

    return put
