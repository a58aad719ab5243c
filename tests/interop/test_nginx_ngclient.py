"""python-tuf's ngclient, with its default urllib3 fetcher, reads the library from a real nginx.

The unit tests feed ngclient through an in-memory fetcher; here the bytes cross real HTTP from the
host configuration docs/hosting.md recommends, so URL joining, consistent-snapshot file names and
the cache headers are what a supplier will meet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from client.trust.transport import CflFetcher
from factory import standard_library
from metadata_templates import naming
from repo_tool.site.render import CONTENT_SECURITY_POLICY
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

from .conftest import IMMUTABLE, NO_CACHE, NO_STORE, NginxServer, cache_control, header

pytestmark = pytest.mark.system


def _refreshed(
    tmp_path: Path, base_url: str, root: bytes, fetcher: CflFetcher | None = None
) -> tuple[Updater, Path]:
    """An ngclient home under ``tmp_path/client``, refreshed from ``base_url``."""
    client = tmp_path / "client"
    (client / "metadata").mkdir(parents=True)
    (client / "targets").mkdir()
    updater = Updater(
        str(client / "metadata"),
        base_url + "metadata/",
        str(client / "targets"),
        base_url + "targets/",
        bootstrap=root,
        fetcher=fetcher,
    )
    updater.refresh()
    return updater, client


def test_ngclient_refreshes_and_downloads_every_image_over_nginx(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    factory, images = standard_library(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None
    assert len(library.images) == len(images)
    base_url = nginx_server(factory.out)
    updater, client = _refreshed(tmp_path, base_url, factory.root_bytes)

    downloaded = {}
    for image in library.images:
        info = updater.get_targetinfo(image.target_path)
        assert info is not None, image.target_path
        path = updater.download_target(info, str(client / "targets" / f"{image.sha256}.bin"))
        downloaded[image.target_path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert downloaded == {i.target_path: i.sha256 for i in library.images}
    assert sorted(downloaded.values()) == sorted(
        hashlib.sha256(b).hexdigest() for b in images.values()
    )


def test_nginx_serves_the_caching_policy_and_hides_dotfiles(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    """The configuration the interop tests use is the one docs/hosting.md describes."""
    factory, _ = standard_library(tmp_path)
    library, _ = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert library is not None
    image = library.images[0]
    (factory.out / "site").mkdir(exist_ok=True)
    (factory.out / "site" / "index.html").write_text("<!doctype html><title>CFL</title>")
    (factory.out / "metadata" / ".hidden").write_text("not for clients")
    base_url = nginx_server(factory.out)

    assert cache_control(base_url + "metadata/timestamp.json") == (200, NO_CACHE)
    assert cache_control(base_url + "metadata/1.root.json") == (200, IMMUTABLE)
    blob = naming.blob_name(image.target_path, image.sha256)
    assert cache_control(base_url + "targets/" + blob) == (200, IMMUTABLE)
    # clients probe the next root on every refresh: its 404 must not be cached
    assert cache_control(base_url + "metadata/2.root.json") == (404, NO_STORE)
    assert cache_control(base_url + "site/index.html") == (200, NO_CACHE)
    # The log the timestamp binds: a host without these two locations breaks every refresh.
    assert cache_control(base_url + "log/checkpoint") == (200, NO_CACHE)
    assert cache_control(base_url + "log/tile/entries/000.p/1")[0] in (200, 404)
    csp = header(base_url + "site/index.html", "Content-Security-Policy")
    assert csp == (200, CONTENT_SECURITY_POLICY)
    # Every 404 is no-store, whichever location answers it (docs/hosting.md's table).
    assert cache_control(base_url + ".cfl-publish.lock") == (404, NO_STORE)
    assert cache_control(base_url + "metadata/.hidden") == (404, NO_STORE)
    assert cache_control(base_url + "log/.cfl-partials-pruned") == (404, NO_STORE)
    assert cache_control(base_url + "not-the-library/index.php") == (404, NO_STORE)
    assert cache_control(base_url + "site/no-such-page.html") == (404, NO_STORE)
    assert cache_control(base_url + "targets/" + blob + ".missing") == (404, NO_STORE)


def test_cfl_fetcher_takes_metadata_gzipped_from_nginx_and_verifies_it(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    """docs/hosting.md's nginx compresses JSON for a client that asks; cfl's fetcher asks, inflates
    as it reads, and ngclient verifies the inflated bytes against their lengths and hashes."""
    factory, images = standard_library(tmp_path)
    base_url = nginx_server(factory.out)
    updater, client = _refreshed(tmp_path, base_url, factory.root_bytes, CflFetcher())
    library, _ = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert library is not None and len(library.images) == len(images)
    for image in library.images:  # images are not JSON: nginx sends them as they are
        info = updater.get_targetinfo(image.target_path)
        assert info is not None, image.target_path
        fetched = updater.download_target(info, str(client / "targets" / f"{image.sha256}.bin"))
        assert hashlib.sha256(Path(fetched).read_bytes()).hexdigest() == image.sha256
    sent = {}
    for line in (tmp_path / "nginx-0" / "access.log").read_text().splitlines():
        request, _, rest = line.partition('"GET ')[2].partition(' HTTP/1.1" ')
        status, size = rest.split()[:2]
        sent[request] = (int(status), int(size))
    compressed = {
        request: size
        for request, (status, size) in sent.items()
        if status == 200
        and request.startswith("/metadata/")
        and size < (factory.out / request.lstrip("/")).stat().st_size
    }
    assert any(".snapshot.json" in request for request in compressed), sent
    assert any(".targets.json" in request for request in compressed), sent
    trusted = client / "metadata"
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        assert (trusted / name).is_file()  # inflated and verified by ngclient
