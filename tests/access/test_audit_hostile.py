"""Hostile audit inputs at the command line (issue 26's review): what the columnar readers and the
per-line ones must both turn into one error line, never a traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from metadata_templates.errors import UnavailableError
from repo_tool.access.inventory import read_inventory_file

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
HEADER = (
    b"Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    b"Firmware Version,Responsible Supplier,Since\n"
)
ROW = b"0011223344556677,ESME,121D,010A030B,1111,00000001,0011223344556677,2026-01-01\n"
LINE = b'{"format":"cfl-access-1","path":"/metadata/timestamp.json"}\n'


def corrupt_deflate(data: bytes) -> bytes:
    """``data`` gzipped, its first deflate block given the reserved type: zlib refuses it (its
    ``zlib.error`` is neither an OSError nor an EOFError)."""
    packed = bytearray(gzip.compress(data))
    packed[10] = 0xFF  # BFINAL=1, BTYPE=11 (reserved): "invalid block type"
    return bytes(packed)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "R"
    done = subprocess.run(
        [str(CFL_REPO), "--repo", str(path), "init", "--dev-keys"], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return path


def audit(repo: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(repo), "audit", *map(str, args)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.mark.parametrize("as_json", [False, True])
def test_a_log_whose_deflate_stream_is_corrupt_is_one_error_line(
    repo: Path, tmp_path: Path, as_json: bool
) -> None:
    bad = tmp_path / "access.log.2.gz"
    bad.write_bytes(corrupt_deflate(LINE * 100))
    done = audit(repo, bad, *(["--json"] if as_json else []))
    assert f"{bad}: unreadable after line 0" in one_error(done)
    assert done.stdout == ""


def test_an_inventory_whose_deflate_stream_is_corrupt_is_one_error_line(
    repo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(LINE)
    inventory = tmp_path / "inventory.csv.gz"
    inventory.write_bytes(corrupt_deflate(HEADER + ROW * 100))
    done = audit(repo, log, "--inventory", inventory)
    assert f"--inventory {inventory}: unreadable" in one_error(done)


def test_the_entitlement_import_names_a_corrupt_deflate_stream(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.csv.gz"
    inventory.write_bytes(corrupt_deflate(HEADER + ROW * 100))
    with pytest.raises(UnavailableError, match=f"INVENTORY {inventory}: unreadable"):
        read_inventory_file(inventory)
