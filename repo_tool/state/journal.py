"""The event log ``events.jsonl``: one JSON object a line, appended durably, repaired after a crash.

Every state change is committed by replacing ``state/head.json``; the head carries the events of its
commit, each with a sequence number. The log is brought up to date from the head whenever the
repository is locked, so a kill between the commit and the append only delays the line, and a line
is never written for a change that was not committed. A kill in the middle of an append leaves a torn
last line; it is cut off before the next append, and the head still holds the event, so nothing is
lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from metadata_templates.atomic import errors_name, fsync_dir

_TAIL = 1 << 16  # enough for the last line of any event this tool writes


def json_line(event: dict[str, Any]) -> bytes:
    """One event as the log stores it: compact, sorted keys, one line."""
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def repair_tail(path: Path) -> int:
    """Cut a torn last line off the log and return the sequence number of the last commit it
    records (0 if none; lines written before sequence numbers existed count as 0)."""
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - _TAIL)
        handle.seek(start)
        tail = handle.read()
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = start + cut + 1 if cut >= 0 else start
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            tail = tail[: keep - start]
        for line in reversed(tail.splitlines()):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            # A line that records no commit (a rejection) says which commit it followed.
            for key in ("seq", "after_seq"):
                if isinstance(event.get(key), int):
                    return int(event[key])
            return 0
    return 0


def append(path: Path, events: Iterable[dict[str, Any]]) -> None:
    """Append events and make them durable before returning."""
    data = b"".join(json_line(event) for event in events)
    if not data:
        return
    created = not path.exists()
    with errors_name(path), path.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_dir(path.parent)
