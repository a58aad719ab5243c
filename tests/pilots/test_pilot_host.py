"""A pilot image behind a real nginx configured by `cfl-repo host nginx` (issue 22), and the audit of
what it served.

Before the release only the pilot supplier gets the image; every other registered supplier gets
403 "this image is in a pilot and not yet released" (a supplier the registry refuses anyway keeps
the registry's reason). A host whose configuration was not regenerated after the pilot's ingest
serves it, and the audit flags exactly those downloads. After the provider's release and a
regenerated configuration, everyone entitled gets it and the audit flags nothing.

nginx writes its access log with the real clock, so this test keeps the provider on the real clock
too and releases the image early (`cfl-repo release`); the date itself (refresh on the release day)
is driven with injected time through the same generator in `test_generator_follows_the_date`.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from access.conftest import _wait
from access.pki import issue, make_ca
from interop.conftest import free_port, nginx_binary

from conftest import require_system
from metadata_templates.naming import blob_name
from pilots.pilot_library import (
    GAS,
    IMAGES,
    OTHER,
    PILOT,
    REVOKED,
    PilotLibrary,
    build_pilot_library,
)
from repo_tool.access.host_nginx import NginxSettings, render_nginx_config
from repo_tool.access.host_pilots import REFUSAL, embargo_of, render_pilot_rules
from repo_tool.ops.refresh import refresh
from repo_tool.state.pilots import embargoed

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


@dataclass
class Host:
    library: PilotLibrary
    port: int
    state: Path
    conf: Path
    pki: Path
    server_ca: Path
    process: subprocess.Popen[bytes]
    args: list[str]

    @property
    def access_log(self) -> Path:
        return self.state / "cfl-access.log"

    def blob(self, target: str) -> str:
        role = self.library.factory.repo.role("mfr-121D").signed
        return "/targets/" + blob_name(target, role.targets[target].hashes["sha256"])

    def get(self, caller: str | None, path: str) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if caller is not None:
            context.load_cert_chain(
                str(self.pki / f"{caller}.crt.pem"), str(self.pki / f"{caller}.key.pem")
            )
        connection = http.client.HTTPSConnection(
            "localhost", self.port, context=context, timeout=10
        )
        try:
            connection.request("GET", path, headers={"Accept-Encoding": "identity"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def regenerate(self) -> subprocess.CompletedProcess[str]:
        """`cfl-repo host nginx` as the operator runs it, then a reload."""
        done = _cfl_repo(self.library, *self.args)
        assert done.returncode == 0, done.stderr
        self.reload()
        return done

    def reload(self) -> None:
        check = subprocess.run(
            [nginx_binary(), "-t", "-p", str(self.state), "-e", str(self.state / "cfl-error.log"), "-c", str(self.conf)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        self.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # the master starts new workers; old ones finish their (no) requests


def _cfl_repo(library: PilotLibrary, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(library.repo_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    binary = nginx_binary()
    require_system(binary)
    library = build_pilot_library(tmp_path / "lib")
    pki = tmp_path / "pki"
    server_ca = make_ca("CFL test server CA", now=library.factory.now)
    tls_cert, tls_key = issue(server_ca, "localhost", server=True, now=library.factory.now).write(
        pki, "server"
    )
    (pki / "server-ca.pem").write_bytes(server_ca.cert_pem)
    (pki / "supplier-ca.pem").write_bytes(library.ca.cert_pem)
    for entity, issued in library.certificates.items():
        issued.write(pki, entity)
    state = tmp_path / "nginx"
    state.mkdir()
    conf = state / "cfl.conf"
    port = free_port()
    args = [
        "host", "nginx", "--server-name", "localhost", "--listen", f"127.0.0.1:{port}",
        "--tls-cert", str(tls_cert), "--tls-key", str(tls_key),
        "--supplier-ca", str(pki / "supplier-ca.pem"), "--public-root", str(library.factory.out),
        "--out", str(conf), "--json",
    ]  # fmt: skip
    if os.geteuid() == 0:
        args += ["--user", "root root"]
    first = _cfl_repo(library, *args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["pilots"] == [library.pilot_target]
    assert "1 pilot image(s) for their pilot suppliers only" in first.stderr
    process = subprocess.Popen(
        [binary, "-g", "daemon off;", "-p", str(state), "-e", str(state / "cfl-error.log"), "-c", str(conf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    running = Host(library, port, state, conf, pki, pki / "server-ca.pem", process, args)
    try:
        _wait(port, process, state / "cfl-error.log")
        yield running
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _audit(host: Host) -> list[dict[str, object]]:
    done = _cfl_repo(host.library, "audit", str(host.access_log), "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["downloads"])


def _findings(
    downloads: list[dict[str, object]], entity: str, target: str, status: int
) -> list[object]:
    found = [
        d
        for d in downloads
        if d["entity_id"] == entity and d["target"] == target and d["status"] == status
    ]
    assert found, (entity, target, status, downloads)
    return list(found[-1]["findings"])  # type: ignore[arg-type]


@pytest.mark.system
def test_pilot_reaches_only_its_supplier_until_released_and_the_audit_agrees(host: Host) -> None:
    library = host.library
    pilot, public = host.blob(library.pilot_target), host.blob(library.public_target)

    # Before the release: the pilot supplier only.
    assert host.get(PILOT, pilot) == (200, IMAGES["pilot"])
    assert host.get(OTHER, pilot) == (403, f"{REFUSAL}\n".encode())
    status, body = host.get(GAS, pilot)  # the registry's refusal comes first
    assert status == 403 and b"not covered by the organisation's User Roles" in body
    status, body = host.get(REVOKED, pilot)
    assert status == 403 and b"registration revoked" in body
    status, body = host.get(None, pilot)
    assert status == 403 and b"no client certificate" in body
    assert host.get(OTHER, public) == (200, IMAGES["public"])
    downloads = _audit(host)
    assert _findings(downloads, PILOT, library.pilot_target, 200) == []
    assert _findings(downloads, OTHER, library.pilot_target, 403) == ["pilot-not-released"]
    assert _findings(downloads, OTHER, library.public_target, 200) == []
    assert "pilot-not-released" in _findings(downloads, GAS, library.pilot_target, 403)

    # A host left with a configuration from before the pilot's ingest serves it: the audit says so.
    settings = NginxSettings(
        server_name="localhost", listen=f"127.0.0.1:{host.port}",
        tls_cert=str(host.pki / "server.crt.pem"), tls_key=str(host.pki / "server.key.pem"),
        supplier_ca=str(host.pki / "supplier-ca.pem"), public_root=str(library.factory.out),
        user="root root" if os.geteuid() == 0 else None,
    )  # fmt: skip
    repo = library.factory.repo
    stale = render_nginx_config(
        settings,
        repo.suppliers(),
        registry_sha256=repo.head.suppliers_sha256 or "",
        now=library.factory.now,
    )
    assert REFUSAL not in stale
    host.conf.write_text(stale)
    host.reload()
    assert host.get(OTHER, pilot) == (200, IMAGES["pilot"])
    assert _findings(_audit(host), OTHER, library.pilot_target, 200) == ["pilot-not-released"]

    # The provider releases it; the regenerated host serves everyone entitled; nothing is flagged.
    host.regenerate()
    assert host.get(OTHER, pilot) == (403, f"{REFUSAL}\n".encode())
    released = _cfl_repo(library, "release", library.pilot_target, "--reason", "pilot done")
    assert released.returncode == 0, released.stderr
    assert _cfl_repo(library, "publish", "--no-site").returncode == 0
    regenerated = host.regenerate()
    assert "pilots" not in json.loads(regenerated.stdout)
    assert REFUSAL not in host.conf.read_text()
    assert host.get(OTHER, pilot) == (200, IMAGES["pilot"])
    assert host.get(PILOT, pilot) == (200, IMAGES["pilot"])
    status, body = host.get(GAS, pilot)
    assert status == 403 and b"not covered" in body
    downloads = _audit(host)
    assert _findings(downloads, OTHER, library.pilot_target, 200) == []
    assert _findings(downloads, GAS, library.pilot_target, 403) == ["outside-role"]


@pytest.mark.system
@pytest.mark.parametrize(
    "trick",
    [
        lambda p: p.replace("/targets/", "//targets/"),
        lambda p: p.replace("/121D/", "/121D//"),
        lambda p: p.replace("/121D/", "/121D/./"),
        lambda p: p.replace("/121D/", "/121D/../121D/"),
        lambda p: p.replace("/121D/", "/%31%32%31%44/"),
        lambda p: p.replace(".ESME", "%2EESME"),
        lambda p: p + "?download=1",
        lambda p: p.replace("/targets/", "/targets/cfl/../"),
    ],
    ids=[
        "double-slash",
        "slash-in-prefix",
        "dot-segment",
        "dot-dot",
        "encoded-prefix",
        "encoded-dot",
        "query",
        "via-public-location",
    ],
)
def test_no_spelling_of_the_path_gets_past_the_embargo(host: Host, trick: object) -> None:
    path = trick(host.blob(host.library.pilot_target))  # type: ignore[operator]
    status, body = host.get(OTHER, path)
    assert status != 200, (path, body[:80])
    assert host.get(PILOT, host.blob(host.library.pilot_target))[0] == 200


def test_generator_follows_the_date(tmp_path: Path) -> None:
    """The host's deny list on injected time: before the date, after a hold, after the refresh."""
    library = build_pilot_library(tmp_path)
    repo = library.factory.repo
    before = embargoed(repo, library.factory.now)
    assert [(i.target, i.terms.suppliers) for i in before] == [(library.pilot_target, (PILOT,))]
    rules = render_pilot_rules(
        [
            embargo_of(i.target, i.sha256, i.terms.suppliers, i.terms.release_at, i.notes)
            for i in before
        ]
    )
    assert f":{PILOT}:" in rules and REFUSAL in rules
    assert embargoed(repo, library.release_moment() - timedelta(seconds=1)) != []
    library.travel(library.release_moment() + timedelta(minutes=1))
    # Until the refresh records it, the date alone already frees the image for the generator.
    assert embargoed(repo, library.factory.now) == []
    with repo.locked():
        refresh(repo, now=library.factory.tick())
    assert embargoed(repo, library.factory.now) == []
    assert repo.head.pilots == {}


def test_rules_are_rendered_only_with_a_pilot_and_refuse_odd_values() -> None:
    assert render_pilot_rules([]) == ""
    notes = ("121D/ESME-0001-00000003-0123456789abcdef.ota.notes.jwe", "cd" * 32)
    embargo = embargo_of(
        "121D/ESME-0001-00000003-0123456789abcdef.ota",
        "ab" * 32,
        [PILOT, OTHER],
        "2026-09-01",
        notes,
    )
    rules = render_pilot_rules([embargo])
    assert (
        f'"~^/targets/121D/{"ab" * 32}\\.ESME\\-0001\\-00000003\\-0123456789abcdef\\.ota$" ":{PILOT}:{OTHER}:";'
        in rules
    )
    assert f"/targets/121D/{'cd' * 32}\\.ESME" in rules  # its release notes too
    for bad in (
        embargo_of("x", "ab" * 32, ['A1" ; }'], "2026-09-01", None),
        embargo_of("x", "ab" * 32, [], "2026-09-01", None),
    ):
        with pytest.raises(ValueError):
            render_pilot_rules([bad])
