"""`cfl-repo host nginx` on a real nginx: the access matrix of the policy, caching, the log."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from access.conftest import CALLERS, Served, client_context

RESOURCES = ("timestamp", "role", "CPL", "ESME", "GSME", "PPMID", "site")
PUBLIC = {"timestamp", "role", "CPL", "site"}
ENTITLED = {
    "IS": {"ESME", "PPMID"},
    "GS": {"GSME", "PPMID"},
    "IS+GS": {"ESME", "GSME", "PPMID"},
    "DCC": set(),
}
REASONS = {
    "revoked": "registration revoked",
    "expired": "certificate expired",
    "other-CA": "not issued by the CFL supplier CA",
    "manufacturer": "not registered",
    "no-certificate": "no client certificate",
    "IS": "not covered",
    "GS": "not covered",
    "IS+GS": "not covered",
    "DCC": "not covered",
}


def get(served: Served, caller: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection(
        "localhost", served.port, context=client_context(served, caller), timeout=10
    )
    try:
        connection.request("GET", "/" + path, headers={"Accept-Encoding": "identity"})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def expected_status(caller: str, resource: str) -> int:
    if resource in PUBLIC:
        return 200
    return 200 if resource in ENTITLED.get(caller, set()) else 403


@pytest.mark.system
@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("caller", CALLERS)
def test_access_matrix(served: Served, caller: str, resource: str) -> None:
    status, headers, body = get(served, caller, served.paths[resource])
    assert status == expected_status(caller, resource), body
    if status == 403:
        assert headers["content-type"].startswith("text/plain")
        assert REASONS[caller] in body.decode()
        assert headers["cache-control"] == "no-store"
    elif resource in ("ESME", "GSME", "PPMID"):
        assert headers["cache-control"] == "private, max-age=31536000, immutable"


@pytest.mark.system
@pytest.mark.parametrize(
    ("path", "cache_control"),
    [
        ("metadata/timestamp.json", "no-cache"),
        ("metadata/1.root.json", "public, max-age=31536000, immutable"),
        ("metadata/999.root.json", "no-store"),
        ("site/index.html", "no-cache"),
        ("log/checkpoint", "no-cache"),
        # Every 404 is no-store, whichever location answers it (docs/hosting.md).
        ("site/no-such-page.html", "no-store"),
        ("log/tile/0/999.p/3", "no-store"),
        ("metadata/.cfl-publish.lock", "no-store"),
        ("state/head.json", "no-store"),
    ],
)
def test_caching_rules(served: Served, path: str, cache_control: str) -> None:
    status, headers, _ = get(served, "no-certificate", path)
    assert headers["cache-control"] == cache_control, (status, headers)


@pytest.mark.system
def test_dotfiles_and_other_paths_are_not_served(served: Served) -> None:
    (served.factory.out / "targets" / ".secret").write_text("x")
    assert get(served, "IS", "targets/.secret")[0] == 404
    assert get(served, "IS", "state/head.json")[0] == 404
    assert get(served, "IS", "")[0] == 302


@pytest.mark.system
def test_json_is_gzipped(served: Served) -> None:
    connection = http.client.HTTPSConnection(
        "localhost", served.port, context=client_context(served, "IS"), timeout=10
    )
    connection.request("GET", "/metadata/1.root.json", headers={"Accept-Encoding": "gzip"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.getheader("Content-Encoding") == "gzip"


@pytest.mark.system
@pytest.mark.parametrize(
    "name", ["page.html", "search/w-ab.json", "data/images-0.json", "feed.xml"]
)
def test_the_site_is_served_compressed(served: Served, name: str) -> None:
    """The site's pages and its search and data JSON: the first search's budget counts on it."""
    page = served.factory.out / "site" / name
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text('{"words":{"abc":[-1000]}}\n' * 200)
    connection = http.client.HTTPSConnection(
        "localhost", served.port, context=client_context(served, "no-certificate"), timeout=10
    )
    connection.request("GET", f"/site/{name}", headers={"Accept-Encoding": "gzip"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert len(body) < page.stat().st_size // 10


@pytest.mark.system
@pytest.mark.parametrize("name", [".cfl-site-state.json", ".cfl-site-inputs", ".cfl-site-files"])
def test_the_sites_build_records_are_not_served(served: Served, name: str) -> None:
    (served.factory.out / "site" / name).write_text("{}")
    assert get(served, "no-certificate", f"site/{name}")[0] == 404


@pytest.mark.system
def test_hostile_path_cannot_forge_a_log_line(served: Served) -> None:
    forged = '{"format":"cfl-access-1","entity_id":"00000000000000A1","status":200}'
    path = "targets/121D/x%22%0A" + forged.replace('"', "%22").replace(",", "%2C")
    assert get(served, "no-certificate", path)[0] in (403, 404)
    deadline = time.monotonic() + 10  # nginx logs a request after answering it
    while b'cfl-access-1\\"' not in served.access_log.read_bytes():
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    lines = served.access_log.read_bytes().splitlines()
    for line in lines:
        doc = json.loads(line)  # every line is one whole JSON object
        assert doc["format"] == "cfl-access-1"
    assert any(forged in json.loads(line)["path"] for line in lines)


def _aliases(blob: str) -> list[str]:
    """Other spellings of one image's path that a caller might try to slip past the rules."""
    mfr, name = blob.removeprefix("targets/").split("/", 1)
    return [
        f"targets/cfl/../{mfr}/{name}",  # through the public prefix
        f"targets/cfl/%2E%2E/{mfr}/{name}",  # the same, percent-encoded
        f"targets//{mfr}/{name}",  # doubled slash
        f"site/../targets/{mfr}/{name}",  # through the public site
        f"targets/{mfr}/{name}?type=PPMID-0001-",  # a query naming another type
        f"targets/{mfr}/./{name}",
        f"targets/{mfr}/{name}%00.json",
    ]


@pytest.mark.system
@pytest.mark.parametrize("caller", ["no-certificate", "GS", "manufacturer"])
@pytest.mark.parametrize("alias", range(7))
def test_no_spelling_of_an_image_path_bypasses_the_rules(
    served: Served, caller: str, alias: int
) -> None:
    path = _aliases(served.paths["ESME"])[alias]
    status, _, body = get(served, caller, path)
    assert status in (400, 403, 404), (path, status, body[:80])
    assert status != 200


@pytest.mark.system
def test_a_range_request_is_refused_too(served: Served) -> None:
    connection = http.client.HTTPSConnection(
        "localhost", served.port, context=client_context(served, "GS"), timeout=10
    )
    connection.request("GET", "/" + served.paths["ESME"], headers={"Range": "bytes=0-9"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 403


ADVISORY = "targets/121D/" + "0" * 64 + ".CFL-121D-2026-0001.r1.advisory.json"


@pytest.mark.system
@pytest.mark.parametrize("caller", CALLERS)
def test_advisories_are_public_and_their_detail_goes_to_registered_organisations(
    served: Served, caller: str
) -> None:
    # No advisory is published in this library: an allowed request finds nothing (404), a refused
    # one is refused before the file is looked for (403 with its reason). Issue 23: the generated
    # configuration used to refuse both with "not an image of a known device type".
    status, _headers, body = get(served, caller, ADVISORY)
    assert status == 404, body
    status, headers, body = get(served, caller, ADVISORY + ".detail.jwe")
    registered = caller in ENTITLED  # IS, GS, IS+GS, DCC: registered and active
    assert status == (404 if registered else 403), body
    if status == 403:
        assert headers["content-type"].startswith("text/plain")
        assert REASONS[caller].split(":")[0] in body.decode() or "advisory detail" in body.decode()
