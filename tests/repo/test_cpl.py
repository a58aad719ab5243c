"""CPL import from CSV and XLSX: normalisation, lenient headers, every problem reported in full."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import openpyxl
import pytest

from metadata_templates.cpl_document import CplEntry
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.intake.cpl import (
    CPL_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    entry_to_row,
    parse_cpl,
    read_cpl,
)
from repo_tool.intake.cpl_tables import CplImportError, CplLimits

IMPORTED = "2026-01-02T03:04:05Z"
HASH_A = "ab" * 32
HASH_B = "CD" * 32


def row(**changes: object) -> dict[str, object]:
    """A valid row keyed by canonical column; ``changes`` use the column name with _ for spaces."""
    cells: dict[str, object] = {
        "CPL Entry ID": "CPL-000101",
        "Device Type": "esme",
        "Manufacturer Identifier": "121d",
        "Manufacturer Name": "Acme Metering",
        "Model Identifier": "010a030b",
        "Model Name": 'E470 <script>alert(1)</script> & "q"',
        "Hardware Version": "1111",
        "Firmware Version": "acdcacdc",
        "SMETS/CHTS Version": "SMETS V5.0",
        "GBCS Version": "4.2",
        "Manufacturer Image Hash": HASH_A,
        "CPA Certificate": "CPA-123",
        "CPA Expiry Date": "2030-06-30",
        "Status": "active",
        "Upgrade From": "N/A",
    }
    for key, value in changes.items():
        column = next(c for c in CPL_COLUMNS if c.replace(" ", "_").replace("/", "_") == key)
        cells[column] = value
    return cells


TWO_ROWS = [
    row(),
    row(
        CPL_Entry_ID="CPL-000102",
        Firmware_Version="ACDCACDD",
        Manufacturer_Image_Hash=HASH_B,
        CPA_Expiry_Date="",
        Status="CANCELLED",
        Upgrade_From="CPL-000101",
    ),
]


def csv_bytes(rows: Sequence[dict[str, object]], header: Sequence[str] = CPL_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for cells in rows:
        writer.writerow(["" if (v := cells.get(c)) is None else str(v) for c in _canon(header)])
    return out.getvalue().encode()


def xlsx_bytes(rows: Sequence[dict[str, object]], header: Sequence[str] = CPL_COLUMNS) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(header))
    for cells in rows:
        sheet.append([cells.get(c) for c in _canon(header)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _canon(header: Sequence[str]) -> list[str]:
    """Map a (possibly mangled) header back to canonical names for filling rows."""
    keys = {"".join(c.split()).casefold(): c for c in CPL_COLUMNS}
    return [keys.get("".join(h.split()).casefold(), h) for h in header]


def patch_sheet(data: bytes, edit: Callable[[str], str]) -> bytes:
    """Rewrite the first worksheet's XML, to make cells openpyxl itself would never write."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = edit(content.decode()).encode()
            target.writestr(info.filename, content)
    return out.getvalue()


def replace_cell(ref: str, xml: str) -> Callable[[str], str]:
    def edit(sheet: str) -> str:
        new, count = re.subn(rf'<c r="{ref}"[^>]*?(/>|>.*?</c>)', xml, sheet, count=1)
        assert count == 1, f"cell {ref} not found"
        return new

    return edit


Writer = Callable[..., bytes]
FORMATS: dict[str, tuple[Writer, str]] = {
    "csv": (csv_bytes, "cpl.csv"),
    "xlsx": (xlsx_bytes, "cpl.xlsx"),
}


def parse(
    fmt: str, rows: Sequence[dict[str, object]], header: Sequence[str] = CPL_COLUMNS
) -> list[CplEntry]:
    make, name = FORMATS[fmt]
    return list(parse_cpl(make(rows, header), filename=name, imported=IMPORTED).entries)


def problems_of(
    fmt: str, rows: Sequence[dict[str, object]], header: Sequence[str] = CPL_COLUMNS
) -> list[str]:
    with pytest.raises(CplImportError) as info:
        parse(fmt, rows, header)
    return info.value.problems


