"""`cfl-repo host nginx` as a command: bad settings are refused, the output passes `nginx -t`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from interop.conftest import nginx_binary

from access.pki import issue, make_ca
from conftest import require_system
from factory import T0
from metadata_templates.errors import ConfigurationError
from metadata_templates.suppliers import SupplierRegistry
from repo_tool.access.host_nginx import NginxSettings, check_settings, render_nginx_config

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
GOOD = NginxSettings(
    server_name="firmware.example.org",
    listen="0.0.0.0:443",
    tls_cert="/etc/cfl/server.crt.pem",
    tls_key="/etc/cfl/server.key.pem",
    supplier_ca="/etc/cfl/supplier-ca.pem",
    public_root="/srv/cfl/public",
)

BAD = {
    "server-name-injection": ({"server_name": "a; include /etc/passwd"}, "--server-name"),
    "server-name-brace": ({"server_name": "a}"}, "--server-name"),
    "listen-no-port": ({"listen": "0.0.0.0"}, "--listen"),
    "listen-port-zero": ({"listen": "0.0.0.0:0"}, "--listen"),
    "listen-junk-host": ({"listen": "a b:443"}, "--listen"),
    "cert-with-quote": ({"tls_cert": '/x"; ssl_verify_client off; #'}, "--tls-cert"),
    "root-with-newline": ({"public_root": "/srv/cfl\n}"}, "--public-root"),
    "log-with-variable": ({"access_log": "/var/log/$host.log"}, "--access-log"),
    "ca-with-space": ({"supplier_ca": "/etc/my ca.pem"}, "--supplier-ca"),
    "user-injection": ({"user": "root; daemon off"}, "--user"),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=str)
def test_bad_settings_name_the_option(case: str) -> None:
    overrides, option = BAD[case]
    with pytest.raises(ConfigurationError, match=option):
        check_settings(replace(GOOD, **overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("listen", ["127.0.0.1:8443", "[::1]:443", "*:443", "localhost:443"])
def test_good_listen_addresses(listen: str) -> None:
    assert check_settings(replace(GOOD, listen=listen)).listen == listen


def test_the_config_maps_each_registered_certificate() -> None:
    text = render_nginx_config(GOOD, SupplierRegistry(), registry_sha256="", now=T0)
    assert "ssl_verify_client optional_no_ca;" in text
    assert 'root "/srv/cfl/public";' in text


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.system
def test_command_output_passes_nginx_t(tmp_path: Path) -> None:
    binary = nginx_binary()
    require_system(binary)
    repo = tmp_path / "R"
    assert run("--repo", repo, "init", "--dev-keys").returncode == 0
    assert run("--repo", repo, "publish", "--no-site").returncode == 0
    ca, server_ca = make_ca(), make_ca("server CA")
    server_cert, server_key = issue(server_ca, "localhost", server=True).write(tmp_path, "server")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    cert, _ = issue(ca, "Acme").write(tmp_path, "acme")
    added = run("--repo", repo, "supplier", "add", "90B3D51F30010000", "--name", "Acme",
                "--role", "IS", "--cert", cert, "--supplier-ca", tmp_path / "ca.pem")  # fmt: skip
    assert added.returncode == 0, added.stderr
    conf = tmp_path / "cfl.conf"
    made = run(
        "--repo", repo, "host", "nginx", "--server-name", "localhost", "--listen", "127.0.0.1:8443",
        "--tls-cert", server_cert, "--tls-key", server_key, "--supplier-ca", tmp_path / "ca.pem",
        "--out", conf, "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert '"active": 1' in made.stdout
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    checked = subprocess.run(
        [binary, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--server-name", "bad name"), "--server-name"),
        (("--tls-cert", "/nonexistent.pem"), "--tls-cert"),
        (("--public-root", "/nonexistent-dir"), "--public-root"),
    ],
    ids=["bad-server-name", "missing-tls-cert", "missing-public-root"],
)
def test_command_bad_input_is_one_error_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], option: str
) -> None:
    repo = tmp_path / "R"
    assert run("--repo", repo, "init", "--dev-keys").returncode == 0
    (repo / "public").mkdir(exist_ok=True)
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "ca.pem").write_bytes(make_ca().cert_pem)
    base = {
        "--server-name": "localhost", "--listen": "127.0.0.1:8443", "--tls-cert": str(tmp_path / "c.pem"),
        "--tls-key": str(tmp_path / "k.pem"), "--supplier-ca": str(tmp_path / "ca.pem"),
        "--out": str(tmp_path / "out.conf"),
    } | dict([args])  # fmt: skip
    result = run("--repo", repo, "host", "nginx", *[x for kv in base.items() for x in kv])
    assert result.returncode == 2, result.stderr
    assert option in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.conf").exists()
