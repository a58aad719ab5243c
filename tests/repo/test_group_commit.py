"""Group commit (issue 26): `cfl-repo ingest` commits its deposits in groups, one durable commit per
group, and reports a deposit accepted only once its group is committed.

Each deposit is judged against the library as the earlier ones of its group left it (a
manufacturer's bundles chained v+1, v+2, a first deposit's delegation, a duplicate), so a grouped
ingest ends in the same library, event for event, as one commit per deposit. kill -9 at every
commit point of a grouped ingest: nothing it had reported accepted is lost, the same command again
succeeds, every deposit is committed exactly once and the published tree verifies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kill_points import kill_loop
from tuf.api.metadata import Metadata, Targets

from client.log.audit import audit
from conftest import require_system
from factory import LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.naming import role_name
from repo_tool.intake.bundle import Declaration, write_bundle
from repo_tool.submit.deposit import build_submission
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
MAX_POINTS = 400
IMAGES = {fw: make_image("121D", fw) for fw in (1, 2, 3, 4)}
OTHER = make_image("3A7F", 9)
ACCEPTED_LINE = re.compile(r"^accepted  (\S+) -> ", re.M)


def _cli(
    base: Path, args: list[str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        [*(prefix or []), str(CFL_REPO), "--repo", str(base / "repo"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _pristine(tmp: Path) -> Path:
    """A published library of one 121D image, and an inbox: 121D firmware 2, 3 and 4 chained on
    each other, 3A7F's first deposit, a bundle whose image was altered after signing, and the
    firmware 3 bundle again under another name."""
    factory = LibraryFactory(tmp)
    factory.import_cpl(
        [
            *(
                make_entry(f"CPL-E{fw}", fw=f"{fw:08X}", image_sha=mi_sha(image))
                for fw, image in IMAGES.items()
            ),
            make_entry("CPL-X9", mfr="3A7F", fw="00000009", image_sha=mi_sha(OTHER)),
        ]
    )
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3A7F")
    factory.publish()
    factory.deposit(IMAGES[1], ["CPL-E1"])
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    inbox = tmp / "deposits"
    inbox.mkdir()
    for n, fw in enumerate((2, 3, 4), start=1):
        bundle = build_submission(
            image=IMAGES[fw],
            manufacturer_id="121D",
            signers=[factory.mfr_signers["121D"]],
            declaration=Declaration((f"CPL-E{fw}",), "compliance", ()),
            release_notes=None,
            library=library,
            now=factory.tick(),
        ).bundle
        write_bundle(inbox / f"{n}-121D-fw{fw}.cflb", bundle)
        # The next deposit builds on this one's role version, as a manufacturer's tool would.
        chained = Metadata[Targets].from_bytes(bundle.role_bytes)
        library = replace(
            library, role_metadata={**library.role_metadata, role_name("121D"): chained}
        )
    other = factory.submit(OTHER, ["CPL-X9"], mfr="3A7F")
    write_bundle(inbox / "4-3A7F-first.cflb", other)
    altered = bytearray((inbox / "4-3A7F-first.cflb").read_bytes())
    shutil.copy(inbox / "2-121D-fw3.cflb", inbox / "6-121D-fw3-again.cflb")
    at = altered.rfind(OTHER[-16:])
    altered[at] ^= 0xFF
    (inbox / "5-altered.cflb").write_bytes(bytes(altered))
    return tmp


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pristine(tmp_path_factory.mktemp("group"))


def _events(base: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (base / "repo" / "events.jsonl").read_bytes().splitlines()]


def _accepted_bundles(base: Path) -> list[str]:
    """The bundles accepted after the fixture's own first deposit, in commit order."""
    found = [str(e["bundle"]) for e in _events(base) if e["event"] == "ingest-accepted"]
    return [b for b in found if b != "deposit.cflb"]


def test_a_grouped_ingest_ends_as_one_commit_per_deposit_does(
    pristine: Path, tmp_path: Path
) -> None:
    grouped, single = tmp_path / "grouped", tmp_path / "single"
    shutil.copytree(pristine, grouped, symlinks=True)
    shutil.copytree(pristine, single, symlinks=True)
    ran = {
        base: _cli(base, ["ingest", str(base / "deposits"), "--batch", batch, "--json"])
        for base, batch in ((grouped, "200"), (single, "1"))
    }
    for result in ran.values():
        assert result.returncode == 1, result.stderr  # the altered bundle is refused
        assert "Traceback" not in result.stderr
    docs = {base: json.loads(r.stdout)["results"] for base, r in ran.items()}
    assert [(r["bundle"], r["status"], r["reasons"]) for r in docs[grouped]] == [
        (r["bundle"], r["status"], r["reasons"]) for r in docs[single]
    ]
    assert [r["status"] for r in docs[grouped]] == ["accepted"] * 4 + ["rejected", "accepted"]
    assert docs[grouped][-1]["messages"][0].startswith("already accepted")
    # One commit holds the group's four deposits; the single run made four.
    assert (
        _accepted_bundles(grouped)
        == _accepted_bundles(single)
        == [
            "1-121D-fw2.cflb",
            "2-121D-fw3.cflb",
            "3-121D-fw4.cflb",
            "4-3A7F-first.cflb",
        ]
    )
    # The log reads the same: the rejection follows the commit of the deposits judged before it.
    logged = {b: [(e["event"], e.get("bundle")) for e in _events(b)] for b in ran}
    assert logged[grouped] == logged[single]
    for base in ran:
        events = _events(base)
        at = next(i for i, e in enumerate(events) if e["event"] == "ingest-rejected")
        assert events[at]["after_seq"] == max(int(e["seq"]) for e in events[:at] if "seq" in e)
    heads = {b: json.loads((b / "repo" / "state" / "head.json").read_bytes()) for b in ran}
    for field in ("roles", "targets_version", "index_sha256", "event_seq", "log_size"):
        assert heads[grouped][field] == heads[single][field], field
    assert len(heads[grouped]["last_events"]) == 4 and len(heads[single]["last_events"]) == 1
    published = _cli(grouped, ["publish", "--no-site"])
    assert published.returncode == 0, published.stderr
    public = grouped / "repo" / "public"
    library, problems = load_verified_library(
        folder_reader(public),
        (public / "metadata" / "1.root.json").read_bytes(),
        now=datetime.now(UTC),
    )
    assert problems == [] and library is not None and len(library.images) == 5
    # The group's four events went into the transparency log in one append, each its own entry.
    report = audit(lambda path: (public / path).read_bytes(), vkey=None)
    assert report.problems == [] and report.events["ingest-accepted"] == 5