EXPECTED_FIRST = CplEntry(
    id="CPL-000101",
    device_type="ESME",
    manufacturer_id="121D",
    manufacturer_name="Acme Metering",
    model_id="010A030B",
    model_name='E470 <script>alert(1)</script> & "q"',
    hardware_version="1111",
    firmware_version="ACDCACDC",
    smets_version="SMETS V5.0",
    gbcs_version="4.2",
    manufacturer_image_sha256=HASH_A,
    cpa_certificate="CPA-123",
    cpa_expiry="2030-06-30",
    status="Active",
    upgrade_from=(),
)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_valid_cpl_is_normalised(fmt: str) -> None:
    first, second = parse(fmt, TWO_ROWS)
    assert first == EXPECTED_FIRST
    assert second.manufacturer_image_sha256 == HASH_B.lower()
    assert second.cpa_expiry is None
    assert second.status == "Cancelled"
    assert second.upgrade_from == ("CPL-000101",)


def test_document_records_source_hash_and_injected_import_time() -> None:
    data = csv_bytes(TWO_ROWS)
    document = parse_cpl(data, filename="cpl.csv", imported=IMPORTED)
    assert document.source_sha256 == hashlib.sha256(data).hexdigest()
    assert document.imported == IMPORTED


def test_csv_and_xlsx_of_the_same_rows_give_the_same_entries() -> None:
    assert parse("csv", TWO_ROWS) == parse("xlsx", TWO_ROWS)


