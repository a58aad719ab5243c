"""What the one listing every `publish --to s3://...` starts with (``S3Bucket.list``) costs as the
library grows, against moto's S3 server on loopback (the server tests/objectstore uses).

A bucket is filled with the keys a library of N images holds, about four an image (the blob, its
``log/cfl-index`` file, its site page, and one metadata version: a publish per image adds a role,
a snapshot and sometimes a targets version, a batch publish fewer), then listed three times.

    .venv/bin/python -m bench.bench_s3_listing            # 1,000 and 10,000 images
    CFL_BENCH_S3_IMAGES=500,2000 .venv/bin/python -m bench.bench_s3_listing
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3

from repo_tool.publish.s3 import S3Bucket, S3Location, make_s3_client

KEYS_PER_IMAGE = 4


def _keys(images: int) -> Iterator[str]:
    for i in range(images):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        yield f"targets/121D/{sha}.image-{i}.ota"
        yield f"log/cfl-index/{sha}"
        yield f"site/image/{sha[:16]}.html"
        yield f"metadata/{i + 1}.snapshot.json"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(images: int, endpoint: str, name: str) -> tuple[int, list[float]]:
    """Fill bucket ``name`` with ``images`` images' keys; returns (keys listed, list timings)."""
    session = boto3.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    client = make_s3_client(endpoint, session=session)
    client.create_bucket(Bucket=name)
    bucket = S3Bucket(client, S3Location(name, "lib/"))

    def put(relative: str) -> None:
        client.put_object(Bucket=name, Key=bucket.location.key(relative), Body=b"x")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, _keys(images)))
    timings = []
    listed = 0
    for _ in range(3):
        start = time.perf_counter()
        listed = len(bucket.list())
        timings.append(time.perf_counter() - start)
    return listed, timings


def main() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sizes = [int(n) for n in os.environ.get("CFL_BENCH_S3_IMAGES", "1000,10000").split(",")]
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for number, images in enumerate(sizes):
            listed, timings = measure(images, f"http://127.0.0.1:{port}", f"bench-list-{number}")
            best = min(timings)
            print(
                f"s3 listing: {images:,} images, {listed:,} keys: best {best:.2f} s of "
                f"{', '.join(f'{t:.2f}' for t in timings)} ({best / max(listed, 1) * 1e6:.0f} us/key)",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
