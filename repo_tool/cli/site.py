"""`cfl-repo site ...`: the public website rendered from the verified published metadata.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from repo_tool.cli.console import err as _err
from repo_tool.cli.console import lock_policy as _lock_policy
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now


@click.group()
def site() -> None:
    """The public website: what firmware exists (no images, no release notes)."""


@site.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the site (default PUBLISHED/site).",
)
@click.option(
    "--published",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Published tree (default R/public).",
)
@click.option(
    "--root",
    "root_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trusted root (default the repository's 1.root.json).",
)
@click.pass_context
def site_build(
    ctx: click.Context, out: Path | None, published: Path | None, root_file: Path | None
) -> None:
    """Render the website from the verified published metadata.

    \b
    When it reads the repository (unless both --published and --root are given), role files
    verified cleanly before are recalled from R/cache/verify-memo instead of verified again
    (deleting that folder is always safe); see docs/site.md, "The verified-role memo".
    `cfl-repo verify` never uses it.

    It holds the repository lock (when it reads the repository) and, when the site is the
    published tree's, the tree's own lock, which every publish into it takes too.
    """
    from repo_tool.publish.folder import tree_lock
    from repo_tool.publish.site_step import verified_for_site
    from repo_tool.site.build import build_site
    from repo_tool.verify.memo import VerifyMemo
    from repo_tool.verify.sources import folder_reader

    memo = None
    with contextlib.ExitStack() as held:
        policy = _lock_policy(ctx)
        if published is None or root_file is None:
            repo = _open_repo(ctx)
            # It writes the repository's verified-role memo, and the site of its published tree.
            held.enter_context(repo.locked())
            published = published or repo.default_out
            root_bytes = root_file.read_bytes() if root_file else repo.metadata_bytes("root", 1)
            memo = VerifyMemo.of_repository(repo.path)
        else:
            root_bytes = root_file.read_bytes()
        target = out or published / "site"
        if target.resolve().is_relative_to(published.resolve()):
            # Its site is the published tree's: take the tree's lock, which every publish into
            # it takes too, so no publish builds the same site meanwhile. (Reading needs no
            # lock: every file a walk reads but timestamp.json is immutable.)
            held.enter_context(tree_lock(published, policy))
        now = _now()
        library = verified_for_site(folder_reader(published), root_bytes, now=now, memo=memo)
        build_site(library, target, generated=now)
    _err(f"website written to {target}/index.html ({len(library.images)} images)")
