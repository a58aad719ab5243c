"""How the client reaches a library: an ngclient ``FetcherInterface`` on urllib3, or a local folder.

DCC Users commonly sit behind mutual TLS and bearer tokens, so the fetcher takes an optional client
certificate and key, a custom CA bundle and a token file, with connect and read timeouts and a hard
cap on response size (a safety net under ngclient's own per-file length limits).

Errors are python-tuf's download exceptions (client/trust/transport_errors.py, re-exported here);
client/trust/session.py maps them with ``to_cfl_error`` where ngclient's errors leave ngclient.
The bearer token is read once, sent only as a header, never logged and never put in a message.

Every request has an overall deadline (``TransportSettings.deadline``) on top of the per-read
timeout: a host that sends one byte just inside each read timeout is cut off when the deadline
passes, not minutes later.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from tuf.ngclient import FetcherInterface

from client import __version__
from client.trust.transport_errors import (
    STATUS_ADVICE,
    STATUSES_WITH_REASON,
    TransportError,
    TransportHTTPError,
    TransportTimeoutError,
    TransportTooLargeError,
    failure,
    server_reason,
    to_cfl_error,
)
from metadata_templates.errors import ConfigurationError
from metadata_templates.suppliers import ESTATE_REFUSAL

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "CflFetcher",
    "TransportError",
    "TransportHTTPError",
    "TransportSettings",
    "TransportTimeoutError",
    "TransportTooLargeError",
    "to_cfl_error",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
# DUIS caps an image at 10,240,000 octets and a manufacturer role grows ~1.5 kB per image; nothing
# legitimate comes near this, so anything larger is an endless-data attack or a misconfigured host.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# A 10 MB image over a slow 1 Mbit/s link takes ~80 s; two minutes bounds any one request.
DEFAULT_DEADLINE_SECONDS = 120.0
# How much of an error response to read for its reason (nginx's `return 403 "text"` bodies are short).
_ERROR_BODY_READ_BYTES = 4096
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class TransportSettings:
    """How to reach the library.

    Attributes:
        client_cert: PEM client certificate for mutual TLS (``client_key`` may be in it).
        client_key: PEM private key of the client certificate, unencrypted.
        ca_bundle: PEM CA certificates to trust instead of the system store.
        token_file: file whose content (stripped) is sent as ``Authorization: Bearer ...``.
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait between bytes.
        deadline: seconds any one request may take in all, from the first byte sent to the last
            byte received (a trickling host cannot hold a refresh beyond it).
        max_response_bytes: hard cap on any one response body.
        retries: retries for failed connections (never for HTTP error statuses).
    """

    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    token_file: Path | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = DEFAULT_DEADLINE_SECONDS
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    retries: int = 2


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigurationError(f"token file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigurationError(f"token file {path}: not UTF-8 text") from e
    if not token or any(c in token for c in "\r\n"):
        raise ConfigurationError(
            f"token file {path}: found {'nothing' if not token else 'several lines'}, "
            "expected one line holding the bearer token"
        )
    return token


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CflFetcher(FetcherInterface):
    """ngclient's fetcher for ``https://``, ``http://`` and ``file://`` URLs."""

    def __init__(
        self,
        settings: TransportSettings | None = None,
        *,
        pool: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the connection pool; reads the token file and checks the TLS files now, so
        configuration mistakes surface before any network traffic.

        Args:
            settings: how to reach the library (defaults: system CAs, no credentials).
            pool: a prepared urllib3 pool (tests); built from ``settings`` when None.
            clock: monotonic seconds, for the per-request deadline.

        Raises:
            ConfigurationError: a certificate, key, CA bundle or token file is unusable.
        """
        self._clock = clock
        self.settings = settings or TransportSettings()
        self._token = (
            None if self.settings.token_file is None else _read_token(self.settings.token_file)
        )
        self._pool = pool or self._make_pool()

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()

    def __repr__(self) -> str:  # never show the token
        return f"CflFetcher(token={'set' if self._token else 'none'}, settings={self.settings!r})"

    def _make_pool(self) -> urllib3.PoolManager:
        s = self.settings
        for label, path in (
            ("client certificate", s.client_cert),
            ("client key", s.client_key),
            ("CA bundle", s.ca_bundle),
        ):
            if path is not None and not path.is_file():
                raise ConfigurationError(f"{label} {path}: found no such file, expected a PEM file")
        if s.client_key is not None and s.client_cert is None:
            raise ConfigurationError("client key given without a client certificate")
        try:
            context = ssl.create_default_context(
                cafile=None if s.ca_bundle is None else str(s.ca_bundle)
            )
        except (ssl.SSLError, OSError, UnicodeDecodeError) as e:
            raise ConfigurationError(
                f"CA bundle {s.ca_bundle}: found no usable certificate ({e}), "
                "expected PEM CA certificates",
                hint="give the server's CA certificate(s) in PEM form, or omit --ca-bundle",
            ) from e
        try:
            if s.client_cert is not None:
                context.load_cert_chain(
                    str(s.client_cert), None if s.client_key is None else str(s.client_key)
                )
        except (ssl.SSLError, OSError) as e:
            raise ConfigurationError(
                f"client certificate {s.client_cert} / key {s.client_key}: cannot be loaded ({e})",
                hint="both must be PEM; the key must be unencrypted and match the certificate",
            ) from e
        return urllib3.PoolManager(
            ssl_context=context,
            timeout=urllib3.Timeout(connect=s.connect_timeout, read=s.read_timeout),
            # Only connection attempts are retried: a read may have delivered part of a body, and an
            # HTTP status is the server's answer. None for total lets each count apply on its own.
            retries=urllib3.Retry(
                total=None,
                connect=s.retries,
                read=0,
                status=0,
                other=0,
                redirect=3,
                raise_on_redirect=True,
                raise_on_status=False,
            ),
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        """Start the download now (so errors reach ``fetch()``) and stream the body lazily.

        Raises:
            TransportHTTPError: HTTP error status (or a missing local file, as 404).
            TransportError: TLS failure, unreachable host, refused to send credentials.
            TransportTimeoutError: the server went quiet.
            TransportTooLargeError: the response is over the size cap.
        """
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme == "file":
            return self._fetch_file(url)
        if scheme in ("http", "https"):
            return self._fetch_http(url)
        raise TransportError(
            f"{url}: URL scheme {scheme!r} not supported, expected https, http or file",
            url,
            "refused",
        )

    def fetch_from(self, url: str, start: int, max_length: int) -> tuple[int, bytes]:
        """The bytes of ``url`` from offset ``start`` on, for a file that only ever grows at its
        end (a partial log tile): one HTTP Range request, or a seek in a local folder.

        Returns:
            (the offset the bytes begin at, the bytes): ``start`` when the host honoured the range,
            0 when it sent the whole file (a host without Range support, or a file shorter than
            ``start``). The caller checks what it joins: nothing here is verified.

        Raises:
            TransportTooLargeError: more than ``max_length`` bytes.
            TransportHTTPError, TransportError, TransportTimeoutError: as for any download.
        """
        if urllib.parse.urlsplit(url).scheme in ("http", "https"):
            begins, chunks = self._fetch_http_from(url, start)
        else:
            begins, chunks = start, self._fetch_file(url, start)
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > max_length:
                raise TransportTooLargeError(
                    f"{url}: more than {max_length} bytes from byte {begins}, expected a log tile",
                    url,
                )
        return begins, bytes(body)

    # ------------------------------------------------------------------------------ local folder

    def _fetch_file(self, url: str, start: int = 0) -> Iterator[bytes]:
        parts = urllib.parse.urlsplit(url)
        path = Path(urllib.request.url2pathname(parts.path))
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            # As a web server would answer: ngclient reads 404 as "not published".
            raise TransportHTTPError(f"{url}: 404 not found ({path})", 404, url) from e
        except OSError as e:
            raise TransportError(
                f"{url}: cannot read {path}: {e.strerror or e}", url, "connection"
            ) from e
        handle.seek(start)
        return self._stream_file(url, handle)

    def _stream_file(self, url: str, handle: Any) -> Iterator[bytes]:
        received = 0
        with handle:
            while chunk := handle.read(CHUNK_SIZE):
                received += len(chunk)
                self._check_size(url, received)
                yield chunk

    # --------------------------------------------------------------------------------- HTTP(S)

    def _headers(self, url: str) -> dict[str, str]:
        """The headers of every request: the user agent and, over https or loopback only, the
        bearer token.

        Raises:
            TransportError: a token would travel over plain http.
        """
        parts = urllib.parse.urlsplit(url)
        # Per-request headers replace the pool's, so every request carries the full set.
        headers = {"User-Agent": f"cfl-client/{__version__}"}
        if self._token is not None:
            if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
                raise TransportError(
                    f"{url}: refusing to send the bearer token over plain http, expected https",
                    url,
                    "refused",
                )
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def put(self, url: str, body: bytes, content_type: str) -> tuple[int, str]:
        """Upload ``body`` with one HTTP PUT (issue 24: ``cfl outcomes submit --upload``), with the
        same client certificate, token and CA bundle as every download.

        Returns:
            The HTTP status and the server's short reason (empty when it gave none).

        Raises:
            TransportError: not an http(s) URL, TLS failure, unreachable host, broken connection.
        """
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise TransportError(
                f"{url}: URL scheme {scheme!r} cannot take an upload, expected https",
                url,
                "refused",
            )
        headers = self._headers(url)
        headers["Content-Type"] = content_type
        logger.debug("PUT %s (%d bytes)", url, len(body))
        try:
            response = self._pool.request(
                "PUT",
                url,
                body=body,
                headers=headers,
                preload_content=False,
                redirect=False,
                timeout=urllib3.Timeout(
                    connect=self.settings.connect_timeout, read=self.settings.read_timeout
                ),
            )
        except urllib3.exceptions.HTTPError as e:
            raise failure(url, e) from e
        try:
            reason = server_reason(response.read(_ERROR_BODY_READ_BYTES))
        except urllib3.exceptions.HTTPError:
            reason = ""
        finally:
            response.close()
            response.release_conn()
        return response.status, reason

    def _fetch_http(self, url: str, start: int = 0) -> Iterator[bytes]:
        return self._fetch_http_from(url, start)[1]

    def _fetch_http_from(self, url: str, start: int) -> tuple[int, Iterator[bytes]]:
        """GET ``url``, with ``Range: bytes=START-`` when ``start`` is above 0. Returns the offset
        the body begins at (``start`` for a 206, 0 for a host that sent the whole file) and the
        body."""
        headers = self._headers(url)
        if start:
            headers["Range"] = f"bytes={start}-"
        else:
            # Metadata is JSON, and a snapshot listing 2,600 bins is 359 kB raw, 120 kB gzipped
            # (a bin 52 kB, 8 kB); urllib3 inflates it as it is read, at most CHUNK_SIZE at a
            # time, so the size cap and ngclient's length limits count the inflated bytes and a
            # small bomb is cut off like any long answer. Not with a Range: the log's partial
            # tiles are joined by offset, and nginx does not compress a range anyway.
            headers["Accept-Encoding"] = "gzip"
        logger.debug("GET %s%s", url, f" from byte {start}" if start else "")
        deadline_at = self._clock() + self.settings.deadline
        response = self._request_within_deadline(url, headers, deadline_at)
        begins = 0
        if start and response.status == 206:
            try:
                begins = _range_start(url, response.headers.get("Content-Range"), start)
            except TransportError:
                response.close()
                response.release_conn()
                raise
        elif start and response.status == 416:
            # Nothing at or after ``start``: the caller's copy is not a prefix of this file.
            response.close()
            response.release_conn()
            return self._fetch_http_from(url, 0)
        elif response.status != 200:
            raise self._status_error(url, response)
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit():
            try:
                self._check_size(url, int(declared))
            except TransportTooLargeError:
                response.close()
                response.release_conn()
                raise
        return begins, self._stream_http(url, response, deadline_at)

    def _request_within_deadline(
        self, url: str, headers: dict[str, str], deadline_at: float
    ) -> urllib3.BaseHTTPResponse:
        """Send the request and read the status line and headers, within the deadline.

        urllib3 bounds each wait, not the whole header phase, and hands over no socket before the
        headers are complete; so the request runs on a daemon thread and is abandoned (its
        response closed whenever it does arrive) if the deadline passes first.

        Raises:
            TransportTimeoutError: no complete headers before the deadline.
            TransportError: TLS failure, unreachable host, broken connection.
        """
        # No single wait may outlast the deadline either (a silent host before the headers).
        read_timeout = max(0.001, min(self.settings.read_timeout, self.settings.deadline))
        outcome: queue.SimpleQueue[urllib3.BaseHTTPResponse | BaseException] = queue.SimpleQueue()
        abandoned = threading.Event()

        def send() -> None:
            try:
                response = self._pool.request(
                    "GET",
                    url,
                    headers=headers,
                    preload_content=False,
                    timeout=urllib3.Timeout(
                        connect=self.settings.connect_timeout, read=read_timeout
                    ),
                )
            except BaseException as e:  # handed to the caller's thread, which re-raises it
                outcome.put(e)
                return
            if abandoned.is_set():
                response.close()  # the caller gave up on it: free the socket now
                return
            outcome.put(response)

        threading.Thread(target=send, name="cfl-request", daemon=True).start()
        try:
            result = outcome.get(timeout=max(0.0, deadline_at - self._clock()))
        except queue.Empty:
            abandoned.set()
            with contextlib.suppress(queue.Empty):  # it arrived just now: close it all the same
                late = outcome.get_nowait()
                if not isinstance(late, BaseException):
                    late.close()
            raise TransportTimeoutError(
                f"{url}: no response within the {self.settings.deadline:g} s deadline", url
            ) from None
        if isinstance(result, urllib3.exceptions.HTTPError):
            raise failure(url, result) from result
        if isinstance(result, BaseException):
            raise result
        return result

    def _status_error(self, url: str, response: urllib3.BaseHTTPResponse) -> TransportHTTPError:
        """An HTTP error status as one message naming the URL, the status and the server's reason."""
        reason = ""
        try:
            if response.status in STATUSES_WITH_REASON:
                reason = server_reason(response.read(_ERROR_BODY_READ_BYTES))
        except urllib3.exceptions.HTTPError:
            pass  # the status alone still says what happened
        finally:
            # Never drain an error body of unknown length: drop the connection instead.
            response.close()
            response.release_conn()
        if response.status == 403 and reason == ESTATE_REFUSAL:
            return TransportHTTPError(
                f"{url} (HTTP 403): the library refused: {reason}",
                response.status,
                url,
                refused_by_library=True,
            )
        advice = STATUS_ADVICE.get(response.status, "the server could not serve it")
        status = f"HTTP {response.status} {response.reason or ''}".rstrip()
        said = f' (server says "{reason}")' if reason else ""
        return TransportHTTPError(f"{url}: {status}{said}: {advice}", response.status, url)

    def _stream_http(
        self, url: str, response: urllib3.BaseHTTPResponse, deadline_at: float
    ) -> Iterator[bytes]:
        received = 0
        complete = False
        overran = threading.Event()

        def cut_off() -> None:
            # From the timer thread: unblock a read that is still waiting when the deadline passes.
            overran.set()
            response.shutdown()

        timer = threading.Timer(max(0.0, deadline_at - self._clock()), cut_off)
        timer.daemon = True
        timer.start()
        try:
            while True:
                if self._clock() >= deadline_at:
                    overran.set()
                # read1 returns what has arrived rather than waiting for a full chunk, so the
                # deadline is checked between trickled bytes too.
                chunk = b"" if overran.is_set() else response.read1(CHUNK_SIZE)
                if overran.is_set():
                    raise TransportTimeoutError(
                        f"{url}: not complete within the {self.settings.deadline:g} s deadline "
                        f"({received} bytes received)",
                        url,
                    )
                if not chunk:
                    break
                received += len(chunk)
                self._check_size(url, received)
                yield chunk
            complete = True
        except urllib3.exceptions.HTTPError as e:
            if overran.is_set():
                raise TransportTimeoutError(
                    f"{url}: not complete within the {self.settings.deadline:g} s deadline", url
                ) from e
            raise failure(url, e) from e
        finally:
            timer.cancel()
            if not complete:
                # Unread data is still on the wire (perhaps endlessly): drop the connection
                # rather than drain it or hand it back for reuse.
                response.close()
            response.release_conn()

    def _check_size(self, url: str, received: int) -> None:
        cap = self.settings.max_response_bytes
        if received > cap:
            raise TransportTooLargeError(
                f"{url}: response over {cap} bytes, the transport's cap; refusing the rest", url
            )


def _range_start(url: str, content_range: str | None, asked: int) -> int:
    """The first byte of a 206 response, which must be the one asked for (``bytes S-E/T``).

    Raises:
        TransportError: no Content-Range, or a range other than the one asked for.
    """
    unit, _, spec = (content_range or "").partition(" ")
    first = spec.split("-", 1)[0]
    if unit != "bytes" or not (first.isascii() and first.isdigit()) or int(first) != asked:
        raise TransportError(
            f"{url}: HTTP 206 with Content-Range {content_range!r}, expected bytes {asked}-",
            url,
            "connection",
        )
    return asked
