"""Import of the Central Products List (CPL) from SECAS's CSV or XLSX into a ``CplDocument``.

The CPL decides which images the gateway admits, so it is read strictly: every cell is checked, a
bad row is reported with its row number (as a spreadsheet shows it: the header is row 1), its
column, the value found and the value expected, and nothing is guessed. All problems are collected
so an operator fixes a file in one pass, not one error per import.

Spreadsheets are hostile input too: rows, cell length, file size and the uncompressed size of an
XLSX are capped (:class:`CplLimits`), formulas are read as their cached values, and a number where a
hex identifier belongs is accepted only when it reads back as exactly the digits (Excel turns
``1111`` into the number 1111, but ``0111`` into 111, and ``1E03`` into 1000.0; both are reported).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from metadata_templates import identifiers
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CPL_STATUSES
from metadata_templates.errors import ConfigurationError, UnavailableError
from repo_tool.intake.cpl_tables import (
    CplImportError,
    CplLimits,
    RowSource,
    _csv_table,
    _ExcelErrorValue,
    _is_xlsx,
    _xlsx_table,
)

CPL_ENTRY_ID = "CPL Entry ID"
DEVICE_TYPE = "Device Type"
MANUFACTURER_IDENTIFIER = "Manufacturer Identifier"
MANUFACTURER_NAME = "Manufacturer Name"
MODEL_IDENTIFIER = "Model Identifier"
MODEL_NAME = "Model Name"
HARDWARE_VERSION = "Hardware Version"
FIRMWARE_VERSION = "Firmware Version"
SMETS_VERSION = "SMETS/CHTS Version"
GBCS_VERSION = "GBCS Version"
MANUFACTURER_IMAGE_HASH = "Manufacturer Image Hash"
CPA_CERTIFICATE = "CPA Certificate"
CPA_EXPIRY_DATE = "CPA Expiry Date"
STATUS = "Status"
UPGRADE_FROM = "Upgrade From"

CPL_COLUMNS = (
    CPL_ENTRY_ID,
    DEVICE_TYPE,
    MANUFACTURER_IDENTIFIER,
    MANUFACTURER_NAME,
    MODEL_IDENTIFIER,
    MODEL_NAME,
    HARDWARE_VERSION,
    FIRMWARE_VERSION,
    SMETS_VERSION,
    GBCS_VERSION,
    MANUFACTURER_IMAGE_HASH,
    CPA_CERTIFICATE,
    CPA_EXPIRY_DATE,
    STATUS,
    UPGRADE_FROM,
)
"""The canonical columns, in the order our writers use."""

# Descriptive columns only: a CPL without them still says everything the gateway and the client
# decide on. Upgrade From is required because its absence would silently change which images apply.
OPTIONAL_COLUMNS = frozenset(
    {MANUFACTURER_NAME, MODEL_NAME, SMETS_VERSION, GBCS_VERSION, CPA_CERTIFICATE, CPA_EXPIRY_DATE}
)
REQUIRED_COLUMNS = tuple(c for c in CPL_COLUMNS if c not in OPTIONAL_COLUMNS)

NOT_APPLICABLE = "N/A"
UPGRADE_SEPARATOR = ";"

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FOUND_DISPLAY_CHARS = 80
_HEADERS_SHOWN = 20

_EXPECTED = {
    CPL_ENTRY_ID: "a non-empty printable ID without ';'",
    DEVICE_TYPE: "one of " + ", ".join(identifiers.DEVICE_TYPES),
    MANUFACTURER_IDENTIFIER: "4 hex digits",
    MODEL_IDENTIFIER: "4 or 8 hex digits",
    HARDWARE_VERSION: "4 hex digits",
    FIRMWARE_VERSION: "8 hex digits",
    MANUFACTURER_IMAGE_HASH: "64 hex digits (SHA-256)",
    CPA_EXPIRY_DATE: "an ISO date (YYYY-MM-DD) or empty",
    STATUS: "one of " + ", ".join(CPL_STATUSES),
    UPGRADE_FROM: f"CPL Entry IDs separated by ';', {NOT_APPLICABLE} or empty",
}
_TEXT_EXPECTED = "text"


class _CellError(Exception):
    def __init__(self, found: str, expected: str) -> None:
        super().__init__(found, expected)
        self.found = found
        self.expected = expected


"""Given the number of columns needed, yields (row number, cell values) for every data row."""


def _show(text: str) -> str:
    if len(text) > _FOUND_DISPLAY_CHARS:
        text = text[: _FOUND_DISPLAY_CHARS - 3] + "..."
    return repr(text)


def _header_key(name: str) -> str:
    return "".join(name.split()).casefold()


_CANONICAL_BY_KEY = {_header_key(c): c for c in CPL_COLUMNS}


def _map_header(header: Sequence[object]) -> tuple[dict[str, int], list[str]]:
    """Column index of each canonical column found, and the header problems."""
    positions: dict[str, int] = {}
    problems: list[str] = []
    for index, cell in enumerate(header):
        if not isinstance(cell, str):
            continue
        canonical = _CANONICAL_BY_KEY.get(_header_key(cell))
        if canonical is None:
            continue  # extra columns are SECAS's business, not ours
        if canonical in positions:
            problems.append(
                f"row 1, header: found column {canonical!r} twice (columns "
                f"{positions[canonical] + 1} and {index + 1}), expected it once"
            )
        else:
            positions[canonical] = index
    missing = [c for c in REQUIRED_COLUMNS if c not in positions]
    if missing:
        found = [str(c) for c in header if c is not None and str(c).strip()]
        # a hostile header row may be 16,384 cells wide: show enough to recognise the file
        listed = ", ".join(_show(c) for c in found[:_HEADERS_SHOWN])
        if len(found) > _HEADERS_SHOWN:
            listed += f", ... ({len(found)} columns)"
        problems.append(
            f"row 1, header: missing required column(s) {', '.join(map(repr, missing))}; "
            f"found [{listed}], expected the columns {', '.join(REQUIRED_COLUMNS)}"
        )
    return positions, problems


def _cell_text(value: object, column: str, limits: CplLimits) -> str:
    """A cell as text, or ``_CellError`` when the spreadsheet changed or hid what was typed."""
    expected = _EXPECTED.get(column, _TEXT_EXPECTED)
    if value is None:
        return ""
    if isinstance(value, _ExcelErrorValue):
        raise _CellError(f"the spreadsheet error {value.text!r}", expected)
    if isinstance(value, bool):  # before int: bool is an int
        raise _CellError(f"the boolean {value}", expected)
    if isinstance(value, str):
        text = value
    elif isinstance(value, int):
        # Excel stores 1111 typed into a cell as a number; its digits are exactly what was typed.
        # A lost leading zero (0111 -> 111) then fails the digit count below, which is the point.
        text = str(value)
    elif isinstance(value, float):
        if column in _EXPECTED:
            # 1.5E3 or 1111.0: Excel has re-interpreted the text; the original cannot be known.
            raise _CellError(f"the number {value!r}", expected)
        text = str(value)
    elif isinstance(value, dt.datetime | dt.date):
        # XLSX has no date type: a date is a number with a date style, read back as midnight.
        if isinstance(value, dt.datetime):
            if value.time() != dt.time(0, 0):
                raise _CellError(f"the date and time {value.isoformat()}", expected)
            value = value.date()
        if column != CPA_EXPIRY_DATE:
            raise _CellError(f"the date {value.isoformat()}", expected)
        text = value.isoformat()
    else:
        raise _CellError(f"a {type(value).__name__} value {value!s}", expected)
    if len(text) > limits.max_cell_chars:
        raise _CellError(f"{len(text)} characters", f"at most {limits.max_cell_chars} characters")
    return text.strip()


def _entry_id(text: str, column: str) -> str:
    if not text or UPGRADE_SEPARATOR in text or not text.isprintable():
        raise _CellError(_show(text), _EXPECTED[CPL_ENTRY_ID])
    return text


def _normalised(validate: Callable[[str, str], str]) -> Callable[[str, str], str]:
    def check(text: str, column: str) -> str:
        try:
            return validate(text, column)
        except ValueError as e:
            raise _CellError(_show(text), _EXPECTED[column]) from e

    return check


def _status(text: str, column: str) -> str:
    for status in CPL_STATUSES:
        if text.casefold() == status.casefold():
            return status
    raise _CellError(_show(text), _EXPECTED[column])


def _expiry(text: str, column: str) -> str | None:
    if not text:
        return None  # lifetime certificates have no expiry
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as e:
        raise _CellError(_show(text), _EXPECTED[column]) from e


def _upgrade_from(text: str, column: str) -> tuple[str, ...]:
    if not text or text.casefold() == NOT_APPLICABLE.casefold():
        return ()
    # A trailing ';' is a harmless artefact of concatenating IDs; an empty piece names nothing.
    pieces = tuple(p.strip() for p in text.split(UPGRADE_SEPARATOR) if p.strip())
    if not pieces or not all(p.isprintable() for p in pieces):
        raise _CellError(_show(text), _EXPECTED[column])
    return pieces


_VALIDATORS: dict[str, Callable[[str, str], object]] = {
    CPL_ENTRY_ID: _entry_id,
    DEVICE_TYPE: _normalised(identifiers.device_type),
    MANUFACTURER_IDENTIFIER: _normalised(identifiers.manufacturer_id),
    MODEL_IDENTIFIER: _normalised(identifiers.model_id),
    HARDWARE_VERSION: _normalised(identifiers.hardware_version),
    FIRMWARE_VERSION: _normalised(identifiers.firmware_version),
    MANUFACTURER_IMAGE_HASH: _normalised(identifiers.sha256_hex),
    CPA_EXPIRY_DATE: _expiry,
    STATUS: _status,
    UPGRADE_FROM: _upgrade_from,
}


_UNIQUE_COLUMNS = frozenset({CPL_ENTRY_ID, MANUFACTURER_IMAGE_HASH})


class _Problems:
    """Every problem, ordered by row, with the list capped but the count exact."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._listed: list[tuple[int, str]] = []

    def add(self, row: int, text: str) -> None:
        self.total += 1
        if len(self._listed) < self.limit:
            self._listed.append((row, text))

    def cell(self, row: int, column: str, error: _CellError) -> None:
        self.add(row, f"row {row}, {column}: found {error.found}, expected {error.expected}")

    def listed(self) -> list[str]:
        return [text for _, text in sorted(self._listed, key=lambda item: item[0])]


