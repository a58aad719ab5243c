"""Shared test plumbing.

`require_system("nginx")` skips when a system package is missing, except under CI=true, where the
missing package is a failure: CI must exercise the real components.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "run `make system` as root (apt-get) or install it by hand"


def require_system(*commands: str) -> None:
    """Skip (locally) or fail (in CI) unless every command is on PATH or is an existing path."""
    missing = [c for c in commands if shutil.which(c) is None and not os.path.exists(c)]
    if not missing:
        return
    message = f"missing system component(s) {', '.join(missing)}: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _own_submit_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own `cfl-repo submit` CPL index folder (repo_tool/intake/cpl_cache.py), so no
    test reads an index another test, or the user running the suite, wrote."""
    monkeypatch.setenv("CFL_REPO_CACHE", str(tmp_path_factory.mktemp("cfl-repo-cache")))
