"""`cfl-repo backup` and `cfl-repo restore` as an operator runs them: a restore drill end to end,
the --json documents, every refusal with its exit code and one `error:` line and nothing left
under the new repository's name, and kill -9 at sampled rename and fsync points of both commands
followed by a re-run.

The world is built with the real command line and the real clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kill_points import KILLED, strace_killing_at, walk

from conftest import require_system
from metadata_templates.errors import EXIT_FAILURE, EXIT_USAGE
from repo_tool.backup.manifest import is_manifest_name

CFL_REPO = str(Path(sys.executable).with_name("cfl-repo"))
IMAGE = "images/121D-ESME-010A030B-01010000.ota"
# Kill points sampled across a run: each kill -9 and re-run costs two interpreter starts.
KILL_POINTS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env | {"COLUMNS": "200"},
        check=False,
        stdin=subprocess.DEVNULL,
    )


def ok(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    program, *args = shlex.split(line)
    done = run([CFL_REPO if program == "cfl-repo" else program, *args], cwd)
    assert done.returncode == 0, (line, done.stderr)
    return done


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@dataclass(frozen=True)
class World:
    """A library made by `cfl-repo` (an accepted image, a rejected bundle) and one backup of it."""

    folder: Path

    def state(self, folder: Path | None = None) -> tuple[bytes, bytes]:
        """What every refused command leaves as it was: R's head and event log."""
        repo = (folder or self.folder) / "R"
        return (repo / "state" / "head.json").read_bytes(), (repo / "events.jsonl").read_bytes()

    def copy(self, into: Path) -> Path:
        """A private copy of the whole world, for a case that tampers with it."""
        shutil.copytree(self.folder, into, symlinks=True)
        return into


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("backup-cli")
    for line in (
        "cfl-repo demo-data .",
        "cfl-repo --repo R init --dev-keys",
        "cfl-repo --repo R cpl import cpl.csv",
        "cfl-repo keygen acme.pem --no-encrypt",
        "cfl-repo --repo R manufacturer add 121D --name Acme --key acme.pub.pem",
        "cfl-repo --repo R publish --no-site",
        f"cfl-repo submit {IMAGE} --manufacturer 121D --key acme.pem --cpl-entry CPL-000103 "
        "--cpl-entry CPL-000104 --reason compliance --from R/public "
        "--root R/public/metadata/1.root.json --out inbox/a.cflb",
    ):
        ok(line, folder)
    (folder / "inbox" / "junk.cflb").write_bytes(b"junk")
    ingest = run([CFL_REPO, "--repo", "R", "ingest", "inbox/"], folder)
    assert ingest.returncode == EXIT_FAILURE, ingest.stderr  # one accepted, one rejected
    ok("cfl-repo --repo R publish --no-site", folder)
    ok("cfl-repo --repo R backup --to B", folder)
    (folder / "junk.txt").write_text("junk\n")
    (folder / "full").mkdir()
    (folder / "full" / "x").write_text("someone's file\n")
    return World(folder)


