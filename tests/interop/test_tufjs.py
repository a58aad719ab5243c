"""tuf-js, a TUF client written independently of python-tuf, reads the library from a real nginx.

If only our own client could read the published tree, "it is plain TUF" would be a claim; here a
second implementation refreshes from the trusted root, walks the manufacturer delegations and
verifies every image, and refuses the same tree once a blob or a manufacturer role is tampered with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require_system
from factory import LibraryFactory, standard_library
from metadata_templates import naming
from repo_tool.verify.published import PublishedImage
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

from .conftest import NginxServer

HERE = Path(__file__).parent
SCRIPT = HERE / "verify_with_tufjs.mjs"
TUF_JS = HERE / "node_modules" / "tuf-js"
NODE_TIMEOUT = 120

pytestmark = pytest.mark.system


@dataclass
class Served:
    factory: LibraryFactory
    images: dict[str, bytes]
    published: list[PublishedImage]
    base_url: str
    root_file: Path


@pytest.fixture
def served(tmp_path: Path, nginx_server: NginxServer) -> Served:
    # nginx: the nginx_server fixture requires it. tuf-js comes from `make node` (setup-node.sh).
    require_system("node", str(TUF_JS))
    factory, images = standard_library(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None
    root_file = tmp_path / "trusted-root.json"
    root_file.write_bytes(factory.root_bytes)
    return Served(factory, images, list(library.images), nginx_server(factory.out), root_file)


def run_tufjs(served: Served, cache: Path, targets: list[str]) -> tuple[int, dict[str, Any], str]:
    """Run the tuf-js script; returns (exit code, its JSON document, stderr)."""
    completed = subprocess.run(
        [
            "node",
            str(SCRIPT),
            "--metadata-url",
            served.base_url + "metadata/",
            "--targets-url",
            served.base_url + "targets/",
            "--root",
            str(served.root_file),
            "--cache",
            str(cache),
            *targets,
        ],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        # no DEBUG from the environment: tuf-js would log to stderr
        env={k: v for k, v in os.environ.items() if k != "DEBUG"},
    )
    document: dict[str, Any] = json.loads(completed.stdout) if completed.stdout.strip() else {}
    return completed.returncode, document, completed.stderr


def test_tufjs_verifies_and_downloads_every_published_image(served: Served, tmp_path: Path) -> None:
    expected = {image.target_path: image for image in served.published}
    # the verifier's view and the bytes the factory deposited agree: three images, by hash
    assert sorted(i.sha256 for i in served.published) == sorted(
        hashlib.sha256(b).hexdigest() for b in served.images.values()
    )

    code, document, stderr = run_tufjs(served, tmp_path / "tufjs-cache", sorted(expected))

    assert code == 0, stderr
    assert document["tuf_js"] == "5.0.1"
    got = {t["path"]: (t["sha256"], t["length"]) for t in document["targets"]}
    assert got == {path: (i.sha256, i.length) for path, i in expected.items()}


def _tamper_blob(served: Served, image: PublishedImage) -> bytes:
    """Overwrite the image's blob on the host with other bytes of the same length."""
    blob = served.factory.out / "targets" / naming.blob_name(image.target_path, image.sha256)
    original = blob.read_bytes()
    forged = original[:-16] + bytes(b ^ 0xFF for b in original[-16:])
    blob.write_bytes(forged)
    return forged


def test_tufjs_refuses_a_tampered_blob(served: Served, tmp_path: Path) -> None:
    victim = served.published[0]
    forged = _tamper_blob(served, victim)
    cache = tmp_path / "tufjs-cache"

    code, document, stderr = run_tufjs(served, cache, [i.target_path for i in served.published])

    assert code == 1
    results = {t["path"]: t for t in document["targets"]}
    assert "LengthOrHashMismatchError" in results[victim.target_path]["error"]
    assert f"{victim.target_path}: LengthOrHashMismatchError" in stderr
    # the untouched images still verify: the refusal is about the forged bytes, not the library
    for image in served.published[1:]:
        assert results[image.target_path]["sha256"] == image.sha256
    # and the forged bytes never reached the client's target directory
    forged_sha = hashlib.sha256(forged).hexdigest()
    kept = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (cache / "targets").iterdir()]
    assert forged_sha not in kept


