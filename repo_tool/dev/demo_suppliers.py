"""Sample supplier material for the demo's delivery-outcomes act (issue 24). DEVELOPMENT ONLY.

A supplier CA and two supplier organisations, each with an Entity ID, an ECDSA P-256 key and an
X.509 certificate signed by that CA (what ``cfl-repo supplier add --cert --supplier-ca`` takes,
shaped like an SMKI Organisation Certificate), and one results CSV per supplier (what
``cfl outcomes record`` takes) for one image of the demo dataset. Combined, the two files fail that
image above the default hold policy (more than 2% failures over at least 500 delivered devices
from at least 2 suppliers), so the provider's ingest holds it.

Names, Entity IDs, device IDs and outcomes derive from the seed; the keys are fresh each run (a
seeded private key would be one anybody can recompute) and the times come from ``now``, injected
by the caller: results fall in the calendar month before it, the period ``cfl outcomes submit``
reports by default. The CA's private key is never written, so nothing more can be issued under it.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import format_timestamp
from metadata_templates.outcomes import previous_month
from repo_tool.dev.demo_data import DemoDataset, DemoImage

SUPPLIERS_DIR = "suppliers"
MANIFEST = f"{SUPPLIERS_DIR}/suppliers.json"
CA_CERT = f"{SUPPLIERS_DIR}/supplier-ca.pem"
MANIFEST_SCHEMA_VERSION = 1
LABEL = "CFL demo - DEVELOPMENT ONLY"
DEVICES_PER_SUPPLIER = 300
OUTCOME_MODEL = "3F000001"
RESULTS_COLUMNS = ("Device ID", "Target", "Outcome", "Time", "Firmware Version")

# Per supplier: (activation-failed, not-retrieved, timeout) of DEVICES_PER_SUPPLIER. 12 + 9 failed
# of 600 - 11 delivered is 3.6%: over the 2% policy, and each supplier alone is over it too, so
# the hold does not hang on one supplier's figures.
_MIX = ((12, 5, 2), (9, 3, 1))
_NAMES = ("Acme Energy", "Brightside Power", "Fenwick Gas & Electric", "Lumen Utilities")

_README = """\
DEVELOPMENT ONLY. Made by `cfl-repo demo-data` for `make demo`; never register these anywhere real.

