"""An unprivileged nginx on loopback serving a published tree with docs/hosting.md's policy.

For the interop tests (tests/interop/conftest.py) and the benchmarks that count what a client
downloads (bench/bench_auto_bins.py): a real host, so Range requests, URL joining and the cache
headers are what a supplier meets. The configuration is docs/hosting.md's open host, minus TLS,
with that block's maps and locations word for word: no-cache for ``metadata/timestamp.json``,
``log/checkpoint`` and the site, immutable for the other metadata, the log's tiles and the blobs,
no-store on every answer but a success (a 404 for an unknown path or a dotfile included), the CSP
on the site, no dotfiles. Its access log is nginx's ``combined`` format (``body_bytes_sent`` is the
10th field).
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

# docs/hosting.md's nginx block, word for word: its maps, and its server's locations (from the
# add_header note to the last location). tests/interop/test_nginx_config.py holds them equal; only
# the server's own lines (listen, TLS, root, types) differ here.
POLICY_MAPS = """\
# Cache-Control by status: only a success is cacheable. Every other answer (a 404 for the
# metadata/<N+1>.root.json clients probe on every refresh, a 403, a 416) is no-store.
map $status $cfl_immutable {
    200     "public, max-age=31536000, immutable";
    206     "public, max-age=31536000, immutable";
    304     "public, max-age=31536000, immutable";
    default "no-store";
}
map $status $cfl_revalidate {
    200     "no-cache";
    206     "no-cache";
    304     "no-cache";
    default "no-store";
}
"""
POLICY_LOCATIONS = """\
    # add_header in a location replaces, never extends, the headers of the levels above it, so each
    # location below states all of its own headers.

    # Compress JSON (every TUF role), the feed and the site's css/js/svg for clients that ask (cfl
    # does, and tuf-js): at 100,000 images a snapshot is 359 kB raw and 120 kB gzipped, a bin 52 kB
    # and 8 kB. cfl reads a partial log tile from an offset (Range) without asking for gzip, which
    # would make nginx send the whole file.
    gzip on;
    gzip_vary on;
    gzip_min_length 256;
    gzip_types application/json text/css application/javascript image/svg+xml application/atom+xml;

    # Dotfiles: the publisher's .cfl-publish.lock, editor and VCS droppings. Regex locations win over
    # the prefix locations below, so this covers /metadata/.x and /targets/.x too.
    location ~ /\\. {
        add_header Cache-Control "no-store" always;
        return 404;
    }

    # The one mutable file of the TUF tree: clients revalidate it on every refresh.
    location = /metadata/timestamp.json {
        add_header Cache-Control $cfl_revalidate always;
        add_header X-Content-Type-Options "nosniff" always;
    }

    # Versioned metadata: N.root.json, N.targets.json, N.mfr-<ID>.json, N.snapshot.json.
    location /metadata/ {
        add_header Cache-Control $cfl_immutable always;
        add_header X-Content-Type-Options "nosniff" always;
    }

    # Blobs, named <sha256>.<name>: images and the signed CPL.
    location /targets/ {
        add_header Cache-Control $cfl_immutable always;
        add_header X-Content-Type-Options "nosniff" always;
    }

    # The transparency log (docs/transparency.md), which the signed timestamp binds: clients fetch
    # the checkpoint on every refresh that finds a new one, and the tiles' appended bytes by Range.
    # Tiles never change under their name (a wider partial tile is a new file, .p/<W>) and the
    # superseded partial ones are deleted, whose 404 is then no-store.
    location = /log/checkpoint {
        default_type text/plain;
        add_header Cache-Control $cfl_revalidate always;
        add_header X-Content-Type-Options "nosniff" always;
    }
    location /log/ {
        default_type application/octet-stream;
        add_header Cache-Control $cfl_immutable always;
        add_header X-Content-Type-Options "nosniff" always;
    }

    # The public website. Its pages carry the same policy in a <meta> tag; the header also covers
    # search-index.json and feed.xml and cannot be lost by a proxy that rewrites markup.
    location /site/ {
        index index.html;
        add_header Cache-Control $cfl_revalidate always;
        add_header Content-Security-Policy "{csp}" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header Referrer-Policy "no-referrer" always;
        add_header X-Frame-Options "DENY" always;
    }

    location = / {
        return 302 /site/;
    }

    # Nothing else is part of the library.
    location / {
        add_header Cache-Control "no-store" always;
        return 404;
    }
""".replace("{csp}", CONTENT_SECURITY_POLICY)


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

{POLICY_MAPS}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
        autoindex off;

{POLICY_LOCATIONS}    }}
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
