"""The wheel carries templates and static assets: build it, install it in a fresh virtualenv, and run
both commands and a site build from there (not from the source tree)."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from factory import standard_library

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("cfl-*.whl")
    return built


def test_wheel_contains_site_assets_and_schema(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "metadata_templates/schema/cfl-custom.schema.json" in names
    assert any(n.startswith("repo_tool/_site/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith("repo_tool/_site/static/") and n.endswith(".css") for n in names)
    assert "client/templates/estate_report.html" in names  # cfl check --report
    assert "repo_tool/access/host_templates/nginx.conf.j2" in names  # `cfl-repo host nginx`
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_runs_both_commands_and_builds_a_site(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    # A fresh environment: the wheel and its declared dependencies from the package index, nothing
    # from the source tree.
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for command in ("cfl-repo", "cfl"):
        result = subprocess.run(
            [str(env_dir / "bin" / command), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "0.1.0" in result.stdout
    factory, _ = standard_library(tmp_path)
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    site = tmp_path / "site"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run(
        [
            str(env_dir / "bin" / "cfl-repo"),
            "site",
            "build",
            "--published",
            str(factory.out),
            "--root",
            str(root),
            "--out",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=outside,
    )
    assert result.returncode == 0, result.stderr
    assert (site / "index.html").is_file()
    assert any(p.suffix == ".css" for p in site.rglob("*"))
    located = subprocess.run(
        [str(py), "-c", "import repo_tool.site.build, sys; print(repo_tool.site.build.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=outside,
        check=True,
    )
    assert str(env_dir) in located.stdout  # the installed copy ran, not the source tree
