"""`publish --to s3://...` against a real S3-API server on loopback (moto's server mode).

What is shown: the upload order (timestamp last, a new root just before it, the site after), only
what the bucket lacks, cache headers and content types, never overwriting an immutable object
(another writer's upload, a server without conditional writes, a squatter with other bytes), a
crash at every step followed by a re-run, and a client (python-tuf ngclient via our verifier and
`cfl`) reading the bucket's HTTP endpoint exactly as a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from factory import (
    LibraryFactory,
    make_entry,
    make_image,
    mi_sha,
    standard_library,
)
from metadata_templates.errors import ConfigurationError, UnavailableError
from metadata_templates.naming import blob_name
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.ops.snapshot import stage_snapshot as stage_snapshot_op
from repo_tool.publish.plan import PUBLISH_STEPS
from repo_tool.publish.s3 import (
    IMMUTABLE_CACHE_CONTROL,
    NO_CACHE,
    S3Bucket,
    S3Location,
    object_headers,
    parse_s3_url,
    translate_s3_error,
)
from repo_tool.publish.s3_site import publish_site_to_s3
from repo_tool.verify.memo import VerifyMemo
from repo_tool.verify.sources import url_reader
from repo_tool.verify.walk import load_verified_library

from .s3_server import S3Server, credentials_env, free_port

BIN = Path(sys.executable).parent
CFL_REPO = BIN / "cfl-repo"
CFL = BIN / "cfl"


class Crash(Exception):
    """Stands in for a kill at a step boundary."""


def keys(bucket: S3Bucket) -> set[str]:
    return set(bucket.list())


def http(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as e:
        return e.code, _lower(e.headers.items()), b""


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def verified_targets(server: S3Server, bucket: S3Bucket, factory: LibraryFactory) -> set[str]:
    """The images a verifier reading the bucket over plain HTTP sees; asserts no problem."""
    library, problems = load_verified_library(
        url_reader(server.http_url(bucket)), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None
    return {image.target_path for image in library.images}


def add_image(factory: LibraryFactory, fw: int) -> tuple[str, str]:
    """Accept (not publish) one more image of 121D; returns (target path, sha256)."""
    image = make_image("121D", fw)
    entry = f"CPL-{fw:04d}"
    factory.import_cpl(
        [*factory.entries, make_entry(entry, fw=f"{fw:08X}", image_sha=mi_sha(image))]
    )
    factory.publish()  # the manufacturer declares against the published CPL
    result = factory.ingest(factory.submit(image, [entry]))
    assert result.status == "accepted", result.messages
    assert result.target is not None
    return result.target, hashlib.sha256(image).hexdigest()


# ------------------------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://cfl-lib", "cfl-lib", ""),
        ("s3://cfl-lib/", "cfl-lib", ""),
        ("s3://cfl-lib/prod", "cfl-lib", "prod/"),
        ("s3://cfl-lib/prod/v1/", "cfl-lib", "prod/v1/"),
    ],
)
def test_s3_urls_parse_to_bucket_and_prefix(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("https://cfl-lib/prod", "--to"),
        ("cfl-lib/prod", "--to"),
        ("s3://", "--to bucket"),
        ("s3://Upper_Case/x", "--to bucket"),
        ("s3://ab/x", "--to bucket"),
        ("s3://cfl-lib/../other", "--to prefix segment"),
        ("s3://cfl-lib/a/./b", "--to prefix segment"),
        ("s3://cfl-lib/a b", "--to prefix segment"),
        ("s3://cfl-lib//a", "--to prefix"),
    ],
    ids=[
        "not-s3",
        "no-scheme",
        "no-bucket",
        "bad-bucket",
        "short-bucket",
        "dotdot",
        "dot",
        "space",
        "empty-segment",
    ],
)
def test_bad_s3_urls_are_usage_errors_naming_the_field(url: str, field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{field}: found "):
        parse_s3_url(url)


@pytest.mark.parametrize(
    ("path", "cache_control", "content_type"),
    [
        ("metadata/timestamp.json", NO_CACHE, "application/json"),
        ("metadata/3.snapshot.json", IMMUTABLE_CACHE_CONTROL, "application/json"),
        ("metadata/2.root.json", IMMUTABLE_CACHE_CONTROL, "application/json"),
        ("metadata/7.mfr-121D.json", IMMUTABLE_CACHE_CONTROL, "application/json"),
        (
            "targets/121D/" + "a" * 64 + ".ESME-0001-00000002-aaaa.ota",
            IMMUTABLE_CACHE_CONTROL,
            "application/octet-stream",
        ),
        ("targets/cfl/" + "b" * 64 + ".cpl.json", IMMUTABLE_CACHE_CONTROL, "application/json"),
        ("site/index.html", NO_CACHE, "text/html; charset=utf-8"),
        ("site/static/search.js", NO_CACHE, "text/javascript; charset=utf-8"),
        ("site/static/style.css", NO_CACHE, "text/css; charset=utf-8"),
        ("site/feed.xml", NO_CACHE, "application/atom+xml"),
        ("site/static/favicon.svg", NO_CACHE, "image/svg+xml"),
    ],
)
def test_object_headers(path: str, cache_control: str, content_type: str) -> None:
    headers = object_headers(path)
    assert (headers.cache_control, headers.content_type) == (cache_control, content_type)


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


def test_a_refused_delete_names_the_delete_permissions_not_the_upload_ones() -> None:
    denied = _client_error("AccessDenied", 403)
    translated = translate_s3_error(
        denied, S3Location("cfl-lib", "p/"), "p/metadata/3.x.json", "delete"
    )
    assert "access denied to delete" in str(translated)
    assert "s3:DeleteObject (and, on a versioned bucket, s3:DeleteObjectVersion)" in str(translated)
    assert "s3:PutObject" not in str(translated)
    upload = translate_s3_error(denied, S3Location("cfl-lib", "p/"), "p/x", "upload")
    assert "s3:ListBucket, s3:GetObject and s3:PutObject" in str(upload)


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            botocore.exceptions.NoCredentialsError(),
            ConfigurationError,
            "S3 credentials: found none",
        ),
        (_client_error("NoSuchBucket", 404), ConfigurationError, "bucket: found 'cfl-lib'"),
        (_client_error("AccessDenied", 403), ConfigurationError, "access denied to upload"),
        (_client_error("InvalidAccessKeyId", 403), ConfigurationError, "access denied to upload"),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            UnavailableError,
            "S3 endpoint: unreachable",
        ),
        (_client_error("InternalError", 500), UnavailableError, "upload failed: HTTP 500"),
    ],
    ids=[
        "no-credentials",
        "no-bucket",
        "access-denied",
        "bad-key",
        "endpoint-down",
        "server-error",
    ],
)
def test_boto_errors_become_one_clear_error(error: Exception, kind: type, text: str) -> None:
    translated = translate_s3_error(error, S3Location("cfl-lib", "p/"), "p/x", "upload")
    assert type(translated) is kind
    assert text in str(translated)
    assert "\n" not in str(translated)


# ------------------------------------------------------------------------------ against a server


def test_publish_uploads_a_tree_that_verifies_over_http_with_the_cache_policy(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, images = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    uploaded: list[str] = []

    report = publish_to_s3(factory.repo, bucket, now=factory.tick(), on_upload=uploaded.append)

    head = factory.repo.head
    assert report.uploaded["timestamp"] == 1
    assert report.uploaded["roots"] == head.root_version
    assert report.uploaded["blobs"] == len(images) + 1  # and the CPL
    # the same files a folder publish wrote, by name and by bytes
    folder = {
        p.relative_to(factory.out).as_posix(): p.read_bytes()
        for p in factory.out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    bucket_keys = keys(bucket)
    # only what the current snapshot needs (no superseded role versions), each as the folder has it
    assert bucket_keys <= set(folder)
    assert {k for k in folder if k.startswith("targets/")} <= bucket_keys
    for key in uploaded:
        assert bucket.get(key) == folder[key], key
    assert uploaded[-1] == "metadata/timestamp.json"
    # timestamp is last; roots come right before it, after the snapshot
    assert uploaded.index(f"metadata/{head.snapshot_version}.snapshot.json") < uploaded.index(
        "metadata/1.root.json"
    )
    assert uploaded.index("metadata/1.root.json") == len(uploaded) - 2
    folder_library, _ = load_verified_library(
        url_reader(factory.out.as_uri()), factory.root_bytes, now=factory.now
    )
    assert folder_library is not None
    assert verified_targets(s3_server, bucket, factory) == {
        i.target_path for i in folder_library.images
    }
    base = s3_server.http_url(bucket)
    status, headers, body = http(base + "metadata/timestamp.json")
    assert (status, headers["cache-control"], headers["content-type"]) == (
        200,
        NO_CACHE,
        "application/json",
    )
    assert body == folder["metadata/timestamp.json"]
    status, headers, _ = http(base + f"metadata/{head.snapshot_version}.snapshot.json")
    assert (status, headers["cache-control"]) == (200, IMMUTABLE_CACHE_CONTROL)
    blob = next(k for k in bucket_keys if k.startswith("targets/121D/"))
    status, headers, body = http(base + blob)
    assert (status, headers["cache-control"], headers["content-type"]) == (
        200,
        IMMUTABLE_CACHE_CONTROL,
        "application/octet-stream",
    )
    assert hashlib.sha256(body).hexdigest() == blob.removeprefix("targets/121D/")[:64]
    # clients probe the next root: it must be a 404 (not cached by the CDN rules in hosting.md)
    assert http(base + f"metadata/{head.root_version + 1}.root.json")[0] == 404


def test_a_second_publish_uploads_nothing(tmp_path: Path, s3_server: S3Server) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    before = {k: v.etag for k, v in bucket.list().items()}

    report = publish_to_s3(factory.repo, bucket, now=factory.tick())

    assert report.signed_new_snapshot is False
    assert report.uploaded == dict.fromkeys(PUBLISH_STEPS, 0)
    assert {k: v.etag for k, v in bucket.list().items()} == before


def test_one_more_image_uploads_only_what_changed(tmp_path: Path, s3_server: S3Server) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    old_targets = verified_targets(s3_server, bucket, factory)
    target, sha = add_image(factory, 4)
    before = keys(bucket)
    uploaded: list[str] = []

    report = publish_to_s3(factory.repo, bucket, now=factory.tick(), on_upload=uploaded.append)

    head = factory.repo.head
    assert report.signed_new_snapshot is True
    new_blob = f"targets/{blob_name(target, sha)}"
    cpl_blobs = [k for k in uploaded if k.startswith("targets/cfl/")]
    assert len(cpl_blobs) == 1  # add_image imported a new CPL, so targets changed too
    # The transparency log's new tiles, then its checkpoint, land after the snapshot and before
    # the timestamp that binds them.
    log_files = [k for k in uploaded if k.startswith("log/")]
    assert log_files[-1] == "log/checkpoint" and any(k.startswith("log/tile/") for k in log_files)
    in_order = [
        new_blob,
        f"metadata/{head.roles['mfr-121D']}.mfr-121D.json",
        f"metadata/{head.targets_version}.targets.json",
        f"metadata/{head.snapshot_version}.snapshot.json",
        *log_files,
        "metadata/timestamp.json",
    ]
    assert sorted(uploaded) == sorted([*in_order, *cpl_blobs])
    assert [k for k in uploaded if k in in_order] == in_order
    assert keys(bucket) - before == set(uploaded) - {"metadata/timestamp.json", "log/checkpoint"}
    assert verified_targets(s3_server, bucket, factory) == old_targets | {target}


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_a_crash_at_any_step_leaves_the_previous_library_and_a_rerun_completes(
    tmp_path: Path, s3_server: S3Server, step: str
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    old_targets = verified_targets(s3_server, bucket, factory)
    target, _ = add_image(factory, 4)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        publish_to_s3(factory.repo, bucket, now=factory.tick(), between_steps=crash)

    assert verified_targets(s3_server, bucket, factory) == old_targets
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    assert verified_targets(s3_server, bucket, factory) == old_targets | {target}


@pytest.mark.parametrize("which", ["blob", "role", "snapshot"])
def test_an_object_squatting_on_a_planned_key_with_other_bytes_stops_before_the_timestamp(
    tmp_path: Path, s3_server: S3Server, which: str
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    old_timestamp = bucket.get("metadata/timestamp.json")
    target, sha = add_image(factory, 4)
    stage_snapshot_op(factory.repo, now=factory.tick())
    head = factory.repo.head
    squatted = {
        "blob": f"targets/{blob_name(target, sha)}",
        "role": f"metadata/{head.roles['mfr-121D']}.mfr-121D.json",
        "snapshot": f"metadata/{head.snapshot_version}.snapshot.json",
    }[which]
    bucket.put(squatted, b"someone else's bytes", replace=True)

    with pytest.raises(UnavailableError, match=f"{squatted}: exists with different content"):
        publish_to_s3(factory.repo, bucket, now=factory.tick())

    assert bucket.get(squatted) == b"someone else's bytes"  # never overwritten
    assert bucket.get("metadata/timestamp.json") == old_timestamp


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "other-bytes"])
def test_a_conditional_put_never_overwrites_an_object_another_writer_put(
    tmp_path: Path, s3_server: S3Server, same: bool
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    target, sha = add_image(factory, 4)
    blob = f"targets/{blob_name(target, sha)}"
    image = factory.repo.blobs.get(sha)
    bucket.put(blob, image if same else b"x" * len(image), replace=True)

    if same:
        uploaded: list[str] = []
        publish_to_s3(factory.repo, bucket, now=factory.tick(), on_upload=uploaded.append)
        assert blob not in uploaded
        assert f"metadata/{factory.repo.head.snapshot_version}.snapshot.json" in uploaded
        assert bucket.conditional_puts is True
    else:
        with pytest.raises(UnavailableError, match="exists with different content"):
            publish_to_s3(factory.repo, bucket, now=factory.tick())
        assert bucket.get(blob) == b"x" * len(image)


class NoConditionalWrites:
    """A client for a server that answers 501 to If-None-Match, as some S3-compatible stores do."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refused = 0

    def put_object(self, **kwargs: Any) -> Any:
        if "IfNoneMatch" in kwargs:
            self.refused += 1
            raise _client_error("NotImplemented", 501)
        return self.inner.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_without_conditional_writes_it_compares_before_each_put(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    inner = s3_server.new_bucket()
    publish_to_s3(factory.repo, inner, now=factory.tick())
    target, sha = add_image(factory, 4)
    role = f"metadata/{factory.repo.head.roles['mfr-121D']}.mfr-121D.json"
    client = NoConditionalWrites(inner.client)
    bucket = S3Bucket(client, inner.location)  # type: ignore[arg-type]
    inner.put(role, b"squatter", replace=True)

    with pytest.raises(UnavailableError, match="exists with different content"):
        publish_to_s3(factory.repo, bucket, now=factory.tick())

    assert client.refused == 1  # asked once, then remembered
    assert bucket.conditional_puts is False
    assert inner.get(role) == b"squatter"
    assert inner.get(f"targets/{blob_name(target, sha)}") == factory.repo.blobs.get(sha)


def test_the_site_is_rendered_from_the_bucket_and_only_changed_pages_are_uploaded(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    report = publish_to_s3(factory.repo, bucket, now=factory.tick())
    site_dir = tmp_path / "site-cache"
    first = publish_site_to_s3(
        bucket,
        served_before=report.served_before,
        trusted_root=factory.root_bytes,
        site_dir=site_dir,
        now=factory.now,
    )
    assert first > 0
    status, headers, body = http(s3_server.http_url(bucket) + "site/index.html")
    assert (status, headers["cache-control"], headers["content-type"]) == (
        200,
        NO_CACHE,
        "text/html; charset=utf-8",
    )
    assert b"00000003" in body

    again = publish_site_to_s3(
        bucket,
        served_before=report.served_before,
        trusted_root=factory.root_bytes,
        site_dir=site_dir,
        now=factory.now,
    )
    assert again == 0


def test_the_site_step_recalls_the_roles_it_verified_before_from_the_memo(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    publish_to_s3(factory.repo, bucket, now=factory.tick())
    site_dir = tmp_path / "site-cache"
    memos = tmp_path / "memo"
    walks = []
    for _ in range(2):
        memo = VerifyMemo(memos)
        publish_site_to_s3(
            bucket,
            served_before=None,
            trusted_root=factory.root_bytes,
            site_dir=site_dir,
            now=factory.now,
            memo=memo,
        )
        walks.append((memo.hits, memo.misses, memo.written))

    assert walks == [(0, 2, 2), (2, 0, 0)]  # two manufacturer roles: learnt, then recalled


# ---------------------------------------------------------------------------- the command line


def cfl_repo(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
        check=False,
    )


def cfl(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "CFL_HOME"}
    return subprocess.run(
        [str(CFL), "--home", str(home), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=base,
        check=False,
    )


def test_cfl_repo_publish_to_s3_then_cfl_refreshes_and_downloads_from_the_bucket(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, images = standard_library(tmp_path)
    bucket = s3_server.new_bucket(prefix="cfl/prod/")
    repo = factory.repo.path

    result = cfl_repo(
        "--repo",
        repo,
        "publish",
        "--to",
        f"s3://{bucket.location.bucket}/cfl/prod",
        "--endpoint-url",
        s3_server.endpoint,
        "--json",
        env=credentials_env(),
    )

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert doc["to"] == f"s3://{bucket.location.bucket}/cfl/prod/"
    assert doc["uploaded"]["timestamp"] == 1
    assert doc["site_uploaded"] > 0
    assert "published to s3://" in result.stderr

    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    home = tmp_path / "home"
    url = s3_server.http_url(bucket)
    for args in (("init", url, "--root", root), ("refresh",)):
        done = cfl(home, *args)
        assert done.returncode == 0, done.stderr
    listed = cfl(home, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    targets = sorted(i["target"] for i in json.loads(listed.stdout)["images"])
    assert len(targets) == len(images)
    out = tmp_path / "downloads"
    done = cfl(home, "download", *targets, "--out", out)
    assert done.returncode == 0, done.stderr
    got = {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.ota")}
    assert got == {hashlib.sha256(b).hexdigest() for b in images.values()}


@pytest.mark.parametrize(
    ("case", "code", "text"),
    [
        ("no-credentials", 2, "error: S3 credentials: found none"),
        ("no-bucket", 2, "error: bucket: found 'cfl-no-such-bucket'"),
        ("endpoint-down", 1, "error: S3 endpoint: unreachable"),
        ("bad-url", 2, "error: --to: found 'http://x/y'"),
        ("endpoint-without-to", 2, "error: --to: found None"),
        ("bad-endpoint", 2, "error: --endpoint-url: found 'ftp://x'"),
    ],
)
def test_publish_to_s3_errors_are_one_line_and_change_nothing(
    tmp_path: Path, s3_server: S3Server, case: str, code: int, text: str
) -> None:
    factory, _ = standard_library(tmp_path)
    head_before = (factory.repo.path / "state" / "head.json").read_bytes()
    bucket = s3_server.new_bucket()
    to = f"s3://{bucket.location.bucket}/p"
    env = credentials_env()
    args: list[str] = ["--to", to, "--endpoint-url", s3_server.endpoint]
    if case == "no-credentials":
        env = {
            k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        }
    elif case == "no-bucket":
        args = ["--to", "s3://cfl-no-such-bucket/p", "--endpoint-url", s3_server.endpoint]
    elif case == "endpoint-down":
        args = ["--to", to, "--endpoint-url", f"http://127.0.0.1:{free_port()}"]
    elif case == "bad-url":
        args = ["--to", "http://x/y"]
    elif case == "endpoint-without-to":
        args = ["--endpoint-url", s3_server.endpoint]
    elif case == "bad-endpoint":
        args = ["--to", to, "--endpoint-url", "ftp://x"]

    result = cfl_repo("--repo", factory.repo.path, "publish", *args, env=env)

    assert result.returncode == code, result.stderr
    assert result.stderr.splitlines()[0].startswith(text), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert keys(bucket) == set()
    assert (factory.repo.path / "state" / "head.json").read_bytes() == head_before