def test_a_restore_drill_end_to_end(world: World, tmp_path: Path) -> None:
    here = world.copy(tmp_path / "w")
    done = ok("cfl-repo --repo R backup --to B --json", here)
    report = json.loads(done.stdout)
    assert report["schema_version"] == 1
    assert report["files_copied"] == 0 and report["bytes_copied"] == 0  # nothing changed
    assert report["files_reused"] == report["files"] > 0
    assert report["manifest"].startswith("backups/") and "keys/" in report["left_out"]
    data = (here / "B" / report["manifest"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == report["manifest_sha256"]
    assert "recovery point: event" in done.stderr and "left out keys/" in done.stderr

    restored = ok(
        f"cfl-repo restore --from B --repo N --expect-sha256 {report['manifest_sha256']} --json",
        here,
    )
    doc = json.loads(restored.stdout)
    assert doc["manifest"] == report["manifest"] and doc["files"] == report["files"]
    assert "keys/DEV-ONLY-root-1.pem" in doc["keys_to_restore"]
    assert "keys/DEV-ONLY-log.pem" in doc["keys_to_restore"] and "put them back" in restored.stderr
    # The restored repository refuses to sign until its custodians return the keys.
    refused = run([CFL_REPO, "--repo", "N", "refresh", "--force", "--out", "x"], here)
    assert refused.returncode == EXIT_USAGE and "cannot load" in refused.stderr
    shutil.copytree(here / "R" / "keys", here / "N" / "keys")
    ok("cfl-repo --repo N publish --no-site --out N-public", here)
    ok("cfl-repo --repo R publish --no-site --out R-public", here)
    assert tree(here / "N-public") == tree(here / "R-public")
    ok("cfl-repo verify N-public --root N-public/metadata/1.root.json", here)
    # ... and carries on: the same bundle again is already accepted, a new import works.
    again = ok("cfl-repo --repo N ingest inbox/a.cflb --json", here)
    assert json.loads(again.stdout)["results"][0]["status"] == "accepted"
    ok("cfl-repo --repo N status", here)


def test_help_teaches_with_an_example(world: World) -> None:
    for command in ("backup", "restore"):
        done = ok(f"cfl-repo {command} --help", world.folder)
        assert "Example" in done.stdout and "cfl-repo --repo" in done.stdout
    assert "backup, restore" in ok("cfl-repo --help", world.folder).stdout


def _tamper_object(folder: Path) -> None:
    manifest = json.loads(max((folder / "B" / "backups").iterdir()).read_bytes())
    sha = manifest["files"]["state/head.json"]["sha256"]
    path = folder / "B" / "objects" / sha[:2] / sha
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"1", b"2", 1))


def _drop_object(folder: Path) -> None:
    manifest = json.loads(max((folder / "B" / "backups").iterdir()).read_bytes())
    sha = manifest["files"]["cfl-repo.json"]["sha256"]
    (folder / "B" / "objects" / sha[:2] / sha).unlink()


def _drop_manifests(folder: Path) -> None:
    for path in (folder / "B" / "backups").iterdir():
        path.unlink()


def _rewrite_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def rewrite(folder: Path) -> None:
        path = max((folder / "B" / "backups").iterdir())
        doc = json.loads(path.read_bytes())
        change(doc)
        path.chmod(0o644)
        path.write_text(json.dumps(doc))

    return rewrite


def _traversal(doc: dict) -> None:  # type: ignore[type-arg]
    doc["files"]["../evil"] = doc["files"]["cfl-repo.json"]


def _drop_head_file(doc: dict) -> None:  # type: ignore[type-arg]
    del doc["files"]["state/metadata/root/1.json"]


def _swap_targets(doc: dict) -> None:  # type: ignore[type-arg]
    files = doc["files"]
    files["state/metadata/targets/1.json"], files["state/metadata/targets/2.json"] = (
        files["state/metadata/targets/2.json"],
        files["state/metadata/targets/1.json"],
    )


def _truncate_manifest(folder: Path) -> None:
    path = max((folder / "B" / "backups").iterdir())
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:100])


def _pin(folder: Path) -> str:
    return hashlib.sha256(max((folder / "B" / "backups").iterdir()).read_bytes()).hexdigest()


