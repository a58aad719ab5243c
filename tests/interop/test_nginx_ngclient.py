"""python-tuf's ngclient, with its default urllib3 fetcher, reads the library from a real nginx.

The unit tests feed ngclient through an in-memory fetcher; here the bytes cross real HTTP from the
host configuration docs/hosting.md recommends, so URL joining, consistent-snapshot file names and
the cache headers are what a supplier will meet.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from conftest import require_system
from factory import standard_library
from metadata_templates import naming
from repo_tool.verify import folder_reader, load_verified_library

from .conftest import IMMUTABLE, NO_CACHE, NginxServer

pytestmark = pytest.mark.system


def _get(url: str) -> tuple[int, str | None]:
    """Status and Cache-Control of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Cache-Control")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Cache-Control")


def test_ngclient_refreshes_and_downloads_every_image_over_nginx(
    tmp_path: Path, nginx_server: NginxServer
) -> None:
    require_system("nginx")
    factory, images = standard_library(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None
    assert len(library.images) == len(images)
    base_url = nginx_server(factory.out)
    client = tmp_path / "client"
    (client / "metadata").mkdir(parents=True)
    (client / "targets").mkdir()

    updater = Updater(
        str(client / "metadata"),
        base_url + "metadata/",
        str(client / "targets"),
        base_url + "targets/",
        bootstrap=factory.root_bytes,
    )
    updater.refresh()

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
    require_system("nginx")
    factory, _ = standard_library(tmp_path)
    library, _ = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert library is not None
    image = library.images[0]
    base_url = nginx_server(factory.out)
    (factory.out / ".hidden").write_text("not for clients")

    assert _get(base_url + "metadata/timestamp.json") == (200, NO_CACHE)
    assert _get(base_url + "metadata/1.root.json") == (200, IMMUTABLE)
    blob = naming.blob_name(image.target_path, image.sha256)
    assert _get(base_url + "targets/" + blob) == (200, IMMUTABLE)
    assert _get(base_url + ".hidden")[0] == 404
