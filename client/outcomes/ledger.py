"""The home's per-device ledger of delivery outcomes: ``HOME/outcomes/results.json``.

It is the only place device IDs are kept, and it never leaves the home (written owner-readable
only). Per image: its file SHA-256 and firmware version, and per device the latest (time, outcome);
a later time for the same (device, image) supersedes the earlier one (a retry), so recording the
same file twice changes nothing. It also remembers every report submitted (one per period: a
report is final), with its envelope kept beside it for an idempotent re-run.

Pure value plus ``load_ledger``/``save_ledger`` at the edge; callers hold the home's lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import parse_timestamp
from metadata_templates.errors import UnavailableError, VerificationError, field_error
from metadata_templates.outcomes import OUTCOME_CODES, Figures, period_bounds

LEDGER_DIR = "outcomes"
LEDGER_NAME = "results.json"
REPORTS_DIR = "reports"


def ledger_path(home: Path) -> Path:
    return home / LEDGER_DIR / LEDGER_NAME


def reports_dir(home: Path) -> Path:
    return home / LEDGER_DIR / REPORTS_DIR


@dataclass
class ImageLedger:
    """One image's recorded outcomes: device ID -> (time, outcome)."""

    sha256: str
    firmware_version: str
    devices: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    """A report this home produced: the period is final from then on."""

    period: str
    entity_id: str
    created: str
    envelope_sha256: str
    payload_sha256: str  # of the report's counts, to tell an unchanged re-run
    destination: str  # the --out file or the upload URL
    images: int
    devices: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "entity_id": self.entity_id,
            "created": self.created,
            "envelope_sha256": self.envelope_sha256,
            "payload_sha256": self.payload_sha256,
            "destination": self.destination,
            "images": self.images,
            "devices": self.devices,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Submission:
        return cls(
            period=str(doc["period"]),
            entity_id=str(doc["entity_id"]),
            created=str(doc["created"]),
            envelope_sha256=str(doc["envelope_sha256"]),
            payload_sha256=str(doc["payload_sha256"]),
            destination=str(doc["destination"]),
            images=int(doc["images"]),
            devices=int(doc["devices"]),
        )


@dataclass
class Ledger:
    images: dict[str, ImageLedger] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)

    def outcome(self, device_id: str, target: str) -> str | None:
        image = self.images.get(target)
        entry = None if image is None else image.devices.get(device_id)
        return None if entry is None else entry[1]

    def figures_in(self, period: str) -> dict[str, Figures]:
        """Target -> counts by outcome of the devices whose latest result falls in ``period``."""
        start, end = period_bounds(period)
        found: dict[str, Figures] = {}
        for target, image in sorted(self.images.items()):
            counts: dict[str, int] = {}
            for time, outcome in image.devices.values():
                if start <= parse_timestamp(time) < end:
                    counts[outcome] = counts.get(outcome, 0) + 1
            if counts:
                found[target] = Figures(dict(sorted(counts.items())))
        return found

    def figures(self) -> dict[str, Figures]:
        """Target -> counts by outcome of every device recorded (the supplier's own figures)."""
        found = {}
        for target, image in sorted(self.images.items()):
            counts: dict[str, int] = {}
            for _time, outcome in image.devices.values():
                counts[outcome] = counts.get(outcome, 0) + 1
            found[target] = Figures(dict(sorted(counts.items())))
        return found

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "images": {
                target: {
                    "sha256": image.sha256,
                    "firmware_version": image.firmware_version,
                    "devices": {d: list(e) for d, e in sorted(image.devices.items())},
                }
                for target, image in sorted(self.images.items())
            },
            "submissions": [s.to_dict() for s in self.submissions],
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Ledger:
        """Raises: ValueError naming what is wrong (a damaged ledger)."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(field_error(f"{where}: schema_version", doc, str(SCHEMA_VERSION)))
        images: dict[str, ImageLedger] = {}
        for target, item in doc["images"].items():
            devices = {}
            for device, (time, outcome) in item["devices"].items():
                if outcome not in OUTCOME_CODES:
                    raise ValueError(
                        field_error(f"{where}: outcome of {target}", outcome, "a code")
                    )
                devices[str(device)] = (str(time), str(outcome))
            images[target] = ImageLedger(
                str(item["sha256"]), str(item["firmware_version"]), devices
            )
        return cls(images, [Submission.from_dict(s) for s in doc.get("submissions", [])])


def load_ledger(home: Path) -> Ledger:
    """The home's ledger (empty when nothing was recorded yet).

    Raises:
        VerificationError: the ledger is damaged (it is never silently reset).
        UnavailableError: it cannot be read.
    """
    path = ledger_path(home)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ledger()
    except OSError as e:
        raise UnavailableError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        return Ledger.from_bytes(data, str(path))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise VerificationError(
            f"{path}: damaged ({type(e).__name__}: {e}); expected the ledger cfl outcomes writes",
            hint="restore it from a backup; it is never reset automatically",
        ) from e


def save_ledger(home: Path, ledger: Ledger) -> None:
    """Write the ledger atomically, readable by the owner only (it holds device IDs)."""
    path = ledger_path(home)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_bytes(path, ledger.to_bytes(), mode=0o600)
    except OSError as e:
        raise UnavailableError(f"{path}: cannot write ({e.strerror or e})") from e


def device_ids(ledger: Ledger) -> Iterable[str]:
    """Every device ID in the ledger (tests assert none leaves the home)."""
    for image in ledger.images.values():
        yield from image.devices
