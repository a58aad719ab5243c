"""`cfl-repo demo-data`: a coherent sample dataset for trying the library out.

Registered on the root group by repo_tool/cli/main.py; the data is repo_tool/dev/demo_data.py's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from repo_tool.cli.console import err as _err
from repo_tool.cli.console import utc_now

logger = logging.getLogger("repo_tool")


@click.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
def demo_data(out_dir: Path, seed: int) -> None:
    """Write a coherent sample dataset: CPL (CSV and XLSX), GBCS images for three manufacturers,
    their declarations and a supplier estate. Under suppliers/: DEVELOPMENT-ONLY supplier
    organisations (a throwaway CA, keys, certificates) and their delivery results for last month."""
    from repo_tool.dev.demo_data import make_demo_dataset, write_demo_dataset
    from repo_tool.dev.demo_suppliers import make_supplier_samples, write_supplier_samples

    dataset = make_demo_dataset(seed)
    paths = write_demo_dataset(dataset, out_dir)
    manifest = write_supplier_samples(make_supplier_samples(dataset, now=utc_now()), out_dir)
    _err(f"demo data written to {out_dir}")
    _err(
        f"development-only supplier keys and certificates: {manifest.parent} (never use them for real)"
    )
    logger.debug("%s", paths)
