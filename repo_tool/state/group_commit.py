"""Group commit (issue 26): many commits made durable by one sync and one head write.

Inside ``group_commits(repo)`` every ``repo.commit`` is held: its head becomes the repository's
in-memory head, so the next operation reads and builds on it exactly as it would on a committed one
(a manufacturer's next role version, the index with the images just accepted, the next targets
version), and its events are kept in order. The files those operations write (blobs, staged role
versions, index documents, rejection reports) skip their own fsyncs (metadata_templates/atomic.py
``deferred_sync``). ``flush`` then commits them all:

1. one ``syncfs`` (or an fsync of each file written) makes every held operation's files durable;
2. the held events go into the transparency log in one append, and one ``state/head.json`` replace
   (fsynced) commits the last held head with all of them, numbered in order;
3. the events are appended to ``events.jsonl`` (one fsync), then the lines of the group's
   rejections, each naming the commit it follows (``after_seq``).

Step 2's rename is the only commit point, as for a single commit. A kill -9 (or a power cut) before
it leaves the committed head as it was: every file the group wrote is unreferenced, and running the
same command again writes them again (blobs are content-addressed and checked, orphaned role
versions are replaced, see ``Repository.write_staged``). After it, the whole group is committed and
the same command reports each deposit "already accepted". A caller reports a held operation's result
only after the flush that committed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from metadata_templates.atomic import DeferredSync, deferred_sync, undeferred
from repo_tool.state import journal
from repo_tool.state.head import Head
from repo_tool.state.repository import Repository


class GroupCommit:
    """The commits held since the last flush (see the module doc)."""

    def __init__(self, repo: Repository, pending: DeferredSync) -> None:
        self._repo = repo
        self._pending = pending
        self._head: Head | None = None
        self.events: list[dict[str, Any]] = []
        self._lines: list[dict[str, Any]] = []  # log lines that record no commit (rejections)

    def log_after_commit(self, line: dict[str, Any]) -> None:
        """A line that records no commit (a rejection), appended to ``events.jsonl`` after the
        group's commit with ``after_seq`` naming it: the rejection was judged after the held
        deposits before it, so it follows their commit in the log, as one commit each would."""
        self._lines.append(line)

    def hold(self, head: Head, events: list[dict[str, Any]]) -> None:
        """What ``Repository.commit`` does inside the group: the head is current from now on (in
        memory only), the events wait for the flush."""
        self._head = head
        self.events.extend(events)
        self._repo._head = head

    def flush(self) -> None:
        """Commit everything held so far, durably (see the module doc); a no-op when nothing is."""
        if self._head is None:
            self._pending.flush()  # nothing held: whatever else the block wrote, made durable
        else:
            head, events = self._head, self.events
            self._pending.flush()
            with undeferred():
                self._repo._commit(head, events)
            self._head, self.events = None, []
        if self._lines:
            seq = self._repo.head.event_seq
            lines = [{**line, "after_seq": seq} for line in self._lines]
            journal.append(self._repo.path / "events.jsonl", lines)
            self._lines = []


@contextlib.contextmanager
def group_commits(repo: Repository) -> Iterator[GroupCommit]:
    """Hold the repository's commits in the block until ``GroupCommit.flush``; the caller holds the
    repository lock. Leaving the block without a flush (an error) drops what is held: the
    repository reads its committed head again and nothing held was ever reported."""
    if repo.group is not None:
        raise RuntimeError("group commits do not nest")
    with deferred_sync() as pending:
        group = GroupCommit(repo, pending)
        repo.group = group
        try:
            yield group
        finally:
            repo.group = None
            if group.events:
                repo.forget_head()
