"""The step a command was in when the file system failed it, for its one error line.

A full disk or an I/O error can strike any write of a long command, and the path alone does not
always say what the command was doing (one folder is written by several steps). Operations wrap
their steps in ``step(...)``; an ``OSError`` leaving one remembers the innermost step it left, and
the command line's error handler names it (``error: publish: writing the published tree: PATH: No
space left on device``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_ATTRIBUTE = "cfl_step"


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Run the block as the step ``name``."""
    try:
        yield
    except OSError as e:
        if failed_step(e) is None:
            setattr(e, _ATTRIBUTE, name)
        raise


def failed_step(error: BaseException) -> str | None:
    """The innermost step ``error`` escaped from, if any."""
    found = getattr(error, _ATTRIBUTE, None)
    return found if isinstance(found, str) else None
