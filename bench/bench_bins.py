"""Benchmarks of hash bins (TAP 15) inside a manufacturer's delegation (issue 14).

Three figures, each a ratio measured in one run:

1. **Warm refresh bytes after one new image**, a manufacturer with ``LARGE`` images (10,000) beside
   one with ``SMALL`` (100): a supplier's client that had loaded the manufacturer refreshes after
   each of ``ROUNDS`` deposits; a counting fetcher adds up what ngclient downloads (timestamp,
   snapshot, one bin). Which bin an image lands in, and so that bin's fill, is drawn by the hash of
   its path, so the figure is the mean over the rounds (the fewest and most are printed too), and
   the least any bin count could give is worked out from the measured bytes per snapshot entry
   and per image.
2. **Submit + ingest + publish of one image**, into ``LARGE`` beside into ``SMALL``: the
   manufacturer's submit as ``cfl-repo submit --from`` runs it (verifying the part of the published
   library it needs, ``submit_scope.load_for_deposit``, with the CPL read from its index,
   ``repo_tool/intake/cpl_cache.py``, then ``build_submission``), the real gateway (``ingest``), and
   ``publish``, each as a fresh process would run it (the repository opened anew, nothing parsed
   in an earlier round reused). The first submit after a CPL import, which reads and indexes the
   CPL whole, is timed on its own line; so is verifying the whole published library (what submit
   did before, and what ``cfl-repo verify`` does), which walks every bin.
3. **Published metadata bytes after ``DEPOSITS_LARGE`` deposits beside ``DEPOSITS_SMALL``**, one
   publish per deposit, with the bin count growing by the policy (``bin_bit_length_for``; a growth
   re-signs every bin once). Every bin, manufacturer role and snapshot version is real python-tuf
   metadata signed with a test key and counted as the bytes a host keeps forever; the same
   deposits without bins (one role re-signed whole each time) are computed from the same per-target
   size for comparison.

The libraries are built fast but through the real code where it matters (bench_publish's helpers:
the first deposit through the gateway, the rest as one role version signed with the manufacturer's
key), then split with ``build_split`` and the real gateway. Size knobs for CI: ``CFL_BENCH_BINS_LARGE``
(images of the large manufacturer, default 10,000) and ``CFL_BENCH_BINS_DEPOSITS`` (default 10,000).

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_bins``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets

from bench import bench_publish
from bench.bench_client_metadata import CountingFetcher
from bench.bench_ingest import BENCH_DIR, cpl_entry, new_repository, ota
from client.trust.session import Session, SessionPaths
from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CUSTOM_KEY, format_timestamp
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.intake.bundle import Declaration, write_bundle
from repo_tool.intake.cpl_cache import CplCache
from repo_tool.intake.describe import describe_image, digest_image, target_path_for
from repo_tool.intake.image import parse_image
from repo_tool.ops.cpl_import import import_cpl as import_cpl_op
from repo_tool.ops.ingest import ingest as ingest_op
from repo_tool.ops.manufacturers import add_manufacturer as add_manufacturer_op
from repo_tool.ops.publish import publish
from repo_tool.state.repository import Repository
from repo_tool.submit.bins import build_split
from repo_tool.submit.deposit import build_submission, source_reader
from repo_tool.submit.scope import load_for_deposit
from repo_tool.verify import walk as verify
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

MFR = "1D00"
SMALL = 100
LARGE = int(os.environ.get("CFL_BENCH_BINS_LARGE", "10000"))
DEPOSITS_SMALL = 1_000
DEPOSITS_LARGE = int(os.environ.get("CFL_BENCH_BINS_DEPOSITS", "10000"))
BODY_OCTETS = 2_000
ROUNDS = 5  # deposits measured per size: medians of times, means of refresh bytes
TARGETS = {"warm refresh bytes": 1.5, "submit+ingest+publish": 1.5, "metadata bytes": 12.0}


def _images(count: int) -> list[tuple[bytes, CplEntry]]:
    made = []
    for n in range(count):
        image = ota(MFR, n + 1, os.urandom(BODY_OCTETS))
        made.append(
            (image, cpl_entry(f"CPL-{n:06d}", MFR, n + 1, image, model=f"{n % 0xFFFF:04X}"))
        )
    return made


def build(count: int, base: Path) -> tuple[bench_publish.Library, list[tuple[bytes, str]]]:
    """One manufacturer with ``count`` images, split by the policy's bit length, published; and
    ``ROUNDS`` spare images with CPL entries for the measured deposits."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    repo = new_repository(base / "repo", now)
    images = _images(count + ROUNDS)
    lib = bench_publish.Library(repo, repo.default_out, {}, {}, now)
    with repo.locked():
        import_cpl_op(
            repo,
            CplDocument.of([e for _, e in images], "0" * 64, format_timestamp(now)),
            now=lib.tick(),
        )
        lib.signers[MFR] = CryptoSigner.generate_ed25519()
        add_manufacturer_op(repo, MFR, "Maker", [lib.signers[MFR].public_key], 1, now=now)
    inbox = base / "inbox"
    inbox.mkdir()
    first, *rest = images[:count]
    bench_publish._lodge(lib, MFR, first[0], first[1].id, inbox)
    if rest:
        bench_publish._bulk_role(lib, MFR, rest)
    bench_publish._seed_out(lib.repo, lib.out)
    publish(lib.repo, lib.out, now=lib.tick())
    bundle, _ = build_split(
        manufacturer_id=MFR,
        bit_length=DEFAULT_POLICY.bin_bit_length_for(count),
        signers=[lib.signers[MFR]],
        library=bench_publish._library_view(lib.repo),
        now=lib.tick(),
    )
    path = inbox / "split.cflb"
    write_bundle(path, bundle)
    with lib.repo.locked():
        result = ingest_op(lib.repo, path, now=lib.tick())
    assert result.status == "accepted", result.messages
    publish(lib.repo, lib.out, now=lib.tick())
    return lib, [(image, entry.id) for image, entry in images[count:]]


