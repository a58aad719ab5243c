"""Benchmark of bulk ingest: an inbox of 1,000 deposits ingested and published in one run.

Each deposit goes through the real gateway (`Repository.ingest`: bundle parse, image checks, CPL and
duplicate checks, the manufacturer's signatures, durable blob and metadata writes, one head commit)
and the run ends with one `repo_tool.ops.publish.publish` (what `cfl-repo publish --no-site` runs;
the website is measured by bench_site). Deposits per second are printed beside RSTUF's published
figure: 500,000 artifacts in about 40 minutes, about 200 per second, with no content checks.

The same inbox size goes into a library of ``SMALL`` images and one of ``LARGE`` (100,000 by
default; ``CFL_BENCH_BULK_LARGE`` is the scale knob), measured in one run: the per-deposit cost must
not depend on the library's size. The libraries are built fast with bench_publish's helpers (each
manufacturer's first deposit through the gateway, the rest as one further role version); the
deposits are signed beforehand as their manufacturers would, each manufacturer's bundles chained
(version v+1, v+2, ...) so that one inbox can hold many deposits per manufacturer.

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_bulk``.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Targets

from bench import bench_publish
from bench.bench_ingest import BENCH_DIR, cpl_entry, ota
from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import format_timestamp
from metadata_templates.naming import role_name
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.intake.bundle import Declaration, write_bundle
from repo_tool.ops.cpl_import import import_cpl as import_cpl_op
from repo_tool.ops.ingest import ingest as ingest_op
from repo_tool.ops.publish import publish
from repo_tool.submit.auto_bins import split_first
from repo_tool.submit.bins import build_split
from repo_tool.submit.deposit import build_submission
from repo_tool.verify.published import PublishedLibrary

DEPOSITS = 1_000
SMALL = 1_000
LARGE = int(os.environ.get("CFL_BENCH_BULK_LARGE", "100000"))
RSTUF_PER_SECOND = 500_000 / (40 * 60)
# Issue 14: every manufacturer split into hash bins (TAP 15) before the inbox is ingested;
# CFL_BENCH_BULK_BINS=0 measures one role per manufacturer as before.
BINS = os.environ.get("CFL_BENCH_BULK_BINS", "1") != "0"


def _split_all(lib: bench_publish.Library, inbox: Path) -> None:
    """Split every manufacturer into hash bins by the policy's rule, through the real gateway, and
    publish (not timed)."""
    inbox.mkdir(parents=True, exist_ok=True)
    view = bench_publish._library_view(lib.repo)
    for k in range(bench_publish.MANUFACTURERS):
        mfr = bench_publish._manufacturer(k)
        count = len(view.role_metadata[role_name(mfr)].signed.targets)
        bundle, _ = build_split(
            manufacturer_id=mfr,
            bit_length=DEFAULT_POLICY.bin_bit_length_for(count),
            signers=[lib.signers[mfr]],
            library=view,
            now=lib.tick(),
        )
        path = inbox / f"split-{mfr}.cflb"
        write_bundle(path, bundle)
        with lib.repo.locked():
            result = ingest_op(lib.repo, path, now=lib.tick())
        assert result.status == "accepted", result.messages
    publish(lib.repo, lib.out, now=lib.tick())


def _inbox(
    lib: bench_publish.Library,
    first_fw: int,
    inbox: Path,
    count: int = DEPOSITS,
    *,
    auto_bins: bool = False,
) -> None:
    """Sign ``count`` new images round-robin over the manufacturers, each bundle built on the
    previous one of its manufacturer, and import their CPL entries (not timed). ``auto_bins``:
    as `cfl-repo submit` does, sign a split-bins bundle first (``-split.cflb``, ingested before
    the deposit) whenever the bin rule says a manufacturer's bins should double."""
    entries: list[CplEntry] = []
    images: list[tuple[str, bytes, CplEntry]] = []
    for n in range(count):
        mfr = bench_publish._manufacturer(n % bench_publish.MANUFACTURERS)
        fw = first_fw + n
        image = ota(mfr, fw, os.urandom(bench_publish.BODY_OCTETS))
        entry = cpl_entry(f"CPL-B{n:06d}", mfr, fw, image, model=f"{fw % 0xFFFF:04X}")
        entries.append(entry)
        images.append((mfr, image, entry))
    repo = lib.repo
    cpl = repo.cpl()
    assert cpl is not None
    with repo.locked():
        import_cpl_op(
            repo,
            CplDocument.of([*cpl.entries, *entries], "0" * 64, format_timestamp(lib.now)),
            now=lib.tick(),
        )
    # submit reads only the entries it declares and the manufacturer's current role (and bins)
    declared = CplDocument.of(entries, "0" * 64, format_timestamp(lib.now))
    roles: dict[str, Metadata[Targets]] = {name: repo.role(name) for name in repo.head.roles}
    owned: dict[str, list[str]] = {}
    for name in roles:
        owner = naming.owner_of_role(name)
        if owner is not None:
            owned.setdefault(owner, []).append(name)
    inbox.mkdir(parents=True, exist_ok=True)
    lengths = {name: len(md.to_bytes()) for name, md in roles.items()} if auto_bins else {}
    for n, (mfr, image, entry) in enumerate(images):
        if auto_bins:
            _grow_bins(lib, mfr, roles, owned, lengths, inbox / f"{n:06d}-{mfr}-split.cflb")
        submission = build_submission(
            image=image,
            manufacturer_id=mfr,
            signers=[lib.signers[mfr]],
            declaration=Declaration((entry.id,), "compliance", ()),
            release_notes=None,
            library=PublishedLibrary(
                root_version=1,
                roles=(),
                images=(),
                cpl=declared,
                role_metadata={r: roles[r] for r in owned[mfr]},
                targets_metadata=repo.targets(),
            ),
            now=lib.tick(),
        )
        bundle = submission.bundle
        # Chain the next bundle on this one: the role, or the bins it signed.
        roles[bundle.role_name] = Metadata[Targets].from_bytes(bundle.role_bytes)
        lengths[bundle.role_name] = len(bundle.role_bytes)
        for bin_name, data in bundle.bins:
            roles[bin_name] = Metadata[Targets].from_bytes(data)
            lengths[bin_name] = len(data)
        write_bundle(inbox / f"{n:06d}-{mfr}.cflb", submission.bundle)