def test_tufjs_refuses_an_altered_manufacturer_role(served: Served, tmp_path: Path) -> None:
    """Rewrite an image's hash in the published manufacturer role, signatures left as they were:
    tuf-js must reject the role, so the image cannot even be looked up."""
    victim = served.published[0]
    role_files = sorted((served.factory.out / "metadata").glob(f"*.{victim.role}.json"))
    newest = max(role_files, key=lambda p: int(p.name.split(".", 1)[0]))
    original = newest.read_bytes()
    # same length, so the refusal cannot come from a length check
    forged = original.replace(
        victim.sha256.encode(), hashlib.sha256(b"forged").hexdigest().encode()
    )
    assert forged != original and len(forged) == len(original)
    newest.write_bytes(forged)

    code, document, stderr = run_tufjs(served, tmp_path / "tufjs-cache", [victim.target_path])

    assert code == 1
    (result,) = document["targets"]
    assert "sha256" not in result
    # Either check refuses it: the snapshot's hash of the role file (when snapshot pins role hashes)
    # or, failing that, the manufacturer's signature over the role.
    refusal = re.compile(
        rf"Expected hash [0-9a-f]{{64}} but got [0-9a-f]{{64}}|{re.escape(victim.role)} was signed by 0/1 keys"
    )
    assert refusal.search(result["error"]), stderr


def test_tufjs_verifies_a_tree_with_encrypted_notes_registry_and_grants(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    """Encrypted notes (manufacturer targets), the registry, the custodian key and a grant
    (provider targets) are plain TUF targets to an independent client too."""
    require_system("node", str(TUF_JS))
    from notes_factory import PLAINTEXT, notes_library, publish_registry

    from repo_tool.ops.notes_grant import grant_notes

    lib = notes_library(tmp_path / "lib")
    factory = lib.factory
    assert factory.deposit(lib.images["esme"], ["CPL-0002"], release_notes=PLAINTEXT).target
    late = lib.orgs["late"]
    publish_registry(
        factory,
        [lib.orgs["is"], lib.orgs["gs"], lib.orgs["revoked"], late],
        revoked=("1111222233334444",),
    )
    with factory.repo.locked():
        grant_notes(factory.repo, late.entity_id, lib.custodian_key, now=factory.tick())
    factory.publish()
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == [] and library is not None
    expected: dict[str, tuple[str, int]] = {}
    assert library.targets_metadata is not None
    for md in (library.targets_metadata, *library.role_metadata.values()):
        for path, target in md.signed.targets.items():
            expected[path] = (target.hashes["sha256"], target.length)
    assert any(p.endswith(".notes.jwe") and p.startswith("121D/") for p in expected)
    assert any(p.startswith("cfl/grants/") for p in expected)
    root_file = tmp_path / "trusted-root.json"
    root_file.write_bytes(factory.root_bytes)
    served = Served(factory, {}, list(library.images), nginx_server(factory.out), root_file)

    code, document, stderr = run_tufjs(served, tmp_path / "tufjs-cache", sorted(expected))

    assert code == 0, stderr
    assert {t["path"]: (t["sha256"], t["length"]) for t in document["targets"]} == expected
    # Byte-wise, no plaintext note anywhere: the published tree, the provider's state and event log,
    # the host's access and error logs, and the independent client's cache.
    marker = b"SECRET-MARKER-7f3a91"
    assert marker in PLAINTEXT
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "access.log" for p in files) and any(
        p.name == "events.jsonl" for p in files
    )
    assert [p for p in files if marker in p.read_bytes()] == []


def test_tufjs_resolves_every_target_through_hash_bins(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    """A manufacturer split into hash bins (TAP 15), with images and encrypted notes lodged before
    and after the split: tuf-js walks mfr-121D's succinct delegation to each target's bin."""
    require_system("node", str(TUF_JS))
    from bins_factory import notes_split_library

    factory, _bundle = notes_split_library(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == [] and library is not None
    expected: dict[str, tuple[str, int]] = {}
    for name, md in library.role_metadata.items():
        if naming.manufacturer_of_bin(name) == "121D":
            for path, target in md.signed.targets.items():
                expected[path] = (target.hashes["sha256"], target.length)
    assert len(expected) == 4  # two images, two notes
    root_file = tmp_path / "trusted-root.json"
    root_file.write_bytes(factory.root_bytes)
    served = Served(factory, {}, list(library.images), nginx_server(factory.out), root_file)

    code, document, stderr = run_tufjs(served, tmp_path / "tufjs-cache", sorted(expected))

    assert code == 0, stderr
    assert {t["path"]: (t["sha256"], t["length"]) for t in document["targets"]} == expected