# case -> (command line, exit code, text the one error line holds, tampering before the run)
CASES: dict[str, tuple[str, int, str, Callable[[Path], None] | None]] = {
    "backup-to-inside-the-repository": (
        "cfl-repo --repo R backup --to R/backup", EXIT_USAGE, "inside the repository", None),
    "backup-to-someone-elses-folder": (
        "cfl-repo --repo R backup --to full", EXIT_USAGE, "and no cfl-backup.json", None),
    "backup-to-a-file": (
        "cfl-repo --repo R backup --to junk.txt", EXIT_USAGE, "is a file, expected a folder", None),
    "backup-endpoint-with-a-folder": (
        "cfl-repo --repo R backup --to B2 --endpoint-url http://127.0.0.1:9", EXIT_USAGE,
        "--endpoint-url: found 'http://127.0.0.1:9'", None),
    "backup-bad-bucket": (
        "cfl-repo --repo R backup --to s3://A_B/x", EXIT_USAGE, "--to bucket: found 'A_B'", None),
    "backup-no-repository": (
        "cfl-repo --repo nowhere backup --to B2", EXIT_USAGE, "nowhere/cfl-repo.json: not found",
        None),
    "restore-into-a-repository": (
        "cfl-repo restore --from B --repo R", EXIT_USAGE, "--repo: found R holding", None),
    "restore-into-a-file": (
        "cfl-repo restore --from B --repo junk.txt", EXIT_USAGE, "--repo: found 'junk.txt'", None),
    "restore-from-nowhere": (
        "cfl-repo restore --from nowhere --repo N", EXIT_USAGE, "--from: found 'nowhere'", None),
    "restore-from-no-backup": (
        "cfl-repo restore --from R/public --repo N", EXIT_USAGE, "found no cfl-backup.json", None),
    "restore-no-such-manifest": (
        "cfl-repo restore --from B --repo N --manifest 20000101T000000Z", EXIT_FAILURE,
        "--manifest: found '20000101T000000Z', expected one of the 1 manifests", None),
    "restore-manifest-name-outside-backups": (
        "cfl-repo restore --from B --repo N --manifest ../../cfl-repo", EXIT_USAGE,
        "--manifest: found '../../cfl-repo'", None),
    "restore-pin-differs": (
        "cfl-repo restore --from B --repo N --expect-sha256 " + "0" * 64, EXIT_FAILURE,
        "--expect-sha256: found", None),
    "restore-pin-malformed": (
        "cfl-repo restore --from B --repo N --expect-sha256 xyz", EXIT_USAGE,
        "--expect-sha256: found 'xyz', expected 64 hex digits", None),
    "restore-without-repo": (
        "cfl-repo restore --from B", EXIT_USAGE, "--repo: found None", None),
    "restore-two-repos": (
        "cfl-repo --repo N1 restore --from B --repo N2", EXIT_USAGE, "expected one new", None),
    "restore-tampered-object": (
        "cfl-repo restore --from B --repo N", EXIT_FAILURE, "hashing to", _tamper_object),
    "restore-missing-object": (
        "cfl-repo restore --from B --repo N", EXIT_FAILURE, "missing from B", _drop_object),
    "restore-no-manifest": (
        "cfl-repo restore --from B --repo N", EXIT_FAILURE, "--from: found no manifest",
        _drop_manifests),
    "restore-manifest-not-json": (
        "cfl-repo restore --from B --repo N", EXIT_FAILURE, "found no JSON manifest",
        _truncate_manifest),
    "restore-manifest-path-traversal": (
        "cfl-repo restore --from B --repo N", EXIT_FAILURE, "path found '../evil'",
        _rewrite_manifest(_traversal)),
    "restore-manifest-lacks-a-file-the-head-names": (
        "cfl-repo restore --from B --repo N", EXIT_FAILURE,
        "found no state/metadata/root/1.json (1 missing), expected every file the head names",
        _rewrite_manifest(_drop_head_file)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_each_refusal_has_its_exit_code_one_error_line_and_leaves_nothing(
    world: World, tmp_path: Path, case: str
) -> None:
    line, code, text, tamper = CASES[case]
    here = world.copy(tmp_path / "w") if tamper is not None else world.folder
    if tamper is not None:
        tamper(here)
    before = (world.state(here), sorted((here / "B" / "backups").iterdir()))
    done = run([CFL_REPO, *shlex.split(line)[1:]], here)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert text in errors[0], done.stderr
    assert (world.state(here), sorted((here / "B" / "backups").iterdir())) == before
    for name in ("N", "N1", "N2", "B2"):
        assert not (here / name).exists() and not (here / f".{name}.restoring").exists()
    assert not (here / "R" / "backup").exists()
    assert sorted(p.name for p in (here / "full").iterdir()) == ["x"]


def test_a_rewritten_manifest_is_caught_by_the_pinned_hash(world: World, tmp_path: Path) -> None:
    """Whoever can write the backup can rewrite a manifest so that every object still matches
    (here: two targets versions swapped); pinning the hash `backup --json` printed catches it."""
    here = world.copy(tmp_path / "w")
    pin = _pin(here)
    _rewrite_manifest(_swap_targets)(here)
    done = run([CFL_REPO, "restore", "--from", "B", "--repo", "N", "--expect-sha256", pin], here)
    assert done.returncode == EXIT_FAILURE and "--expect-sha256: found" in done.stderr
    assert not (here / "N").exists()


def test_a_link_planted_in_the_repository_stops_the_backup(world: World, tmp_path: Path) -> None:
    here = world.copy(tmp_path / "w")
    (here / "R" / "blobs" / "planted").symlink_to("/etc/passwd")
    before = sorted((here / "B" / "backups").iterdir())
    done = run([CFL_REPO, "--repo", "R", "backup", "--to", "B"], here)
    assert done.returncode == EXIT_FAILURE
    assert "found a symbolic link" in done.stderr and "Traceback" not in done.stderr
    assert sorted((here / "B" / "backups").iterdir()) == before
    assert b"root:" not in b"".join(p.read_bytes() for p in (here / "B").rglob("*") if p.is_file())


def manifests(backup: Path) -> list[str]:
    """The manifests in ``backup`` (a killed run may leave its temporary file beside them)."""
    return sorted(p.name for p in (backup / "backups").iterdir() if is_manifest_name(p.name))


def _restores(here: Path, name: str) -> None:
    """The manifest ``name`` of B restores (into a scratch folder, removed after)."""
    scratch = here / "scratch"
    done = run([CFL_REPO, "restore", "--from", "B", "--repo", "scratch", "--manifest", name], here)
    assert done.returncode == 0, (name, done.stderr)
    shutil.rmtree(scratch)


def test_kill_9_at_every_point_of_a_backup_then_the_rerun_succeeds(
    world: World, tmp_path: Path
) -> None:
    require_system("strace")
    here = world.copy(tmp_path / "w")
    # Something new to copy: the rejected bundle once more (a new report and event line).
    assert run([CFL_REPO, "--repo", "R", "ingest", "inbox/junk.cflb"], here).returncode == 1
    pristine = here / "B-pristine"
    shutil.copytree(here / "B", pristine)
    before = set(manifests(pristine))
    backup = [CFL_REPO, "--repo", "R", "backup", "--to", "B"]

    def attempt(point: int) -> bool:
        shutil.rmtree(here / "B")
        shutil.copytree(pristine, here / "B")
        shutil.rmtree(here / "R" / "cache", ignore_errors=True)  # the memo: as before the run
        done = subprocess.run(
            [*strace_killing_at(point), *backup], cwd=here, capture_output=True, check=False
        )
        if done.returncode not in KILLED:
            assert done.returncode == 0, done.stderr
            return False
        # A manifest the killed run left (killed after writing it) names no missing file.
        for name in set(manifests(here / "B")) - before:
            _restores(here, name)
        rerun = run([*backup, "--json"], here)
        assert rerun.returncode == 0, rerun.stderr
        _restores(here, json.loads(rerun.stdout)["manifest"].removeprefix("backups/"))
        return True

    points = walk(attempt, max_points=200)
    assert points >= 5, f"killed at only {points} point(s)"


def test_kill_9_during_a_restore_leaves_nothing_and_the_rerun_succeeds(
    world: World, tmp_path: Path
) -> None:
    require_system("strace")
    here = world.copy(tmp_path / "w")
    restore = [CFL_REPO, "restore", "--from", "B", "--repo", "N"]
    killed = 0
    for point in KILL_POINTS:
        done = subprocess.run(
            [*strace_killing_at(point), *restore], cwd=here, capture_output=True, check=False
        )
        if done.returncode not in KILLED:
            assert done.returncode == 0, done.stderr
            break
        killed += 1
        assert not (here / "N").exists()  # nothing half-restored under the final name
        assert run(restore, here).returncode == 0
        assert tree(here / "N" / "state") == tree(here / "R" / "state")
        shutil.rmtree(here / "N")
    assert killed >= 3
