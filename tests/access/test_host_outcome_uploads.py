"""The host's upload location for delivery-outcome reports (issue 24) on a real nginx: PUT only, by
a registered active organisation, under its own Entity ID, once per period, within the size cap;
nothing is read back; path tricks land nowhere."""

from __future__ import annotations

import http.client

import pytest

from access.conftest import Served, client_context
from metadata_templates.outcomes import MAX_REPORT_BYTES, report_file_name, upload_path


def request(
    served: Served, caller: str, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection(
        "localhost", served.port, context=client_context(served, caller), timeout=10
    )
    try:
        connection.request(method, path, body=body if method == "PUT" else None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def inbox(served: Served) -> set[str]:
    return {p.name for p in (served.state / "outcomes-inbox").iterdir()}


@pytest.mark.system
def test_a_supplier_uploads_its_own_report_once(served: Served) -> None:
    entity = served.entity["IS"]
    path = upload_path(entity, "2026-10")
    status, body = request(served, "IS", "PUT", path, b'{"first": true}')
    assert status in (201, 204), body
    name = report_file_name(entity, "2026-10")
    assert name in inbox(served)
    status, body = request(served, "IS", "PUT", path, b'{"second": true}')
    assert status == 409 and b"received already" in body
    assert (served.state / "outcomes-inbox" / name).read_bytes() == b'{"first": true}'
    for method in ("GET", "DELETE", "HEAD"):
        status, _ = request(served, "IS", method, path)
        assert status == 405, method


@pytest.mark.system
@pytest.mark.parametrize(
    ("caller", "reason"),
    [
        ("no-certificate", b"no client certificate"),
        ("other-CA", b"not issued by the CFL supplier CA"),
        ("manufacturer", b"not registered"),
        ("revoked", b"revoked"),
        ("expired", b"expired"),
    ],
)
def test_only_registered_active_organisations_may_upload(
    served: Served, caller: str, reason: bytes
) -> None:
    before = inbox(served)
    entity = served.entity.get(caller, "00000000000000AA")
    status, body = request(served, caller, "PUT", upload_path(entity, "2026-09"), b"{}")
    assert status == 403 and reason in body, body
    assert inbox(served) == before


@pytest.mark.system
def test_a_supplier_cannot_upload_under_another_entity_id(served: Served) -> None:
    before = inbox(served)
    status, body = request(served, "IS", "PUT", upload_path(served.entity["GS"], "2026-08"), b"{}")
    assert status == 403 and b"your own Entity ID" in body
    assert inbox(served) == before


@pytest.mark.system
def test_an_oversized_report_is_refused(served: Served) -> None:
    before = inbox(served)
    path = upload_path(served.entity["GS"], "2026-07")
    status, _ = request(served, "GS", "PUT", path, b"x" * (MAX_REPORT_BYTES + 1))
    assert status == 413
    assert inbox(served) == before


@pytest.mark.system
@pytest.mark.parametrize(
    "path",
    [
        "/outcomes/upload/../metadata/timestamp.json",
        "/outcomes/upload/%2e%2e%2fmetadata%2ftimestamp.json",
        "/outcomes/upload/{e}.2026-06.dsse.json/x",
        "/outcomes/upload/{e}.2026-06.json",
        "/outcomes/upload/{e}.2026-6.dsse.json",
        "/outcomes/upload/{e}%2e2026-06.dsse.json%00",
        "/outcomes/upload/",
        "/outcomes/",
    ],
)
def test_path_tricks_land_nowhere(served: Served, path: str) -> None:
    before = inbox(served)
    timestamp = (served.factory.out / "metadata" / "timestamp.json").read_bytes()
    status, _ = request(served, "IS+GS", "PUT", path.format(e=served.entity["IS+GS"]), b"{}")
    assert status in (400, 403, 404, 405), status
    assert inbox(served) == before
    assert (served.factory.out / "metadata" / "timestamp.json").read_bytes() == timestamp
