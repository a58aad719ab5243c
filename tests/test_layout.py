"""The house rules of the layout (docs/design.md "Layout") that import-linter cannot state.

The import contract itself (layers, the client never importing repo_tool, click only under cli/, no
import circles) is `lint-imports`, run by `make lint`; these are the rules about the files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("repo_tool", "client", "metadata_templates")
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_module_is_over_600_lines(module: Path) -> None:
    lines = len(module.read_text("utf-8").splitlines())
    assert lines <= MAX_LINES, (
        f"{module.relative_to(ROOT)}: {lines} lines, expected at most {MAX_LINES}"
    )


def test_repo_tool_has_no_flat_modules_but_its_one_leaf() -> None:
    # Every module lives in the folder of the stage it belongs to; output_paths is the one leaf
    # every layer may use (where a command may write), and __init__ the package marker.
    flat = sorted(p.name for p in (ROOT / "repo_tool").glob("*.py"))
    assert flat == ["__init__.py", "output_paths.py"]


def test_client_has_no_flat_modules() -> None:
    flat = sorted(p.name for p in (ROOT / "client").glob("*.py"))
    assert flat == ["__init__.py"]
