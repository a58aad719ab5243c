"""Benchmark of the public website: build time, the rebuild after one new image, and what the first
search transfers, at 1,000, 10,000 and 100,000 images.

- **Rebuild after one new image**: the site is built for N images, then for the same library plus
  one newer image (what a publish does); the second build is timed. Issue 14's targets: < 2 s at
  100,000 images and <= 2x the 1,000-image case, measured in one run. Timed twice: as the CLI
  calls it (the build finds the new image itself, a few cheap passes over the library), and told
  the new image (``build_site(added=...)``, nothing done per image of the library).
- **First search**: the bytes a visitor's browser fetches before the first search result shows: the
  front index page, search.js, ``search/meta.json``, the word shards of each query word and the rows
  shards of the rows drawn (search.js's MAX_ROWS newest matches). It is computed by following
  search.js's algorithm over the written files (``first_search_files``); the browser test checks the
  script does exactly that. Target: < 1 MB at 100,000 images. Raw and gzip bytes are both printed.

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_site``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from metadata_templates.custom import CflTargetInfo, CplEntryRef, format_timestamp
from metadata_templates.naming import image_target_path, role_name
from metadata_templates.withdrawals import Withdrawal
from repo_tool import site_search
from repo_tool.published import PublishedImage, PublishedLibrary, RoleSummary
from repo_tool.site import build_site

SIZES = (1_000, 10_000, 100_000)
MANUFACTURERS = 40
DEVICE_TYPES = ("ESME", "GSME", "PPMID", "IHD", "CHF", "HCALCS")
GENERATED = datetime(2026, 3, 1, tzinfo=UTC)
SEARCH_ROWS = 50  # search.js MAX_ROWS
# Queries a reader might type first: a manufacturer ID, a device type, a model name word (matching
# most of the library), a firmware version, the start of a hash.
QUERIES = ("1010", "esme", "model", "0000BEEF", "5f3a")


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def synthetic_library(count: int, *, first: int = 0) -> PublishedLibrary:
    """A deterministic library of ``count`` images spread over ``MANUFACTURERS`` manufacturers;
    image ``n`` is the same whatever ``count`` is, so ``synthetic_library(n + 1)`` is the next
    publish of ``synthetic_library(n)``."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    images = []
    for n in range(first, count):
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


