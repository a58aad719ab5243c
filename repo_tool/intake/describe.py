"""What an image deposit says about itself, computed the same way on both sides of the gateway.

The manufacturer's ``submit`` uses it to write the target metadata it signs; the provider's gateway
uses it to recompute that metadata from the bytes and the CPL and insists on equality. One function,
so the two can never drift apart.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metadata_templates import naming
from metadata_templates.cpl_document import CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef, PilotTerms, ReleaseNotesRef
from repo_tool.intake.bundle import Declaration
from repo_tool.intake.image import OtaHeader

# Two hashes over (almost) the same 10 MB: hashlib releases the GIL, so a second thread makes the
# pair cost about one pass on a 2-core machine, which keeps ingest hash-bound.
_PARALLEL_HASH_THRESHOLD = 1 << 20


@dataclass(frozen=True)
class ImageDigests:
    """SHA-256 of the whole file (the TUF target hash) and of the Manufacturer Image (the CPL hash)."""

    file_sha256: str
    manufacturer_image_sha256: str


def start_digest_image(data: bytes | memoryview, header: OtaHeader) -> Callable[[], ImageDigests]:
    """Start hashing the whole file and the Manufacturer Image span (no copies); the returned
    function waits for both. For a large image both run in worker threads (hashlib releases the
    GIL), so the caller can go on with the signature and schema checks meanwhile."""
    view = memoryview(data)
    span = view[header.manufacturer_image_start : header.manufacturer_image_end]
    if len(data) < _PARALLEL_HASH_THRESHOLD:
        digests = ImageDigests(hashlib.sha256(view).hexdigest(), hashlib.sha256(span).hexdigest())
        return lambda: digests
    result: dict[str, str] = {}
    workers = [
        threading.Thread(target=lambda: result.update(file=hashlib.sha256(view).hexdigest())),
        threading.Thread(target=lambda: result.update(mi=hashlib.sha256(span).hexdigest())),
    ]
    for worker in workers:
        worker.start()

    def wait() -> ImageDigests:
        for worker in workers:
            worker.join()
        return ImageDigests(result["file"], result["mi"])

    return wait


def digest_image(data: bytes | memoryview, header: OtaHeader) -> ImageDigests:
    """Hash the whole file and the Manufacturer Image span without copying either."""
    return start_digest_image(data, header)()


def target_path_for(header: OtaHeader, device_type: str, file_sha256: str) -> str:
    """The target path an image must be published under."""
    return naming.image_target_path(
        header.manufacturer_id,
        device_type,
        header.image_type_hex,
        header.firmware_version,
        file_sha256,
    )


def describe_image(
    *,
    header: OtaHeader,
    digests: ImageDigests,
    entries: Sequence[CplEntry],
    declaration: Declaration,
    published: str,
    release_notes_sha256: str | None,
    release_notes: ReleaseNotesRef | None = None,
    pilot: PilotTerms | None = None,
) -> CflTargetInfo:
    """The ``custom.cfl`` of an image, from its header, its declared CPL entries and the declaration.

    The manufacturer's name comes from the CPL, not from the submitter, so it cannot be spoofed.

    Raises:
        CustomMetadataError: a value does not fit the schema (e.g. an advisory ID with spaces).
    """
    info = CflTargetInfo(
        device_type=entries[0].device_type,
        manufacturer_id=header.manufacturer_id,
        manufacturer_name=entries[0].manufacturer_name,
        image_type=header.image_type_hex,
        firmware_version=header.firmware_version,
        stack_version=header.stack_version_hex,
        header_string=header.header_string,
        hardware_version_min=header.hardware_version_min_hex,
        hardware_version_max=header.hardware_version_max_hex,
        manufacturer_image_sha256=digests.manufacturer_image_sha256,
        manufacturer_image_length=header.manufacturer_image_length,
        cpl_entries=tuple(
            CplEntryRef(
                id=e.id,
                model_id=e.model_id,
                model_name=e.model_name,
                hardware_version=e.hardware_version,
                status=e.status,
                upgrade_from=e.upgrade_from,
            )
            for e in entries
        ),
        reason=declaration.reason,
        advisories=declaration.advisories,
        published=published,
        release_notes_sha256=release_notes_sha256,
        release_notes=release_notes,
        pilot=pilot,
    )
    info.to_dict()  # validates against the schema
    return info


def release_notes_digest(notes: bytes | None) -> str | None:
    """SHA-256 of the release notes, so the signed metadata commits to them without publishing them."""
    return None if notes is None else hashlib.sha256(notes).hexdigest()
