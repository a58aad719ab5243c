"""Delivery outcomes (issue 24): the supplier's signed report and the provider's published figures.

Both sides read these shapes, so they live in the contract:

- ``OUTCOME_CODES``: the closed list of per-device outcomes a supplier records, each mapped to what
  the DCC tells it (a DUIS response or alert), and whether it counts against the firmware;
- ``OutcomeReport``: what leaves a supplier, one per supplier per period. Counts per image and
  outcome only: no device ID is in it, by construction (there is no field to put one in). It
  travels as a DSSE envelope signed with the supplier's organisation key, the P-256 key of the
  certificate it registered, so the provider checks it against the registry and nothing else;
- ``OutcomesDocument``: ``cfl/outcomes.json``, signed by the online ``cfl-provider`` role: per
  image, devices attempted, counts by outcome, failure rate and how many suppliers reported, plus
  the append-only list of holds and releases that the policy and the provider recorded;
- ``OutcomePolicy`` and ``due_holds``: the one rule that puts failing firmware on hold.

Why deliveries that never arrived do not count against an image: ``not-retrieved`` and ``timeout``
say the device did not get the image (communications, a DCC backlog), not that the image failed.
A regional outage must not hold good firmware for every supplier, so the failure rate is failures
over devices the image reached (``delivered``), and the minimum device count applies to those too.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.custom import format_timestamp, parse_timestamp
from metadata_templates.errors import field_error
from metadata_templates.naming import OUTCOMES_TARGET_PATH as OUTCOMES_TARGET_PATH
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
MAX_REASON_LENGTH = 500

_SHA256 = re.compile(r"[0-9a-f]{64}")
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

    def _of(self, kind: str) -> int:
        return sum(n for code, n in self.outcomes.items() if OUTCOME_CODES[code].kind == kind)

    @property
    def failures(self) -> int:
        return self._of(FAILURE)

    @property
    def delivered(self) -> int:
        """Devices the image reached: every outcome but the undelivered ones."""
        return self.attempted - self._of(UNDELIVERED)

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
        _only(doc, {"schema_version", "type", "entity_id", "period", "created", "images"}, "report")
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
        created = _timestamp(doc.get("created"), "report.created")
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
            _only(item, {"target", "sha256", "outcomes"}, where)
            target = item.get("target")
            if not isinstance(target, str) or not is_image_target_path(target):
                raise ValueError(field_error(f"{where}.target", target, "an image target path"))
            if target in seen:
                raise ValueError(field_error(f"{where}.target", target, "each image listed once"))
            seen.add(target)
            sha = item.get("sha256")
            if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
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


# --- the policy and the provider's document -----------------------------------------------------


@dataclass(frozen=True)
class OutcomePolicy:
    """When the provider's ingest holds an image by itself.

    More than ``max_failure_rate`` of at least ``min_devices`` delivered devices, reported by at
    least ``min_suppliers`` suppliers. Two suppliers, because one supplier's broken head-end (or
    one dishonest report) must not take an image from every other supplier; 500 devices because
    2% of a pilot of 50 is one unlucky meter.
    """

    max_failure_rate: float = 0.02
    min_devices: int = 500
    min_suppliers: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_failure_rate": self.max_failure_rate,
            "min_devices": self.min_devices,
            "min_suppliers": self.min_suppliers,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str = "outcomes policy") -> OutcomePolicy:
        """Raises: ValueError naming the field."""
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, doc, "an object"))
        _only(doc, {"max_failure_rate", "min_devices", "min_suppliers"}, where)
        rate = doc.get("max_failure_rate", cls.max_failure_rate)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate < 1:
            raise ValueError(field_error(f"{where}.max_failure_rate", rate, "a number in (0, 1)"))
        values = {}
        for name, default in (("min_devices", cls.min_devices), ("min_suppliers", 2)):
            value = doc.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**8:
                raise ValueError(field_error(f"{where}.{name}", value, "a whole number >= 1"))
            values[name] = value
        return cls(float(rate), values["min_devices"], values["min_suppliers"])

    def exceeded(self, figures: Figures, suppliers: int) -> bool:
        return (
            suppliers >= self.min_suppliers
            and figures.delivered >= self.min_devices
            and figures.failure_rate > self.max_failure_rate
        )

    def describe(self) -> str:
        return (
            f"more than {self.max_failure_rate:.1%} failures over at least {self.min_devices} "
            f"delivered devices from at least {self.min_suppliers} suppliers"
        )


DEFAULT_OUTCOME_POLICY = OutcomePolicy()

ACTION_HOLD = "hold"
ACTION_RELEASE = "release"
BY_POLICY = "policy"
BY_PROVIDER = "provider"


@dataclass(frozen=True)
class ImageOutcomes:
    """The combined figures of one image in the published document."""

    target: str
    sha256: str
    figures: Figures
    suppliers: int  # how many distinct suppliers reported it
    reports: int

    def to_dict(self) -> dict[str, Any]:
        f = self.figures
        return {
            "target": self.target,
            "sha256": self.sha256,
            "attempted": f.attempted,
            "delivered": f.delivered,
            "failures": f.failures,
            "failure_rate": round(f.failure_rate, 6),
            "outcomes": dict(sorted(f.outcomes.items())),
            "suppliers": self.suppliers,
            "reports": self.reports,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ImageOutcomes:
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, type(doc).__name__, "an object"))
        target, sha = doc.get("target"), doc.get("sha256")
        if not isinstance(target, str) or not is_image_target_path(target):
            raise ValueError(field_error(f"{where}.target", target, "an image target path"))
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise ValueError(field_error(f"{where}.sha256", sha, "64 lower-case hex digits"))
        counts = checked_counts(doc.get("outcomes"), f"{where}.outcomes")
        whole = {}
        for name in ("suppliers", "reports"):
            value = doc.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(field_error(f"{where}.{name}", value, "a whole number >= 1"))
            whole[name] = value
        return cls(target, sha, Figures(counts), whole["suppliers"], whole["reports"])


@dataclass(frozen=True)
class HoldEvent:
    """A hold (by the policy or the provider) or a release of one, with the figures it saw."""

    target: str
    sha256: str
    action: str  # ACTION_HOLD | ACTION_RELEASE
    by: str  # BY_POLICY | BY_PROVIDER
    at: str
    reason: str
    outcomes: Mapping[str, int] = field(default_factory=dict)  # the image's counts at the time

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sha256": self.sha256,
            "action": self.action,
            "by": self.by,
            "at": self.at,
            "reason": self.reason,
            "outcomes": dict(sorted(self.outcomes.items())),
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> HoldEvent:
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, type(doc).__name__, "an object"))
        texts = {}
        for name in ("target", "sha256", "action", "by", "at", "reason"):
            value = doc.get(name)
            if not isinstance(value, str):
                raise ValueError(field_error(f"{where}.{name}", value, "a string"))
            texts[name] = value
        if texts["action"] not in (ACTION_HOLD, ACTION_RELEASE):
            raise ValueError(field_error(f"{where}.action", texts["action"], "hold or release"))
        if texts["by"] not in (BY_POLICY, BY_PROVIDER):
            raise ValueError(field_error(f"{where}.by", texts["by"], "policy or provider"))
        _timestamp(texts["at"], f"{where}.at")
        raw = doc.get("outcomes", {})
        counts = checked_counts(raw, f"{where}.outcomes") if raw else {}
        return cls(outcomes=counts, **texts)

    @property
    def figures(self) -> Figures:
        return Figures(self.outcomes)


@dataclass(frozen=True)
class OutcomesDocument:
    """``cfl/outcomes.json``: combined figures per image and every hold and release, oldest first."""

    updated: str
    policy: OutcomePolicy = DEFAULT_OUTCOME_POLICY
    images: tuple[ImageOutcomes, ...] = ()
    events: tuple[HoldEvent, ...] = ()

    def image(self, target: str) -> ImageOutcomes | None:
        return next((i for i in self.images if i.target == target), None)

    def holds(self) -> dict[str, HoldEvent]:
        """Target -> the hold in force (an image whose last event is a hold)."""
        last: dict[str, HoldEvent] = {}
        for event in self.events:
            last[event.target] = event
        return {t: e for t, e in last.items() if e.action == ACTION_HOLD}

    def last_release(self, target: str) -> HoldEvent | None:
        found = [e for e in self.events if e.target == target and e.action == ACTION_RELEASE]
        return found[-1] if found else None

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "updated": self.updated,
            "policy": self.policy.to_dict(),
            "images": [i.to_dict() for i in sorted(self.images, key=lambda i: i.target)],
            "events": [e.to_dict() for e in self.events],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> OutcomesDocument:
        """Parse a published document. Unknown top-level fields are tolerated (a later provider
        may add some; this reader ignores them), wrong known ones are not.

        Raises:
            ValueError: naming the field, the value found and the value expected.
        """
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"outcomes.json: not JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(field_error("outcomes.schema_version", found, str(SCHEMA_VERSION)))
        updated = _timestamp(doc.get("updated"), "outcomes.updated")
        policy = OutcomePolicy.from_dict(doc.get("policy"), "outcomes.policy")
        images, events = doc.get("images"), doc.get("events")
        if not isinstance(images, list):
            raise ValueError(field_error("outcomes.images", images, "a list"))
        if not isinstance(events, list):
            raise ValueError(field_error("outcomes.events", events, "a list"))
        return cls(
            updated,
            policy,
            tuple(
                ImageOutcomes.from_dict(x, f"outcomes.images[{i}]") for i, x in enumerate(images)
            ),
            tuple(HoldEvent.from_dict(x, f"outcomes.events[{i}]") for i, x in enumerate(events)),
        )


def combine(reports: Iterable[OutcomeReport]) -> dict[str, ImageOutcomes]:
    """Target -> the combined figures of every report that lists it."""
    figures: dict[str, Figures] = {}
    shas: dict[str, str] = {}
    suppliers: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for report in reports:
        for image in report.images:
            figures[image.target] = figures.get(image.target, Figures({})).plus(image.outcomes)
            shas[image.target] = image.sha256
            suppliers.setdefault(image.target, set()).add(report.entity_id)
            counts[image.target] = counts.get(image.target, 0) + 1
    return {
        t: ImageOutcomes(t, shas[t], f, len(suppliers[t]), counts[t]) for t, f in figures.items()
    }


def due_holds(
    images: Mapping[str, ImageOutcomes],
    document: OutcomesDocument,
    policy: OutcomePolicy,
    supplier_counts_since: Mapping[str, int] | None = None,
) -> list[ImageOutcomes]:
    """The images the policy puts on hold now: not held already, and over the threshold on the
    evidence since the provider last released them (all of it when never released). A release
    answers the evidence it saw; only new failures bring the image back on hold.

    ``supplier_counts_since`` gives, per target, how many suppliers reported after its last
    release (the caller knows which reports came later); without it the image's total is used.
    """
    held = document.holds()
    due = []
    for target, image in sorted(images.items()):
        if target in held:
            continue
        released = document.last_release(target)
        figures = image.figures if released is None else image.figures.minus(released.figures)
        suppliers = image.suppliers
        if released is not None and supplier_counts_since is not None:
            suppliers = supplier_counts_since.get(target, 0)
        if policy.exceeded(figures, suppliers):
            due.append(image)
    return due


def hold_reason(image: ImageOutcomes, policy: OutcomePolicy) -> str:
    """The recorded reason of a policy hold: the figures and the rule they broke."""
    f = image.figures
    return (
        f"{f.failures} of {f.delivered} delivered devices failed ({f.failure_rate:.1%}) across "
        f"{image.suppliers} suppliers; the policy holds an image at {policy.describe()}"
    )


def new_event(
    image: ImageOutcomes | None,
    target: str,
    sha256: str,
    action: str,
    by: str,
    *,
    now: datetime,
    reason: str,
) -> HoldEvent:
    outcomes = dict(image.figures.outcomes) if image is not None else {}
    return HoldEvent(target, sha256, action, by, format_timestamp(now), reason, outcomes)


def _timestamp(value: Any, where: str) -> str:
    if isinstance(value, str):
        try:
            parse_timestamp(value)
            return value
        except ValueError:
            pass
    raise ValueError(field_error(where, value, "a UTC timestamp YYYY-MM-DDTHH:MM:SSZ"))


def _only(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
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
