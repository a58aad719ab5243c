"""A library with a pilot image and a release document is still plain TUF (issue 22): tuf-js, a
client written independently of python-tuf, verifies and downloads the pilot image, the public one
and ``cfl/releases.json`` from a real nginx. ``custom.cfl.pilot`` is an optional field inside the
manufacturer-signed ``custom``; TUF clients verify ``custom`` without interpreting it.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from interop.conftest import NginxServer, nginx_server  # noqa: F401  (the fixture)

from conftest import require_system
from metadata_templates import naming
from pilots.pilot_library import build_pilot_library
from repo_tool.ops.refresh import refresh
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

SCRIPT = Path(__file__).parents[1] / "interop" / "verify_with_tufjs.mjs"
TUF_JS = SCRIPT.parent / "node_modules" / "tuf-js"


@pytest.mark.system
def test_tufjs_reads_a_library_with_a_pilot_and_its_release(
    tmp_path: Path,
    nginx_server: NginxServer,  # noqa: F811
) -> None:
    require_system("node", str(TUF_JS))
    library = build_pilot_library(tmp_path / "lib")
    factory = library.factory
    library.travel(library.release_moment() + timedelta(minutes=1))
    with factory.repo.locked():
        refresh(factory.repo, now=factory.tick())
    factory.publish()
    published, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and published is not None
    assert [e.target for e in published.releases.events] == [library.pilot_target]
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    base = nginx_server(factory.out)
    wanted = [library.pilot_target, library.public_target, naming.RELEASES_TARGET_PATH]
    done = subprocess.run(
        [
            "node", str(SCRIPT), "--metadata-url", base + "metadata/", "--targets-url",
            base + "targets/", "--root", str(root), "--cache", str(tmp_path / "cache"), *wanted,
        ],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if k != "DEBUG"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = {t["path"]: t for t in json.loads(done.stdout)["targets"]}
    assert set(got) == set(wanted) and all("sha256" in t for t in got.values())
    expected = {i.target_path: i.sha256 for i in published.images}
    assert got[library.pilot_target]["sha256"] == expected[library.pilot_target]
