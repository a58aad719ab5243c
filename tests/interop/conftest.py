"""A real nginx serving a published tree, as a host would, for clients that are not ours to fake.

`nginx_server(published_dir) -> base_url` starts an unprivileged nginx on 127.0.0.1 and a free port
with repo_tool/dev/static_nginx.py's configuration (docs/hosting.md's policy) written into the
test's tmp_path, waits (bounded) until it answers, and stops it when the test ends, whatever the
outcome.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import require_system
from repo_tool.dev.static_nginx import (  # noqa: F401  (re-exported for the tests)
    IMMUTABLE,
    NO_CACHE,
    NO_STORE,
    Running,
    free_port,
    nginx_binary,
    start,
    stop,
)

NginxServer = Callable[[Path], str]


def header(url: str, name: str) -> tuple[int, str | None]:
    """Status and one response header of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get(name)
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get(name)


def cache_control(url: str) -> tuple[int, str | None]:
    """Status and Cache-Control of a GET."""
    return header(url, "Cache-Control")


@pytest.fixture
def nginx_server(tmp_path: Path) -> Iterator[NginxServer]:
    """Call with a published directory; returns the base URL (ending in /) nginx serves it at."""
    binary = nginx_binary()
    require_system(binary)
    started: list[Running] = []

    def serve(published_dir: Path) -> str:
        state = tmp_path / f"nginx-{len(started)}"
        state.mkdir()
        try:
            running, base_url = start(binary, published_dir.resolve(), state)
        except RuntimeError as e:
            pytest.fail(str(e))
        started.append(running)
        return base_url

    try:
        yield serve
    finally:
        for running in started:
            stop(running)