def first_search_files(site: Path, query: str) -> list[Path]:
    """The files search.js fetches from page load to the first result for ``query``.

    Follows search.js: the front page and the script, meta.json, the word shards that may hold each
    query word (its prefix's chain in the shard trie), the rows shards of the newest SEARCH_ROWS
    matches.
    """
    meta = json.loads((site / site_search.META_PATH).read_text())
    fetched = [site / "index.html", site / "static" / "search.js", site / site_search.META_PATH]
    matches: set[int] | None = None
    for term in query.lower().split():
        found: set[int] = set()
        for prefix in meta["shards"]:
            if not (term.startswith(prefix) or prefix.startswith(term)):
                continue
            shard = site / site_search.word_shard_path(prefix)
            fetched.append(shard)
            for word, ids in site_search.parse_word_shard(shard.read_bytes()).items():
                if word.startswith(term):
                    found.update(ids)
        matches = found if matches is None else matches & found
    shown = sorted(matches or (), reverse=True)[:SEARCH_ROWS]
    shards = sorted({i // meta["rows_per_shard"] for i in shown})
    fetched += [site / site_search.rows_shard_path(k) for k in shards]
    return fetched


def _sizes(paths: list[Path]) -> tuple[int, int]:
    data = [p.read_bytes() for p in paths]
    return sum(map(len, data)), sum(len(gzip.compress(b, 6)) for b in data)


def measure(count: int) -> dict[str, float]:
    """Build a site for ``count`` images, then for one more, in a temporary folder; measure both."""
    library = synthetic_library(count)
    grown = synthetic_library(count + 1)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-site-") as tmp:
        out = Path(tmp) / "site"
        began = time.perf_counter()
        result = build_site(library, out, generated=GENERATED)
        first = time.perf_counter() - began
        began = time.perf_counter()
        build_site(library, out, generated=GENERATED)
        again = time.perf_counter() - began
        began, cpu = time.perf_counter(), time.process_time()
        one_more = build_site(grown, out, generated=GENERATED + timedelta(minutes=1))
        plus_one = time.perf_counter() - began
        # CPU time of this process: what the wall time would be on an otherwise idle machine
        # (the writer threads' fsync waits aside); shared CI machines inflate the wall time.
        plus_one_cpu = time.process_time() - cpu
        # The same, told which image is new (what a publish that knows what it added passes):
        # nothing at all is done per image of the library.
        again_grown = synthetic_library(count + 2)
        began, cpu = time.perf_counter(), time.process_time()
        told = build_site(
            again_grown,
            out,
            generated=GENERATED + timedelta(minutes=2),
            added=again_grown.images[-1:],
        )
        told_s = time.perf_counter() - began
        told_cpu = time.process_time() - cpu
        searches = {q: _sizes(first_search_files(out, q)) for q in QUERIES}
        worst = max(searches, key=lambda q: searches[q][0])
        total_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return {
            "images": count,
            "files": len(result.files),
            "build_s": first,
            "rebuild_s": again,
            "plus_one_s": plus_one,
            "plus_one_cpu_s": plus_one_cpu,
            "plus_one_files": len(one_more.changed),
            "plus_one_appended": float(one_more.appended and told.appended),
            "told_s": told_s,
            "told_cpu_s": told_cpu,
            "site_mb": total_bytes / 1e6,
            "index_html_kb": (out / "index.html").stat().st_size / 1e3,
            "search_kb": searches[worst][0] / 1e3,
            "search_gzip_kb": searches[worst][1] / 1e3,
            "worst_query": worst,
            **{f"q:{q}": searches[q][0] / 1e3 for q in QUERIES},
        }


def main() -> None:
    """Print build times and first-search weight for each size, side by side, and the ratios."""
    results = [measure(n) for n in SIZES]
    rows = (
        ("images", "images", "{:.0f}"),
        ("files", "files", "{:.0f}"),
        ("first build (s)", "build_s", "{:.2f}"),
        ("rebuild, unchanged (s)", "rebuild_s", "{:.2f}"),
        ("rebuild, one new image (s)", "plus_one_s", "{:.2f}"),
        ("  of which CPU (s)", "plus_one_cpu_s", "{:.2f}"),
        ("  files it changed", "plus_one_files", "{:.0f}"),
        ("  by the append path (1 = yes)", "plus_one_appended", "{:.0f}"),
        ("same, told the new image (s)", "told_s", "{:.2f}"),
        ("  of which CPU (s)", "told_cpu_s", "{:.2f}"),
        ("whole site (MB)", "site_mb", "{:.1f}"),
        ("index.html (kB)", "index_html_kb", "{:.1f}"),
        ("first search, worst (kB)", "search_kb", "{:.1f}"),
        ("  gzip (kB)", "search_gzip_kb", "{:.1f}"),
        *((f"  query {q!r} (kB)", f"q:{q}", "{:.1f}") for q in QUERIES),
    )
    print(
        "site benchmark: build, rebuild after one new image, bytes before the first search result"
    )
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>14}" for r in results)
        print(f"  {label:<30}{cells}")
    small, large = results[0], results[-1]
    for label, key in (("one new image", "plus_one"), ("one new image, told", "told")):
        wall = large[f"{key}_s"] / small[f"{key}_s"]
        cpu = large[f"{key}_cpu_s"] / small[f"{key}_cpu_s"]
        print(
            f"  {label} at {large['images']:.0f} vs {small['images']:.0f}: "
            f"{large[f'{key}_s']:.3f} s vs {small[f'{key}_s']:.3f} s wall, ratio {wall:.2f}; "
            f"{large[f'{key}_cpu_s']:.3f} s vs {small[f'{key}_cpu_s']:.3f} s CPU, ratio {cpu:.2f} "
            "(targets < 2 s and <= 2)"
        )
    print(
        f"  first search at {large['images']:.0f}: worst query {large['worst_query']!r} "
        f"{large['search_kb']:.0f} kB raw, {large['search_gzip_kb']:.0f} kB gzip (target < 1000 kB)"
    )


if __name__ == "__main__":
    main()
