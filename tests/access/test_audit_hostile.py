"""Hostile audit inputs at the command line (issue 26's review): what the columnar readers and the
per-line ones must both turn into one error line, never a traceback."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from access import test_audit_columnar as columnar_test
from access.test_audit_columnar import world  # noqa: F401 (the differential test's world, a fixture)
from metadata_templates.errors import RejectedInputError, UnavailableError
from repo_tool.access import audit_columnar, inventory_columnar, long_lines
from repo_tool.access.audit import Auditor, Summary, Totals, judged_lines
from repo_tool.access.inventory import (
    LONG_ROW,
    InventoryIndex,
    read_inventory,
    read_inventory_file,
)
from repo_tool.access.inventory_columnar import read_inventory_binary
from repo_tool.access.long_lines import bounded

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


# --- lines longer than any record (repo_tool/access/long_lines.py) ------------------------------

SHORT = 3000  # MAX_LINE in these tests


def _long_lines_log(lib: dict[str, Any], seed: int) -> bytes:
    rng = random.Random(seed)
    lines = []
    for _ in range(60):
        if rng.random() < 0.2:
            length = rng.choice([SHORT - 1, SHORT, SHORT + 1, SHORT + 2, 5 * SHORT, 40 * SHORT])
            start = rng.choice([b"", b'{"format":"cfl-access-1",'])
            lines.append((start + b"x" * length)[:length])
        else:
            lines.append(columnar_test._line(lib, rng))
    return b"\n".join(lines) + (b"\n" if seed % 2 else b"")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block", [700, 4096, 65536])
def test_a_line_longer_than_any_record_is_one_malformed_line_in_both_readers(
    world: dict[str, Any],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    block: int,
) -> None:
    monkeypatch.setattr(long_lines, "MAX_LINE", SHORT)
    monkeypatch.setattr(audit_columnar, "BLOCK", block)
    log = tmp_path / "access.log"
    log.write_bytes(_long_lines_log(world, seed))
    for inventory in (False, True):
        columnar_test._same_audit(world, [log], inventory)
    totals = Totals()
    list(judged_lines([log], Auditor(world["registry"], world["library"]), totals))
    long = [e for e in totals.malformed.examples if long_lines.LONG_LINE.decode() in e]
    assert long  # each seed has some


@pytest.mark.parametrize("columnar", [False, True])
def test_a_gzip_bomb_of_one_line_is_never_held(
    world: dict[str, Any],  # noqa: F811
    tmp_path: Path,
    columnar: bool,
) -> None:
    """32 MiB of one byte, 32 kB gzipped, with a limit of 1 MiB: read in bounded memory, one
    malformed line."""
    import tracemalloc

    bomb = tmp_path / "access.log.1.gz"
    bomb.write_bytes(gzip.compress(b"A" * (32 << 20) + b"\n" + LINE))
    auditor = Auditor(world["registry"], world["library"])
    totals = Totals()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(long_lines, "MAX_LINE", 1 << 20)
        patch.setattr(audit_columnar, "BLOCK", 1 << 18)
        tracemalloc.start()
        try:
            if columnar:
                audit_columnar.audit_logs([bomb], auditor, totals, Summary())
            else:
                list(judged_lines([bomb], auditor, totals))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert totals.lines == 2 and totals.malformed.count == 1
    assert totals.malformed.examples == [
        f"{bomb}:1: found {long_lines.LONG_LINE!r}, expected a cfl-access-1 JSON record"
    ]


def _long_rows_inventory(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = []
    for n in range(80):
        end = rng.choice([b"\n", b"\n", b"\r\n", b"\r"])
        if rng.random() < 0.2:
            length = rng.choice([SHORT - 1, SHORT, SHORT + 1, 5 * SHORT, 40 * SHORT])
            filler = rng.choice([b"x", b"x,", b'"x'])
            lines.append((ROW[:17] + filler * length)[:length] + end)
        else:
            lines.append(b"%016X" % n + ROW[16:-1] + end)
    return HEADER + b"".join(lines)


def _both_indexes(data: bytes) -> tuple[Any, Any]:
    def old() -> InventoryIndex:
        text = io.TextIOWrapper(
            bounded(io.BytesIO(data)), encoding="utf-8-sig", errors="replace", newline=""
        )
        return read_inventory(text)

    results: list[Any] = []
    for read in (old, lambda: read_inventory_binary(io.BytesIO(data))):
        try:
            index = read()
        except RejectedInputError as e:
            results.append(str(e))
            continue
        results.append(
            (
                {s: list(kinds.items()) for s, kinds in index.since.items()},
                index.devices, index.bad_rows, index.located, index.latest,
            )
        )  # fmt: skip
    return results[0], results[1]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("block", [300, 5000, 65536])
def test_an_inventory_line_longer_than_any_row_is_one_bad_row_in_both_readers(
    monkeypatch: pytest.MonkeyPatch, seed: int, block: int
) -> None:
    monkeypatch.setattr(long_lines, "MAX_LINE", SHORT)
    monkeypatch.setattr(inventory_columnar, "BLOCK", block)
    old, new = _both_indexes(_long_rows_inventory(seed))
    assert new == old
    assert any(LONG_ROW in message for _, message in old[3])


@pytest.mark.parametrize("where", ["header", "row", "rows ended by CR"])
def test_an_inventory_gzip_bomb_is_never_held(tmp_path: Path, where: str) -> None:
    """32 MiB without a line end (or of rows ended by \\r only, which the columns never read),
    with a limit of 1 MiB: the audit's reader and the entitlement import's read it in bounded
    memory."""
    import tracemalloc

    if where == "header":
        data = b"A" * (32 << 20) + b"\n" + HEADER + ROW
    elif where == "row":
        data = HEADER + b"A" * (32 << 20) + b"\n" + ROW
    else:
        data = HEADER + ROW.replace(b"\n", b"\r") * (400_000)
    bomb = tmp_path / "inventory.csv.gz"
    bomb.write_bytes(gzip.compress(data))
    del data
    results = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(long_lines, "MAX_LINE", 1 << 20)
        patch.setattr(inventory_columnar, "BLOCK", 1 << 18)
        for read in (
            lambda: read_inventory_binary(gzip.GzipFile(bomb)),
            lambda: read_inventory_file(bomb)[0],
        ):
            tracemalloc.start()
            try:
                try:
                    index: Any = read()
                    results.append((index.devices, index.bad_rows, index.problems))
                except RejectedInputError as e:
                    results.append(str(e))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 12 << 20, (where, peak)
    assert results[0] == results[1]
    if where == "header":
        assert f"inventory header: found {LONG_ROW!r}" in results[0]
    elif where == "row":
        expected = "a line of at most 16777216 bytes"  # MAX_LINE when the module was loaded
        assert results[0] == (1, 1, [f"row 2: row: found {LONG_ROW!r}, expected {expected}"])
    else:
        assert results[0][:2] == (400_000, 0)
