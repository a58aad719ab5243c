"""The transport against real loopback servers: HTTP, TLS with client certificates, local folders.

Nothing leaves 127.0.0.1. Certificates are made fresh per test session with ``cryptography``.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import logging
import socket
import socketserver
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tuf.api import exceptions as tuf_exceptions

from client.trust.transport import (
    CflFetcher,
    TransportError,
    TransportHTTPError,
    TransportSettings,
    TransportTimeoutError,
    TransportTooLargeError,
    to_cfl_error,
)
from metadata_templates.errors import ConfigurationError, UnavailableError, VerificationError

TOKEN = "s3cret-token-value"


# --- a tiny configurable server ------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    lie_about_length: bool = False
    content_range: str | None = None
    content_encoding: str | None = None


@dataclass
class Server:
    base: str
    routes: dict[str, Route]
    seen_headers: list[dict[str, str]] = field(default_factory=list)


def _handler(server_state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.seen_headers.append(dict(self.headers.items()))
            route = server_state.routes.get(self.path, Route(404, b"nope"))
            self.send_response(route.status)
            if route.content_range is not None:
                self.send_header("Content-Range", route.content_range)
            if route.content_encoding is not None:
                self.send_header("Content-Encoding", route.content_encoding)
            if not route.lie_about_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.delay:
                time.sleep(route.delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> Server:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        scheme = "http"
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
            scheme = "https"
        state = Server(f"{scheme}://127.0.0.1:{httpd.server_address[1]}", routes)
        httpd.RequestHandlerClass = _handler(state)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return state

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def fetch_all(fetcher: CflFetcher, url: str) -> bytes:
    return b"".join(fetcher.fetch(url))


# --- plain HTTP ---------------------------------------------------------------------------------


def test_streams_a_body_and_sends_the_bearer_token(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = bytes(range(256)) * 1000
    server = serve({"/metadata/timestamp.json": Route(body=body)})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    fetcher = CflFetcher(TransportSettings(token_file=token_file))
    assert fetch_all(fetcher, server.base + "/metadata/timestamp.json") == body
    assert server.seen_headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert server.seen_headers[0]["User-Agent"].startswith("cfl-client/")
    assert TOKEN not in repr(fetcher)


@pytest.mark.parametrize(
    ("status", "words", "cfl_error"),
    [
        (
            400,
            'HTTP 400 Bad Request (server says "error page"): the server could not accept',
            ConfigurationError,
        ),
        (
            401,
            'HTTP 401 Unauthorized (server says "error page"): the server wants credentials',
            ConfigurationError,
        ),
        (
            403,
            'HTTP 403 Forbidden (server says "error page"): the server refused these credentials',
            ConfigurationError,
        ),
        (404, "HTTP 404 Not Found: no such file on the server", UnavailableError),
        (500, "HTTP 500 Internal Server Error: the server could not serve it", UnavailableError),
    ],
    ids=["400", "401", "403", "404", "500"],
)
def test_http_errors_name_the_url_and_keep_the_status_for_ngclient(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path, status: int, words: str, cfl_error: type[Exception], caplog
) -> None:
    server = serve({"/x.json": Route(status=status, body=b"error page")})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    url = server.base + "/x.json"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransportHTTPError) as caught:
        fetch_all(CflFetcher(TransportSettings(token_file=token_file)), url)
    assert isinstance(caught.value, tuf_exceptions.DownloadHTTPError)
    assert caught.value.status_code == status
    assert str(caught.value).startswith(f"{url}: {words}")
    assert "\n" not in str(caught.value)
    mapped = to_cfl_error(caught.value)
    assert isinstance(mapped, cfl_error)
    assert str(mapped) == str(caught.value)
    assert TOKEN not in str(caught.value) + caplog.text


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"revoked certificate\n", ' (server says "revoked certificate")'),
        (b"\x1b[31mred\x1b[0m\tand\r\nmore\x00", ' (server says "[31mred [0m and more")'),
        (b"x" * 5000, ' (server says "' + "x" * 197 + '...")'),
        (b"<html><body><h1>403 Forbidden</h1></body></html>", ""),
        (b"", ""),
        (b"\xff\xfe not utf-8", ' (server says "not utf-8")'),
    ],
    ids=["plain-reason", "control-characters", "too-long", "html-page", "empty", "not-utf8"],
)
def test_a_refusal_names_the_url_and_the_servers_sanitised_reason(  # type: ignore[no-untyped-def]
    serve, body: bytes, said: str
) -> None:
    server = serve({"/targets/x.ota": Route(status=403, body=body)})
    url = server.base + "/targets/x.ota"
    with pytest.raises(TransportHTTPError) as caught:
        fetch_all(CflFetcher(), url)
    assert str(caught.value) == (
        f"{url}: HTTP 403 Forbidden{said}: the server refused these credentials: "
        "is this supplier allowed to read the library?"
    )


def test_a_refusal_with_an_endless_body_is_not_read_to_the_end(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/t": Route(status=401, body=b"y" * 50_000_000, lie_about_length=True)})
    started = time.monotonic()
    with pytest.raises(TransportHTTPError, match="HTTP 401"):
        fetch_all(CflFetcher(), server.base + "/t")
    assert time.monotonic() - started < 5


def test_unreachable_host_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    url = f"http://127.0.0.1:{port}/metadata/1.root.json"
    fetcher = CflFetcher(TransportSettings(retries=0, connect_timeout=2))
    with pytest.raises(TransportError) as caught:
        fetch_all(fetcher, url)
    assert caught.value.kind == "unreachable"
    assert str(caught.value).startswith(f"{url}: host unreachable")
    assert isinstance(to_cfl_error(caught.value), UnavailableError)


def test_a_silent_server_times_out(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/slow": Route(body=b"x" * 10, delay=1.5)})
    fetcher = CflFetcher(TransportSettings(read_timeout=0.3))
    with pytest.raises(tuf_exceptions.SlowRetrievalError) as caught:
        fetch_all(fetcher, server.base + "/slow")
    assert isinstance(caught.value, TransportTimeoutError)
    assert server.base + "/slow" in str(caught.value)


@pytest.mark.parametrize("lie", [False, True], ids=["declared-length", "no-length-header"])
def test_endless_data_is_cut_off_at_the_cap(serve, lie: bool) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/big": Route(body=b"x" * 300_000, lie_about_length=lie)})
    fetcher = CflFetcher(TransportSettings(max_response_bytes=100_000))
    with pytest.raises(TransportTooLargeError, match="over 100000 bytes") as caught:
        fetch_all(fetcher, server.base + "/big")
    assert isinstance(to_cfl_error(caught.value), VerificationError)


def test_ngclients_own_length_limit_still_applies(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/t.json": Route(body=b"y" * 5000)})
    with pytest.raises(tuf_exceptions.DownloadLengthMismatchError):
        CflFetcher().download_bytes(server.base + "/t.json", 1000)
    assert CflFetcher().download_bytes(server.base + "/t.json", 5000) == b"y" * 5000


def test_the_token_is_never_sent_over_plain_http_to_another_host(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    fetcher = CflFetcher(TransportSettings(token_file=token_file))
    with pytest.raises(TransportError, match="refusing to send the bearer token") as caught:
        fetch_all(fetcher, "http://cfl.invalid/metadata/timestamp.json")
    assert caught.value.kind == "refused"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), ("", "found nothing"), ("a\nb", "found several lines")],
    ids=["missing", "empty", "two-lines"],
)
def test_bad_token_file_is_a_configuration_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        CflFetcher(TransportSettings(token_file=token_file))


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(TransportError, match="URL scheme 'ftp' not supported"):
        fetch_all(CflFetcher(), "ftp://127.0.0.1/x")


# --- local folders --------------------------------------------------------------------------------


def test_file_urls_read_a_local_folder(tmp_path: Path) -> None:
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "timestamp.json").write_bytes(b"{}" * 100_000)
    base = tmp_path.as_uri()
    fetcher = CflFetcher()
    assert fetch_all(fetcher, f"{base}/metadata/timestamp.json") == b"{}" * 100_000
    with pytest.raises(TransportHTTPError) as caught:
        fetch_all(fetcher, f"{base}/metadata/2.root.json")
    assert caught.value.status_code == 404  # ngclient reads this as "no newer root"
    with pytest.raises(TransportHTTPError):
        fetch_all(fetcher, f"{base}/metadata")
    small = CflFetcher(TransportSettings(max_response_bytes=1000))
    with pytest.raises(TransportTooLargeError):
        fetch_all(small, f"{base}/metadata/timestamp.json")


# --- TLS and client certificates ------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        assert issuer is not None
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca = _cert("Test CFL CA", ca_key, None, ca_key, ca=True)
    other = _cert("Some Other CA", other_key, None, other_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert("127.0.0.1", server_key, ca, ca_key, server=True)
    client = _cert("Supplier 1", client_key, ca, ca_key)
    return Pki(
        ca=_pem(d / "ca.pem", ca),
        other_ca=_pem(d / "other-ca.pem", other),
        server_cert=_pem(d / "server.pem", server),
        server_key=_write_key(d / "server.key", server_key),
        client_cert=_pem(d / "client.pem", client),
        client_key=_write_key(d / "client.key", client_key),
    )


def _mtls_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.ca)
    return context


def test_mutual_tls_with_a_client_certificate_works(serve, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/metadata/timestamp.json": Route(body=b"signed")}, tls=_mtls_context(pki))
    fetcher = CflFetcher(
        TransportSettings(ca_bundle=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)
    )
    assert fetch_all(fetcher, server.base + "/metadata/timestamp.json") == b"signed"


def test_missing_client_certificate_is_a_clear_tls_failure(serve, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/t": Route(body=b"x")}, tls=_mtls_context(pki))
    url = server.base + "/t"
    with pytest.raises(TransportError) as caught:
        fetch_all(CflFetcher(TransportSettings(ca_bundle=pki.ca, retries=0)), url)
    assert caught.value.kind in ("tls", "connection")
    assert str(caught.value).startswith(f"{url}: ")
    assert to_cfl_error(caught.value).hint


def test_untrusted_server_certificate_is_a_tls_failure(serve, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/t": Route(body=b"x")}, tls=_mtls_context(pki))
    settings = TransportSettings(
        ca_bundle=pki.other_ca, client_cert=pki.client_cert, client_key=pki.client_key, retries=0
    )
    url = server.base + "/t"
    with pytest.raises(TransportError) as caught:
        fetch_all(CflFetcher(settings), url)
    assert caught.value.kind == "tls"
    assert "certificate verify failed" in str(caught.value)
    assert "--ca-bundle" in (to_cfl_error(caught.value).hint or "")


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing-cert", "client certificate .*: found no such file"),
        ("key-without-cert", "client key given without a client certificate"),
        ("mismatched-key", "cannot be loaded"),
        ("missing-ca", "CA bundle .*: found no such file"),
    ],
    ids=["missing-cert", "key-without-cert", "mismatched-key", "missing-ca"],
)
def test_bad_tls_files_are_configuration_errors(
    pki: Pki, tmp_path: Path, which: str, message: str
) -> None:
    settings = {
        "missing-cert": TransportSettings(client_cert=tmp_path / "nope.pem"),
        "key-without-cert": TransportSettings(client_key=pki.client_key),
        "mismatched-key": TransportSettings(client_cert=pki.client_cert, client_key=pki.server_key),
        "missing-ca": TransportSettings(ca_bundle=tmp_path / "nope.pem"),
    }[which]
    with pytest.raises(ConfigurationError, match=message):
        CflFetcher(settings)


# --- the overall deadline against a trickling host -------------------------------------------------


class _TrickleHandler(socketserver.BaseRequestHandler):
    """Answers any request with headers at once, then one body byte every 2 s (forever, in effect)."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not self.server.stopping.is_set():  # type: ignore[attr-defined]
                self.request.sendall(b"x")
                self.server.stopping.wait(2.0)  # type: ignore[attr-defined]


