"""An unprivileged nginx on loopback serving a published tree with docs/hosting.md's policy.

For the interop tests (tests/interop/conftest.py) and the benchmarks that count what a client
downloads (bench/bench_auto_bins.py): a real host, so Range requests, URL joining and the cache
headers are what a supplier meets. The configuration is docs/hosting.md's open host, minus TLS:
no-cache for ``metadata/timestamp.json``, ``log/checkpoint`` and the site, immutable for the other
metadata, the log's tiles and the blobs, never a cacheable 404, the CSP on the site, no dotfiles.
Its access log is nginx's ``combined`` format (``body_bytes_sent`` is the 10th field).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from repo_tool.site.render import CONTENT_SECURITY_POLICY

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 5
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
NO_STORE = "no-store"


def nginx_binary() -> str:
    """nginx lives in /usr/sbin, which a non-root PATH may lack: look there too."""
    return (
        shutil.which("nginx")
        or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
        or "nginx"  # not installed: require_system reports it by name
    )


def nginx_conf(root: Path, state: Path, port: int) -> str:
    """A self-contained nginx.conf: every path nginx writes is below ``state``."""
    # As root, nginx's workers would drop to `nobody`, who cannot read a 0700 temporary folder: run
    # them as whoever runs the test. Without root the directive is ignored (with a warning).
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    temp = {name: state / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""\
daemon off;
master_process on;
worker_processes 1;
user {user} {group};
pid {state / "nginx.pid"};
error_log {state / "error.log"} warn;

events {{
    worker_connections 64;
}}

http {{
    access_log {state / "access.log"};
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    types {{
        application/json json;
        text/html html;
        text/css css;
        application/javascript js;
    }}
    default_type application/octet-stream;
    server_tokens off;

    # A 404 must never be cached as immutable: clients probe metadata/<N+1>.root.json on every
    # refresh, and a cached 404 would hide a root rotation.
    map $status $cfl_immutable {{
        200 "{IMMUTABLE}";
        206 "{IMMUTABLE}";
        304 "{IMMUTABLE}";
        default "{NO_STORE}";
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
        autoindex off;

        location ~ /\\. {{
            return 404;
        }}
        location = /metadata/timestamp.json {{
            add_header Cache-Control "{NO_CACHE}" always;
        }}
        location /metadata/ {{
            add_header Cache-Control $cfl_immutable always;
        }}
        location /targets/ {{
            add_header Cache-Control $cfl_immutable always;
        }}
        location = /log/checkpoint {{
            add_header Cache-Control "{NO_CACHE}" always;
        }}
        location /log/ {{
            add_header Cache-Control $cfl_immutable always;
        }}
        location /site/ {{
            add_header Cache-Control "{NO_CACHE}" always;
            add_header Content-Security-Policy "{CONTENT_SECURITY_POLICY}" always;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    state: Path


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310  (our http URL)
            return bool(response.status)
    except urllib.error.HTTPError:
        return True  # any HTTP answer (a 404 for /) means nginx is serving
    except OSError:
        return False


def _error_log(state: Path) -> str:
    path = state / "error.log"
    return path.read_text(errors="replace") if path.exists() else "(no error log)"


def stop(running: Running) -> None:
    process = running.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight, then exit
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def start(binary: str, root: Path, state: Path) -> tuple[Running, str]:
    """Start nginx on a free port; retry on a port another process took in between."""
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        conf = state / "nginx.conf"
        conf.write_text(nginx_conf(root, state, port))
        (state / "error.log").unlink(missing_ok=True)
        process = subprocess.Popen(
            [binary, "-p", str(state), "-e", str(state / "error.log"), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        running = Running(process, state)
        base_url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(base_url):
                return running, base_url
            time.sleep(0.05)
        stop(running)
        log = _error_log(state)
        if "Address already in use" not in log:
            raise RuntimeError(f"nginx did not start within {START_TIMEOUT}s; error.log:\n{log}")
    raise RuntimeError(f"nginx found no free port in {PORT_ATTEMPTS} attempts")
