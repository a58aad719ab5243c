"""The audit's judgement, on a real (small) library and hand-made log records: registration and
revocation times, roles, Change of Supplier by `Since`, devices already upgraded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from access.pki import issue, make_ca
from factory import T0, LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.naming import blob_name
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.access.audit import (
    AccessRecord,
    AuditLibrary,
    Auditor,
    MalformedLineError,
    parse_line,
)
from repo_tool.access.certificates import check_certificate
from repo_tool.access.inventory import read_inventory
from repo_tool.ops.suppliers import registered, revoked

CA = make_ca()
IS_CERT, GS_CERT, LATE_CERT = (
    issue(CA, n, not_before=T0 - timedelta(days=90)) for n in ("IS Co", "GS Co", "Late Co")
)
IS, GS, LATE = "00000000000000B1", "00000000000000B2", "00000000000000B3"
HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since\n"
)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditLibrary, SupplierRegistry, str]:
    """An ESME image (firmware 2 for model 010A030B hw 1111) and three organisations."""
    factory = LibraryFactory(tmp_path_factory.mktemp("audit-rules"))
    image = make_image("121D", 2)
    factory.import_cpl(
        [
            make_entry("CPL-1", fw="00000001"),
            make_entry("CPL-2", fw="00000002", image_sha=mi_sha(image), upgrade_from=("CPL-1",)),
        ]
    )
    factory.add_manufacturer("121D")
    factory.publish()
    result = factory.deposit(image, ["CPL-2"])
    assert result.target is not None
    repo = factory.repo
    library = AuditLibrary.of([repo.role("mfr-121D").signed], repo.cpl())
    registry = SupplierRegistry()
    registry, _ = registered(
        registry,
        entity=IS,
        name="IS Co",
        roles=["IS"],
        certificate=IS_CERT.cert_pem,
        now=T0 - 30 * DAY,
    )
    registry, _ = registered(
        registry,
        entity=GS,
        name="GS Co",
        roles=["GS"],
        certificate=GS_CERT.cert_pem,
        now=T0 - 30 * DAY,
    )
    registry, _ = registered(
        registry, entity=LATE, name="Late", roles=["IS"], certificate=LATE_CERT.cert_pem, now=T0
    )
    registry, _ = revoked(registry, entity=IS, reason="gone", now=T0 + 10 * DAY)
    sha = repo.role("mfr-121D").signed.targets[result.target].hashes["sha256"]
    return library, registry, "/targets/" + blob_name(result.target, sha)


def record(path: str, cert: bytes, when: datetime) -> AccessRecord:
    sha256 = check_certificate(cert, now=T0).sha256
    line = {
        "format": "cfl-access-1", "time": when.isoformat(), "entity_id": "", "certificate_sha256": sha256,
        "certificate_sha1": "", "verify": "SUCCESS", "certificate": "", "remote_addr": "::1",
        "method": "GET", "path": path, "status": 200, "bytes": 1,
    }  # fmt: skip
    parsed = parse_line(json.dumps(line, separators=(",", ":")).encode())
    assert parsed is not None
    return parsed


def inventory(*rows: tuple[str, str, str]) -> str:
    """Rows of (firmware, supplier, since) for ESME devices of the image's model."""
    body = "".join(
        f"{i:016X},ESME,121D,010A030B,1111,{fw},{supplier},{since}\n"
        for i, (fw, supplier, since) in enumerate(rows)
    )
    return HEADER + body


def findings(
    world: tuple[AuditLibrary, SupplierRegistry, str],
    cert: bytes,
    when: datetime,
    inv: str | None = None,
) -> tuple[str, ...]:
    library, registry, path = world
    index = read_inventory(inv.splitlines(keepends=True)) if inv is not None else None
    return Auditor(registry, library, index).judge(record(path, cert, when)).findings


def test_role_registration_and_revocation_times(
    world: tuple[AuditLibrary, SupplierRegistry, str],
) -> None:
    assert findings(world, IS_CERT.cert_pem, T0) == ()
    assert findings(world, GS_CERT.cert_pem, T0) == ("outside-role",)
    # Downloads before the revocation stay clean; after it they are flagged.
    assert findings(world, IS_CERT.cert_pem, T0 + 10 * DAY - timedelta(seconds=1)) == ()
    assert findings(world, IS_CERT.cert_pem, T0 + 10 * DAY) == ("revoked-certificate",)
    # A certificate used before it was registered was not registered then.
    assert findings(world, LATE_CERT.cert_pem, T0 - DAY) == ("unregistered-certificate",)
    assert findings(world, issue(CA, "Stranger").cert_pem, T0) == ("unregistered-certificate",)


def test_change_of_supplier_entitles_from_the_gain(
    world: tuple[AuditLibrary, SupplierRegistry, str],
) -> None:
    gained = (T0 - 5 * DAY).date().isoformat()
    inv = inventory(("00000001", IS, gained))
    assert findings(world, IS_CERT.cert_pem, T0 - 6 * DAY, inv) == ("no-applicable-device",)
    assert findings(world, IS_CERT.cert_pem, T0 - 5 * DAY, inv) == ()


def test_the_rule_decides_which_devices_count(
    world: tuple[AuditLibrary, SupplierRegistry, str],
) -> None:
    long_ago = (T0 - 60 * DAY).date().isoformat()
    # Firmware 3 is not on the image's upgrade pathway (CPL-1 only): the image applies to nothing.
    assert findings(world, IS_CERT.cert_pem, T0, inventory(("00000003", IS, long_ago))) == (
        "no-applicable-device",
    )
    # A device already running the image's firmware: the download was for that upgrade.
    assert findings(world, IS_CERT.cert_pem, T0, inventory(("00000002", IS, long_ago))) == ()
    # Another supplier's devices do not entitle this one.
    assert findings(world, IS_CERT.cert_pem, T0, inventory(("00000001", GS, long_ago))) == (
        "no-applicable-device",
    )