LENIENT_HEADERS = [
    pytest.param([c.upper().replace(" ", "") for c in CPL_COLUMNS], id="upper-case-no-spaces"),
    pytest.param([c.lower().replace(" ", "  ") for c in CPL_COLUMNS], id="lower-double-spaces"),
    pytest.param([f" \t{c}\u00a0" for c in CPL_COLUMNS], id="surrounding-whitespace-and-nbsp"),
    pytest.param(list(reversed(CPL_COLUMNS)), id="reordered"),
    pytest.param(["Notes", *CPL_COLUMNS, "Another Extra"], id="extra-columns-ignored"),
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("header", LENIENT_HEADERS)
def test_headers_match_case_and_space_insensitively(fmt: str, header: list[str]) -> None:
    assert parse(fmt, TWO_ROWS, header=header)[0] == EXPECTED_FIRST


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_missing_required_columns_are_named(fmt: str) -> None:
    header = [c for c in CPL_COLUMNS if c not in ("Status", "Upgrade From")]
    (problem,) = problems_of(fmt, TWO_ROWS, header=header)
    assert problem.startswith("row 1, header: missing required column(s) 'Status', 'Upgrade From'")


def test_optional_descriptive_columns_may_be_absent() -> None:
    header = list(REQUIRED_COLUMNS)
    (entry, _) = parse("csv", TWO_ROWS, header=header)
    assert (entry.manufacturer_name, entry.model_name, entry.cpa_expiry) == ("", "", None)
    assert set(REQUIRED_COLUMNS) | OPTIONAL_COLUMNS == set(CPL_COLUMNS)


def test_a_column_given_twice_is_reported() -> None:
    header = [*CPL_COLUMNS, "STATUS"]
    (problem,) = problems_of("csv", TWO_ROWS, header=header)
    assert (
        problem
        == "row 1, header: found column 'Status' twice (columns 14 and 16), expected it once"
    )


# (column, value found in the cell, how the message shows it, the expected part of the message)
BAD_FIELDS = [
    pytest.param("CPL Entry ID", "", "''", "a non-empty printable ID without ';'", id="empty-id"),
    pytest.param("CPL Entry ID", "A;B", "'A;B'", "a non-empty printable ID", id="id-with-sep"),
    pytest.param("Device Type", "METER", "'METER'", "one of ESME, GSME", id="device-type"),
    pytest.param("Manufacturer Identifier", "121", "'121'", "4 hex digits", id="mfr-3-digits"),
    pytest.param("Manufacturer Identifier", "12XZ", "'12XZ'", "4 hex digits", id="mfr-not-hex"),
    pytest.param("Model Identifier", "010A03", "'010A03'", "4 or 8 hex digits", id="model-6"),
    pytest.param("Hardware Version", "", "''", "4 hex digits", id="hardware-empty"),
    pytest.param("Firmware Version", "ACDC", "'ACDC'", "8 hex digits", id="firmware-4"),
    pytest.param(
        "Manufacturer Image Hash", "ab" * 31, repr("ab" * 31), "64 hex digits", id="hash-short"
    ),
    pytest.param("CPA Expiry Date", "30/06/2030", "'30/06/2030'", "an ISO date", id="uk-date"),
    pytest.param("CPA Expiry Date", "2030-02-30", "'2030-02-30'", "an ISO date", id="no-such-day"),
    pytest.param("Status", "Live", "'Live'", "one of Active, Cancelled", id="status"),
    pytest.param(
        "Upgrade From", "CPL-000999", "'CPL-000999'", "the CPL Entry ID of an entry", id="dangling"
    ),
    pytest.param(
        "Upgrade From", "CPL-000200", "'CPL-000200'", "other CPL entries", id="self-reference"
    ),
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize(("column", "value", "shown", "expected"), BAD_FIELDS)
def test_bad_field_is_reported_with_row_column_found_and_expected(
    fmt: str, column: str, value: str, shown: str, expected: str
) -> None:
    bad = {**row(CPL_Entry_ID="CPL-000200"), column: value}
    problems = problems_of(fmt, [*TWO_ROWS, bad])
    assert len(problems) == 1
    assert problems[0].startswith(f"row 4, {column}: found {shown}, expected {expected}")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_every_error_is_collected_not_only_the_first(fmt: str) -> None:
    rows = [
        row(Hardware_Version="111", Status="gone"),
        row(CPL_Entry_ID="CPL-2", Firmware_Version="xyz"),
        row(CPL_Entry_ID="CPL-3"),
        row(CPL_Entry_ID="CPL-4", Device_Type="", Upgrade_From="CPL-404"),
    ]
    problems = problems_of(fmt, rows)
    assert problems == [
        "row 2, Hardware Version: found '111', expected 4 hex digits",
        "row 2, Status: found 'gone', expected one of Active, Cancelled, Expired, Withdrawn",
        "row 3, Firmware Version: found 'xyz', expected 8 hex digits",
        "row 5, Device Type: found '', expected one of "
        "ESME, GSME, CHF, GPF, PPMID, HCALCS, IHD, CAD",
        "row 5, Upgrade From: found 'CPL-404', expected the CPL Entry ID of an entry in this CPL",
    ]


def test_error_message_summarises_the_count_and_the_first_few() -> None:
    rows = [row(CPL_Entry_ID=f"CPL-{i}", Hardware_Version="1") for i in range(8)]
    with pytest.raises(CplImportError) as info:
        parse("csv", rows)
    error = info.value
    assert isinstance(error, RejectedInputError)
    assert len(error.problems) == 8
    assert str(error).startswith("CPL cpl.csv: 8 problems: row 2, Hardware Version: found '1'")
    assert str(error).endswith("; and 3 more")
    assert "row 6," in str(error)
    assert "row 7," not in str(error)


def test_listed_problems_are_capped_but_counted() -> None:
    rows = [row(CPL_Entry_ID=f"CPL-{i}", Hardware_Version="1") for i in range(30)]
    limits = CplLimits(max_listed_problems=10)
    with pytest.raises(CplImportError) as info:
        parse_cpl(csv_bytes(rows), filename="c.csv", imported=IMPORTED, limits=limits)
    assert len(info.value.problems) == 10
    assert info.value.total == 30
    assert "30 problems" in str(info.value)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("second_id", ["CPL-000101", "cpl-000101"], ids=["same", "case-differs"])
def test_duplicate_cpl_entry_ids_are_errors(fmt: str, second_id: str) -> None:
    rows = [row(), row(CPL_Entry_ID="CPL-X"), row(CPL_Entry_ID=second_id)]
    assert problems_of(fmt, rows) == [
        f"row 4, CPL Entry ID: found {second_id!r} again, expected a unique ID (first on row 2)"
    ]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("n/a", (), id="na-any-case"),
        pytest.param("", (), id="empty"),
        pytest.param(" CPL-A ; CPL-B ;", ("CPL-A", "CPL-B"), id="spaces-and-trailing-separator"),
    ],
)
def test_upgrade_from_forms(cell: str, expected: tuple[str, ...]) -> None:
    rows = [row(CPL_Entry_ID="CPL-A"), row(CPL_Entry_ID="CPL-B"), row(Upgrade_From=cell)]
    assert parse("csv", rows)[2].upgrade_from == expected


