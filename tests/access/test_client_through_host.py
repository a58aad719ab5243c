"""The supplier's `cfl` refreshes and downloads through the generated host with its certificate."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from access.conftest import Served

CFL = Path(sys.executable).with_name("cfl")


def cfl(home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL), "--home", str(home), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _init(served: Served, tmp_path: Path, caller: str) -> Path:
    home = tmp_path / f"home-{caller}"
    root = tmp_path / "root.json"
    root.write_bytes(served.factory.root_bytes)
    cert, key = served.credentials[caller]
    args = ["init", served.base_url, "--root", root, "--ca-bundle", served.server_ca]
    args += ["--client-cert", cert, "--client-key", key]
    result = cfl(home, *args)
    assert result.returncode == 0, result.stderr
    return home


@pytest.mark.system
def test_supplier_refreshes_and_downloads_its_images(served: Served, tmp_path: Path) -> None:
    home = _init(served, tmp_path, "IS")
    refreshed = cfl(home, "refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    target = next(t for t in served.factory.repo.role("mfr-121D").signed.targets if "ESME" in t)
    out = tmp_path / "images"
    downloaded = cfl(home, "download", target, "--out", out)
    assert downloaded.returncode == 0, downloaded.stderr
    (image,) = [p for p in out.rglob("*.ota")]
    expected = served.factory.repo.role("mfr-121D").signed.targets[target].hashes["sha256"]
    assert hashlib.sha256(image.read_bytes()).hexdigest() == expected


@pytest.mark.system
def test_wrong_role_refreshes_but_cannot_download(served: Served, tmp_path: Path) -> None:
    home = _init(served, tmp_path, "GS")
    assert cfl(home, "refresh").returncode == 0
    target = next(t for t in served.factory.repo.role("mfr-121D").signed.targets if "ESME" in t)
    downloaded = cfl(home, "download", target, "--out", tmp_path / "images")
    assert downloaded.returncode != 0
    assert "Traceback" not in downloaded.stderr
    assert "403" in downloaded.stderr
    assert not list((tmp_path / "images").rglob("*.ota"))