def _grow_bins(
    lib: bench_publish.Library,
    mfr: str,
    roles: dict[str, Metadata[Targets]],
    owned: dict[str, list[str]],
    lengths: dict[str, int],
    path: Path,
) -> None:
    """Sign and write the split `submit` would sign before ``mfr``'s next deposit, if any, and
    chain on it (its role and its bins replace the old ones)."""
    own = {r: roles[r] for r in owned[mfr]}
    library = PublishedLibrary(
        root_version=1,
        roles=(),
        images=(),
        role_metadata=own,
        targets_metadata=lib.repo.targets(),
        role_lengths={r: lengths[r] for r in owned[mfr]},
    )
    split = split_first(
        manufacturer_id=mfr,
        signers=[lib.signers[mfr]],
        library=library,
        load_every_bin=lambda: library,
        new_targets=1,
        now=lib.tick(),
    )
    if split is None:
        return
    write_bundle(path, split.bundle)
    for old in owned[mfr]:
        roles.pop(old, None)
    owned[mfr] = []
    members = [(split.bundle.role_name, split.bundle.role_bytes), *split.bundle.bins]
    for name, data in members:
        roles[name] = Metadata[Targets].from_bytes(data)
        lengths[name] = len(data)
        owned[mfr].append(name)


def measure(count: int) -> dict[str, float]:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-bulk-", dir=BENCH_DIR) as tmp:
        base = Path(tmp)
        began = time.perf_counter()
        lib = bench_publish.build(count, base)
        if BINS:
            _split_all(lib, base / "split-inbox")
        inbox = base / "bulk-inbox"
        _inbox(lib, 0x100000, inbox)
        build_s = time.perf_counter() - began
        bundles = sorted(inbox.glob("*.cflb"))
        began = time.perf_counter()
        with lib.repo.locked():
            results = [ingest_op(lib.repo, path, now=lib.tick()) for path in bundles]
        ingest_s = time.perf_counter() - began
        rejected = [r for r in results if r.status != "accepted"]
        assert not rejected, rejected[0].messages
        began = time.perf_counter()
        report = publish(lib.repo, lib.out, now=lib.tick() + timedelta(seconds=1))
        publish_s = time.perf_counter() - began
        return {
            "library": count,
            "build_s": build_s,
            "ingest_s": ingest_s,
            "publish_s": publish_s,
            "total_s": ingest_s + publish_s,
            "per_s": len(bundles) / (ingest_s + publish_s),
            "ms_per_deposit": 1000 * (ingest_s + publish_s) / len(bundles),
            "written": sum(report.written.values()),
        }


def main() -> None:
    """Print deposits per second into each library size, the ratio, and RSTUF's figure."""
    print(
        f"bulk ingest benchmark: {DEPOSITS:,} deposits ingested and published in one run, "
        f"{bench_publish.MANUFACTURERS} manufacturers"
        + (", each split into hash bins" if BINS else "")
    )
    results = []
    for n in (SMALL, LARGE):
        results.append(measure(n))
        print(
            f"  (measured into {n:,}: {results[-1]['ms_per_deposit']:.1f} ms per deposit)",
            flush=True,
        )
    rows = (
        ("images in library", "library", "{:,.0f}"),
        ("build, not timed (s)", "build_s", "{:.1f}"),
        ("ingest (s)", "ingest_s", "{:.1f}"),
        ("publish (s)", "publish_s", "{:.2f}"),
        ("ms per deposit", "ms_per_deposit", "{:.1f}"),
        ("deposits per second", "per_s", "{:.1f}"),
        ("files published", "written", "{:.0f}"),
    )
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>12}" for r in results)
        print(f"  {label:<24}{cells}")
    ratio = results[1]["ms_per_deposit"] / results[0]["ms_per_deposit"]
    print(
        f"  per-deposit cost into {LARGE:,} / into {SMALL:,}: {ratio:.2f} "
        f"(independent of library size: ~1)"
    )
    print(
        f"  RSTUF (published): about {RSTUF_PER_SECOND:.0f} artifacts per second, no content "
        f"checks; CFL here: {results[1]['per_s']:.0f} deposits per second with the gateway's checks"
    )


if __name__ == "__main__":
    main()
