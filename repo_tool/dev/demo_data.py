"""A coherent, deterministic sample dataset for the demo, the tests and the benchmarks.

Three manufacturers with GBCS images for their ESME and GSME models, the CPL that admits those
images (with upgrade pathways, a Cancelled entry, and entries for older firmware that was never
deposited, so devices can be running it), the declarations a manufacturer submits with each image,
and a supplier estate of a few hundred devices: some with an upgrade waiting, some already current,
some on hardware the CPL does not list, and some from a manufacturer absent from the library.

Everything derives from ``random.Random(seed)``: the same seed gives byte-identical files, so the
demo and golden-file tests are reproducible. No keys are made here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplEntry
from repo_tool.intake.cpl import CPL_COLUMNS, entry_to_row
from repo_tool.intake.image import build_image, manufacturer_image_sha256, parse_image
from repo_tool.output_paths import make_dir

ESTATE_COLUMNS = (
    "Device ID",
    "Device Type",
    "Manufacturer Identifier",
    "Model Identifier",
    "Hardware Version",
    "Firmware Version",
)
DECLARATIONS_SCHEMA_VERSION = 1
MARKUP_MODEL_NAME = '<script>alert(1)</script> & "quotes"'

# Zip entries and the workbook's own properties carry the time of writing; pinning both is what
# makes the XLSX byte-identical from one run to the next.
_FIXED_TIME = dt.datetime(2026, 1, 1, 0, 0, 0)
_FIXED_STAMP = b"2026-01-01T00:00:00Z"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_CORE_PROPERTIES = "docProps/core.xml"
_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


@dataclass(frozen=True)
class DemoManufacturer:
    """A manufacturer: its ZigBee manufacturer code and name."""

    id: str
    name: str


@dataclass(frozen=True)
class DemoModel:
    """A device model, the hardware versions the CPL lists for it, and its image type."""

    manufacturer_id: str
    model_id: str
    model_name: str
    device_type: str
    image_type: int
    hardware_versions: tuple[str, ...]


@dataclass(frozen=True)
class DemoImage:
    """One image file and the declaration its manufacturer submits with it."""

    name: str
    manufacturer_id: str
    device_type: str
    model_id: str
    firmware_version: str
    hardware_version_min: str
    hardware_version_max: str
    manufacturer_image_sha256: str
    cpl_entries: tuple[str, ...]
    reason: str
    advisories: tuple[str, ...]
    release_notes: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class DemoDevice:
    """One device in the supplier's estate, with the values of the estate CSV columns."""

    device_id: str
    device_type: str
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str


@dataclass(frozen=True)
class DemoDataset:
    """Everything the demo needs, before it is written to files."""

    seed: int
    manufacturers: tuple[DemoManufacturer, ...]
    models: tuple[DemoModel, ...]
    cpl: tuple[CplEntry, ...]
    images: tuple[DemoImage, ...]
    devices: tuple[DemoDevice, ...]
    absent_manufacturer: DemoManufacturer

    def image_for_entry(self, entry_id: str) -> DemoImage | None:
        """The image declared for a CPL entry, or None for firmware never deposited."""
        return next((i for i in self.images if entry_id in i.cpl_entries), None)


@dataclass(frozen=True)
class DemoPaths:
    """Where :func:`write_demo_dataset` put each file."""

    root: Path
    cpl_csv: Path
    cpl_xlsx: Path
    images: tuple[Path, ...]
    release_notes: tuple[Path, ...]
    estate_csv: Path
    declarations_json: Path


@dataclass(frozen=True)
class _Release:
    """One firmware version of a model as the CPL lists it."""

    firmware_version: str
    status: str
    upgrade_from: tuple[str, ...]  # firmware versions of the same model, resolved to entry IDs
    deposit: bool
    reason: str = "compliance"
    advisories: tuple[str, ...] = ()
    expiry: str | None = "2031-03-31"


_MANUFACTURERS = (
    DemoManufacturer("121D", "Acme Metering Ltd"),
    DemoManufacturer("3F01", "Brightwell Meters plc"),
    DemoManufacturer("0A5C", "Northgate Smart Devices"),
)
_ABSENT = DemoManufacturer("7E11", "Quill Instruments (not in the library)")

