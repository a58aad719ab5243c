"""A real node exporter reading a textfile folder, scraped once: what Prometheus would see."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_textfile(folder: Path, *, timeout: float = 20.0) -> str:
    """Start prometheus-node-exporter with only the textfile collector on ``folder``, return one
    scrape of /metrics, and stop it."""
    port = _free_port()
    exporter = subprocess.Popen(
        [
            "prometheus-node-exporter",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return str(r.read().decode())
            except (urllib.error.URLError, ConnectionError):
                if exporter.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
