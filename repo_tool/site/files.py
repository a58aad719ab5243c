"""The bookkeeping files a site build leaves in its output folder, and writing a file only when its
bytes changed (so a static host and its caches see only real changes).
"""

from __future__ import annotations

import logging
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError

logger = logging.getLogger(__name__)


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except IsADirectoryError as e:
        raise UnavailableError(f"site file {path}: found a directory, expected a file") from e
    atomic_write_bytes(path, data)
    return True


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _previous_files(out_dir: Path) -> list[str]:
    """What the previous build listed; validated by ``_prunable`` only for the few it no longer
    produces (checking 100,000 names each build cost more than the build)."""
    try:
        return (out_dir / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UnavailableError(f"site manifest {out_dir / MANIFEST_NAME}: cannot read: {e}") from e


MANIFEST_NAME = ".cfl-site-files"


_INPUTS_NAME = ".cfl-site-inputs"


_SEARCH_DIRTY = ".cfl-site-search-dirty"
