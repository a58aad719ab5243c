"""Bucket stamps (repo_tool/publish/s3_stamps.py), against moto's S3 server: a one-image publish to
a bucket downloads the new role files and a bounded scrub of the others, not every role file and
not the whole CPL; any doubt (another publisher, a damaged record) downloads everything; and a role
file replaced in the bucket behind the publisher's back is found by the scrub within the bound the
docs promise. Requests are counted by a client wrapper handed to ``S3Bucket``, never by patching.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import VerificationError
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.plan import TIMESTAMP_PATH
from repo_tool.publish.s3 import S3Bucket
from repo_tool.publish.s3_stamps import SCRUB_SHARE, BucketStamps, stamps_record

from .s3_server import S3Server
from .test_s3_log_cost import CountingClient, counted, grow
from .test_s3_publish_flat import cache_pages, site_pages
from .test_s3_publish_flat import publish_with_site as publish

ROLE_FILE = re.compile(r"metadata/\d+\.(mfr-[0-9A-F]{4})\.json$")
EXTRA_MANUFACTURERS = 14  # with the standard two: 16 roles, two of them scrubbed a publish


def role_gets(bucket: S3Bucket, client: CountingClient) -> list[str]:
    return [
        k.removeprefix(bucket.location.prefix)
        for k in client.gets
        if ROLE_FILE.search(k.removeprefix(bucket.location.prefix))
    ]


def served_roles(bucket: S3Bucket) -> set[str]:
    timestamp = json.loads(bucket.get(TIMESTAMP_PATH) or b"{}")
    version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads(bucket.get(f"metadata/{version}.snapshot.json") or b"{}")
    return {
        f"metadata/{meta['version']}.{name}"
        for name, meta in snapshot["signed"]["meta"].items()
        if name.startswith("mfr-")
    }


@pytest.fixture
def warm(tmp_path: Path, s3_server: S3Server) -> tuple[LibraryFactory, S3Bucket, Path, list[int]]:
    """A library of 16 roles published twice with its site, so the stamps are written."""
    factory, _ = standard_library(tmp_path)
    makers = [f"4{n:03X}" for n in range(EXTRA_MANUFACTURERS)]
    images = {mfr: make_image(mfr, 1) for mfr in makers}
    entries = [
        make_entry(f"CPL-4{n:03d}", mfr=mfr, fw="00000001", image_sha=mi_sha(images[mfr]))
        for n, mfr in enumerate(makers)
    ]
    for mfr in makers:
        factory.add_manufacturer(mfr)
    factory.import_cpl([*factory.entries, *entries])
    factory.publish()
    for n, mfr in enumerate(makers):
        result = factory.ingest(factory.submit(images[mfr], [f"CPL-4{n:03d}"], mfr=mfr))
        assert result.status == "accepted", result.messages
    fw = [3000]
    bucket = s3_server.new_bucket()
    site_dir = tmp_path / "site-cache" / "s3-test"
    publish(factory, bucket, site_dir)
    grow(factory, 1, fw)
    publish(factory, bucket, site_dir)  # the first flat walk: reads everything, stamps it
    assert stamps_record(site_dir).is_file()
    return factory, bucket, site_dir, fw


def test_a_one_image_publish_downloads_the_new_role_and_a_scrub_not_every_role(warm) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, fw = warm
    grow(factory, 1, fw)
    bucket, client = counted(plain)

    publish(factory, bucket, site_dir)

    roles = served_roles(plain)
    got = role_gets(plain, client)
    new = f"metadata/{factory.repo.head.roles['mfr-121D']}.mfr-121D.json"
    assert new in got  # the changed role is read and checked
    assert len(got) <= 1 + -(-len(roles) // SCRUB_SHARE) < len(roles)
    assert site_pages(plain) == cache_pages(site_dir)


def test_an_unchanged_cpl_is_read_by_its_tail_and_in_full_only_when_scrubbed(warm) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, _ = warm
    bucket, client = counted(plain)
    whole = 0
    for _ in range(SCRUB_SHARE):
        client.gets.clear()
        client.ranged.clear()
        publish(factory, bucket, site_dir)  # nothing new: the CPL is the one stamped
        cpl = [k for k in client.gets if k.endswith(".cpl.json")]
        assert len(cpl) == 1
        whole += not client.ranged

    assert whole == 1  # read whole once in SCRUB_SHARE publishes (its scrub), else its 4 kB tail


def test_every_role_file_is_read_again_within_the_scrub_bound(warm) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, _ = warm
    bucket, client = counted(plain)

    for _ in range(SCRUB_SHARE):
        publish(factory, bucket, site_dir)  # nothing new: the site step walks all the same

    assert set(role_gets(plain, client)) == served_roles(plain)


def test_a_role_replaced_behind_the_publishers_back_is_found_by_the_scrub(warm) -> None:  # type: ignore[no-untyped-def]
    factory, bucket, site_dir, _ = warm
    victim = sorted(served_roles(bucket))[-1]
    original = bucket.get(victim) or b""
    bucket.put(victim, original.replace(b'"version"', b'"version" ', 1), replace=True)

    with pytest.raises(VerificationError, match=re.escape(victim.split("/")[-1].split(".")[1])):
        for _ in range(SCRUB_SHARE):
            publish(factory, bucket, site_dir)


def test_another_publisher_since_makes_the_walk_download_every_role(warm) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, fw = warm
    grow(factory, 1, fw)
    publish_to_s3(factory.repo, plain, now=factory.tick())  # no site: the stamps' timestamp is gone
    bucket, client = counted(plain)

    publish(factory, bucket, site_dir)

    assert set(role_gets(plain, client)) == served_roles(plain)


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{",
        b'{"magic": "cfl-bucket-stamps", "format": 1}',
        b'{"magic": "cfl-bucket-stamps", "format": 1, "bucket": "s3://elsewhere/", '
        b'"served": "", "files": []}',
        b'{"magic": "cfl-bucket-stamps", "format": 1, "bucket": 7, "served": [], "files": {}}',
    ],
)
def test_a_damaged_or_foreign_record_stamps_nothing(warm, damage: bytes) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, _ = warm
    stamps_record(site_dir).write_bytes(damage)
    bucket, client = counted(plain)

    publish(factory, bucket, site_dir)

    assert set(role_gets(plain, client)) == served_roles(plain)
    assert json.loads(stamps_record(site_dir).read_bytes())["magic"] == "cfl-bucket-stamps"


def test_a_record_for_another_timestamp_stamps_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    record = tmp_path / "s.stamps.json"
    seen = {TIMESTAMP_PATH: b"timestamp one"}
    first = BucketStamps(bucket, record, "0" * 64, seen)
    first.load()
    first.stamp("metadata/1.mfr-121D.json", "a" * 64, first.stat("x"))
    first.save()
    served = json.loads(record.read_bytes())["served"]

    later = BucketStamps(bucket, record, "f" * 64, {})
    later.load()
    assert not later.unchanged("metadata/1.mfr-121D.json", "a" * 64)
    same = BucketStamps(bucket, record, served, {})
    same.load()
    assert same.unchanged("metadata/1.mfr-121D.json", "a" * 64) is False  # 1 file: it is due
    assert not same.unchanged("metadata/1.mfr-121D.json", "b" * 64)


def test_the_scrub_takes_the_longest_unchecked_first(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    record = tmp_path / "s.stamps.json"
    names = [f"metadata/1.mfr-{n:04X}.json" for n in range(16)]
    seen = {TIMESTAMP_PATH: b"t"}
    stamps = BucketStamps(bucket, record, None, seen)
    stamps.load()
    for name in names:
        stamps.stamp(name, "a" * 64, None)
    stamps.save()
    served = json.loads(record.read_bytes())["served"]
    rounds = []
    for _ in range(SCRUB_SHARE):
        walk = BucketStamps(bucket, record, served, seen)
        walk.load()
        read = []
        for name in names:
            if not walk.unchanged(name, "a" * 64):
                walk.stamp(name, "a" * 64, None)
                read.append(name)
        walk.save()
        rounds.append(read)

    assert [len(r) for r in rounds] == [2] * SCRUB_SHARE
    assert sorted(n for r in rounds for n in r) == sorted(names)  # each once, oldest first
    assert rounds[0] == names[:2]


def test_a_tail_from_a_server_that_ignores_range_is_not_a_tail(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    bucket.put("targets/x.json", b"x" * 10_000, replace=False)
    assert bucket.get_tail("targets/x.json", 100) == b"x" * 100
    assert bucket.get_tail("targets/missing.json", 100) is None

    class IgnoresRange(CountingClient):
        def get_object(self, **kwargs: object) -> object:
            kwargs.pop("Range", None)
            return self.inner.get_object(**kwargs)

    deaf = S3Bucket(IgnoresRange(bucket.client), bucket.location)  # type: ignore[arg-type]
    assert deaf.get_tail("targets/x.json", 100) is None
