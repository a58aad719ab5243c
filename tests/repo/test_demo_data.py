"""The demo dataset: deterministic, internally coherent, and covering the cases the demo shows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from metadata_templates import identifiers
from metadata_templates.cpl_document import CplEntry
from repo_tool.dev.demo_data import (
    ESTATE_COLUMNS,
    MARKUP_MODEL_NAME,
    DemoDataset,
    DemoDevice,
    make_demo_dataset,
    render_cpl_csv,
    render_cpl_xlsx,
    render_declarations,
    render_estate_csv,
    write_demo_dataset,
)
from repo_tool.intake.cpl import parse_cpl
from repo_tool.intake.image import manufacturer_image_sha256, parse_image


@pytest.fixture(scope="module")
def dataset() -> DemoDataset:
    return make_demo_dataset(0)


def all_files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    write_demo_dataset(make_demo_dataset(7), tmp_path / "a")
    write_demo_dataset(make_demo_dataset(7), tmp_path / "b")
    first, second = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert "cpl.xlsx" in first
    assert first == second


def test_xlsx_does_not_depend_on_the_clock(
    dataset: DemoDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    import openpyxl.writer.excel as excel

    before = render_cpl_xlsx(dataset.cpl)

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Later:
            return cls(2040, 5, 6, 7, 8, 9, tzinfo=tz)

    # openpyxl stamps the save time through this module's datetime
    monkeypatch.setattr(excel.datetime, "datetime", Later)
    assert render_cpl_xlsx(dataset.cpl) == before


def test_different_seeds_give_different_images() -> None:
    a, b = make_demo_dataset(0), make_demo_dataset(1)
    assert [i.data for i in a.images] != [i.data for i in b.images]
    assert [d.device_id for d in a.devices] != [d.device_id for d in b.devices]


def test_three_manufacturers_with_one_or_two_models_of_esme_and_gsme(dataset: DemoDataset) -> None:
    assert len(dataset.manufacturers) == 3
    assert len({m.id for m in dataset.manufacturers}) == 3
    assert all(m.name for m in dataset.manufacturers)
    per_manufacturer = Counter(m.manufacturer_id for m in dataset.models)
    assert set(per_manufacturer) == {m.id for m in dataset.manufacturers}
    assert set(per_manufacturer.values()) <= {1, 2}
    assert {m.device_type for m in dataset.models} == {"ESME", "GSME"}


def test_one_model_name_carries_markup_for_escaping_tests(dataset: DemoDataset) -> None:
    names = [m.model_name for m in dataset.models if MARKUP_MODEL_NAME in m.model_name]
    assert len(names) == 1
    assert any(e.model_name == names[0] for e in dataset.cpl)


def test_every_image_passes_the_br03_checks_against_its_declared_entries(
    dataset: DemoDataset,
) -> None:
    cpl = {e.id: e for e in dataset.cpl}
    for image in dataset.images:
        header = parse_image(image.data)
        assert 1024 <= len(image.data) <= 8192
        digest = manufacturer_image_sha256(image.data, header)
        assert digest == image.manufacturer_image_sha256
        assert image.cpl_entries
        for entry_id in image.cpl_entries:
            entry = cpl[entry_id]
            assert entry.status == "Active"
            assert entry.manufacturer_image_sha256 == digest
            assert entry.manufacturer_id == header.manufacturer_id == image.manufacturer_id
            assert entry.firmware_version == header.firmware_version == image.firmware_version
            assert entry.device_type == image.device_type
            assert header.hardware_version_min_hex is not None
            assert header.hardware_version_max_hex is not None
            assert (
                header.hardware_version_min_hex
                <= entry.hardware_version
                <= header.hardware_version_max_hex
            )


def test_declarations_give_a_reason_and_advisories_for_security(dataset: DemoDataset) -> None:
    reasons = Counter(i.reason for i in dataset.images)
    assert set(reasons) == {"compliance", "security"}
    for image in dataset.images:
        if image.reason == "security":
            assert image.advisories
            assert all(a.startswith(("CFL-SA-2026-", "CVE-")) for a in image.advisories)
        else:
            assert image.advisories == ()
    assert "CFL-SA-2026-001" in {a for i in dataset.images for a in i.advisories}


def test_each_cpl_entry_has_at_most_one_image(dataset: DemoDataset) -> None:
    declared = Counter(e for i in dataset.images for e in i.cpl_entries)
    assert set(declared.values()) == {1}
    assert len({i.manufacturer_image_sha256 for i in dataset.images}) == len(dataset.images)


def test_cpl_has_pathways_na_entries_a_cancelled_entry_and_firmware_never_deposited(
    dataset: DemoDataset,
) -> None:
    ids = [e.id for e in dataset.cpl]
    assert len(ids) == len(set(ids))
    with_pathway = [e for e in dataset.cpl if e.upgrade_from]
    assert with_pathway
    assert any(not e.upgrade_from for e in dataset.cpl)
    assert [e.status for e in dataset.cpl].count("Cancelled") == 1
    assert all(
        r in ids and ids.index(r) < ids.index(e.id) for e in with_pathway for r in e.upgrade_from
    )
    undeposited = [e for e in dataset.cpl if dataset.image_for_entry(e.id) is None]
    assert any(e.status == "Active" for e in undeposited)
    cancelled = next(e for e in dataset.cpl if e.status == "Cancelled")
    assert dataset.image_for_entry(cancelled.id) is None


@pytest.mark.parametrize(
    ("render", "filename"),
    [(render_cpl_csv, "cpl.csv"), (render_cpl_xlsx, "cpl.xlsx")],
    ids=["csv", "xlsx"],
)
def test_written_cpl_imports_back_to_the_same_entries(
    dataset: DemoDataset, render: object, filename: str
) -> None:
    assert callable(render)
    data = render(dataset.cpl)
    document = parse_cpl(data, filename=filename, imported="2026-01-01T00:00:00Z")
    assert document.entries == dataset.cpl


def test_cpl_csv_has_the_canonical_headers(dataset: DemoDataset) -> None:
    header = render_cpl_csv(dataset.cpl).decode().splitlines()[0]
    assert header.startswith("CPL Entry ID,Device Type,Manufacturer Identifier,")
    assert header.endswith(",Status,Upgrade From")


def applicable(device: DemoDevice, dataset: DemoDataset) -> list[str]:
    """DOMAIN.md's rule, written out independently of the client, for checking the sample only."""
    current = {
        e.id
        for e in dataset.cpl
        if (e.manufacturer_id, e.model_id, e.hardware_version, e.firmware_version)
        == (
            device.manufacturer_id,
            device.model_id,
            device.hardware_version,
            device.firmware_version,
        )
    }
    found = []
    for image in dataset.images:
        entries: list[CplEntry] = [e for e in dataset.cpl if e.id in image.cpl_entries]
        for entry in entries:
            same_kind = (entry.manufacturer_id, entry.model_id, entry.hardware_version) == (
                device.manufacturer_id,
                device.model_id,
                device.hardware_version,
            )
            if not same_kind:
                continue
            if entry.upgrade_from:
                ok = bool(current & set(entry.upgrade_from))
            else:
                ok = int(image.firmware_version, 16) > int(device.firmware_version, 16)
            if ok:
                found.append(image.name)
                break
    return found


