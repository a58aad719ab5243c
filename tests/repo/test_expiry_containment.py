"""One manufacturer's lapsed role affects only that manufacturer's images.

The library below has two manufacturers; 3F01's role is admitted with 31 days of validity (the
policy's least is 30) and the clock is then moved 40 days on, with the provider's own roles
refreshed as cron would. Verification, publishing and the other manufacturer's deposits must carry
on; the lapsed manufacturer's next deposit renews its role.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha
from repo_tool.ops.refresh import refresh as refresh_op
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

A2, A3, B5, B6 = (
    make_image("121D", 2),
    make_image("121D", 3),
    make_image("3F01", 5),
    make_image("3F01", 6),
)


@pytest.fixture
def lapsed(tmp_path: Path) -> LibraryFactory:
    factory = LibraryFactory(tmp_path)
    factory.import_cpl(
        [
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(A2)),
            make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(A3)),
            make_entry("CPL-0105", mfr="3F01", model="0B0C", fw="00000005", image_sha=mi_sha(B5)),
            make_entry("CPL-0106", mfr="3F01", model="0B0C", fw="00000006", image_sha=mi_sha(B6)),
        ]
    )
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3F01")
    factory.publish()
    factory.deposit(A2, ["CPL-0002"])
    factory.deposit(B5, ["CPL-0105"], mfr="3F01", expiry=timedelta(days=31))
    factory.now += timedelta(days=40)
    with factory.repo.locked():
        refresh_op(factory.repo, now=factory.now)
    factory.publish()
    return factory


def test_verify_reports_the_lapsed_role_and_passes_the_rest(lapsed: LibraryFactory) -> None:
    library, problems = load_verified_library(
        folder_reader(lapsed.out), lapsed.root_bytes, now=lapsed.now
    )

    assert problems == []
    assert library is not None
    assert list(library.expired_roles) == ["mfr-3F01"]
    assert {image.role for image in library.images} == {"mfr-121D", "mfr-3F01"}


def test_another_manufacturer_deposits_while_one_has_lapsed(lapsed: LibraryFactory) -> None:
    result = lapsed.deposit(A3, ["CPL-0003"])

    assert result.status == "accepted"
    library, problems = load_verified_library(
        folder_reader(lapsed.out), lapsed.root_bytes, now=lapsed.now
    )
    assert problems == [] and library is not None
    assert result.target in {image.target_path for image in library.images}


def test_the_lapsed_manufacturers_next_deposit_renews_its_role(lapsed: LibraryFactory) -> None:
    result = lapsed.deposit(B6, ["CPL-0106"], mfr="3F01")

    assert result.status == "accepted"
    library, problems = load_verified_library(
        folder_reader(lapsed.out), lapsed.root_bytes, now=lapsed.now
    )
    assert problems == [] and library is not None
    assert dict(library.expired_roles) == {}
