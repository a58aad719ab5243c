"""Delivery outcomes (issue 24): the outcome codes, periods, counts and the supplier's signed
report. The package-level story is in ``metadata_templates/outcomes.py``."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.custom import parse_timestamp
from metadata_templates.errors import field_error
from metadata_templates.naming import is_image_target_path
from metadata_templates.suppliers import entity_id as parse_entity_id


@dataclass(frozen=True)
class OutcomeCode:
    """One outcome a supplier may record for a device.

    Attributes:
        code: the stable code (CSV ``Outcome`` column, report and document keys).
        meaning: what happened, in a sentence.
        dcc: what the supplier sees from the DCC that maps to it.
        kind: ``success``, ``failure`` (counts against the firmware) or ``undelivered`` (the
            image never reached the device: counted as attempted, not in the failure rate).
    """

    code: str
    meaning: str
    dcc: str
    kind: str


SUCCESS = "success"
FAILURE = "failure"
UNDELIVERED = "undelivered"

OUTCOME_CODES: Mapping[str, OutcomeCode] = {
    c.code: c
    for c in (
        OutcomeCode(
            "activated",
            "the image activated and, where read back, the device runs its firmware version",
            "SR 11.1 success response, then the Firmware Version read back (SR 11.2) matches",
            SUCCESS,
        ),
        OutcomeCode(
            "hash-mismatch",
            "the device computed a different hash of the image than the one it was sent",
            "device alert: image verification failed (hash check)",
            FAILURE,
        ),
        OutcomeCode(
            "hardware-version-mismatch",
            "the device refused the image for its hardware version",
            "device alert or SR 11.1 response: hardware version not in the image's range",
            FAILURE,
        ),
        OutcomeCode(
            "activation-failed",
            "the image was delivered but did not activate",
            "firmware activation failure alert, or an SR 11.3 activation error",
            FAILURE,
        ),
        OutcomeCode(
            "version-not-confirmed",
            "activation was reported but the firmware version read back is not the image's",
            "the SR 11.2 read back after the activation time shows another Firmware Version",
            FAILURE,
        ),
        OutcomeCode(
            "not-retrieved",
            "the device never retrieved the image from the communications hub",
            "DCC alert: firmware distribution not completed / image not retrieved",
            UNDELIVERED,
        ),
        OutcomeCode(
            "timeout",
            "no response arrived within the supplier's window",
            "no DCC response or alert before the supplier's deadline",
            UNDELIVERED,
        ),
    )
}

REPORT_PAYLOAD_TYPE = "application/vnd.cfl.outcome-report+json"
REPORT_TYPE = "cfl-outcome-report"
# A month of one supplier's campaigns lists at most a few hundred images; 1 MiB holds ~5,000.
MAX_REPORT_BYTES = 1 << 20
MAX_REPORT_IMAGES = 5000
# More devices than Great Britain has meters is a typo or an attack on the figures.
MAX_DEVICE_COUNT = 60_000_000

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# --- periods ------------------------------------------------------------------------------------


def period_bounds(period: str, field_name: str = "period") -> tuple[datetime, datetime]:
    """The half-open UTC interval [start, end) of a period: a month ``YYYY-MM`` or a day
    ``YYYY-MM-DD``.

    Raises:
        ValueError: neither form, or not a real date.
    """
    expected = "a month YYYY-MM or a day YYYY-MM-DD"
    try:
        if _MONTH.fullmatch(period):
            first = date.fromisoformat(period + "-01")
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        elif _DAY.fullmatch(period):
            first = date.fromisoformat(period)
            following = first + timedelta(days=1)
        else:
            raise ValueError(field_error(field_name, period, expected))
    except ValueError as e:
        if str(e).startswith(field_name):
            raise
        raise ValueError(field_error(field_name, period, expected)) from None

    def at(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    return at(first), at(following)


def periods_overlap(a: str, b: str) -> bool:
    """True when the two periods share an instant (a day inside a month overlaps the month)."""
    a0, a1 = period_bounds(a)
    b0, b1 = period_bounds(b)
    return a0 < b1 and b0 < a1


def previous_month(now: datetime) -> str:
    """The last complete calendar month (UTC) at ``now``: ``submit``'s default period."""
    first = now.astimezone(UTC).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


# --- counts ---------------------------------------------------------------------------------------