supplier-ca.pem                 a throwaway supplier CA (its private key was never written)
<ENTITY>/organisation.crt.pem   the organisation's certificate, signed by that CA
<ENTITY>/organisation.key.pem   its P-256 private key, UNENCRYPTED
<ENTITY>/results.csv            per-device delivery outcomes for `cfl outcomes record`
suppliers.json                  the list of the above, with each Entity ID and name
"""


@dataclass(frozen=True)
class DemoSupplier:
    """One sample supplier organisation and the files made for it."""

    entity_id: str
    name: str
    roles: tuple[str, ...]
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    results_csv: bytes = field(repr=False)


@dataclass(frozen=True)
class SupplierSamples:
    """The supplier CA, the organisations, and the image their results are about."""

    ca_certificate: x509.Certificate = field(repr=False)
    suppliers: tuple[DemoSupplier, ...]
    image: DemoImage = field(repr=False)
    period: str


def outcome_image(dataset: DemoDataset) -> DemoImage:
    """The image the sample results fail: Brightwell's security fix. A security fix, because that
    is the realistic worry (the image everyone is urged to install fails to activate); this one,
    because the guides' worked examples, which run on the demo library, use the others, so their
    output reads the same after the demo holds it."""
    return next(image for image in dataset.images if image.model_id == OUTCOME_MODEL)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, LABEL),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Demo supplier CA (development only)")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # a day's slack either side: a clock a little behind still finds it valid
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=366))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _organisation(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} (development only)"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        # end-entity: `supplier add` refuses a CA certificate
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def _results(
    rng: random.Random,
    oui: str,
    image: DemoImage,
    mix: tuple[int, int, int],
    month_start: datetime,
    month_seconds: int,
) -> bytes:
    failed, not_retrieved, timeout = mix
    outcomes = (
        ["activation-failed"] * failed
        + ["not-retrieved"] * not_retrieved
        + ["timeout"] * timeout
        + ["activated"] * (DEVICES_PER_SUPPLIER - failed - not_retrieved - timeout)
    )
    rng.shuffle(outcomes)
    seen: set[str] = set()
    rows = []
    for outcome in outcomes:
        while True:
            device = f"{oui}-{rng.getrandbits(40).to_bytes(5, 'big').hex('-').upper()}"
            if device not in seen:
                break
        seen.add(device)
        moment = month_start + timedelta(seconds=rng.randrange(month_seconds))
        # the read-back firmware version: only an activated device runs the image's
        version = image.firmware_version if outcome == "activated" else ""
        rows.append(
            (device, image.manufacturer_image_sha256, outcome, format_timestamp(moment), version)
        )
    rows.sort(key=lambda r: (r[3], r[0]))  # a head-end exports in time order
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RESULTS_COLUMNS)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def make_supplier_samples(dataset: DemoDataset, *, now: datetime) -> SupplierSamples:
    """The sample suppliers for ``dataset``; the same seed gives the same names, Entity IDs and
    results for the same month of ``now`` (aware, UTC)."""
    rng = random.Random(f"suppliers-{dataset.seed}")  # noqa: S311 - sample data, not secrets
    image = outcome_image(dataset)
    period = previous_month(now)
    month_start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    month_end = datetime.combine(now.astimezone(UTC).date().replace(day=1), time(), UTC)
    month_seconds = int((month_end - month_start).total_seconds())
    ca, ca_key = _ca(now)
    # the manufacturer's own prefix, as the estate's devices of that make have it
    oui = next(
        d.device_id[:8]
        for d in dataset.devices
        if d.manufacturer_id == image.manufacturer_id and "-" in d.device_id
    )
    suppliers = []
    for name, mix in zip(rng.sample(_NAMES, len(_MIX)), _MIX, strict=True):
        # 90-B3-D5 is not anybody's: a clearly made-up prefix for made-up organisations
        entity_id = f"90B3D5{rng.getrandbits(40):010X}"
        certificate, key = _organisation(ca, ca_key, name, now)
        results = _results(rng, oui, image, mix, month_start, month_seconds)
        suppliers.append(DemoSupplier(entity_id, name, ("IS", "GS"), key, certificate, results))
    return SupplierSamples(ca, tuple(suppliers), image, period)


def supplier_dir(supplier: DemoSupplier) -> str:
    """Where a supplier's files go, relative to the dataset directory."""
    return f"{SUPPLIERS_DIR}/{supplier.entity_id}"


def render_manifest(samples: SupplierSamples) -> bytes:
    """The suppliers as JSON for the demo script (paths relative to the dataset directory).

    Shape: ``{"schema_version": 1, "development_only": true, "supplier_ca", "period", "image":
    {"manufacturer_image_sha256", "image"}, "suppliers": [{"entity_id", "name", "roles", "cert",
    "key", "results"}]}``.
    """
    document = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "development_only": True,
        "supplier_ca": CA_CERT,
        "period": samples.period,
        "image": {
            "image": f"images/{samples.image.name}",
            "manufacturer_image_sha256": samples.image.manufacturer_image_sha256,
        },
        "suppliers": [
            {
                "entity_id": s.entity_id,
                "name": s.name,
                "roles": list(s.roles),
                "cert": f"{supplier_dir(s)}/organisation.crt.pem",
                "key": f"{supplier_dir(s)}/organisation.key.pem",
                "results": f"{supplier_dir(s)}/results.csv",
            }
            for s in samples.suppliers
        ],
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def write_supplier_samples(samples: SupplierSamples, out_dir: Path) -> Path:
    """Write the samples under ``out_dir/suppliers/`` (each file atomically; the keys 0600) and
    return the manifest's path. ``out_dir`` must exist (``write_demo_dataset`` made it).

    Raises:
        OSError: a file could not be written.
    """
    pem = serialization.Encoding.PEM
    files: dict[str, tuple[bytes, int]] = {
        f"{SUPPLIERS_DIR}/README.txt": (_README.encode(), 0o644),
        CA_CERT: (samples.ca_certificate.public_bytes(pem), 0o644),
        MANIFEST: (render_manifest(samples), 0o644),
    }
    for s in samples.suppliers:
        key = s.key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        files[f"{supplier_dir(s)}/organisation.crt.pem"] = (s.certificate.public_bytes(pem), 0o644)
        files[f"{supplier_dir(s)}/organisation.key.pem"] = (key, 0o600)
        files[f"{supplier_dir(s)}/results.csv"] = (s.results_csv, 0o644)
    for relative, (data, mode) in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data, mode=mode)
    return out_dir / MANIFEST
