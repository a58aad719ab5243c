"""The nginx the interop tests run is docs/hosting.md's, word for word.

repo_tool/dev/static_nginx.py serves the tests (and the benchmarks) with the caching policy the doc
gives a host; only the server's own lines (listen, TLS, root, mime types) may differ. A change to one
that is not made to the other fails here, before any nginx starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from repo_tool.dev.static_nginx import POLICY_LOCATIONS, POLICY_MAPS, nginx_conf

HOSTING = Path(__file__).resolve().parents[2] / "docs" / "hosting.md"
NOTE = "    # add_header in a location replaces"


def _doc_block() -> str:
    blocks = re.findall(r"```nginx\n(.*?)```", HOSTING.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/hosting.md has one nginx block"
    return blocks[0]


def test_the_maps_are_the_docs() -> None:
    block = _doc_block()
    assert block[: block.index("server {")].rstrip("\n") + "\n" == POLICY_MAPS


def test_the_locations_are_the_docs() -> None:
    block = _doc_block()
    # from the add_header note to the end of the TLS server's last location
    assert block[block.index(NOTE) : block.rindex("}")] == POLICY_LOCATIONS


def test_the_served_configuration_holds_both(tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path / "root", tmp_path, 8080)
    assert POLICY_MAPS in conf
    assert POLICY_LOCATIONS in conf
