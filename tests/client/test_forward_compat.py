"""An optional field this version does not know leaves the image usable (forward compatibility).

A later version may add an optional field to ``custom.cfl``, as ``release_notes`` and ``pilot`` were
added. TUF keeps unrecognised fields inside ``custom``; our schema now does too
(metadata_templates/schema/cfl-custom.schema.json), so this client still offers and downloads such
an image and the provider's verify walk still counts it, while a missing required field or a known
field of the wrong type is refused as before. The gateway, where a field is first admitted, refuses
fields it does not know (tests/repo/test_gateway.py, ``target-metadata-mismatch/unknown-field``).

The library is built by repo_tool's own code. The role version carrying the new fields is put into
the provider's state directly, standing in for a newer provider whose gateway knows them, and is
then published and signed into snapshot as usual.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Targets

from factory import LibraryFactory, standard_library
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import CflTargetInfo, CustomMetadataError, unknown_fields
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

CFL = Path(sys.executable).with_name("cfl")
FUTURE = {"rollout_wave": 2, "energy_label": {"class": "A", "notes": ["x"]}}


def _publish_edited_role(factory: LibraryFactory, role: str, edit: Any) -> None:
    """The role one version up with ``edit`` applied to each image's custom.cfl, signed by its
    manufacturer and committed as a newer gateway would, then published."""
    repo = factory.repo
    md = Metadata[Targets].from_bytes(repo.metadata_bytes(role, repo.head.roles[role]))
    for target in md.signed.targets.values():
        edit(target.custom["cfl"])
    md.signed.version += 1
    md.signed.expires = factory.tick() + timedelta(days=30)
    md.signatures.clear()
    md.sign(factory.mfr_signers[role.removeprefix("mfr-")])
    with repo.locked():
        atomic_write_bytes(repo.metadata_path(role, md.signed.version), md.to_bytes())
        head = replace(repo.head, roles={**repo.head.roles, role: md.signed.version})
        atomic_write_bytes(repo.state_dir / "head.json", head.to_bytes())
    factory.publish()


def _future(cfl: dict[str, Any]) -> None:
    cfl.update(copy.deepcopy(FUTURE))
    cfl["cpl_entries"][0]["region"] = "north"  # nested, in a known object


def _wrong_type(cfl: dict[str, Any]) -> None:
    cfl["pilot"] = "soon"  # a known field, not of its type


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> LibraryFactory:
    factory, _images = standard_library(tmp_path_factory.mktemp("future"))
    _publish_edited_role(factory, "mfr-121D", _future)
    _publish_edited_role(factory, "mfr-3F01", _wrong_type)
    return factory


def _cfl(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"} | {"COLUMNS": "200"}
    return subprocess.run(
        [str(CFL), "--home", str(home), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_an_image_with_an_unknown_optional_field_is_still_offered(
    library: LibraryFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(library.root_bytes)
    home = tmp_path / "home"
    assert _cfl("init", library.out.as_uri(), "--root", root, home=home).returncode == 0
    listed = _cfl("list", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    images = {i["target"]: i for i in json.loads(listed.stdout)["images"]}
    esme = sorted(t for t in images if t.startswith("121D/"))
    assert len(esme) == 2  # both 121D images, each carrying the new fields
    assert "rollout_wave" not in json.dumps(images)  # ignored, not passed on
    # The 3F01 image's known field has the wrong type: left out, with the field named.
    assert not [t for t in images if t.startswith("3F01/")]
    assert "warning: ignored 3F01/" in listed.stderr and "custom.cfl.pilot" in listed.stderr
    assert "121D/" not in listed.stderr
    downloaded = _cfl("download", esme[0], "--out", tmp_path / "dl", home=home)
    assert downloaded.returncode == 0, downloaded.stderr
    assert len(list((tmp_path / "dl").glob("*.ota"))) == 1


def test_the_providers_verify_walk_counts_it_too(library: LibraryFactory) -> None:
    published, problems = load_verified_library(
        folder_reader(library.out), library.root_bytes, now=library.tick()
    )
    assert sorted(i.target_path[:4] for i in published.images) == ["121D", "121D"]
    assert len(problems) == 1 and "custom.cfl.pilot" in problems[0]


def _genuine(library: LibraryFactory) -> dict[str, Any]:
    """A custom.cfl as the gateway admitted it (the role version before the edit)."""
    repo = library.repo
    version = repo.head.roles["mfr-121D"] - 1
    role = Metadata[Targets].from_bytes(repo.metadata_bytes("mfr-121D", version)).signed
    cfl: dict[str, Any] = next(iter(role.targets.values())).custom["cfl"]
    return copy.deepcopy(cfl)


def test_unknown_fields_are_named_and_known_ones_still_checked(library: LibraryFactory) -> None:
    data = _genuine(library)
    plain = CflTargetInfo.from_dict(data)
    assert unknown_fields(data, plain) == ()
    _future(data)
    info = CflTargetInfo.from_dict(data)  # accepted: the same image as without the new fields
    assert info == plain
    assert unknown_fields(data, info) == (
        "custom.cfl.cpl_entries[0].region",
        "custom.cfl.energy_label",
        "custom.cfl.rollout_wave",
    )
    for field, value in (
        ("firmware_version", 3),
        ("release_notes", "x"),
        ("pilot", {"suppliers": ["00000000000000A1"]}),  # a required sub-field missing
        ("schema_version", 2),  # what every reader must understand raises the version
    ):
        with pytest.raises(CustomMetadataError, match=f"custom.cfl.{field}|custom.cfl:"):
            CflTargetInfo.from_dict({**data, field: value})
    missing = {k: v for k, v in data.items() if k != "reason"}
    with pytest.raises(CustomMetadataError, match="'reason' is a required property"):
        CflTargetInfo.from_dict(missing)
