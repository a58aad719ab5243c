"""Run every benchmark module (``bench/bench_*.py``) in name order, each through its ``main()``."""

from __future__ import annotations

import importlib
import pkgutil

import bench


def run_all() -> None:
    """Import each ``bench_*`` module and call its ``main()`` with default settings."""
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"bench.{info.name}")
            main = getattr(module, "main", None)
            if callable(main):
                main()


if __name__ == "__main__":
    run_all()
