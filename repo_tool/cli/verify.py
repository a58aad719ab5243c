"""`cfl-repo verify`: the independent full check of a published tree.

Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from metadata_templates.errors import EXIT_FAILURE
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import utc_now

_now = utc_now


@click.command()
@click.argument("published_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--root",
    "root_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The root you trust (e.g. 1.root.json received out of band).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def verify(published_dir: Path, root_file: Path, as_json: bool) -> None:
    """Independently check a published tree: every signature, delegation, version, blob length and
    hash, and that snapshot and timestamp agree. Exit 1 with every problem listed if anything is off.

    Always the full walk: it never reads the verified-role memo the website step of `publish`
    keeps (docs/site.md, "The verified-role memo")."""
    from repo_tool.verify.sources import folder_reader
    from repo_tool.verify.walk import load_verified_library

    library, problems = load_verified_library(
        folder_reader(published_dir), root_file.read_bytes(), now=_now()
    )
    expired = dict(library.expired_roles) if library else {}
    if as_json:
        _emit_json(
            {
                "ok": not problems,
                "problems": problems,
                "images": len(library.images) if library else 0,
                "expired_roles": {name: when.isoformat() for name, when in sorted(expired.items())},
            }
        )
    for problem in problems:
        _err(f"problem: {problem}")
    for name, when in sorted(expired.items()):
        count = sum(1 for image in library.images if image.role == name) if library else 0
        _err(
            f"warning: {name} expired at {when.isoformat()}: clients cannot verify its {count} "
            "image(s) until the manufacturer renews (cfl-repo submit --renew); the rest is unaffected"
        )
    if problems or library is None:
        _err(f"error: {published_dir} failed verification ({len(problems)} problem(s))")
        sys.exit(EXIT_FAILURE)
    _err(
        f"ok: {published_dir} verifies: root v{library.root_version}, {len(library.images)} image(s), "
        f"{len(library.manufacturers)} manufacturer(s)"
    )
