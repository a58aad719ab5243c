"""Benchmark of a one-image publish to object storage, with its website, as the library grows.

Against moto's S3 server on loopback (the server tests/objectstore uses): a library of each size is
built as ``bench_publish`` builds them (every manufacturer split into hash bins by ``bench_bulk``),
published to its own bucket once with the website and once more after one deposit (not timed:
that publish writes the bucket stamps, repo_tool/publish/s3_stamps.py), and then each round
ingests one more image (not timed) and runs what `cfl-repo publish --to s3://...` runs: the metadata
(``publish_to_s3``) and then the website (``publish_site_to_s3``) under the same lease, timed
together. Every S3 request is counted by a client wrapper handed to ``S3Bucket`` (listing pages,
GETs, HEADs, PUTs), so the figures say what a publish asks of a real bucket, where each request is
a round trip, beside what moto's loopback wall time says.

The baseline is the smallest size in the same run: issue 26 asks that the cost not grow with the
library. For the code before a change, run this file with ``PYTHONPATH`` at a checkout of it
(``git worktree add /tmp/base REV``); the script speaks both that code's interface (a listing
handed around) and this one's.

Knobs: ``CFL_BENCH_S3_SIZES`` (default ``300,3000``), ``CFL_BENCH_S3_ROUNDS`` (3).
Run: ``python -m bench.bench_s3_publish``.
"""

from __future__ import annotations

import inspect
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from bench.bench_s3_listing import _free_port

SIZES = tuple(int(n) for n in os.environ.get("CFL_BENCH_S3_SIZES", "300,3000").split(","))
ROUNDS = int(os.environ.get("CFL_BENCH_S3_ROUNDS", "3"))
TARGET_RATIO = 1.5


class Counting:
    """A boto3 S3 client that counts requests by kind (a listing counts one per page)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: Counter[str] = Counter()

    def put_object(self, **kwargs: Any) -> Any:
        self.requests["PUT"] += 1
        return self.inner.put_object(**kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        self.requests["GET"] += 1
        return self.inner.get_object(**kwargs)

    def head_object(self, **kwargs: Any) -> Any:
        self.requests["HEAD"] += 1
        return self.inner.head_object(**kwargs)

    def delete_object(self, **kwargs: Any) -> Any:
        self.requests["DELETE"] += 1
        return self.inner.delete_object(**kwargs)

    def get_paginator(self, name: str) -> Any:
        return _Pages(self.inner.get_paginator(name), self.requests)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _Pages:
    def __init__(self, inner: Any, requests: Counter[str]) -> None:
        self.inner = inner
        self.requests = requests

    def paginate(self, **kwargs: Any) -> Any:
        for page in self.inner.paginate(**kwargs):
            self.requests["LIST"] += 1
            yield page


def _publish(lib: Any, bucket: Any, site_dir: Path) -> Any:
    """The metadata, then the website, as repo_tool/cli/publish_s3.py runs them (either interface)."""
    from repo_tool.ops.publish_s3 import publish_to_s3
    from repo_tool.publish.s3_site import publish_site_to_s3
    from repo_tool.verify.memo import VerifyMemo

    listing_era = "listing" in inspect.signature(publish_site_to_s3).parameters
    root = lib.repo.metadata_bytes("root", 1)
    memo = VerifyMemo.of_repository(lib.repo.path)
    now = lib.tick()

    def site(report: Any, *rest: Any) -> None:
        if listing_era:
            report.site_uploaded = publish_site_to_s3(
                bucket, rest[0], trusted_root=root, site_dir=site_dir, now=now, memo=memo
            )
        else:
            from repo_tool.publish.site_step import TreeState, publish_hint

            before = TreeState(report.served_roles) if report.served_roles else None
            report.site_uploaded = publish_site_to_s3(
                bucket,
                served_before=report.served_before,
                hint=publish_hint(lib.repo, before),
                trusted_root=root,
                site_dir=site_dir,
                now=now,
                memo=memo,
            )

    done = publish_to_s3(lib.repo, bucket, now=now, then=site)
    return done[0] if isinstance(done, tuple) else done  # (report, listing) before


def measure(size: int, endpoint: str, work: Path) -> list[dict[str, Any]]:
    from bench import bench_publish, bench_site
    from bench.bench_bulk import _split_all
    from repo_tool.publish.s3 import S3Bucket, S3Location, make_s3_client

    lib = bench_publish.build(size, work / "lib")
    _split_all(lib, work / "split-inbox")
    session = boto3.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    client = make_s3_client(endpoint, session=session)
    name = f"bench-publish-{size}"
    client.create_bucket(Bucket=name)
    counting = Counting(client)
    bucket = S3Bucket(counting, S3Location(name, "library/"))  # type: ignore[arg-type]
    site_dir = work / "site-cache"
    began = time.perf_counter()
    _publish(lib, bucket, site_dir)
    print(
        f"  {size:,} images: first publish {time.perf_counter() - began:.1f} s "
        f"({sum(counting.requests.values()):,} requests)",
        flush=True,
    )
    # One deposit published untimed: the first publish built the site in full, so it is this one
    # that walks flat for the first time and writes the bucket stamps every later one uses.
    bench_site._ingest_one(lib, 0, work / "inbox")
    _publish(lib, bucket, site_dir)
    rounds = []
    for number in range(1, ROUNDS + 1):
        bench_site._ingest_one(lib, number, work / "inbox")
        counting.requests.clear()
        began = time.perf_counter()
        report = _publish(lib, bucket, site_dir)
        took = time.perf_counter() - began
        rounds.append(
            {
                "seconds": took,
                "requests": dict(counting.requests),
                "uploaded": sum(report.uploaded.values()),
                "site_uploaded": report.site_uploaded,
            }
        )
        print(f"  {size:,} images, round {number}: {_line(rounds[-1])}", flush=True)
    return rounds


def _line(round_: dict[str, Any]) -> str:
    requests = round_["requests"]
    kinds = ", ".join(f"{k} {requests[k]}" for k in sorted(requests))
    return (
        f"{round_['seconds']:.2f} s; {sum(requests.values())} requests ({kinds}); "
        f"{round_['uploaded']} object(s) and {round_['site_uploaded']} page(s) uploaded"
    )


def main() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    results: dict[int, list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="cfl-bench-s3-publish-") as tmp:
            for size in SIZES:
                results[size] = measure(size, f"http://127.0.0.1:{port}", Path(tmp) / str(size))
    finally:
        server.stop()
    base = SIZES[0]
    base_s = statistics.median(r["seconds"] for r in results[base])
    base_requests = statistics.median(sum(r["requests"].values()) for r in results[base])
    print(f"s3 publish of one image with its website (load {os.getloadavg()[0]:.1f}):")
    for size in SIZES:
        seconds = statistics.median(r["seconds"] for r in results[size])
        requests = statistics.median(sum(r["requests"].values()) for r in results[size])
        ratio = seconds / base_s
        verdict = "" if size == base else f" ({ratio:.2f}x; target <= {TARGET_RATIO}x)"
        print(
            f"  {size:,} images: median {seconds:.2f} s, {requests:.0f} requests "
            f"({requests / base_requests:.2f}x the {base:,}-image requests){verdict}"
        )


if __name__ == "__main__":
    main()
