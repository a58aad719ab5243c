"""A real nginx serving a world's library with the configuration `host nginx` generates, and a
supplier's view of it (urllib3 with the supplier's certificate).

The configuration is regenerated and nginx reloaded (``nginx -s reload``) exactly as an operator
does after an import; `Host.reload` waits until the new workers answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import urllib3
from access.pki import Issued, issue, make_ca
from interop.conftest import free_port, nginx_binary

from conftest import require_system
from entitle.conftest import World
from factory import T0
from metadata_templates.naming import blob_name
from repo_tool.access.host_estate import EstateMaps
from repo_tool.access.host_nginx import NginxSettings, render_nginx_config
from repo_tool.cli.entitlements import estate_for_host
from repo_tool.state.repository import Repository

START_TIMEOUT = 15.0


@dataclass
class Host:
    """nginx on loopback; ``render`` writes the configuration, ``reload`` applies it."""

    world: World
    state: Path
    port: int
    settings: NginxSettings
    server_ca: Path
    credentials: dict[str, tuple[Path, Path]]
    process: subprocess.Popen[bytes] | None = None
    pools: dict[str, urllib3.HTTPSConnectionPool] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.state / "cfl.conf"

    @property
    def access_log(self) -> Path:
        return self.state / "cfl-access.log"

    @property
    def repo(self) -> Repository:
        return Repository.open(self.world.repo_path)

    def render(self, *, access: str = "estate", day: date | None = None) -> EstateMaps | None:
        repo = self.repo
        today = datetime.now(UTC).date()
        estate = estate_for_host(repo, day or today) if access == "estate" else None
        text = render_nginx_config(
            self.settings,
            repo.suppliers(),
            registry_sha256=repo.head.suppliers_sha256 or "",
            now=T0,
            estate=estate,
        )
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.conf)  # as atomic_write_bytes does: a reload never reads half a file
        return estate

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [nginx_binary(), "-p", str(self.state), "-e", str(self.state / "cfl-error.log"),
             "-c", str(self.conf), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def check(self) -> None:
        result = self._nginx("-t")
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        self.check()
        self.process = subprocess.Popen(
            [nginx_binary(), "-g", "daemon off;", "-p", str(self.state),
             "-e", str(self.state / "cfl-error.log"), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        log = (self.state / "cfl-error.log").read_text(errors="replace")
        pytest.fail(f"nginx did not start: {log}")

    def workers(self) -> set[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def reload(self) -> float:
        """``nginx -t``, then ``nginx -s reload``; returns once every worker of the old
        configuration has exited (new connections then reach only the new one), and the seconds
        that took."""
        self.check()
        old = self.workers()
        started = time.monotonic()
        result = self._nginx("-s", "reload")
        assert result.returncode == 0, result.stderr
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            current = self.workers()
            if current and not current & old:
                return time.monotonic() - started
            time.sleep(0.01)
        pytest.fail(f"old nginx workers {old & self.workers()} still running after the reload")

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def path(self, short: str) -> str:
        """The URL path of image ``short`` (``a2``, ``a3``, ``b5``)."""
        target = self.world.targets[short]
        role = "mfr-" + target[:4]
        sha = self.repo.role(role).signed.targets[target].hashes["sha256"]
        return "/targets/" + blob_name(target, sha)

    def pool(self, caller: str) -> urllib3.HTTPSConnectionPool:
        """A connection pool presenting ``caller``'s certificate (a new pool per caller)."""
        if caller not in self.pools:
            cert, key = self.credentials.get(caller, (None, None))
            self.pools[caller] = urllib3.HTTPSConnectionPool(
                "localhost", self.port, ca_certs=str(self.server_ca),
                cert_file=str(cert) if cert else None, key_file=str(key) if key else None,
                maxsize=4, retries=False, timeout=10.0,
            )  # fmt: skip
        return self.pools[caller]

    def get(self, caller: str, short: str) -> tuple[int, str]:
        response = self.pool(caller).request(
            "GET", self.path(short), headers={"Connection": "close"}, preload_content=True
        )
        body = response.data.decode(errors="replace") if response.status != 200 else ""
        return response.status, body.strip()


def start_host(world: World, tmp: Path, *, access: str = "estate") -> Host:
    require_system(nginx_binary())
    pki = tmp / "pki"
    pki.mkdir()
    server_ca = make_ca("entitle server CA")
    server: Issued = issue(server_ca, "localhost", server=True)
    (pki / "server-ca.pem").write_bytes(server_ca.cert_pem)
    tls_cert, tls_key = server.write(pki, "server")
    (pki / "supplier-ca.pem").write_bytes(world.supplier_ca.cert_pem)
    credentials = {e: c.write(pki, f"s-{e[-2:]}") for e, c in world.certificates.items()}
    state = tmp / "nginx"
    state.mkdir()
    port = free_port()
    settings = NginxSettings(
        server_name="localhost",
        listen=f"127.0.0.1:{port}",
        tls_cert=str(tls_cert),
        tls_key=str(tls_key),
        supplier_ca=str(pki / "supplier-ca.pem"),
        public_root=str(world.factory.out.resolve()),
        user="root root" if os.geteuid() == 0 else None,
    )
    host = Host(world, state, port, settings, pki / "server-ca.pem", credentials)
    host.render(access=access)
    host.start()
    return host
