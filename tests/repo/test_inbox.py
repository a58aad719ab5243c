"""The inbox as an attacker fills it and as cron runs it: links, special files, junk, oversized
roles, and the same inbox ingested again.

Each attack asserts what must not happen (a secret read or copied, gigabytes kept, a hang, a crash
that leaves later bundles unchecked) and what must (a rejection naming the problem, private kept
copies, the next bundle judged).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, TargetFile, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha
from repo_tool.gateway.check import judge
from repo_tool.gateway.model import Code
from repo_tool.intake import inbox
from repo_tool.intake.bundle import DEFAULT_ROLE_SIZE_CAP, Bundle, Declaration
from repo_tool.ops.ingest import IngestResult, gateway_context
from repo_tool.ops.ingest import ingest as ingest_op
from repo_tool.submit.deposit import build_renewal
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

MFR = "121D"
SECRET = b"-----BEGIN PRIVATE KEY-----\nprovider root key, never to be copied\n"
IMAGES = {fw: make_image(MFR, fw) for fw in (2, 3, 4)}


@pytest.fixture
def factory(tmp_path: Path) -> LibraryFactory:
    made = LibraryFactory(tmp_path)
    made.import_cpl(
        [
            make_entry(f"CPL-000{fw}", fw=f"0000000{fw}", image_sha=mi_sha(image))
            for fw, image in IMAGES.items()
        ]
    )
    made.add_manufacturer(MFR)
    made.publish()
    return made


def ingest_folder(factory: LibraryFactory, folder: Path) -> list[IngestResult]:
    """What `cfl-repo ingest FOLDER` does: list without following links, judge each in turn."""
    with factory.repo.locked():
        return [
            ingest_op(factory.repo, path, now=factory.tick()) for path in inbox.list_inbox([folder])
        ]


def kept_files(factory: LibraryFactory) -> Iterator[Path]:
    rejected = factory.repo.path / "rejected"
    return (p for p in rejected.rglob("*") if p.is_file()) if rejected.exists() else iter(())


def head(factory: LibraryFactory) -> bytes:
    return (factory.repo.path / "state" / "head.json").read_bytes()


def good_bundle(factory: LibraryFactory, fw: int = 2) -> Bundle:
    return factory.submit(IMAGES[fw], [f"CPL-000{fw}"])


# ------------------------------------------------------------------------------------- links


@pytest.mark.parametrize(
    "link_target",
    ["key-file", "/proc/self/environ"],
    ids=["link-to-provider-key-file", "link-to-proc-self-environ"],
)
def test_a_link_in_the_inbox_is_rejected_and_its_target_never_read_or_copied(
    factory: LibraryFactory, tmp_path: Path, link_target: str
) -> None:
    if link_target == "key-file":
        secret = tmp_path / "keys" / "root.pem"
        secret.parent.mkdir()
        secret.write_bytes(SECRET)
        target = secret
    else:
        target = Path(link_target)
        if not target.exists():
            pytest.skip("no /proc on this system")
    folder = tmp_path / "inbox"
    factory.write(good_bundle(factory), "b-good")
    (folder / "a-link.cflb").symlink_to(target)

    results = ingest_folder(factory, folder)

    link, good = results
    assert (link.status, link.reasons) == ("rejected", [Code.MALFORMED_BUNDLE.value])
    assert "symbolic link" in link.messages[0]
    assert good.status == "accepted", "the bundle after the link is still judged"
    for kept in kept_files(factory):
        assert kept.name == "report.json", f"{kept} must not be a copy of the link's target"
        assert SECRET not in kept.read_bytes()
    report = json.loads((factory.repo.path / str(link.kept_at) / "report.json").read_bytes())
    assert report["file"] is None


def test_a_link_swapped_in_after_listing_is_not_followed(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    """The race: the inbox held a regular file when listed, a link when read."""
    secret = tmp_path / "secret.pem"
    secret.write_bytes(SECRET)
    path = factory.write(good_bundle(factory), "swapped")
    listed = inbox.list_inbox([path.parent])
    path.unlink()
    path.symlink_to(secret)

    with factory.repo.locked():
        result = ingest_op(factory.repo, listed[0], now=factory.tick())

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert all(SECRET not in kept.read_bytes() for kept in kept_files(factory))


def test_a_named_pipe_in_the_inbox_is_rejected_without_waiting_for_a_writer(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    os.mkfifo(folder / "pipe.cflb")

    (result,) = ingest_folder(factory, folder)  # a blocking open would hang here

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert "named pipe" in result.messages[0]


def test_a_folder_named_like_a_bundle_is_rejected(factory: LibraryFactory, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "folder.cflb").mkdir(parents=True)

    (result,) = ingest_folder(factory, tmp_path / "inbox")

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert "a folder" in result.messages[0]


# --------------------------------------------------------------------------- kept rejected copies


def test_rejected_copies_are_private(factory: LibraryFactory, tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask, which would make plain copies world-readable
    try:
        junk = tmp_path / "inbox" / "junk.cflb"
        junk.parent.mkdir()
        junk.write_bytes(b"PK\x03\x04 junk")
        (result,) = ingest_folder(factory, junk.parent)
    finally:
        os.umask(old)

    keep = factory.repo.path / str(result.kept_at)
    assert stat.S_IMODE((factory.repo.path / "rejected").stat().st_mode) == 0o700
    assert stat.S_IMODE(keep.stat().st_mode) == 0o700
    assert stat.S_IMODE((keep / "junk.cflb").stat().st_mode) == 0o600
    assert stat.S_IMODE((keep / "report.json").stat().st_mode) == 0o600
    assert (keep / "junk.cflb").read_bytes() == b"PK\x03\x04 junk"


def test_a_3_gib_junk_file_keeps_a_bounded_prefix_and_reports_its_length(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    junk = tmp_path / "inbox" / "huge.cflb"
    junk.parent.mkdir()
    with junk.open("wb") as handle:  # sparse: costs the test no disk
        handle.write(b"junk")
        handle.truncate(3 * 1024**3)
    config = factory.repo.config
    cap = inbox.rejected_copy_cap(
        image_size_cap=config.image_size_cap, role_size_cap=config.role_size_cap
    )

    (result,) = ingest_folder(factory, junk.parent)

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert "size: found 3221225472 bytes" in result.messages[0]
    keep = factory.repo.path / str(result.kept_at)
    assert (keep / "huge.cflb").stat().st_size == cap < 32 * 1024**2
    report = json.loads((keep / "report.json").read_bytes())
    assert report["file"]["length"] == 3 * 1024**3
    assert report["file"]["kept_bytes"] == cap
    assert report["file"]["truncated"] is True
    assert len(report["file"]["kept_sha256"]) == 64


# --------------------------------------------------------------------------- size before parsing


def test_a_role_above_the_cap_is_rejected_before_any_json_work(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    big = DEFAULT_ROLE_SIZE_CAP * 8
    padding = b" " * big  # valid JSON whitespace: only the size is wrong
    bundle = good_bundle(factory)
    path = factory.write(replace(bundle, role_bytes=bundle.role_bytes + padding), "big-role")

    tracemalloc.start()
    try:
        (result,) = ingest_folder(factory, path.parent)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert f"role.json: found {len(bundle.role_bytes) + big} bytes" in result.messages[0]
    assert f"expected at most {DEFAULT_ROLE_SIZE_CAP}" in result.messages[0]
    # The file is read once (8 MiB); parsing it as JSON would cost many times that.
    assert peak < 3 * big, f"peak {peak} bytes for a {big}-byte role"


def test_the_role_cap_is_the_operators_policy(factory: LibraryFactory, tmp_path: Path) -> None:
    bundle = good_bundle(factory)
    repo = factory.repo
    repo.config = replace(repo.config, role_size_cap=len(bundle.role_bytes) - 1)
    path = factory.write(bundle)

    (result,) = ingest_folder(factory, path.parent)

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert f"expected at most {len(bundle.role_bytes) - 1}" in result.messages[0]


# ------------------------------------------------------------------------------ idempotent ingest


def test_ingesting_the_same_inbox_again_changes_nothing_and_rejects_nothing(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    factory.write(good_bundle(factory, 2), "a2")
    first = ingest_folder(factory, tmp_path / "inbox")
    assert [r.status for r in first] == ["accepted"]
    was_head = head(factory)
    was_events = (factory.repo.path / "events.jsonl").read_bytes()

    again = ingest_folder(factory, tmp_path / "inbox")

    assert [(r.status, r.target, r.reasons) for r in again] == [("accepted", first[0].target, [])]
    assert again[0].messages and again[0].messages[0].startswith("already accepted: ")
    assert head(factory) == was_head
    assert (factory.repo.path / "events.jsonl").read_bytes() == was_events
    assert not (factory.repo.path / "rejected").exists()


def test_an_old_accepted_bundle_is_recognised_after_later_deposits(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    factory.write(good_bundle(factory, 2), "a2")
    ingest_folder(factory, tmp_path / "inbox")
    factory.publish()
    factory.write(good_bundle(factory, 3), "a3")

    results = ingest_folder(factory, tmp_path / "inbox")

    assert [r.status for r in results] == ["accepted", "accepted"]
    assert results[0].messages[0].startswith("already accepted: ")
    assert results[1].messages == []  # the new one was judged and staged


def test_a_bundle_for_a_version_the_repository_holds_differently_is_still_judged(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    """Recognition is byte for byte: another role of the same version is a stale one, rejected."""
    rival = good_bundle(factory, 3)  # also version 1, built before a2 was accepted
    factory.write(good_bundle(factory, 2), "a2")
    ingest_folder(factory, tmp_path / "inbox")
    path = factory.write(rival, "z-rival")

    with factory.repo.locked():
        result = ingest_op(factory.repo, path, now=factory.tick())

    assert result.status == "rejected"
    assert Code.STALE_ROLE_VERSION.value in result.reasons


def test_already_accepted_needs_the_committed_head() -> None:
    """An orphan role file (a crash before the head commit) does not count as accepted."""
    image = b"an image"
    sha = hashlib.sha256(image).hexdigest()
    path = f"121D/ESME-0001-00000002-{sha[:16]}.ota"
    signed = Targets(version=3, targets={path: TargetFile(len(image), {"sha256": sha}, path)})
    role = Metadata(signed).to_bytes()
    bundle = Bundle(MFR, path, Declaration(("CPL-0002",), "compliance", ()), image, role, None)
    stored = {("mfr-121D", 3): role}

    def lookup(name: str, version: int) -> bytes | None:
        return stored.get((name, version))

    assert inbox.already_accepted(bundle, {"mfr-121D": 2}, lookup) is None
    assert inbox.already_accepted(bundle, {"mfr-121D": 3}, lookup) is not None
    assert inbox.already_accepted(bundle, {"mfr-121D": 5}, lookup) is not None
    assert inbox.already_accepted(bundle, {}, lookup) is None


# -------------------------------------------------------------------------- a gateway that fails


def test_a_gateway_failure_rejects_that_bundle_only(factory: LibraryFactory) -> None:
    bundle = good_bundle(factory)
    context = gateway_context(factory.repo, factory.tick())

    def broken(name: str) -> Metadata[Targets] | None:
        raise RuntimeError("simulated defect")

    verdict = judge(bundle, replace(context, current_role=broken))

    assert not verdict.ok
    assert verdict.codes == [Code.MALFORMED_BUNDLE.value]
    assert "RuntimeError" in verdict.findings[0].message


def test_a_rejected_file_left_in_the_inbox_is_kept_once(
    factory: LibraryFactory, tmp_path: Path
) -> None:
    junk = tmp_path / "inbox" / "junk.cflb"
    junk.parent.mkdir()
    junk.write_bytes(b"not a bundle " * 1000)

    (first,) = ingest_folder(factory, junk.parent)
    (again,) = ingest_folder(factory, junk.parent)

    assert first.reasons == again.reasons == [Code.MALFORMED_BUNDLE.value]
    assert first.kept_at != again.kept_at  # each run reports
    copies = [p for p in kept_files(factory) if p.name == "junk.cflb"]
    assert copies == [factory.repo.path / str(first.kept_at) / "junk.cflb"]
    reports = [
        json.loads((factory.repo.path / str(r.kept_at) / "report.json").read_bytes())
        for r in (first, again)
    ]
    assert reports[0]["file"]["copy"] == reports[1]["file"]["copy"] == f"{first.kept_at}/junk.cflb"


def test_the_inbox_folder_itself_may_be_a_link(factory: LibraryFactory, tmp_path: Path) -> None:
    """The operator's own argument is followed (e.g. /srv/inbox -> /data/inbox); entries are not."""
    factory.write(good_bundle(factory), "good")
    linked = tmp_path / "linked-inbox"
    linked.symlink_to(tmp_path / "inbox")

    (result,) = ingest_folder(factory, linked)

    assert result.status == "accepted"


def test_a_renewal_ingested_again_is_recognised(factory: LibraryFactory, tmp_path: Path) -> None:
    factory.deposit(IMAGES[2], ["CPL-0002"])
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    renewal = build_renewal(
        manufacturer_id=MFR, signers=[factory.mfr_signers[MFR]], library=library, now=factory.now
    ).bundle
    path = factory.write(renewal, "renew")
    first = factory.ingest(path)
    assert (first.status, first.messages) == ("accepted", [])
    was_head = head(factory)

    again = factory.ingest(path)

    assert (again.status, again.target) == ("accepted", None)
    assert again.messages[0].startswith("already accepted: this renewal is mfr-121D version 2")
    assert head(factory) == was_head