_MODELS = (
    DemoModel(
        "121D", "010A030B", f"Acme E470 {MARKUP_MODEL_NAME}", "ESME", 0x0001, ("1111", "1112")
    ),
    DemoModel("121D", "0201", "Acme G4 Gas", "GSME", 0x0002, ("2001",)),
    DemoModel("3F01", "3F000001", "Brightwell Evo E2", "ESME", 0x0101, ("0A01",)),
    DemoModel("0A5C", "0A5C0002", "Northgate G-Smart", "GSME", 0x0010, ("0003",)),
    DemoModel("0A5C", "5101", "Northgate E1 Single Phase", "ESME", 0x0011, ("0100", "0200")),
)

# Per model, oldest first. Older firmware is on the CPL but was never deposited: devices run it.
_RELEASES: dict[str, tuple[_Release, ...]] = {
    "010A030B": (
        _Release("01000000", "Active", (), deposit=False, expiry=None),
        _Release("01010000", "Active", (), deposit=True),
        _Release(
            "01020000",
            "Active",
            ("01000000", "01010000"),
            deposit=True,
            reason="security",
            advisories=("CFL-SA-2026-001",),
        ),
    ),
    "0201": (
        _Release("02000001", "Active", (), deposit=False),
        _Release("02000002", "Active", (), deposit=True),
        _Release("02000003", "Cancelled", ("02000002",), deposit=False),
    ),
    "3F000001": (
        _Release("10000000", "Active", (), deposit=False, expiry=None),
        _Release(
            "10010000",
            "Active",
            ("10000000",),
            deposit=True,
            reason="security",
            advisories=("CFL-SA-2026-002", "CVE-2026-10001"),
        ),
    ),
    "0A5C0002": (
        _Release("00050000", "Active", (), deposit=False),
        _Release("00060000", "Active", ("00050000",), deposit=True),
        # Only from 00060000: a device on 00050000 must step through it first.
        _Release(
            "00070000",
            "Active",
            ("00060000",),
            deposit=True,
            reason="security",
            advisories=("CFL-SA-2026-003",),
        ),
    ),
    "5101": (
        _Release("00010000", "Active", (), deposit=False),
        _Release("00020000", "Active", (), deposit=True),
    ),
}

_OUIS = {"121D": "00-0D-6F", "3F01": "70-B3-D5", "0A5C": "00-1B-C5", "7E11": "D0-52-A8"}


def _image_name(model: DemoModel, firmware_version: str) -> str:
    return f"{model.manufacturer_id}-{model.device_type}-{model.model_id}-{firmware_version}.ota"


def _release_notes(model: DemoModel, release: _Release, entry_ids: Sequence[str]) -> str:
    lines = [
        f"{model.model_name} ({model.manufacturer_id}/{model.model_id}) firmware "
        f"{release.firmware_version}",
        f"CPL entries: {', '.join(entry_ids)}",
        f"Reason: {release.reason}",
    ]
    if release.advisories:
        lines.append(f"Fixes: {', '.join(release.advisories)}")
    return "\n".join(lines) + "\n"


