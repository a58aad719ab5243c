"""`backup` and `restore` as operations on a real library (issue 25): a restore onto a fresh folder
publishes byte-identical metadata and carries on ingesting, backups are incremental and each
manifest restores on its own, private keys are never copied, a backup taken while an ingest
commits holds one head, and the pure rules (what a backup holds, the manifest's checks, names).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError
from repo_tool.backup import holdings
from repo_tool.backup.holdings import KEY_FILE, Kind, check_path, kind_of
from repo_tool.backup.manifest import (
    FileEntry,
    Manifest,
    Part,
    check_manifest_name,
    latest,
    new_manifest_name,
    object_key,
)
from repo_tool.backup.targets import FolderTarget
from repo_tool.ops.backup import BackupReport, take_backup
from repo_tool.ops.publish import publish
from repo_tool.ops.restore import partial_path, restore
from repo_tool.state.head import Head
from repo_tool.state.repository import Repository

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (lock files aside)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def objects(backup: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (backup / "objects").rglob("*") if p.is_file()}


def manifest_of(backup: Path, report: BackupReport) -> dict:  # type: ignore[type-arg]
    return json.loads((backup / report.manifest).read_bytes())


def back_up(factory: LibraryFactory, backup: Path, **kwargs: object) -> BackupReport:
    return take_backup(factory.repo, FolderTarget(backup), now=factory.tick(), **kwargs)  # type: ignore[arg-type]


def restore_from(backup: Path, destination: Path, **kwargs: object) -> Repository:
    restore(FolderTarget(backup, option="--from"), destination, **kwargs)  # type: ignore[arg-type]
    return Repository.open(destination)


def return_keys(original: Path, restored: Path) -> None:
    """The key custodians' step: the private keys come back from where they are kept."""
    shutil.copytree(original / "keys", restored / "keys")


@pytest.fixture
def library(tmp_path: Path) -> tuple[LibraryFactory, dict[str, bytes]]:
    """Two manufacturers, three images, a rejected bundle, and one accepted deposit not yet
    published (so a publish must sign a new snapshot and timestamp)."""
    factory, images = standard_library(tmp_path, provider=True)
    junk = tmp_path / "inbox" / "junk.cflb"
    junk.write_bytes(b"not a bundle")
    assert factory.ingest(junk).status == "rejected"
    images["a4"] = make_image("121D", 4)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(images["a4"]))]
    )
    factory.publish()  # a manufacturer declares entries of the published CPL
    result = factory.ingest(factory.submit(images["a4"], ["CPL-0004"]), "a4")
    assert result.status == "accepted", result.messages
    return factory, images


