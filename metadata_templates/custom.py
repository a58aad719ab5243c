"""The CFL custom target metadata: what a manufacturer signs about an image under ``custom.cfl``.

The typed model and the JSON Schema say the same thing twice on purpose: the schema is the published
contract (other implementations can validate with it), the dataclasses are what our code handles.
Both sides validate on the way in and on the way out.

Readers ignore fields they do not know (the schema allows additional properties at every level), so
an optional field added later does not make an older client or verifier drop the image; required
fields and the types of known ones are still checked, and a change every reader must understand
raises ``schema_version``. The writer's side stays strict: the provider's gateway refuses a field
it does not know (``unknown_fields``), so what it publishes is what its own version understands.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from metadata_templates import SCHEMA_VERSION

CUSTOM_KEY = "cfl"
REASONS = ("compliance", "security")
CPL_STATUSES = ("Active", "Cancelled", "Expired", "Withdrawn")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``custom.cfl``."""
    text = (
        resources.files("metadata_templates").joinpath("schema/cfl-custom.schema.json").read_text()
    )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema())
    return cls(schema())


class CustomMetadataError(ValueError):
    """``custom.cfl`` does not match the schema.

    Attributes:
        field: where, e.g. ``custom.cfl.pilot.release_at`` (the gateway picks its code by it).
    """

    def __init__(self, message: str, *, field: str = "custom.cfl") -> None:
        super().__init__(message)
        self.field = field


def validate(data: Any) -> None:
    """Check a ``custom.cfl`` value against the schema.

    Raises:
        CustomMetadataError: naming the first offending field, the value found and what was expected.
    """
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        where = "custom.cfl" + "".join(
            f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
        )
        raise CustomMetadataError(f"{where}: {error.message}", field=where)


def format_timestamp(moment: datetime) -> str:
    """UTC, seconds precision, ``Z`` suffix: the only timestamp form in ``custom.cfl``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Inverse of ``format_timestamp``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class CplEntryRef:
    """The part of a CPL entry that travels with an image (so clients need not trust a later CPL)."""

    id: str
    model_id: str
    model_name: str
    hardware_version: str
    status: str
    upgrade_from: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "hardware_version": self.hardware_version,
            "status": self.status,
            "upgrade_from": list(self.upgrade_from),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CplEntryRef:
        return cls(
            id=data["id"],
            model_id=data["model_id"],
            model_name=data["model_name"],
            hardware_version=data["hardware_version"],
            status=data["status"],
            upgrade_from=tuple(data["upgrade_from"]),
        )


@dataclass(frozen=True)
class NotesReader:
    """An organisation an image's encrypted notes were encrypted to at deposit time."""

    entity_id: str
    name: str


