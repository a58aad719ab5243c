"""Lines with a bound on each, for the audit's inputs: a line longer than ``MAX_LINE`` bytes (no
access record nor inventory row comes near it: a whole certificate is a few kB) is read as the
one line ``LONG_LINE``, which the readers count as malformed, and its bytes are skipped, never
held. Without it one line of a gzip bomb (gigabytes of one byte, a few MB gzipped) was held whole
by the per-line readers, and the columnar ones copied it again with every block they read.

Both readers of each input take their lines from here, so a long line is the same one malformed
line, with the same number, in both: the access logs' per-line reader (``log_lines``,
repo_tool/access/audit.py) and columnar one (``line_blocks``, audit_columnar.py), which end lines
at ``\\n`` as iterating a file does; the inventory's readers (``bounded``, inventory.py and
inventory_columnar.py), which read the file through it, with ``\\r`` ending a line too, as the
``csv`` module reads a file opened with ``newline=""``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["LONG_LINE", "MAX_LINE", "bounded", "line_blocks", "log_lines"]

MAX_LINE = 1 << 24  # bytes of one line, its line end not counted
LONG_LINE = b"(a line longer than %d bytes)" % MAX_LINE
_READ = 1 << 20  # bytes ``bounded`` reads at a time


def log_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``handle`` as iterating it gives them (each with its newline, the last one
    perhaps without), but a line longer than ``MAX_LINE`` bytes is ``LONG_LINE``."""
    limit = MAX_LINE + 1
    while line := handle.readline(limit):
        if len(line) == limit and not line.endswith(b"\n"):
            while (rest := handle.readline(limit)) and not rest.endswith(b"\n"):
                pass
            yield LONG_LINE
        else:
            yield line


def _end(ends: bytes) -> re.Pattern[bytes]:
    return re.compile(b"[" + re.escape(ends) + b"]")


def _long(ends: bytes) -> re.Pattern[bytes]:
    return re.compile(b"[^" + re.escape(ends) + b"]{%d,}" % (MAX_LINE + 1))


def line_blocks(handle: IO[bytes], size: int, ends: bytes = b"\n") -> Iterator[bytes]:
    """``handle`` in blocks of whole lines read ``size`` bytes at a time (each block ends with a
    line end, one of the bytes ``ends``, but perhaps the last), each line longer than
    ``MAX_LINE`` bytes given as ``LONG_LINE`` followed by its line end: with ``ends=b"\\n"``,
    the lines ``log_lines`` gives, joined."""
    end, pending, skipping = _end(ends), b"", False
    while more := handle.read(size):
        if skipping:  # the rest of a long line: dropped up to its end, which is kept
            found = end.search(more)
            if found is None:
                continue
            more, skipping = LONG_LINE + more[found.start() :], False
        cut = max(more.rfind(ends[i : i + 1]) for i in range(len(ends))) + 1
        if not cut:  # a line longer than a read: bounded by MAX_LINE
            pending += more
            if len(pending) > MAX_LINE:
                pending, skipping = b"", True
            continue
        # one copy: the end of the last read, and this read up to its last line end
        block, pending = pending + memoryview(more)[:cut], more[cut:]
        if len(block) > MAX_LINE:
            block = _long(ends).sub(LONG_LINE, block)
        yield block
    if skipping:
        yield LONG_LINE
    elif pending:
        yield pending if len(pending) <= MAX_LINE else LONG_LINE


class _Blocks(io.RawIOBase):
    """A readable file of the bytes ``line_blocks`` gives."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self.blocks = blocks
        self.left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.left:
            block = next(self.blocks, None)
            if block is None:
                return 0
            self.left = memoryview(block)
        n = min(len(buffer), len(self.left))
        buffer[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


def bounded(binary: IO[bytes]) -> IO[bytes]:
    """``binary`` with each line (ended by ``\\n``, ``\\r`` or both) longer than ``MAX_LINE``
    bytes as ``LONG_LINE``, its line end kept."""
    return io.BufferedReader(_Blocks(line_blocks(binary, _READ, b"\r\n")), buffer_size=_READ)
