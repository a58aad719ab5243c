"""Security advisories: what a manufacturer signs about a vulnerability in firmware it lodged.

SEC Section G (G3.17-G3.20) makes a manufacturer that identifies a vulnerability responsible for it
reaching the suppliers of affected meters, many of whom have no relationship with it. An advisory
is a document the manufacturer signs under its own delegation, like an image: a target of its role
at ``<MFR>/CFL-<MFR>-<YYYY>-<NNNN>.r<N>.advisory.json`` (one path segment below the prefix, so the
delegation pattern ``<MFR>/*`` covers it). Each revision is a new target; none is ever replaced or
removed (the gateway's ``role-content-altered``), and the newest revision is the advisory.

Two forms, one module:

- the **authored** form, ``ADVISORY.json`` as the manufacturer writes it (``parse_authored``): no
  computed fields, ``revision`` optional (``cfl-repo advisory submit`` takes the next one);
- the **published** form, the signed target's bytes (``Advisory.from_bytes``): every field, with the
  CVSS score and severity computed by the maintained ``cvss`` library (RedHatProductSecurity) and
  checked again on every read, so nobody can sign "low" over a critical vector.

Pure: bytes and values in, values out. Every problem is an ``AdvisoryError`` naming the field, the
value found and the value expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.errors import field_error

STATUSES = ("investigating", "affected", "fixed")
# The CVSS qualitative rating scale (the same bands in v3.1 and v4.0), lowest first.
SEVERITIES = ("none", "low", "medium", "high", "critical")
CVSS_VERSIONS = ("3.1", "4.0")
ADVISORY_SUFFIX = ".advisory.json"
# Size caps: an advisory is a few kilobytes; these keep a hostile one from costing the gateway,
# the site or a supplier's client anything that matters.
MAX_ADVISORY_BYTES = 256 * 1024
MAX_REVISION = 9999
LIMITS = {
    "title": 200,
    "summary": 20_000,
    "workaround": 20_000,
    "detail": 100_000,
}
MAX_LIST = {"cve": 100, "affected_cpl_entries": 2000, "fixed_by": 500}

ID_PATTERN = re.compile(r"CFL-([0-9A-F]{4})-(\d{4})-(\d{4})")
_CVE = re.compile(r"CVE-\d{4}-\d{4,19}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CPL_ID = re.compile(r"[^\s;]{1,64}")
_TARGET = re.compile(r"[0-9A-F]{4}/[A-Za-z0-9._-]{1,200}")
_PATH = re.compile(r"([0-9A-F]{4})/(CFL-[0-9A-F]{4}-\d{4}-\d{4})\.r([1-9]\d{0,3})\.advisory\.json")

# The fields of ADVISORY.json (authored form); the published form adds the computed ones.
REQUIRED = ("id", "title", "summary", "cvss", "affected_cpl_entries", "status", "published")
OPTIONAL = ("revision", "cve", "fixed_by", "workaround", "updated", "disclosure", "detail")
COMPUTED = ("schema_version", "manufacturer_id", "cvss_version", "score", "severity")


class AdvisoryError(ValueError):
    """An advisory document, vector or path is not of the advisory format."""


# --------------------------------------------------------------------------------- target paths


def advisory_target_path(advisory_id: str, revision: int) -> str:
    """The manufacturer-signed target of one revision: ``121D/CFL-121D-2026-0001.r2.advisory.json``."""
    match = ID_PATTERN.fullmatch(advisory_id)
    if match is None:
        raise AdvisoryError(field_error("id", advisory_id, "CFL-<MFR>-<YYYY>-<NNNN>"))
    return f"{match.group(1)}/{advisory_id}.r{revision}{ADVISORY_SUFFIX}"


def parse_advisory_target_path(path: str) -> tuple[str, str, int] | None:
    """(manufacturer ID, advisory ID, revision) of an advisory target path, or None."""
    match = _PATH.fullmatch(path)
    if match is None or match.group(2)[4:8] != match.group(1):
        return None  # an advisory of one manufacturer under another's prefix
    return match.group(1), match.group(2), int(match.group(3))


def is_advisory_target_path(path: str) -> bool:
    """True for a manufacturer's advisory target (``<MFR>/CFL-<MFR>-...r<N>.advisory.json``)."""
    return parse_advisory_target_path(path) is not None


