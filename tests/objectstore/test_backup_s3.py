"""`backup --to s3://...` and `restore --from s3://...` against a real S3-API server on loopback
(moto's server mode): incremental runs, a restore that publishes the same bytes as the original,
the command line with --endpoint-url and boto3's credential chain, and the refusals (an altered
object, a prefix that is no backup, an unreachable endpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.backup.manifest import MARKER, object_key
from repo_tool.backup.s3_target import S3Target
from repo_tool.ops.backup import take_backup
from repo_tool.ops.publish import publish
from repo_tool.ops.publish_s3 import publish_to_s3
from repo_tool.ops.restore import restore
from repo_tool.state.repository import Repository

from .s3_server import S3Server, credentials_env, free_port

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CFL_REPO"}
    return subprocess.run(
        [str(CFL_REPO), *args],
        cwd=cwd,
        env=env | credentials_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def library(tmp_path: Path) -> LibraryFactory:
    factory, _ = standard_library(tmp_path, provider=True)
    return factory


def test_backups_to_object_storage_are_incremental_and_restore_to_the_same_bytes(
    library: LibraryFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    factory = library
    bucket = s3_server.new_bucket("backups/cfl/")
    first = take_backup(factory.repo, S3Target(bucket), now=factory.tick())
    assert first.files_copied == first.files and first.bytes_copied == first.bytes_total
    again = take_backup(factory.repo, S3Target(bucket), now=factory.tick())
    assert (again.files_copied, again.bytes_copied, again.files_reused) == (0, 0, again.files)

    image = make_image("3F01", 6)
    factory.import_cpl(
        [
            *factory.entries,
            make_entry(
                "CPL-0102",
                mfr="3F01",
                model="0B0C",
                fw="00000006",
                image_sha=mi_sha(image),
                device_type="GSME",
            ),
        ]
    )
    factory.publish()
    assert factory.ingest(factory.submit(image, ["CPL-0102"], mfr="3F01")).status == "accepted"
    listed = set(bucket.list())
    third = take_backup(factory.repo, S3Target(bucket), now=factory.tick())
    added = set(bucket.list()) - listed
    assert object_key(hashlib.sha256(image).hexdigest()) in added
    assert len(added) == third.files_copied + 1  # the new objects and one manifest
    assert third.files_copied < third.files // 2

    destination = tmp_path / "restored"
    report = restore(S3Target(bucket, option="--from"), destination)
    assert report.manifest == third.manifest and report.files == third.files
    restored = Repository.open(destination)
    assert restored.head == factory.repo.head
    shutil.copytree(factory.repo.path / "keys", destination / "keys")  # the custodians' step
    now = factory.tick()
    publish(factory.repo, tmp_path / "out-original", now=now)
    publish(restored, tmp_path / "out-restored", now=now)
    assert tree(tmp_path / "out-restored") == tree(tmp_path / "out-original")
    # The first manifest still restores the repository as it was then.
    old = restore(
        S3Target(bucket, option="--from"), tmp_path / "then", manifest_name=first.manifest
    )
    assert old.event_seq == first.event_seq < third.event_seq


def test_the_command_line_backs_up_and_restores_through_an_endpoint(
    library: LibraryFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket("prod/")
    url = f"s3://{bucket.location.bucket}/prod"
    repo = str(library.repo.path)
    done = cli(
        ["--repo", repo, "backup", "--to", url, "--endpoint-url", s3_server.endpoint, "--json"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["to"] == f"{url}/" and report["files_copied"] == report["files"]
    done = cli(
        [
            "restore",
            "--from",
            url,
            "--endpoint-url",
            s3_server.endpoint,
            "--repo",
            "N",
            "--expect-sha256",
            report["manifest_sha256"],
            "--json",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["manifest"] == report["manifest"]
    assert tree(tmp_path / "N" / "state") == tree(library.repo.path / "state")


def test_an_altered_object_in_the_bucket_is_refused_and_nothing_is_restored(
    library: LibraryFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket("b/")
    take_backup(library.repo, S3Target(bucket), now=library.tick())
    head = (library.repo.state_dir / "head.json").read_bytes()
    key = object_key(hashlib.sha256(head).hexdigest())
    bucket.put(key, head.replace(b'"event_seq": ', b'"event_seq": 1'), replace=True)
    with pytest.raises(RejectedInputError, match="hashing to"):
        restore(S3Target(bucket, option="--from"), tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    assert not (tmp_path / ".restored.restoring").exists()


def test_a_prefix_that_is_no_backup_is_refused_both_ways(
    library: LibraryFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket("lib/v1/")
    publish_to_s3(library.repo, bucket, now=library.tick())  # a published tree, not a backup
    listed = bucket.list()
    with pytest.raises(ConfigurationError, match=f"and no {MARKER}"):
        take_backup(library.repo, S3Target(bucket), now=library.tick())
    assert bucket.list() == listed
    with pytest.raises(ConfigurationError, match=f"--from: found no {MARKER}"):
        restore(S3Target(bucket, option="--from"), tmp_path / "restored")


def test_an_unreachable_endpoint_is_one_error_line(library: LibraryFactory, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = cli(
        [
            "--repo",
            str(library.repo.path),
            "backup",
            "--to",
            "s3://cfl-backup/x",
            "--endpoint-url",
            dead,
        ],
        tmp_path,
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable" in errors[0] and "Traceback" not in done.stderr
