"""Benchmark of ``cfl-repo audit``: 10,000,000 access-log lines and a 20,000,000-device inventory.

Measures, in one run, the whole audit (index the inventory, read and judge every log line, keep the
per-supplier summary, serialise every download entry as the ``--json`` document does) beside one
plain pass over the same files (``csv.reader`` over the inventory, a line loop over the logs), and
the audit's peak RSS, measured in a child process so the generator's allocations do not count.
Memory should not grow with the size of the files: compare ``--scale 0.1`` with the default.

The generated files (about 1.5 GB of inventory, 3.5 GB of logs at full scale) are cached under
``bench/out`` by size, so a second run skips generation.

Run: ``python -m bench.bench_audit [--scale 0.01]`` or ``python -m bench`` (every benchmark, at
``--scale`` 0.05 there to keep ``make bench`` short).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef, format_timestamp
from metadata_templates.naming import blob_name, image_target_path
from metadata_templates.suppliers import Supplier, SupplierRegistry, certificate_sha256
from repo_tool.access.audit import (
    AuditLibrary,
    Auditor,
    LibraryImage,
    Summary,
    Totals,
)
from repo_tool.access.audit_columnar import audit_logs
from repo_tool.access.certificates import certificate_sha1
from repo_tool.access.inventory_columnar import read_inventory_binary

OUT = Path(__file__).resolve().parent / "out"
LOG_LINES = 10_000_000
DEVICES = 20_000_000
SUPPLIERS = 30
MANUFACTURERS = 20
MODELS = 5  # per manufacturer
TYPES = ("ESME", "GSME", "PPMID")
START = datetime(2026, 1, 1, tzinfo=UTC)
INVENTORY_HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since\n"
)


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def synthetic_registry() -> tuple[SupplierRegistry, list[tuple[str, str, str]]]:
    """Suppliers with real certificates; returns the registry and (entity, sha256, sha1) each."""
    key = ec.generate_private_key(ec.SECP256R1())
    suppliers, ids = [], []
    for i in range(SUPPLIERS):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Supplier {i}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(i + 1)
            .not_valid_before(START - timedelta(days=30))
            .not_valid_after(START + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        der = cert.public_bytes(Encoding.DER)
        entity = f"{0xA000 + i:016X}"
        roles = ("IS",) if i % 3 == 0 else ("GS",) if i % 3 == 1 else ("IS", "GS")
        suppliers.append(
            Supplier(
                entity_id=entity,
                name=f"Supplier {i}",
                roles=roles,
                certificate_pem=cert.public_bytes(Encoding.PEM).decode(),
                certificate_sha256=certificate_sha256(der),
                registered=format_timestamp(START - timedelta(days=1)),
            )
        )
        ids.append((entity, certificate_sha256(der), certificate_sha1(der)))
    return SupplierRegistry(tuple(suppliers)), ids


def synthetic_library() -> tuple[AuditLibrary, list[tuple[str, str]]]:
    """Two images per model (firmware 2 and 3); returns the library and (blob path, type) each."""
    images: dict[str, LibraryImage] = {}
    entries: list[CplEntry] = []
    blobs = []
    for m in range(MANUFACTURERS):
        mfr = f"{0x1000 + m:04X}"
        for model_number in range(MODELS):
            model = f"{model_number + 1:04X}0000"
            device_type = TYPES[(m + model_number) % len(TYPES)]
            for fw in (1, 2, 3):
                entry_id = f"CPL-{mfr}-{model}-{fw}"
                entries.append(
                    CplEntry(
                        entry_id, device_type, mfr, "Maker", model, "Model", "0100", f"{fw:08X}",
                        "SMETS V5.0", "4.2", _sha(entry_id), "CPA", None, "Active", (),
                    )
                )  # fmt: skip
                if fw == 1:
                    continue
                sha = _sha(f"image {entry_id}")
                target = image_target_path(mfr, device_type, "0001", f"{fw:08X}", sha)
                info = CflTargetInfo(
                    device_type=device_type, manufacturer_id=mfr, manufacturer_name="Maker",
                    image_type="0001", firmware_version=f"{fw:08X}", stack_version="0002",
                    header_string="bench", hardware_version_min="0100",
                    hardware_version_max="0100", manufacturer_image_sha256=_sha(entry_id),
                    manufacturer_image_length=1000,
                    cpl_entries=(CplEntryRef(entry_id, model, "Model", "0100", "Active", ()),),
                    reason="compliance", advisories=(), published=format_timestamp(START),
                )  # fmt: skip
                images[target] = LibraryImage(target, sha, info)
                blobs.append((f"/targets/{blob_name(target, sha)}", device_type))
    cpl = CplDocument.of(entries, "0" * 64, format_timestamp(START))
    return AuditLibrary(images, cpl), blobs


def generate_inventory(path: Path, devices: int, entities: list[str], seed: int = 2026) -> None:
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        out.write(INVENTORY_HEADER)
        rows = []
        for n in range(devices):
            m, model_number = rng.randrange(MANUFACTURERS), rng.randrange(MODELS)
            device_type = TYPES[(m + model_number) % len(TYPES)]
            since = date(2020, 1, 1) + timedelta(days=rng.randrange(2300))
            rows.append(
                f"{n:016X},{device_type},{0x1000 + m:04X},{model_number + 1:04X}0000,0100,"
                f"{rng.choice((1, 1, 2)):08X},{rng.choice(entities)},{since.isoformat()}\n"
            )
            if len(rows) == 100_000:
                out.write("".join(rows))
                rows.clear()
        out.write("".join(rows))
    tmp.replace(path)


def generate_log(
    path: Path,
    lines: int,
    ids: list[tuple[str, str, str]],
    blobs: list[tuple[str, str]],
    seed: int = 7,
) -> None:
    """About a third metadata requests (the fast path), the rest image downloads by suppliers.

    Lines are assembled from pre-rendered pieces: the same bytes nginx's ``escape=json`` format
    writes, at a rate that keeps generating 10 million of them to a minute or two."""
    rng = random.Random(seed)
    callers = [
        f'"entity_id":"{entity}","certificate_sha256":"{sha256}","certificate_sha1":"{sha1}",'
        '"verify":"SUCCESS","certificate":"","remote_addr":"10.0.0.1","method":"GET",'
        for entity, sha256, sha1 in ids
    ]
    requests = [f'"path":"{blob}","status":200,"bytes":512000}}\n' for blob, _ in blobs]
    metadata = '"path":"/metadata/timestamp.json","status":200,"bytes":1500}\n'
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        rows = []
        for n in range(lines):
            when = (START + timedelta(seconds=n * 3)).isoformat()
            rows.append(
                f'{{"format":"cfl-access-1","time":"{when}",{rng.choice(callers)}'
                f"{metadata if n % 3 == 0 else rng.choice(requests)}"
            )
            if len(rows) == 100_000:
                out.write("".join(rows))
                rows.clear()
        out.write("".join(rows))
    tmp.replace(path)


def plain_pass(inventory: Path, log: Path) -> int:
    """The floor: read every inventory row with csv.reader and every log line, nothing else."""
    count = 0
    with inventory.open(newline="") as handle:
        for _row in csv.reader(handle):
            count += 1
    with log.open("rb") as handle:
        for _line in handle:
            count += 1
    return count


def audit_pass(inventory: Path, log: Path) -> Totals:
    """What `cfl-repo audit --inventory --json` does, writing the entries to a scratch file."""
    registry, _ids = synthetic_registry_cached()
    library, _ = synthetic_library()
    with inventory.open("rb") as handle:
        index = read_inventory_binary(handle)
    auditor = Auditor(registry, library, index)
    totals, summary = Totals(), Summary()
    with tempfile.TemporaryFile("w+b") as scratch:
        audit_logs([log], auditor, totals, summary, scratch.write)
    return totals


_REGISTRY: tuple[SupplierRegistry, list[tuple[str, str, str]]] | None = None


def synthetic_registry_cached() -> tuple[SupplierRegistry, list[tuple[str, str, str]]]:
    """One registry per process: the log's fingerprints must be the registry's."""
    global _REGISTRY
    if _REGISTRY is None:
        path = OUT / "registry.json"
        if path.exists():
            doc = json.loads(path.read_text())
            _REGISTRY = (SupplierRegistry.from_bytes(doc["registry"].encode()), doc["ids"])
        else:
            for stale in OUT.glob("access-*.log"):  # they name the old registry's certificates
                stale.unlink()
            registry, ids = synthetic_registry()
            path.write_text(json.dumps({"registry": registry.to_bytes().decode(), "ids": ids}))
            _REGISTRY = (registry, ids)
    return _REGISTRY


def child(inventory: Path, log: Path) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()
    totals = audit_pass(inventory, log)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "requests": totals.requests,
                "flagged": totals.flagged,
                "lines": totals.lines,
            }
        )
    )


def run(scale: float) -> dict[str, float]:
    log_lines, devices = max(1000, int(LOG_LINES * scale)), max(1000, int(DEVICES * scale))
    OUT.mkdir(exist_ok=True)
    inventory, log = OUT / f"inventory-{devices}.csv", OUT / f"access-{log_lines}.log"
    _registry, ids = synthetic_registry_cached()  # fixes the certificates the log names
    _, blobs = synthetic_library()
    started = time.perf_counter()
    if not inventory.exists():
        generate_inventory(inventory, devices, [entity for entity, _, _ in ids])
    if not log.exists():
        generate_log(log, log_lines, ids, blobs)
    generated = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    plain_pass(inventory, log)
    plain, plain_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_audit", "--child", str(inventory), str(log)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    measured = json.loads(result.stdout)
    figures = {
        "log_lines": log_lines,
        "devices": devices,
        "generate_s": round(generated, 1),
        "plain_pass_s": round(plain, 1),
        "audit_s": round(measured["seconds"], 1),
        "ratio": round(measured["seconds"] / plain, 2),
        # CPU time as well: on a shared machine the wall-clock ratio mostly measures the neighbours.
        "plain_pass_cpu_s": round(plain_cpu, 1),
        "audit_cpu_s": round(measured["cpu_seconds"], 1),
        "cpu_ratio": round(measured["cpu_seconds"] / plain_cpu, 2),
        "peak_rss_mb": round(measured["peak_rss_mb"]),
        "image_requests": measured["requests"],
        "flagged": measured["flagged"],
    }
    print(
        f"audit: {log_lines:,} log lines + {devices:,} inventory devices: audit {figures['audit_s']} s "
        f"beside a plain pass of {figures['plain_pass_s']} s (x{figures['ratio']}; CPU "
        f"{figures['audit_cpu_s']} s vs {figures['plain_pass_cpu_s']} s, x{figures['cpu_ratio']}), peak RSS "
        f"{figures['peak_rss_mb']} MB; {measured['requests']:,} image requests, "
        f"{measured['flagged']:,} flagged",
        file=sys.stderr,
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=None, help="fraction of 10M lines / 20M devices (default 1)"
    )
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else ([] if __name__ != "__main__" else None))
    if args.child:
        child(*args.child)
        return
    # Under `python -m bench` (main() without arguments from another module) stay short.
    scale = args.scale if args.scale is not None else (1.0 if __name__ == "__main__" else 0.05)
    run(scale)


if __name__ == "__main__":
    main()
