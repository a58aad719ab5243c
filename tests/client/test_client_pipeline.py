"""The client's parts together on a library built by repo_tool's own code.

ngclient drives the real fetcher over ``file://`` and loopback HTTP (with a bearer token); the
verified targets become the catalogue; the estate is matched against the verified CPL; the
recommended images land in an output folder with a manifest, and a second run fetches only
``timestamp.json`` (plus the spec's probe for a newer root) and rewrites nothing.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from client_factories import device_id, write_estate

from client.estate.check import check_estate
from client.estate.report import report_json
from client.fetch.download import OutputFolder
from client.trust.catalogue import build_catalogue
from client.trust.home import ClientConfig, ClientHome
from client.trust.session import Session, SessionPaths
from client.trust.transport import CflFetcher, TransportSettings
from factory import standard_library

TOKEN = "pipeline-token"


class RecordingFetcher(CflFetcher):
    """The real fetcher, noting each URL it was asked for."""

    def __init__(self, settings: TransportSettings | None = None) -> None:
        super().__init__(settings)
        self.urls: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.urls.append(url)
        return super()._fetch(url)


@pytest.fixture
def http_folder() -> Iterator[object]:
    servers: list[ThreadingHTTPServer] = []
    seen: list[str | None] = []

    def start(folder: Path) -> str:
        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization"))
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    start.seen = seen  # type: ignore[attr-defined]
    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _session(home: ClientHome, fetcher: CflFetcher) -> Session:
    config = home.load_config()
    return Session(
        SessionPaths(home.metadata_dir, home.targets_dir),
        config.repository_url,
        fetcher,
        bootstrap_root=home.bootstrap_root(),
    )


@pytest.mark.parametrize("over", ["file", "http"])
def test_estate_to_verified_downloads(tmp_path: Path, http_folder, over: str) -> None:  # type: ignore[no-untyped-def]
    factory, _ = standard_library(tmp_path / "lib")
    settings = TransportSettings()
    if over == "file":
        url = factory.out.as_uri()
    else:
        url = http_folder(factory.out)
        (tmp_path / "token").write_text(TOKEN)
        settings = TransportSettings(token_file=tmp_path / "token")
    home = ClientHome(tmp_path / "home")
    with home.lock():
        home.initialise(
            ClientConfig(url, token_file=None if over == "file" else str(tmp_path / "token")),
            factory.root_bytes,
        )
        session = _session(home, RecordingFetcher(settings))
        targets = session.verified_targets(["121D"])
        images, problems = build_catalogue(targets, session.withdrawals())
        assert problems == ()
        estate = write_estate(
            tmp_path / "estate.csv",
            [
                (device_id(1), "ESME", "121D", "010A030B", "1111", "00000001"),
                (device_id(2), "ESME", "121D", "010A030B", "1111", "00000002"),
            ],
        )
        report = check_estate(estate, images, session.cpl())
        doc = report_json(report)
        paths = {g["firmware_version"]: g["path"] for g in doc["groups"]}
        # Firmware 1 may take 2 (N/A pathway) but not 3 (its pathway lists only CPL-0002), so
        # it gets there in two hops.
        assert [p.split("-")[2] for p in paths["00000001"]] == ["00000002", "00000003"]
        assert [p.split("-")[2] for p in paths["00000002"]] == ["00000003"]
        by_target = {i.target_path: i for i in images}
        out = OutputFolder(tmp_path / "firmware")
        placed = []
        for target in sorted({hop for path in paths.values() for hop in path}):
            verified_path = session.download(target)
            placed.append(out.place(by_target[target], verified_path, device_count=1))
        manifest = json.loads(out.write_manifest(placed).read_text())
    assert {f["target"] for f in manifest["files"]} == {
        g.recommended.target_path for g in report.groups if g.recommended
    } | set(paths["00000001"])
    for entry in manifest["files"]:
        assert (tmp_path / "firmware" / entry["file"]).is_file()
        assert entry["file"].startswith(entry["sha256"])
    if over == "http":
        assert set(http_folder.seen) == {f"Bearer {TOKEN}"}

    # Nothing new: a second refresh fetches the newer-root probe and timestamp.json only.
    with home.lock():
        fetcher = RecordingFetcher(settings)
        _session(home, fetcher).refresh()
    assert [u.removeprefix(url) for u in fetcher.urls] == [
        "/metadata/2.root.json",
        "/metadata/timestamp.json",
    ]