def checked_counts(doc: Any, where: str) -> dict[str, int]:
    """Counts by outcome code, every code known and every count a whole number >= 0, at least one
    above 0.

    Raises:
        ValueError: naming the field, the value found and the value expected.
    """
    if not isinstance(doc, dict) or not doc:
        raise ValueError(field_error(where, doc, "an object of outcome code -> device count"))
    counts: dict[str, int] = {}
    for code, count in doc.items():
        if code not in OUTCOME_CODES:
            raise ValueError(field_error(f"{where} key", code, f"one of {sorted(OUTCOME_CODES)}"))
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 0 <= count <= MAX_DEVICE_COUNT
        ):
            raise ValueError(
                field_error(
                    f"{where}.{code}", count, f"a whole number from 0 to {MAX_DEVICE_COUNT}"
                )
            )
        counts[code] = count
    if not any(counts.values()):
        raise ValueError(field_error(where, doc, "at least one device counted"))
    return counts


@dataclass(frozen=True)
class Figures:
    """Devices per outcome for one image, and what follows from them."""

    outcomes: Mapping[str, int]

    @property
    def attempted(self) -> int:
        return sum(self.outcomes.values())

    def of_kind(self, kind: str) -> int:
        """Devices whose outcome is of ``kind`` (SUCCESS, FAILURE or UNDELIVERED)."""
        return sum(n for code, n in self.outcomes.items() if OUTCOME_CODES[code].kind == kind)

    @property
    def failures(self) -> int:
        return self.of_kind(FAILURE)

    @property
    def delivered(self) -> int:
        """Devices the image reached: every outcome but the undelivered ones."""
        return self.attempted - self.of_kind(UNDELIVERED)

    @property
    def failure_rate(self) -> float:
        """Failures over delivered devices (0.0 when none was delivered)."""
        return self.failures / self.delivered if self.delivered else 0.0

    def plus(self, other: Mapping[str, int]) -> Figures:
        merged = dict(self.outcomes)
        for code, n in other.items():
            merged[code] = merged.get(code, 0) + n
        return Figures(merged)

    def minus(self, other: Figures) -> Figures:
        """What was added since ``other`` (never below zero)."""
        return Figures({c: max(0, n - other.outcomes.get(c, 0)) for c, n in self.outcomes.items()})


# --- the supplier's report ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReportImage:
    """One image's counts in a report."""

    target: str
    sha256: str  # the image file's SHA-256, as the manufacturer's role lists it
    outcomes: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "sha256": self.sha256, "outcomes": dict(self.outcomes)}


@dataclass(frozen=True)
class OutcomeReport:
    """What one supplier reports for one period: counts per image and outcome, no device ID."""

    entity_id: str
    period: str
    created: str  # UTC timestamp
    images: tuple[ReportImage, ...]

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "type": REPORT_TYPE,
            "entity_id": self.entity_id,
            "period": self.period,
            "created": self.created,
            "images": [i.to_dict() for i in self.images],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> OutcomeReport:
        """Parse a report payload, strictly: an unknown field is refused, so nothing (a device
        list, say) can ride along unseen.

        Raises:
            ValueError: naming the field, the value found and the value expected.
        """
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"report: not JSON ({e})") from e
        if not isinstance(doc, dict):
            raise ValueError(field_error("report", type(doc).__name__, "an object"))
        only_fields(
            doc, {"schema_version", "type", "entity_id", "period", "created", "images"}, "report"
        )
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                field_error("report.schema_version", doc.get("schema_version"), str(SCHEMA_VERSION))
            )
        if doc.get("type") != REPORT_TYPE:
            raise ValueError(field_error("report.type", doc.get("type"), repr(REPORT_TYPE)))
        entity = doc.get("entity_id")
        if not isinstance(entity, str):
            raise ValueError(field_error("report.entity_id", entity, "16 hex digits"))
        entity = parse_entity_id(entity, "report.entity_id")
        period = doc.get("period")
        if not isinstance(period, str):
            raise ValueError(field_error("report.period", period, "YYYY-MM or YYYY-MM-DD"))
        period_bounds(period, "report.period")
        created = timestamp_field(doc.get("created"), "report.created")
        images = doc.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_REPORT_IMAGES:
            raise ValueError(
                field_error(
                    "report.images",
                    images if not isinstance(images, list) else f"{len(images)} images",
                    f"a list of 1 to {MAX_REPORT_IMAGES} images",
                )
            )
        parsed = []
        seen: set[str] = set()
        for i, item in enumerate(images):
            where = f"report.images[{i}]"
            if not isinstance(item, dict):
                raise ValueError(field_error(where, type(item).__name__, "an object"))
            only_fields(item, {"target", "sha256", "outcomes"}, where)
            target = item.get("target")
            if not isinstance(target, str) or not is_image_target_path(target):
                raise ValueError(field_error(f"{where}.target", target, "an image target path"))
            if target in seen:
                raise ValueError(field_error(f"{where}.target", target, "each image listed once"))
            seen.add(target)
            sha = item.get("sha256")
            if not isinstance(sha, str) or not SHA256_PATTERN.fullmatch(sha):
                raise ValueError(field_error(f"{where}.sha256", sha, "64 lower-case hex digits"))
            counts = checked_counts(item.get("outcomes"), f"{where}.outcomes")
            parsed.append(ReportImage(target, sha, counts))
        return cls(entity, period, created, tuple(parsed))


