"""Which objects S3 Object Lock must hold (``kind_of``), the lock a put asks for, and the pure
verdict of `cfl-repo verify-bucket`; no server.

``kind_of`` is checked against every file of a real published tree (images, release notes,
provider documents, every role version, the log), against the tile paths a large log is served as,
and against the names an attacker or a slip could put next to them.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from notes_factory import PLAINTEXT, notes_library

from factory import make_entry, make_image, mi_sha
from metadata_templates.naming import bin_roles, blob_name
from metadata_templates.notes import notes_target_path
from metadata_templates.tlog.tiles import tiles_for_size
from repo_tool.ops.withdraw import withdraw
from repo_tool.publish.bucket_check import (
    BUCKET_LOCK_DISABLED,
    DELETE_MARKER,
    FINDING_CODES,
    GOVERNANCE_MODE,
    NOT_LOCKED,
    OVERWRITTEN,
    RETENTION_EXPIRED,
    RETENTION_EXPIRING,
    KeyHistory,
    ObjectVersion,
    check_bucket,
)
from repo_tool.publish.retention import (
    COMPLIANCE,
    GOVERNANCE,
    MAX_LOCK_DAYS,
    LockPolicy,
    ObjectKind,
    kind_of,
    lock_put_args,
)
from repo_tool.publish.site_step import build_published_site

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHA = "a" * 64


def expected_kind(path: str) -> ObjectKind:
    """The rule stated independently, by folder, for the files a real tree holds."""
    if path == "metadata/timestamp.json":
        return ObjectKind.TIMESTAMP
    if path.startswith("metadata/") and path.endswith(".root.json"):
        return ObjectKind.ROOT
    if path.startswith("metadata/"):
        return ObjectKind.METADATA
    if path.startswith("targets/"):
        return ObjectKind.BLOB
    if path == "log/checkpoint":
        return ObjectKind.CHECKPOINT
    if path.startswith("log/tile/"):
        return ObjectKind.PARTIAL_TILE if ".p/" in path else ObjectKind.LOG_TILE
    if path.startswith("log/cfl-index/"):
        return ObjectKind.LOG_INDEX
    if path.startswith("site/"):
        return ObjectKind.SITE
    raise AssertionError(f"a published tree holds no such path: {path}")


@pytest.fixture(scope="module")
def published_tree(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every file of a real tree: images with release notes, registry, custodian, a withdrawal,
    several versions of every role, the log with its index, the site."""
    lib = notes_library(tmp_path_factory.mktemp("tree"))
    factory = lib.factory
    factory.deposit(lib.images["esme"], ["CPL-0002"], release_notes=PLAINTEXT)
    factory.deposit(lib.images["gsme"], ["CPL-0101"], mfr="3F01")
    image = make_image("121D", 9)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0009", fw="00000009", image_sha=mi_sha(image))]
    )
    factory.publish()
    target = factory.deposit(image, ["CPL-0009"]).target
    assert target is not None
    with factory.repo.locked():
        withdraw(factory.repo, target, "test", now=factory.tick())
    factory.publish()
    out = factory.out
    build_published_site(out, factory.root_bytes, now=factory.tick(), hint=None)
    paths = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    )
    assert any(path.endswith(".notes.jwe") for path in paths)  # the tree is as rich as claimed
    return paths


def test_every_path_of_a_real_published_tree_has_its_kind(published_tree: list[str]) -> None:
    kinds = {path: kind_of(path) for path in published_tree}

    assert {p: k for p, k in kinds.items() if k is not expected_kind(p)} == {}
    # every kind a tree this size holds is present, and nothing fell through to OTHER
    assert set(kinds.values()) >= {
        ObjectKind.TIMESTAMP,
        ObjectKind.ROOT,
        ObjectKind.METADATA,
        ObjectKind.BLOB,
        ObjectKind.CHECKPOINT,
        ObjectKind.PARTIAL_TILE,
        ObjectKind.LOG_INDEX,
        ObjectKind.SITE,
    }


def test_only_names_that_fix_their_bytes_are_locked(published_tree: list[str]) -> None:
    locked = {p for p in published_tree if kind_of(p).locked}

    assert "metadata/timestamp.json" not in locked
    assert "log/checkpoint" not in locked
    assert not any(p.startswith("site/") or ".p/" in p for p in locked)
    # Blobs and root versions; not the timestamp, and not the snapshot and role versions a
    # publish deletes a grace period after they are superseded (publish/superseded.py).
    assert {p for p in published_tree if p.startswith("targets/")} <= locked
    metadata = {p for p in published_tree if p.startswith("metadata/")}
    assert metadata & locked == {p for p in metadata if p.endswith(".root.json")} != set()


