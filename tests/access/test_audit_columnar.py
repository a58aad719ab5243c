"""The audit in columns (audit_columnar.py, inventory_columnar.py) against the per-row path it
replaces: the same index, totals, summary, report and entries, byte for byte, on generated logs
and inventories full of hostile lines and rows (small blocks, so plain blocks and fallen-back
ones alternate, and a block of the default size too)."""

from __future__ import annotations

import codecs
import io
import json
import random
import urllib.parse
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef, PilotTerms, format_timestamp
from metadata_templates.errors import RejectedInputError
from metadata_templates.naming import blob_name, image_target_path
from metadata_templates.suppliers import Supplier, SupplierRegistry, certificate_sha256
from repo_tool.access import audit_columnar, inventory_columnar
from repo_tool.access.audit import (
    AuditLibrary,
    Auditor,
    LibraryImage,
    Summary,
    Totals,
    judged_lines,
    render_text,
)
from repo_tool.access.audit_columnar import audit_logs
from repo_tool.access.certificates import certificate_sha1
from repo_tool.access.inventory import InventoryIndex, read_inventory
from repo_tool.access.inventory_columnar import read_inventory_binary

START = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ("ESME", "GSME", "PPMID")
HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since"
)


def _sha(label: str) -> str:
    import hashlib

    return hashlib.sha256(label.encode()).hexdigest()


