"""The kill -9 loops' one way to kill a command at its K-th commit point.

strace injects SIGKILL at the K-th rename or fsync (per thread) a command makes: every atomic write
and every commit ends in a rename, and the fsyncs after them are the windows between a commit and
what follows it. strace reports the tracee's death by signal as its own exit status 128 + 9.
"""

from __future__ import annotations

import os
import signal

KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)


def strace_killing_at(point: int) -> list[str]:
    """The strace prefix that runs a command and kills it at its ``point``-th rename or fsync."""
    calls = "rename,renameat,renameat2,fsync,fdatasync"
    return [
        "strace",
        "-f",
        "-o",
        os.devnull,
        "-e",
        f"trace={calls}",
        "-e",
        f"inject={calls}:signal=KILL:when={point}",
    ]