def test_upgrade_from_references_are_exact() -> None:
    rows = [row(CPL_Entry_ID="CPL-A"), row(Upgrade_From="cpl-a")]
    assert problems_of("csv", rows) == [
        "row 3, Upgrade From: found 'cpl-a', expected the CPL Entry ID of an entry in this CPL"
    ]


def test_csv_with_utf8_bom_is_read() -> None:
    data = codecs.BOM_UTF8 + csv_bytes(TWO_ROWS)
    assert parse_cpl(data, filename="cpl.csv", imported=IMPORTED).entries[0] == EXPECTED_FIRST


def test_non_utf8_csv_names_the_byte_offset() -> None:
    data = csv_bytes([row(Model_Name="caf\u00e9")])
    latin = data.replace("caf\u00e9".encode(), "caf\u00e9".encode("latin-1"))
    offset = latin.index(b"\xe9")
    with pytest.raises(CplImportError) as info:
        parse_cpl(codecs.BOM_UTF8 + latin, filename="cpl.csv", imported=IMPORTED)
    assert info.value.problems == [
        f"CSV file: found byte 0xE9 at offset {offset + 3} (line 2), expected UTF-8 text "
        "(save the CSV as UTF-8)"
    ]


def test_malformed_csv_quoting_is_reported_with_its_row() -> None:
    data = csv_bytes(TWO_ROWS) + b'CPL-9,"ESME"x,121D\r\n'
    with pytest.raises(CplImportError, match="row 4: found malformed CSV"):
        parse_cpl(data, filename="cpl.csv", imported=IMPORTED)


def test_blank_rows_are_skipped_but_row_numbers_stay_as_the_spreadsheet_shows() -> None:
    data = (
        csv_bytes([row()])
        + b"\r\n,,,\r\n"
        + csv_bytes([row(CPL_Entry_ID="X", Status="?")])[len(",".join(CPL_COLUMNS)) + 2 :]
    )
    with pytest.raises(CplImportError) as info:
        parse_cpl(data, filename="cpl.csv", imported=IMPORTED)
    assert info.value.problems == [
        "row 5, Status: found '?', expected one of Active, Cancelled, Expired, Withdrawn"
    ]


@pytest.mark.parametrize(
    ("data", "filename", "problem"),
    [
        pytest.param(b"", "cpl.csv", "CPL: found an empty file", id="empty-file"),
        pytest.param(
            csv_bytes([]),
            "cpl.csv",
            "CPL: found 0 entries, expected at least one",
            id="header-only",
        ),
        pytest.param(
            csv_bytes([]) + b",,,\r\n\r\n",
            "cpl.csv",
            "CPL: found 0 entries",
            id="blank-rows-only",
        ),
        pytest.param(xlsx_bytes([]), "cpl.xlsx", "CPL: found 0 entries", id="xlsx-header-only"),
        pytest.param(
            bytes.fromhex("D0CF11E0A1B11AE1") + bytes(100),
            "cpl.xls",
            "file: found a legacy binary .xls workbook",
            id="legacy-xls",
        ),
        pytest.param(
            csv_bytes(TWO_ROWS),
            "cpl.xlsx",
            "file: found 43 50 4C 20 at the start, expected 50 4B 03 04",
            id="xlsx-name-csv-content",
        ),
        pytest.param(
            b"PK\x03\x04" + bytes(60),
            "cpl.xlsx",
            "XLSX file: found a damaged zip archive",
            id="damaged-zip",
        ),
        pytest.param(b"\x00", "cpl.csv", "row 1, header: missing", id="no-header"),
    ],
)
def test_files_that_are_not_a_cpl_are_refused(data: bytes, filename: str, problem: str) -> None:
    with pytest.raises(CplImportError) as info:
        parse_cpl(data, filename=filename, imported=IMPORTED)
    assert info.value.problems[0].startswith(problem)