def _parse_rows(
    header: Sequence[object], rows: RowSource, filename: str, limits: CplLimits
) -> list[CplEntry]:
    positions, header_problems = _map_header(header)
    if header_problems:
        raise CplImportError(filename, header_problems)
    width = max(positions.values()) + 1
    problems = _Problems(limits.max_listed_problems)
    entries: list[tuple[int, CplEntry]] = []
    first_row_of_id: dict[str, int] = {}
    # References must match exactly: clients compare CPL Entry IDs as given.
    all_ids: set[str] = set()
    # Checked once every ID is known, for bad rows too, so one import reports everything.
    pathways: list[tuple[int, object, tuple[str, ...]]] = []
    # Most columns repeat the same few values (device types, manufacturers, versions, statuses):
    # one string object per distinct value keeps a large CPL's entries a fraction of its size.
    shared: dict[str, str] = {}

    for row_number, cells in rows(width):
        if row_number - 1 > limits.max_rows:
            raise CplImportError(
                filename,
                [
                    f"row {row_number}: found more than {limits.max_rows} data rows, "
                    f"expected at most {limits.max_rows}"
                ],
            )
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue  # blank rows are layout, not entries
        values: dict[str, object] = {}
        row_ok = True
        for column in CPL_COLUMNS:
            index = positions.get(column)
            raw = cells[index] if index is not None and index < len(cells) else None
            try:
                text = _cell_text(raw, column, limits)
                validate = _VALIDATORS.get(column)
                value = text if validate is None else validate(text, column)
                if isinstance(value, str) and column not in _UNIQUE_COLUMNS:
                    value = shared.setdefault(value, value)
                values[column] = value
            except _CellError as e:
                problems.cell(row_number, column, e)
                row_ok = False
        entry_id = values.get(CPL_ENTRY_ID)
        references = values.get(UPGRADE_FROM)
        if isinstance(references, tuple):
            pathways.append((row_number, entry_id, references))
        if isinstance(entry_id, str):
            all_ids.add(entry_id)
            # IDs differing only in case would be the same entry to any reader.
            key = entry_id.casefold()
            if key in first_row_of_id:
                problems.add(
                    row_number,
                    f"row {row_number}, {CPL_ENTRY_ID}: found {entry_id!r} again, expected a "
                    f"unique ID (first on row {first_row_of_id[key]})",
                )
                row_ok = False
            else:
                first_row_of_id[key] = row_number
        if row_ok:
            entries.append((row_number, _entry(values)))

    for row_number, own_id, references in pathways:
        for reference in references:
            if reference == own_id:
                problems.add(
                    row_number,
                    f"row {row_number}, {UPGRADE_FROM}: found {reference!r}, expected other CPL "
                    "entries, not the entry itself",
                )
            elif reference not in all_ids:
                problems.add(
                    row_number,
                    f"row {row_number}, {UPGRADE_FROM}: found {reference!r}, expected the CPL "
                    "Entry ID of an entry in this CPL",
                )
    if problems.total:
        raise CplImportError(filename, problems.listed(), total=problems.total)
    if not entries:
        raise CplImportError(filename, ["CPL: found 0 entries, expected at least one"])
    return [entry for _, entry in entries]