def test_the_tiles_a_large_log_is_served_as_are_locked_when_full() -> None:
    tiles = list(tiles_for_size(256 * 256 + 300))
    assert {t.level for t in tiles} >= {-1, 0, 1, 2}  # entries and three hash levels

    for tile in tiles:
        kind = kind_of(f"log/{tile.path}")
        assert kind is (ObjectKind.LOG_TILE if tile.width == 256 else ObjectKind.PARTIAL_TILE)


def test_root_versions_and_every_provider_document_are_locked_role_versions_are_not() -> None:
    assert kind_of("metadata/17.root.json") is ObjectKind.ROOT
    assert ObjectKind.ROOT.locked
    for role in [*bin_roles("121D", 4), "cfl-provider", "mfr-3F01", "snapshot", "targets"]:
        assert kind_of(f"metadata/17.{role}.json") is ObjectKind.METADATA
    assert not ObjectKind.METADATA.locked
    image = "121D/ESME-0001-00000002-0123456789abcdef.ota"
    for target in (image, notes_target_path(image), "cfl/cpl.json", "cfl/grants/0011/x.notes.jwe"):
        assert kind_of(f"targets/{blob_name(target, SHA)}") is ObjectKind.BLOB


@pytest.mark.parametrize(
    "path",
    [
        "metadata/root.json",
        "metadata/targets.json",
        "metadata/0.root.json",
        "metadata/01.root.json",
        "metadata/1.root.json.bak",
        "metadata/1.root.json/",
        "metadata//1.root.json",
        "/metadata/1.root.json",
        "metadata/timestamp.json.tmp",
        "targets/121D/ESME-0001-00000002-0123456789abcdef.ota",
        f"targets/121D/{SHA.upper()}.x.ota",
        f"targets/121D/{SHA[:63]}.x.ota",
        f"targets/../{SHA}.x.ota",
        f"targets/./{SHA}.x.ota",
        f"targets/121D/{SHA}.",
        f"targets/121 D/{SHA}.x.ota",
        "log/tile/0/000.p/0",
        "log/tile/0/000.p/256",
        "log/tile/64/000",
        "log/tile/0/00",
        "log/tile/0/x01/000",
        "log/tile/0/000/",
        f"log/cfl-index/{SHA}.tmp",
        "log/checkpoint.1",
        "site",
        "site/",
        ".cfl-publish.lock",
        "targets/.cfl-publish.lock",
        "",
    ],
)
def test_names_that_are_not_published_names_are_never_locked(path: str) -> None:
    assert kind_of(path) is ObjectKind.OTHER
    assert not kind_of(path).locked


def test_a_locked_put_asks_for_compliance_until_now_plus_days_with_its_md5() -> None:
    data = b"image bytes"
    args = lock_put_args(f"targets/121D/{SHA}.x.ota", data, LockPolicy(3650, NOW))

    assert args == {
        "ObjectLockMode": COMPLIANCE,
        "ObjectLockRetainUntilDate": NOW + timedelta(days=3650),
        "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
    }


@pytest.mark.parametrize(
    "path", ["metadata/timestamp.json", "log/checkpoint", "site/index.html", "log/tile/0/000.p/3"]
)
def test_a_mutable_put_asks_for_no_lock(path: str) -> None:
    assert lock_put_args(path, b"x", LockPolicy(1, NOW)) == {}


@pytest.mark.parametrize("days", [0, -1, MAX_LOCK_DAYS + 1])
def test_lock_days_outside_the_range_s3_accepts_are_refused(days: int) -> None:
    with pytest.raises(ValueError, match=f"object lock days: found {days}, expected 1..36500"):
        LockPolicy(days, NOW)


# --------------------------------------------------------------------------- the pure verdict

BLOB = f"targets/121D/{SHA}.x.ota"
GOOD = ObjectVersion("v1", 10, "md5:" + "1" * 32, COMPLIANCE, NOW + timedelta(days=365))


def _codes(*histories: KeyHistory, lock_enabled: bool = True, min_days: int = 30) -> list[str]:
    findings = check_bucket(
        histories, lock_enabled=lock_enabled, url="s3://b/p/", now=NOW, min_days=min_days
    )
    for finding in findings:
        assert finding.code in FINDING_CODES
        assert "\n" not in finding.message
    return [f.code for f in findings]


