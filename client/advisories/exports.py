"""Standard exports of verified advisories: CSAF 2.0 (OASIS) and OpenVEX. Pure builders, atomic writers.

CSAF: one ``csaf_security_advisory`` document per advisory. The product tree is the manufacturer,
its models and the firmware versions the CPL records (each CPL entry is a product, its ID the
CPL Entry ID); ``known_affected`` (``under_investigation`` while the advisory is investigating)
lists the affected entries and ``fixed`` the entries of the images that fix it, with a
``vendor_fix`` remediation naming those images. One vulnerability per CVE (CSAF holds one CVE per
vulnerability; none: one with the advisory ID under ``ids``). A v3.1 vector becomes ``cvss_v3``;
CSAF 2.0 has no CVSS v4.0 field, so a v4.0 vector is carried in a note (CSAF 2.1 adds it).
tests/client/test_advisory_exports.py validates every document against the official schema.

OpenVEX (v0.2.0): one statement per advisory and image of the affected product lines: ``affected``
(``under_investigation`` while investigating), ``fixed``, or ``not_affected``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from client.advisories.matching import AdvisoryIndex
from client.trust.catalogue import CatalogueImage
from metadata_templates.advisory import Advisory
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import format_timestamp

CSAF_NAMESPACE = "https://cfl.invalid/"  # replaced by the library's URL when the caller knows it


def _day(text: str) -> str:
    return f"{text}T00:00:00.000Z"


def csaf_file_name(advisory: Advisory) -> str:
    """The CSAF file name convention: the tracking ID, lower case, ``.json``."""
    return f"{advisory.id.lower()}.json"


def csaf_document(
    advisory: Advisory,
    images: Iterable[CatalogueImage],
    cpl: CplDocument,
    *,
    namespace: str = CSAF_NAMESPACE,
) -> dict[str, Any]:
    """One advisory as a CSAF 2.0 ``csaf_security_advisory`` document."""
    by_id = cpl.by_id()
    by_path = {image.target_path: image for image in images}
    fixes = [by_path[path] for path in advisory.fixed_by if path in by_path]
    affected = list(advisory.affected_cpl_entries)
    fixed = sorted({ref.id for image in fixes for ref in image.cfl.cpl_entries} - set(affected))
    vendor = next(
        (by_id[e].manufacturer_name for e in affected if e in by_id and by_id[e].manufacturer_name),
        advisory.manufacturer_id,
    )
    products: dict[str, dict[str, dict[str, str]]] = {}  # model -> version -> product
    for entry_id in [*affected, *fixed]:
        entry = by_id.get(entry_id)
        model = f"{entry.model_name} ({entry.model_id})" if entry else f"unknown ({entry_id})"
        version = entry.firmware_version if entry else entry_id
        name = f"{vendor} {model} firmware {version}"
        products.setdefault(model, {})[version] = {"name": name, "product_id": entry_id}
    tree = {
        "branches": [
            {
                "category": "vendor",
                "name": vendor,
                "branches": [
                    {
                        "category": "product_name",
                        "name": model,
                        "branches": [
                            {"category": "product_version", "name": version, "product": product}
                            for version, product in sorted(versions.items())
                        ],
                    }
                    for model, versions in sorted(products.items())
                ],
            }
        ]
    }
    status_key = "under_investigation" if advisory.status == "investigating" else "known_affected"
    product_status: dict[str, list[str]] = {status_key: affected}
    if fixed:
        product_status["fixed"] = fixed
    remediations: list[dict[str, Any]] = []
    if fixes:
        remediations.append(
            {
                "category": "vendor_fix",
                "details": "Upgrade to "
                + ", ".join(image.target_path for image in fixes)
                + " (through the upgrade path `cfl check` plans).",
                "product_ids": affected,
            }
        )
    if advisory.workaround:
        remediations.append(
            {"category": "workaround", "details": advisory.workaround, "product_ids": affected}
        )
    notes = [{"category": "summary", "title": "Summary", "text": advisory.summary}]
    if advisory.detail:
        notes.append({"category": "details", "title": "Details", "text": advisory.detail})
    vulnerability: dict[str, Any] = {
        "title": advisory.title,
        "notes": [{"category": "description", "title": "Description", "text": advisory.summary}],
        "product_status": product_status,
        "ids": [{"system_name": "CFL advisory", "text": advisory.id}],
    }
    if remediations:
        vulnerability["remediations"] = remediations
    if advisory.cvss_version == "3.1":
        vulnerability["scores"] = [
            {
                "products": affected,
                "cvss_v3": {
                    "version": "3.1",
                    "vectorString": advisory.cvss,
                    "baseScore": advisory.score,
                    "baseSeverity": advisory.severity.upper(),
                },
            }
        ]
    else:
        vulnerability["notes"].append(
            {
                "category": "other",
                "title": "CVSS v4.0",
                "text": f"{advisory.cvss} (score {advisory.score}, {advisory.severity})",
            }
        )
    vulnerabilities = (
        [vulnerability | {"cve": cve} for cve in advisory.cve] if advisory.cve else [vulnerability]
    )
    return {
        "document": {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "lang": "en",
            "title": advisory.title,
            "publisher": {
                "category": "vendor",
                "name": vendor,
                "namespace": namespace,
            },
            "notes": notes,
            "tracking": {
                "id": advisory.id,
                "status": "interim" if advisory.status == "investigating" else "final",
                "version": str(advisory.revision),
                "initial_release_date": _day(advisory.published),
                "current_release_date": _day(advisory.updated),
                "revision_history": [
                    {
                        "date": _day(advisory.updated),
                        "number": str(advisory.revision),
                        "summary": f"Revision {advisory.revision}: status {advisory.status}.",
                    }
                ],
            },
        },
        "product_tree": tree,
        "vulnerabilities": vulnerabilities,
    }


def openvex_document(
    advisories: Sequence[Advisory],
    images: Iterable[CatalogueImage],
    *,
    now: datetime,
    author: str = "CFL supplier client",
) -> dict[str, Any]:
    """OpenVEX statements per advisory and per image of the product lines it touches."""
    images = tuple(images)
    index = AdvisoryIndex(advisories, images)
    statements: list[dict[str, Any]] = []
    for advisory in index.advisories:
        affected = set(advisory.affected_cpl_entries)
        lines = {
            (image.cfl.manufacturer_id, ref.model_id, ref.hardware_version)
            for image in images
            for ref in image.cfl.cpl_entries
            if ref.id in affected or image.target_path in advisory.fixed_by
        }
        for image in images:
            if image.cfl.manufacturer_id != advisory.manufacturer_id:
                continue
            mine = [
                (image.cfl.manufacturer_id, ref.model_id, ref.hardware_version)
                for ref in image.cfl.cpl_entries
            ]
            if not any(line in lines for line in mine):
                continue
            statement: dict[str, Any] = {
                "vulnerability": {"name": advisory.id, "aliases": list(advisory.cve)},
                "products": [{"@id": image.target_path, "hashes": {"sha-256": image.sha256}}],
                "timestamp": format_timestamp(now),
            }
            if any(ref.id in affected for ref in image.cfl.cpl_entries):
                if advisory.status == "investigating":
                    statement["status"] = "under_investigation"
                else:
                    statement["status"] = "affected"
                    statement["action_statement"] = (
                        "Upgrade to " + ", ".join(advisory.fixed_by)
                        if advisory.fixed_by
                        else advisory.workaround or "No fix yet; follow the advisory."
                    )
            elif any(index.image_fixes(advisory, image, line) for line in mine):
                statement["status"] = "fixed"
            else:
                statement["status"] = "not_affected"
                statement["justification"] = "vulnerable_code_not_present"
            statements.append(statement)
    body = json.dumps(statements, sort_keys=True).encode()
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"https://openvex.dev/docs/public/cfl-{hashlib.sha256(body).hexdigest()[:32]}",
        "author": author,
        "timestamp": format_timestamp(now),
        "version": 1,
        "statements": statements,
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode())


def write_csaf(
    out: Path,
    advisories: Sequence[Advisory],
    images: Iterable[CatalogueImage],
    cpl: CplDocument,
    *,
    namespace: str = CSAF_NAMESPACE,
) -> list[Path]:
    """One CSAF file per advisory in ``out`` (created), each written atomically.

    Raises:
        OSError: the folder or a file cannot be written.
    """
    images = tuple(images)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for advisory in advisories:
        path = out / csaf_file_name(advisory)
        _write_json(path, csaf_document(advisory, images, cpl, namespace=namespace))
        written.append(path)
    return written


def write_openvex(
    out: Path, advisories: Sequence[Advisory], images: Iterable[CatalogueImage], *, now: datetime
) -> None:
    """The OpenVEX document, written atomically.

    Raises:
        OSError: the file cannot be written.
    """
    _write_json(out, openvex_document(advisories, images, now=now))
