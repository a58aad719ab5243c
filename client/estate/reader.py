"""Streaming reader for a supplier's device estate (CSV).

An estate can hold 20 million devices, so nothing here keeps per-device state. The first pass
(``read_estate_groups``) counts devices per raw (device type, manufacturer, model, hardware version,
firmware version) tuple and validates each distinct raw tuple once; the second pass
(``iter_estate_devices``) streams device IDs for per-device output.

Speed comes from handling rows in chunks with C-level iteration (``map``, ``Counter``,
``bytes.fromhex``): a chunk in which every row is well formed is counted without a Python-level
loop per row. Only a chunk that fails the fast checks is re-read row by row, which is where row
numbers and problem reports come from. Both paths apply the same rules, so the result does not
depend on which path a row took.

Both passes go faster still on the usual export (the six columns, Device ID first): a block of
text with no quote character and no lone carriage return holds one record per line, with exactly
the fields ``line.split(",")`` gives, so csv.reader's character-by-character work can be skipped
and devices counted by the text after their ID (one string per row to hash, not five). The first
block that does not qualify hands the rest of the file to csv.reader, and a block that fails the
fast checks is parsed by csv.reader before its rows are judged, so the result, the problems and
their row numbers are csv.reader's own (tests compare both readings on arbitrary text).

Row numbers count the header as row 1, as a spreadsheet does (a quoted field containing a line break
therefore does not shift later numbers the way physical line numbers would).
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple, TextIO

from metadata_templates import identifiers
from metadata_templates.errors import RejectedInputError, UnavailableError, field_error

DEVICE_ID = "Device ID"
DEVICE_TYPE = "Device Type"
MANUFACTURER = "Manufacturer Identifier"
MODEL = "Model Identifier"
HARDWARE = "Hardware Version"
FIRMWARE = "Firmware Version"
ESTATE_COLUMNS = (DEVICE_ID, DEVICE_TYPE, MANUFACTURER, MODEL, HARDWARE, FIRMWARE)

DEFAULT_MAX_PROBLEMS = 100
# Small chunks stay in the CPU cache; measured fastest between 512 and 2048 rows.
_CHUNK_ROWS = 1024
# Bad raw tuples are remembered so a file full of one bad value is cheap, but only up to a bound,
# so a file of random garbage cannot grow the cache without limit.
_MAX_CACHED_BAD = 10_000
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
# Characters of text read at a time on the plain-text path: about a thousand rows, like _CHUNK_ROWS.
_BLOCK_CHARS = 1 << 16
_ROW = "(row)"


class GroupKey(NamedTuple):
    """One kind of device: every device with these five values is treated the same way."""

    device_type: str
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str


@dataclass(frozen=True)
class EstateProblem:
    """A bad row: where it is, which column, what was found and what was expected."""

    row: int
    column: str
    found: str
    expected: str

    def message(self) -> str:
        """The house message form, prefixed with the row number."""
        return f"row {self.row}: {field_error(self.column, self.found, self.expected)}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return {
            "row": self.row,
            "column": self.column,
            "found": self.found,
            "expected": self.expected,
            "message": self.message(),
        }


@dataclass(frozen=True)
class EstateSummary:
    """What the first pass learned: devices per group, and the rows it had to skip.

    Attributes:
        groups: device count per group, sorted by group key.
        devices: number of well-formed devices (the sum of ``groups``).
        skipped_rows: number of bad rows left out.
        problems: the first problems found (at most the reader's ``max_problems``).
        problem_count: how many problems there were in all (a row may have several).
    """

    groups: dict[GroupKey, int]
    devices: int
    skipped_rows: int
    problems: tuple[EstateProblem, ...]
    problem_count: int


class EstateError(RejectedInputError):
    """The estate file cannot be used: no usable header, or a bad row in strict mode.

    Attributes:
        problem: the bad row, when the error is about one row.
    """

    def __init__(self, message: str, *, problem: EstateProblem | None = None) -> None:
        super().__init__(
            message, hint=None if problem is None else "fix the row, or drop --strict to skip it"
        )
        self.problem = problem


def _header_token(text: str) -> str:
    return "".join(text.split()).casefold()


_WANTED = {_header_token(name): name for name in ESTATE_COLUMNS}


@dataclass(frozen=True)
class _Layout:
    """Where each canonical column sits in this file's rows."""

    indices: tuple[int, ...]  # in ESTATE_COLUMNS order

    @property
    def needed(self) -> int:
        """Fewest fields a row must have to hold every column."""
        return max(self.indices) + 1


def _layout(header: list[str]) -> _Layout:
    found: dict[str, int] = {}
    for index, text in enumerate(header):
        canonical = _WANTED.get(_header_token(text))
        if canonical is None:
            continue  # extra columns are the supplier's business; ignore them
        if canonical in found:
            raise EstateError(
                field_error(f"header column {index + 1}", text, f"{canonical!r} only once")
            )
        found[canonical] = index
    missing = [name for name in ESTATE_COLUMNS if name not in found]
    if missing:
        raise EstateError(
            field_error("estate header", header, "columns " + ", ".join(ESTATE_COLUMNS))
            + f" (missing: {', '.join(missing)})"
        )
    return _Layout(tuple(found[name] for name in ESTATE_COLUMNS))


def normalise_device_id(text: str) -> str | None:
    """A device ID in the DUIS form ``00-0D-6F-00-00-00-00-01``, or None if it is not an EUI-64.

    Hyphens may appear anywhere and surrounding spaces are ignored; what remains must be exactly 16
    hex digits.
    """
    plain = text.strip().replace("-", "")
    if len(plain) != 16 or not _HEXDIGITS.issuperset(plain):
        return None
    return bytes.fromhex(plain).hex("-").upper()


def _ids_all_valid(ids: list[str]) -> bool:
    """Fast check that every ID in a chunk is 16 hex digits once hyphens are removed.

    Deliberately stricter than ``normalise_device_id`` (no surrounding spaces): a chunk it rejects
    is re-read row by row, which applies the full rule.
    """
    plain = list(map(str.replace, ids, repeat("-"), repeat("")))
    if set(map(len, plain)) != {16}:
        return False
    try:
        # fromhex skips whitespace, so a byte count short of 8 per ID means whitespace was present.
        return len(bytes.fromhex("".join(plain))) == 8 * len(plain)
    except ValueError:
        return False


def _plain_lines(text: str) -> list[str] | None:
    """The records of a block of whole lines when each line is one record with no quoting, else None.

    Without a quote character no field can hold a delimiter or a line break, so csv.reader would
    return exactly ``line.split(",")`` for each line (``[]`` for a blank one). Line breaks must be
    all LF or all CRLF; a lone CR (which csv.reader also ends a record on) leaves the block to
    csv.reader. A field longer than csv's size limit cannot pass the fast checks (each field of a
    counted row is a short validated value), so its block goes to csv.reader, which refuses it.
    """
    if '"' in text:
        return None
    carriage_returns = text.count("\r")
    if carriage_returns == 0:
        lines = text.split("\n")
    elif carriage_returns == text.count("\r\n") == text.count("\n"):
        lines = text.split("\r\n")
    else:
        return None
    if not lines[-1]:
        lines.pop()  # the text ended with a line break
    return lines


_FIELD_RULES: tuple[tuple[str, Callable[[str], str]], ...] = (
    (DEVICE_TYPE, identifiers.device_type),
    (MANUFACTURER, identifiers.manufacturer_id),
    (MODEL, identifiers.model_id),
    (HARDWARE, identifiers.hardware_version),
    (FIRMWARE, identifiers.firmware_version),
)
_EXPECTED = {
    DEVICE_ID: "an EUI-64: 16 hex digits, hyphens allowed",
    DEVICE_TYPE: "one of " + ", ".join(identifiers.DEVICE_TYPES),
    MANUFACTURER: "4 hex digits",
    MODEL: "4 or 8 hex digits",
    HARDWARE: "4 hex digits",
    FIRMWARE: "8 hex digits",
}

# A raw tuple's verdict: its normalised key, or the (column, found) pairs that are wrong.
_Verdict = GroupKey | tuple[tuple[str, str], ...]


def _judge(raw: tuple[str, ...]) -> _Verdict:
    values: list[str] = []
    bad: list[tuple[str, str]] = []
    for (column, rule), text in zip(_FIELD_RULES, raw, strict=True):
        try:
            values.append(rule(text))
        except ValueError:
            bad.append((column, text))
    if bad:
        return tuple(bad)
    return GroupKey(*values)


class _Reader:
    """State shared by both passes: the layout, the verdict cache and the problem log."""

    def __init__(self, source: TextIO, *, strict: bool, max_problems: int, where: str) -> None:
        self._source = source
        self._rows: Iterator[list[str]] = csv.reader(source)
        self._where = where
        self.strict = strict
        self.max_problems = max_problems
        self.problems: list[EstateProblem] = []
        self.problem_count = 0
        self.skipped_rows = 0
        # Raw tuples already judged: good ones map to their key, bad ones (bounded) to what is wrong.
        self.good: dict[tuple[str, ...], GroupKey] = {}
        self._bad: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
        # Record numbers, not physical lines: csv.reader.line_num would drift on quoted newlines.
        self.row_number = 0
        header = self._next_row()
        while header is not None and not any(cell.strip() for cell in header):
            header = self._next_row()  # tolerate blank lines before the header
        if header is None:
            raise EstateError(field_error(f"estate {where}", "an empty file", "a header row"))
        if header:
            header[0] = header[0].removeprefix("\ufeff")
        self.layout = _layout(header)
        self._key_of = itemgetter(*self.layout.indices[1:])
        self._id_of = itemgetter(self.layout.indices[0])
        # The plain-text path counts rows by the text after the ID, which is the group's raw tuple
        # only when the ID comes first and there are no other columns.
        self.plain_layout = len(header) == len(ESTATE_COLUMNS) and self.layout.indices[0] == 0
        self._after_id: dict[str, tuple[str, ...]] = {}  # text after a good ID -> its raw tuple

    def _next_row(self) -> list[str] | None:
        try:
            row = next(self._rows)
            self.row_number += 1
            return row
        except StopIteration:
            return None
        except (csv.Error, UnicodeDecodeError) as e:
            raise EstateError(f"estate {self._where}: unreadable CSV: {e}") from e

    def chunks(self) -> Iterator[list[list[str]]]:
        """Rows in chunks; ``row_number`` is the number of the row before each chunk."""
        try:
            while True:
                chunk = list(islice(self._rows, _CHUNK_ROWS))
                if not chunk:
                    return
                yield chunk
                self.row_number += len(chunk)
        except (csv.Error, UnicodeDecodeError) as e:
            raise EstateError(
                f"estate {self._where}: unreadable CSV after row {self.row_number}: {e}"
            ) from e

    def plain_blocks(self) -> Iterator[list[str]]:
        """Blocks of records read as plain text, until the first block that needs csv.reader.

        That block and everything after it are left to ``chunks``. ``row_number`` is the number
        of the row before each block.

        Raises:
            EstateError: the file is not UTF-8.
        """
        rest = ""  # a line cut by the end of the last read
        while True:
            try:
                text = self._source.read(_BLOCK_CHARS)
            except UnicodeDecodeError as e:
                raise EstateError(
                    f"estate {self._where}: unreadable CSV after row {self.row_number}: {e}"
                ) from e
            if text:
                text = rest + text
                cut = text.rfind("\n") + 1
                text, rest = text[:cut], text[cut:]
            else:
                text, rest = rest, ""  # the file's last line, without a line break
                if not text:
                    return
            lines = _plain_lines(text) if text else None
            if lines is None:
                self._hand_over(text + rest)
                return
            yield lines
            self.row_number += len(lines)

    def _hand_over(self, unread: str) -> None:
        """Let csv.reader read on from ``unread``, the text read but not counted yet."""
        if unread and not unread.endswith("\n"):
            # csv.reader ends a record at the end of each string: finish the cut line (a CR
            # last may be half of a CRLF).
            unread += self._source.readline()
        lines: Iterable[str] = chain(io.StringIO(unread, newline=""), self._source)
        self._rows = csv.reader(lines)

    def count_plain(self, lines: list[str], counts: Counter[str]) -> bool:
        """Count a block's devices by the text after their IDs; False (nothing counted) unless
        every row is well formed and of a group already known or judged good now."""
        parts = list(map(str.partition, lines, repeat(",")))
        if not _ids_all_valid(list(map(itemgetter(0), parts))):
            return False
        seen = len(counts)
        counts.update(map(itemgetter(2), parts))
        if len(counts) == seen:
            return True
        if all(map(self._good_after_id, set(counts).difference(self._after_id))):
            return True
        counts.subtract(map(itemgetter(2), parts))  # undo, then take the slow path
        for text in [text for text, count in counts.items() if count == 0]:
            del counts[text]
        return False

    def _good_after_id(self, text: str) -> bool:
        fields = text.split(",")
        if len(fields) != len(ESTATE_COLUMNS) - 1:
            return False  # short rows and extra fields are csv.reader's and check_row's to judge
        raw: tuple[str, ...] = self._key_of(["", *fields])
        if not isinstance(self.verdict(raw), GroupKey):
            return False
        self._after_id[text] = raw
        return True

    def plain_devices(self, lines: list[str]) -> Iterator[tuple[str, GroupKey]]:
        """A plain block's good devices (DUIS ID and group) in order; bad rows skipped quietly."""
        parts = list(map(str.partition, lines, repeat(",")))
        ids = list(map(itemgetter(0), parts))
        if _ids_all_valid(ids):
            after_ids = list(map(itemgetter(2), parts))
            if all(map(self._good_after_id, set(after_ids).difference(self._after_id))):
                raws = map(self._after_id.__getitem__, after_ids)
                plain = map(str.replace, ids, repeat("-"), repeat(""))
                duis = map(str.upper, map(bytes.hex, map(bytes.fromhex, plain), repeat("-")))
                yield from zip(duis, map(self.good.__getitem__, raws), strict=True)
                return
        for row in csv.reader(io.StringIO("\n".join(lines) + "\n", newline="")):
            checked = self.check_row(row, 0, report=False)
            if checked is not None:
                yield checked

    def raw_of_after_id(self, text: str) -> tuple[str, ...]:
        """The raw tuple of a text after an ID that ``count_plain`` counted."""
        return self._after_id[text]

    def verdict(self, raw: tuple[str, ...]) -> _Verdict:
        found: _Verdict | None = self.good.get(raw) or self._bad.get(raw)
        if found is None:
            found = _judge(raw)
            if isinstance(found, GroupKey):
                self.good[raw] = found
            elif len(self._bad) < _MAX_CACHED_BAD:
                self._bad[raw] = found
        return found

    def fast_checks_pass(self, chunk: list[list[str]]) -> bool:
        """True when every row of the chunk is long enough and has a well-formed device ID."""
        if min(map(len, chunk)) < self.layout.needed:
            return False
        return _ids_all_valid(list(map(self._id_of, chunk)))

    def all_good(self, keys: set[tuple[str, ...]]) -> bool:
        """Judge raw tuples not seen before; True when every one of them is good."""
        return all(isinstance(self.verdict(raw), GroupKey) for raw in keys.difference(self.good))

    def _report(self, problem: EstateProblem) -> None:
        if self.strict:
            raise EstateError(problem.message(), problem=problem)
        self.problem_count += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def check_row(
        self, row: list[str], number: int, *, report: bool
    ) -> tuple[str, GroupKey] | None:
        """The row's device ID and group, or None if the row is blank or bad.

        Reports problems (once, in the first pass) when ``report`` is set.
        """
        if not any(cell.strip() for cell in row):
            return None  # blank lines are not devices and not problems
        if len(row) < self.layout.needed:
            if report:
                self.skipped_rows += 1
                self._report(
                    EstateProblem(
                        number, _ROW, f"{len(row)} fields", f"at least {self.layout.needed} fields"
                    )
                )
            return None
        bad: list[tuple[str, str]] = []
        device_id = normalise_device_id(self._id_of(row))
        if device_id is None:
            bad.append((DEVICE_ID, self._id_of(row)))
        verdict = self.verdict(self._key_of(row))
        if not isinstance(verdict, GroupKey):
            bad.extend(verdict)
        if bad or device_id is None or not isinstance(verdict, GroupKey):
            if report:
                self.skipped_rows += 1
                for column, found in bad:
                    self._report(EstateProblem(number, column, found, _EXPECTED[column]))
            return None
        return device_id, verdict


def open_estate(path: Path) -> TextIO:
    """Open an estate CSV for reading (UTF-8, with or without a byte-order mark).

    A regular file or a pipe (``cfl check <(export-estate)``); a device such as ``/dev/zero`` is
    refused, since it would be read as one endless line.

    Raises:
        UnavailableError: the file cannot be opened.
        EstateError: the path is a device or a folder, not a file.
    """
    return open_csv_input(path, "estate", EstateError)


def open_csv_input(path: Path, what: str, error: type[RejectedInputError]) -> TextIO:
    """Open a supplier's CSV input (``what``: "estate", "results") as UTF-8 with or without a
    byte-order mark, from a regular file or a pipe; a device or a folder raises ``error``.

    Raises:
        UnavailableError: the file cannot be opened.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise UnavailableError(f"cannot open {what} file {path}: {e.strerror or e}") from e
    mode = os.fstat(handle.fileno()).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        handle.close()
        raise error(field_error(f"{what} {path}", "a device", "a regular file or a pipe"))
    return handle


def read_estate_groups(
    source: TextIO,
    *,
    strict: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    where: str = "file",
    plain_text: bool = True,
) -> EstateSummary:
    """First pass: count devices per group, in memory bounded by the number of groups.

    Args:
        source: the estate CSV, opened with ``newline=""`` (see ``open_estate``).
        strict: raise on the first bad row instead of skipping it.
        max_problems: how many problem details to keep (all are counted).
        where: how to name the file in messages.
        plain_text: read quote-free blocks without csv.reader where that gives the same records
            (False reads every row through csv.reader: the reference the tests compare with).

    Raises:
        EstateError: no usable header, unreadable CSV, or (``strict``) a bad row.
    """
    reader = _Reader(source, strict=strict, max_problems=max_problems, where=where)
    raw_counts: Counter[tuple[str, ...]] = Counter()
    after_id_counts: Counter[str] = Counter()
    for lines in reader.plain_blocks() if plain_text and reader.plain_layout else ():
        if not reader.count_plain(lines, after_id_counts):
            # Judged row by row as csv.reader reads them: one record per line, blank ones [].
            records = csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""))
            _count_row_by_row(reader, list(records), raw_counts)
    for text, count in after_id_counts.items():
        raw_counts[reader.raw_of_after_id(text)] += count
    for chunk in reader.chunks():
        if reader.fast_checks_pass(chunk):
            # Count first and judge afterwards: a chunk brings tuples never seen before only when
            # the number of distinct tuples grows, so the common case costs one C-level update.
            seen = len(raw_counts)
            raw_counts.update(map(reader._key_of, chunk))
            if len(raw_counts) == seen or reader.all_good(set(raw_counts).difference(reader.good)):
                continue
            raw_counts.subtract(map(reader._key_of, chunk))  # undo, then take the slow path
            raw_counts = +raw_counts  # drops the tuples whose count fell back to zero
        _count_row_by_row(reader, chunk, raw_counts)
    groups: Counter[GroupKey] = Counter()
    for raw, count in raw_counts.items():
        groups[reader.good[raw]] += count  # only good tuples were counted
    return EstateSummary(
        groups=dict(sorted(groups.items())),
        devices=sum(groups.values()),
        skipped_rows=reader.skipped_rows,
        problems=tuple(reader.problems),
        problem_count=reader.problem_count,
    )


def _count_row_by_row(
    reader: _Reader, chunk: list[list[str]], raw_counts: Counter[tuple[str, ...]]
) -> None:
    """The slow path: judge each row, reporting bad ones with their row numbers."""
    for offset, row in enumerate(chunk, start=reader.row_number + 1):
        checked = reader.check_row(row, offset, report=True)
        if checked is not None:
            raw_counts[reader._key_of(row)] += 1


def iter_estate_devices(
    source: TextIO, *, where: str = "file", plain_text: bool = True
) -> Iterator[tuple[str, GroupKey]]:
    """Second pass: each good device's ID (DUIS form) and group, in file order; bad rows skipped.

    The first pass already reported the bad rows, so this one stays quiet about them.
    ``plain_text`` as for ``read_estate_groups``.

    Raises:
        EstateError: no usable header, or unreadable CSV.
    """
    reader = _Reader(source, strict=False, max_problems=0, where=where)
    for lines in reader.plain_blocks() if plain_text and reader.plain_layout else ():
        yield from reader.plain_devices(lines)
    for chunk in reader.chunks():
        if reader.fast_checks_pass(chunk):
            keys = list(map(reader._key_of, chunk))
            if reader.all_good(set(keys)):
                plain = map(str.replace, map(reader._id_of, chunk), repeat("-"), repeat(""))
                duis = map(str.upper, map(bytes.hex, map(bytes.fromhex, plain), repeat("-")))
                yield from zip(duis, map(reader.good.__getitem__, keys), strict=True)
                continue
        for row in chunk:
            checked = reader.check_row(row, 0, report=False)
            if checked is not None:
                yield checked
