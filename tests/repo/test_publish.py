"""Publishing: the write order, idempotence, writing only what is missing, immutability, and the
crash test: a publish stopped before any step (by an exception or by SIGKILL) leaves the previous
library valid for `load_verified_library` and for python-tuf ngclient."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory import (
    LibraryFactory,
    make_entry,
    make_image,
    mi_sha,
    standard_library,
    updater_for,
)
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import UnavailableError
from metadata_templates.locking import exclusive_lock
from metadata_templates.naming import blob_name
from repo_tool.ops.publish import publish
from repo_tool.publish.folder import LOCK_NAME, PUBLISH_STEPS
from repo_tool.publish.superseded import EXPIRY_STEP
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

NEW_MFR = "5E5E"


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def verified_targets(factory: LibraryFactory) -> set[str]:
    """The image targets of the published tree; asserts it verifies with no problem at all."""
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None
    return {image.target_path for image in library.images}


@dataclass
class Staged:
    """A published library with one more deposit accepted but not yet published."""

    factory: LibraryFactory
    new_target: str
    new_sha: str
    old_targets: set[str]


def staged_library(tmp: Path, kind: str) -> Staged:
    """``kind`` "existing": 121D's next image (its role changes). "new": the first deposit of a
    newly registered manufacturer (targets changes too: the delegation appears)."""
    factory, _ = standard_library(tmp)
    a4, n1 = make_image("121D", 4), make_image(NEW_MFR, 1)
    factory.import_cpl(
        [
            *factory.entries,
            make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(a4)),
            make_entry("CPL-0501", mfr=NEW_MFR, fw="00000001", image_sha=mi_sha(n1)),
        ]
    )
    factory.add_manufacturer(NEW_MFR)
    factory.publish()
    old_targets = verified_targets(factory)
    image, entry, mfr = (
        (a4, "CPL-0004", "121D") if kind == "existing" else (n1, "CPL-0501", NEW_MFR)
    )
    result = factory.ingest(factory.submit(image, [entry], mfr=mfr))
    assert result.status == "accepted" and result.target is not None
    return Staged(factory, result.target, hashlib.sha256(image).hexdigest(), old_targets)


# ---------------------------------------------------------------------------------------- order


def test_publish_writes_blobs_roles_targets_snapshot_then_timestamp(tmp_path: Path) -> None:
    staged = staged_library(tmp_path, "new")
    factory = staged.factory
    head = factory.repo.head
    old_timestamp = (factory.out / "metadata" / "timestamp.json").read_bytes()
    before = files(factory.out)
    seen: list[tuple[str, set[str]]] = []

    report = publish(
        factory.repo,
        factory.out,
        now=factory.tick(),
        between_steps=lambda step: seen.append((step, files(factory.out) - before)),
    )

    head = factory.repo.head
    blob = f"targets/{blob_name(staged.new_target, staged.new_sha)}"
    role = f"metadata/{head.roles['mfr-' + NEW_MFR]}.mfr-{NEW_MFR}.json"
    targets = f"metadata/{head.targets_version}.targets.json"
    snapshot = f"metadata/{head.snapshot_version}.snapshot.json"
    assert [step for step, _ in seen] == [*PUBLISH_STEPS, EXPIRY_STEP]
    # The log's new tiles and its checkpoint land after the snapshot and before the timestamp.
    log_files = {f for f in files(factory.out) - before if f.startswith("log/")}
    assert any(f.startswith("log/tile/0/") for f in log_files)
    # What had been written when each step began:
    assert dict(seen) == {
        "blobs": set(),
        "delegated-roles": {blob},
        "targets": {blob, role},
        "snapshot": {blob, role, targets},
        "log": {blob, role, targets, snapshot},
        "roots": {blob, role, targets, snapshot} | log_files,
        "timestamp": {blob, role, targets, snapshot} | log_files,
        # Superseded versions go only after the timestamp; none is a day old here.
        EXPIRY_STEP: {blob, role, targets, snapshot} | log_files,
    }
    assert files(factory.out) - before == {blob, role, targets, snapshot} | log_files
    assert (factory.out / "metadata" / "timestamp.json").read_bytes() != old_timestamp
    assert report.written == {
        "roots": 0,
        "blobs": 1,
        "delegated-roles": 1,
        "targets": 1,
        "snapshot": 1,
        "log": 4,  # entry bundle, level-0 tile, index file, checkpoint
        "timestamp": 1,
    }
    assert verified_targets(factory) == staged.old_targets | {staged.new_target}


def test_publishing_one_more_image_writes_only_what_is_missing(tmp_path: Path) -> None:
    staged = staged_library(tmp_path, "existing")
    factory = staged.factory
    before = tree_digest(factory.out)

    report = factory.publish()

    after = tree_digest(factory.out)
    head = factory.repo.head
    assert report.signed_new_snapshot is True
    assert report.written == {
        "roots": 0,
        "blobs": 1,
        "delegated-roles": 1,
        "targets": 0,
        "snapshot": 1,
        "log": 4,  # the deposit's entry bundle, level-0 tile and index file; the checkpoint
        "timestamp": 1,
    }
    new_log = {f for f in set(after) - set(before) if f.startswith("log/")}
    assert len(new_log) == 3 and f"log/cfl-index/{staged.new_sha}" in new_log
    assert set(after) - set(before) - new_log == {
        f"targets/{blob_name(staged.new_target, staged.new_sha)}",
        f"metadata/{head.roles['mfr-121D']}.mfr-121D.json",
        f"metadata/{head.snapshot_version}.snapshot.json",
    }
    # What the previous publish served of the log's partial tiles stayed for one publish of
    # grace; now superseded, it is deleted (repo_tool/tlog/partial_tiles.py).
    removed = set(before) - set(after)
    assert removed and all(n.startswith("log/tile/") and ".p/" in n for n in removed), removed
    changed = {name for name in before if name in after and before[name] != after[name]}
    # the two mutable files, the pruner's mark and the superseded-metadata ledger (dotfiles:
    # never served)
    assert changed == {
        "metadata/timestamp.json",
        "log/checkpoint",
        "log/.cfl-partials-pruned",
        "metadata/.cfl-superseded",
    }


def test_a_second_publish_writes_nothing(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    before = tree_digest(factory.out)
    head = factory.repo.head

    report = factory.publish()

    assert report.signed_new_snapshot is False
    assert report.written == dict.fromkeys(PUBLISH_STEPS, 0)
    assert (report.snapshot_version, report.timestamp_version) == (
        head.snapshot_version,
        head.timestamp_version,
    )
    assert tree_digest(factory.out) == before


def test_publishing_into_an_empty_directory_writes_a_complete_tree(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path / "lib")
    elsewhere = tmp_path / "mirror"

    report = publish(factory.repo, elsewhere, now=factory.tick())

    assert report.written["roots"] == 1
    assert report.written["blobs"] == len(images) + 1  # the images and the CPL
    library, problems = load_verified_library(
        folder_reader(elsewhere), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert len(library.images) == len(images)


@pytest.mark.parametrize("which", ["role", "targets", "snapshot"])
def test_publish_refuses_to_replace_a_different_immutable_file(tmp_path: Path, which: str) -> None:
    staged = staged_library(tmp_path, "new")
    factory = staged.factory
    head = factory.repo.head
    # Something else already wrote a file this publish is about to write under the same name.
    name = {
        "role": f"{head.roles['mfr-' + NEW_MFR]}.mfr-{NEW_MFR}.json",
        "targets": f"{head.targets_version}.targets.json",
        "snapshot": f"{head.snapshot_version + 1}.snapshot.json",
    }[which]
    squatter = factory.out / "metadata" / name
    assert not squatter.exists()
    squatter.write_bytes(b'{"not": "what this repository signed"}')
    timestamp = (factory.out / "metadata" / "timestamp.json").read_bytes()

    with pytest.raises(UnavailableError, match="exists with different content"):
        factory.publish()

    assert squatter.read_bytes() == b'{"not": "what this repository signed"}'
    assert (factory.out / "metadata" / "timestamp.json").read_bytes() == timestamp
    assert verified_targets(factory) == staged.old_targets


def test_a_second_publisher_into_the_same_directory_fails_fast(tmp_path: Path) -> None:
    staged = staged_library(tmp_path, "existing")
    factory = staged.factory
    snapshot_version = factory.repo.head.snapshot_version

    # Another publisher (of another repository, say) holds this out directory.
    with (
        exclusive_lock(factory.out / LOCK_NAME, subject="test"),
        pytest.raises(UnavailableError, match=f"the published tree {factory.out} is busy: "),
    ):
        factory.publish()

    assert factory.repo.head.snapshot_version == snapshot_version
    assert verified_targets(factory) == staged.old_targets


# ---------------------------------------------------------------------------------------- crash


class Crash(Exception):
    """Stands in for a power cut between two steps."""


def _client_sees(factory: LibraryFactory, workdir: Path, targets: set[str]) -> set[str]:
    """Refresh an ngclient in ``workdir`` and return which of ``targets`` it can find."""
    updater, _ = updater_for(factory, workdir)
    updater.refresh()
    return {t for t in targets if updater.get_targetinfo(t) is not None}


def _assert_previous_then_new(staged: Staged, tmp: Path) -> None:
    factory = staged.factory
    everything = staged.old_targets | {staged.new_target}
    assert verified_targets(factory) == staged.old_targets
    assert _client_sees(factory, tmp / "fresh-client", everything) == staged.old_targets
    assert _client_sees(factory, tmp / "old-client", everything) == staged.old_targets

    factory.publish()

    assert verified_targets(factory) == everything
    assert _client_sees(factory, tmp / "old-client", everything) == everything
    updater, _ = updater_for(factory, tmp / "old-client")
    updater.refresh()
    info = updater.get_targetinfo(staged.new_target)
    assert info is not None
    assert hashlib.sha256(Path(updater.download_target(info)).read_bytes()).hexdigest() == (
        staged.new_sha
    )


@pytest.mark.parametrize("kind", ["existing", "new"], ids=["next-image", "first-deposit"])
@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_a_publish_that_crashes_before_a_step_leaves_the_previous_library(
    tmp_path: Path, step: str, kind: str
) -> None:
    staged = staged_library(tmp_path / "lib", kind)
    factory = staged.factory
    # A client that knew the library before the crash.
    assert _client_sees(factory, tmp_path / "old-client", staged.old_targets) == staged.old_targets

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        publish(factory.repo, factory.out, now=factory.tick(), between_steps=crash)

    _assert_previous_then_new(staged, tmp_path)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from metadata_templates.custom import parse_timestamp
    from repo_tool.ops.publish import publish
    from repo_tool.state.repository import Repository

    repo_path, out, now, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]

    def hook(at):
        if at == step:
            os.kill(os.getpid(), signal.SIGKILL)

    publish(Repository.open(repo_path), out, now=parse_timestamp(now), between_steps=hook)
    print("finished")
    """
)


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_a_publish_killed_with_sigkill_leaves_the_previous_library(
    tmp_path: Path, step: str
) -> None:
    """A real process, killed with no chance to clean up: its locks die with it and nothing it
    half-did is visible."""
    staged = staged_library(tmp_path / "lib", "new")
    factory = staged.factory
    assert _client_sees(factory, tmp_path / "old-client", staged.old_targets) == staged.old_targets

    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            str(factory.repo.path),
            str(factory.out),
            format_timestamp(factory.tick()),
            step,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "finished" not in killed.stdout
    _assert_previous_then_new(staged, tmp_path)


def test_killer_script_finishes_when_no_step_matches(tmp_path: Path) -> None:
    """Control for the SIGKILL test: the same script with no matching step publishes."""
    staged = staged_library(tmp_path / "lib", "existing")
    factory = staged.factory
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            str(factory.repo.path),
            str(factory.out),
            format_timestamp(factory.tick()),
            "no-such-step",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "finished\n"), done.stderr
    assert verified_targets(factory) == staged.old_targets | {staged.new_target}
