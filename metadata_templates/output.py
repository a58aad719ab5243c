"""The stable ``--json`` document both command lines promise scripts (ARCHITECTURE "Stable outputs").

Only the format lives in the contract; printing, error lines and exit codes are each CLI's own edge
(``repo_tool/cli/console.py``, ``client/cli/output.py``).
"""

from __future__ import annotations

import json
from typing import Any

from metadata_templates import SCHEMA_VERSION


def json_document(doc: dict[str, Any]) -> str:
    """A stable ``--json`` document: ``schema_version`` first-class, keys sorted."""
    return json.dumps({"schema_version": SCHEMA_VERSION, **doc}, indent=2, sort_keys=True)
