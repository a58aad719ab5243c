"""`cfl-repo serve`: a local HTTP server for trying out a published tree.

Registered on the root group by repo_tool/cli/main.py. Production hosting is nginx or object
storage (docs/hosting.md); this one only adds the cache and content-security headers they would.
"""

from __future__ import annotations

from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import click

from repo_tool.cli.console import err as _err
from repo_tool.dev.local_server import open_server


@click.command()
@click.argument("published_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
def serve(published_dir: Path, port: int, bind: str) -> None:
    """Serve a published tree over HTTP for trying it out (use nginx or object storage in production)."""
    directory = str(published_dir.resolve())

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def end_headers(self) -> None:
            # Everything but timestamp.json is immutable; the site forbids inline script.
            if self.path.endswith("/timestamp.json"):
                self.send_header("Cache-Control", "no-cache")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'",
            )
            self.send_header("X-Content-Type-Options", "nosniff")
            super().end_headers()

    server = open_server(bind, port, Handler)  # a CflError naming --bind/--port, not a traceback
    _err(
        f"serving {directory} at http://{bind}:{server.server_address[1]}/ (site: /site/index.html); Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
