"""The access logs judged in columns (pyarrow), with the line-by-line audit as the fallback.

`audit_logs` gives what `audit.judged_lines` followed by `Summary.add` and `Judged.to_json` give
(the same totals, summary, flagged examples and entries, byte for byte, in the same order), several
times faster on the logs nginx writes. The logs are read in blocks of whole lines; a block goes
through the columns only when its text vouches for one meaning under both readers:

- every line starts as a ``cfl-access-1`` record and is a flat object: one ``{`` a line, no
  ``[``, no backslash escape, no blank line (one ``bytes.translate`` pass keeps only those
  characters), so no nesting depth or escape can be read two ways; and ``pyarrow.json`` reads every
  line with the record's fields of the record's types (a string that is not a string, a number
  beyond 64 bits or not an integer, a key twice, invalid UTF-8, trailing text: Arrow refuses, and
  the block falls back);
- a line names an image request exactly when it holds ``"path":"/targets/`` (what the line-by-line
  reader tests); in such a flat line that can only be the ``path`` field, and without a blank it is
  exactly the lines whose path Arrow read as ``/targets/...``; with a blank in the block, the count
  of the text must equal the count of those paths;
- every request's fields are there (no null), its time is ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or a
  ``±HH:MM`` offset in 1900..2099 (each distinct date checked by ``date.fromisoformat``), it has a
  certificate fingerprint whenever it has a certificate (else the fallback reads the PEM), and its
  image is in no pilot (the pilot rule is judged per request by the fallback).

Everything per distinct value (the caller's fingerprints, the path, the image, the supplier's
registration, revocation, roles and entitlement day, the JSON of each) is worked out by the
line-by-line code itself; per request only comparisons of times and the joining of the pieces are
done in columns. Any other block is judged line by line, as is every line of a run with the
entitlement history (which keeps per-request state of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from metadata_templates.errors import UnavailableError
from repo_tool.access.audit import (
    _IMAGE_BLOB,
    _RECORD_START,
    _TARGETS_PATH,
    MAX_FLAGGED_EXAMPLES,
    NO_APPLICABLE_DEVICE,
    OUTSIDE_ROLE,
    REVOKED,
    UNREGISTERED,
    AccessRecord,
    Auditor,
    Judged,
    Summary,
    SupplierSummary,
    Totals,
    judge_line,
    open_log,
    parse_line,
)
from repo_tool.access.inventory import UNREADABLE
from repo_tool.access.long_lines import line_blocks, log_lines

_CACHE_LIMIT = 100_000  # distinct callers and paths remembered
BLOCK = 1 << 22  # bytes of whole lines judged at a time: memory is a few blocks, whatever the logs
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = 1 << 62  # a time after every request (no revocation, no entitlement day)
_TIME = (
    r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TEXTS = ("time", "entity_id", "certificate_sha256", "certificate_sha1", "certificate", "path")
_SCHEMA = pa.schema(
    [(name, pa.string()) for name in _TEXTS] + [("status", pa.int64()), ("bytes", pa.int64())]
)
_UNMARKED = bytes(byte for byte in range(256) if byte not in b"\n{[\\")
_USED = ("time", "certificate_sha256", "certificate_sha1", "certificate", "path", "status", "bytes")
_PARSE = pajson.ParseOptions(
    explicit_schema=_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)
_FINDINGS = [
    [
        code
        for bit, code in enumerate((UNREGISTERED, REVOKED, OUTSIDE_ROLE, NO_APPLICABLE_DEVICE))
        if mask >> bit & 1
    ]
    for mask in range(16)
]


def _seconds(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(seconds=1)


def audit_logs(
    paths: Iterable[Path],
    auditor: Auditor,
    totals: Totals,
    summary: Summary,
    write: Callable[[bytes | memoryview], Any] | None = None,
    separator: str = ",\n    ",
    progress: Callable[[int], Any] | None = None,
) -> None:
    """Judge every image request in ``paths``, in the order given, into ``totals`` and
    ``summary``; with ``write``, hand it each entry's JSON (`Judged.to_json`, UTF-8), each after
    ``separator``, a block at a time (bytes or a memoryview, valid as long as it is kept).

    Raises:
        UnavailableError: a file cannot be read, or a gzip file is corrupt.
    """
    blocks = _Blocks(auditor, totals, summary, write, separator)
    for path in paths:
        number = 0
        with open_log(path) as handle:
            try:
                for block in line_blocks(handle, BLOCK):
                    number = blocks.judge(path, number, block)
                    if progress is not None:
                        progress(totals.lines)
            except UNREADABLE as e:
                raise _unreadable(path, number, e) from e
    blocks.finish()


def _unreadable(path: Path, number: int, error: Exception) -> UnavailableError:
    """The line-by-line reader's words: the last line it would have read before the error."""
    try:
        with open_log(path) as handle:
            for number, _line in enumerate(log_lines(handle), start=1):  # noqa: B007
                pass
    except UNREADABLE as e:
        error = e
    return UnavailableError(f"{path}: unreadable after line {number} ({error})")


