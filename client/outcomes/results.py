"""Reading a results CSV (``cfl outcomes record``): strictly, the whole file or nothing.

Columns (header names as in the estate CSV: case and spaces ignored, extra columns ignored):
``Device ID``, ``Target``, ``Outcome``, ``Time`` and, optional, ``Firmware Version``. Every bad
row is reported with its row number (the header is row 1, as a spreadsheet counts), the column, the
value found and the value expected; one bad row refuses the file. Pure: text in, rows out; the
target is resolved against the library by ``client.outcomes.record``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from client.estate.reader import normalise_device_id, open_csv_input
from metadata_templates import identifiers
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import RejectedInputError, field_error
from metadata_templates.outcomes import OUTCOME_CODES

DEVICE_ID = "Device ID"
TARGET = "Target"
OUTCOME = "Outcome"
TIME = "Time"
FIRMWARE = "Firmware Version"
REQUIRED_COLUMNS = (DEVICE_ID, TARGET, OUTCOME, TIME)
OPTIONAL_COLUMNS = (FIRMWARE,)

# No legitimate field is longer (a target path is well under 200 characters).
MAX_FIELD_CHARS = 256
# Bounded work and memory: a month of one supplier's campaigns is well under this.
MAX_ROWS = 2_000_000
# Problems listed in the error (all are counted).
MAX_PROBLEMS = 20

_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(Z|\+00:00)")
_EXPECTED = {
    DEVICE_ID: "an EUI-64: 16 hex digits, hyphens allowed",
    TARGET: "an image target path or a 64-hex Manufacturer Image SHA-256",
    OUTCOME: "one of " + ", ".join(OUTCOME_CODES),
    TIME: "a UTC time YYYY-MM-DDTHH:MM:SSZ (or +00:00), not in the future",
    FIRMWARE: "8 hex digits, or empty",
}


@dataclass(frozen=True)
class ResultRow:
    """One well-formed row; ``target`` is as written (resolved later)."""

    row: int
    device_id: str  # DUIS form 00-0D-6F-...
    target: str
    outcome: str
    time: str  # format_timestamp form
    firmware_version: str | None


@dataclass(frozen=True)
class ResultProblem:
    row: int
    column: str
    found: str
    expected: str

    def message(self) -> str:
        return f"row {self.row}: {field_error(self.column, self.found, self.expected)}"


class ResultsError(RejectedInputError):
    """The results file is refused (nothing was recorded)."""


def refuse(where: str, problems: list[ResultProblem], count: int) -> ResultsError:
    """One error listing the first problems of a refused file."""
    lines = [p.message() for p in problems[:MAX_PROBLEMS]]
    more = f"\n  ... and {count - len(lines)} more" if count > len(lines) else ""
    return ResultsError(
        f"{where}: {count} problem(s), nothing recorded:\n  " + "\n  ".join(lines) + more,
        hint="fix the rows and record the file again",
    )


def open_results(path: Path) -> TextIO:
    """Open a results CSV (UTF-8, with or without a byte-order mark): a regular file or a pipe.

    Raises:
        UnavailableError: the file cannot be opened.
        ResultsError: a device or a folder.
    """
    return open_csv_input(path, "results", ResultsError)


def _token(text: str) -> str:
    return "".join(text.split()).casefold()


_WANTED = {_token(name): name for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}


def _layout(header: list[str], where: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, text in enumerate(header):
        name = _WANTED.get(_token(text))
        if name is None:
            continue
        if name in found:
            raise ResultsError(
                field_error(f"{where}: header column {index + 1}", text, f"{name!r} only once")
            )
        found[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in found]
    if missing:
        raise ResultsError(
            field_error(
                f"{where}: header",
                ",".join(header)[:200],
                "columns " + ", ".join((*REQUIRED_COLUMNS, f"optional {FIRMWARE}")),
            )
            + f" (missing: {', '.join(missing)})"
        )
    return found


def parse_time(text: str, now: datetime) -> str | None:
    """The time in ``format_timestamp`` form, or None when malformed or after ``now``."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    try:
        moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if moment > now:
        return None
    return format_timestamp(moment)


def _rows(source: TextIO, where: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(source)
    number = 0
    try:
        for row in reader:
            number += 1
            yield number, row
    except (csv.Error, UnicodeDecodeError) as e:
        raise ResultsError(f"{where}: unreadable CSV after row {number}: {e}") from e


def read_results(source: TextIO, *, now: datetime, where: str) -> list[ResultRow]:
    """Every row of a results CSV, checked; the first problems refuse the whole file.

    Raises:
        ResultsError: no usable header, unreadable CSV, too many rows, or any bad row.
    """
    rows = _rows(source, where)
    header: list[str] | None = None
    for _number, row in rows:
        if any(cell.strip() for cell in row):
            header = row
            break
    if header is None:
        raise ResultsError(field_error(f"results {where}", "an empty file", "a header row"))
    header[0] = header[0].removeprefix("\ufeff")
    layout = _layout(header, where)
    columns = [
        (name, layout[name]) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if name in layout
    ]
    needed = max(layout.values()) + 1
    problems: list[ResultProblem] = []
    count = 0
    parsed: list[ResultRow] = []

    def problem(number: int, column: str, found: str) -> None:
        nonlocal count
        count += 1
        if len(problems) < MAX_PROBLEMS:
            shown = found if len(found) <= 80 else found[:80] + f"... ({len(found)} characters)"
            expected = _EXPECTED[column]
            if len(found) > MAX_FIELD_CHARS:
                expected = f"at most {MAX_FIELD_CHARS} characters: {expected}"
            problems.append(ResultProblem(number, column, shown, expected))

    for number, row in rows:
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not rows
        if len(parsed) >= MAX_ROWS:
            raise ResultsError(
                field_error(f"{where}: rows", f"more than {MAX_ROWS}", f"at most {MAX_ROWS}"),
                hint="split the file by month and record each",
            )
        if len(row) < needed:
            count += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(
                    ResultProblem(number, "(row)", f"{len(row)} fields", f"at least {needed}")
                )
            continue
        values = {name: row[index] for name, index in columns}
        good = True
        for name, text in values.items():
            if len(text) > MAX_FIELD_CHARS:
                problem(number, name, text)
                good = False
        if not good:
            continue
        device = normalise_device_id(values[DEVICE_ID])
        if device is None:
            problem(number, DEVICE_ID, values[DEVICE_ID])
        target = values[TARGET].strip()
        if not target:
            problem(number, TARGET, values[TARGET])
        outcome = values[OUTCOME].strip()
        if outcome not in OUTCOME_CODES:
            problem(number, OUTCOME, values[OUTCOME])
        time = parse_time(values[TIME], now)
        if time is None:
            problem(number, TIME, values[TIME])
        firmware: str | None = None
        text = values.get(FIRMWARE, "").strip()
        if text:
            try:
                firmware = identifiers.firmware_version(text, FIRMWARE)
            except ValueError:
                problem(number, FIRMWARE, values[FIRMWARE])
                continue
        if device is None or not target or outcome not in OUTCOME_CODES or time is None:
            continue
        parsed.append(ResultRow(number, device, target, outcome, time, firmware))
    if count:
        raise refuse(where, problems, count)
    return parsed
