"""Attacks on a publish to object storage (issue 26's flat publish, the site's upload record and the
bucket stamps), against moto's S3 server: a broken or hostile S3-compatible server (HEAD without a
length, listings without sizes, a Range it refuses or answers short, 412 on a key that then reads
as missing, HEAD answering 403/500) gives one ``CflError`` or a correct result, never a traceback
and never a wrong "already there"; the site's incremental upload puts only the site's pages; a
damaged stamps record (garbage, huge, wrong types, a folder) trusts nothing; and an object
replaced behind the publisher's back is found within the bound docs/hosting.md promises. Servers
are made broken by client wrappers handed to ``S3Bucket``, never by patching.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from factory import LibraryFactory
from metadata_templates.errors import CflError, ConfigurationError, UnavailableError
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.publish.plan import TIMESTAMP_PATH
from repo_tool.publish.s3 import S3Bucket
from repo_tool.publish.s3_site import upload_record
from repo_tool.publish.s3_stamps import SCRUB_SHARE, stamps_record

from . import test_s3_stamps
from .s3_server import S3Server
from .test_publish_s3 import _client_error
from .test_s3_log_cost import CountingClient, Crash, counted, grow
from .test_s3_publish_flat import cache_pages, publish_with_site, site_pages, started
from .test_s3_stamps import publish, role_gets, served_roles

# The stamps tests' library of 16 roles, published twice with its site (the stamps are written).
warm = test_s3_stamps.warm


def crashed_before(factory: LibraryFactory, bucket: S3Bucket, step: str) -> None:
    """A publish killed before ``step``: what it uploaded so far is in the bucket."""

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        publish_to_s3(factory.repo, bucket, now=factory.tick(), between_steps=crash)


def served_timestamp(bucket: S3Bucket) -> bytes | None:
    return bucket.get(TIMESTAMP_PATH)


# --- the site's incremental upload -------------------------------------------------------------


def test_an_in_step_publish_uploads_the_sites_pages_and_not_its_build_bookkeeping(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    bucket, client = counted(plain)

    publish_with_site(factory, bucket, site_dir)  # the record names what the bucket served

    assert plain.location.key("site/") not in client.listed  # the incremental path ran
    dotted = [k for k in client.puts if "/site/." in "/" + k]
    # The full compare never uploads the build's manifest (111,000 lines at 100,000 images): the
    # changed-pages path must not either, on every publish that adds an image.
    assert dotted == []
    assert site_pages(plain) == cache_pages(site_dir)


def test_pages_deleted_from_the_bucket_come_back_once_the_record_is_removed(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, _ = started(tmp_path, s3_server)
    pages = sorted(site_pages(plain))
    for page in pages[::3]:  # someone deletes a third of the site by hand
        plain.client.delete_object(
            Bucket=plain.location.bucket, Key=plain.location.key("site/" + page)
        )
    upload_record(site_dir).unlink()  # what docs/hosting.md tells the operator to do then

    publish_with_site(factory, plain, site_dir)

    assert site_pages(plain) == cache_pages(site_dir)


def test_a_crash_between_the_basis_and_the_upload_record_compares_every_page_next(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 2, fw)
    publish_with_site(factory, plain, site_dir)
    upload_record(site_dir).unlink()  # the basis was written, the record not: killed in between
    grow(factory, 1, fw)
    bucket, client = counted(plain)

    publish_with_site(factory, bucket, site_dir)

    assert plain.location.key("site/") in client.listed
    assert site_pages(plain) == cache_pages(site_dir)


# --- a broken or hostile server: the immutable objects ------------------------------------------


class NoLengthHead(CountingClient):
    """A server whose HEAD answers without Content-Length (some proxies strip it)."""

    def head_object(self, **kwargs: Any) -> Any:
        response = dict(super().head_object(**kwargs))
        response.pop("ContentLength", None)
        return response


def test_a_head_without_a_length_compares_the_bytes_rather_than_calling_it_a_conflict(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, site_dir, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    crashed_before(factory, plain, "targets")  # the image and its bin are up already
    bucket = S3Bucket(NoLengthHead(plain.client), plain.location)  # type: ignore[arg-type]

    report = publish_with_site(factory, bucket, site_dir)  # the same command again

    assert report.already_there >= 2
    assert report.timestamp_version == factory.repo.head.timestamp_version
    assert site_pages(plain) == cache_pages(site_dir)


class LyingEtagHead(CountingClient):
    """A server whose HEAD says an MD5 ETag that is not the object's (a proxy, a bug)."""

    def head_object(self, **kwargs: Any) -> Any:
        response = dict(super().head_object(**kwargs))
        response["ETag"] = '"' + hashlib.md5(b"not it", usedforsecurity=False).hexdigest() + '"'
        return response