def latest_revisions(paths: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Advisory ID -> (highest revision, its target path), from any list of target paths."""
    latest: dict[str, tuple[int, str]] = {}
    for path in paths:
        parsed = parse_advisory_target_path(path)
        if parsed is None:
            continue
        _mfr, advisory_id, revision = parsed
        if revision > latest.get(advisory_id, (0, ""))[0]:
            latest[advisory_id] = (revision, path)
    return latest


# ------------------------------------------------------------------------------------------ CVSS


@dataclass(frozen=True)
class Severity:
    """A CVSS vector scored by the ``cvss`` library.

    Attributes:
        vector: the vector as the library normalises it (metric order of the specification).
        version: ``3.1`` or ``4.0``.
        score: the base score (v3.1) or the CVSS-B/BT/BE/BTE score the vector's metrics give (v4.0).
        rating: the qualitative rating, lower case (``SEVERITIES``).
    """

    vector: str
    version: str
    score: float
    rating: str


def rating_of(score: float) -> str:
    """The CVSS qualitative rating of a score (the same bands in v3.1 and v4.0)."""
    if score == 0:
        return "none"
    if score < 4.0:
        return "low"
    if score < 7.0:
        return "medium"
    if score < 9.0:
        return "high"
    return "critical"


def severity_rank(rating: str) -> int:
    """0 (none) to 4 (critical), for "at or above" comparisons.

    Raises:
        AdvisoryError: not one of ``SEVERITIES``.
    """
    try:
        return SEVERITIES.index(rating)
    except ValueError as e:
        raise AdvisoryError(
            field_error("severity", rating, "one of " + ", ".join(SEVERITIES))
        ) from e


def score_cvss(vector: str, where: str = "cvss") -> Severity:
    """Score a CVSS v3.1 or v4.0 vector with the maintained ``cvss`` library.

    Raises:
        AdvisoryError: another version, or a vector the library refuses (its words kept).
    """
    # Imported here: only code that scores pays for the calculator's tables.
    from cvss import CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    text = vector.strip() if isinstance(vector, str) else vector
    if not isinstance(text, str) or not text.startswith(("CVSS:3.1/", "CVSS:4.0/")):
        raise AdvisoryError(
            field_error(
                where, _short(vector), "a CVSS v3.1 (CVSS:3.1/...) or v4.0 (CVSS:4.0/...) vector"
            )
        )
    try:
        if text.startswith("CVSS:3.1/"):
            v3 = CVSS3(text)
            score, clean, version = v3.base_score, v3.clean_vector(), "3.1"
        else:
            v4 = CVSS4(text)
            score, clean, version = v4.base_score, v4.clean_vector(), "4.0"
    except CVSSError as e:
        raise AdvisoryError(
            f"{field_error(where, _short(vector), 'a valid CVSS vector')} ({e})"
        ) from e
    value = float(Decimal(score).quantize(Decimal("0.1")))
    return Severity(clean, version, value, rating_of(value))


# ----------------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Advisory:
    """One revision of an advisory, in its published (signed) form.

    ``detail`` is the technical detail when it is public; ``detail_sha256`` commits to the
    plaintext of detail encrypted to the entitled suppliers (``detail_target`` names the
    ciphertext target), and ``disclosure`` is the date after which the detail is to be public.
    """

    id: str
    revision: int
    title: str
    summary: str
    cvss: str
    cvss_version: str
    score: float
    severity: str
    affected_cpl_entries: tuple[str, ...]
    status: str
    published: str
    updated: str
    cve: tuple[str, ...] = ()
    fixed_by: tuple[str, ...] = ()
    workaround: str = ""
    disclosure: str | None = None
    detail: str | None = None
    detail_target: str | None = None
    detail_sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def manufacturer_id(self) -> str:
        match = ID_PATTERN.fullmatch(self.id)
        assert match is not None  # checked on the way in
        return match.group(1)

    @property
    def target_path(self) -> str:
        return advisory_target_path(self.id, self.revision)

    @property
    def severity_rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "manufacturer_id": self.manufacturer_id,
            "revision": self.revision,
            "title": self.title,
            "summary": self.summary,
            "cve": list(self.cve),
            "cvss": self.cvss,
            "cvss_version": self.cvss_version,
            "score": self.score,
            "severity": self.severity,
            "affected_cpl_entries": list(self.affected_cpl_entries),
            "fixed_by": list(self.fixed_by),
            "status": self.status,
            "workaround": self.workaround,
            "published": self.published,
            "updated": self.updated,
        }
        for name in ("disclosure", "detail", "detail_target", "detail_sha256"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        return doc

    def to_bytes(self) -> bytes:
        """The signed target's bytes: sorted keys, two-space indent, UTF-8, a final newline."""
        return (
            json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "advisory") -> Advisory:
        """Read and check a published advisory, computed fields recomputed.

        Raises:
            AdvisoryError: not JSON, too large, unknown or missing fields, a bad value, or a
                score, severity or version that the vector does not give.
        """
        doc = _load(data, where)
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise AdvisoryError(
                field_error(
                    f"{where}: schema_version", doc.get("schema_version"), str(SCHEMA_VERSION)
                )
            )
        allowed = set(REQUIRED) | set(OPTIONAL) | set(COMPUTED) | {"detail_target", "detail_sha256"}
        _no_unknown(doc, allowed, where)
        advisory = _checked(doc, where, revision_required=True)
        for name in ("manufacturer_id", "cvss_version", "score", "severity"):
            want = {
                "manufacturer_id": advisory.manufacturer_id,
                "cvss_version": advisory.cvss_version,
                "score": advisory.score,
                "severity": advisory.severity,
            }[name]
            if doc.get(name) != want or isinstance(doc.get(name), bool):
                raise AdvisoryError(
                    field_error(
                        f"{where}: {name}",
                        doc.get(name),
                        f"{want!r} (computed from the id and cvss)",
                    )
                )
        if doc.get("cvss") != advisory.cvss:
            raise AdvisoryError(
                field_error(
                    f"{where}: cvss", doc.get("cvss"), f"{advisory.cvss!r} (the normalised vector)"
                )
            )
        return advisory


def parse_authored(
    data: bytes, *, manufacturer_id: str, today: str, where: str = "ADVISORY.json"
) -> Advisory:
    """Read the manufacturer's ADVISORY.json and complete it (score, severity, dates).

    ``revision`` may be absent (0 here: the caller takes the next one); ``updated`` defaults to
    ``today``.

    Raises:
        AdvisoryError: a bad field, or an ID of another manufacturer than ``manufacturer_id``.
    """
    doc = _load(data, where)
    _no_unknown(doc, set(REQUIRED) | set(OPTIONAL), where, computed=True)
    doc = dict(doc)
    doc.setdefault("updated", today)
    advisory = _checked(doc, where, revision_required=False)
    if advisory.manufacturer_id != manufacturer_id:
        raise AdvisoryError(
            field_error(
                f"{where}: id",
                advisory.id,
                f"an ID of manufacturer {manufacturer_id} (CFL-{manufacturer_id}-<YYYY>-<NNNN>)",
            )
        )
    return advisory


def with_revision(advisory: Advisory, revision: int) -> Advisory:
    """The same advisory as revision ``revision``.

    Raises:
        AdvisoryError: a revision outside 1..MAX_REVISION.
    """
    if not 1 <= revision <= MAX_REVISION:
        raise AdvisoryError(field_error("revision", revision, f"1..{MAX_REVISION}"))
    return replace(advisory, revision=revision)


def _load(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_ADVISORY_BYTES:
        raise AdvisoryError(
            field_error(
                f"{where}: size", f"{len(data)} bytes", f"at most {MAX_ADVISORY_BYTES} bytes"
            )
        )
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise AdvisoryError(f"{where}: found no JSON ({_short(e)}), expected a JSON object") from e
    if not isinstance(doc, dict):
        raise AdvisoryError(field_error(where, type(doc).__name__, "a JSON object"))
    return doc


def _no_unknown(
    doc: Mapping[str, Any], allowed: set[str], where: str, computed: bool = False
) -> None:
    unknown = sorted(set(doc) - allowed)
    if computed:
        made = [name for name in unknown if name in COMPUTED]
        if made:
            raise AdvisoryError(
                field_error(
                    f"{where}: {made[0]}",
                    doc[made[0]],
                    "no such field (it is computed from id and cvss)",
                )
            )
    if unknown:
        raise AdvisoryError(
            field_error(f"{where}: fields", unknown[:5], "only " + ", ".join(sorted(allowed)))
        )
    missing = [name for name in REQUIRED if name not in doc]
    if missing:
        raise AdvisoryError(
            field_error(
                f"{where}: fields", f"no {missing[0]}", "every one of " + ", ".join(REQUIRED)
            )
        )


def _checked(doc: Mapping[str, Any], where: str, *, revision_required: bool) -> Advisory:
    advisory_id = _text(doc, "id", where, 64)
    if ID_PATTERN.fullmatch(advisory_id) is None:
        raise AdvisoryError(
            field_error(
                f"{where}: id", advisory_id, "CFL-<MFR>-<YYYY>-<NNNN> (MFR 4 upper-case hex digits)"
            )
        )
    revision = doc.get("revision", None if revision_required else 0)
    least = 1 if revision_required or "revision" in doc else 0
    if (
        not isinstance(revision, int)
        or isinstance(revision, bool)
        or not least <= revision <= MAX_REVISION
    ):
        raise AdvisoryError(
            field_error(f"{where}: revision", revision, f"an integer 1..{MAX_REVISION}")
        )
    severity = score_cvss(doc["cvss"], f"{where}: cvss")
    status = doc["status"]
    if status not in STATUSES:
        raise AdvisoryError(
            field_error(f"{where}: status", _short(status), "one of " + ", ".join(STATUSES))
        )
    cve = _list(doc, "cve", where, _CVE, "CVE-<YYYY>-<NNNN...>")
    affected = _list(doc, "affected_cpl_entries", where, _CPL_ID, "CPL Entry IDs")
    if not affected:
        raise AdvisoryError(
            field_error(f"{where}: affected_cpl_entries", [], "at least one CPL Entry ID")
        )
    fixed_by = _list(doc, "fixed_by", where, _TARGET, "image target paths (<MFR>/<name>.ota)")
    if status == "fixed" and not fixed_by:
        raise AdvisoryError(
            field_error(f"{where}: fixed_by", [], "at least one image target for status 'fixed'")
        )
    published = _date(doc, "published", where)
    updated = _date(doc, "updated", where) if "updated" in doc else published
    if updated < published:
        raise AdvisoryError(
            field_error(f"{where}: updated", updated, f"a date on or after published ({published})")
        )
    disclosure = _date(doc, "disclosure", where) if doc.get("disclosure") is not None else None
    detail = (
        _text(doc, "detail", where, LIMITS["detail"]) if doc.get("detail") is not None else None
    )
    detail_target = doc.get("detail_target")
    detail_sha = doc.get("detail_sha256")
    if (detail_target is None) != (detail_sha is None):
        raise AdvisoryError(
            field_error(
                f"{where}: detail_target/detail_sha256",
                [detail_target, detail_sha],
                "both or neither",
            )
        )
    if detail_target is not None:
        expected = f"{advisory_target_path(advisory_id, revision or 1)}.detail.jwe"
        if not isinstance(detail_target, str) or (revision and detail_target != expected):
            raise AdvisoryError(
                field_error(f"{where}: detail_target", _short(detail_target), repr(expected))
            )
        if not isinstance(detail_sha, str) or re.fullmatch(r"[0-9a-f]{64}", detail_sha) is None:
            raise AdvisoryError(
                field_error(
                    f"{where}: detail_sha256", _short(detail_sha), "64 lower-case hex digits"
                )
            )
        if detail is not None:
            raise AdvisoryError(
                field_error(
                    f"{where}: detail", "plaintext beside encrypted detail", "one of the two"
                )
            )
    return Advisory(
        id=advisory_id,
        revision=revision,
        title=_text(doc, "title", where, LIMITS["title"], required=True),
        summary=_text(doc, "summary", where, LIMITS["summary"], required=True),
        cvss=severity.vector,
        cvss_version=severity.version,
        score=severity.score,
        severity=severity.rating,
        affected_cpl_entries=affected,
        status=status,
        published=published,
        updated=updated,
        cve=cve,
        fixed_by=fixed_by,
        workaround=_text(doc, "workaround", where, LIMITS["workaround"])
        if "workaround" in doc
        else "",
        disclosure=disclosure,
        detail=detail,
        detail_target=detail_target,
        detail_sha256=detail_sha,
    )


def _text(doc: Mapping[str, Any], name: str, where: str, limit: int, required: bool = False) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        found = (
            f"{len(value)} characters"
            if isinstance(value, str) and len(value) > limit
            else _short(value)
        )
        raise AdvisoryError(
            field_error(
                f"{where}: {name}",
                found,
                f"a{' non-empty' if required else ''} string of at most {limit} characters",
            )
        )
    return value


def _list(
    doc: Mapping[str, Any], name: str, where: str, pattern: re.Pattern[str], what: str
) -> tuple[str, ...]:
    value = doc.get(name, [])
    limit = MAX_LIST[name]
    if not isinstance(value, list) or len(value) > limit:
        found = f"{len(value)} items" if isinstance(value, list) else _short(value)
        raise AdvisoryError(
            field_error(f"{where}: {name}", found, f"a list of at most {limit} {what}")
        )
    for item in value:
        if not isinstance(item, str) or pattern.fullmatch(item) is None:
            raise AdvisoryError(field_error(f"{where}: {name}", _short(item), f"a list of {what}"))
    if len(set(value)) != len(value):
        raise AdvisoryError(field_error(f"{where}: {name}", "duplicates", "each item once"))
    return tuple(value)


def _date(doc: Mapping[str, Any], name: str, where: str) -> str:
    value = doc.get(name)
    try:
        if not isinstance(value, str) or _DATE.fullmatch(value) is None:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise AdvisoryError(
            field_error(f"{where}: {name}", _short(value), "a date YYYY-MM-DD")
        ) from None
    return value


def _short(value: object, limit: int = 80) -> str:
    """A value for a message, cut short: a hostile document must not make a megabyte line."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
