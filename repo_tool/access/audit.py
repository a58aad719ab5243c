"""`cfl-repo audit`: who downloaded which image, and whether they had the right to (option 3.5a).

Reads the access logs `cfl-repo host nginx` configures (one JSON object per line, format
``cfl-access-1``), plain, rotated or gzipped, one line at a time, and judges every request for an
image against the supplier registry (who held the certificate, when, with which User Roles), the
access policy, and optionally an inventory extract (was the supplier responsible, that day, for a
device the image applies to, by the contract's applicability rule).

Memory is bounded by the registry, the library and the variety of the inventory, never by the size
of the logs: each judged line is handed to the caller and forgotten but for per-(caller, target)
counts the readable report needs.

Findings (stable codes, ARCHITECTURE.md "Stable outputs"):
  ``unregistered-certificate``  no certificate, or one the registry did not hold at that time;
  ``revoked-certificate``       the organisation's registration was revoked before the request;
  ``outside-role``              the organisation's User Roles do not cover the image's device type;
  ``no-applicable-device``      (with an inventory) the organisation was responsible for no device
                                the image applies to on that day. A device that already runs the
                                image's firmware counts as one it applies to: the extract shows
                                devices after the upgrade the download was for.
  ``pilot-not-released``        (issue 22) the image was still in a pilot that did not name the
                                organisation at the time of the request (the host's 403 "this image
                                is in a pilot and not yet released"; a 200 here is a host that was
                                not regenerated after the pilot's ingest).
"""

from __future__ import annotations

import gzip
import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tuf.api.metadata import Targets

from metadata_templates import naming
from metadata_templates.applicability import ApplicabilityIndex
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo, format_timestamp, parse_timestamp
from metadata_templates.errors import UnavailableError
from metadata_templates.releases import ReleaseList, release_state
from metadata_templates.suppliers import (
    DEFAULT_ACCESS_POLICY,
    Supplier,
    SupplierRegistry,
    certificate_sha256,
    roles_for,
)
from repo_tool.access.certificates import certificate_sha1
from repo_tool.access.inventory import UNREADABLE, DeviceKind, InventoryIndex
from repo_tool.access.long_lines import log_lines
from repo_tool.entitle.judge import EntitlementJudge

LOG_FORMAT = "cfl-access-1"
UNREGISTERED = "unregistered-certificate"
REVOKED = "revoked-certificate"
OUTSIDE_ROLE = "outside-role"
NO_APPLICABLE_DEVICE = "no-applicable-device"
PILOT_NOT_RELEASED = "pilot-not-released"
MAX_REPORTED_MALFORMED = 20

_RECORD_START = b'{"format":"' + LOG_FORMAT.encode() + b'"'
_TARGETS_PATH = b'"path":"/targets/'
_IMAGE_BLOB = re.compile(
    r"/targets/([0-9A-F]{4})/([0-9a-f]{64})\.(([A-Z0-9]+)-[0-9A-F]{4}-[0-9A-F]{8}-[0-9a-f]{16}\.ota)"
)


@dataclass(frozen=True)
class LibraryImage:
    """An image target as the audit needs it."""

    target: str
    sha256: str
    info: CflTargetInfo


@dataclass(frozen=True)
class AuditLibrary:
    """The library's images by stored blob name, and when each organisation may fetch each."""

    images: Mapping[str, LibraryImage]  # target path -> image
    cpl: CplDocument | None
    releases: ReleaseList = field(default_factory=ReleaseList)  # issue 22

    @classmethod
    def of(
        cls,
        roles: Iterable[Targets],
        cpl: CplDocument | None,
        releases: ReleaseList | None = None,
    ) -> AuditLibrary:
        """Every image target of ``roles`` whose ``custom.cfl`` reads (others are left out), and the
        release document that says until when a pilot image was its pilot suppliers' only."""
        images: dict[str, LibraryImage] = {}
        for role in roles:
            for path, target in role.targets.items():
                if not naming.is_image_target_path(path):
                    continue
                try:
                    info = CflTargetInfo.from_target_custom(dict(target.custom))
                except (ValueError, TypeError, KeyError):
                    continue
                images[path] = LibraryImage(path, target.hashes["sha256"], info)
        return cls(images, cpl, releases if releases is not None else ReleaseList())