def _entry(values: dict[str, object]) -> CplEntry:
    def text(column: str) -> str:
        value = values[column]
        assert isinstance(value, str)
        return value

    expiry = values[CPA_EXPIRY_DATE]
    upgrade_from = values[UPGRADE_FROM]
    assert expiry is None or isinstance(expiry, str)
    assert isinstance(upgrade_from, tuple)
    return CplEntry(
        id=text(CPL_ENTRY_ID),
        device_type=text(DEVICE_TYPE),
        manufacturer_id=text(MANUFACTURER_IDENTIFIER),
        manufacturer_name=text(MANUFACTURER_NAME),
        model_id=text(MODEL_IDENTIFIER),
        model_name=text(MODEL_NAME),
        hardware_version=text(HARDWARE_VERSION),
        firmware_version=text(FIRMWARE_VERSION),
        smets_version=text(SMETS_VERSION),
        gbcs_version=text(GBCS_VERSION),
        manufacturer_image_sha256=text(MANUFACTURER_IMAGE_HASH),
        cpa_certificate=text(CPA_CERTIFICATE),
        cpa_expiry=expiry,
        status=text(STATUS),
        upgrade_from=tuple(str(x) for x in upgrade_from),
    )


def parse_cpl(
    data: bytes, *, filename: str, imported: str, limits: CplLimits | None = None
) -> CplDocument:
    """Validate and normalise a whole CPL.

    XLSX or CSV is decided by the content (``PK\\x03\\x04`` is a zip, so XLSX), the file name only
    serving to refuse a ``.xlsx`` that is not one. CSV is UTF-8 with an optional BOM; of a
    workbook, the first worksheet is read.

    Args:
        data: the whole file as SECAS published it.
        filename: for messages and the CSV/XLSX decision.
        imported: when it was imported (the caller's clock), recorded in the document.
        limits: caps on hostile input; the defaults suit a real CPL with room to spare.

    Returns:
        The entries in file order, with ``source_sha256`` the SHA-256 of ``data``.

    Raises:
        CplImportError: anything wrong with the file; ``problems`` lists every bad cell found.
    """
    limits = limits or CplLimits()
    if len(data) > limits.max_file_bytes:
        raise CplImportError(
            filename, [f"file: found {len(data)} octets, expected at most {limits.max_file_bytes}"]
        )
    if not data:
        raise CplImportError(filename, ["CPL: found an empty file, expected a header row"])
    if _is_xlsx(data, filename):
        header, rows = _xlsx_table(data, filename, limits)
    else:
        header, rows = _csv_table(data, filename)
    entries = _parse_rows(header, rows, filename, limits)
    return CplDocument.of(entries, hashlib.sha256(data).hexdigest(), imported)


