"""The transport's PUT for `cfl outcomes submit --upload` (issue 24): the same credentials as every
download, never a token over plain http, the host's status and reason handed back; and a damaged
ledger is refused, never reset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.outcomes.ledger import ledger_path, load_ledger
from client.trust.transport import CflFetcher, TransportError, TransportSettings
from metadata_templates.errors import VerificationError


class _Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self._body = status, body
        self.closed = False

    def read(self, n: int) -> bytes:
        return self._body[:n]

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class _Pool:
    def __init__(self, status: int, body: bytes = b"") -> None:
        self.status, self.body = status, body
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> _Response:
        self.requests.append((method, url, kwargs))
        return _Response(self.status, self.body)

    def clear(self) -> None:
        pass


def _fetcher(tmp: Path, pool: _Pool) -> CflFetcher:
    token = tmp / "token"
    token.write_text("s3cret\n")
    return CflFetcher(TransportSettings(token_file=token), pool=pool)  # type: ignore[arg-type]


def test_put_sends_the_body_with_the_token_and_returns_status_and_reason(tmp_path: Path) -> None:
    pool = _Pool(409, b"report exists\x1b[31m")
    status, reason = _fetcher(tmp_path, pool).put(
        "https://cfl.example/outcomes/upload/x.dsse.json", b"{}", "application/json"
    )
    assert (status, reason) == (409, "report exists [31m")  # escape characters dropped
    ((method, url, kwargs),) = pool.requests
    assert method == "PUT" and url.endswith("/x.dsse.json") and kwargs["body"] == b"{}"
    assert kwargs["headers"]["Authorization"] == "Bearer s3cret"
    assert kwargs["headers"]["Content-Type"] == "application/json"
    assert kwargs["redirect"] is False  # a redirect must not carry the report elsewhere


def test_put_refuses_a_token_over_plain_http_and_a_file_url(tmp_path: Path) -> None:
    pool = _Pool(201)
    fetcher = _fetcher(tmp_path, pool)
    with pytest.raises(TransportError, match="plain http"):
        fetcher.put("http://cfl.example/outcomes/upload/x", b"{}", "application/json")
    with pytest.raises(TransportError, match="cannot take an upload"):
        fetcher.put("file:///tmp/x", b"{}", "application/json")
    assert pool.requests == []


def test_a_damaged_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = ledger_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"schema_version": 1, "images": {"x": {"devices": 7}}}')
    with pytest.raises(VerificationError, match="damaged"):
        load_ledger(tmp_path)
    assert path.read_bytes().startswith(b'{"schema_version": 1')
