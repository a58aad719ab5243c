"""A hostile or confused environment around the superseded-metadata expiry
(repo_tool/publish/superseded.py, repo_tool/publish/folder.py): damaged ledgers, odd names in
metadata/, a ledger that lies about the clock. Nothing here may fail a publish, and nothing a
client may still read may go."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from repo_tool.publish.superseded import Ledger

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [
        # a time without a zone after one with a zone (and the other way round)
        b'{"floor": null, "served": [["2026-06-01T12:00:00", 4], ["2026-06-01T13:00:00+00:00", 5]]}',
        b'{"floor": null, "served": [["2026-06-01T12:00:00+00:00", 4], ["2026-06-01T13:00:00", 5]]}',
        b'{"floor": null, "served": [["2026-06-01T12:00:00+00:00", 1e400]]}',
    ],
)
def test_a_ledger_that_does_not_read_never_raises(data: bytes) -> None:
    assert Ledger.from_bytes(data) == Ledger()
