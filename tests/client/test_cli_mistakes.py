"""Ordinary mistakes and hostile hosts give one `error:` line, the right exit code and no traceback.

Each case runs the installed `cfl` on a library built by repo_tool's own code (tests/factory.py);
the hosts are loopback servers written with the standard library.
"""

from __future__ import annotations

import contextlib
import os
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from client_factories import device_id, write_estate

from factory import LibraryFactory, standard_library
from metadata_templates.errors import EXIT_FAILURE, EXIT_USAGE

CFL = Path(sys.executable).with_name("cfl")


def cfl(*args: str | Path, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"} | {"COLUMNS": "200"}
    return subprocess.run(
        [str(CFL), "--home", str(home), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
        check=False,
    )


def one_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The run failed with ``exit_code`` and said so in exactly one `error:` line, no traceback."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> LibraryFactory:
    factory, _ = standard_library(tmp_path_factory.mktemp("lib"))
    return factory


@pytest.fixture
def root(library: LibraryFactory, tmp_path: Path) -> Path:
    path = tmp_path / "root.json"
    path.write_bytes(library.root_bytes)
    return path


@pytest.fixture
def home(library: LibraryFactory, root: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    result = cfl("init", library.out.as_uri(), "--root", root, home=home)
    assert result.returncode == 0, result.stderr
    return home


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    return write_estate(
        tmp_path / "estate.csv", [(device_id(1), "ESME", "121D", "010A030B", "1111", "00000001")]
    )


# --- cfl init ---------------------------------------------------------------------------------------


def test_a_ca_bundle_without_a_certificate_is_refused_at_init(
    library: LibraryFactory, root: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN NOTHING-----\nnot a certificate\n")
    home = tmp_path / "home"
    result = cfl("init", library.out.as_uri(), "--root", root, "--ca-bundle", bundle, home=home)
    line = one_error(result, EXIT_USAGE)
    assert f"CA bundle {bundle}: found no usable certificate" in line
    assert not (home / "config.json").exists()


def test_a_notes_key_that_is_not_p256_is_refused_at_init(
    library: LibraryFactory, root: Path, tmp_path: Path
) -> None:
    key = tmp_path / "notes.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    home = tmp_path / "home"
    result = cfl("init", library.out.as_uri(), "--root", root, "--notes-key", key, home=home)
    line = one_error(result, EXIT_USAGE)
    assert f"--notes-key {key}: found 'unreadable or wrong passphrase'" in line
    assert "expected a P-256 private key in PEM" in line
    assert not (home / "config.json").exists()


def test_a_home_under_a_regular_file_is_a_usage_error(
    library: LibraryFactory, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "plain").write_text("x")
    result = cfl("init", library.out.as_uri(), "--root", root, home=tmp_path / "plain" / "home")
    assert "--home: found" in one_error(result, EXIT_USAGE)


# --- cfl check --devices-out and cfl download --out ----------------------------------------------


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "plain/devices.csv",
            "--devices-out folder: found '{tmp}/plain', expected an existing folder (a regular file)",
        ),
        (
            "missing/devices.csv",
            "--devices-out folder: found '{tmp}/missing', expected an existing folder (no such folder)",
        ),
    ],
    ids=["under-a-regular-file", "under-a-missing-folder"],
)
def test_devices_out_that_cannot_be_a_file_is_refused_before_any_work(
    home: Path, estate: Path, tmp_path: Path, where: str, message: str
) -> None:
    (tmp_path / "plain").write_text("keep me")
    result = cfl("check", estate, "--devices-out", tmp_path / where, home=home)
    assert one_error(result, EXIT_USAGE) == "error: " + message.format(tmp=tmp_path)
    assert (tmp_path / "plain").read_text() == "keep me"


def test_devices_out_onto_a_folder_is_a_usage_error(
    home: Path, estate: Path, tmp_path: Path
) -> None:
    (tmp_path / "folder").mkdir()
    result = cfl("check", estate, "--devices-out", tmp_path / "folder", home=home)
    assert result.returncode == EXIT_USAGE
    assert "is a directory" in result.stderr and "Traceback" not in result.stderr


def test_devices_out_onto_an_existing_file_replaces_it_whole(
    home: Path, estate: Path, tmp_path: Path
) -> None:
    out = tmp_path / "devices.csv"
    out.write_text("yesterday's run\n")
    result = cfl("check", estate, "--devices-out", out, home=home)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("Device ID,Recommended Target")


def test_download_out_under_a_regular_file_is_refused(
    home: Path, estate: Path, tmp_path: Path
) -> None:
    (tmp_path / "plain").write_text("x")
    result = cfl("download", "--estate", estate, "--out", tmp_path / "plain" / "out", home=home)
    line = one_error(result, EXIT_USAGE)
    assert f"({tmp_path / 'plain'} is a regular file)" in line


# --- files the user names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00garbage", "unreadable CSV"),
        (b"", "estate"),
        (b"just,a,header\n", "estate"),
    ],
    ids=["binary", "empty", "wrong-header"],
)
def test_an_unusable_estate_is_one_error_line(
    home: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    estate = tmp_path / "estate.csv"
    estate.write_bytes(content)
    result = cfl("check", estate, home=home)
    assert result.returncode in (EXIT_FAILURE, EXIT_USAGE)
    assert message in one_error(result, result.returncode)


def test_a_device_as_the_estate_is_refused_not_read_forever(home: Path) -> None:
    # /dev/zero has no line end: read as CSV it would be one endless line held in memory.
    result = cfl("check", "/dev/zero", home=home)
    assert "estate /dev/zero: found 'a device', expected a regular file or a pipe" in one_error(
        result, EXIT_FAILURE
    )


def test_a_missing_estate_is_a_usage_error(home: Path, tmp_path: Path) -> None:
    result = cfl("check", tmp_path / "nope.csv", home=home)
    assert result.returncode == EXIT_USAGE
    assert "nope.csv" in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_home_configuration_is_a_usage_error(home: Path) -> None:
    (home / "config.json").write_text("{not json")
    result = cfl("refresh", home=home)
    assert "config.json: unreadable" in one_error(result, EXIT_USAGE)


def test_a_home_that_was_never_initialised_is_a_usage_error(tmp_path: Path) -> None:
    result = cfl("list", home=tmp_path / "typo")
    assert "no client home at" in one_error(result, EXIT_USAGE)
    assert not (tmp_path / "typo").exists()


# --- hosts that refuse or trickle ----------------------------------------------------------------


class _Refusing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"certificate revoked for 0123456789ABCDEF\x1b[2J\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_refusal_is_one_line_naming_the_url_and_the_servers_reason(
    refusing_url: str, root: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    assert cfl("init", refusing_url, "--root", root, home=home).returncode == 0
    line = one_error(cfl("refresh", home=home), EXIT_USAGE)
    # ngclient reads a 403 on the next root version as "no newer root", then asks for timestamp.
    assert f"{refusing_url}/metadata/timestamp.json: HTTP 403 Forbidden" in line
    assert '(server says "certificate revoked for 0123456789ABCDEF [2J")' in line
    assert "\x1b" not in line


class _Trickle(socketserver.BaseRequestHandler):
    """Headers at once, then one body byte every 2 s."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.recv(65536)
            self.server.first_request.append(time.monotonic())  # type: ignore[attr-defined]
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not self.server.stopping.is_set():  # type: ignore[attr-defined]
                self.request.sendall(b"{")
                self.server.stopping.wait(2.0)  # type: ignore[attr-defined]


@pytest.fixture
def trickle() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    server.first_request = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.stopping.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_a_trickling_host_cannot_hold_refresh_beyond_the_deadline(
    trickle: socketserver.ThreadingTCPServer, root: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{trickle.server_address[1]}"
    home = tmp_path / "home"
    assert cfl("init", url, "--root", root, "--deadline", "3", home=home).returncode == 0
    result = cfl("refresh", home=home)
    finished = time.monotonic()
    line = one_error(result, EXIT_FAILURE)
    assert "not complete within the 3 s deadline" in line
    # Timed from the request, not from the interpreter's start-up (slow on a busy machine);
    # without the deadline the host would hold the refresh for 100,000 x 2 s.
    [asked] = trickle.first_request  # type: ignore[attr-defined]
    assert finished - asked < 3 + 4
