"""What a routine provider change costs with the online ``cfl-provider`` role (issue 13), beside the
same change in a repository without it (the baseline, built in the same run).

Both libraries are real (repo_tool's own code, the test factory) with the same manufacturers, each
enrolled (delegated) by targets. The routine change is a CPL import. Measured for each:

- the metadata the repository signs and writes for it (targets, which carries every manufacturer's
  delegation, beside cfl-provider, which holds only the provider's documents);
- the metadata bytes a warm client fetches to read the new CPL (ngclient through a counting
  fetcher: timestamp, snapshot, then targets or cfl-provider, and the CPL itself);
- the time of the import (median of several).

Run: ``python -m bench.bench_provider [--manufacturers 200]`` or ``python -m bench``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.bench_client_metadata import CountingFetcher
from client.trust.session import Session, SessionPaths
from factory import FolderFetcher, LibraryFactory, make_entry
from metadata_templates.naming import PROVIDER_ROLE
from repo_tool.gateway.enrolment import build_enrolment
from repo_tool.ops.enrol import enrol

IMPORTS = 5


def build(tmp: Path, manufacturers: int, *, provider: bool) -> LibraryFactory:
    factory = LibraryFactory(tmp, provider=provider)
    factory.import_cpl([make_entry("CPL-0001")])
    for n in range(manufacturers):
        mfr = f"{0x1000 + n:04X}"
        factory.add_manufacturer(mfr)
        bundle = build_enrolment(
            [factory.mfr_signers[mfr]], now=factory.tick(), expires_in=timedelta(days=365)
        )
        with factory.repo.locked():
            enrol(factory.repo, mfr, bundle, now=factory.tick(), ceremony=False)
    factory.publish()
    return factory


def measure(factory: LibraryFactory, tmp: Path) -> dict[str, float]:
    """Import a new CPL IMPORTS times; returns the signed bytes, client bytes and median time."""
    session_paths = SessionPaths(tmp / "home" / "metadata", tmp / "home" / "cache")
    warm = FolderFetcher(factory.out)
    Session(session_paths, warm.base_url, warm, bootstrap_root=factory.root_bytes).cpl()
    timings: list[float] = []
    for n in range(IMPORTS):
        factory.entries = [make_entry(f"CPL-{n + 2:04d}")]
        start = time.perf_counter()
        factory.import_cpl()
        timings.append(time.perf_counter() - start)
    repo = factory.repo
    role = PROVIDER_ROLE if PROVIDER_ROLE in repo.head.roles else "targets"
    version = repo.head.committed_version(role)
    signed = len(repo.metadata_bytes(role, version))
    factory.publish()
    fetcher = CountingFetcher(factory.out)
    Session(session_paths, fetcher.base_url, fetcher, bootstrap_root=factory.root_bytes).cpl()
    return {
        "signed_bytes": signed,
        "client_bytes": fetcher.bytes,
        "import_ms": statistics.median(timings) * 1000,
    }


def main(manufacturers: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        baseline = measure(build(base / "targets", manufacturers, provider=False), base / "c1")
        online = measure(build(base / "provider", manufacturers, provider=True), base / "c2")
    print(f"bench_provider: a CPL import with {manufacturers} delegated manufacturers")
    print(f"{'':34}{'baseline (targets)':>20}{'cfl-provider':>16}{'ratio':>8}")
    for key, label in (
        ("signed_bytes", "metadata signed (bytes)"),
        ("client_bytes", "warm client fetches (bytes)"),
        ("import_ms", "cpl import (ms, median)"),
    ):
        ratio = online[key] / baseline[key]
        print(f"  {label:<32}{baseline[key]:>20,.0f}{online[key]:>16,.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manufacturers", type=int, default=200)
    main(parser.parse_args().manufacturers)
