"""A published library behind a real nginx configured by `cfl-repo host nginx`, on loopback.

One library per test session (ESME, GSME and PPMID images), a supplier CA and one organisation per kind of
caller, all made with `cryptography`; the registry is the repository's own (supplier add/revoke);
the configuration is the command's output, started with `nginx -p STATE -c FILE`.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from interop.conftest import free_port, nginx_binary

from access.pki import Issued, issue, make_ca
from conftest import require_system
from factory import T0, LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.naming import blob_name
from repo_tool.access.host_nginx import NginxSettings, render_nginx_config
from repo_tool.ops.suppliers import add_supplier, revoke_supplier

START_TIMEOUT = 10.0

# Caller -> (Entity ID, roles) for the registered ones.
REGISTERED = {
    "IS": ("00000000000000A1", ("IS",)),
    "GS": ("00000000000000A2", ("GS",)),
    "IS+GS": ("00000000000000A3", ("IS", "GS")),
    "DCC": ("00000000000000A4", ("DCC",)),
    "revoked": ("00000000000000A5", ("IS", "GS")),
    "expired": ("00000000000000A6", ("IS", "GS")),
}
CALLERS = (*REGISTERED, "other-CA", "manufacturer", "no-certificate")


@dataclass
class Served:
    """The running host and everything a test needs to talk to it."""

    base_url: str
    port: int
    factory: LibraryFactory
    state: Path
    conf: Path
    server_ca: Path
    credentials: dict[str, tuple[Path, Path]]
    paths: dict[str, str]
    entity: dict[str, str] = field(default_factory=dict)

    @property
    def access_log(self) -> Path:
        return self.state / "cfl-access.log"


def _wait(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    text = error_log.read_text(errors="replace") if error_log.exists() else "(none)"
    pytest.fail(f"nginx did not start within {START_TIMEOUT}s; error log:\n{text}")


def _library(tmp: Path) -> tuple[LibraryFactory, dict[str, str]]:
    images = {
        "ESME": make_image("121D", 2),
        "GSME": make_image("3F01", 5),
        "PPMID": make_image("121D", 7, body=b"ppmid firmware " * 50),
    }
    factory = LibraryFactory(tmp)
    factory.import_cpl(
        [
            make_entry("CPL-E2", fw="00000002", image_sha=mi_sha(images["ESME"])),
            make_entry(
                "CPL-G5", mfr="3F01", model="0B0C", fw="00000005",
                image_sha=mi_sha(images["GSME"]), device_type="GSME",
            ),
            make_entry(
                "CPL-P7", model="0C0D", fw="00000007",
                image_sha=mi_sha(images["PPMID"]), device_type="PPMID",
            ),
        ]
    )  # fmt: skip
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3F01")
    factory.publish()
    paths: dict[str, str] = {}
    for kind, entry, mfr in (
        ("ESME", "CPL-E2", "121D"),
        ("GSME", "CPL-G5", "3F01"),
        ("PPMID", "CPL-P7", "121D"),
    ):
        result = factory.deposit(images[kind], [entry], mfr=mfr)
        assert result.target is not None
        paths[kind] = result.target
    return factory, paths


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    binary = nginx_binary()
    require_system(binary)
    tmp = tmp_path_factory.mktemp("access")
    factory, image_targets = _library(tmp)
    pki = tmp / "pki"
    server_ca = make_ca("CFL test server CA")
    server = issue(server_ca, "localhost", server=True)
    server_ca_path = pki / "server-ca.pem"
    pki.mkdir()
    server_ca_path.write_bytes(server_ca.cert_pem)
    tls_cert, tls_key = server.write(pki, "server")
    supplier_ca = make_ca()
    supplier_ca_path = pki / "supplier-ca.pem"
    supplier_ca_path.write_bytes(supplier_ca.cert_pem)

    issued: dict[str, Issued] = {}
    for caller in REGISTERED:
        issued[caller] = issue(supplier_ca, f"{caller} Energy")
    # Registered while valid; expires before the requests are made.
    issued["expired"] = issue(
        supplier_ca,
        "Expired Energy",
        not_before=T0 - timedelta(days=2),
        valid_for=timedelta(days=1, minutes=30),
    )
    issued["other-CA"] = issue(make_ca("Somebody else's CA"), "Mallory")
    issued["manufacturer"] = issue(supplier_ca, "Maker 121D")
    repo = factory.repo
    with repo.locked():
        for caller, (entity, roles) in REGISTERED.items():
            add_supplier(
                repo,
                entity=entity,
                name=f"{caller} Energy",
                roles=roles,
                certificate=issued[caller].cert_pem,
                now=T0 - timedelta(days=1) if caller == "expired" else factory.tick(),
                ca_pem=supplier_ca.cert_pem,
            )
        revoke_supplier(
            repo, entity=REGISTERED["revoked"][0], reason="left the market", now=factory.tick()
        )
    factory.publish()
    site = factory.out / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text("<!doctype html><title>CFL</title>")

    credentials = {
        caller: cert.write(pki, caller.replace("+", "-")) for caller, cert in issued.items()
    }
    targets = factory.repo.targets().signed.targets
    cpl = targets["cfl/cpl.json"]
    paths = {
        "timestamp": "metadata/timestamp.json",
        "role": f"metadata/{factory.repo.head.roles['mfr-121D']}.mfr-121D.json",
        "CPL": f"targets/{blob_name('cfl/cpl.json', cpl.hashes['sha256'])}",
        "site": "site/index.html",
    }
    for kind, target in image_targets.items():
        sha = factory.repo.role(f"mfr-{target[:4]}").signed.targets[target].hashes["sha256"]
        paths[kind] = f"targets/{blob_name(target, sha)}"

    state = tmp / "nginx"
    state.mkdir()
    (state / "outcomes-inbox").mkdir()  # issue 24's upload folder (test_host_outcome_uploads.py)
    conf = state / "cfl.conf"
    for _attempt in range(5):
        port = free_port()
        settings = NginxSettings(
            server_name="localhost",
            listen=f"127.0.0.1:{port}",
            tls_cert=str(tls_cert),
            tls_key=str(tls_key),
            supplier_ca=str(supplier_ca_path),
            public_root=str(factory.out.resolve()),
            user="root root" if _is_root() else None,
            outcomes_dir=str((state / "outcomes-inbox").resolve()),
        )
        conf.write_text(
            render_nginx_config(
                settings, repo.suppliers(), registry_sha256=repo.head.suppliers_sha256 or "", now=T0
            )
        )
        check = subprocess.run(
            [binary, "-t", "-p", str(state), "-e", str(state / "cfl-error.log"), "-c", str(conf)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen(
            [binary, "-g", "daemon off;", "-p", str(state), "-e", str(state / "cfl-error.log"), "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(port, process, state / "cfl-error.log")
        except BaseException:
            if "Address already in use" in (state / "cfl-error.log").read_text(errors="replace"):
                continue
            raise
        break
    else:
        pytest.fail("no free port for nginx")
    try:
        yield Served(
            base_url=f"https://localhost:{port}/",
            port=port,
            factory=factory,
            state=state,
            conf=conf,
            server_ca=server_ca_path,
            credentials=credentials,
            paths=paths,
            entity={caller: entity for caller, (entity, _) in REGISTERED.items()},
        )
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def client_context(served: Served, caller: str) -> ssl.SSLContext:
    """A TLS context trusting the test server, presenting ``caller``'s certificate (if it has one)."""
    context = ssl.create_default_context(cafile=str(served.server_ca))
    if caller in served.credentials:
        cert, key = served.credentials[caller]
        context.load_cert_chain(str(cert), str(key))
    return context
