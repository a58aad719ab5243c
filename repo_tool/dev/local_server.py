"""Opening the listening socket of `cfl-repo serve`, with errors an operator can act on."""

from __future__ import annotations

import errno
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from metadata_templates.errors import ConfigurationError, UnavailableError


def open_server(bind: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threading HTTP server listening on ``bind``:``port``.

    Raises:
        UnavailableError: the port is in use (another server holds it; try again or pick another).
        ConfigurationError: ``bind`` is not an address of this machine or does not resolve, or the
            port needs privileges this user lacks.
    """
    try:
        return ThreadingHTTPServer((bind, port), handler)
    except socket.gaierror as e:
        raise ConfigurationError(
            f"--bind: found {bind!r}, expected an address or host name that resolves ({e.strerror})"
        ) from e
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UnavailableError(
                f"--port: found {port} in use on {bind}, expected a free port",
                hint="stop the other server or pass another --port (0 picks a free one)",
            ) from e
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigurationError(
                f"--bind: found {bind!r}, expected an address of this machine ({e.strerror})"
            ) from e
        if e.errno == errno.EACCES:
            raise ConfigurationError(
                f"--port: found {port}, expected a port this user may listen on ({e.strerror}; "
                "ports below 1024 need privileges)"
            ) from e
        raise UnavailableError(f"--bind {bind} --port {port}: cannot listen ({e.strerror})") from e
