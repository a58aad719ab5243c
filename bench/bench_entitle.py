"""Benchmark of entitlement by estate: an import of 20,000,000 devices for 50 suppliers and 5,000
images, and the nginx maps generated from it (issue 22).

Measures, in one run:

* the import's core (index the inventory by supplier and device kind, compute every supplier's
  rights over every hop of the upgrade paths, serialise the record), its peak RSS measured in a
  child process, beside one plain ``csv.reader`` pass over the same file;
* the nginx configuration for ``--access estate``: generation time, its size and the maps' share;
* with nginx installed: ``nginx -t`` on it and a reload (``nginx -s reload`` until every old
  worker has exited), beside the same for the role-only configuration.

The library is 25 manufacturers x 40 models x 5 images whose Upgrade From chains each firmware to
the one before, so a device on firmware 1 has five hops to cover; devices are spread over every
model and supplier (every supplier ends up with rights to most images: the maps' worst case).

Scale: ``CFL_BENCH_ENTITLE_DEVICES`` (default 200,000, the CI-sized run; the issue's figure is
20,000,000), ``CFL_BENCH_ENTITLE_SUPPLIERS`` (50), ``CFL_BENCH_ENTITLE_IMAGES`` (5,000, a multiple
of 5). The inventory is cached under ``bench/out`` by size.

Run: ``python -m bench.bench_entitle`` or ``python -m bench`` (every benchmark).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef, format_timestamp
from metadata_templates.naming import image_target_path
from metadata_templates.suppliers import Supplier, SupplierRegistry, certificate_sha256
from repo_tool.access.host_estate import estate_maps
from repo_tool.access.host_nginx import NginxSettings, render_nginx_config
from repo_tool.access.inventory import read_inventory
from repo_tool.entitle.record import EntitlementRecord, EntityRights
from repo_tool.entitle.rights import UpgradeReach

OUT = Path(__file__).resolve().parent / "out"
DEVICES = int(os.environ.get("CFL_BENCH_ENTITLE_DEVICES", "200000"))
SUPPLIERS = int(os.environ.get("CFL_BENCH_ENTITLE_SUPPLIERS", "50"))
IMAGES = int(os.environ.get("CFL_BENCH_ENTITLE_IMAGES", "5000"))
HOPS = 5  # images per model: firmware 2..6, each upgrading from the one before
MANUFACTURERS = 25
START = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since\n"
)


def _models() -> list[tuple[str, str]]:
    lines = IMAGES // HOPS
    per = max(1, lines // MANUFACTURERS)
    return [(f"{0x1000 + n // per:04X}", f"{n % per + 1:04X}0000") for n in range(lines)]


def library() -> tuple[list[tuple[str, CflTargetInfo]], CplDocument]:
    images, entries = [], []
    for mfr, model in _models():
        for fw in range(1, HOPS + 2):
            entry_id = f"CPL-{mfr}-{model}-{fw}"
            upgrade = (f"CPL-{mfr}-{model}-{fw - 1}",) if fw > 2 else ()
            entries.append(
                CplEntry(entry_id, "ESME", mfr, "Maker", model, "Model", "0100", f"{fw:08X}",
                         "SMETS V5.0", "4.2", f"{fw:064x}", "CPA", None, "Active", upgrade)
            )  # fmt: skip
            if fw == 1:
                continue
            sha = hashlib.sha256(f"{mfr} {model} {fw}".encode()).hexdigest()
            info = CflTargetInfo(
                device_type="ESME", manufacturer_id=mfr, manufacturer_name="Maker",
                image_type="0001", firmware_version=f"{fw:08X}", stack_version="0002",
                header_string="bench", hardware_version_min="0100", hardware_version_max="0100",
                manufacturer_image_sha256=f"{fw:064x}", manufacturer_image_length=1000,
                cpl_entries=(CplEntryRef(entry_id, model, "Model", "0100", "Active", upgrade),),
                reason="compliance", advisories=(), published=format_timestamp(START),
            )  # fmt: skip
            images.append((image_target_path(mfr, "ESME", "0001", f"{fw:08X}", sha), info))
    return images, CplDocument.of(entries, "0" * 64, format_timestamp(START))


def entities() -> list[str]:
    return [f"{0xB000 + i:016X}" for i in range(SUPPLIERS)]


def generate_inventory(path: Path) -> None:
    rng = random.Random(22)
    models, suppliers = _models(), entities()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        out.write(HEADER)
        rows = []
        for n in range(DEVICES):
            mfr, model = models[rng.randrange(len(models))]
            since = date(2020, 1, 1) + timedelta(days=rng.randrange(2000))
            rows.append(
                f"{n:016X},ESME,{mfr},{model},0100,{rng.randrange(1, HOPS + 2):08X},"
                f"{suppliers[rng.randrange(len(suppliers))]},{since.isoformat()}\n"
            )
            if len(rows) == 100_000:
                out.write("".join(rows))
                rows.clear()
        out.write("".join(rows))
    tmp.replace(path)


def plain_pass(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.reader(handle))


def import_core(path: Path) -> tuple[EntitlementRecord, dict[str, float]]:
    """What `entitlements import` computes, without the repository around it."""
    times: dict[str, float] = {}
    started = time.perf_counter()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        index = read_inventory(handle)
    times["index_s"] = time.perf_counter() - started
    started = time.perf_counter()
    images, cpl = library()
    reach = UpgradeReach(images, cpl)
    rights = {entity: reach.rights(kinds) for entity, kinds in index.since.items()}
    times["rights_s"] = time.perf_counter() - started
    record = EntitlementRecord(
        inventory_date=index.latest or START.date(), imported=START, inventory_sha256="0" * 64,
        devices=index.devices, bad_rows=index.bad_rows, grace_days=28, previous=None,
        entities={e: EntityRights(since=r, devices=index.per_supplier[e]) for e, r in rights.items()},
    )  # fmt: skip
    started = time.perf_counter()
    times["record_bytes"] = len(record.to_bytes())
    times["serialise_s"] = time.perf_counter() - started
    return record, times


def child(path: Path, record_out: Path) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    record, times = import_core(path)
    record_out.write_bytes(record.to_bytes())
    print(
        json.dumps(
            {
                **times,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rights": sum(len(r.since) for r in record.entities.values()),
            }
        )
    )


# ------------------------------------------------------------------------------------- host


def _certificate(key: ec.EllipticCurvePrivateKey, name: str, issuer: x509.Name | None = None,
                 *, ca: bool = False) -> x509.Certificate:  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if name == "localhost":
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def registry() -> SupplierRegistry:
    key = ec.generate_private_key(ec.SECP256R1())
    suppliers = []
    for entity in entities():
        cert = _certificate(key, f"Supplier {entity}")
        suppliers.append(
            Supplier(
                entity_id=entity,
                name=f"Supplier {entity[-4:]}",
                roles=("IS", "GS"),
                certificate_pem=cert.public_bytes(Encoding.PEM).decode(),
                certificate_sha256=certificate_sha256(cert.public_bytes(Encoding.DER)),
                registered=format_timestamp(START),
            )
        )
    return SupplierRegistry(tuple(suppliers))


def host_figures(record: EntitlementRecord, workdir: Path) -> dict[str, float]:
    key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(key, "localhost")
    (workdir / "server.crt.pem").write_bytes(server.public_bytes(Encoding.PEM))
    (workdir / "server.key.pem").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (workdir / "ca.pem").write_bytes(server.public_bytes(Encoding.PEM))
    (workdir / "public").mkdir(exist_ok=True)
    port = 20000 + os.getpid() % 20000
    settings = NginxSettings(
        server_name="localhost", listen=f"127.0.0.1:{port}",
        tls_cert=str(workdir / "server.crt.pem"), tls_key=str(workdir / "server.key.pem"),
        supplier_ca=str(workdir / "ca.pem"), public_root=str(workdir / "public"),
        user="root root" if os.geteuid() == 0 else None,
    )  # fmt: skip
    suppliers = registry()
    started = time.perf_counter()
    maps = estate_maps(record, "f" * 64, suppliers, day=START.date())
    estate = render_nginx_config(settings, suppliers, registry_sha256="", now=START, estate=maps)
    generated = time.perf_counter() - started
    role = render_nginx_config(settings, suppliers, registry_sha256="", now=START)
    figures = {
        "maps_generate_s": generated,
        "config_bytes": len(estate.encode()),
        "role_config_bytes": len(role.encode()),
        "map_entries": maps.map_entries,
        "rights_mapped": maps.rights,
    }
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        return figures
    for name, text in (("role", role), ("estate", estate)):
        conf = workdir / f"{name}.conf"
        conf.write_text(text)
        figures |= {f"{name}_{k}": v for k, v in _nginx_times(nginx, workdir, conf).items()}
    return figures


def _nginx_times(nginx: str, prefix: Path, conf: Path) -> dict[str, float]:
    base = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    started = time.perf_counter()
    subprocess.run([*base, "-t"], check=True, capture_output=True)
    checked = time.perf_counter() - started
    master = subprocess.Popen([*base, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    try:
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not children.read_text().split():
            time.sleep(0.01)
        old = set(children.read_text().split())
        started = time.perf_counter()
        subprocess.run([*base, "-s", "reload"], check=True, capture_output=True)
        while time.monotonic() < deadline:
            now = set(children.read_text().split())
            if now and not now & old:
                break
            time.sleep(0.005)
        reloaded = time.perf_counter() - started
    finally:
        master.send_signal(signal.SIGQUIT)
        master.wait(timeout=30)
    return {"nginx_t_s": checked, "reload_s": reloaded}


def run() -> dict[str, float]:
    OUT.mkdir(exist_ok=True)
    inventory = OUT / f"entitle-inventory-{DEVICES}-{SUPPLIERS}-{IMAGES}.csv"
    started = time.perf_counter()
    if not inventory.exists():
        generate_inventory(inventory)
    generated = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    plain_pass(inventory)
    plain, plain_cpu = time.perf_counter() - started, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as scratch:
        record_path = Path(scratch) / "record.json"
        result = subprocess.run(
            [sys.executable, "-m", "bench.bench_entitle", "--child", str(inventory), str(record_path)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        measured = json.loads(result.stdout)
        record = EntitlementRecord.from_bytes(record_path.read_bytes())
        host = host_figures(record, Path(scratch))
    figures = {
        "devices": DEVICES, "suppliers": SUPPLIERS, "images": IMAGES,
        "generate_s": round(generated, 1),
        "plain_pass_s": round(plain, 2), "plain_pass_cpu_s": round(plain_cpu, 2),
        "import_s": round(measured["seconds"], 2), "import_cpu_s": round(measured["cpu_seconds"], 2),
        "index_s": round(measured["index_s"], 2), "rights_s": round(measured["rights_s"], 2),
        "cpu_ratio": round(measured["cpu_seconds"] / plain_cpu, 2),
        "peak_rss_mb": round(measured["peak_rss_mb"]),
        "record_bytes": int(measured["record_bytes"]), "rights": measured["rights"],
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in host.items()},
    }  # fmt: skip
    print(
        f"entitle: {DEVICES:,} devices, {SUPPLIERS} suppliers, {IMAGES:,} images: import "
        f"{figures['import_s']} s ({figures['import_cpu_s']} CPU s; index {figures['index_s']}, "
        f"rights {figures['rights_s']}) beside a plain csv pass of {figures['plain_pass_s']} s "
        f"({figures['plain_pass_cpu_s']} CPU s, x{figures['cpu_ratio']} CPU), peak RSS "
        f"{figures['peak_rss_mb']} MB, record {figures['record_bytes']:,} B, "
        f"{figures['rights']:,} rights; host maps: generated in {figures['maps_generate_s']} s, "
        f"config {figures['config_bytes']:,} B (role only {figures['role_config_bytes']:,} B), "
        f"{figures['map_entries']:,} map entries"
        + (
            f"; nginx -t {figures['estate_nginx_t_s']} s (role {figures['role_nginx_t_s']} s), "
            f"reload {figures['estate_reload_s']} s (role {figures['role_reload_s']} s)"
            if "estate_reload_s" in figures
            else "; nginx not installed: no -t or reload figures"
        ),
        file=sys.stderr,
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else []
    if args[:1] == ["--child"]:
        child(Path(args[1]), Path(args[2]))
        return
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
