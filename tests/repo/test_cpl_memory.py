"""CPL import memory is bounded: a few times the file size, never the size cap.

Baselines on this code before the fix: reading asked for the whole 256 MiB cap up front (a 3.3 MB CSV
peaked at 268 MB), and parsing peaked at about 14x the file size (a UCS-4 StringIO of the whole
text, one string object per cell).
"""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import pytest

from factory import make_entry
from repo_tool.dev.demo_data import render_cpl_csv
from repo_tool.intake.cpl import read_cpl
from repo_tool.intake.cpl_tables import CplImportError, CplLimits

IMPORTED = "2026-01-01T00:00:00Z"
PEAK_PER_FILE_OCTET = 8  # measured 6.9 at 20,000 rows


def large_cpl(rows: int) -> bytes:
    return render_cpl_csv(
        [
            make_entry(
                f"CPL-{i:06d}",
                model=f"{i % 65536:04X}",
                image_sha=hashlib.sha256(str(i).encode()).hexdigest(),
                upgrade_from=(f"CPL-{i - 1:06d}",) if i else (),
            )
            for i in range(rows)
        ]
    )


def peak_of_read(path: Path, limits: CplLimits | None = None) -> int:
    tracemalloc.start()
    try:
        read_cpl(path, imported=IMPORTED, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_import_peak_memory_is_a_small_multiple_of_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "cpl.csv"
    path.write_bytes(large_cpl(5000))
    size = path.stat().st_size

    peak = peak_of_read(path)

    assert peak < PEAK_PER_FILE_OCTET * size, f"peak {peak} for a {size}-octet CPL"


def test_a_small_file_does_not_cost_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "cpl.csv"
    path.write_bytes(large_cpl(3))

    peak = peak_of_read(path, CplLimits(max_file_bytes=512 * 1024 * 1024))

    assert peak < 4 * 1024 * 1024, f"peak {peak} for a {path.stat().st_size}-octet CPL"


def test_a_file_over_the_cap_is_refused_by_its_size_alone(tmp_path: Path) -> None:
    path = tmp_path / "cpl.csv"
    with path.open("wb") as handle:  # sparse: no disk, and never read
        handle.truncate(CplLimits().max_file_bytes + 1)

    with pytest.raises(CplImportError) as info:
        read_cpl(path, imported=IMPORTED)

    assert info.value.problems == [
        f"file: found {CplLimits().max_file_bytes + 1} octets, expected at most "
        f"{CplLimits().max_file_bytes}"
    ]