def read_cpl(path: Path, *, imported: str, limits: CplLimits | None = None) -> CplDocument:
    """Read a CPL file and import it with :func:`parse_cpl`.

    Raises:
        CplImportError: the file is too large, or its content is refused.
        ConfigurationError: the file cannot be read (missing, a folder, no permission).
        UnavailableError: the file grew while it was read.
    """
    limits = limits or CplLimits()
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > limits.max_file_bytes:
                raise CplImportError(
                    path.name,
                    [f"file: found {size} octets, expected at most {limits.max_file_bytes}"],
                )
            # Read what the file holds (plus one octet, to notice growth): asking for the cap
            # would allocate the whole cap up front, whatever the file's size.
            data = stream.read(size + 1)
    except OSError as e:
        # Missing or unreadable: the path on the command line is wrong (exit 2), as for any input.
        raise ConfigurationError(
            f"CPL file {path}: cannot read ({e.strerror or e}), expected a readable CSV or XLSX file"
        ) from e
    if len(data) > size:
        raise UnavailableError(
            f"CPL file {path}: found it growing while read, expected a whole file"
        )
    return parse_cpl(data, filename=path.name, imported=imported, limits=limits)


def entry_to_row(entry: CplEntry) -> dict[str, str]:
    """One entry as canonical column -> cell text: what a CPL writer puts in a row.

    ``parse_cpl`` of rows written this way yields the same entries (an empty Upgrade From is
    written ``N/A``).
    """
    return {
        CPL_ENTRY_ID: entry.id,
        DEVICE_TYPE: entry.device_type,
        MANUFACTURER_IDENTIFIER: entry.manufacturer_id,
        MANUFACTURER_NAME: entry.manufacturer_name,
        MODEL_IDENTIFIER: entry.model_id,
        MODEL_NAME: entry.model_name,
        HARDWARE_VERSION: entry.hardware_version,
        FIRMWARE_VERSION: entry.firmware_version,
        SMETS_VERSION: entry.smets_version,
        GBCS_VERSION: entry.gbcs_version,
        MANUFACTURER_IMAGE_HASH: entry.manufacturer_image_sha256,
        CPA_CERTIFICATE: entry.cpa_certificate,
        CPA_EXPIRY_DATE: entry.cpa_expiry or "",
        STATUS: entry.status,
        UPGRADE_FROM: UPGRADE_SEPARATOR.join(entry.upgrade_from) or NOT_APPLICABLE,
    }
