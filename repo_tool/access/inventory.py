"""The auditor's inventory extract (DOMAIN.md, "Suppliers and access"), read into a compact index.

A Smart Metering Inventory extract has one row per device: ``Device ID``, ``Device Type``,
``Manufacturer Identifier``, ``Model Identifier``, ``Hardware Version``, ``Firmware Version``,
``Responsible Supplier`` (Entity ID) and ``Since`` (the ISO date it became responsible). The audit
only asks "was supplier S responsible, on day D, for some device of this kind?", so the index keeps
one entry per distinct (supplier, device type, manufacturer, model, hardware version, firmware
version) with the earliest ``Since``: memory grows with the variety of the estate (thousands of
models, tens of suppliers), never with the 20 million devices, whose IDs are checked and dropped.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import operator
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any, NamedTuple

from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    field_error,
)
from repo_tool.access.long_lines import LONG_LINE, MAX_LINE, bounded

INVENTORY_COLUMNS = (
    "Device ID",
    "Device Type",
    "Manufacturer Identifier",
    "Model Identifier",
    "Hardware Version",
    "Firmware Version",
    "Responsible Supplier",
    "Since",
)
MAX_REPORTED_PROBLEMS = 20
# What reading a file may raise that means it cannot be read: an I/O error, a truncated gzip
# (EOFError) and a corrupt deflate stream (zlib.error, which is neither).
UNREADABLE = (OSError, EOFError, zlib.error)
LONG_ROW = LONG_LINE.decode("ascii")  # a longer line, as long_lines.bounded gives it
_SHORT_ROW = f"a line of at most {MAX_LINE} bytes"

_DEVICE_ID = re.compile(r"[0-9A-Fa-f]{16}")
_HEX4 = re.compile(r"[0-9A-F]{4}")
_MODEL = re.compile(r"[0-9A-F]{4}(?:[0-9A-F]{4})?")
_HEX8 = re.compile(r"[0-9A-F]{8}")
_ENTITY = re.compile(r"[0-9A-F]{16}")
_TYPE = re.compile(r"[A-Z0-9]{1,16}")
_KIND_PATTERNS = (_TYPE, _HEX4, _MODEL, _HEX4, _HEX8)  # the order of `RowReader._kind`'s checks


class DeviceKind(NamedTuple):
    """Devices the applicability rule cannot tell apart (the contract's `Device` protocol)."""

    device_type: str
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str


@dataclass
class InventoryIndex:
    """Responsible supplier -> device kind -> the earliest day it was responsible for one.

    Attributes:
        since: the index.
        devices: well-formed rows read.
        bad_rows: rows left out.
        problems: the first problems, as ``row N: message`` lines.
        located: the same problems as (line number, message), for callers that word them.
        per_supplier: well-formed rows per responsible supplier.
        latest: the latest ``Since`` read (an extract is at least as recent as its newest row).
    """

    since: dict[str, dict[DeviceKind, date]] = field(default_factory=dict)
    devices: int = 0
    bad_rows: int = 0
    problems: list[str] = field(default_factory=list)
    located: list[tuple[int, str]] = field(default_factory=list)
    per_supplier: dict[str, int] = field(default_factory=dict)
    latest: date | None = None

    def add(self, supplier: str, kind: DeviceKind, day: date, count: int = 1) -> None:
        """``count`` rows of ``supplier``'s ``kind``, the earliest responsible since ``day``."""
        kinds = self.since.get(supplier)
        if kinds is None:
            kinds = self.since[supplier] = {}
        known = kinds.get(kind)
        if known is None or day < known:
            kinds[kind] = day
        self.per_supplier[supplier] = self.per_supplier.get(supplier, 0) + count
        if self.latest is None or day > self.latest:
            self.latest = day

    def problem(self, row: int, message: str) -> None:
        self.bad_rows += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(f"row {row}: {message}")
            self.located.append((row, message))


def _token(text: str) -> str:
    return "".join(text.split()).casefold()


def _layout(header: list[str]) -> tuple[int, ...]:
    wanted = {_token(name): name for name in INVENTORY_COLUMNS}
    found: dict[str, int] = {}
    for index, text in enumerate(header):
        name = wanted.get(_token(text))
        if name is not None and name not in found:
            found[name] = index
    missing = [name for name in INVENTORY_COLUMNS if name not in found]
    if missing:
        raise RejectedInputError(
            field_error(
                "inventory header", ",".join(header)[:200], f"the columns {missing} as well"
            )
        )
    return tuple(found[name] for name in INVENTORY_COLUMNS)


_CACHE_LIMIT = 200_000  # distinct kinds, suppliers and Since values remembered, to bound memory


class RowReader:
    """Checks rows; remembers the verdict for repeated values, which in an estate are the rule (a
    model and its firmware repeat across millions of devices), so most rows cost one regex.

    Device kinds and suppliers are remembered apart: tens of suppliers times thousands of kinds
    would overflow one cache of their pairs (and a full cache checks every row again)."""

    def __init__(self, layout: tuple[int, ...]) -> None:
        self.layout = layout
        self.needed = max(layout) + 1
        # C-speed extraction of the columns, in canonical order; values are stripped only when
        # first seen (the caches are keyed by the raw text).
        self.device_id = operator.itemgetter(layout[0])
        self.kind_fields = operator.itemgetter(*layout[1:6])
        self.supplier_field = operator.itemgetter(layout[6])
        self.since_field = operator.itemgetter(layout[7])
        self.kinds: dict[tuple[str, ...], DeviceKind | str] = {}
        self.suppliers: dict[str, str] = {}  # raw text -> Entity ID, or "" when malformed
        self.days: dict[str, date | str] = {}

    def _kind(self, raw: tuple[str, ...]) -> DeviceKind | str:
        device_type, mfr, model, hw, fw = (value.strip().upper() for value in raw)
        checks = (
            ("Device Type", device_type, _TYPE, "a device type such as ESME"),
            ("Manufacturer Identifier", mfr, _HEX4, "4 hex digits"),
            ("Model Identifier", model, _MODEL, "4 or 8 hex digits"),
            ("Hardware Version", hw, _HEX4, "4 hex digits"),
            ("Firmware Version", fw, _HEX8, "8 hex digits"),
        )
        for column, value, pattern, expected in checks:
            if not pattern.fullmatch(value):
                return field_error(column, value, expected)
        return DeviceKind(device_type, mfr, model, hw, fw)

    @staticmethod
    def _supplier(raw: str) -> str:
        supplier = raw.strip().replace("-", "").upper()
        return supplier if _ENTITY.fullmatch(supplier) else ""

    def _day(self, since: str) -> date | str:
        since = since.strip()
        try:
            return date.fromisoformat(since[:10])
        except ValueError:
            return field_error("Since", since, "an ISO date (YYYY-MM-DD)")

    def valid(self, column: int, raw: str) -> bool:
        """Whether the raw text of one kind column (0 Device Type .. 4 Firmware Version) passes
        its check in `kind` (a kind is valid when each of its columns is)."""
        return _KIND_PATTERNS[column].fullmatch(raw.strip().upper()) is not None

    def kind(self, raw: tuple[str, ...]) -> DeviceKind | str:
        """The device kind of the raw Device Type .. Firmware Version texts, or what is wrong."""
        kind = self.kinds.get(raw)
        if kind is None:
            kind = self._kind(raw)
            if len(self.kinds) < _CACHE_LIMIT:
                self.kinds[raw] = kind
        return kind

    def supplier(self, raw: str) -> str:
        """The Entity ID of the raw Responsible Supplier text, or "" when malformed."""
        supplier = self.suppliers.get(raw)
        if supplier is None:
            supplier = self._supplier(raw)
            if len(self.suppliers) < _CACHE_LIMIT:
                self.suppliers[raw] = supplier
        return supplier

    def day(self, since: str) -> date | str:
        """The day of the raw Since text, or what is wrong."""
        day = self.days.get(since)
        if day is None:
            day = self._day(since)
            if len(self.days) < _CACHE_LIMIT:
                self.days[since] = day
        return day

    def read(self, fields: list[str]) -> tuple[str, DeviceKind, date] | str:
        """The row's supplier, device kind and day, or the message naming what is wrong."""
        if len(fields) < self.needed:
            return field_error("row", f"{len(fields)} fields", f"at least {self.needed}")
        device_id = self.device_id(fields)
        if not _DEVICE_ID.fullmatch(device_id) and not _DEVICE_ID.fullmatch(
            device_id.strip().replace("-", "")
        ):
            return field_error("Device ID", device_id.strip(), "16 hex digits")
        kind = self.kind(self.kind_fields(fields))
        if isinstance(kind, str):
            return kind
        raw_supplier = self.supplier_field(fields)
        supplier = self.supplier(raw_supplier)
        if not supplier:
            value = raw_supplier.strip().replace("-", "").upper()
            return field_error("Responsible Supplier", value, "16 hex digits")
        day = self.day(self.since_field(fields))
        if isinstance(day, str):
            return day
        return supplier, kind, day


def read_inventory(lines: Iterable[str]) -> InventoryIndex:
    """Index an inventory CSV given as text lines (streamed: one row in memory at a time).

    Raises:
        RejectedInputError: empty, or the header lacks a column. Bad rows are counted instead.
    """
    reader = csv.reader(iter(lines))
    rows = row_reader(reader)
    index = InventoryIndex()
    read_rows(reader, rows, index)
    return index


def row_reader(reader: Any) -> RowReader:
    """The row checker for the header ``reader`` reads next.

    Raises:
        RejectedInputError: empty, or the header lacks a column.
    """
    try:
        header = next(reader)
    except StopIteration:
        raise RejectedInputError("inventory: found an empty file, expected a CSV header") from None
    except csv.Error as e:
        raise RejectedInputError(f"inventory header: not CSV ({e})") from e
    return RowReader(_layout(header))


def read_rows(reader: Any, rows: RowReader, index: InventoryIndex, offset: int = 0) -> None:
    """Add every row ``reader`` yields to ``index``; problems are named by line number, counted
    from ``offset`` (the lines before the ones ``reader`` reads)."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            index.problem(offset + reader.line_num, f"not CSV ({e})")
            continue
        if not fields:
            continue
        if fields == [LONG_ROW]:  # repo_tool/access/long_lines.py
            index.problem(offset + reader.line_num, field_error("row", LONG_ROW, _SHORT_ROW))
            continue
        parsed = rows.read(fields)
        if isinstance(parsed, str):
            index.problem(offset + reader.line_num, parsed)
            continue
        index.devices += 1
        index.add(*parsed)


def inventory_lines(data: io.TextIOBase) -> Iterator[str]:
    """Lines of an opened inventory file (kept separate so tests can pass strings)."""
    yield from data


class _Hashing(io.RawIOBase):
    """A raw file that hashes every byte read from it (the record names the extract it came from)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.hash.update(data)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


def read_inventory_file(path: Path, what: str = "INVENTORY") -> tuple[InventoryIndex, str]:
    """Index an inventory file (CSV, optionally gzipped) and return it with the file's SHA-256.

    Raises:
        ConfigurationError: the file does not exist or cannot be opened.
        UnavailableError: it cannot be read to the end (a truncated gzip, an I/O error).
        RejectedInputError: empty, or the header lacks a column (see `read_inventory`).
    """
    try:
        raw = path.open("rb")
    except OSError as e:
        raise ConfigurationError(f"{what}: cannot read {path} ({e.strerror})") from e
    hashing = _Hashing(raw)
    try:
        buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
        binary: IO[bytes] = buffered
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            binary = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
        text = io.TextIOWrapper(bounded(binary), encoding="utf-8-sig", errors="replace", newline="")
        index = read_inventory(text)
        # Whatever follows the last row still belongs to the file the hash names.
        while buffered.read(1 << 20):
            pass
    except UNREADABLE as e:
        raise UnavailableError(f"{what} {path}: unreadable ({e.__class__.__name__}: {e})") from e
    finally:
        hashing.close()
    return index, hashing.hash.hexdigest()
