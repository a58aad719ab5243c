"""Publishing reads only what changed: the targets a role version added are recorded at ingest, so
publishing one image into a large role does not parse the role; a tree without the previous version
(a fresh --out, or a record that is missing) is still written whole."""

from __future__ import annotations

from pathlib import Path

from factory import make_entry, make_image, mi_sha, standard_library
from repo_tool.ops.publish import publish
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


def test_added_targets_are_recorded_per_role_version(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    added = factory.repo.added_since("mfr-121D", 0, 2)
    assert added is not None and len(added) == 2
    assert {sha for _, sha in added} == {
        t.hashes["sha256"] for t in factory.repo.role("mfr-121D").signed.targets.values()
    }


def test_fresh_out_directory_gets_every_blob(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    fresh = tmp_path / "mirror"
    report = publish(factory.repo, fresh, now=factory.tick())
    assert report.written["blobs"] == len(images) + 1  # every image and the CPL
    library, problems = load_verified_library(
        folder_reader(fresh), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None and len(library.images) == len(images)


def test_missing_record_falls_back_to_reading_the_role(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    image = make_image("121D", 7)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0007", fw="00000007", image_sha=mi_sha(image))]
    )
    factory.publish()
    assert factory.ingest(factory.submit(image, ["CPL-0007"])).status == "accepted"
    record = factory.repo.state_dir / "metadata" / "mfr-121D" / "3.added.json"
    record.unlink()
    assert factory.repo.added_since("mfr-121D", 2, 3) is None
    report = factory.publish()
    assert report.written["blobs"] == 1
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
