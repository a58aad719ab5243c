"""Benchmark of the public website: build time and page weight at 1,000 and 100,000 images.

Page weight is what a visitor's browser fetches to search everything: the first index page, the
search script and the search index (the stylesheet and icon are small and fixed). Raw bytes and gzip
bytes (what a server with compression sends) are both printed.

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_site``.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from metadata_templates.custom import CflTargetInfo, CplEntryRef, format_timestamp
from metadata_templates.naming import image_target_path, role_name
from metadata_templates.withdrawals import Withdrawal
from repo_tool.published import PublishedImage, PublishedLibrary, RoleSummary
from repo_tool.site import build_site

SIZES = (1_000, 100_000)
MANUFACTURERS = 40
DEVICE_TYPES = ("ESME", "GSME", "PPMID", "IHD", "CHF", "HCALCS")
GENERATED = datetime(2026, 3, 1, tzinfo=UTC)


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def synthetic_library(count: int) -> PublishedLibrary:
    """A deterministic library of ``count`` images spread over ``MANUFACTURERS`` manufacturers."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    images = []
    for n in range(count):
        mfr = f"{0x1000 + n % MANUFACTURERS:04X}"
        device_type = DEVICE_TYPES[n % len(DEVICE_TYPES)]
        firmware = f"{n:08X}"
        sha = _hex(f"file {n}")
        target = image_target_path(mfr, device_type, "0001", firmware, sha)
        security = n % 5 == 0
        cfl = CflTargetInfo(
            device_type=device_type,
            manufacturer_id=mfr,
            manufacturer_name=f"Manufacturer {mfr} Metering Ltd",
            image_type="0001",
            firmware_version=firmware,
            stack_version="0002",
            header_string=f"Image {n}",
            hardware_version_min="0100",
            hardware_version_max="0200",
            manufacturer_image_sha256=_hex(f"manufacturer image {n}"),
            manufacturer_image_length=200_000,
            cpl_entries=tuple(
                CplEntryRef(
                    id=f"CPL-{n:06d}-{k}",
                    model_id=f"{(n // 7 + k) % 0xFFFF:04X}0001",
                    model_name=f"Model {(n // 7 + k) % 500} {device_type}",
                    hardware_version="0100",
                    status="Active",
                    upgrade_from=(),
                )
                for k in range(1 + n % 2)
            ),
            reason="security" if security else "compliance",
            advisories=(f"CFL-ADV-{n:05d}",) if security else (),
            published=format_timestamp(start + timedelta(minutes=37 * n)),
        )
        withdrawal = (
            Withdrawal(target, sha, format_timestamp(GENERATED - timedelta(days=1)), "superseded")
            if n % 97 == 0
            else None
        )
        images.append(
            PublishedImage(target, 200_056, sha, cfl, role_name(mfr), withdrawal=withdrawal)
        )
    expires = GENERATED + timedelta(days=365)
    roles = tuple(
        RoleSummary(name, 1, expires, (_hex(name),), 1)
        for name in ("root", "targets", "snapshot", "timestamp")
    )
    return PublishedLibrary(
        root_version=1,
        roles=roles,
        images=tuple(images),
        manufacturers={
            f"{0x1000 + m:04X}": f"Manufacturer {0x1000 + m:04X} Metering Ltd"
            for m in range(MANUFACTURERS)
        },
    )


def measure(count: int) -> dict[str, float]:
    """Build a site for ``count`` images in a temporary folder and measure it."""
    library = synthetic_library(count)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-site-") as tmp:
        out = Path(tmp) / "site"
        began = time.perf_counter()
        result = build_site(library, out, generated=GENERATED)
        first = time.perf_counter() - began
        began = time.perf_counter()
        build_site(library, out, generated=GENERATED)
        again = time.perf_counter() - began
        weight = {
            name: (out / name).read_bytes()
            for name in ("index.html", "static/search.js", "search-index.json")
        }
        total_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return {
            "images": count,
            "files": len(result.files),
            "build_s": first,
            "rebuild_s": again,
            "site_mb": total_bytes / 1e6,
            "index_html_kb": len(weight["index.html"]) / 1e3,
            "search_js_kb": len(weight["static/search.js"]) / 1e3,
            "search_index_kb": len(weight["search-index.json"]) / 1e3,
            "weight_kb": sum(len(b) for b in weight.values()) / 1e3,
            "weight_gzip_kb": sum(len(gzip.compress(b, 6)) for b in weight.values()) / 1e3,
        }


def main() -> None:
    """Print build time and page weight for each size, side by side."""
    results = [measure(n) for n in SIZES]
    rows = (
        ("images", "images", "{:.0f}"),
        ("files written", "files", "{:.0f}"),
        ("first build (s)", "build_s", "{:.2f}"),
        ("rebuild, unchanged (s)", "rebuild_s", "{:.2f}"),
        ("whole site (MB)", "site_mb", "{:.1f}"),
        ("index.html (kB)", "index_html_kb", "{:.1f}"),
        ("search.js (kB)", "search_js_kb", "{:.1f}"),
        ("search-index.json (kB)", "search_index_kb", "{:.1f}"),
        ("page weight (kB)", "weight_kb", "{:.1f}"),
        ("page weight, gzip (kB)", "weight_gzip_kb", "{:.1f}"),
    )
    print("site benchmark: build time and page weight (index.html + search.js + search-index.json)")
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>14}" for r in results)
        print(f"  {label:<26}{cells}")


if __name__ == "__main__":
    main()