def zipfile_with(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_a_zip_that_is_not_a_workbook_is_refused() -> None:
    with pytest.raises(CplImportError) as info:
        parse_cpl(zipfile_with({"hello.txt": b"hi"}), filename="cpl.xlsx", imported=IMPORTED)
    assert info.value.problems[0].startswith("XLSX file: found an unreadable workbook")


def test_zip_content_decides_over_a_csv_name() -> None:
    document = parse_cpl(xlsx_bytes(TWO_ROWS), filename="cpl.csv", imported=IMPORTED)
    assert document.entries[0] == EXPECTED_FIRST


# XLSX cell types: what Excel does to typed values, and what must be reported rather than guessed.
XLSX_CELLS = [
    pytest.param("Hardware Version", 1111, "1111", id="int-with-all-digits-accepted"),
    pytest.param("Model Identifier", 10030011, "10030011", id="int-8-digits-accepted"),
    pytest.param("GBCS Version", 4.2, "4.2", id="float-in-text-column-accepted"),
    pytest.param("CPA Expiry Date", dt.date(2031, 1, 31), "2031-01-31", id="date-cell"),
    pytest.param("CPA Expiry Date", dt.datetime(2031, 1, 31), "2031-01-31", id="midnight"),
]


@pytest.mark.parametrize(("column", "value", "stored"), XLSX_CELLS)
def test_xlsx_typed_cells_that_are_unambiguous_are_accepted(
    column: str, value: object, stored: str
) -> None:
    rows = [{**row(), column: value}]
    entry = parse("xlsx", rows)[0]
    assert entry_to_row(entry)[column] == stored


XLSX_BAD_CELLS = [
    pytest.param(
        "Hardware Version",
        111,
        "row 2, Hardware Version: found '111', expected 4 hex digits",
        id="leading-zero-lost",
    ),
    pytest.param(
        "Hardware Version",
        1500.25,
        "row 2, Hardware Version: found the number 1500.25, expected 4 hex digits",
        id="float",
    ),
    pytest.param(
        "Status",
        True,
        "row 2, Status: found the boolean True, expected one of Active",
        id="boolean",
    ),
    pytest.param(
        "Firmware Version",
        dt.date(2020, 1, 1),
        "row 2, Firmware Version: found the date 2020-01-01, expected 8 hex digits",
        id="date-in-hex-column",
    ),
    pytest.param(
        "CPA Expiry Date",
        dt.datetime(2031, 1, 31, 12, 30),
        "row 2, CPA Expiry Date: found the date and time 2031-01-31T12:30:00, expected an ISO date",
        id="datetime-with-time",
    ),
    pytest.param(
        "Hardware Version",
        "=1110+1",
        "row 2, Hardware Version: found '', expected 4 hex digits",
        id="formula-without-cached-value",
    ),
]


@pytest.mark.parametrize(("column", "value", "problem"), XLSX_BAD_CELLS)
def test_xlsx_cells_excel_changed_are_reported_not_guessed(
    column: str, value: object, problem: str
) -> None:
    problems = problems_of("xlsx", [{**row(), column: value}])
    assert len(problems) == 1
    assert problems[0].startswith(problem)


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        pytest.param(
            '<c r="G2" t="n"><v>1.5E3</v></c>',
            "row 2, Hardware Version: found the number 1500.0, expected 4 hex digits",
            id="exponent-float",
        ),
        pytest.param(
            '<c r="G2" t="e"><v>#N/A</v></c>',
            "row 2, Hardware Version: found the spreadsheet error '#N/A', expected 4 hex digits",
            id="error-cell",
        ),
    ],
)
def test_xlsx_number_and_error_cells_are_reported(xml: str, problem: str) -> None:
    data = patch_sheet(xlsx_bytes([row()]), replace_cell("G2", xml))
    with pytest.raises(CplImportError) as info:
        parse_cpl(data, filename="cpl.xlsx", imported=IMPORTED)
    assert info.value.problems == [problem]


