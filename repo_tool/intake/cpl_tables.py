"""Reading a CPL file's table: the header row and the data rows of a CSV or an XLSX, under the caps
of ``CplLimits``. Cells are returned as the file holds them; ``repo_tool.intake.cpl`` checks them.
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from metadata_templates.errors import RejectedInputError

_XLSX_MAGIC = b"PK\x03\x04"


_XLSX_SUFFIXES = (".xlsx", ".xlsm")


_SUMMARY_PROBLEMS = 5


@dataclass(frozen=True)
class CplLimits:
    """Caps that keep a hostile or runaway spreadsheet from exhausting memory or time."""

    max_rows: int = 1_000_000
    max_cell_chars: int = 10_000
    # A real CPL is a few MB; this is ~400,000 rows. Parsing costs several times the file size in
    # memory (the entries themselves), so the cap is what bounds an import's memory.
    max_file_bytes: int = 64 * 1024 * 1024
    max_xlsx_uncompressed_bytes: int = 1024 * 1024 * 1024
    max_listed_problems: int = 1_000


class CplImportError(RejectedInputError):
    """The CPL file was refused; nothing was imported.

    Attributes:
        problems: one line per problem, each naming the row, column, value found and expected.
            At most ``CplLimits.max_listed_problems`` are listed; ``total`` counts them all.
        total: how many problems were found.
    """

    def __init__(self, filename: str, problems: Sequence[str], *, total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        shown = "; ".join(self.problems[:_SUMMARY_PROBLEMS])
        more = self.total - min(len(self.problems), _SUMMARY_PROBLEMS)
        tail = f"; and {more} more" if more > 0 else ""
        noun = "problem" if self.total == 1 else "problems"
        super().__init__(
            f"CPL {filename}: {self.total} {noun}: {shown}{tail}",
            hint="fix every row listed and import the whole file again",
        )


class _ExcelErrorValue:
    """An XLSX error cell such as ``#N/A``: a value Excel could not compute, never data."""

    def __init__(self, text: str) -> None:
        self.text = text


RowSource = Callable[[int], Iterator[tuple[int, Sequence[object]]]]


def _csv_table(data: bytes, filename: str) -> tuple[Sequence[object], RowSource]:
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        # Validate the encoding here, where the offset of a bad byte is known; the decoded copy
        # is dropped at once and the rows are decoded again as they stream (below).
        str(memoryview(data)[bom:], "utf-8")
    except UnicodeDecodeError as e:
        offset = bom + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise CplImportError(
            filename,
            [
                f"CSV file: found byte 0x{data[offset]:02X} at offset {offset} (line {line}), "
                "expected UTF-8 text (save the CSV as UTF-8)"
            ],
        ) from e
    # Streamed: a TextIOWrapper decodes a chunk at a time, where a StringIO of the whole text
    # would hold up to four octets per character (its buffer is UCS-4) for the whole import.
    # BytesIO shares ``data`` rather than copying it. strict: a stray quote is an error to report,
    # not a field boundary to guess at.
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(stream, strict=True)

    def records() -> Iterator[tuple[int, list[str]]]:
        row_number = 0
        try:
            for row_number, record in enumerate(reader, start=1):
                yield row_number, record
        except csv.Error as e:
            raise CplImportError(
                filename, [f"row {row_number + 1}: found malformed CSV ({e}), expected CSV"]
            ) from e

    all_records = records()
    first = next(all_records, None)
    if first is None:
        raise CplImportError(filename, ["CPL: found an empty file, expected a header row"])

    def rows(width: int) -> Iterator[tuple[int, Sequence[object]]]:
        del width  # a CSV record is already in memory
        yield from all_records

    return first[1], rows


def _xlsx_table(
    data: bytes, filename: str, limits: CplLimits
) -> tuple[Sequence[object], RowSource]:
    # Imported here: openpyxl is slow to import and only XLSX needs it.
    import openpyxl

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # zipfile stops at each member's declared size, so the sum bounds what inflating costs.
            uncompressed = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise CplImportError(
            filename, [f"XLSX file: found a damaged zip archive ({e}), expected an XLSX workbook"]
        ) from e
    if uncompressed > limits.max_xlsx_uncompressed_bytes:
        raise CplImportError(
            filename,
            [
                f"XLSX file: found {uncompressed} octets uncompressed, expected at most "
                f"{limits.max_xlsx_uncompressed_bytes}"
            ],
        )
    try:
        with warnings.catch_warnings():
            # openpyxl warns about workbook features it drops (data validation, styles); only
            # cell values matter here.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?")
            workbook = openpyxl.load_workbook(
                io.BytesIO(data), read_only=True, data_only=True, keep_links=False
            )
    except Exception as e:  # untrusted input: openpyxl raises many kinds on a malformed file
        raise CplImportError(
            filename,
            [f"XLSX file: found an unreadable workbook ({e!r}), expected an XLSX workbook"],
        ) from e
    if not workbook.worksheets:
        workbook.close()
        raise CplImportError(filename, ["XLSX file: found no worksheet, expected one"])
    sheet = workbook.worksheets[0]
    # The stored dimension is whatever the writing program claimed; a wrong one would make
    # openpyxl silently drop or invent rows, so read the rows that are actually there.
    sheet.reset_dimensions()

    def values(cells: Sequence[object]) -> list[object]:
        out: list[object] = []
        for cell in cells:
            value = getattr(cell, "value", None)
            if getattr(cell, "data_type", None) == "e":
                value = _ExcelErrorValue(str(value))
            out.append(value)
        return out

    try:
        header = next(
            iter(sheet.iter_rows(min_row=1, max_row=1)),  # the header row, however wide
            (),
        )
        header_values = values(header)
    except Exception as e:  # untrusted input, as above
        workbook.close()
        raise CplImportError(
            filename, [f"row 1: found an unreadable worksheet ({e!r}), expected an XLSX worksheet"]
        ) from e
    if not any(v is not None for v in header_values):
        workbook.close()
        raise CplImportError(filename, ["row 1: found an empty row, expected the CPL header"])

    def rows(width: int) -> Iterator[tuple[int, Sequence[object]]]:
        row_number = 1
        try:
            # max_col: a hostile row with cells out to column XFD costs nothing beyond the XML.
            for row_number, cells in enumerate(sheet.iter_rows(min_row=2, max_col=width), start=2):
                yield row_number, values(cells)
        except CplImportError:
            raise
        except Exception as e:  # untrusted input, as above
            raise CplImportError(
                filename,
                [f"row {row_number + 1}: found unreadable XML ({e!r}), expected an XLSX row"],
            ) from e
        finally:
            workbook.close()

    return header_values, rows


def _is_xlsx(data: bytes, filename: str) -> bool:
    if data.startswith(_XLSX_MAGIC):
        return True  # the content decides, whatever the name says
    if data.startswith(_OLE2_MAGIC):
        raise CplImportError(
            filename,
            ["file: found a legacy binary .xls workbook, expected XLSX or CSV (save it as .xlsx)"],
        )
    if filename.lower().endswith(_XLSX_SUFFIXES):
        raise CplImportError(
            filename,
            [
                f"file: found {data[:4].hex(' ').upper() or 'nothing'} at the start, expected "
                "50 4B 03 04 (an XLSX workbook is a zip archive)"
            ],
        )
    return False


_OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")  # legacy binary .xls
