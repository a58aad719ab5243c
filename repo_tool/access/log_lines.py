"""The lines of an access log with a bound on each: a line longer than ``MAX_LINE`` bytes (no
record nginx writes comes near it: a whole certificate is a few kB) is read as the one line
``LONG_LINE``, which the audit counts as malformed, and its bytes are skipped, never held. Without
it one line of a gzip bomb (gigabytes of one byte, a few MB gzipped) was held whole by both
readers, and the columnar one copied it again with every block it read.

Both readers of `cfl-repo audit` take their lines from here: the per-line one (``log_lines``,
repo_tool/access/audit.py) and the columnar one (``line_blocks``, audit_columnar.py), so a long
line is the same one malformed line, with the same number, in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

__all__ = ["LONG_LINE", "MAX_LINE", "line_blocks", "log_lines"]

MAX_LINE = 1 << 24  # bytes of one line, its newline not counted
LONG_LINE = b"(a line longer than %d bytes)" % MAX_LINE


def _skip_line(handle: IO[bytes], limit: int) -> None:
    """Read up to the end of the line being read (its newline included), holding none of it."""
    while True:
        rest = handle.readline(limit)
        if not rest or rest.endswith(b"\n"):
            return


def log_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``handle`` as iterating it gives them (each with its newline, the last one
    perhaps without), but a line longer than ``MAX_LINE`` bytes is ``LONG_LINE``."""
    limit = MAX_LINE + 1
    while line := handle.readline(limit):
        if len(line) == limit and not line.endswith(b"\n"):
            _skip_line(handle, limit)
            yield LONG_LINE
        else:
            yield line


def line_blocks(handle: IO[bytes], size: int) -> Iterator[bytes]:
    """``handle`` in blocks of whole lines read ``size`` bytes at a time (each block ends with a
    newline but perhaps the last), a line longer than ``MAX_LINE`` bytes given as ``LONG_LINE``
    and a newline: the lines ``log_lines`` gives, joined."""
    pending = b""
    while more := handle.read(size):
        cut = more.rfind(b"\n") + 1
        if not cut:  # a line longer than a read: bounded by MAX_LINE
            pending += more
            if len(pending) > MAX_LINE:
                pending = b""
                _skip_line(handle, size)
                yield LONG_LINE + b"\n"
            continue
        # one copy: the end of the last read, and this read up to its last line
        block, pending = pending + memoryview(more)[:cut], more[cut:]
        if len(block) > MAX_LINE:
            block = _bounded(block)
        yield block
    if pending:
        yield pending if len(pending) <= MAX_LINE else LONG_LINE


def _bounded(block: bytes) -> bytes:
    """``block`` (whole lines) with each line longer than ``MAX_LINE`` bytes as ``LONG_LINE``."""
    lines = block.split(b"\n")
    if all(len(line) <= MAX_LINE for line in lines):
        return block
    return b"\n".join(line if len(line) <= MAX_LINE else LONG_LINE for line in lines)
