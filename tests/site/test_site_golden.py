"""Golden files: the site for a small fixed library must not change by a single byte unnoticed.

The expected output lives in ``tests/site/golden/`` (everything the build writes except ``static/``,
which is copied verbatim from ``site/static`` and checked in ``test_site_render``). After an intended
change to the templates or the generator, regenerate and review the diff:

    CFL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/site/test_site_golden.py
    git diff tests/site/golden
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from site_samples import GENERATED, small_library

from repo_tool.site.build import build_site

GOLDEN = Path(__file__).parent / "golden"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not path.relative_to(root).as_posix().startswith("static/")
        # the incremental build's input keys and the append path's state: internal caches, not
        # output anyone reads
        and path.name not in (".cfl-site-inputs", ".cfl-site-state.json")
    }


def test_site_matches_golden_files(tmp_path: Path) -> None:
    out = tmp_path / "site"
    build_site(
        small_library(), out, generated=GENERATED, client_init_url="https://cfl.example/lib/"
    )
    actual = _tree(out)
    if os.environ.get("CFL_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, data in actual.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
        pytest.skip(f"golden files rewritten in {GOLDEN}; review them with git diff")
    expected = _tree(GOLDEN)
    assert sorted(actual) == sorted(expected), "files added or missing; see the module docstring"
    changed = [name for name in expected if actual[name] != expected[name]]
    assert changed == [], f"differs from golden: {changed}; see the module docstring"