def make_demo_dataset(seed: int = 0) -> DemoDataset:
    """Generate the sample dataset; pure, and the same for the same seed.

    Args:
        seed: chooses image bodies, certificate names, device IDs and how the estate is spread.

    Returns:
        Manufacturers, models, the CPL, images with their declarations, and an estate.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not secrets
    manufacturer_names = {m.id: m.name for m in _MANUFACTURERS}
    cpl: list[CplEntry] = []
    images: list[DemoImage] = []
    next_id = 101

    for model in _MODELS:
        entry_ids: dict[tuple[str, str], str] = {}  # (firmware, hardware) -> CPL Entry ID
        for release in _RELEASES[model.model_id]:
            body = rng.randbytes(rng.randint(2048, 6144))
            low, high = min(model.hardware_versions), max(model.hardware_versions)
            data = build_image(
                manufacturer_code=int(model.manufacturer_id, 16),
                image_type=model.image_type,
                file_version=int(release.firmware_version, 16),
                body=body,
                header_string=f"{model.device_type} {model.model_id} {release.firmware_version}",
                hardware_versions=(int(low, 16), int(high, 16)),
            )
            digest = manufacturer_image_sha256(data, parse_image(data))
            certificate = f"CPA-{model.manufacturer_id}-{rng.randint(1000, 9999)}"
            released_ids = []
            for hardware in model.hardware_versions:
                entry_id = f"CPL-{next_id:06d}"
                next_id += 1
                entry_ids[(release.firmware_version, hardware)] = entry_id
                released_ids.append(entry_id)
                cpl.append(
                    CplEntry(
                        id=entry_id,
                        device_type=model.device_type,
                        manufacturer_id=model.manufacturer_id,
                        manufacturer_name=manufacturer_names[model.manufacturer_id],
                        model_id=model.model_id,
                        model_name=model.model_name,
                        hardware_version=hardware,
                        firmware_version=release.firmware_version,
                        smets_version="SMETS V5.0",
                        gbcs_version="4.2" if model.device_type == "ESME" else "4.0",
                        manufacturer_image_sha256=digest,
                        cpa_certificate=certificate,
                        cpa_expiry=release.expiry,
                        status=release.status,
                        # pathways stay within one hardware version: a board revision cannot
                        # take another board's firmware
                        upgrade_from=tuple(
                            entry_ids[(previous, hardware)] for previous in release.upgrade_from
                        ),
                    )
                )
            if release.deposit:
                images.append(
                    DemoImage(
                        name=_image_name(model, release.firmware_version),
                        manufacturer_id=model.manufacturer_id,
                        device_type=model.device_type,
                        model_id=model.model_id,
                        firmware_version=release.firmware_version,
                        hardware_version_min=low,
                        hardware_version_max=high,
                        manufacturer_image_sha256=digest,
                        cpl_entries=tuple(released_ids),
                        reason=release.reason,
                        advisories=release.advisories,
                        release_notes=_release_notes(model, release, released_ids),
                        data=data,
                    )
                )

    return DemoDataset(
        seed=seed,
        manufacturers=_MANUFACTURERS,
        models=_MODELS,
        cpl=tuple(cpl),
        images=tuple(images),
        devices=_make_estate(rng, cpl),
        absent_manufacturer=_ABSENT,
    )


def _make_estate(rng: random.Random, cpl: Sequence[CplEntry]) -> tuple[DemoDevice, ...]:
    """A few hundred devices on the CPL's Active firmware, plus devices nothing applies to."""
    kinds: list[tuple[str, str, str, str, str]] = [
        (e.device_type, e.manufacturer_id, e.model_id, e.hardware_version, e.firmware_version)
        for e in cpl
        if e.status == "Active"
    ]
    # A board revision the CPL never listed, and a manufacturer that deposits nothing.
    kinds.append(("ESME", "121D", "010A030B", "1113", "01000000"))
    kinds.append(("ESME", _ABSENT.id, "7E110001", "0001", "00000001"))
    kinds.append(("GSME", _ABSENT.id, "7E110002", "0001", "00000003"))

    seen: set[str] = set()
    devices: list[DemoDevice] = []
    for device_type, manufacturer, model, hardware, firmware in kinds:
        for _ in range(rng.randint(8, 30)):
            while True:
                tail = rng.getrandbits(40).to_bytes(5, "big").hex("-").upper()
                device_id = f"{_OUIS[manufacturer]}-{tail}"
                if device_id not in seen:
                    break
            seen.add(device_id)
            # Estates in the wild mix the DUIS hyphenated form with bare hex digits.
            if rng.random() < 0.05:
                device_id = device_id.replace("-", "")
            devices.append(
                DemoDevice(device_id, device_type, manufacturer, model, hardware, firmware)
            )
    rng.shuffle(devices)
    return tuple(devices)


