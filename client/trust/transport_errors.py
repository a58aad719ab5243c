"""The client transport's errors, and the one mapping from them to what the CLI reports.

Errors are raised as python-tuf's download exceptions, because ngclient relies on them (a 403 or 404
while probing for the next root version means "no newer root"); each carries a message that names
the URL and says what to check. ``to_cfl_error`` maps them (and so HTTP statuses) to ``CflError``.
"""

from __future__ import annotations

import urllib3
from tuf.api import exceptions as tuf_exceptions

from metadata_templates.errors import (
    CflError,
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    VerificationError,
)

_ERROR_REASON_MAX_CHARS = 200
# Statuses whose body carries the server's reason the supplier needs: credentials refused, or (nginx)
# a client certificate it could not accept.
STATUSES_WITH_REASON = frozenset({400, 401, 403})


class TransportHTTPError(tuf_exceptions.DownloadHTTPError):
    """The server answered with an HTTP error status.

    Attributes:
        url: the URL asked for.
    """

    def __init__(
        self, message: str, status_code: int, url: str, *, refused_by_library: bool = False
    ) -> None:
        super().__init__(message, status_code)
        self.url = url
        # The library's own refusal of this request (the host's estate rule), not of the
        # credentials: the request was understood and is not allowed.
        self.refused_by_library = refused_by_library


class TransportError(tuf_exceptions.DownloadError):
    """The request did not get an answer: TLS failure, unreachable host, broken connection.

    Attributes:
        url: the URL asked for.
        kind: ``tls``, ``unreachable``, ``connection`` or ``refused`` (we would not send it).
    """

    def __init__(self, message: str, url: str, kind: str) -> None:
        super().__init__(message)
        self.url = url
        self.kind = kind


class TransportTimeoutError(tuf_exceptions.SlowRetrievalError):
    """The server stopped sending within the read timeout, or the request overran its deadline."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class TransportTooLargeError(tuf_exceptions.DownloadLengthMismatchError):
    """The response exceeded the transport's size cap."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


STATUS_ADVICE = {
    400: "the server could not accept the request: check the client certificate (--client-cert)",
    401: "the server wants credentials: check the token file (--token-file) or client certificate",
    403: "the server refused these credentials: is this supplier allowed to read the library?",
    404: "no such file on the server: check the repository URL",
}


def server_reason(body: bytes) -> str:
    """The server's short text reason from an error body, safe to print on one line.

    Non-printable characters (including ANSI escapes a hostile host might send) are dropped, runs
    of whitespace become one space, and the text is cut to ~200 characters. An HTML error page
    (nginx's default) says nothing the status line does not, so it yields "".
    """
    text = body.decode("utf-8", errors="replace")
    if text.lstrip()[:1] == "<":
        return ""
    printable = "".join(c if c.isprintable() else " " for c in text.replace("\ufffd", " "))
    reason = " ".join(printable.split())
    if len(reason) > _ERROR_REASON_MAX_CHARS:
        reason = reason[: _ERROR_REASON_MAX_CHARS - 3].rstrip() + "..."
    return reason


def failure(url: str, error: urllib3.exceptions.HTTPError) -> tuf_exceptions.DownloadError:
    """Name what went wrong in words an operator can act on."""
    reason: BaseException = error
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        reason = error.reason
    if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return TransportTimeoutError(f"{url}: no data within the read timeout", url)
    if isinstance(reason, urllib3.exceptions.SSLError):
        return TransportError(
            f"{url}: TLS failure: {reason}",
            url,
            "tls",
        )
    if isinstance(
        reason,
        urllib3.exceptions.NewConnectionError
        | urllib3.exceptions.ConnectTimeoutError
        | urllib3.exceptions.NameResolutionError,
    ):
        return TransportError(f"{url}: host unreachable: {reason}", url, "unreachable")
    if isinstance(reason, urllib3.exceptions.DecodeError):
        # The client asks for gzip (transport.py); what came back does not inflate.
        return TransportError(
            f"{url}: found a compressed answer that does not inflate ({reason.__context__ or reason}), "
            "expected gzip as the Content-Encoding header declares",
            url,
            "connection",
        )
    text = str(reason)
    if "SSL" in text or "TLS" in text or "certificate" in text:
        return TransportError(f"{url}: TLS failure: {text}", url, "tls")
    return TransportError(f"{url}: connection failed: {text}", url, "connection")


_HINTS = {
    "tls": "check --ca-bundle (the server's CA) and --client-cert/--client-key (yours)",
    "unreachable": "check the repository URL, your network, proxy and firewall",
    "connection": "the server closed the connection; try again, then ask the library's operator",
    "refused": "use an https:// repository URL",
}


def to_cfl_error(error: tuf_exceptions.DownloadError) -> CflError:
    """Map a download error to the ``CflError`` the CLI reports, keeping its message.

    The one mapping of HTTP statuses: 400, 401 and 403 are configuration (the credentials this
    home was given are refused; the message carries the server's reason), except the library's
    estate refusal (``metadata_templates.suppliers.ESTATE_REFUSAL``), a rejection explained in one
    line; a too-large response is
    a verification failure (the host is misbehaving); everything else is the library being
    unavailable.
    """
    if isinstance(error, TransportHTTPError) and error.refused_by_library:
        # Exit 1, no hint: the credentials are fine, this image is not the supplier's to fetch.
        return RejectedInputError(str(error))
    if isinstance(error, tuf_exceptions.DownloadHTTPError):
        if error.status_code in STATUSES_WITH_REASON:
            return ConfigurationError(str(error))
        return UnavailableError(str(error))
    if isinstance(error, TransportTooLargeError):
        return VerificationError(str(error), hint="the server sent more than it may")
    if isinstance(error, tuf_exceptions.DownloadLengthMismatchError):
        # ngclient's own limit: the signed metadata said how long the file is.
        return VerificationError(
            f"the server sent more data than the signed metadata allows ({error})"
        )
    if isinstance(error, tuf_exceptions.SlowRetrievalError):
        return UnavailableError(str(error), hint="raise the read timeout or try again later")
    if isinstance(error, TransportError):
        return UnavailableError(str(error), hint=_HINTS.get(error.kind))
    return UnavailableError(str(error))
