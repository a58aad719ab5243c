"""Run by ``test_site_crash`` under strace: build the site for ``many_library(COUNT)`` into OUT.

Usage: ``python site_crash_build.py OUT COUNT MINUTES [withdraw]`` (MINUTES after GENERATED is the
build time; ``withdraw`` withdraws image 3, which the append path leaves to the keyed full build).
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta
from pathlib import Path

from site_samples import GENERATED, many_library

from metadata_templates.withdrawals import Withdrawal
from repo_tool.site.build import build_site
from repo_tool.verify.published import PublishedLibrary


def library(count: int, withdraw: bool) -> PublishedLibrary:
    """``many_library(count)``, with image 3 withdrawn when asked."""
    built = many_library(count)
    if not withdraw:
        return built
    victim = built.images[3]
    withdrawal = Withdrawal(victim.target_path, victim.sha256, "2026-02-01T00:00:00Z", "recalled")
    return dataclasses.replace(built, withdrawals=(withdrawal,))


if __name__ == "__main__":
    out, count, minutes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    withdraw = sys.argv[4:] == ["withdraw"]
    build_site(library(count, withdraw), out, generated=GENERATED + timedelta(minutes=minutes))