def render_cpl_csv(entries: Iterable[CplEntry]) -> bytes:
    """The CPL as UTF-8 CSV with the canonical headers."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CPL_COLUMNS)
    for entry in entries:
        row = entry_to_row(entry)
        writer.writerow([row[column] for column in CPL_COLUMNS])
    return out.getvalue().encode("utf-8")


def render_cpl_xlsx(entries: Iterable[CplEntry]) -> bytes:
    """The CPL as an XLSX workbook (every cell text, as SECAS would need for hex identifiers)."""
    import openpyxl  # slow to import; only this writer needs it

    workbook = openpyxl.Workbook()
    workbook.properties.created = _FIXED_TIME
    workbook.properties.modified = _FIXED_TIME
    workbook.properties.creator = "cfl demo-data"
    sheet = workbook.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = "CPL"
    sheet.append(list(CPL_COLUMNS))
    for entry in entries:
        row = entry_to_row(entry)
        sheet.append([row[column] for column in CPL_COLUMNS])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return _pin_zip_times(buffer.getvalue())


def _pin_zip_times(data: bytes) -> bytes:
    """Rewrite an openpyxl workbook so that nothing in it depends on when it was written."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            pinned.compress_type = zipfile.ZIP_DEFLATED
            pinned.external_attr = 0o644 << 16
            content = source.read(info.filename)
            if info.filename == _CORE_PROPERTIES:
                # openpyxl's save stamps dcterms:modified with the current time, whatever we set
                content = _MODIFIED.sub(rb"\g<1>" + _FIXED_STAMP + rb"\g<2>", content)
            target.writestr(pinned, content)
    return out.getvalue()


def render_estate_csv(devices: Iterable[DemoDevice]) -> bytes:
    """The estate as UTF-8 CSV with the canonical estate headers."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ESTATE_COLUMNS)
    for d in devices:
        writer.writerow(
            [
                d.device_id,
                d.device_type,
                d.manufacturer_id,
                d.model_id,
                d.hardware_version,
                d.firmware_version,
            ]
        )
    return out.getvalue().encode("utf-8")


def image_path(image: DemoImage) -> str:
    """Where an image goes, relative to the dataset directory."""
    return f"images/{image.name}"


def release_notes_path(image: DemoImage) -> str:
    """Where an image's release notes go, relative to the dataset directory."""
    return f"release-notes/{image.name.removesuffix('.ota')}.txt"


def render_declarations(images: Iterable[DemoImage]) -> bytes:
    """What each manufacturer declares with each image, as JSON (paths relative to the dataset).

    Shape: ``{"schema_version": 1, "images": [{"image", "manufacturer_id", "cpl_entries",
    "reason", "advisories", "release_notes", "manufacturer_image_sha256", "firmware_version",
    "device_type"}]}``.
    """
    document = {
        "schema_version": DECLARATIONS_SCHEMA_VERSION,
        "images": [
            {
                "image": image_path(image),
                "manufacturer_id": image.manufacturer_id,
                "device_type": image.device_type,
                "firmware_version": image.firmware_version,
                "manufacturer_image_sha256": image.manufacturer_image_sha256,
                "cpl_entries": list(image.cpl_entries),
                "reason": image.reason,
                "advisories": list(image.advisories),
                "release_notes": release_notes_path(image),
            }
            for image in images
        ],
    }
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_demo_dataset(dataset: DemoDataset, out_dir: Path) -> DemoPaths:
    """Write the dataset as the files the demo feeds to the tools.

    Writes ``cpl.csv``, ``cpl.xlsx``, ``images/<name>.ota``, ``release-notes/<name>.txt``,
    ``estate.csv`` and ``declarations.json`` under ``out_dir``, each atomically.

    Raises:
        ConfigurationError: ``out_dir`` is, or is under, a regular file.
        UnavailableError: the folder cannot be created.
        OSError: a file could not be written.
    """
    make_dir(out_dir, field="OUT_DIR")
    files: dict[str, bytes] = {
        "cpl.csv": render_cpl_csv(dataset.cpl),
        "cpl.xlsx": render_cpl_xlsx(dataset.cpl),
        "estate.csv": render_estate_csv(dataset.devices),
        "declarations.json": render_declarations(dataset.images),
    }
    for image in dataset.images:
        files[image_path(image)] = image.data
        files[release_notes_path(image)] = image.release_notes.encode()
    for relative, data in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return DemoPaths(
        root=out_dir,
        cpl_csv=out_dir / "cpl.csv",
        cpl_xlsx=out_dir / "cpl.xlsx",
        images=tuple(out_dir / image_path(i) for i in dataset.images),
        release_notes=tuple(out_dir / release_notes_path(i) for i in dataset.images),
        estate_csv=out_dir / "estate.csv",
        declarations_json=out_dir / "declarations.json",
    )