@pytest.mark.parametrize(
    ("history", "codes"),
    [
        (KeyHistory(BLOB, (GOOD,)), []),
        (KeyHistory(BLOB, (ObjectVersion("v1", 10, "md5:1"),)), [NOT_LOCKED]),
        (
            KeyHistory(BLOB, (ObjectVersion("v1", 10, "md5:1", COMPLIANCE, None),)),
            [NOT_LOCKED],
        ),
        (
            KeyHistory(BLOB, (ObjectVersion("v1", 10, "md5:1", "LEGAL", GOOD.retain_until),)),
            [NOT_LOCKED],
        ),
        (
            KeyHistory(BLOB, (ObjectVersion("v1", 10, "md5:1", GOVERNANCE, GOOD.retain_until),)),
            [GOVERNANCE_MODE],
        ),
        (
            KeyHistory(BLOB, (ObjectVersion("v1", 10, "md5:1", COMPLIANCE, NOW),)),
            [RETENTION_EXPIRED],
        ),
        (
            KeyHistory(
                BLOB, (ObjectVersion("v1", 10, "md5:1", COMPLIANCE, NOW + timedelta(days=29)),)
            ),
            [RETENTION_EXPIRING],
        ),
        (KeyHistory(BLOB, (GOOD,), hidden_by="m1"), [DELETE_MARKER]),
        (KeyHistory(BLOB, (), hidden_by="m1"), [DELETE_MARKER]),
        (KeyHistory(BLOB, (GOOD, GOOD)), []),  # the same bytes twice: re-uploaded, not altered
        (
            KeyHistory(
                BLOB, (ObjectVersion("v2", 10, "md5:2", COMPLIANCE, GOOD.retain_until), GOOD)
            ),
            [OVERWRITTEN],
        ),
        (
            KeyHistory(
                BLOB, (ObjectVersion("v2", 11, GOOD.content, COMPLIANCE, GOOD.retain_until), GOOD)
            ),
            [OVERWRITTEN],
        ),
        (KeyHistory(BLOB, (ObjectVersion("v2", 10, "md5:2"), GOOD)), [OVERWRITTEN, NOT_LOCKED]),
        (KeyHistory("metadata/timestamp.json", (ObjectVersion("v1", 1, "md5:1"),)), []),
        (KeyHistory("site/index.html", (ObjectVersion("v1", 1, "md5:1"),), hidden_by="m"), []),
        (KeyHistory("log/tile/0/000.p/3", (ObjectVersion("v1", 1, "md5:1"),)), []),
    ],
    ids=[
        "locked",
        "not-locked",
        "mode-without-date",
        "unknown-mode",
        "governance-mode",
        "retention-expired",
        "retention-expiring",
        "delete-marker",
        "marker-over-nothing",
        "same-bytes-twice",
        "overwritten-by-md5",
        "overwritten-by-size",
        "overwritten-and-unlocked",
        "timestamp-ignored",
        "site-ignored",
        "partial-tile-ignored",
    ],
)
def test_each_finding_has_its_stable_code(history: KeyHistory, codes: list[str]) -> None:
    assert _codes(history) == codes


def test_a_bucket_without_object_lock_is_a_finding_of_its_own() -> None:
    assert _codes(KeyHistory(BLOB, (GOOD,)), lock_enabled=False) == [BUCKET_LOCK_DISABLED]


def test_min_days_zero_warns_about_nothing_still_locked() -> None:
    soon = ObjectVersion("v1", 10, "md5:1", COMPLIANCE, NOW + timedelta(seconds=1))
    assert _codes(KeyHistory(BLOB, (soon,)), min_days=0) == []


def test_expiring_is_a_warning_and_everything_else_a_problem() -> None:
    findings = check_bucket(
        [
            KeyHistory(BLOB, (ObjectVersion("v1", 10, "m", COMPLIANCE, NOW + timedelta(days=1)),)),
            KeyHistory(f"targets/{SHA}.y", (ObjectVersion("v1", 10, "m"),)),
        ],
        lock_enabled=True,
        url="s3://b/p/",
        now=NOW,
        min_days=30,
    )
    assert {(f.code, f.severity) for f in findings} == {
        (RETENTION_EXPIRING, "warning"),
        (NOT_LOCKED, "problem"),
    }
    assert [f.key for f in findings] == sorted([BLOB, f"targets/{SHA}.y"])  # in key order


def test_findings_name_the_key_the_value_found_and_the_value_expected() -> None:
    (finding,) = check_bucket(
        [KeyHistory(BLOB, (ObjectVersion("v9", 10, "m", GOVERNANCE, GOOD.retain_until),))],
        lock_enabled=True,
        url="s3://b/p/",
        now=NOW,
        min_days=30,
    )
    assert finding.message.startswith(f"{BLOB} (version v9): object lock mode: found GOVERNANCE,")
    assert "expected COMPLIANCE" in finding.message