@dataclass(frozen=True)
class ReleaseNotesRef:
    """Where an image's encrypted release notes are and who could read them when deposited.

    The plaintext's SHA-256 stays in ``release_notes_sha256`` (the field older images carry), so
    the signed metadata commits to the plaintext that every reader checks after decrypting.
    """

    target: str
    readers: tuple[NotesReader, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "readers": [{"entity_id": r.entity_id, "name": r.name} for r in self.readers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseNotesRef:
        return cls(
            target=data["target"],
            readers=tuple(NotesReader(r["entity_id"], r["name"]) for r in data["readers"]),
        )


def parse_date(text: str, field: str) -> date:
    """A ``YYYY-MM-DD`` date (the pilot's release date).

    Raises:
        CustomMetadataError: not that form, or not a real date (2026-02-30).
    """
    try:
        # fromisoformat alone would take 20260301 and 2026-W10-1 too
        if not isinstance(text, str) or not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except (ValueError, TypeError) as e:
        raise CustomMetadataError(
            f"{field}: found {text!r}, expected a real date YYYY-MM-DD", field=field
        ) from e


@dataclass(frozen=True)
class PilotTerms:
    """Issue 22: the image is for these pilot suppliers until its release date.

    The manufacturer signs the terms inside ``custom.cfl``; what happens later (an early release, a
    hold) is the provider's ``cfl/releases.json``, and metadata_templates/releases.py combines the
    two into the image's release state.
    """

    suppliers: tuple[str, ...]  # Entity IDs, 16 upper-case hex digits
    release_at: str  # YYYY-MM-DD, a UTC date: released from its first instant

    @property
    def release_date(self) -> date:
        return parse_date(self.release_at, "custom.cfl.pilot.release_at")

    def to_dict(self) -> dict[str, Any]:
        return {"suppliers": list(self.suppliers), "release_at": self.release_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PilotTerms:
        return cls(suppliers=tuple(data["suppliers"]), release_at=data["release_at"])


@dataclass(frozen=True)
class CflTargetInfo:
    """Everything the CFL says about one image beyond TUF's length and hashes."""

    device_type: str
    manufacturer_id: str
    manufacturer_name: str
    image_type: str
    firmware_version: str
    stack_version: str
    header_string: str
    hardware_version_min: str | None
    hardware_version_max: str | None
    manufacturer_image_sha256: str
    manufacturer_image_length: int
    cpl_entries: tuple[CplEntryRef, ...]
    reason: str
    advisories: tuple[str, ...]
    published: str
    release_notes_sha256: str | None = None
    release_notes: ReleaseNotesRef | None = None  # encrypted notes (absent on older images)
    pilot: PilotTerms | None = None  # issue 22: a pilot image (absent on every other image)

    def to_dict(self, *, validate_schema: bool = True) -> dict[str, Any]:
        """The ``custom.cfl`` value, validated against the schema (unless the caller has just
        validated the same value, e.g. one built by ``from_dict``).

        Raises:
            CustomMetadataError: the model holds a value the schema forbids.
        """
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "device_type": self.device_type,
            "manufacturer_id": self.manufacturer_id,
            "manufacturer_name": self.manufacturer_name,
            "image_type": self.image_type,
            "firmware_version": self.firmware_version,
            "stack_version": self.stack_version,
            "header_string": self.header_string,
            "hardware_version_min": self.hardware_version_min,
            "hardware_version_max": self.hardware_version_max,
            "manufacturer_image_sha256": self.manufacturer_image_sha256,
            "manufacturer_image_length": self.manufacturer_image_length,
            "cpl_entries": [entry.to_dict() for entry in self.cpl_entries],
            "reason": self.reason,
            "advisories": list(self.advisories),
            "published": self.published,
            "release_notes_sha256": self.release_notes_sha256,
        }
        if self.release_notes is not None:
            data["release_notes"] = self.release_notes.to_dict()
        if self.pilot is not None:
            data["pilot"] = self.pilot.to_dict()
        if validate_schema:
            validate(data)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> CflTargetInfo:
        """Read and validate a ``custom.cfl`` value.

        Raises:
            CustomMetadataError: the value does not match the schema.
        """
        validate(data)
        try:
            # The schema's pattern admits impossible dates such as 2026-02-30T00:00:00Z.
            parse_timestamp(data["published"])
        except ValueError as e:
            raise CustomMetadataError(
                f"custom.cfl.published: found {data['published']!r}, expected a real UTC time "
                "YYYY-MM-DDTHH:MM:SSZ",
                field="custom.cfl.published",
            ) from e
        if "pilot" in data:
            parse_date(data["pilot"]["release_at"], "custom.cfl.pilot.release_at")
        return cls.from_validated_dict(data)

    @classmethod
    def from_validated_dict(cls, data: Any) -> CflTargetInfo:
        """Build from a ``custom.cfl`` value that ``from_dict`` accepted before, without running
        the schema again (the provider's verified-role memo, repo_tool/verify/memo.py, keeps such
        values; at 100,000 images the schema is most of a verification walk).

        Raises:
            KeyError: a field is missing.
            TypeError, AttributeError: a field has the wrong shape.
        """
        return cls(
            device_type=data["device_type"],
            manufacturer_id=data["manufacturer_id"],
            manufacturer_name=data["manufacturer_name"],
            image_type=data["image_type"],
            firmware_version=data["firmware_version"],
            stack_version=data["stack_version"],
            header_string=data["header_string"],
            hardware_version_min=data["hardware_version_min"],
            hardware_version_max=data["hardware_version_max"],
            manufacturer_image_sha256=data["manufacturer_image_sha256"],
            manufacturer_image_length=data["manufacturer_image_length"],
            cpl_entries=tuple(CplEntryRef.from_dict(e) for e in data["cpl_entries"]),
            reason=data["reason"],
            advisories=tuple(data["advisories"]),
            published=data["published"],
            release_notes_sha256=data["release_notes_sha256"],
            release_notes=(
                ReleaseNotesRef.from_dict(data["release_notes"])
                if "release_notes" in data
                else None
            ),
            pilot=PilotTerms.from_dict(data["pilot"]) if "pilot" in data else None,
        )

    @classmethod
    def from_target_custom(cls, custom: dict[str, Any]) -> CflTargetInfo:
        """Read from a TUF ``TargetFile.custom`` mapping.

        Raises:
            CustomMetadataError: no ``cfl`` key, or its value does not match the schema.
        """
        if not isinstance(custom, dict):
            raise CustomMetadataError(
                f"custom: found {type(custom).__name__}, expected an object with a 'cfl' key"
            )
        if CUSTOM_KEY not in custom:
            raise CustomMetadataError(f"custom: found keys {sorted(custom)}, expected a 'cfl' key")
        return cls.from_dict(custom[CUSTOM_KEY])


def unknown_fields(data: Any, info: CflTargetInfo) -> tuple[str, ...]:
    """The fields of the ``custom.cfl`` value ``data`` (which ``from_dict`` read as ``info``) that
    this version does not know, as paths (``custom.cfl.x``, ``custom.cfl.cpl_entries[0].y``).

    A reader may ignore them; the gateway, which must not publish what it cannot check, refuses
    them. Anything the model does not keep is unknown: it is what ``info.to_dict()`` leaves out.
    """
    return tuple(_unknown(data, info.to_dict(validate_schema=False), "custom.cfl"))


def _unknown(value: Any, kept: Any, where: str) -> list[str]:
    if isinstance(value, dict) and isinstance(kept, dict):
        found: list[str] = []
        for key in sorted(value, key=str):
            if key not in kept:
                found.append(f"{where}.{key}")
            else:
                found += _unknown(value[key], kept[key], f"{where}.{key}")
        return found
    if isinstance(value, list) and isinstance(kept, list):
        return [
            path
            for index, (item, kept_item) in enumerate(zip(value, kept, strict=False))
            for path in _unknown(item, kept_item, f"{where}[{index}]")
        ]
    return []
