"""A publish to object storage costs what changed, not the library's size (issue 26), against moto's
S3 server: it never lists the library (only ``log/tile/``, and ``site/`` when its site cache is not
known to match the bucket), it uploads only the site pages its build changed while the cache's
record names the timestamp the bucket served, and any doubt (a crash mid-upload, another
publisher, a damaged record) makes it compare every page again, so no page is ever left behind.
Requests are counted by a client wrapper handed to ``S3Bucket``, never by patching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factory import LibraryFactory, standard_library
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.s3 import S3Bucket, S3PublishReport
from repo_tool.publish.s3_site import publish_site_to_s3, upload_record
from repo_tool.publish.site_step import TreeState, publish_hint
from repo_tool.verify.memo import VerifyMemo

from .s3_server import S3Server
from .test_s3_log_cost import CountingClient, Crash, counted, grow


def publish_with_site(
    factory: LibraryFactory, bucket: S3Bucket, site_dir: Path, **site: Any
) -> S3PublishReport:
    """What `cfl-repo publish --to s3://...` runs: the metadata, then the site under the lease,
    told what the publish added and with the repository's verified-role memo."""

    def then(report: S3PublishReport, keep_alive: Any) -> None:
        before = TreeState(report.served_roles) if report.served_roles else None
        report.site_uploaded = publish_site_to_s3(
            bucket,
            served_before=report.served_before,
            trusted_root=factory.root_bytes,
            site_dir=site_dir,
            now=factory.now,
            hint=publish_hint(factory.repo, before),
            memo=VerifyMemo.of_repository(factory.repo.path),
            **site,
        )

    return publish_to_s3(factory.repo, bucket, now=factory.tick(), then=then)


def site_pages(bucket: S3Bucket) -> dict[str, bytes]:
    return {
        k.removeprefix("site/"): bucket.get(k) or b""
        for k in bucket.list("site/")
        if not k.startswith("site/.")
    }


def cache_pages(site_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(site_dir).as_posix(): p.read_bytes()
        for p in site_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def site_puts(client: CountingClient) -> list[str]:
    return [k for k in client.puts if "/site/" in "/" + k]


def started(
    tmp_path: Path, s3_server: S3Server
) -> tuple[LibraryFactory, S3Bucket, Path, list[int]]:
    factory, _ = standard_library(tmp_path)
    fw = [2000]
    grow(factory, 6, fw)
    bucket = s3_server.new_bucket()
    site_dir = tmp_path / "site-cache" / "s3-test"
    publish_with_site(factory, bucket, site_dir)
    return factory, bucket, site_dir, fw


def test_a_publish_after_one_deposit_lists_only_the_log_tiles(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    bucket, client = counted(plain)

    report = publish_with_site(factory, bucket, site_dir)

    assert client.listed == [plain.location.key("log/tile/")]  # never targets/, metadata/, site/
    assert report.uploaded["blobs"] == 2  # the image, and the CPL imported with it
    puts = site_puts(client)
    assert 0 < len(puts) == report.site_uploaded < len(cache_pages(site_dir)) / 2
    assert site_pages(plain) == cache_pages(site_dir)  # and the bucket's site is the cache


def test_a_first_publish_with_no_record_compares_every_page(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, _, _ = started(tmp_path, s3_server)
    other_cache = tmp_path / "elsewhere" / "s3-test"  # a new machine: the site is in the bucket
    bucket, client = counted(plain)

    report = publish_with_site(factory, bucket, other_cache)

    assert plain.location.key("site/") in client.listed
    # every page compared by ETag: only those that show the build's time differ
    assert 0 < report.site_uploaded < len(cache_pages(other_cache)) / 2
    assert site_pages(plain) == cache_pages(other_cache)
    assert upload_record(other_cache).is_file()


def test_a_crash_during_the_site_upload_makes_the_next_publish_compare_every_page(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 3, fw)
    bucket, client = counted(plain)
    done: list[str] = []

    def killed(path: str) -> None:
        done.append(path)
        raise Crash(path)  # after the first changed page is up, before the rest

    with pytest.raises(Crash):
        publish_with_site(factory, bucket, site_dir, on_upload=killed)
    assert len(done) == 1
    assert not upload_record(site_dir).exists()
    assert site_pages(plain) != cache_pages(site_dir)  # the cache is ahead of the bucket

    client.listed.clear()
    report = publish_with_site(factory, bucket, site_dir)  # nothing new: the same command again

    assert plain.location.key("site/") in client.listed
    assert report.site_uploaded > 0
    assert site_pages(plain) == cache_pages(site_dir)


def test_a_publish_from_elsewhere_since_makes_the_site_compare_every_page(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    publish_to_s3(factory.repo, plain, now=factory.tick())  # `--no-site`: the bucket moved on
    grow(factory, 1, fw)
    bucket, client = counted(plain)

    publish_with_site(factory, bucket, site_dir)

    assert plain.location.key("site/") in client.listed
    assert site_pages(plain) == cache_pages(site_dir)


@pytest.mark.parametrize(
    "record", [b"", b"not a digest\n", b"0" * 63 + b"\n", b"f" * 64 + b"\n" + b"x" * 200]
)
def test_a_damaged_or_foreign_record_is_not_trusted(
    tmp_path: Path, s3_server: S3Server, record: bytes
) -> None:
    factory, plain, site_dir, _ = started(tmp_path, s3_server)
    upload_record(site_dir).write_bytes(record)
    bucket, client = counted(plain)

    publish_with_site(factory, bucket, site_dir)

    assert plain.location.key("site/") in client.listed
    assert upload_record(site_dir).read_bytes() != record


def test_a_record_that_is_a_folder_is_one_error_and_the_metadata_is_up(
    tmp_path: Path, s3_server: S3Server
) -> None:
    from metadata_templates.errors import UnavailableError

    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    upload_record(site_dir).unlink()
    upload_record(site_dir).mkdir()
    grow(factory, 1, fw)

    with pytest.raises(UnavailableError, match="cannot remove"):
        publish_with_site(factory, plain, site_dir)
    head = factory.repo.head
    assert plain.get(f"metadata/{head.snapshot_version}.snapshot.json") is not None


def test_an_object_already_there_is_compared_by_head_not_downloaded(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)

    def crash(step: str) -> None:
        if step == "targets":
            raise Crash(step)

    with pytest.raises(Crash):
        publish_to_s3(factory.repo, plain, now=factory.tick(), between_steps=crash)
    bucket, client = counted(plain)

    report = publish_with_site(factory, bucket, site_dir)  # the re-run

    images = [k for k in client.heads if k.endswith(".ota")]
    assert report.already_there >= 2 and len(images) == 1  # the image and its bin were up already
    assert not [k for k in client.gets if k.endswith(".ota")]  # its ETag said so: not downloaded
    assert site_pages(plain) == cache_pages(site_dir)
