"""The inventory extract read in columns (pyarrow), with the per-row reader as the fallback.

`read_inventory_binary` gives the same `InventoryIndex` as `inventory.read_inventory` over the
same file decoded as ``utf-8-sig`` with ``errors="replace"`` (the same counts, problems, days and
even the same order of the index's dicts), several times faster on a well-formed extract:

- the file is read in blocks of whole lines; a block that is plain ASCII without a quote, a
  carriage return or a NUL is parsed by ``pyarrow.csv`` (no quoting: such a block has one meaning
  for the ``csv`` module and for Arrow), and its rows are checked in columns: the Device ID by one
  regular expression, every other column once per distinct value by the per-row reader's own
  checks (an estate repeats a few thousand values across millions of devices), then the rows are
  grouped by (supplier, device kind) with the earliest ``Since``;
- a block Arrow refuses (a row with another number of fields) or with any row the checks flag
  is read by the per-row reader, so every problem is worded and numbered as it always was;
- from the first block that is not plain (a quote, which may open a field spanning lines, a
  carriage return, a byte beyond ASCII, a NUL) to the end of the file, as is the header if it
  is not plain: the per-row reader does it all.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from repo_tool.access import long_lines
from repo_tool.access.inventory import (
    DeviceKind,
    InventoryIndex,
    RowReader,
    read_inventory,
    read_rows,
    row_reader,
)
from repo_tool.access.long_lines import bounded

BLOCK = 1 << 22  # bytes read at a time: memory is a few blocks, whatever the size of the file
_BOM = b"\xef\xbb\xbf"
_DEVICE_ID = "^[0-9A-Fa-f]{16}$"  # the per-row reader's first test, before any stripping


class _Prefixed(io.RawIOBase):
    """The bytes already read, then the rest of the file: what the per-row reader takes over."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self.prefix = memoryview(prefix)
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _text(prefix: bytes, rest: IO[bytes], encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        io.BufferedReader(_Prefixed(prefix, rest), buffer_size=1 << 20),
        encoding=encoding,
        errors="replace",
        newline="",
    )


def _plain(block: bytes) -> bool:
    return block.isascii() and b'"' not in block and b"\r" not in block and b"\x00" not in block


def read_inventory_binary(binary: IO[bytes]) -> InventoryIndex:
    """Index an inventory CSV read from ``binary`` (see the module's docstring).

    Raises:
        RejectedInputError: empty, or the header lacks a column. Bad rows are counted instead.
    """
    # No line longer than long_lines.MAX_LINE: the per-row reader reads these very bytes.
    binary = bounded(binary)
    data = binary.read(BLOCK)
    while data and b"\n" not in data and len(data) <= long_lines.MAX_LINE:
        more = binary.read(BLOCK)
        if not more:
            break
        data += more
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    end = body.find(b"\n")
    if end < 0 or not _plain(body[: end + 1]):
        return read_inventory(_text(data, binary, "utf-8-sig"))
    reader = csv.reader(io.StringIO(body[: end + 1].decode("ascii"), newline=""))
    rows = row_reader(reader)
    index = InventoryIndex()
    columns = _Columns(rows, body[: end + 1].count(b",") + 1)
    line = 1
    pending = body[end + 1 :]
    eof = False
    while True:
        more = b"" if eof else binary.read(BLOCK)
        eof = not more
        pending += more
        cut = len(pending) if eof else pending.rfind(b"\n") + 1
        block, pending = pending[:cut], pending[cut:]
        # pending longer than a line: its lines end in \r only, which the csv module reads
        if not _plain(block) or len(pending) > long_lines.MAX_LINE:
            columns.flush(index)
            tail = csv.reader(_text(block + pending, binary, "utf-8"))
            read_rows(tail, rows, index, offset=line)
            return index
        if not columns.add(block, index):
            columns.flush(index)
            read_rows(csv.reader(io.StringIO(block.decode("ascii"), newline="")), rows, index, line)
        line += block.count(b"\n")
        if eof:
            columns.flush(index)
            return index


