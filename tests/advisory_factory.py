"""Advisories for tests: authored documents, the manufacturer's real `advisory submit` path, and
hand-made bundles that skip the manufacturer-side checks (what an attacker or a buggy tool sends)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from factory import LibraryFactory
from metadata_templates import naming
from metadata_templates.advisory import Advisory, parse_authored, with_revision
from repo_tool.intake.bundle import KIND_ADVISORY, Bundle, Declaration
from repo_tool.ops.ingest import IngestResult
from repo_tool.submit.advisory import build_advisory_submission
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MEDIUM = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:L"


def authored(**changes: Any) -> dict[str, Any]:
    """An ADVISORY.json for the standard library: CPL-0002 (121D fw 2) fixed by fw 3."""
    doc: dict[str, Any] = {
        "id": "CFL-121D-2026-0001",
        "title": "HAN frame overflow <script>alert(1)</script>",
        "summary": "A crafted frame overflows a buffer & runs code.",
        "cve": ["CVE-2026-10001"],
        "cvss": CRITICAL,
        "affected_cpl_entries": ["CPL-0002"],
        "fixed_by": [],
        "status": "affected",
        "workaround": "Disable HAN joining.",
        "published": "2026-03-01",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def image_target(factory: LibraryFactory, entry_id: str) -> str:
    """The published image target declared for a CPL entry."""
    library = verified_library(folder_reader(factory.out), factory.root_bytes, now=factory.now)
    for image in library.images:
        if any(ref.id == entry_id for ref in image.cfl.cpl_entries):
            return image.target_path
    raise AssertionError(f"no image for {entry_id}")


def submit(factory: LibraryFactory, doc: dict[str, Any], mfr: str = "121D") -> Bundle:
    """The manufacturer's `advisory submit`, from the published library."""
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    submission, _advisory = build_advisory_submission(
        document=json.dumps(doc).encode(),
        manufacturer_id=mfr,
        signers=[factory.mfr_signers[mfr]],
        library=library,
        now=factory.now,
    )
    return submission.bundle


def lodge(factory: LibraryFactory, doc: dict[str, Any], mfr: str = "121D") -> IngestResult:
    """submit + ingest + publish; asserts acceptance."""
    result = factory.ingest(submit(factory, doc, mfr), name="advisory")
    assert result.status == "accepted", result.messages
    factory.publish()
    return result


def forged(
    factory: LibraryFactory,
    doc: dict[str, Any],
    *,
    mfr: str = "121D",
    revision: int = 1,
    signer: Signer | None = None,
    data: bytes | None = None,
    path: str | None = None,
    edit_role: Callable[[Targets], None] | None = None,
) -> Bundle:
    """A bundle signed as ``mfr`` (or ``signer``) without the manufacturer-side checks."""
    advisory = with_revision(
        parse_authored(
            json.dumps(doc).encode(),
            manufacturer_id=doc["id"][4:8],
            today="2026-03-02",
        ),
        revision,
    )
    data = advisory.to_bytes() if data is None else data
    path = path or advisory.target_path
    name = naming.role_name(mfr)
    current = factory.repo.role(name) if name in factory.repo.head.roles else None
    signed = (
        Targets(version=1)
        if current is None
        else Metadata[Targets].from_bytes(current.to_bytes()).signed
    )
    signed.version += 0 if current is None else 1
    signed.expires = factory.now + timedelta(days=365)
    signed.targets[path] = TargetFile(len(data), {"sha256": hashlib.sha256(data).hexdigest()}, path)
    if edit_role is not None:
        edit_role(signed)
    md = Metadata(signed)
    md.sign(signer or factory.mfr_signers.get(mfr) or CryptoSigner.generate_ed25519())
    return Bundle(
        manufacturer_id=mfr,
        target=path,
        declaration=Declaration((), "", ()),
        image=b"",
        role_bytes=md.to_bytes(),
        release_notes=None,
        kind=KIND_ADVISORY,
        advisory=data,
    )


def published(data: bytes) -> Advisory:
    return Advisory.from_bytes(data)