def test_a_restored_repository_publishes_byte_identical_metadata_and_carries_on(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    report = back_up(factory, tmp_path / "backup")
    assert report.files_copied == report.files > 0 and report.files_reused == 0
    restored = restore_from(tmp_path / "backup", tmp_path / "restored")
    return_keys(factory.repo.path, restored.path)
    assert restored.head == factory.repo.head

    # The same publish, at the same moment, from each: the same bytes, file for file.
    now = factory.tick()
    publish(factory.repo, tmp_path / "out-original", now=now)
    publish(restored, tmp_path / "out-restored", now=now)
    published = tree(tmp_path / "out-restored")
    assert published == tree(tmp_path / "out-original")
    assert any(path.startswith("metadata/") for path in published)
    verified = subprocess.run(
        [
            CFL_REPO,
            "verify",
            tmp_path / "out-restored",
            "--root",
            tmp_path / "out-restored" / "metadata" / "1.root.json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr

    # The restored repository carries on: a later CPL import, deposit and publish.
    seq = restored.head.event_seq
    factory.repo = restored
    factory.publish()
    image = make_image("121D", 5)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0005", fw="00000005", image_sha=mi_sha(image))]
    )
    factory.publish()  # a manufacturer declares entries of the published CPL
    factory.deposit(image, ["CPL-0005"])
    lines = [json.loads(line) for line in (restored.path / "events.jsonl").read_text().splitlines()]
    numbered = [line["seq"] for line in lines if "seq" in line]
    assert numbered == list(range(1, len(numbered) + 1)) and numbered[-1] > seq
    assert "ingest-accepted" in {line["event"] for line in lines if line.get("seq", 0) > seq}


def test_restore_keeps_modes_and_the_private_rejected_folder(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    back_up(factory, tmp_path / "backup")
    restored = restore_from(tmp_path / "backup", tmp_path / "restored").path
    original = factory.repo.path
    for path in (p for p in (original / "blobs").rglob("*") if p.is_file()):
        assert stat.S_IMODE((restored / path.relative_to(original)).stat().st_mode) == 0o444
    rejected = [p for p in (restored / "rejected").rglob("*")]
    assert rejected and (restored / "rejected").stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o077 == 0 for p in rejected)
    # Everything a backup holds came back, byte for byte.
    for top in ("blobs", "rejected", "state"):
        assert tree(restored / top) == tree(original / top)
    assert (restored / "events.jsonl").read_bytes() == (original / "events.jsonl").read_bytes()
    assert not partial_path(tmp_path / "restored").exists()


def test_backups_are_incremental_and_every_manifest_restores_on_its_own(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, images = library
    backup = tmp_path / "backup"
    first = back_up(factory, backup)
    head_then = (factory.repo.state_dir / "head.json").read_bytes()
    again = back_up(factory, backup)
    assert (again.files_copied, again.bytes_copied) == (0, 0)
    assert again.files_reused == again.files == first.files
    assert again.manifest != first.manifest

    factory.publish()
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
    factory.publish()  # a manufacturer declares entries of the published CPL
    factory.deposit(image, ["CPL-0102"], mfr="3F01")
    stored = objects(backup)
    third = back_up(factory, backup)
    added = {sha: data for sha, data in objects(backup).items() if sha not in stored}
    # The new image is copied once; no earlier image is copied again.
    assert image in added.values()
    assert not {images[name] for name in images} & set(added.values())
    assert third.bytes_copied == sum(len(data) for data in added.values())
    assert third.files_copied < third.files // 2
    # The event log is stored as what the backup held already plus the new tail.
    events = manifest_of(backup, third)["files"]["events.jsonl"]
    log = (factory.repo.path / "events.jsonl").read_bytes()
    assert len(events["parts"]) == 2 and events["size"] == len(log)
    tail = added[events["parts"][1]["sha256"]]
    assert log.endswith(tail) and len(tail) < len(log)

    # The first manifest still restores the repository as it was then.
    old = restore_from(backup, tmp_path / "then", manifest_name=first.manifest)
    assert (old.state_dir / "head.json").read_bytes() == head_then
    new = restore_from(backup, tmp_path / "now")  # the latest: the recovery point
    assert new.head == factory.repo.head


def test_the_event_log_is_stored_whole_again_when_it_no_longer_extends_what_was_stored(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    backup = tmp_path / "backup"
    back_up(factory, backup)
    log = factory.repo.path / "events.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"event"', b'"event" ', 1))  # an operator's edit
    report = back_up(factory, backup)
    parts = manifest_of(backup, report)["files"]["events.jsonl"]["parts"]
    assert parts == [
        {"sha256": hashlib.sha256(log.read_bytes()).hexdigest(), "size": log.stat().st_size}
    ]
    restored = restore_from(backup, tmp_path / "restored")
    assert (restored.path / "events.jsonl").read_bytes() == log.read_bytes()


def test_private_keys_are_never_copied(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    repo = factory.repo.path
    # A key file the configuration names, moved inside a folder a backup holds.
    config = json.loads((repo / "cfl-repo.json").read_bytes())
    (repo / "keys" / "DEV-ONLY-log.pem").rename(repo / "state" / "log-key.pem")
    config["log"]["key"] = "state/log-key.pem"
    (repo / "cfl-repo.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    factory.repo = Repository.open(repo)
    backup = tmp_path / "backup"
    report = back_up(factory, backup)
    key_bytes = {p.read_bytes() for p in (repo / "keys").iterdir()}
    key_bytes.add((repo / "state" / "log-key.pem").read_bytes())
    assert not key_bytes & set(objects(backup).values())
    files = manifest_of(backup, report)["files"]
    assert not [path for path in files if path.startswith("keys/") or path.endswith(".pem")]
    assert report.left_out["state/log-key.pem"] == KEY_FILE
    assert "keys/" in report.left_out
    for raw in [*objects(backup).values(), *(p.read_bytes() for p in backup.rglob("*.json"))]:
        assert b"PRIVATE KEY" not in raw
    # The restore names the key files to put back.
    outcome = restore(FolderTarget(backup, option="--from"), tmp_path / "restored")
    assert outcome.keys_to_restore == ["state/log-key.pem"]  # file2: signers here are absolute


def test_a_backup_taken_while_an_ingest_commits_holds_one_head(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    image = make_image("121D", 7)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0007", fw="00000007", image_sha=mi_sha(image))]
    )
    factory.publish()  # a manufacturer declares entries of the published CPL
    before = (factory.repo.state_dir / "head.json").read_bytes()
    bundle = factory.write(factory.submit(image, ["CPL-0007"]), "late")

    def ingest_meanwhile(step: str) -> None:
        if step == "surveyed":  # the lock is free again: an ingest commits a new head now
            result = factory.ingest(bundle)
            assert result.status == "accepted", result.messages

    report = back_up(factory, tmp_path / "backup", between=ingest_meanwhile)
    assert (factory.repo.state_dir / "head.json").read_bytes() != before
    assert report.event_seq == Head.from_bytes(before).event_seq
    files = manifest_of(tmp_path / "backup", report)["files"]
    assert files["state/head.json"]["sha256"] == hashlib.sha256(before).hexdigest()
    late_blob = hashlib.sha256(image).hexdigest()
    assert f"blobs/{late_blob[:2]}/{late_blob}" not in files
    restored = restore_from(tmp_path / "backup", tmp_path / "restored")
    assert (restored.state_dir / "head.json").read_bytes() == before
    return_keys(factory.repo.path, restored.path)
    publish(restored, tmp_path / "out", now=factory.tick())
    restored_log = (restored.path / "events.jsonl").read_text().splitlines()
    assert json.loads(restored_log[-1]).get("seq", 0) >= Head.from_bytes(before).event_seq


def test_a_backup_waits_for_no_one_it_refuses_while_the_lock_is_held(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    # Another command's hold (a second Repository: nested holds by one object are one hold).
    other = Repository.open(factory.repo.path)
    with other.locked(), pytest.raises(UnavailableError, match="the repository is busy"):
        back_up(factory, tmp_path / "backup")
    assert not (tmp_path / "backup" / "backups").exists()
    assert back_up(factory, tmp_path / "backup").files > 0  # and the next run succeeds


def test_a_backup_killed_before_its_manifest_leaves_none_and_the_rerun_restores(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library

    class Killed(Exception):
        pass

    def die(step: str) -> None:
        if step == "copied":
            raise Killed

    with pytest.raises(Killed):
        back_up(factory, tmp_path / "backup", between=die)
    assert objects(tmp_path / "backup") and not (tmp_path / "backup" / "backups").exists()
    with pytest.raises(RejectedInputError, match="found no manifest"):
        restore_from(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    report = back_up(factory, tmp_path / "backup")
    assert report.files_reused == report.files  # what the killed run stored is reused
    assert restore_from(tmp_path / "backup", tmp_path / "restored").head == factory.repo.head


def test_a_corrupt_blob_in_the_repository_is_refused_not_backed_up(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, images = library
    blob = factory.repo.blobs.path(hashlib.sha256(images["a2"]).hexdigest())
    blob.chmod(0o644)
    blob.write_bytes(b"rot")
    with pytest.raises(UnavailableError, match=r"expected .* \(its name\)"):
        back_up(factory, tmp_path / "backup")
    assert not (tmp_path / "backup" / "backups").exists()


def test_a_link_among_what_a_backup_holds_is_refused(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    (factory.repo.path / "rejected" / "planted").symlink_to("/etc/passwd")
    with pytest.raises(RejectedInputError, match="found a symbolic link"):
        back_up(factory, tmp_path / "backup")
    assert not (tmp_path / "backup" / "backups").exists()


@pytest.mark.parametrize(
    "where", ["inside", "same", "not-a-backup"], ids=["inside-R", "R-itself", "foreign-folder"]
)
def test_a_backup_target_that_is_r_or_someone_elses_folder_is_refused(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path, where: str
) -> None:
    factory, _ = library
    repo = factory.repo.path
    target = {"inside": repo / "backups", "same": repo, "not-a-backup": tmp_path / "inbox"}[where]
    with pytest.raises(ConfigurationError, match="--to: found"):
        back_up(factory, target)
    assert not (target / "backups").exists() and not (target / "objects").exists()


# ------------------------------------------------------------------------------ the pure rules


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("blobs/ab/ab" + "0" * 62, Kind.CONTENT_NAMED),
        ("blobs/cd/ab" + "0" * 62, Kind.MUTABLE),  # a name that is no blob's: hashed, not trusted
        ("state/index/" + "1" * 64 + ".json", Kind.CONTENT_NAMED),
        ("state/metadata/root/1.json", Kind.IMMUTABLE),
        ("state/metadata/mfr-121D/2.json", Kind.IMMUTABLE),
        ("state/metadata/mfr-121D/2.added.json", Kind.IMMUTABLE),
        ("state/metadata/mfr-121D/3.json", Kind.MUTABLE),  # an orphan above the committed version
        ("state/metadata/mfr-FFFF/1.json", Kind.MUTABLE),
        ("state/head.json", Kind.MUTABLE),
        ("state/log/tile/0/000.p/4", Kind.MUTABLE),
        ("cfl-repo.json", Kind.MUTABLE),
        ("events.jsonl", Kind.APPEND_ONLY),
        ("rejected/20260101T000000Z-x.cflb/report.json", Kind.IMMUTABLE),
    ],
    ids=lambda value: value if isinstance(value, str) else value.value,
)
def test_how_each_held_file_may_change(relative: str, kind: Kind) -> None:
    head = Head(roles={"mfr-121D": 2})
    assert kind_of(relative, head) is kind


@pytest.mark.parametrize(
    "relative",
    [
        "../x",
        "/etc/passwd",
        "state/../../x",
        "state//head.json",
        "state/./head.json",
        "keys/a.pem",
        "public/metadata/timestamp.json",
        "cache/x",
        "state",
        "cfl-repo.json/x",
        "state\\head.json",
        "state/head.json\x00",
        "",
    ],
    ids=[
        "dotdot",
        "absolute",
        "inner-dotdot",
        "empty-segment",
        "dot",
        "keys",
        "public",
        "cache",
        "bare-folder",
        "file-as-folder",
        "backslash",
        "nul",
        "empty",
    ],
)
def test_a_manifest_path_outside_what_a_backup_holds_is_refused(relative: str) -> None:
    with pytest.raises(ValueError, match="found"):
        check_path(relative)


def test_top_level_entries_are_held_or_left_out_with_a_reason() -> None:
    for name in ("cfl-repo.json", "events.jsonl", "state", "blobs", "rejected"):
        assert holdings.top_level(name) is None
    assert "custodian" in str(holdings.top_level("keys"))
    assert holdings.top_level("operator-notes.txt") == holdings.UNKNOWN
    assert holdings.is_temporary(".lock") and holdings.is_temporary("state/.head.json.x1.tmp")
    assert holdings.is_temporary("blobs/.staging-abc")


def _manifest(**change: object) -> bytes:
    head = b"{}"
    sha = hashlib.sha256(head).hexdigest()
    doc: dict[str, object] = {
        "schema_version": 1,
        "format": "cfl-repo-backup",
        "created": "2026-05-06T22:15:00Z",
        "head": {"sha256": sha, "event_seq": 3},
        "files": {"state/head.json": {"sha256": sha, "size": 2, "mode": "0644"}},
        "left_out": {},
    }
    doc.update(change)
    return json.dumps(doc).encode()


SHA = "a" * 64
BAD_MANIFESTS = {
    "not-json": (b"{", "found no JSON manifest"),
    "duplicate-key": (b'{"format": 1, "format": 2}', "appears twice"),
    "wrong-format": (_manifest(format="tar"), "format: found 'tar'"),
    "traversal": (
        _manifest(files={"../x": {"sha256": SHA, "size": 1, "mode": "0644"}}),
        "path found '../x'",
    ),
    "hash-form": (
        _manifest(files={"state/head.json": {"sha256": "XYZ", "size": 1, "mode": "0644"}}),
        "sha256: found 'XYZ'",
    ),
    "mode-form": (
        _manifest(files={"state/head.json": {"sha256": SHA, "size": 1, "mode": "4755x"}}),
        "mode: found '4755x'",
    ),
    "parts-do-not-add-up": (
        _manifest(
            files={
                "events.jsonl": {
                    "sha256": SHA,
                    "size": 9,
                    "mode": "0644",
                    "parts": [{"sha256": SHA, "size": 4}],
                }
            }
        ),
        "sizes adding up to 4",
    ),
    "file-and-folder": (
        _manifest(
            files={
                "state/a": {"sha256": SHA, "size": 1, "mode": "0644"},
                "state/a/b": {"sha256": SHA, "size": 1, "mode": "0644"},
            }
        ),
        "no path that is also the folder",
    ),
    "no-head": (
        _manifest(files={"cfl-repo.json": {"sha256": SHA, "size": 1, "mode": "0644"}}),
        "among the files",
    ),
    "head-hash-differs": (_manifest(head={"sha256": SHA, "event_seq": 1}), "head.sha256"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS), ids=str)
def test_a_malformed_manifest_is_refused_naming_the_field(case: str) -> None:
    data, text = BAD_MANIFESTS[case]
    with pytest.raises(RejectedInputError, match=r"backups/x\.json") as raised:
        Manifest.from_bytes(data, source="backups/x.json")
    assert text in str(raised.value)


def test_a_manifest_round_trips_and_names_sort_by_time() -> None:
    entry = FileEntry(SHA, 3, 0o444, (Part(SHA, 1), Part("b" * 64, 2)))
    manifest = Manifest(
        "2026-05-06T22:15:00Z",
        {"state/head.json": FileEntry(SHA, 2, 0o644), "events.jsonl": entry},
        3,
    )
    again = Manifest.from_bytes(manifest.to_bytes(), source="m")
    assert again == manifest and again.to_bytes() == manifest.to_bytes()
    now = datetime(2026, 5, 6, 22, 15, tzinfo=UTC)
    first = new_manifest_name(now, set())
    second = new_manifest_name(now, {first})
    tenth = new_manifest_name(
        now, {first, second, *(f"20260506T221500Z-{n}.json" for n in range(3, 10))}
    )
    assert (first, second, tenth) == (
        "20260506T221500Z.json",
        "20260506T221500Z-2.json",
        "20260506T221500Z-10.json",
    )
    assert latest([second, first, tenth, "20260505T000000Z.json", "junk.json"]) == tenth
    assert check_manifest_name("backups/20260506T221500Z.json") == first
    assert check_manifest_name("20260506T221500Z") == first
    for bad in ("../../etc/passwd", "20260506T221500Z.json.bak", "latest"):
        with pytest.raises(ConfigurationError, match="--manifest"):
            check_manifest_name(bad)
    assert object_key(SHA) == f"objects/aa/{SHA}"


def test_a_repository_restored_from_before_the_last_publish_cannot_roll_the_host_back(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    back_up(factory, tmp_path / "backup")
    factory.publish()  # after the backup: the host serves a timestamp the backup lacks
    served = tree(factory.out)
    restored = restore_from(tmp_path / "backup", tmp_path / "restored")
    return_keys(factory.repo.path, restored.path)
    with pytest.raises(UnavailableError, match="behind what clients have seen"):
        publish(restored, factory.out, now=factory.tick())
    assert tree(factory.out) == served