@pytest.mark.system
@pytest.mark.slow
def test_kill_a_grouped_ingest_at_every_commit_point_loses_nothing_reported(
    pristine: Path, tmp_path: Path
) -> None:
    """Two groups of two: a kill inside the second group must keep the first, reported one."""
    require_system("strace")
    args = [
        "ingest",
        "deposits/1-121D-fw2.cflb",
        "deposits/2-121D-fw3.cflb",
        "deposits/3-121D-fw4.cflb",
    ]
    args += ["deposits/4-3A7F-first.cflb", "--batch", "2"]
    expected = [Path(a).name for a in args[1:5]]

    def run(base: Path, prefix: list[str]) -> subprocess.CompletedProcess[str]:
        run_args = [a if not a.startswith("deposits/") else str(base / a) for a in args]
        return _cli(base, run_args, prefix)

    def after_kill(base: Path, killed: subprocess.CompletedProcess[str]) -> None:
        # Nothing reported accepted is lost: each such bundle is in a committed head already.
        reported = ACCEPTED_LINE.findall(killed.stderr)
        head = json.loads((base / "repo" / "state" / "head.json").read_bytes())
        committed = set(_accepted_bundles(base)) | {
            str(e.get("bundle")) for e in head["last_events"]
        }
        assert set(reported) <= committed, (base.name, reported, committed)

    def recover(base: Path, point: int) -> None:
        again = run(base, [])
        assert again.returncode == 0, (point, again.stderr)
        assert "Traceback" not in again.stderr
        assert _accepted_bundles(base) == expected, point  # each exactly once, in order
        published = _cli(base, ["publish", "--no-site"])
        assert published.returncode == 0, published.stderr
        public = base / "repo" / "public"
        root = (public / "metadata" / "1.root.json").read_bytes()
        _, problems = load_verified_library(folder_reader(public), root, now=datetime.now(UTC))
        assert problems == [], (point, problems)

    points, completed = kill_loop(
        tmp_path, pristine, run, recover, after_kill=after_kill, max_points=MAX_POINTS
    )
    assert completed.returncode == 0, completed.stderr
    assert points >= 6, f"killed at only {points} point(s)"


def test_a_torn_unreferenced_blob_is_written_again_not_a_wedge(tmp_path: Path) -> None:
    """What a power cut can leave after a group's files but before its commit: a blob file under
    its name whose bytes are not the ones named. The next write of those bytes repairs it."""
    from repo_tool.state.store import BlobStore

    store = BlobStore(tmp_path / "blobs")
    data = b"firmware image bytes"
    sha = store.put(data)
    torn = store.path(sha)
    torn.chmod(0o644)
    torn.write_bytes(data[:5])
    assert store.put(data) == sha and store.get(sha) == data
    torn.chmod(0o644)
    torn.write_bytes(b"")
    staged = store.stage(data)
    staged.commit(sha)
    assert store.get(sha) == data


def test_a_group_syncs_every_file_system_its_writes_landed_on(tmp_path: Path) -> None:
    """A blob store on a disk of its own (here tmpfs, linked under R/) is synced too, not only
    the file system of the first file written."""
    from metadata_templates.atomic import DeferredSync

    other = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev
        synced: list[Path] = []
        pending = DeferredSync(syncfs=lambda d: bool(synced.append(d)) or True)
        (tmp_path / "state").mkdir()
        pending.files += [tmp_path / "state" / "1.json", other / "blob", tmp_path / "state" / "2"]
        pending.directories.add(other)
        pending.flush()
        assert sorted(os.stat(d).st_dev for d in synced) == sorted(
            {os.stat(tmp_path).st_dev, os.stat(other).st_dev}
        )
        assert pending.files == [] and pending.directories == set()
        # Without syncfs, every file and folder is fsynced one by one instead (no error).
        fallback = DeferredSync(syncfs=lambda d: False)
        (tmp_path / "state" / "1.json").write_bytes(b"{}")
        fallback.files.append(tmp_path / "state" / "1.json")
        fallback.directories.add(tmp_path / "state")
        fallback.flush()
    finally:
        shutil.rmtree(other)