def entitlement_days(
    library: AuditLibrary, inventory: InventoryIndex
) -> dict[tuple[str, str], date]:
    """(supplier Entity ID, target) -> the first day the supplier was responsible for a device the
    image applies to (or that already runs it). One rule lookup per distinct device kind."""
    index: ApplicabilityIndex[str] = ApplicabilityIndex(library.cpl)
    index.add_all((image.target, image.target, image.info) for image in library.images.values())
    running: dict[DeviceKind, list[str]] = {}
    for image in library.images.values():
        info = image.info
        for entry in info.cpl_entries:
            kind = DeviceKind(
                info.device_type, info.manufacturer_id, entry.model_id, entry.hardware_version,
                info.firmware_version,
            )  # fmt: skip
            running.setdefault(kind, []).append(image.target)
    days: dict[tuple[str, str], date] = {}
    for supplier, kinds in inventory.since.items():
        for kind, day in kinds.items():
            for target in (*index.applicable(kind), *running.get(kind, ())):
                key = (supplier, target)
                known = days.get(key)
                if known is None or day < known:
                    days[key] = day
    return days


class AccessRecord(NamedTuple):
    """One request for an image, as the host logged it (a tuple: millions are made per audit)."""

    time: datetime
    certificate_sha256: str | None
    certificate_sha1: str | None
    logged_entity_id: str | None
    path: str
    target: str
    device_type: str
    status: int
    bytes: int


class MalformedLineError(ValueError):
    """A log line that is not a whole ``cfl-access-1`` record."""