def test_a_wrong_md5_etag_on_the_same_bytes_is_settled_by_the_bytes(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, _, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    crashed_before(factory, plain, "targets")
    bucket = S3Bucket(LyingEtagHead(plain.client), plain.location)  # type: ignore[arg-type]

    report = publish_to_s3(factory.repo, bucket, now=factory.tick())

    assert report.already_there >= 2
    assert report.timestamp_version == factory.repo.head.timestamp_version


def test_a_foreign_object_of_the_same_size_is_a_conflict_and_the_timestamp_stays(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, _, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    crashed_before(factory, plain, "targets")
    before = served_timestamp(plain)
    image = next(
        k.removeprefix(plain.location.prefix)
        for k in plain.list("targets/")
        if k.endswith(".ota") and (plain.get(k) or b"")
    )
    data = plain.get(image) or b""
    bucket, _ = counted(plain)
    # Someone else's object of the same length under the same (immutable) name, for every image:
    # whichever the re-run meets first, it must not be "already there".
    for key in [k for k in plain.list("targets/") if k.endswith(".ota")]:
        old = plain.get(key) or b""
        plain.client.put_object(
            Bucket=plain.location.bucket, Key=plain.location.key(key), Body=bytes(reversed(old))
        )
    assert data != bytes(reversed(data))

    with pytest.raises(UnavailableError, match="exists with different content"):
        publish_to_s3(factory.repo, bucket, now=factory.tick())
    assert served_timestamp(plain) == before


class HeadFails(CountingClient):
    def __init__(self, inner: Any, code: str, status: int) -> None:
        super().__init__(inner)
        self.code, self.status = code, status

    def head_object(self, **kwargs: Any) -> Any:
        raise _client_error(self.code, self.status)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [("403", 403, ConfigurationError), ("500", 500, UnavailableError)],
)
def test_a_head_that_fails_is_one_error_and_the_timestamp_stays(
    tmp_path: Path, s3_server: S3Server, code: str, status: int, kind: type[CflError]
) -> None:
    factory, plain, _, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    crashed_before(factory, plain, "targets")
    before = served_timestamp(plain)
    bucket = S3Bucket(HeadFails(plain.client, code, status), plain.location)  # type: ignore[arg-type]

    with pytest.raises(kind):
        publish_to_s3(factory.repo, bucket, now=factory.tick())
    assert served_timestamp(plain) == before


class RefusesThenMissing(CountingClient):
    """A server that answers 412 to a conditional put of a key that then reads as missing."""

    def put_object(self, **kwargs: Any) -> Any:
        if "IfNoneMatch" in kwargs and str(kwargs["Key"]).endswith(".ota"):
            raise _client_error("PreconditionFailed", 412)
        return super().put_object(**kwargs)


def test_a_412_on_a_key_that_reads_as_missing_is_one_error_and_the_timestamp_stays(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, _, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    before = served_timestamp(plain)
    bucket = S3Bucket(RefusesThenMissing(plain.client), plain.location)  # type: ignore[arg-type]

    with pytest.raises(UnavailableError):
        publish_to_s3(factory.repo, bucket, now=factory.tick())
    assert served_timestamp(plain) == before  # never "already there": nothing later went up


class SizelessListing(CountingClient):
    """A server whose ListObjectsV2 entries carry no Size (nor ETag)."""

    def get_paginator(self, name: str) -> Any:
        inner = self.inner.get_paginator(name)

        class Pages:
            def paginate(self, **kwargs: Any) -> Any:
                for page in inner.paginate(**kwargs):
                    page = dict(page)
                    page["Contents"] = [
                        {k: v for k, v in item.items() if k not in ("Size", "ETag")}
                        for item in page.get("Contents", [])
                    ]
                    yield page

        return Pages()


def test_a_listing_without_sizes_uploads_the_pages_again_rather_than_a_traceback(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, plain, _, fw = started(tmp_path, s3_server)
    grow(factory, 1, fw)
    bucket = S3Bucket(SizelessListing(plain.client), plain.location)  # type: ignore[arg-type]
    other_cache = tmp_path / "elsewhere" / "s3-test"  # no record: the site is listed and compared

    publish_with_site(factory, bucket, other_cache)

    assert site_pages(plain) == cache_pages(other_cache)


# --- a broken or hostile server: the CPL's ranged read ------------------------------------------


class RangeAnswer(CountingClient):
    """A server that answers a ranged GET with 416, a short body or garbage."""

    def __init__(self, inner: Any, how: str) -> None:
        super().__init__(inner)
        self.how = how

    def get_object(self, **kwargs: Any) -> Any:
        if "Range" not in kwargs:
            return super().get_object(**kwargs)
        self.ranged.append(kwargs["Key"])
        if self.how == "416":
            raise _client_error("InvalidRange", 416)
        response = dict(self.inner.get_object(**kwargs))
        data = response["Body"].read()
        body = {"short": data[-40:], "garbage": b"\xff{]" * 100, "head": data[:100]}[self.how]

        class Body:
            def read(self, amt: int | None = None) -> bytes:
                return body if amt is None else body[:amt]

        response["Body"] = Body()
        return response


@pytest.mark.parametrize("how", ["416", "short", "garbage", "head"])
def test_a_ranged_read_the_server_botches_reads_the_cpl_whole(warm, how: str) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, _ = warm
    client = RangeAnswer(plain.client, how)
    bucket = S3Bucket(client, plain.location)  # type: ignore[arg-type]

    publish(factory, bucket, site_dir)  # nothing new: the CPL is the one stamped

    assert client.ranged  # it asked for the tail
    cpl = [k for k in client.gets if k.endswith(".cpl.json")]
    assert cpl  # and, the tail being no use, read it whole
    assert site_pages(plain) == cache_pages(site_dir)


# --- damaged stamps records ---------------------------------------------------------------------


def _record_of_the_right_timestamp(site_dir: Path, files: object) -> bytes:
    doc = json.loads(stamps_record(site_dir).read_bytes())
    doc["files"] = files
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "damage",
    [
        "huge",
        "folder",
        "files-a-dict",
        "files-of-wrong-types",
        "files-nested",
        "files-wrong-digests",
        "null",
    ],
)
def test_a_damaged_stamps_record_trusts_nothing_and_is_no_traceback(warm, damage: str) -> None:  # type: ignore[no-untyped-def]
    factory, plain, site_dir, _ = warm
    record = stamps_record(site_dir)
    roles = sorted(served_roles(plain))
    if damage == "huge":
        record.write_bytes(b'{"magic": "' + b"x" * 40_000_000 + b'"}')
    elif damage == "folder":
        record.unlink()
        record.mkdir()
    elif damage == "null":
        record.write_bytes(b"null")
    else:
        files: object = {
            "files-a-dict": {r: "a" * 64 for r in roles},
            "files-of-wrong-types": [[1, 2], [None, "a" * 64], [roles[0], 7], "ab"],
            "files-nested": [[[r], ["a" * 64]] for r in roles],
            "files-wrong-digests": [[r, "0" * 64] for r in roles],
        }[damage]
        record.write_bytes(_record_of_the_right_timestamp(site_dir, files))
    bucket, client = counted(plain)

    publish(factory, bucket, site_dir)

    assert set(role_gets(plain, client)) == served_roles(plain)  # every role downloaded
    assert site_pages(plain) == cache_pages(site_dir)


# --- objects replaced behind the publisher's back -----------------------------------------------


def test_a_role_replaced_while_images_keep_coming_is_found_within_the_bound(warm) -> None:  # type: ignore[no-untyped-def]
    from metadata_templates.errors import VerificationError

    factory, bucket, site_dir, fw = warm
    changing = f"metadata/{factory.repo.head.roles['mfr-121D']}.mfr-121D.json"
    victim = sorted(served_roles(bucket) - {changing})[0]  # one the new images never touch
    original = bucket.get(victim) or b""
    bucket.put(victim, original.replace(b'"version"', b'"version" ', 1), replace=True)

    found = None
    for n in range(1, SCRUB_SHARE + 1):
        grow(factory, 1, fw)
        try:
            publish(factory, bucket, site_dir)
        except VerificationError as e:
            found = n
            assert victim.split(".")[1] in str(e)
            break
    assert found is not None  # within SCRUB_SHARE publishes (16 roles and the CPL: 3 a publish)


def test_a_cpl_replaced_behind_the_publishers_back_is_found_within_the_bound(warm) -> None:  # type: ignore[no-untyped-def]
    from metadata_templates.errors import VerificationError

    factory, plain, site_dir, _ = warm
    bucket, client = counted(plain)
    publish(factory, bucket, site_dir)
    served = [k for k in client.gets if k.endswith(".cpl.json")]  # the CPL the walk reads
    cpl = served[0].removeprefix(plain.location.prefix)
    original = plain.get(cpl) or b""
    # Same length and the same tail (the envelope the site shows): only a whole read tells.
    damaged = original.replace(b'"CPL-', b'"CPX-', 1)
    assert damaged != original and len(damaged) == len(original)
    plain.put(cpl, damaged, replace=True)

    with pytest.raises((UnavailableError, VerificationError)):
        for _ in range(SCRUB_SHARE):
            publish(factory, bucket, site_dir)
