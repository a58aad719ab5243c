"""One manufacturer's expired role affects only that manufacturer's images (issue 9).

The library is built by repo_tool's own code with injected time: manufacturer 3F01 deposits so long
ago that its role (valid for the policy's full period) expired half an hour before the client runs,
while the provider's roles and manufacturer 121D's role are fresh. Every client command must report
3F01 as unverified, carry on with 121D, and exit 1 only where 3F01's images were asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from client_factories import device_id, write_estate
from tuf.api.metadata import Timestamp

from client.trust.session import Session, SessionPaths
from factory import T0, FolderFetcher, LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.ops.refresh import refresh as refresh_op
from repo_tool.ops.rotate_keys import rotate_keys as rotate_keys_op

CFL = Path(sys.executable).with_name("cfl")
IMAGES = {"a2": make_image("121D", 2), "b5": make_image("3F01", 5)}
GSME_ROW = ("GSME", "3F01", "0B0C", "1111", "00000001")
ESME_ROW = ("ESME", "121D", "010A030B", "1111", "00000001")


def build_library_with_an_expired_role(tmp: Path) -> LibraryFactory:
    """121D fresh; 3F01's role signed one policy period (plus 20 minutes) before T0, so it is still
    valid when the provider publishes (T0 + a few minutes) and expired when the client runs (the
    real now, T0 + 1 h)."""
    period = timedelta(days=DEFAULT_POLICY.manufacturer_expiry_days)
    factory = LibraryFactory(tmp, now=T0 - period + timedelta(minutes=20))
    factory.import_cpl(
        [
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(IMAGES["a2"])),
            make_entry(
                "CPL-0101",
                mfr="3F01",
                model="0B0C",
                fw="00000005",
                image_sha=mi_sha(IMAGES["b5"]),
                device_type="GSME",
            ),
        ]
    )
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3F01")
    factory.publish()
    factory.deposit(IMAGES["b5"], ["CPL-0101"], mfr="3F01")
    factory.now = T0  # the provider renews root and re-signs its roles on schedule; 3F01 does not
    with factory.repo.locked():
        rotate_keys_op(
            factory.repo, Timestamp.type, add=[], remove=[], threshold=None, now=factory.tick()
        )
        refresh_op(factory.repo, now=factory.tick(), force=True)
    factory.publish()
    factory.deposit(IMAGES["a2"], ["CPL-0002"])
    return factory


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> LibraryFactory:
    return build_library_with_an_expired_role(tmp_path_factory.mktemp("expired"))


def cfl(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"} | {"COLUMNS": "200"}
    return subprocess.run(
        [str(CFL), "--home", str(home), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.fixture
def home(library: LibraryFactory, tmp_path: Path) -> Path:
    root = tmp_path / "root.json"
    root.write_bytes(library.root_bytes)
    home = tmp_path / "home"
    result = cfl("init", library.out.as_uri(), "--root", root, home=home)
    assert result.returncode == 0, result.stderr
    return home


def doc_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    value = json.loads(result.stdout)
    assert isinstance(value, dict)
    return value


def expired_3f01(doc: dict[str, Any]) -> None:
    """The documented `unverified` field names 3F01's role and says it expired."""
    assert [(u["manufacturer_id"], u["role"]) for u in doc["unverified"]] == [("3F01", "mfr-3F01")]
    assert "expired" in doc["unverified"][0]["message"]


def warned_3f01(result: subprocess.CompletedProcess[str]) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning: 3F01:")]
    assert len(lines) == 1 and "expired" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_the_session_reports_the_expired_role_and_loads_the_others(
    library: LibraryFactory, tmp_path: Path
) -> None:
    fetcher = FolderFetcher(library.out)
    paths = SessionPaths(tmp_path / "metadata", tmp_path / "cache")
    session = Session(paths, fetcher.base_url, fetcher, bootstrap_root=library.root_bytes)
    loaded = session.load_manufacturers(None)
    assert {t.role for t in loaded.targets} == {"mfr-121D"}
    assert [(u.manufacturer_id, u.role) for u in loaded.unverified] == [("3F01", "mfr-3F01")]
    assert "expired" in loaded.unverified[0].message
    assert not (paths.metadata_dir / "mfr-3F01.json").exists()  # never trusted


def test_refresh_reports_the_expired_role_and_succeeds(home: Path) -> None:
    result = cfl("refresh", "--json", home=home)
    assert result.returncode == 0, result.stderr
    warned_3f01(result)
    doc = doc_of(result)
    expired_3f01(doc)
    assert doc["manufacturers"] == ["121D", "3F01"]


def test_list_carries_on_and_fails_only_when_3f01_is_asked_for(home: Path) -> None:
    everything = cfl("list", "--json", home=home)
    assert everything.returncode == 0, everything.stderr
    warned_3f01(everything)
    doc = doc_of(everything)
    expired_3f01(doc)
    assert [i["cfl"]["manufacturer_id"] for i in doc["images"]] == ["121D"]

    only_121d = cfl("list", "--json", "--manufacturer", "121D", home=home)
    assert only_121d.returncode == 0, only_121d.stderr
    assert doc_of(only_121d)["unverified"] == []

    asked = cfl("list", "--json", "--manufacturer", "3F01", "--manufacturer", "121D", home=home)
    assert asked.returncode == 1
    expired_3f01(doc_of(asked))
    assert len(doc_of(asked)["images"]) == 1  # 121D's answer is still given
    assert "error: not verified: images of manufacturer(s) 3F01" in asked.stderr


def test_check_matches_the_other_manufacturers_and_exits_1(home: Path, tmp_path: Path) -> None:
    estate = write_estate(
        tmp_path / "estate.csv", [(device_id(1), *ESME_ROW), (device_id(2), *GSME_ROW)]
    )
    result = cfl("check", estate, "--json", home=home)
    assert result.returncode == 1, result.stderr
    warned_3f01(result)
    doc = doc_of(result)
    expired_3f01(doc)
    recommended = {g["manufacturer_id"]: g["recommended"] for g in doc["groups"]}
    assert recommended["121D"] is not None and recommended["121D"].startswith("121D/")
    assert recommended["3F01"] is None

    # An incomplete catalogue is not recorded: 3F01's images must not look new when it renews.
    assert "changes" not in doc_of(cfl("check", estate, "--json", "--changes", home=home))
    assert not (home / "history.sqlite").exists()

    only_121d = write_estate(tmp_path / "esme.csv", [(device_id(1), *ESME_ROW)])
    fine = cfl("check", only_121d, "--json", "--changes", home=home)
    assert fine.returncode == 0, fine.stderr
    assert doc_of(fine)["unverified"] == []  # 3F01's role was never loaded
    assert "changes" in doc_of(fine)


def test_download_fetches_the_others_and_exits_1(home: Path, tmp_path: Path) -> None:
    estate = write_estate(
        tmp_path / "estate.csv", [(device_id(1), *ESME_ROW), (device_id(2), *GSME_ROW)]
    )
    out = tmp_path / "out"
    result = cfl("download", "--estate", estate, "--out", out, "--json", home=home)
    assert result.returncode == 1, result.stderr
    doc = doc_of(result)
    expired_3f01(doc)
    assert [f["target"].split("/")[0] for f in doc["files"]] == ["121D"]
    assert len(list(out.glob("*.ota"))) == 1

    target = doc["files"][0]["target"]
    by_name = cfl("download", target, "--out", tmp_path / "named", home=home)
    assert by_name.returncode == 0, by_name.stderr