class _HeaderTrickleHandler(socketserver.BaseRequestHandler):
    """Sends the status line, then one byte of an endless header every 2 s."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.server.stopping.is_set():  # type: ignore[attr-defined]
                self.request.sendall(b"a")
                self.server.stopping.wait(2.0)  # type: ignore[attr-defined]


@pytest.fixture
def header_trickle_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HeaderTrickleHandler)
    server.daemon_threads = True
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_a_host_trickling_its_headers_is_cut_off_at_the_deadline(header_trickle_url: str) -> None:
    fetcher = CflFetcher(TransportSettings(read_timeout=30, deadline=3))
    started = time.monotonic()
    with pytest.raises(TransportTimeoutError, match="no response within the 3 s deadline"):
        fetch_all(fetcher, header_trickle_url + "/metadata/timestamp.json")
    assert 2.5 < time.monotonic() - started < 6  # the deadline, plus a loaded machine's lag


@pytest.fixture
def trickle_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TrickleHandler)
    server.daemon_threads = True
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_a_trickling_host_is_cut_off_at_the_deadline(trickle_url: str) -> None:
    # Each byte arrives well inside the read timeout, so only the overall deadline can stop it.
    fetcher = CflFetcher(TransportSettings(read_timeout=30, deadline=3))
    started = time.monotonic()
    with pytest.raises(TransportTimeoutError, match="not complete within the 3 s deadline"):
        fetch_all(fetcher, trickle_url + "/metadata/timestamp.json")
    assert 2.5 < time.monotonic() - started < 6  # the deadline, plus a loaded machine's lag


def test_the_deadline_is_measured_on_the_injected_clock(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/t": Route(body=b"z" * 200_000)})
    ticks = iter(range(0, 1000, 10))  # every reading of the clock is 10 s later than the last
    fetcher = CflFetcher(TransportSettings(deadline=25), clock=lambda: float(next(ticks)))
    with pytest.raises(TransportTimeoutError, match="25 s deadline"):
        fetch_all(fetcher, server.base + "/t")
    patient = CflFetcher(TransportSettings(deadline=25))
    assert fetch_all(patient, server.base + "/t") == b"z" * 200_000


# --- compressed answers (nginx's gzip on JSON, docs/hosting.md) --------------------------------


def test_a_gzipped_answer_is_asked_for_and_inflated(serve) -> None:  # type: ignore[no-untyped-def]
    body = b'{"signed": {"meta": {}}}' * 2000
    server = serve(
        {"/metadata/1.snapshot.json": Route(body=gzip.compress(body), content_encoding="gzip")}
    )
    assert CflFetcher().download_bytes(server.base + "/metadata/1.snapshot.json", len(body)) == body
    assert server.seen_headers[0]["Accept-Encoding"] == "gzip"


def test_a_gzip_bomb_is_cut_off_at_the_inflated_cap_in_bounded_memory(serve) -> None:  # type: ignore[no-untyped-def]
    bomb = gzip.compress(b"\0" * 200_000_000, 9)  # 200 MB inflated from about 200 kB
    assert len(bomb) < 300_000
    server = serve({"/metadata/1.snapshot.json": Route(body=bomb, content_encoding="gzip")})
    fetcher = CflFetcher(TransportSettings(max_response_bytes=1_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(TransportTooLargeError, match="over 1000000 bytes"):
            fetch_all(fetcher, server.base + "/metadata/1.snapshot.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # chunks of 64 KiB inflated at a time, never the whole bomb
    with pytest.raises(tuf_exceptions.DownloadLengthMismatchError):  # ngclient's limit as well
        CflFetcher().download_bytes(server.base + "/metadata/1.snapshot.json", 5000)


def test_a_corrupt_gzip_answer_is_one_transport_error(serve) -> None:  # type: ignore[no-untyped-def]
    broken = bytearray(gzip.compress(b"x" * 100_000))
    broken[20:40] = b"\xff" * 20
    server = serve({"/t.json": Route(body=bytes(broken), content_encoding="gzip")})
    with pytest.raises(TransportError) as caught:
        fetch_all(CflFetcher(), server.base + "/t.json")
    assert f"{server.base}/t.json: found a compressed answer that does not inflate" in str(
        caught.value
    )
    assert isinstance(to_cfl_error(caught.value), (UnavailableError, VerificationError))


def test_a_ranged_read_never_asks_for_compression(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/log/t": Route(206, b"tail", content_range="bytes 10-13/14")})
    assert CflFetcher().fetch_from(server.base + "/log/t", 10, 100) == (10, b"tail")
    assert server.seen_headers[0].get("Accept-Encoding", "identity") == "identity"


# --- ranged reads of a growing file (a partial log tile, client/log/tile_cache.py) --------------


def test_fetch_from_asks_for_the_bytes_after_an_offset_and_takes_a_206(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/log/t": Route(206, b"tail", content_range="bytes 10-13/14")})
    assert CflFetcher().fetch_from(server.base + "/log/t", 10, 100) == (10, b"tail")
    assert server.seen_headers[0]["Range"] == "bytes=10-"


def test_fetch_from_a_host_that_ignores_range_gets_the_whole_file_from_byte_0(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/log/t": Route(200, b"0123456789tail")})
    assert CflFetcher().fetch_from(server.base + "/log/t", 10, 100) == (0, b"0123456789tail")


def test_fetch_from_refuses_a_206_for_another_range(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/log/t": Route(206, b"xxtail", content_range="bytes 8-13/14")})
    with pytest.raises(TransportError, match=r"Content-Range 'bytes 8-13/14', expected bytes 10-"):
        CflFetcher().fetch_from(server.base + "/log/t", 10, 100)
    server = serve({"/log/t": Route(206, b"tail")})
    with pytest.raises(TransportError, match="Content-Range None, expected bytes 10-"):
        CflFetcher().fetch_from(server.base + "/log/t", 10, 100)
    server = serve({"/log/t": Route(206, b"tail", content_range="bytes ²-13/14")})
    with pytest.raises(TransportError, match="Content-Range 'bytes ²-13/14', expected bytes 10-"):
        CflFetcher().fetch_from(server.base + "/log/t", 10, 100)


def test_fetch_from_beyond_the_end_reads_the_file_whole(serve) -> None:  # type: ignore[no-untyped-def]
    """416: the host's file is no longer than the caller's copy, which is then no prefix of it."""
    server = serve({"/log/t": Route(416, b"")})
    with pytest.raises(TransportHTTPError, match="HTTP 416"):
        CflFetcher().fetch_from(server.base + "/log/t", 10, 100)  # and the whole GET got 416 too
    assert [h.get("Range") for h in server.seen_headers] == ["bytes=10-", None]


def test_fetch_from_caps_the_bytes_and_reads_local_folders_by_seek(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve({"/log/t": Route(206, b"y" * 101, content_range="bytes 10-110/111")})
    with pytest.raises(TransportTooLargeError, match="more than 100 bytes from byte 10"):
        CflFetcher().fetch_from(server.base + "/log/t", 10, 100)
    (tmp_path / "t").write_bytes(b"0123456789tail")
    assert CflFetcher().fetch_from((tmp_path / "t").as_uri(), 10, 100) == (10, b"tail")
