"""`cfl-repo publish --to s3:// --object-lock-days N` and `cfl-repo verify-bucket`, as real processes
against moto's S3 server with the real clock: the JSON documents scripts read, the exit codes, and
one error line (never a traceback) for every bad argument, leaving bucket and repository as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from factory import LibraryFactory, standard_library
from metadata_templates.errors import EXIT_FAILURE, EXIT_USAGE
from repo_tool.publish.bucket_check import FINDING_CODES

from .s3_server import S3Server, credentials_env, free_port

CFL_REPO = Path(sys.executable).parent / "cfl-repo"


def cfl_repo(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(credentials_env() if env is None else env), "COLUMNS": "200"},
        check=False,
        stdin=subprocess.DEVNULL,
    )


def head_of(factory: LibraryFactory) -> bytes:
    return (factory.repo.path / "state" / "head.json").read_bytes()


def test_publish_with_a_lock_then_verify_bucket_is_clean_and_a_hidden_object_fails_it(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(prefix="cfl/prod/", object_lock=True)
    url = f"s3://{bucket.location.bucket}/cfl/prod"
    endpoint = ("--endpoint-url", s3_server.endpoint)

    published = cfl_repo(
        "--repo",
        factory.repo.path,
        "publish",
        "--to",
        url,
        *endpoint,
        "--object-lock-days",
        "3650",
        "--json",
    )

    assert published.returncode == 0, published.stderr
    doc = json.loads(published.stdout)
    lock = doc["object_lock"]
    assert (lock["mode"], lock["days"]) == ("COMPLIANCE", 3650)
    # Blobs, root versions and index files; not snapshot and role versions, which a publish
    # deletes a grace period after they are superseded (repo_tool/publish/superseded.py).
    assert lock["locked"] == doc["uploaded"]["blobs"] + doc["uploaded"]["roots"] + sum(
        1 for k in bucket.list() if k.startswith("log/cfl-index/")
    )
    assert "object lock: " in published.stderr and "COMPLIANCE mode until" in published.stderr

    checked = cfl_repo("verify-bucket", url, *endpoint, "--json")

    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["schema_version"] == 1
    assert report["ok"] is True and report["findings"] == [] and report["problems"] == 0
    assert report["object_lock_enabled"] is True
    assert report["checked_objects"] == lock["locked"] + sum(
        1 for k in bucket.list() if k.startswith("log/tile/") and ".p/" not in k
    )
    assert report["skipped_mutable"] > 0
    assert checked.stderr.startswith(f"ok: {url}/: every immutable object is locked")

    bucket.client.delete_object(Bucket=bucket.location.bucket, Key="cfl/prod/metadata/1.root.json")
    failed = cfl_repo("verify-bucket", url, *endpoint, "--json", "--min-days", "4000")

    assert failed.returncode == EXIT_FAILURE, failed.stderr
    found = json.loads(failed.stdout)["findings"]
    assert {f["code"] for f in found} == {"delete-marker", "retention-expiring"}
    assert {f["code"] for f in found} <= set(FINDING_CODES)
    assert [f["key"] for f in found if f["code"] == "delete-marker"] == ["metadata/1.root.json"]
    lines = failed.stderr.splitlines()
    assert any(line.startswith("problem: delete-marker: metadata/1.root.json: ") for line in lines)
    assert any(line.startswith("warning: retention-expiring: ") for line in lines)
    assert lines[-1].startswith(f"error: {url}/ failed verification (1 problem(s), ")
    assert "Traceback" not in failed.stderr


def test_verify_bucket_warnings_alone_exit_zero(tmp_path: Path, s3_server: S3Server) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    url = f"s3://{bucket.location.bucket}/lib/v1"
    endpoint = ("--endpoint-url", s3_server.endpoint)
    assert (
        cfl_repo(
            "--repo",
            factory.repo.path,
            "publish",
            "--to",
            url,
            *endpoint,
            "--object-lock-days",
            "10",
        ).returncode
        == 0
    )

    checked = cfl_repo("verify-bucket", url, *endpoint)  # default --min-days 30 > 10

    assert checked.returncode == 0, checked.stderr
    assert "warning: retention-expiring: " in checked.stderr
    assert checked.stdout == ""


def test_publish_with_a_lock_to_a_bucket_without_object_lock_changes_nothing(
    tmp_path: Path, s3_server: S3Server
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket()
    head = head_of(factory)
    url = f"s3://{bucket.location.bucket}/lib/v1"

    result = cfl_repo(
        "--repo",
        factory.repo.path,
        "publish",
        "--to",
        url,
        "--endpoint-url",
        s3_server.endpoint,
        "--object-lock-days",
        "30",
    )

    assert result.returncode == EXIT_USAGE, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"error: {url}/: Object Lock: found not enabled, expected a bucket with Object Lock "
        "enabled (--object-lock-days needs it)"
    )
    assert lines[1].startswith("hint: create the bucket with --object-lock-enabled-for-bucket")
    assert len(lines) == 2 and result.stdout == ""
    assert bucket.list() == {}
    assert head_of(factory) == head


@pytest.mark.parametrize(
    ("case", "code", "text"),
    [
        (
            "days-zero",
            EXIT_USAGE,
            "Invalid value for '--object-lock-days': 0 is not in the range 1<=x<=36500",
        ),
        (
            "days-too-many",
            EXIT_USAGE,
            "Invalid value for '--object-lock-days': 36501 is not in the range",
        ),
        (
            "days-not-a-number",
            EXIT_USAGE,
            "Invalid value for '--object-lock-days': 'ten' is not a valid integer",
        ),
        (
            "days-without-to",
            EXIT_USAGE,
            "error: --object-lock-days: found 30, expected only with --to",
        ),
        ("days-with-out", EXIT_USAGE, "error: --out: found"),
        ("days-no-bucket", EXIT_USAGE, "error: bucket: found 'cfl-no-such-bucket'"),
        ("days-endpoint-down", EXIT_FAILURE, "error: S3 endpoint: unreachable"),
    ],
)
def test_bad_lock_arguments_to_publish_are_one_error_and_change_nothing(
    tmp_path: Path, s3_server: S3Server, case: str, code: int, text: str
) -> None:
    factory, _ = standard_library(tmp_path)
    bucket = s3_server.new_bucket(object_lock=True)
    head = head_of(factory)
    to = ["--to", f"s3://{bucket.location.bucket}/p", "--endpoint-url", s3_server.endpoint]
    args = {
        "days-zero": [*to, "--object-lock-days", "0"],
        "days-too-many": [*to, "--object-lock-days", "36501"],
        "days-not-a-number": [*to, "--object-lock-days", "ten"],
        "days-without-to": ["--object-lock-days", "30"],
        "days-with-out": [*to, "--out", tmp_path / "out", "--object-lock-days", "30"],
        "days-no-bucket": [
            "--to",
            "s3://cfl-no-such-bucket/p",
            "--endpoint-url",
            s3_server.endpoint,
            "--object-lock-days",
            "30",
        ],
        "days-endpoint-down": [
            "--to",
            "s3://cfl-x/p",
            "--endpoint-url",
            f"http://127.0.0.1:{free_port()}",
            "--object-lock-days",
            "30",
        ],
    }[case]

    result = cfl_repo("--repo", factory.repo.path, "publish", *args)

    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert sum(line.lower().startswith("error:") for line in result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert bucket.list() == {}
    assert head_of(factory) == head


@pytest.mark.parametrize(
    ("case", "code", "text"),
    [
        ("no-url", EXIT_USAGE, "Missing argument 's3://BUCKET/PREFIX'"),
        ("not-s3", EXIT_USAGE, "error: URL: found 'https://x/y', expected s3://BUCKET"),
        ("bad-bucket", EXIT_USAGE, "error: URL bucket: found 'A_B'"),
        ("dotdot-prefix", EXIT_USAGE, "error: URL prefix segment: found '..'"),
        ("min-days-negative", EXIT_USAGE, "Invalid value for '--min-days': -1 is not in the range"),
        ("bad-endpoint", EXIT_USAGE, "error: --endpoint-url: found 'ftp://x'"),
        ("no-credentials", EXIT_USAGE, "error: S3 credentials: found none"),
        ("no-bucket", EXIT_USAGE, "error: bucket: found 'cfl-no-such-bucket'"),
        ("endpoint-down", EXIT_FAILURE, "error: S3 endpoint: unreachable"),
    ],
)
def test_bad_arguments_to_verify_bucket_are_one_error_line(
    s3_server: S3Server, case: str, code: int, text: str
) -> None:
    bucket = s3_server.new_bucket(object_lock=True)
    url = f"s3://{bucket.location.bucket}/lib/v1"
    endpoint = ["--endpoint-url", s3_server.endpoint]
    env = credentials_env()
    args = {
        "no-url": endpoint,
        "not-s3": ["https://x/y", *endpoint],
        "bad-bucket": ["s3://A_B/p", *endpoint],
        "dotdot-prefix": [f"s3://{bucket.location.bucket}/../p", *endpoint],
        "min-days-negative": [url, *endpoint, "--min-days", "-1"],
        "bad-endpoint": [url, "--endpoint-url", "ftp://x"],
        "no-credentials": [url, *endpoint],
        "no-bucket": ["s3://cfl-no-such-bucket/p", *endpoint],
        "endpoint-down": [url, "--endpoint-url", f"http://127.0.0.1:{free_port()}"],
    }[case]
    if case == "no-credentials":
        env = {
            k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        }

    result = cfl_repo("verify-bucket", *args, "--json", env=env)

    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert sum(line.lower().startswith("error:") for line in result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_verify_bucket_help_teaches_with_an_example() -> None:
    result = cfl_repo("verify-bucket", "--help")

    assert result.returncode == 0
    assert "cfl-repo verify-bucket s3://cfl-firmware/library --min-days 90" in result.stdout
    for code in FINDING_CODES:
        assert code in result.stdout
    publish_help = cfl_repo("publish", "--help").stdout
    assert "--object-lock-days N" in publish_help
    assert "--object-lock-days 3650" in publish_help