def _certificate(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(START - timedelta(days=30))
        .not_valid_after(START + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    """Five organisations (one registered late, one revoked), an image library, and callers."""
    suppliers, callers = [], []
    for i, roles in enumerate((("IS",), ("GS",), ("IS", "GS"), ("IS",), ("GS",))):
        cert = _certificate(f"Supplier {i}")
        der = cert.public_bytes(Encoding.DER)
        registered = START + timedelta(days=1) if i == 3 else START - timedelta(days=1)
        supplier = Supplier(
            entity_id=f"{0xB000 + i:016X}", name=f"Supplier {i}", roles=roles,
            certificate_pem=cert.public_bytes(Encoding.PEM).decode(),
            certificate_sha256=certificate_sha256(der), registered=format_timestamp(registered),
        )  # fmt: skip
        if i == 2:
            revoked = format_timestamp(START + timedelta(days=2))
            supplier = replace(supplier, status="revoked", revoked=revoked)
        suppliers.append(supplier)
        callers.append((supplier.entity_id, certificate_sha256(der), certificate_sha1(der)))
    stranger = _certificate("Stranger")
    pem = urllib.parse.quote(stranger.public_bytes(Encoding.PEM).decode())
    images: dict[str, LibraryImage] = {}
    entries, blobs, pilots = [], [], []
    for m in range(3):
        mfr = f"{0x1000 + m:04X}"
        for model_number in range(2):
            model = f"{model_number + 1:04X}0000"
            device_type = TYPES[(m + model_number) % 3]
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
                pilot = None
                if (m, model_number, fw) == (0, 0, 3):  # for supplier 0 until the third day
                    pilot = PilotTerms(
                        (callers[0][0],), (START + timedelta(days=2)).date().isoformat()
                    )
                info = CflTargetInfo(
                    device_type=device_type, manufacturer_id=mfr, manufacturer_name="Maker",
                    image_type="0001", firmware_version=f"{fw:08X}", stack_version="0002",
                    header_string="t", hardware_version_min="0100", hardware_version_max="0100",
                    manufacturer_image_sha256=_sha(entry_id), manufacturer_image_length=1000,
                    cpl_entries=(CplEntryRef(entry_id, model, "Model", "0100", "Active", ()),),
                    reason="compliance", advisories=(), published=format_timestamp(START),
                    pilot=pilot,
                )  # fmt: skip
                images[target] = LibraryImage(target, sha, info)
                (pilots if pilot else blobs).append(f"/targets/{blob_name(target, sha)}")
    cpl = CplDocument.of(entries, "0" * 64, format_timestamp(START))
    unknown = "/targets/1001/" + "c" * 64 + ".GSME-0001-00000009-" + "d" * 16 + ".ota"
    return {
        "registry": SupplierRegistry(tuple(suppliers)),
        "library": AuditLibrary(images, cpl),
        "callers": callers,
        "pem": pem,
        "paths": [*blobs, unknown],
        "pilots": pilots,  # judged request by request: lines naming them fall back
    }


# ---------------------------------------------------------------------------------- the logs


def _time(rng: random.Random, hostile: bool) -> str:
    when = START + timedelta(seconds=rng.randrange(-86_400, 5 * 86_400))
    offset = rng.choice(["+00:00", "+00:00", "Z", "+01:00", "-05:30"])
    local = when + (timedelta(hours=1) if offset == "+01:00" else timedelta(0))
    local -= timedelta(hours=5, minutes=30) if offset == "-05:30" else timedelta(0)
    if hostile and rng.random() < 0.02:
        return rng.choice(
            [
                "2026-02-30T00:00:00+00:00", "2026-01-01T24:00:00+00:00", "yesterday", "",
                "9999-12-31T23:59:59-23:59", "2026-01-01T00:00:00", "2026-01-01T00:00:00.5Z",
                "1899-12-31T23:00:00-01:00", "2026-01-01 00:00:00+00:00", "0000-01-01T00:00:00Z",
            ]
        )  # fmt: skip
    return local.strftime("%Y-%m-%dT%H:%M:%S") + offset


def _line(world: dict[str, Any], rng: random.Random, hostile: bool = True) -> bytes:
    roll = rng.random()
    entity, sha256, sha1 = rng.choice(world["callers"])
    cert = ""
    if roll < 0.05:
        sha256 = ""  # named by its SHA-1 only
    elif roll < 0.08:
        entity, sha256, sha1 = "", "", ""  # no certificate
    elif roll < 0.1:
        entity, sha256, sha1 = "", _sha(str(rng.random())), _sha("x")[:40]  # unregistered
    elif roll < 0.11 and hostile:
        entity, sha256, sha1, cert = "", "", "", world["pem"]  # by its PEM only
    path = rng.choice(
        world["paths"] * 3
        + (world["pilots"] if hostile else [])
        + ["/metadata/timestamp.json", "/targets/junk", "/metadata/1.root.json"]
    )
    status = rng.choice([200, 200, 200, 206, 304, 403, 404, 500, 199, 299, 300])
    text = (
        f'{{"format":"cfl-access-1","time":"{_time(rng, hostile)}","entity_id":"{entity}",'
        f'"certificate_sha256":"{sha256}","certificate_sha1":"{sha1}","verify":"SUCCESS",'
        f'"certificate":"{cert}","remote_addr":"10.0.0.1","method":"GET","path":"{path}",'
        f'"status":{status},"bytes":{rng.randrange(0, 10**6)}}}'
    )
    line = text.encode()
    if hostile and rng.random() < 0.04:
        line = _hostile(line, rng)
    return line


def _hostile(line: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(22)
    if choice == 0:
        return b"not json at all"
    if choice == 1:
        return line[: rng.randrange(len(line))]
    if choice == 2:
        return line.replace(b'"verify":"SUCCESS"', b'"verify":"\\u00e9\\ud800"')
    if choice == 3:
        return line.replace(b'"verify":"SUCCESS"', b'"verify":"\xff\xfe"')
    if choice == 4:
        depth = rng.choice([5, 1100])
        return line[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    if choice == 5:
        return line[:-1] + b',"x":{"a":{"b":1}}}'
    if choice == 6:
        return line.replace(b'"status":', b'"status":1,"status":')
    if choice == 7:
        return line + b"\r"
    if choice == 8:
        return line + b"   "
    if choice == 9:
        return b" " + line
    if choice == 10:
        return b""
    if choice == 11:
        return b"  \t "
    if choice == 12:
        return b'{"time":"2026-01-01T00:00:00Z",' + line[len(b'{"format":"cfl-access-1",') :]
    if choice == 13:
        return line.replace(b'"status":', b'"status":"').replace(b',"bytes"', b'","bytes"')
    if choice == 14:
        return line.replace(b'"bytes":', b'"bytes":null,"b":')
    if choice == 15:
        return line[:-1] + b',"x":NaN}'
    if choice == 16:
        return line.replace(b'"path":"', b'"path": "')
    if choice == 17:
        return line.replace(b'"bytes":', b'"bytes":1000000000000000000000000000000,"b":')
    if choice == 18:
        return line.replace(b'"path":"', b'"path":"/targets/\\u0041')
    if choice == 19:
        return line + b"}"
    if choice == 20:
        return line.replace(b'"entity_id"', b'"path":"/x","entity_id"')
    return b'{"format":"cfl-access-1"}'


def _log(world: dict[str, Any], seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    body = b"\n".join(_line(world, rng) for _ in range(lines))
    return body + (b"\n" if seed % 2 else b"")


def _inventory_index(world: dict[str, Any]) -> InventoryIndex:
    rows = [HEADER + "\n"]
    for n, (entity, _, _) in enumerate(world["callers"] * 4):
        m, model_number = n % 3, n // 3 % 2
        fw = 1 + n % 2
        since = (START + timedelta(days=n % 4 - 1)).date().isoformat()
        rows.append(
            f"{n:016X},{TYPES[(m + model_number) % 3]},{0x1000 + m:04X},"
            f"{model_number + 1:04X}0000,0100,{fw:08X},{entity},{since}\n"
        )
    return read_inventory(rows)


def _old(paths: list[Path], auditor: Auditor) -> tuple[Totals, Summary, str]:
    totals, summary, out = Totals(), Summary(), []
    for judged in judged_lines(paths, auditor, totals):
        summary.add(judged)
        out.append(",\n    " + judged.to_json())
    return totals, summary, "".join(out)


def _new(paths: list[Path], auditor: Auditor) -> tuple[Totals, Summary, str]:
    totals, summary, out = Totals(), Summary(), []
    audit_logs(paths, auditor, totals, summary, out.append)
    return totals, summary, b"".join(out).decode()


def _same_audit(world: dict[str, Any], paths: list[Path], inventory: bool) -> str:
    index = _inventory_index(world) if inventory else None
    registry, library = world["registry"], world["library"]
    old = _old(paths, Auditor(registry, library, index))
    new = _new(paths, Auditor(registry, library, index))
    assert new[2] == old[2]  # the entries, byte for byte, in order
    assert new[0] == old[0]  # lines, requests, flagged, malformed lines and their examples
    assert render_text(new[1], registry, new[0], inventory=inventory) == render_text(
        old[1], registry, old[0], inventory=inventory
    )
    assert json.dumps(new[1].suppliers(registry)) == json.dumps(old[1].suppliers(registry))
    assert new[1].by_caller.keys() == old[1].by_caller.keys()
    for caller, entry in old[1].by_caller.items():
        other = new[1].by_caller[caller]
        assert (other.downloads, other.flagged) == (entry.downloads, entry.flagged)
        assert sorted(other.targets.items()) == sorted(entry.targets.items())
        assert other.flagged_examples == entry.flagged_examples
    return old[2]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("block", [700, 4096, audit_columnar.BLOCK])
def test_the_columns_judge_as_the_lines_do(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, block: int
) -> None:
    monkeypatch.setattr(audit_columnar, "BLOCK", block)
    columnar = []
    real = audit_columnar._Blocks._columns

    def spy(self: Any, data: bytes, lines: int) -> bool:
        columnar.append(real(self, data, lines))
        return columnar[-1]

    monkeypatch.setattr(audit_columnar._Blocks, "_columns", spy)
    first, second = tmp_path / "access.log.1", tmp_path / "access.log"
    first.write_bytes(_log(world, seed, 400))
    second.write_bytes(_log(world, seed + 100, 300))
    for inventory in (False, True):
        entries = _same_audit(world, [first, second], inventory)
        assert "no-applicable-device" in entries or not inventory
    assert "pilot-not-released" in entries and "revoked-certificate" in entries
    if block < 1000:  # (a bigger block holds a hostile line: it all falls back)
        assert any(columnar)  # some blocks went through the columns...
        assert not all(columnar)  # ...and some fell back


def test_a_plain_log_is_judged_in_columns_throughout(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    lines = [_line(world, rng, hostile=False) for _ in range(2000)]
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(audit_columnar, "BLOCK", 1 << 16)
    fell_back = []
    monkeypatch.setattr(
        audit_columnar._Blocks, "_lines", lambda self, *a: fell_back.append(a) or None
    )
    _new([log], Auditor(world["registry"], world["library"]))
    assert not fell_back


def test_a_corrupt_gzip_is_named_at_the_line_the_line_reader_stops(
    world: dict[str, Any], tmp_path: Path
) -> None:
    import gzip

    from metadata_templates.errors import UnavailableError

    bad = tmp_path / "access.log.2.gz"
    bad.write_bytes(gzip.compress(_log(world, 1, 3000))[:-20])
    errors = []
    for run in (_old, _new):
        with pytest.raises(UnavailableError) as caught:
            run([bad], Auditor(world["registry"], world["library"]))
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


# ----------------------------------------------------------------------------- the inventory


def _row(rng: random.Random, n: int) -> str:
    fields = [
        f"{n:016X}", rng.choice(["ESME", "GSME", "PPMID"]), rng.choice(["1000", "1001", "1002"]),
        rng.choice(["00010000", "0002", "00020000"]), "0100",
        rng.choice(["00000001", "00000002"]), f"{0xB000 + rng.randrange(5):016X}",
        (date(2025, 1, 1) + timedelta(days=rng.randrange(400))).isoformat(),
    ]  # fmt: skip
    if rng.random() < 0.08:
        column = rng.randrange(8)
        fields[column] = rng.choice(
            [
                "", " ", "esme", "ESME!", "2026-13-01", "2026-02-30", "20260101", " 2026-01-01 ",
                "2026-01-01T10:00", '"ESME"', '"a,b"', '"multi\nline"', "\xff", "x\ufeffy",
                "123456789012345678901234567890", "0011-2233-4455-6677", "00000000000000b1",
                "0000-0000-0000-B001", "\x00", "a\rb", "caf\u00e9", "\x0c1000", "1000\x0b",
            ]
        )  # fmt: skip
    if rng.random() < 0.02:
        fields = fields[: rng.randrange(8)]
    if rng.random() < 0.02:
        fields.append("extra")
    line = ",".join(fields)
    return line + rng.choice(["\n"] * 30 + ["\r\n", "\n\n", "\r", " \n"])


def _inventory(seed: int, rows: int, header: str = HEADER) -> bytes:
    rng = random.Random(seed)
    text = header + "\n" + "".join(_row(rng, n) for n in range(rows))
    data = text.encode("utf-8", errors="surrogatepass")
    if seed % 3 == 0:
        data = codecs.BOM_UTF8 + data
    if seed % 5 == 1:
        data = data.replace(b"\xc3\xa9", b"\xed\xa0\x80")  # a lone surrogate, encoded
    return data


def _indexes(data: bytes) -> tuple[Any, Any]:
    def old() -> Any:
        text = io.TextIOWrapper(
            io.BytesIO(data), encoding="utf-8-sig", errors="replace", newline=""
        )
        return read_inventory(text)

    results = []
    for read in (old, lambda: read_inventory_binary(io.BytesIO(data))):
        try:
            index = read()
        except RejectedInputError as e:
            results.append(("refused", str(e)))
            continue
        results.append(
            (
                [(s, list(kinds.items())) for s, kinds in index.since.items()],
                index.devices, index.bad_rows, index.problems, index.located,
                list(index.per_supplier.items()), index.latest,
            )
        )  # fmt: skip
    return results[0], results[1]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("block", [300, 5000, inventory_columnar.BLOCK])
def test_the_columns_index_as_the_rows_do(
    monkeypatch: pytest.MonkeyPatch, seed: int, block: int
) -> None:
    monkeypatch.setattr(inventory_columnar, "BLOCK", block)
    old, new = _indexes(_inventory(seed, 600))
    assert new == old


@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        HEADER.replace("Since", "since ").replace("Device ID", "DEVICE  ID"),
        HEADER + ",Extra,Columns",
        "Extra," + HEADER,
        HEADER.replace(",Since", ""),  # a column missing
        '"Device ID",' + HEADER.split(",", 1)[1],  # a quoted header
        HEADER.replace("\n", "") + "\r",
        "",
    ],
)
def test_headers_are_read_as_the_rows_read_them(
    monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    monkeypatch.setattr(inventory_columnar, "BLOCK", 256)
    old, new = _indexes(_inventory(7, 200, header))
    assert new == old


@pytest.mark.parametrize("data", [b"", codecs.BOM_UTF8, b"\n", HEADER.encode(), b"\xff\xfe"])
def test_an_empty_or_headless_inventory_is_refused_as_before(data: bytes) -> None:
    old, new = _indexes(data)
    assert new == old


def test_a_plain_inventory_is_indexed_in_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        f"{n:016X},ESME,1000,00010000,0100,0000000{1 + n % 2},{0xB000 + n % 5:016X},"
        f"2025-0{1 + n % 9}-01\n"
        for n in range(5000)
    ]
    data = (HEADER + "\n" + "".join(rows)).encode()
    monkeypatch.setattr(inventory_columnar, "BLOCK", 1 << 14)
    fell_back = []
    real = inventory_columnar.read_rows
    monkeypatch.setattr(
        inventory_columnar, "read_rows", lambda *a, **k: fell_back.append(1) or real(*a, **k)
    )
    old, new = _indexes(data)
    assert new == old
    assert not fell_back