def test_xlsx_formula_is_read_as_its_cached_value() -> None:
    data = patch_sheet(
        xlsx_bytes([row()]),
        replace_cell("G2", '<c r="G2" t="str"><f>"11"&amp;"12"</f><v>1112</v></c>'),
    )
    entry = parse_cpl(data, filename="cpl.xlsx", imported=IMPORTED).entries[0]
    assert entry.hardware_version == "1112"


def test_xlsx_with_a_wrong_stored_dimension_still_reads_every_row() -> None:
    data = patch_sheet(
        xlsx_bytes(TWO_ROWS),
        lambda s: re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1:B2"', s),
    )
    entries = parse_cpl(data, filename="cpl.xlsx", imported=IMPORTED).entries
    assert [e.id for e in entries] == ["CPL-000101", "CPL-000102"]
    assert entries[0] == EXPECTED_FIRST


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_too_many_rows_are_refused(fmt: str) -> None:
    make, name = FORMATS[fmt]
    rows = [row(CPL_Entry_ID=f"CPL-{i}") for i in range(6)]
    with pytest.raises(CplImportError) as info:
        parse_cpl(make(rows), filename=name, imported=IMPORTED, limits=CplLimits(max_rows=5))
    assert info.value.problems == ["row 7: found more than 5 data rows, expected at most 5"]


def test_a_far_away_xlsx_row_hits_the_row_cap_without_reading_a_million_rows() -> None:
    data = patch_sheet(xlsx_bytes([row()]), lambda s: s.replace('<row r="2"', '<row r="1048576"'))
    with pytest.raises(CplImportError, match="found more than 1000 data rows"):
        parse_cpl(data, filename="cpl.xlsx", imported=IMPORTED, limits=CplLimits(max_rows=1000))


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_overlong_cells_are_refused_without_echoing_them(fmt: str) -> None:
    make, name = FORMATS[fmt]
    data = make([row(Model_Name="x" * 101)])
    with pytest.raises(CplImportError) as info:
        parse_cpl(data, filename=name, imported=IMPORTED, limits=CplLimits(max_cell_chars=100))
    assert info.value.problems == [
        "row 2, Model Name: found 101 characters, expected at most 100 characters"
    ]


def test_long_bad_values_are_shortened_in_messages() -> None:
    (problem,) = problems_of("csv", [row(Hardware_Version="9" * 500)])
    assert len(problem) < 200
    assert "...'" in problem


def test_oversized_file_is_refused_before_parsing() -> None:
    data = csv_bytes(TWO_ROWS)
    with pytest.raises(CplImportError) as info:
        parse_cpl(data, filename="c.csv", imported=IMPORTED, limits=CplLimits(max_file_bytes=100))
    assert info.value.problems == [f"file: found {len(data)} octets, expected at most 100"]


def test_xlsx_that_inflates_beyond_the_cap_is_refused_before_opening() -> None:
    data = xlsx_bytes(TWO_ROWS)
    limits = CplLimits(max_xlsx_uncompressed_bytes=1000)
    with pytest.raises(CplImportError, match="octets uncompressed, expected at most 1000"):
        parse_cpl(data, filename="c.xlsx", imported=IMPORTED, limits=limits)


def test_read_cpl_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "cpl.xlsx"
    path.write_bytes(xlsx_bytes(TWO_ROWS))
    document = read_cpl(path, imported=IMPORTED)
    assert document.entries[0] == EXPECTED_FIRST
    assert document.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_cpl_refuses_an_oversized_file_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "cpl.csv"
    path.write_bytes(csv_bytes(TWO_ROWS))
    with pytest.raises(CplImportError, match="expected at most 50"):
        read_cpl(path, imported=IMPORTED, limits=CplLimits(max_file_bytes=50))


def test_read_cpl_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    # The path on the command line is wrong (exit 2), as for every other input file.
    with pytest.raises(ConfigurationError, match=r"missing\.csv: cannot read"):
        read_cpl(tmp_path / "missing.csv", imported=IMPORTED)


def test_entry_to_row_round_trips_through_the_importer() -> None:
    entries = parse("csv", TWO_ROWS)
    rows: list[dict[str, object]] = [dict(entry_to_row(e)) for e in entries]
    assert parse("csv", rows) == entries
    assert entry_to_row(entries[0])["Upgrade From"] == "N/A"
