"""Run by ``test_publish_site_crash`` under strace: what `cfl-repo publish` runs, at a fixed time.

Usage: ``python publish_site_crash.py REPO NOW`` (NOW an ISO 8601 time with offset): read the tree
state, publish REPO into its default out directory, and build the website told what was added.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from repo_tool.ops.publish import publish
from repo_tool.publish.site_step import build_published_site, publish_hint, tree_state
from repo_tool.state.repository import Repository

if __name__ == "__main__":
    repo = Repository.open(Path(sys.argv[1]))
    now = datetime.fromisoformat(sys.argv[2])
    out = repo.default_out
    before = tree_state(out)
    publish(repo, out, now=now)
    site = build_published_site(
        out, repo.metadata_bytes("root", 1), now=now, hint=publish_hint(repo, before)
    )
    print(f"hinted={site.hinted} appended={site.result.appended}")