def test_unknown_blob_is_judged_by_its_name(
    world: tuple[AuditLibrary, SupplierRegistry, str],
) -> None:
    library, registry, _ = world
    path = "/targets/121D/" + "c" * 64 + ".GSME-0001-00000009-" + "d" * 16 + ".ota"
    judged = Auditor(registry, library).judge(record(path, IS_CERT.cert_pem, T0))
    assert judged.findings == ("outside-role",)
    assert judged.entitled is None
    assert judged.to_dict()["time"] == T0.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_corrupt_gzip_leaves_stdout_empty(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = tmp_path / "R"
    cfl_repo = Path(sys.executable).with_name("cfl-repo")
    assert (
        subprocess.run(
            [str(cfl_repo), "--repo", str(repo), "init", "--dev-keys"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    import gzip

    bad = tmp_path / "access.log.2.gz"
    bad.write_bytes(gzip.compress(b'{"format":"cfl-access-1"}\n' * 1000)[:-20])
    result = subprocess.run(
        [str(cfl_repo), "--repo", str(repo), "audit", str(bad), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "access.log.2.gz" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "oddity",
    [
        b'"path":"/targets/121D/\\ud800.ota"',  # a lone surrogate escape: JSON, refused by orjson
        b'"path":"/targets/121D/\xff\xfe.ota"',  # bytes nginx's escape=json passes through
    ],
)
def test_lines_orjson_refuses_are_read_as_the_stdlib_reads_them(oddity: bytes) -> None:
    """The audit decodes with orjson for speed; where it refuses what JSON allows (or what nginx
    writes), the line must get the stdlib's verdict, not become malformed."""
    line = (
        b'{"format":"cfl-access-1","time":"2026-01-01T00:00:00+00:00","entity_id":"",'
        b'"certificate_sha256":"","certificate_sha1":"","verify":"NONE","certificate":"",'
        b'"remote_addr":"::1","method":"GET","status":200,"bytes":1,' + oddity + b"}"
    )
    assert parse_line(line) is None  # valid records for a path that names no image blob


def test_a_byte_count_beyond_64_bits_stays_an_integer(
    world: tuple[AuditLibrary, SupplierRegistry, str],
) -> None:
    """orjson would read it as a float (and the line as malformed); JSON and the stdlib keep it."""
    _, _, path = world
    line = json.dumps(
        {
            "format": "cfl-access-1", "time": "2026-01-01T00:00:00+00:00", "entity_id": "",
            "certificate_sha256": "", "certificate_sha1": "", "verify": "NONE", "certificate": "",
            "remote_addr": "::1", "method": "GET", "path": path, "status": 200, "bytes": 10**30,
        },
        separators=(",", ":"),
    )  # fmt: skip
    parsed = parse_line(line.encode())
    assert parsed is not None and parsed.bytes == 10**30


def test_an_entry_as_json_is_its_dict_with_the_time_as_format_timestamp_writes_it(
    world: tuple[AuditLibrary, SupplierRegistry, str],
) -> None:
    library, registry, path = world
    judged = Auditor(registry, library).judge(record(path, IS_CERT.cert_pem, T0 + DAY / 3))
    text = judged.to_json()
    assert json.loads(text) == judged.to_dict()
    assert list(json.loads(text)) == sorted(judged.to_dict())  # keys sorted, as before orjson
    assert '"time":"' + judged.to_dict()["time"] + '"' in text


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("status", "18446744073709551616"),  # beyond 64 bits: orjson cannot write it
        ("bytes", "-9223372036854775809"),
        ("certificate_sha256", '"\\ud800"'),  # a lone surrogate: JSON, but not UTF-8
    ],
)
def test_an_entry_orjson_cannot_write_is_written_as_the_stdlib_writes_it(
    world: tuple[AuditLibrary, SupplierRegistry, str], field: str, raw: str
) -> None:
    library, registry, path = world
    values = {
        "format": '"cfl-access-1"', "time": '"2026-01-01T00:00:00+00:00"', "entity_id": '""',
        "certificate_sha256": '""', "certificate_sha1": '""', "verify": '"NONE"',
        "certificate": '""', "remote_addr": '"::1"', "method": '"GET"', "path": json.dumps(path),
        "status": "200", "bytes": "1",
    } | {field: raw}  # fmt: skip
    line = "{" + ",".join(f'"{k}":{v}' for k, v in values.items()) + "}"
    record = parse_line(line.encode())
    assert record is not None
    judged = Auditor(registry, library).judge(record)
    assert json.loads(judged.to_json()) == json.loads(json.dumps(judged.to_dict()))


@pytest.mark.parametrize("depth", [100, 995, 1030, 5000])
def test_a_line_nested_deeply_is_one_malformed_line_not_the_end_of_the_audit(depth: int) -> None:
    line = (
        b'{"format":"cfl-access-1","path":"/targets/x","deep":' + b"[" * depth + b"]" * depth + b"}"
    )
    try:
        parse_line(line)
    except MalformedLineError as e:
        assert "not JSON" in str(e) or "missing" in str(e)
    # no RecursionError escapes: the line is either read or refused as one malformed line


def test_a_big_number_in_a_text_field_is_refused_in_the_stdlib_words() -> None:
    line = (
        b'{"format":"cfl-access-1","time":123456789012345678901,"entity_id":"",'
        b'"certificate_sha256":"","certificate_sha1":"","certificate":"","path":"/targets/x",'
        b'"status":200,"bytes":1}'
    )
    with pytest.raises(MalformedLineError, match="123456789012345678901,"):
        parse_line(line)