def _session(lib: bench_publish.Library, home: Path, fetcher: CountingFetcher) -> Session:
    return Session(
        SessionPaths(home / "metadata", home / "cache"),
        fetcher.base_url,
        fetcher,
        bootstrap_root=lib.repo.metadata_bytes("root", 1),
    )


def measure(count: int) -> dict[str, float]:
    """Figures 1 and 2 for a manufacturer with ``count`` images."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-bins-", dir=BENCH_DIR) as tmp:
        base = Path(tmp)
        began = time.perf_counter()
        lib, spare = build(count, base)
        build_s = time.perf_counter() - began
        home = base / "client"
        cold = CountingFetcher(lib.out)
        _session(lib, home, cold).load_manufacturers(None)
        root = lib.repo.metadata_bytes("root", 1)
        began = time.perf_counter()
        verified_library(folder_reader(lib.out), root, now=lib.tick(), check_blobs=False)
        verify_s = time.perf_counter() - began
        # The provider's CPL grows with the library (one entry per image here), and every submit
        # verifies and parses it whole: the part of submit's load that still scales.
        cpl_bytes = folder_reader(lib.out)(f"targets/{_cpl_blob(lib)}")
        began = time.perf_counter()
        CplDocument.from_bytes(cpl_bytes)
        cpl_parse_s = time.perf_counter() - began
        timings: dict[str, list[float]] = {"load": [], "submit": [], "ingest": [], "publish": []}
        source = str(lib.out)
        refreshes: list[int] = []
        # The manufacturer's CPL index (repo_tool/intake/cpl_cache.py), kept between submits as
        # `cfl-repo submit` keeps it in ~/.cache/cfl-repo. The first deposit against this CPL
        # indexes it (timed alone: "cold"); the measured rounds read their entries from it.
        cache = CplCache(base / "submit-cache")
        verify._parsed_cpl.cache_clear()
        began = time.perf_counter()
        load_for_deposit(
            source,
            source_reader(source),
            root,
            now=lib.tick(),
            manufacturer_id=MFR,
            image=spare[0][0],
            cpl_entry_ids=(spare[0][1],),
            with_notes=False,
            cpl_cache=cache,
        )
        cold_load_s = time.perf_counter() - began
        for n, (image, entry) in enumerate(spare):
            # As `cfl-repo submit --from OUT` runs it: the verified part of the published library
            # the deposit needs (repo_tool/submit/scope.py), then the signed bundle; "submit"
            # includes this load.
            # Each `cfl-repo submit` is a fresh process: nothing parsed by an earlier round may help.
            verify._parsed_cpl.cache_clear()
            began = time.perf_counter()
            view = load_for_deposit(
                source,
                source_reader(source),
                root,
                now=lib.tick(),
                manufacturer_id=MFR,
                image=image,
                cpl_entry_ids=(entry,),
                with_notes=False,
                cpl_cache=cache,
            )
            timings["load"].append(time.perf_counter() - began)
            submission = build_submission(
                image=image,
                manufacturer_id=MFR,
                signers=[lib.signers[MFR]],
                declaration=Declaration((entry,), "compliance", ()),
                release_notes=None,
                library=view,
                now=lib.tick(),
            )
            path = base / f"one-{n}.cflb"
            write_bundle(path, submission.bundle)
            timings["submit"].append(time.perf_counter() - began)
            # `cfl-repo ingest` and `cfl-repo publish` are fresh processes too: each opens the
            # repository anew, so nothing an earlier round parsed (the CPL, roles) is reused.
            began = time.perf_counter()
            lib.repo = Repository.open(lib.repo.path)
            with lib.repo.locked():
                result = ingest_op(lib.repo, path, now=lib.tick())
            timings["ingest"].append(time.perf_counter() - began)
            assert result.status == "accepted", result.messages
            began = time.perf_counter()
            lib.repo = Repository.open(lib.repo.path)
            publish(lib.repo, lib.out, now=lib.tick())
            timings["publish"].append(time.perf_counter() - began)
            # The client keeps up: each refresh sees exactly the one image just published.
            warm = CountingFetcher(lib.out)
            loaded = _session(lib, home, warm).load_manufacturers(None)
            assert len(loaded.targets) == count + n + 1 and not loaded.unverified
            refreshes.append(warm.bytes)
        bins = sum(1 for n in lib.repo.head.roles if naming.manufacturer_of_bin(n) == MFR)
        head = lib.repo.head
        snapshot = lib.repo.metadata_bytes("snapshot", head.snapshot_version)
        bin_names = [n for n in head.roles if naming.manufacturer_of_bin(n) == MFR]
        bin_bytes = sum(len(lib.repo.metadata_bytes(n, head.roles[n])) for n in bin_names)
        return {
            "images": count,
            "bins": bins,
            # What a refresh is made of: each bin costs the snapshot one entry (name, version,
            # length and sha256 pin), and each image costs its bin one target.
            "snapshot_bytes": len(snapshot),
            "snapshot_entry_bytes": len(snapshot) / len(head.roles),
            "bin_target_bytes": bin_bytes / (count + ROUNDS),
            "build_s": build_s,
            "cold_bytes": cold.bytes,
            # The bin an image goes to is drawn by its path's hash, and bins of one size differ in
            # fill by several images, so one refresh is a sample: the mean over the rounds is
            # the figure, the range is printed beside it.
            "warm_bytes": statistics.mean(refreshes),
            "warm_min": min(refreshes),
            "warm_max": max(refreshes),
            "verify_s": verify_s,
            "cpl_bytes": len(cpl_bytes),
            "cpl_parse_ms": cpl_parse_s * 1000,
            "cold_load_ms": cold_load_s * 1000,
            **{f"{k}_ms": statistics.median(v) * 1000 for k, v in timings.items()},
            "deposit_ms": statistics.median(
                sum(parts)
                for parts in zip(
                    timings["submit"], timings["ingest"], timings["publish"], strict=True
                )
            )
            * 1000,
        }


def _cpl_blob(lib: bench_publish.Library) -> str:
    """The published CPL's blob name (targets/...), from the repository's head targets role."""
    target = lib.repo.targets().signed.targets[naming.CPL_TARGET_PATH]
    return naming.blob_name(naming.CPL_TARGET_PATH, target.hashes["sha256"])


def _template_target() -> TargetFile:
    """One real image target with its custom.cfl, to copy under other paths."""
    image = ota(MFR, 1, os.urandom(BODY_OCTETS))
    entry = cpl_entry("CPL-T", MFR, 1, image)
    header = parse_image(image)
    digests = digest_image(image, header)
    info = describe_image(
        header=header,
        digests=digests,
        entries=[entry],
        declaration=Declaration((entry.id,), "compliance", ()),
        published=format_timestamp(datetime.now(UTC)),
        release_notes_sha256=None,
    )
    path = target_path_for(header, entry.device_type, digests.file_sha256)
    return TargetFile(
        len(image),
        {"sha256": digests.file_sha256},
        path,
        unrecognized_fields={"custom": {CUSTOM_KEY: info.to_dict()}},
    )


def metadata_growth(deposits: int, template: TargetFile, signer: CryptoSigner) -> dict[str, float]:
    """Figure 3: bytes of every metadata version one publish per deposit leaves on the host."""
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=365)
    bits = DEFAULT_POLICY.bin_bit_length_for(0)
    bins: dict[str, Targets] = {
        n: Targets(version=1, expires=expires) for n in naming.bin_roles(MFR, bits)
    }
    mfr_version = 1
    kept = 0

    def signed_bytes(signed: Targets | Snapshot) -> int:
        md = Metadata(signed)
        md.sign(signer)
        return len(md.to_bytes())

    snapshot = Snapshot(version=1, expires=expires)
    for n in range(deposits):
        path = naming.image_target_path(MFR, "ESME", "0001", f"{n:08X}", f"{n:064x}")
        wanted = DEFAULT_POLICY.bin_bit_length_for(n + 1)
        if wanted > bits:  # grow: every bin and the manufacturer role once (a split-bins event)
            every = [t for b in bins.values() for t in b.targets.values()]
            bits = wanted
            bins = {
                name: Targets(
                    version=bins[name].version + 1 if name in bins else 1, expires=expires
                )
                for name in naming.bin_roles(MFR, bits)
            }
            for target in every:
                bins[naming.bin_for_target(MFR, target.path, bits)].targets[target.path] = target
            kept += sum(signed_bytes(b) for b in bins.values())
            mfr_version += 1
            kept += 600  # the manufacturer role: keys and the succinct delegation, no targets
        name = naming.bin_for_target(MFR, path, bits)
        bins[name].targets[path] = TargetFile(
            template.length, template.hashes, path, template.unrecognized_fields
        )
        bins[name].version += 1
        kept += signed_bytes(bins[name])
        snapshot.version += 1
        snapshot.meta = {f"{b}.json": MetaFile(v.version) for b, v in bins.items()} | {
            "targets.json": MetaFile(1),
            f"{naming.role_name(MFR)}.json": MetaFile(mfr_version),
        }
        kept += signed_bytes(snapshot)
    per_target = len(Metadata(Targets(targets={template.path: template})).to_bytes()) - len(
        Metadata(Targets()).to_bytes()
    )
    return {
        "deposits": deposits,
        "bytes": kept,
        "bins": len(bins),
        "per_target": per_target,
        # one role re-signed whole per deposit: sum over k of k targets
        "unsplit_bytes": per_target * deposits * (deposits + 1) / 2,
    }


def main() -> None:
    """Print the three ratios beside their targets."""
    print(f"hash bins benchmark: manufacturer of {SMALL:,} and of {LARGE:,} images, one run")
    results = [measure(SMALL), measure(LARGE)]
    rows = (
        ("images", "images", "{:,.0f}"),
        ("bins", "bins", "{:,.0f}"),
        ("build, not timed (s)", "build_s", "{:.1f}"),
        ("cold load bytes", "cold_bytes", "{:,.0f}"),
        ("warm refresh bytes, mean", "warm_bytes", "{:,.0f}"),
        ("  fewest", "warm_min", "{:,.0f}"),
        ("  most", "warm_max", "{:,.0f}"),
        ("snapshot bytes", "snapshot_bytes", "{:,.0f}"),
        ("  per role listed", "snapshot_entry_bytes", "{:,.0f}"),
        ("bin bytes per image", "bin_target_bytes", "{:,.0f}"),
        ("verify library (s)", "verify_s", "{:.2f}"),
        ("CPL bytes", "cpl_bytes", "{:,.0f}"),
        ("CPL parse, once (ms)", "cpl_parse_ms", "{:.1f}"),
        ("submit median (ms)", "submit_ms", "{:.1f}"),
        ("  of which load (ms)", "load_ms", "{:.1f}"),
        ("load, CPL not indexed (ms)", "cold_load_ms", "{:.1f}"),
        ("ingest median (ms)", "ingest_ms", "{:.1f}"),
        ("publish median (ms)", "publish_ms", "{:.1f}"),
        ("sum, median (ms)", "deposit_ms", "{:.1f}"),
    )
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>14}" for r in results)
        print(f"  {label:<24}{cells}")
    small, large = results
    warm = large["warm_bytes"] / small["warm_bytes"]
    deposit = large["deposit_ms"] / small["deposit_ms"]
    print(f"  warm refresh bytes {LARGE:,} / {SMALL:,}: {warm:.2f} (target <= 1.5)")
    # The floor at any bin count B: the snapshot's B entries plus one bin of LARGE / B images is
    # smallest at B = sqrt(T * LARGE / S), where it is 2 * sqrt(T * LARGE * S).
    entry, target = large["snapshot_entry_bytes"], large["bin_target_bytes"]
    floor = 2 * (target * LARGE * entry) ** 0.5
    print(
        f"    least possible at {LARGE:,} images with any bin count while the snapshot pins each "
        f"bin's hash: {floor:,.0f} bytes (at ~{(target * LARGE / entry) ** 0.5:,.0f} bins), "
        f"{floor / small['warm_bytes']:.2f} x the {SMALL:,}-image refresh"
    )
    print(f"  submit+ingest+publish {LARGE:,} / {SMALL:,}: {deposit:.2f} (target <= 1.5)")
    print(
        f"  with a full verification of the published library as submit's load instead: "
        f"{(large['deposit_ms'] - large['load_ms'] + 1000 * large['verify_s']) / (small['deposit_ms'] - small['load_ms'] + 1000 * small['verify_s']):.2f}"
    )
    signer = CryptoSigner.generate_ed25519()
    template = _template_target()
    began = time.perf_counter()
    growth = [
        metadata_growth(DEPOSITS_SMALL, template, signer),
        metadata_growth(DEPOSITS_LARGE, template, signer),
    ]
    print(f"  metadata growth simulated in {time.perf_counter() - began:.1f} s")
    for g in growth:
        print(
            f"  after {g['deposits']:>7,.0f} deposits: {g['bytes'] / 1e6:10.1f} MB kept in {g['bins']:.0f} bins "
            f"(without bins: {g['unsplit_bytes'] / 1e9:,.1f} GB; {g['per_target']:.0f} B per target)"
        )
    ratio = growth[1]["bytes"] / growth[0]["bytes"]
    print(
        f"  metadata bytes {DEPOSITS_LARGE:,} / {DEPOSITS_SMALL:,} deposits: {ratio:.2f} (target <= 12; "
        f"without bins {growth[1]['unsplit_bytes'] / growth[0]['unsplit_bytes']:.0f})"
    )


if __name__ == "__main__":
    main()