def test_estate_spreads_a_few_hundred_valid_devices_over_every_case(dataset: DemoDataset) -> None:
    devices = dataset.devices
    assert 200 <= len(devices) <= 600
    plain_ids = [d.device_id.replace("-", "") for d in devices]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in plain_ids)
    assert len(set(plain_ids)) == len(devices)
    assert any("-" not in d.device_id for d in devices)  # both forms DOMAIN.md allows
    for d in devices:
        assert identifiers.device_type(d.device_type) == d.device_type
        assert identifiers.manufacturer_id(d.manufacturer_id) == d.manufacturer_id
        assert identifiers.model_id(d.model_id) == d.model_id
        assert identifiers.hardware_version(d.hardware_version) == d.hardware_version
        assert identifiers.firmware_version(d.firmware_version) == d.firmware_version

    with_upgrade = [d for d in devices if applicable(d, dataset)]
    without = [d for d in devices if not applicable(d, dataset)]
    assert len(with_upgrade) >= 50
    assert len(without) >= 50

    library = {m.id for m in dataset.manufacturers}
    absent = [d for d in devices if d.manufacturer_id not in library]
    assert absent
    assert {d.manufacturer_id for d in absent} == {dataset.absent_manufacturer.id}
    assert all(e.manufacturer_id != dataset.absent_manufacturer.id for e in dataset.cpl)

    on_cpl = {(e.model_id, e.hardware_version) for e in dataset.cpl}
    assert any(
        d.manufacturer_id in library and (d.model_id, d.hardware_version) not in on_cpl
        for d in devices
    )
    # a device must step through 00060000 before 00070000 applies to it
    stepping = [d for d in devices if d.firmware_version == "00050000"]
    assert stepping
    assert all(applicable(d, dataset) == ["0A5C-GSME-0A5C0002-00060000.ota"] for d in stepping)
    # devices already on the newest firmware have nothing to do
    assert any(d.firmware_version == "01020000" and not applicable(d, dataset) for d in devices)


