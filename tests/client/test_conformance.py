"""`python -m client.conformance` speaks tuf-conformance's CLIENT-CLI.md protocol over our own code.

Driven here through the protocol on a library built by repo_tool (tests/factory.py) and served from
its published folder by ``file://`` URLs, so it runs in CI, where tuf-conformance itself cannot.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.cli.conformance import ANCHOR_NAME, run
from factory import LibraryFactory, standard_library


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[LibraryFactory, dict[str, bytes]]:
    return standard_library(tmp_path_factory.mktemp("lib"))


def urls(factory: LibraryFactory) -> tuple[str, str]:
    base = factory.out.as_uri()
    return f"{base}/metadata", f"{base}/targets"


def init(tmp_path: Path, root: bytes) -> tuple[Path, int]:
    metadata = tmp_path / "metadata"
    metadata.mkdir(exist_ok=True)
    (tmp_path / "initial_root.json").write_bytes(root)
    return metadata, run(
        ["--metadata-dir", str(metadata), "init", str(tmp_path / "initial_root.json")]
    )


def trusted_roles(metadata: Path) -> dict[str, int]:
    """What the suite reads: every ``*.json`` in the folder, by role name and version."""
    return {
        p.stem: json.loads(p.read_bytes())["signed"]["version"] for p in metadata.glob("*.json")
    }


def test_init_refresh_download_through_the_protocol(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, images = library
    metadata_url, targets_url = urls(factory)
    metadata, code = init(tmp_path, factory.root_bytes)
    assert code == 0
    assert trusted_roles(metadata) == {}  # the anchor is not a *.json the suite would misread

    assert run(["--metadata-url", metadata_url, "--metadata-dir", str(metadata), "refresh"]) == 0
    published = json.loads((factory.out / "metadata" / "timestamp.json").read_bytes())["signed"]
    roles = trusted_roles(metadata)
    assert roles["root"] == 1 and roles["timestamp"] == published["version"]
    assert set(roles) == {"root", "timestamp", "snapshot", "targets"}

    role_file = "mfr-121D.json"
    role = json.loads(
        (factory.out / "metadata" / f"{_version(factory, role_file)}.{role_file}").read_bytes()
    )["signed"]
    path = sorted(role["targets"])[0]
    downloads = tmp_path / "targets"
    downloads.mkdir()
    command = [
        "--metadata-dir", str(metadata),
        "--metadata-url", metadata_url,
        "--target-name", path,
        "--target-base-url", targets_url,
        "--target-dir", str(downloads),
        "download",
    ]  # fmt: skip
    assert run(command) == 0
    files = [p for p in downloads.iterdir()]
    assert len(files) == 1
    assert (
        hashlib.sha256(files[0].read_bytes()).hexdigest()
        == role["targets"][path]["hashes"]["sha256"]
    )
    assert files[0].read_bytes() in images.values()
    mtime = files[0].stat().st_mtime_ns
    assert run(command) == 0  # cached: the verified file is not fetched or written again
    assert files[0].stat().st_mtime_ns == mtime

    unknown = [*command[:5], "121D/ESME-0001-00000009-0000000000000000.ota", *command[6:]]
    assert run(unknown) == 1


def _version(factory: LibraryFactory, role_file: str) -> int:
    timestamp = json.loads((factory.out / "metadata" / "timestamp.json").read_bytes())["signed"]
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = json.loads(
        (factory.out / "metadata" / f"{snapshot_version}.snapshot.json").read_bytes()
    )["signed"]
    version = snapshot["meta"][role_file]["version"]
    assert isinstance(version, int)
    return version


@pytest.mark.parametrize(
    "spoil",
    ["drop-version", "bad-signature", "not-json"],
)
def test_a_refused_initial_root_makes_refresh_fail_with_1_and_no_request(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path, spoil: str
) -> None:
    factory, _ = library
    root = json.loads(factory.root_bytes)
    if spoil == "drop-version":
        del root["signed"]["version"]
    elif spoil == "bad-signature":
        root["signatures"][0]["sig"] = "00" * 64
    data = b"{" if spoil == "not-json" else json.dumps(root).encode()
    metadata, code = init(tmp_path, data)
    assert code == 1
    assert not (metadata / ANCHOR_NAME).exists()
    missing = tmp_path / "no-such-repository"  # any request would fail differently: none is made
    assert (
        run(["--metadata-dir", str(metadata), "--metadata-url", missing.as_uri(), "refresh"]) == 1
    )
    assert list(metadata.iterdir()) == []


def test_every_failure_exits_1_never_2(tmp_path: Path) -> None:
    assert run(["refresh"]) == 1  # --metadata-dir missing: a usage error, still 1
    assert run(["--metadata-dir", str(tmp_path), "refresh"]) == 1  # no --metadata-url
    assert run(["--metadata-dir", str(tmp_path), "frobnicate"]) == 1


def test_the_module_runs_as_a_program(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    metadata_url, _ = urls(factory)
    (tmp_path / "root.json").write_bytes(factory.root_bytes)
    program = [
        sys.executable,
        "-m",
        "client.cli.conformance",
        "--metadata-dir",
        str(tmp_path / "md"),
    ]
    assert (
        subprocess.run([*program, "init", str(tmp_path / "root.json")], check=False).returncode == 0
    )
    done = subprocess.run(
        [*program, "--metadata-url", metadata_url, "refresh"], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "md" / "timestamp.json").is_file()
