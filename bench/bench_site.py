"""Benchmark of the public website: build time, the rebuild after one new image, and what the first
search transfers, at 1,000, 10,000 and 100,000 images.

- **Rebuild after one new image**: the site is built for N images, then for the same library plus
  one newer image (what a publish does); the second build is timed. Issue 14's targets: < 2 s at
  100,000 images and <= 2x the 1,000-image case, measured in one run. Timed twice: as the CLI
  calls it (the build finds the new image itself, a few cheap passes over the library), and told
  the new image (``build_site(added=...)``, nothing done per image of the library).
- **Ingest one image, then publish with the website** (what an operator runs: `cfl-repo ingest`,
  `cfl-repo publish`), into a real repository of N images (``bench_publish.build``: 20
  manufacturers; ``CFL_BENCH_SITE_BINS=1`` splits each into hash bins first) whose site is built.
  Timed in parts: the ingest, the publish of the metadata, and the website step, which verifies the
  whole published tree (``verified_library``, timed alone too) before the build. Two rounds: told
  the new image (``repo_tool.publish.site_step``, what `cfl-repo publish` does now) and not told (what it
  did before: the site finds the image in a pass over the library), both verifying the whole tree
  with no memo, and a third round told the new image whose verification uses the repository's
  verified-role memo (``repo_tool.verify.memo``, what `cfl-repo publish` does now; the memo warm
  from the previous publish, so only the role the new image changed is verified again). The
  memo-free walk and the memo walk of the same tree are also timed alone, side by side.
  ``CFL_BENCH_SITE_PUBLISH=0`` skips it (building the 100,000-image repository takes minutes);
  ``CFL_BENCH_SITE_SIZES=1000,10000`` picks the sizes; ``CFL_BENCH_SITE_REBUILD=0`` skips the
  site-only rebuild (the publish path alone). At 100,000 images without bins a manufacturer's role
  (5,000 images, 4 MB) is over the bundle cap, so that size needs ``CFL_BENCH_SITE_BINS=1``.
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
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import bench_publish
from bench.bench_ingest import BENCH_DIR
from metadata_templates.custom import CflTargetInfo, CplEntryRef, format_timestamp
from metadata_templates.naming import image_target_path, role_name
from metadata_templates.withdrawals import Withdrawal
from repo_tool.intake.bundle import Declaration, write_bundle
from repo_tool.ops.ingest import ingest as ingest_op
from repo_tool.ops.publish import publish
from repo_tool.publish.site_step import build_published_site, publish_hint, tree_state
from repo_tool.site import search as site_search
from repo_tool.site.build import build_site
from repo_tool.submit.deposit import build_submission
from repo_tool.verify.memo import RoleFacts, VerifyMemo
from repo_tool.verify.published import PublishedImage, PublishedLibrary, RoleSummary
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

SIZES = tuple(
    int(size) for size in os.environ.get("CFL_BENCH_SITE_SIZES", "1000,10000,100000").split(",")
)
MANUFACTURERS = 40
DEVICE_TYPES = ("ESME", "GSME", "PPMID", "IHD", "CHF", "HCALCS")
GENERATED = datetime(2026, 3, 1, tzinfo=UTC)
SEARCH_ROWS = 50  # search.js MAX_ROWS
# Queries a reader might type first: a manufacturer ID, a device type, a model name word (matching
# most of the library), a firmware version, the start of a hash.
QUERIES = ("1010", "esme", "model", "0000BEEF", "5f3a")
PUBLISH = os.environ.get("CFL_BENCH_SITE_PUBLISH", "1") != "0"
BINS = os.environ.get("CFL_BENCH_SITE_BINS", "0") != "0"
# CFL_BENCH_SITE_REBUILD=0: only the publish path (the synthetic site-only rebuild takes minutes at
# 100,000 images).
REBUILD = os.environ.get("CFL_BENCH_SITE_REBUILD", "1") != "0"
# 0 skips the two memo-free rounds (told and not told): at 100,000 images each verifies for 30 s.
MEMO_FREE = os.environ.get("CFL_BENCH_SITE_MEMO_FREE", "1") != "0"


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


def _ingest_one(lib: bench_publish.Library, round_: int, inbox: Path) -> tuple[float, str]:
    """Sign the next spare image of a manufacturer (not timed: the manufacturer's side) and ingest
    it (timed). Returns the seconds and the new target path."""
    path = sign_one(lib, round_, inbox)
    began = time.perf_counter()
    with lib.repo.locked():
        result = ingest_op(lib.repo, path, now=lib.tick())
    took = time.perf_counter() - began
    assert result.status == "accepted" and result.target is not None, result.messages
    return took, result.target


def sign_one(lib: bench_publish.Library, round_: int, inbox: Path) -> Path:
    """The bundle of the next spare image of a manufacturer, signed as the manufacturer would
    (`cfl-repo submit`'s work) and written into ``inbox``; returns its path."""
    mfr = bench_publish._manufacturer(round_ % bench_publish.MANUFACTURERS)
    image, entry = lib.spare[mfr].pop(0)
    submission = build_submission(
        image=image,
        manufacturer_id=mfr,
        signers=[lib.signers[mfr]],
        declaration=Declaration((entry,), "compliance", ()),
        release_notes=None,
        library=bench_publish._library_view(lib.repo),
        now=lib.tick(),
    )
    path = inbox / f"round-{round_}.cflb"
    write_bundle(path, submission.bundle)
    return path


class _ReadOnlyMemo(VerifyMemo):
    """The memo as the website step finds it, for timing its walk alone without updating it."""

    def remember(self, key: str, name: str, facts: RoleFacts) -> None:
        """Nothing: the website step that follows writes it."""


def _publish_round(
    lib: bench_publish.Library,
    round_: int,
    inbox: Path,
    *,
    told: bool,
    memo: VerifyMemo | None = None,
    flat: bool = False,
) -> dict[str, float]:
    """One image ingested, then published with the website, as `cfl-repo publish` does it."""
    ingest_s, _target = _ingest_one(lib, round_, inbox)
    now = lib.tick()
    root = lib.repo.metadata_bytes("root", 1)
    began, cpu = time.perf_counter(), time.process_time()
    before = tree_state(lib.out)
    publish(lib.repo, lib.out, now=now)
    hint = publish_hint(lib.repo, before) if told else None
    published = time.perf_counter()
    cpu_published = time.process_time()
    timed: dict[str, float] = {}
    if memo is not None and not flat:
        # The walk inside the website step, alone, as it finds the memo (not timed with the step).
        began_verify = time.perf_counter()
        verified_library(
            folder_reader(lib.out),
            root,
            now=now,
            check_blobs=False,
            memo=_ReadOnlyMemo(memo.directory),
        )
        timed["verify_memo_s"] = time.perf_counter() - began_verify
    resumed, resumed_cpu = time.perf_counter(), time.process_time()
    site = build_published_site(lib.out, root, now=now, hint=hint, memo=memo, flat=flat)
    done, done_cpu = time.perf_counter(), time.process_time()
    assert site.result.appended and site.hinted == (1 if told else None), site
    verify_s = float("nan")
    if not flat:
        # The memo-free verification of the same tree, alone (what the step did before the memo).
        began_verify = time.perf_counter()
        verified_library(folder_reader(lib.out), root, now=now, check_blobs=False)
        verify_s = time.perf_counter() - began_verify
    site_step_s = done - resumed
    return {
        "ingest_s": ingest_s,
        "publish_s": published - began,
        "site_step_s": site_step_s,
        "verify_s": verify_s,
        **timed,
        "memo_verified": float(site.memo.verified) if site.memo else float("nan"),
        "total_s": ingest_s + (published - began) + site_step_s,
        # publish and site step, this process
        "total_cpu_s": (cpu_published - cpu) + (done_cpu - resumed_cpu),
    }


def measure_publish(count: int) -> dict[str, float]:
    """Build a repository of ``count`` images and its site; then ingest and publish one image,
    told and not told."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-site-publish-", dir=BENCH_DIR) as tmp:
        base = Path(tmp)
        began = time.perf_counter()
        lib = bench_publish.build(count, base)
        if BINS:
            from bench.bench_bulk import _split_all

            _split_all(lib, base / "split-inbox")
        site = build_published_site(
            lib.out, lib.repo.metadata_bytes("root", 1), now=lib.tick(), hint=None
        )
        assert site.result.image_count == count
        build_s = time.perf_counter() - began
        inbox = base / "inbox"
        nan = {k: float("nan") for k in ("ingest_s", "publish_s", "site_step_s", "verify_s")}
        nan |= {"total_s": float("nan"), "total_cpu_s": float("nan")}
        told = _publish_round(lib, 0, inbox, told=True) if MEMO_FREE else nan
        untold = _publish_round(lib, 1, inbox, told=False) if MEMO_FREE else nan
        # The memo as the previous publish left it (that publish used it too): warm, pruned.
        memo = VerifyMemo.of_repository(lib.repo.path)
        verified_library(
            folder_reader(lib.out),
            lib.repo.metadata_bytes("root", 1),
            now=lib.now,
            check_blobs=False,
            memo=memo,
        )
        memo.prune()
        with_memo = _publish_round(lib, 2, inbox, told=True, memo=VerifyMemo(memo.directory))
        # Issue 26: the flat walk (the default now); the first round stamps the role files, the
        # second is what every later publish costs. Then the memo walk again, and flat again,
        # so a swing in the neighbours' load shows.
        _publish_round(lib, 3, inbox, told=True, memo=VerifyMemo(memo.directory), flat=True)
        flat = _publish_round(lib, 4, inbox, told=True, memo=VerifyMemo(memo.directory), flat=True)
        again = _publish_round(lib, 5, inbox, told=True, memo=VerifyMemo(memo.directory))
        flat2 = _publish_round(lib, 6, inbox, told=True, memo=VerifyMemo(memo.directory), flat=True)
        return {
            "images": count,
            "build_s": build_s,
            **{f"told:{k}": v for k, v in told.items()},
            **{f"untold:{k}": v for k, v in untold.items()},
            **{f"memo:{k}": v for k, v in with_memo.items()},
            **{f"flat:{k}": v for k, v in flat.items()},
            **{f"memo2:{k}": v for k, v in again.items()},
            **{f"flat2:{k}": v for k, v in flat2.items()},
        }


def _print_publish(results: list[dict[str, float]], site_only: list[dict[str, float]]) -> None:
    print(
        "ingest one image + publish with the website (the CLI path), beside the site-only rebuild"
        + (" (every manufacturer in hash bins)" if BINS else "")
    )
    rows = [("images", "images", "{:,.0f}"), ("build, not timed (s)", "build_s", "{:.0f}")]
    for mode, label in (
        ("flat", "told, flat walk (now)"),
        ("flat2", "told, flat walk, again"),
        ("memo", "told, verify memo (before)"),
        ("memo2", "told, verify memo, again"),
        ("told", "told, no memo (before)"),
        ("untold", "not told, no memo"),
    ):
        rows += [
            (f"{label}: total (s)", f"{mode}:total_s", "{:.2f}"),
            ("  ingest (s)", f"{mode}:ingest_s", "{:.2f}"),
            ("  publish, metadata (s)", f"{mode}:publish_s", "{:.2f}"),
            ("  website step (s)", f"{mode}:site_step_s", "{:.2f}"),
        ]
        if mode.startswith("flat"):
            rows.append(("    roles verified in full", f"{mode}:memo_verified", "{:.0f}"))
        elif mode == "memo2":
            rows.append(("    of which verify, memo (s)", "memo2:verify_memo_s", "{:.3f}"))
        elif mode == "memo":
            rows += [
                ("    of which verify, memo (s)", "memo:verify_memo_s", "{:.3f}"),
                ("    same tree, no memo (s)", "memo:verify_s", "{:.3f}"),
                ("    roles verified in full", "memo:memo_verified", "{:.0f}"),
            ]
        else:
            rows.append(("    of which verify (s)", f"{mode}:verify_s", "{:.2f}"))
        rows.append(("  CPU, publish+site (s)", f"{mode}:total_cpu_s", "{:.2f}"))
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>14}" for r in results)
        print(f"  {label:<30}{cells}")
    by_size = {int(r["images"]): r for r in site_only}
    cells = "".join(
        f"{by_size[int(r['images'])]['told_s']:>14.2f}"
        if int(r["images"]) in by_size
        else f"{'-':>14}"
        for r in results
    )
    print(f"  {'site only, told (s)':<30}{cells}")
    small, large = results[0], results[-1]
    for r in results:
        print(
            f"  verify at {r['images']:,.0f}: with the memo {r['memo:verify_memo_s']:.3f} s, "
            f"without {r['memo:verify_s']:.3f} s (same tree, same run), "
            f"{r['memo:verify_s'] / r['memo:verify_memo_s']:.1f}x less"
        )
    for mode in ("flat", "flat2", "memo", "memo2", "told", "untold"):
        ratio = large[f"{mode}:total_s"] / small[f"{mode}:total_s"]
        print(
            f"  {mode}: ingest + publish + site at {large['images']:,.0f} vs {small['images']:,.0f}: "
            f"{large[f'{mode}:total_s']:.2f} s vs {small[f'{mode}:total_s']:.2f} s, ratio {ratio:.2f}"
        )


def main() -> None:
    """Print build times and first-search weight for each size, side by side, and the ratios."""
    if not REBUILD:
        _print_publish([measure_publish(n) for n in SIZES], [])
        return
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
    if PUBLISH:
        _print_publish([measure_publish(n) for n in SIZES], results)


if __name__ == "__main__":
    main()