def sign_report(report: OutcomeReport, signer: Any) -> bytes:
    """The DSSE envelope (JSON) of ``report`` signed by ``signer`` (a securesystemslib Signer
    holding the supplier's organisation key)."""
    from securesystemslib.dsse import Envelope

    envelope = Envelope(report.to_bytes(), REPORT_PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True, indent=1).encode() + b"\n"


def organisation_key(certificate_pem: str) -> Any:
    """The securesystemslib key of an organisation certificate's P-256 public key.

    Raises:
        ValueError: not a PEM certificate, or its key is not ECDSA P-256.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from securesystemslib.signer import SSlibKey

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError as e:
        raise ValueError(f"certificate: not a PEM X.509 certificate ({e})") from None
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError(
            field_error("certificate key", type(key).__name__, "an ECDSA P-256 key (SMKI)")
        )
    return SSlibKey.from_crypto(key)


def open_report(envelope: bytes, certificate_pem: str) -> OutcomeReport:
    """Verify a report envelope against the organisation certificate and parse its payload.

    Raises:
        ValueError: oversized, not a DSSE envelope of a report, signature not by the certificate's
            key, or a malformed payload; the message names what is wrong.
    """
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    if len(envelope) > MAX_REPORT_BYTES:
        raise ValueError(
            field_error("report size", f"{len(envelope)} bytes", f"at most {MAX_REPORT_BYTES}")
        )
    try:
        doc = json.loads(envelope)
        if not isinstance(doc, dict):
            raise TypeError(type(doc).__name__)
        parsed = Envelope.from_dict(doc)
        if not isinstance(parsed.payload, bytes) or not isinstance(parsed.signatures, dict):
            raise TypeError("payload")
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(
            field_error("envelope", f"not a DSSE envelope ({type(e).__name__})", "a DSSE envelope")
        ) from None
    if parsed.payload_type != REPORT_PAYLOAD_TYPE:
        raise ValueError(
            field_error("envelope.payloadType", parsed.payload_type, repr(REPORT_PAYLOAD_TYPE))
        )
    key = organisation_key(certificate_pem)
    try:
        parsed.verify([key], 1)
    except (VerificationError, ValueError, TypeError) as e:
        raise ValueError(
            field_error(
                "envelope.signatures",
                f"no valid signature by key {key.keyid[:16]} ({e})",
                "a signature by the key of the supplier's registered certificate",
            )
        ) from None
    return OutcomeReport.from_bytes(parsed.payload)


def report_payload_unverified(envelope: bytes) -> bytes | None:
    """The payload bytes of an envelope without checking it (to name the sender in an error)."""
    try:
        doc = json.loads(envelope)
        return base64.b64decode(doc["payload"], validate=True)
    except (ValueError, TypeError, KeyError):
        return None


def timestamp_field(value: Any, where: str) -> str:
    if isinstance(value, str):
        try:
            parse_timestamp(value)
            return value
        except ValueError:
            pass
    raise ValueError(field_error(where, value, "a UTC timestamp YYYY-MM-DDTHH:MM:SSZ"))


def only_fields(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ValueError(field_error(f"{where} field", unknown[0], f"one of {sorted(allowed)}"))


# --- the hand-over through the host -------------------------------------------------------------
# `cfl outcomes submit --upload` PUTs the envelope here (with the organisation's client certificate);
# `cfl-repo host nginx --outcomes-dir DIR` accepts it only from that organisation, once per period,
# and writes it to DIR/<file name>, which `cfl-repo outcomes ingest` reads.
UPLOAD_PREFIX = "/outcomes/upload/"
REPORT_FILE_SUFFIX = ".dsse.json"


def report_file_name(entity: str, period: str) -> str:
    """``<ENTITY>.<PERIOD>.dsse.json``: one file per supplier and period."""
    return f"{entity}.{period}{REPORT_FILE_SUFFIX}"


def upload_path(entity: str, period: str) -> str:
    """The URL path (below the library's base URL) a supplier uploads its report to."""
    return UPLOAD_PREFIX + report_file_name(entity, period)