class _Blocks:
    """Judges blocks of whole lines, in columns where the block allows it."""

    def __init__(
        self,
        auditor: Auditor,
        totals: Totals,
        summary: Summary,
        write: Callable[[bytes | memoryview], Any] | None,
        separator: str,
    ) -> None:
        self.auditor, self.totals, self.summary = auditor, totals, summary
        self.write, self.separator = write, separator
        self.columnar = auditor.entitlements is None
        self.inventory = auditor.days is not None
        self.callers: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.paths: dict[str, tuple[Any, ...] | bool | None] = {}
        self.offsets: dict[str, int] = {}
        self.findings = [orjson.dumps(codes).decode() for codes in _FINDINGS]
        self.downloads = _Downloads(summary)
        # Suppliers and library targets by number; the entitlement days keyed by both numbers.
        self.supplier_number = {entity: n for n, entity in enumerate(auditor.registered)}
        self.target_number = {target: n for n, target in enumerate(auditor.library.images)}
        self.width = len(self.target_number) + 1  # the last number: a target not in the library
        keys, days = [], []
        for (entity, target), day in (auditor.days or {}).items():
            number = self.supplier_number.get(entity)
            if number is not None:
                keys.append(number * self.width + self.target_number[target])
                days.append(_seconds(datetime(day.year, day.month, day.day, tzinfo=UTC)))
        self.day_keys, self.days = pa.array(keys, pa.int64()), pa.array(days, pa.int64())
        self.outside: dict[int, bool] = {}  # supplier number * 2**20 + device type number
        self.device_types: dict[str, int] = {}

    def judge(self, path: Path, number: int, block: bytes) -> int:
        """Judge the lines of ``block`` (which follow line ``number``); the last line's number."""
        # One pass keeps only the newlines, braces, brackets and backslashes: a block of flat
        # objects without escapes, one a line, leaves "{\n" for every line.
        marks = block.translate(None, _UNMARKED)
        ended = block.endswith(b"\n")
        lines = marks.count(b"\n") + (not ended)
        flat = marks == b"{\n" * (lines - (not ended)) + (b"" if ended else b"{")
        if not (self.columnar and flat and self._columns(block, lines)):
            self._lines(path, number, block)
        return number + lines

    def finish(self) -> None:
        self.downloads.flush()

    def _lines(self, path: Path, number: int, block: bytes) -> None:
        """`judged_lines`, `Summary.add` and `Judged.to_json`, one line at a time."""
        totals, out = self.totals, []
        texts = block.split(b"\n")
        if block.endswith(b"\n"):
            texts.pop()
        for number, line in enumerate(texts, start=number + 1):  # noqa: B020
            judged = judge_line(line, path, number, self.auditor, totals)
            if judged is None:
                continue
            self.summary.add(judged)
            if self.write is not None:
                out.append(self.separator + judged.to_json())
        if out and self.write is not None:
            self.write("".join(out).encode())

    def _columns(self, block: bytes, lines: int) -> bool:
        """Judge ``block`` in columns; False, with nothing counted, when it must go line by line."""
        if not block.startswith(_RECORD_START) or block.count(b"\n" + _RECORD_START) != lines - 1:
            return False
        try:
            table = pajson.read_json(
                pa.BufferReader(block),
                read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
                parse_options=_PARSE,
            ).combine_chunks()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        if table.num_rows != lines:
            return False  # a blank line, which Arrow skips
        columns = {name: table.column(name).chunk(0) for name in _SCHEMA.names}
        targets = pc.fill_null(pc.starts_with(columns["path"], "/targets/"), False)
        # Without a blank (JSON's only other whitespace) a path read as "/targets/..." was
        # written as the line reader looks for it; with one, count what it looks for.
        blank = b" " in block or b"\t" in block or b"\r" in block
        if blank and pc.sum(pc.cast(targets, pa.int64())).as_py() != block.count(_TARGETS_PATH):
            return False
        for values in columns.values():  # a field missing (or null) where the line reader reads it
            if values.null_count and pc.any(pc.and_(targets, pc.is_null(values))).as_py():
                return False
        # Each distinct path: the image it names, if any (else the line is no request).
        paths = columns["path"].dictionary_encode()
        found = [self._path(text) for text in paths.dictionary.to_pylist()]
        if any(p is False for p in found):
            return False
        requests = pa.array([isinstance(p, tuple) for p in found], pa.bool_())
        rows = pc.indices_nonzero(pc.fill_null(pc.take(requests, paths.indices), False))
        r = {name: pc.take(columns[name], rows) for name in _USED}
        times = self._seconds(r)
        if times is None:
            return False
        self.totals.lines += lines
        if len(rows):
            self._requests(block, rows, r, *times)
        return True

    def _path(self, where: str) -> tuple[Any, ...] | bool | None:
        """What `parse_line` makes of a path: None when it names no image blob (no request), False
        when its image is in a pilot (judged request by request), else the target, its device
        type and its JSON."""
        if where in self.paths:
            return self.paths[where]
        match = _IMAGE_BLOB.fullmatch(where)
        found: tuple[Any, ...] | bool | None = None
        if match is not None:
            target = f"{match.group(1)}/{match.group(3)}"
            image = self.auditor.library.images.get(target)
            if image is not None and image.info.pilot is not None:
                found = False
            else:
                target = image.target if image else target
                device_type = match.group(4)
                number = self.device_types.setdefault(device_type, len(self.device_types))
                found = (
                    target,
                    device_type,
                    orjson.dumps(target).decode(),
                    self.target_number.get(target, self.width - 1),
                    self.downloads.target_id(target),
                    number,
                )
        if len(self.paths) < _CACHE_LIMIT:
            self.paths[where] = found
        return found

    def _caller(self, sha256: str, sha1: str) -> tuple[Any, ...]:
        """Who the fingerprints name (`Auditor.supplier_of`), when they were registered and
        revoked, the summary's name for them and the entry's JSON of them."""
        key = (sha256, sha1)
        found = self.callers.get(key)
        if found is None:
            record = AccessRecord(_EPOCH, sha256 or None, sha1 or None, None, "", "", "", 0, 0)
            supplier = self.auditor.supplier_of(record)
            judged = Judged(record, supplier, None, None, ())
            entry = judged.to_dict()
            if supplier is None:
                times = (0, _NEVER)
            else:
                revoked = self.auditor.revoked.get(supplier.entity_id)
                times = (
                    _seconds(self.auditor.registered[supplier.entity_id]),
                    _NEVER if revoked is None else _seconds(revoked),
                )
            found = (
                supplier,
                Summary.caller(judged),
                *times,
                orjson.dumps(entry["entity_id"]).decode(),
                orjson.dumps(entry["certificate_sha256"]).decode(),
                -1 if supplier is None else self.supplier_number[supplier.entity_id],
                self.downloads.caller_id(Summary.caller(judged)),
            )
            if len(self.callers) < _CACHE_LIMIT:
                self.callers[key] = found
        return found

    def _offset(self, text: str) -> int:
        seconds = self.offsets.get(text)
        if seconds is None:
            offset = datetime.fromisoformat("2000-01-01T00:00:00" + text).utcoffset()
            seconds = self.offsets[text] = offset // timedelta(seconds=1) if offset else 0
        return seconds

    def _seconds(self, r: dict[str, pa.Array]) -> tuple[pa.Array, pa.Array | None] | None:
        """Each request's time in seconds since the epoch (UTC), and as ``YYYY-MM-DDTHH:MM:SS``
        when it was logged in UTC; None when one is not in the plain form, or has a certificate
        without its fingerprint."""
        time = r["time"]
        if not pc.all(pc.match_substring_regex(time, _TIME)).as_py():
            return None
        if pc.any(
            pc.and_(pc.equal(r["certificate_sha256"], ""), pc.not_equal(r["certificate"], ""))
        ).as_py():
            return None  # the fingerprint of a certificate the log names by its PEM only
        dates = pc.utf8_slice_codeunits(time, 0, 10).dictionary_encode()
        for text in dates.dictionary.to_pylist():
            try:
                date.fromisoformat(text)
            except ValueError:
                return None
        offsets = pc.utf8_slice_codeunits(time, 19).dictionary_encode()
        shift = pa.array([self._offset(t) for t in offsets.dictionary.to_pylist()], pa.int64())
        text = pc.utf8_slice_codeunits(time, 0, 19)
        local = pc.cast(pc.strptime(text, format="%Y-%m-%dT%H:%M:%S", unit="s"), pa.int64())
        if not any(shift.to_pylist()):
            return local, text  # logged in UTC: the entry's time is the logged one
        return pc.subtract(local, pc.take(shift, offsets.indices)), None

    def _requests(
        self,
        block: bytes,
        rows: pa.Array,
        r: dict[str, pa.Array],
        seconds: pa.Array,
        stamps: pa.Array | None,
    ) -> None:
        """Judge, count, summarise and write the block's requests (lines ``rows``)."""
        # Callers by their fingerprints, and paths: each distinct one worked out once.
        sha256 = r["certificate_sha256"].dictionary_encode()
        sha1 = r["certificate_sha1"].dictionary_encode()
        caller_key = pc.add(
            pc.multiply(pc.cast(sha256.indices, pa.int64()), len(sha1.dictionary)),
            pc.cast(sha1.indices, pa.int64()),
        )
        callers = caller_key.dictionary_encode()
        texts256, texts1 = sha256.dictionary.to_pylist(), sha1.dictionary.to_pylist()
        width = len(texts1)
        caller = [
            self._caller(texts256[k // width], texts1[k % width])
            for k in callers.dictionary.to_pylist()
        ]
        paths = r["path"].dictionary_encode()
        # Only paths of requests are left: each names an image blob.
        path = [cast(tuple[Any, ...], self._path(text)) for text in paths.dictionary.to_pylist()]

        def per_caller(i: int, type_: pa.DataType) -> pa.Array:
            return pc.take(pa.array([c[i] for c in caller], type_), callers.indices)

        def per_path(i: int, type_: pa.DataType) -> pa.Array:
            return pc.take(pa.array([p[i] for p in path], type_), paths.indices)

        supplier = per_caller(6, pa.int64())
        known = pc.greater_equal(supplier, 0)
        # The roles: one verdict per (supplier, device type) ever seen.
        role_key = pc.add(pc.multiply(supplier, 1 << 20), per_path(5, pa.int64()))
        pairs = pc.unique(role_key)
        verdicts = []
        for k in pairs.to_pylist():
            verdict = self.outside.get(k)
            if verdict is None:
                number, device_type = divmod(k, 1 << 20)
                found = next(c[0] for c in caller if c[6] == number) if number >= 0 else None
                name = next(p[1] for p in path if p[5] == device_type)
                verdict = found is not None and not self.auditor._within_roles(found, name)
                self.outside[k] = verdict
            verdicts.append(verdict)
        outside = pc.take(pa.array(verdicts, pa.bool_()), pc.index_in(role_key, value_set=pairs))
        day = None
        if self.inventory:
            day_key = pc.add(pc.multiply(supplier, self.width), per_path(3, pa.int64()))
            at = pc.index_in(day_key, value_set=self.day_keys)
            day = pc.fill_null(pc.take(self.days, at), _NEVER)
        unregistered = pc.or_(pc.invert(known), pc.less(seconds, per_caller(2, pa.int64())))
        registered = pc.invert(unregistered)
        bits = [
            unregistered,
            pc.and_(registered, pc.greater_equal(seconds, per_caller(3, pa.int64()))),
            pc.and_(registered, outside),
        ]
        if day is not None:
            bits.append(pc.and_(known, pc.less(seconds, day)))
        mask = pc.cast(bits[0], pa.int8())
        for bit, values in enumerate(bits[1:], start=1):
            mask = pc.add(mask, pc.multiply(pc.cast(values, pa.int8()), 1 << bit))
        flagged = pc.not_equal(mask, 0)
        count = len(rows)
        self.totals.requests += count
        self.totals.flagged += pc.sum(pc.cast(flagged, pa.int64())).as_py() or 0
        # The summary: every caller seen (in order), downloads by (caller, target), flagged ones.
        by_caller = self.summary.by_caller
        for c in caller:
            by_caller.setdefault(c[1], SupplierSummary())
        pair = pc.add(pc.multiply(per_caller(7, pa.int64()), 1 << 31), per_path(4, pa.int64()))
        self.downloads.add(pair, seconds, r["status"])
        counts = pc.value_counts(pc.filter(callers.indices, flagged))
        wanting = []
        for item in counts.to_pylist():
            entry = by_caller[caller[item["values"]][1]]
            entry.flagged += item["counts"]
            if len(entry.flagged_examples) < MAX_FLAGGED_EXAMPLES:
                wanting.append(item["values"])
        if wanting:
            self._examples(block, rows, callers.indices, flagged, caller, wanting)
        if self.write is None:
            return
        if stamps is None:
            stamps = pc.binary_replace_slice(
                pc.cast(pc.cast(seconds, pa.timestamp("s")), pa.string()), 10, 11, "T"
            )
        # The fields between bytes and path turn on the caller and the findings only: one piece
        # per distinct (caller, findings); the target's piece per distinct path.
        mixed = pc.add(
            pc.multiply(pc.cast(callers.indices, pa.int64()), 16), pc.cast(mask, pa.int64())
        )
        distinct = pc.unique(mixed)
        pieces = []
        for k in distinct.to_pylist():
            c, m = caller[k >> 4], k & 15
            entitled = ("false" if m else "true") if self.inventory else "null"
            pieces.append(
                f',"certificate_sha256":{c[5]},"entitled":{entitled},"entity_id":{c[4]},'
                f'"findings":{self.findings[m]},"path":"'
            )
        middle = pc.take(pa.array(pieces, pa.string()), pc.index_in(mixed, value_set=distinct))
        entries = pc.binary_join_element_wise(
            self.separator + '{"bytes":', pc.cast(r["bytes"], pa.string()), middle, r["path"],
            '","status":', pc.cast(r["status"], pa.string()),
            pc.take(pa.array([f',"target":{p[2]},"time":"' for p in path], pa.string()), paths.indices),
            stamps, 'Z"}', "",
        )  # fmt: skip
        # The entries' text, one after the other, is the array's data (no copy).
        _, offsets, data = entries.buffers()
        positions = memoryview(offsets).cast("i")
        start, end = positions[entries.offset], positions[entries.offset + len(entries)]
        self.write(memoryview(data)[start:end])

    def _examples(
        self,
        block: bytes,
        rows: pa.Array,
        callers: pa.Array,
        flagged: pa.Array,
        caller: list[tuple[Any, ...]],
        wanting: list[int],
    ) -> None:
        """The first flagged requests of callers with fewer than the summary keeps, judged again
        line by line (a few per caller in a whole audit)."""
        texts = block.split(b"\n")
        where = pc.indices_nonzero(
            pc.and_(flagged, pc.is_in(callers, pa.array(wanting, callers.type)))
        )
        by_caller = self.summary.by_caller
        for row, c in zip(
            pc.take(rows, where).to_pylist(), pc.take(callers, where).to_pylist(), strict=True
        ):
            examples = by_caller[caller[c][1]].flagged_examples
            if len(examples) < MAX_FLAGGED_EXAMPLES:
                record = parse_line(texts[row])
                if record is not None:
                    examples.append(self.auditor.judge(record))


class _Downloads:
    """The summary's downloads by (caller, target), kept in columns until the end: per block
    only the distinct pairs are counted, and a few blocks' counts are folded into one."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.callers: dict[str, int] = {}
        self.targets: dict[str, int] = {}
        self.tables: list[pa.Table] = []

    def caller_id(self, name: str) -> int:
        return self.callers.setdefault(name, len(self.callers))

    def target_id(self, target: str) -> int:
        return self.targets.setdefault(target, len(self.targets))

    def add(self, pair: pa.Array, seconds: pa.Array, status: pa.Array) -> None:
        """Count the 2xx requests of ``pair`` (caller id * 2**31 + target id) at ``seconds``."""
        ok = pc.and_(pc.greater_equal(status, 200), pc.less(status, 300))
        table = pa.table({"g": pair, "s": seconds}).filter(ok)
        self.tables.append(
            table.group_by("g", use_threads=False)
            .aggregate([("s", "count"), ("s", "min"), ("s", "max")])
            .rename_columns(["g", "n", "lo", "hi"])
        )
        if len(self.tables) >= 16:
            self._fold()

    def _fold(self) -> None:
        table = pa.concat_tables(self.tables)
        self.tables = [
            table.group_by("g", use_threads=False)
            .aggregate([("n", "sum"), ("lo", "min"), ("hi", "max")])
            .rename_columns(["g", "n", "lo", "hi"])
        ]

    def flush(self) -> None:
        if not self.tables:
            return
        self._fold()
        (table,) = self.tables
        self.tables = []
        by_caller = self.summary.by_caller
        callers, targets = list(self.callers), list(self.targets)
        for g, n, first, last in zip(
            *(table.column(c).to_pylist() for c in ("g", "n", "lo", "hi")), strict=True
        ):
            caller, target = callers[g >> 31], targets[g & ((1 << 31) - 1)]
            entry = by_caller[caller]
            entry.downloads += n
            low, high = _EPOCH + timedelta(seconds=first), _EPOCH + timedelta(seconds=last)
            seen = entry.targets.get(target)
            if seen is None:
                entry.targets[target] = [n, low, high]
            else:
                seen[0] += n
                seen[1] = min(seen[1], low)
                seen[2] = max(seen[2], high)