class _Columns:
    """Plain blocks of rows, checked and grouped in columns."""

    def __init__(self, rows: RowReader, width: int) -> None:
        self.rows = rows
        names = [f"f{i}" for i in range(width)]
        self.names = [names[i] for i in rows.layout]
        self.read_options = pacsv.ReadOptions(column_names=names, use_threads=False)
        self.parse_options = pacsv.ParseOptions(
            quote_char=False, escape_char=False, newlines_in_values=False, ignore_empty_lines=True
        )
        self.convert_options = pacsv.ConvertOptions(
            # The Device ID as text; the others, which repeat, each by its distinct values.
            column_types=dict.fromkeys(self.names[1:], pa.dictionary(pa.int32(), pa.string()))
            | {self.names[0]: pa.string()},
            include_columns=sorted(set(self.names)),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            true_values=[],
            false_values=[],
        )
        self.arange = pa.array([], pa.int64())
        self.numbers: list[dict[str, int]] = [{} for _ in range(6)]  # raw text -> number, -1 if bad
        self.texts: list[list[str]] = [[] for _ in range(6)]
        self.groups: list[pa.Table] = []  # (numbers..., earliest day, rows, first row) so far
        self.row = 0

    def add(self, block: bytes, index: InventoryIndex) -> bool:
        """Add the block's rows to ``index``; False (and ``index`` untouched) when any row needs
        the per-row reader: a row Arrow refuses, or one the checks flag."""
        if not block or (block.startswith(b"\n") and not block.strip(b"\n")):
            return True  # empty lines only: the csv module skips them too
        self.read_options.block_size = len(block) + 1
        try:
            table = pacsv.read_csv(
                pa.BufferReader(block),
                read_options=self.read_options,
                parse_options=self.parse_options,
                convert_options=self.convert_options,
            ).combine_chunks()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        if not table.num_rows:
            return True
        column = [table.column(name).chunk(0) for name in self.names]
        if not pc.all(pc.match_substring_regex(column[0], _DEVICE_ID)).as_py():
            return False
        since = column[7]
        ordinals = []
        for text in since.dictionary.to_pylist():
            day = self.rows.day(text)
            if isinstance(day, str):
                return False
            ordinals.append(day.toordinal())
        days = pc.take(pa.array(ordinals, pa.int32()), since.indices)
        # Each (device kind, supplier) column by its distinct values, numbered across blocks; a
        # value checked once, by the per-row reader's own test.
        numbers = []
        for c, values in enumerate(column[1:7]):
            known, texts = self.numbers[c], self.texts[c]
            mapped = []
            for text in values.dictionary.to_pylist():
                number = known.get(text)
                if number is None:
                    ok = self.rows.valid(c, text) if c < 5 else bool(self.rows.supplier(text))
                    number = known[text] = len(texts) if ok else -1
                    if ok:
                        texts.append(text)
                if number < 0:
                    return False
                mapped.append(number)
            numbers.append(pc.take(pa.array(mapped, pa.int32()), values.indices))
        if len(self.arange) < table.num_rows:
            self.arange = pa.array(range(2 * table.num_rows), pa.int64())
        rows = pc.add(self.arange[: table.num_rows], self.row)
        self.row += table.num_rows
        keys = {f"k{i}": values for i, values in enumerate(numbers)}
        self.groups.append(
            pa.table(keys | {"day": days, "row": rows})
            .group_by(list(keys), use_threads=False)
            .aggregate([("day", "min"), ("day", "count"), ("row", "min")])
            .rename_columns([*keys, "day", "count", "row"])
        )
        if len(self.groups) >= 16:
            self._fold()
        latest = date.fromordinal(pc.max(days).as_py())
        if index.latest is None or latest > index.latest:
            index.latest = latest
        index.devices += table.num_rows
        return True

    def _fold(self) -> None:
        keys = [f"k{i}" for i in range(6)]
        self.groups = [
            pa.concat_tables(self.groups)
            .group_by(keys, use_threads=False)
            .aggregate([("day", "min"), ("count", "sum"), ("row", "min")])
            .rename_columns([*keys, "day", "count", "row"])
        ]

    def flush(self, index: InventoryIndex) -> None:
        """Add the groups counted so far to ``index``, in the order of their first row (the order
        the per-row reader fills its dicts): before any row read row by row, and at the end."""
        if not self.groups:
            return
        self._fold()
        (groups,) = self.groups
        self.groups = []
        groups = groups.sort_by("row")
        types, mfrs, models, hws, fws, suppliers = self.texts
        kind_of, supplier_of = self.rows.kind, self.rows.supplier
        for t, m, mo, h, f, s, first, count in zip(
            *(
                groups.column(name).to_pylist()
                for name in (*(f"k{i}" for i in range(6)), "day", "count")
            ),
            strict=True,
        ):
            kind = cast(DeviceKind, kind_of((types[t], mfrs[m], models[mo], hws[h], fws[f])))
            # ``latest`` was taken from each block's newest row, which ``add`` never exceeds
            index.add(supplier_of(suppliers[s]), kind, date.fromordinal(first), count)
