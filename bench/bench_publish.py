"""Benchmark of publish: one more image into a library of 100 images and into one of 10,000.

The target (issue 2, Performance): publishing one more image into 10,000 costs at most 2x publishing
it into 100, because only the changed roles are re-signed and rewritten.

The libraries (images spread over ``MANUFACTURERS`` manufacturers) are built fast but with the real
code wherever it matters: each manufacturer's first deposit goes through the gateway (so the real
`Repository.ingest` creates its delegation), then the rest of its images arrive as one further
role version signed with its own key, staged directly, and the out directory is seeded with the
blobs (hard links to the store) before one full `publish` writes the metadata. Each round then
signs one more image, ingests it through the gateway (not timed), and times
`repo_tool.ops.publish.publish` alone (what `cfl-repo publish --no-site` runs).

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_publish``.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from bench.bench_ingest import BENCH_DIR, cpl_entry, new_repository, ota
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CUSTOM_KEY, format_timestamp
from metadata_templates.naming import blob_name, role_name
from repo_tool.intake.bundle import Declaration, write_bundle
from repo_tool.intake.describe import describe_image, digest_image, target_path_for
from repo_tool.intake.image import parse_image
from repo_tool.ops.cpl_import import import_cpl as import_cpl_op
from repo_tool.ops.ingest import ingest as ingest_op
from repo_tool.ops.manufacturers import add_manufacturer as add_manufacturer_op
from repo_tool.ops.publish import publish
from repo_tool.state.repository import Repository
from repo_tool.submit.deposit import build_submission
from repo_tool.verify.published import PublishedLibrary

SIZES = (100, 10_000)
MANUFACTURERS = 20
ROUNDS = 5
TARGET_RATIO = 2.0
BODY_OCTETS = 2_000


@dataclass
class Library:
    repo: Repository
    out: Path
    signers: dict[str, CryptoSigner]
    spare: dict[str, list[tuple[bytes, str]]]  # manufacturer -> (image, CPL entry) not yet lodged
    now: datetime

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _manufacturer(k: int) -> str:
    return f"{0x1000 + k:04X}"


def _images(count: int) -> tuple[dict[str, list[tuple[bytes, CplEntry]]], list[CplEntry]]:
    """``count`` lodged images round-robin over the manufacturers, plus ``ROUNDS`` spares each."""
    per: dict[str, list[tuple[bytes, CplEntry]]] = {
        _manufacturer(k): [] for k in range(MANUFACTURERS)
    }
    entries: list[CplEntry] = []
    for n in range(count + ROUNDS * MANUFACTURERS):
        mfr = _manufacturer(n % MANUFACTURERS)
        image = ota(mfr, n + 1, os.urandom(BODY_OCTETS))
        entry = cpl_entry(f"CPL-{n:06d}", mfr, n + 1, image, model=f"{n % 0xFFFF:04X}")
        per[mfr].append((image, entry))
        entries.append(entry)
    return per, entries


def _library_view(repo: Repository) -> PublishedLibrary:
    """What a manufacturer's `submit` reads from the published tree, taken from the repository
    (the tree was published from exactly this state; walking 10,000 targets would only slow the
    build down)."""
    return PublishedLibrary(
        root_version=1,
        roles=(),
        images=(),
        cpl=repo.cpl(),
        role_metadata={name: repo.role(name) for name in repo.head.roles},
        targets_metadata=repo.targets(),
    )


def _lodge(lib: Library, mfr: str, image: bytes, entry: str, work: Path) -> None:
    """Sign one image as the manufacturer and run it through the real gateway."""
    submission = build_submission(
        image=image,
        manufacturer_id=mfr,
        signers=[lib.signers[mfr]],
        declaration=Declaration((entry,), "compliance", ()),
        release_notes=None,
        library=_library_view(lib.repo),
        now=lib.tick(),
    )
    path = work / f"{mfr}-{hashlib.sha256(image).hexdigest()[:12]}.cflb"
    write_bundle(path, submission.bundle)
    with lib.repo.locked():
        result = ingest_op(lib.repo, path, now=lib.tick())
    assert result.status == "accepted", result.messages


def _bulk_role(lib: Library, mfr: str, images: list[tuple[bytes, CplEntry]]) -> None:
    """Stage the next version of ``mfr``'s role holding ``images`` besides what it has, signed by
    the manufacturer; store the blobs. Bypasses the one-image-per-version gateway rule on purpose."""
    repo = lib.repo
    name = role_name(mfr)
    md = repo.role(name)
    published = format_timestamp(lib.now)
    for image, entry in images:
        header = parse_image(image)
        digests = digest_image(image, header)
        info = describe_image(
            header=header,
            digests=digests,
            entries=[entry],
            declaration=Declaration((entry.id,), "compliance", ()),
            published=published,
            release_notes_sha256=None,
        )
        path = target_path_for(header, entry.device_type, digests.file_sha256)
        md.signed.targets[path] = TargetFile(
            len(image),
            {"sha256": digests.file_sha256},
            path,
            unrecognized_fields={"custom": {CUSTOM_KEY: info.to_dict()}},
        )
        blob = repo.blobs.path(digests.file_sha256)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(image)  # a bulk load: durability of each file does not matter here
    md.signed.version += 1
    md.signatures.clear()
    md.sign(lib.signers[mfr])
    atomic_write_bytes(repo.metadata_path(name, md.signed.version), md.to_bytes())
    with repo.locked():
        head = repo.head
        atomic_write_bytes(
            repo.state_dir / "head.json",
            replace(head, roles={**head.roles, name: md.signed.version}).to_bytes(),
        )
    lib.repo = Repository.open(repo.path)  # the head changed behind the object's back


def _seed_out(repo: Repository, out: Path) -> None:
    """Hard-link every image blob into the out directory, where publish would put it."""
    for name in repo.head.roles:
        for target in repo.role(name).signed.targets.values():
            sha = target.hashes["sha256"]
            destination = out / "targets" / blob_name(target.path, sha)
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.link(repo.blobs.path(sha), destination)


def build(count: int, base: Path) -> Library:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    repo = new_repository(base / "repo", now)
    per, entries = _images(count)
    lib = Library(repo, repo.default_out, {}, {}, now)
    with repo.locked():
        import_cpl_op(
            repo, CplDocument.of(entries, "0" * 64, format_timestamp(now)), now=lib.tick()
        )
        for mfr in per:
            lib.signers[mfr] = CryptoSigner.generate_ed25519()
            add_manufacturer_op(
                repo, mfr, f"Maker {mfr}", [lib.signers[mfr].public_key], 1, now=now
            )
    inbox = base / "inbox"
    inbox.mkdir()
    lodged = count // MANUFACTURERS
    for mfr, images in per.items():
        first, *rest = images[:lodged]
        _lodge(lib, mfr, first[0], first[1].id, inbox)
        if rest:
            _bulk_role(lib, mfr, rest)
        lib.spare[mfr] = [(image, entry.id) for image, entry in images[lodged:]]
    repo = lib.repo
    _seed_out(repo, lib.out)
    publish(repo, lib.out, now=lib.tick())
    lodged_total = sum(len(repo.role(name).signed.targets) for name in repo.head.roles)
    assert lodged_total == count, (lodged_total, count)
    return lib


def measure(count: int) -> dict[str, float]:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-publish-", dir=BENCH_DIR) as tmp:
        began = time.perf_counter()
        lib = build(count, Path(tmp))
        build_s = time.perf_counter() - began
        times: list[float] = []
        written = 0
        for round_ in range(ROUNDS):
            mfr = _manufacturer(round_ % MANUFACTURERS)
            image, entry = lib.spare[mfr].pop(0)
            _lodge(lib, mfr, image, entry, Path(tmp) / "inbox")
            now = lib.tick()
            began = time.perf_counter()
            report = publish(lib.repo, lib.out, now=now)
            times.append(time.perf_counter() - began)
            written = sum(report.written.values())
        return {
            "images": count,
            "build_s": build_s,
            "best_ms": min(times) * 1000,
            "median_ms": statistics.median(times) * 1000,
            "files": written,
        }


def main() -> None:
    """Print the time to publish one more image into each library size, and the ratio."""
    print(
        f"publish benchmark: one more image, {MANUFACTURERS} manufacturers, {ROUNDS} rounds "
        f"(target: largest <= {TARGET_RATIO:g} x smallest, by median)"
    )
    results = [measure(n) for n in SIZES]
    rows = (
        ("images in library", "images", "{:,.0f}"),
        ("build, not timed (s)", "build_s", "{:.1f}"),
        ("publish best (ms)", "best_ms", "{:.1f}"),
        ("publish median (ms)", "median_ms", "{:.1f}"),
        ("files written", "files", "{:.0f}"),
    )
    for label, key, form in rows:
        cells = "".join(f"{form.format(r[key]):>12}" for r in results)
        print(f"  {label:<24}{cells}")
    ratio = results[-1]["median_ms"] / results[0]["median_ms"]
    best = results[-1]["best_ms"] / results[0]["best_ms"]
    print(f"  ratio {SIZES[-1]:,} / {SIZES[0]:,}: {ratio:.2f} by median, {best:.2f} by best")


if __name__ == "__main__":
    main()
