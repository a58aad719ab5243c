"""tuf-js, a TUF client written independently of python-tuf, reads a library published to object
storage (moto's S3 server on loopback) exactly as it reads one served by nginx from a folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from interop.test_tufjs import TUF_JS, Served, run_tufjs

from conftest import require_system
from factory import standard_library
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

from .s3_server import S3Server
from .test_publish_s3 import add_image

pytestmark = pytest.mark.system


def test_tufjs_verifies_every_image_from_the_bucket(tmp_path: Path, s3_server: S3Server) -> None:
    require_system("node", str(TUF_JS))
    factory, images = standard_library(tmp_path)
    bucket = s3_server.new_bucket(prefix="cfl/")
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    root_file = tmp_path / "trusted-root.json"
    root_file.write_bytes(factory.root_bytes)
    served = Served(factory, images, list(library.images), s3_server.http_url(bucket), root_file)

    code, document, stderr = run_tufjs(
        served, tmp_path / "tufjs-cache", sorted(i.target_path for i in library.images)
    )

    assert code == 0, stderr
    got = {t["path"]: (t["sha256"], t["length"]) for t in document["targets"]}
    assert got == {i.target_path: (i.sha256, i.length) for i in library.images}


def test_tufjs_verifies_the_bucket_after_partial_tiles_were_deleted(
    tmp_path: Path, s3_server: S3Server
) -> None:
    require_system("node", str(TUF_JS))
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(prefix="cfl/")
    deleted = 0
    for fw in (1001, 1002, 1003):
        add_image(factory, fw)
        report = publish_to_s3(factory.repo, bucket, now=factory.tick())
        deleted += report.partial_tiles_deleted
    assert deleted > 0  # superseded partial tiles left the bucket
    factory.publish()
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    root_file = tmp_path / "trusted-root.json"
    root_file.write_bytes(factory.root_bytes)
    served = Served(factory, {}, list(library.images), s3_server.http_url(bucket), root_file)

    code, document, stderr = run_tufjs(
        served, tmp_path / "tufjs-cache", sorted(i.target_path for i in library.images)
    )

    assert code == 0, stderr
    got = {t["path"]: (t["sha256"], t["length"]) for t in document["targets"]}
    assert got == {i.target_path: (i.sha256, i.length) for i in library.images}
