"""Advisories from a real published tree to the website: read by the verify walk through the same
verification as the roles (the site's walk reads no image blob, but still each advisory's bytes
against the signed hash), the newest revision shown, a tampered document refused."""

from __future__ import annotations

import pytest
from advisory_factory import authored, image_target, lodge

from factory import LibraryFactory, standard_library
from metadata_templates.advisory import advisory_target_path
from metadata_templates.errors import VerificationError
from metadata_templates.naming import blob_name
from repo_tool.publish.site_step import build_published_site
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

ID = "CFL-121D-2026-0001"


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> LibraryFactory:
    factory, _images = standard_library(tmp_path_factory.mktemp("advisory-site"))
    lodge(factory, authored(status="affected"))
    lodge(factory, authored(status="fixed", fixed_by=[image_target(factory, "CPL-0003")]))
    return factory


def test_the_walk_holds_the_newest_revision_of_each_advisory(lib: LibraryFactory) -> None:
    library = verified_library(
        folder_reader(lib.out), lib.root_bytes, now=lib.now, check_blobs=False
    )
    assert [(a.id, a.revision, a.status) for a in library.advisories] == [(ID, 2, "fixed")]


def test_the_publish_site_step_renders_the_advisory(lib: LibraryFactory) -> None:
    built = build_published_site(lib.out, lib.root_bytes, now=lib.now, hint=None)
    site = built.site_dir
    page = (site / f"advisory/{ID}.html").read_text()
    assert "revision 2" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    fix = image_target(lib, "CPL-0003")
    assert f'href="../image/{fix}.html"' in page
    assert "This image fixes:" in (site / f"image/{fix}.html").read_text()
    assert b"<script>alert(1)" not in (site / "advisories.xml").read_bytes()


def test_a_tampered_advisory_fails_verification_even_without_blob_checks(
    lib: LibraryFactory,
) -> None:
    path = advisory_target_path(ID, 2)
    role = verified_library(folder_reader(lib.out), lib.root_bytes, now=lib.now)
    sha = role.role_metadata["mfr-121D"].signed.targets[path].hashes["sha256"]
    blob = lib.out / "targets" / blob_name(path, sha)
    original = blob.read_bytes()
    try:
        blob.write_bytes(original.replace(b'"fixed"', b'"affected"'))
        library, problems = load_verified_library(
            folder_reader(lib.out), lib.root_bytes, now=lib.now, check_blobs=False
        )
        assert library is not None and library.advisories == ()
        assert any(path[5:] in p and "hashing to" in p for p in problems), problems
        with pytest.raises(VerificationError, match="problem"):
            verified_library(folder_reader(lib.out), lib.root_bytes, now=lib.now, check_blobs=False)
    finally:
        blob.write_bytes(original)