def test_estate_csv_has_the_canonical_columns(dataset: DemoDataset) -> None:
    rows = list(csv.reader(io.StringIO(render_estate_csv(dataset.devices).decode())))
    assert tuple(rows[0]) == ESTATE_COLUMNS
    assert rows[0] == [
        "Device ID",
        "Device Type",
        "Manufacturer Identifier",
        "Model Identifier",
        "Hardware Version",
        "Firmware Version",
    ]
    assert len(rows) == 1 + len(dataset.devices)
    assert rows[1] == [
        dataset.devices[0].device_id,
        dataset.devices[0].device_type,
        dataset.devices[0].manufacturer_id,
        dataset.devices[0].model_id,
        dataset.devices[0].hardware_version,
        dataset.devices[0].firmware_version,
    ]


def test_write_demo_dataset_writes_every_file_it_names(
    dataset: DemoDataset, tmp_path: Path
) -> None:
    paths = write_demo_dataset(dataset, tmp_path)
    assert paths.cpl_csv.read_bytes() == render_cpl_csv(dataset.cpl)
    assert paths.cpl_xlsx.read_bytes() == render_cpl_xlsx(dataset.cpl)
    assert paths.estate_csv.read_bytes() == render_estate_csv(dataset.devices)
    assert paths.declarations_json.read_bytes() == render_declarations(dataset.images)
    assert [p.name for p in paths.images] == [i.name for i in dataset.images]
    for path, image in zip(paths.images, dataset.images, strict=True):
        assert path.parent == tmp_path / "images"
        assert path.suffix == ".ota"
        assert path.read_bytes() == image.data
    for path, image in zip(paths.release_notes, dataset.images, strict=True):
        assert path.read_text() == image.release_notes

    declarations = json.loads(paths.declarations_json.read_bytes())
    assert declarations["schema_version"] == 1
    for entry, image in zip(declarations["images"], dataset.images, strict=True):
        assert (tmp_path / entry["image"]).read_bytes() == image.data
        assert (tmp_path / entry["release_notes"]).is_file()
        assert entry["cpl_entries"] == list(image.cpl_entries)
        assert entry["reason"] == image.reason
        assert entry["advisories"] == list(image.advisories)
        assert entry["manufacturer_id"] == image.manufacturer_id
        assert entry["manufacturer_image_sha256"] == image.manufacturer_image_sha256
        assert (
            hashlib.sha256((tmp_path / entry["image"]).read_bytes()).hexdigest()
            != (entry["manufacturer_image_sha256"])
        )  # the CPL hash covers the Manufacturer Image, not the header