def _unregistered_sha256(escaped_pem: str) -> str | None:
    if not escaped_pem:
        return None
    try:
        cert = x509.load_pem_x509_certificate(urllib.parse.unquote(escaped_pem).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    return certificate_sha256(cert.public_bytes(Encoding.DER))


def _decoded(stripped: bytes) -> Any:
    """The line's JSON value, by orjson, or by the stdlib where the two would differ.

    Raises:
        MalformedLineError: not JSON.
    """
    try:
        doc = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return _stdlib_decoded(stripped)
    if type(doc) is dict and not all(type(v) in _PLAIN for v in doc.values()):
        # orjson reads an integer beyond 64 bits as a float; no field of a record is a float, a
        # list or an object, so such a line is refused either way, in the stdlib's words.
        return _stdlib_decoded(stripped)
    return doc


_PLAIN = frozenset({str, int, bool, type(None)})


def _stdlib_decoded(stripped: bytes) -> Any:
    """What orjson refuses but JSON allows (a lone surrogate escape, an integer beyond 64 bits) or
    nginx writes (``escape=json`` passes bytes >= 0x80 through, so a hostile path may not be
    UTF-8): read as the stdlib reads it, so both decoders judge a line alike.

    Raises:
        MalformedLineError: not JSON.
    """
    try:
        try:
            return json.loads(stripped)
        except UnicodeDecodeError:
            return json.loads(stripped.decode("utf-8", errors="replace"))
    except ValueError as e:
        raise MalformedLineError(f"not JSON ({e.args[0][:60]})") from e
    except RecursionError as e:  # one hostile line must not end the audit
        raise MalformedLineError("not JSON (nested too deeply)") from e


def parse_line(line: bytes) -> AccessRecord | None:
    """The image request on one log line, or None for any other request (metadata, site, ...).

    Raises:
        MalformedLineError: not a whole ``cfl-access-1`` record.
    """
    stripped = line.strip()
    if not stripped.startswith(_RECORD_START) or not stripped.endswith(b"}"):
        raise MalformedLineError(f"found {stripped[:40]!r}, expected a {LOG_FORMAT} JSON record")
    if _TARGETS_PATH not in stripped:
        return None  # fast path: metadata and site requests are most of a log
    doc = _decoded(stripped)
    if not isinstance(doc, dict):
        raise MalformedLineError(f"found {type(doc).__name__}, expected an object")
    try:
        path, status, size, when_text = doc["path"], doc["status"], doc["bytes"], doc["time"]
        sha256, sha1, entity = doc["certificate_sha256"], doc["certificate_sha1"], doc["entity_id"]
        escaped = doc["certificate"]
    except KeyError as e:
        raise MalformedLineError(
            f"{e.args[0]}: missing, expected in every {LOG_FORMAT} record"
        ) from e
    if not (
        type(path) is str
        and type(when_text) is str
        and type(sha256) is str
        and type(sha1) is str
        and type(entity) is str
        and type(escaped) is str
    ):
        texts = (path, when_text, sha256, sha1, entity, escaped)
        raise MalformedLineError(f"found {texts!r}, expected strings")
    match = _IMAGE_BLOB.fullmatch(path)
    if match is None:
        return None
    if type(status) is not int or type(size) is not int:
        raise MalformedLineError(f"status/bytes: found {status!r}/{size!r}, expected integers")
    try:
        when = datetime.fromisoformat(when_text).astimezone(UTC)
    except (ValueError, OverflowError) as e:  # an offset that leaves the calendar overflows
        raise MalformedLineError(f"time: found {when_text!r}, expected ISO 8601") from e
    return AccessRecord(
        time=when,
        certificate_sha256=sha256 or _unregistered_sha256(escaped),
        certificate_sha1=sha1 or None,
        logged_entity_id=entity or None,
        path=path,
        target=f"{match.group(1)}/{match.group(3)}",
        device_type=match.group(4),
        status=status,
        bytes=size,
    )


class Judged(NamedTuple):
    """One download entry of the report (the stable ``downloads[]`` shape)."""

    record: AccessRecord
    supplier: Supplier | None
    target: str | None
    entitled: bool | None
    findings: tuple[str, ...]
    # With the entitlement history: the basis of the right (estate, grace or None) and that the
    # history judged it, which adds the ``entitlement`` field to the entry.
    basis: str | None = None
    by_history: bool = False

    def to_dict(self) -> dict[str, Any]:
        return self._entry(format_timestamp(self.record.time))

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON, keys sorted (``cfl-repo audit --json``'s
        ``downloads[]``). The time goes to orjson as the UTC datetime it is, which writes it as
        ``format_timestamp`` does (seconds, ``Z``) without a strftime per entry."""
        try:
            return orjson.dumps(self._entry(self.record.time), option=_ENTRY_JSON).decode()
        except orjson.JSONEncodeError:
            # What JSON allows and orjson does not write: an integer beyond 64 bits, a lone
            # surrogate from a hostile line. The stdlib writes it (escaped), as it always did.
            return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def _entry(self, time: str | datetime) -> dict[str, Any]:
        r = self.record
        extra = {"entitlement": self.basis} if self.by_history else {}
        return {
            **extra,
            "time": time,
            "entity_id": self.supplier.entity_id if self.supplier else None,
            "certificate_sha256": self.supplier.certificate_sha256
            if self.supplier
            else r.certificate_sha256,
            "path": r.path,
            "target": self.target,
            "status": r.status,
            "bytes": r.bytes,
            "entitled": self.entitled,
            "findings": list(self.findings),
        }


_ENTRY_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


class Auditor:
    """Judges records against the registry, the policy, the library and (optionally) an inventory
    or the entitlement history (an inventory given wins: it is what the auditor asked for)."""

    def __init__(
        self,
        registry: SupplierRegistry,
        library: AuditLibrary,
        inventory: InventoryIndex | None = None,
        policy: Mapping[str, tuple[str, ...]] = DEFAULT_ACCESS_POLICY,
        entitlements: EntitlementJudge | None = None,
    ) -> None:
        self.policy = policy
        self.library = library
        self.by_sha256 = registry.by_certificate()
        self.by_sha1: dict[str, Supplier] = {}
        for supplier in registry.suppliers:
            cert = x509.load_pem_x509_certificate(supplier.certificate_pem.encode("ascii"))
            self.by_sha1[certificate_sha1(cert.public_bytes(Encoding.DER))] = supplier
        self.registered = {s.entity_id: parse_timestamp(s.registered) for s in registry.suppliers}
        self.revoked = {
            s.entity_id: parse_timestamp(s.revoked) for s in registry.suppliers if s.revoked
        }
        self.days = entitlement_days(library, inventory) if inventory is not None else None
        self.entitlements = entitlements if inventory is None else None
        self._roles_cover: dict[tuple[str, str], bool] = {}

    def _within_roles(self, supplier: Supplier, device_type: str) -> bool:
        """Whether the supplier's User Roles cover the device type (remembered per pair)."""
        key = (supplier.entity_id, device_type)
        within = self._roles_cover.get(key)
        if within is None:
            within = bool(set(supplier.roles) & set(roles_for(device_type, self.policy)))
            self._roles_cover[key] = within
        return within

    def supplier_of(self, record: AccessRecord) -> Supplier | None:
        if record.certificate_sha256 and record.certificate_sha256 in self.by_sha256:
            return self.by_sha256[record.certificate_sha256]
        if record.certificate_sha1:
            return self.by_sha1.get(record.certificate_sha1)
        return None

    def judge(self, record: AccessRecord) -> Judged:
        supplier = self.supplier_of(record)
        image = self.library.images.get(record.target)
        findings: list[str] = []
        if supplier is None or record.time < self.registered[supplier.entity_id]:
            findings.append(UNREGISTERED)
        else:
            revoked = self.revoked.get(supplier.entity_id)
            if revoked is not None and record.time >= revoked:
                findings.append(REVOKED)
            if not self._within_roles(supplier, record.device_type):
                findings.append(OUTSIDE_ROLE)
            if image is not None and image.info.pilot is not None:
                # The rule the host enforced, as the document stood at the time of the request.
                state = release_state(
                    image.info.pilot,
                    self.library.releases.as_of(record.time),
                    image.target,
                    record.time,
                )
                if not state.may_fetch(supplier.entity_id):
                    findings.append(PILOT_NOT_RELEASED)
        entitled: bool | None = None
        basis = None
        if self.days is not None:
            if supplier is not None:
                day = self.days.get((supplier.entity_id, record.target))
                if day is None or record.time.date() < day:
                    findings.append(NO_APPLICABLE_DEVICE)
            entitled = not findings
        elif self.entitlements is not None:
            entity = supplier.entity_id if supplier is not None else None
            verdict = self.entitlements.judge(entity, record.target, record.time)
            if verdict.record is not None:  # before the first import nothing was in force
                basis = verdict.basis
                if (
                    entity is not None
                    and basis is None
                    and self.entitlements.covers(record.device_type)
                ):
                    findings.append(NO_APPLICABLE_DEVICE)
                entitled = not findings
        return Judged(
            record=record,
            supplier=supplier,
            target=image.target if image else record.target,
            entitled=entitled,
            findings=tuple(findings),
            basis=basis,
            by_history=self.entitlements is not None,
        )


def open_log(path: Path) -> IO[bytes]:
    """A log file as bytes, gunzipped when it is gzip (by content, not by name).

    Raises:
        UnavailableError: it cannot be read.
    """
    try:
        handle: IO[bytes] = path.open("rb")
        magic = handle.read(2)
        handle.seek(0)
    except OSError as e:
        raise UnavailableError(f"{path}: cannot read ({e.strerror})") from e
    if magic == b"\x1f\x8b":  # a GzipFile never closes the file it is handed: let it own one
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return handle


@dataclass
class Malformed:
    """Lines that were not records: counted, the first few kept with where they were."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_REPORTED_MALFORMED:
            self.examples.append(f"{where}: {message}")


@dataclass
class Totals:
    """What a run saw, for the summary."""

    lines: int = 0
    requests: int = 0
    flagged: int = 0
    malformed: Malformed = field(default_factory=Malformed)


def judge_line(
    line: bytes, path: Path, number: int, auditor: Auditor, totals: Totals
) -> Judged | None:
    """One log line counted into ``totals`` and judged; None: blank, malformed, not a download."""
    totals.lines += 1
    try:
        record = parse_line(line) if line.strip() else None
    except MalformedLineError as e:
        totals.malformed.add(f"{path}:{number}", str(e))
        return None
    if record is None:
        return None
    judged = auditor.judge(record)
    totals.requests += 1
    if judged.findings:
        totals.flagged += 1
    return judged


def judged_lines(paths: Iterable[Path], auditor: Auditor, totals: Totals) -> Iterator[Judged]:
    """Judge every image request in ``paths``, in the order given, line by line.

    Raises:
        UnavailableError: a file cannot be read, or a gzip file is corrupt.
    """
    for path in paths:
        with open_log(path) as handle:
            number = 0
            try:
                for number, line in enumerate(log_lines(handle), start=1):
                    judged = judge_line(line, path, number, auditor, totals)
                    if judged is not None:
                        yield judged
            except UNREADABLE as e:
                raise UnavailableError(f"{path}: unreadable after line {number} ({e})") from e


@dataclass
class SupplierSummary:
    """Per organisation (or unregistered certificate): counts and per-target first/last times."""

    downloads: int = 0
    flagged: int = 0
    targets: dict[str, list[Any]] = field(default_factory=dict)  # target -> [count, first, last]
    flagged_examples: list[Judged] = field(default_factory=list)


MAX_FLAGGED_EXAMPLES = 50


@dataclass
class Summary:
    """Everything the readable report and the ``suppliers`` list need; bounded by callers x targets."""

    by_caller: dict[str, SupplierSummary] = field(default_factory=dict)

    @staticmethod
    def caller(judged: Judged) -> str:
        if judged.supplier is not None:
            return judged.supplier.entity_id
        sha = judged.record.certificate_sha256
        return f"certificate {sha}" if sha else "no certificate"

    def add(self, judged: Judged) -> None:
        entry = self.by_caller.setdefault(self.caller(judged), SupplierSummary())
        if 200 <= judged.record.status < 300:
            entry.downloads += 1
            target = judged.target or judged.record.path
            seen = entry.targets.get(target)
            when = judged.record.time
            if seen is None:
                entry.targets[target] = [1, when, when]
            else:
                seen[0] += 1
                seen[1] = min(seen[1], when)
                seen[2] = max(seen[2], when)
        if judged.findings:
            entry.flagged += 1
            if len(entry.flagged_examples) < MAX_FLAGGED_EXAMPLES:
                entry.flagged_examples.append(judged)

    def suppliers(self, registry: SupplierRegistry) -> list[dict[str, Any]]:
        """The stable ``suppliers[]`` list: every registered organisation, in registration order."""
        out = []
        for s in registry.suppliers:
            entry = self.by_caller.get(s.entity_id, SupplierSummary())
            out.append(
                {
                    "entity_id": s.entity_id,
                    "name": s.name,
                    "roles": list(s.roles),
                    "downloads": entry.downloads,
                    "flagged": entry.flagged,
                }
            )
        return out


def _safe(text: str) -> str:
    """Names and paths come from outside: never let one move the cursor or forge a report line."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def render_text(
    summary: Summary, registry: SupplierRegistry, totals: Totals, *, inventory: bool
) -> str:
    """The readable report."""
    lines = [
        f"audit: {totals.lines} log line(s), {totals.requests} image request(s), "
        f"{totals.flagged} flagged, {totals.malformed.count} malformed"
        + ("" if inventory else " (no --inventory: entitlement by device not checked)")
    ]
    known = {s.entity_id: s for s in registry.suppliers}
    order = [s.entity_id for s in registry.suppliers] + sorted(
        k for k in summary.by_caller if k not in known
    )
    for caller in order:
        entry = summary.by_caller.get(caller, SupplierSummary())
        supplier = known.get(caller)
        if supplier is not None:
            state = "active" if supplier.active else f"revoked {supplier.revoked}"
            title = f"{caller} {_safe(supplier.name)!r} ({'+'.join(supplier.roles)}, {state})"
        else:
            title = f"unregistered: {caller}"
        lines.append("")
        lines.append(f"{title}: {entry.downloads} download(s), {entry.flagged} flagged")
        for target, (count, first, last) in sorted(entry.targets.items()):
            lines.append(
                f"  {_safe(target)}  {count}x  {format_timestamp(first)} .. {format_timestamp(last)}"
            )
        for judged in entry.flagged_examples:
            r = judged.record
            lines.append(
                f"  FLAGGED {format_timestamp(r.time)} {_safe(judged.target or r.path)} "
                f"status {r.status}: {', '.join(judged.findings)}"
            )
        if entry.flagged > len(entry.flagged_examples):
            lines.append(f"  ... and {entry.flagged - len(entry.flagged_examples)} more flagged")
    if totals.malformed.count:
        lines.append("")
        lines.append(f"{totals.malformed.count} malformed line(s) left out:")
        lines.extend(f"  {_safe(example)}" for example in totals.malformed.examples)
        if totals.malformed.count > len(totals.malformed.examples):
            lines.append(
                f"  ... and {totals.malformed.count - len(totals.malformed.examples)} more"
            )
    return "\n".join(lines)
