"""The repository working directory: init, CPL import, manufacturers, delegation on first deposit,
withdrawal, refresh, the audit log and the lock against a second process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import Metadata, Root, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library, updater_for
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import parse_timestamp
from metadata_templates.errors import (
    CflError,
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
)
from metadata_templates.naming import CPL_TARGET_PATH, WITHDRAWALS_TARGET_PATH, blob_name
from metadata_templates.withdrawals import WithdrawalList
from repo_tool.ops.init import initialise
from repo_tool.ops.manufacturers import add_manufacturer as add_manufacturer_op
from repo_tool.ops.refresh import refresh as refresh_op
from repo_tool.ops.withdraw import withdraw as withdraw_op
from repo_tool.state.repository import Repository
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


def events(factory: LibraryFactory) -> list[dict[str, object]]:
    lines = (factory.repo.path / "events.jsonl").read_bytes().splitlines()
    return [json.loads(line) for line in lines]


def head_bytes(factory: LibraryFactory) -> bytes:
    return (factory.repo.state_dir / "head.json").read_bytes()


def published_targets(factory: LibraryFactory) -> Targets:
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None and library.targets_metadata is not None
    return library.targets_metadata.signed


# ------------------------------------------------------------------------------------------ init


def test_init_creates_version_1_root_and_targets(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    repo = factory.repo

    root = Metadata[Root].from_bytes(repo.metadata_bytes("root", 1))
    targets = Metadata[Targets].from_bytes(repo.metadata_bytes("targets", 1))

    assert (root.signed.version, targets.signed.version) == (1, 1)
    assert root.signed.consistent_snapshot is True
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    root.signed.verify_delegate("targets", targets.signed_bytes, targets.signatures)
    assert set(root.signed.roles) == {"root", "targets", "snapshot", "timestamp"}
    assert targets.signed.targets == {}
    assert targets.signed.delegations is None
    assert (repo.head.root_version, repo.head.targets_version) == (1, 1)
    assert (repo.snapshot(), repo.timestamp()) == (None, None)
    assert [e["event"] for e in events(factory)] == ["init"]
    assert Repository.open(repo.path).head == repo.head


def test_init_refuses_an_existing_repository(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    repo = factory.repo
    was_head, was_config = head_bytes(factory), (repo.path / "cfl-repo.json").read_bytes()

    with pytest.raises(ConfigurationError, match="already initialised"):
        initialise(repo.path, repo.config, now=factory.tick())

    assert head_bytes(factory) == was_head
    assert (repo.path / "cfl-repo.json").read_bytes() == was_config
    assert not repo.metadata_path("root", 2).exists()


def test_open_of_a_directory_that_is_no_repository_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match=r"cfl-repo\.json: not found"):
        Repository.open(tmp_path)


# ------------------------------------------------------------------------------------------- CPL


def test_cpl_import_is_a_target_ngclient_downloads_and_parses(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    entries = [make_entry("CPL-0001"), make_entry("CPL-0002", fw="00000002", status="Cancelled")]
    factory.import_cpl(entries)
    factory.publish()

    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    info = updater.get_targetinfo(CPL_TARGET_PATH)
    assert info is not None
    data = Path(updater.download_target(info)).read_bytes()

    assert CplDocument.from_bytes(data).entries == tuple(entries)
    assert factory.repo.head.targets_version == 2
    assert events(factory)[-2]["event"] == "cpl-import"  # then the snapshot of the publish


def test_a_second_cpl_import_replaces_the_published_cpl(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    factory.import_cpl([make_entry("CPL-0001")])
    factory.publish()
    factory.import_cpl([make_entry("CPL-0001"), make_entry("CPL-0002", fw="00000002")])
    factory.publish()

    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == []
    assert library is not None and library.cpl is not None
    assert [e.id for e in library.cpl.entries] == ["CPL-0001", "CPL-0002"]


# --------------------------------------------------------------------------------- manufacturers


def _keys(n: int) -> list[Key]:
    return [CryptoSigner.generate_ed25519().public_key for _ in range(n)]


@pytest.mark.parametrize(
    ("mfr", "keys", "threshold", "message", "error"),
    [
        ("121D", 1, 1, "manufacturer 121D: found it registered already", RejectedInputError),
        # The operator's command line is wrong: usage errors (exit 2), not rejections.
        ("3F01", 2, 3, "--threshold: found 3, expected 1..2", ConfigurationError),
        ("3F01", 2, 0, "--threshold: found 0, expected 1..2", ConfigurationError),
        ("3F01", 0, 1, "--key: found 0 key(s), 0 distinct; expected >= 1", ConfigurationError),
        (
            "3F01",
            -2,
            1,
            "--key: found 2 key(s), 1 distinct; expected >= 1, distinct",
            ConfigurationError,
        ),
    ],
    ids=["duplicate-id", "threshold-above-keys", "threshold-zero", "no-keys", "same-key-twice"],
)
def test_manufacturer_add_refuses_bad_registrations(
    tmp_path: Path, mfr: str, keys: int, threshold: int, message: str, error: type[CflError]
) -> None:
    factory = LibraryFactory(tmp_path)
    factory.add_manufacturer("121D")
    was = head_bytes(factory)
    given = _keys(1) * 2 if keys == -2 else _keys(keys)

    with pytest.raises(error) as raised:
        add_manufacturer_op(factory.repo, mfr, "Maker", given, threshold, now=factory.tick())

    assert message in str(raised.value)
    assert head_bytes(factory) == was
    assert list(factory.repo.head.manufacturers) == ["121D"]


def test_delegation_appears_with_the_first_deposit_and_not_before(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    a2, a3 = make_image("121D", 2), make_image("121D", 3)
    factory.import_cpl(
        [
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(a2)),
            make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(a3)),
        ]
    )
    signers = factory.add_manufacturer("121D", threshold=2, signers=2)
    factory.publish()

    # Registered, nothing deposited: no delegation to a role that has no metadata.
    before = published_targets(factory)
    assert before.delegations is None
    snapshot = factory.repo.snapshot()
    assert snapshot is not None and set(snapshot.signed.meta) == {"targets.json"}
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    assert updater.get_targetinfo("121D/ESME-0001-00000002-0000000000000000.ota") is None
    assert updater.get_targetinfo(CPL_TARGET_PATH) is not None
    targets_version = factory.repo.head.targets_version

    first = factory.deposit(a2, ["CPL-0002"], signers=signers)

    after = published_targets(factory)
    assert after.delegations is not None and after.delegations.roles is not None
    role = after.delegations.roles["mfr-121D"]
    assert sorted(role.keyids) == sorted(s.public_key.keyid for s in signers)
    assert (role.threshold, role.paths, role.terminating) == (2, ["121D/*"], True)
    assert factory.repo.head.targets_version == targets_version + 1
    updater, _ = updater_for(factory, tmp_path / "client")  # the client's next run
    updater.refresh()
    assert first.target is not None and updater.get_targetinfo(first.target) is not None

    factory.deposit(a3, ["CPL-0003"], signers=signers)
    assert factory.repo.head.targets_version == targets_version + 1  # delegated once only
    assert factory.repo.head.roles == {"mfr-121D": 2}


# ------------------------------------------------------------------------------------- withdraw


def test_withdraw_records_an_event_keeps_the_blob_and_publishes_the_list(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    sha = hashlib.sha256(images["a2"]).hexdigest()
    role = factory.repo.role("mfr-121D").signed
    a2_target = next(path for path, t in role.targets.items() if t.hashes["sha256"] == sha)

    with factory.repo.locked():
        withdrawal = withdraw_op(
            factory.repo, a2_target, "  bricks meters on cold start ", now=factory.tick()
        )
    factory.publish()

    assert (withdrawal.target, withdrawal.sha256, withdrawal.reason) == (
        a2_target,
        sha,
        "bricks meters on cold start",
    )
    last = [e for e in events(factory) if e["event"] == "withdraw"]
    assert [{k: v for k, v in e.items() if k != "seq"} for e in last] == [
        {"event": "withdraw", "at": withdrawal.withdrawn, **withdrawal.to_dict()}
    ]
    assert factory.repo.blobs.get(sha) == images["a2"]
    assert (factory.out / "targets" / blob_name(a2_target, sha)).read_bytes() == images["a2"]
    assert a2_target in factory.repo.role("mfr-121D").signed.targets  # the signed metadata stays

    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    info = updater.get_targetinfo(WITHDRAWALS_TARGET_PATH)
    assert info is not None
    published = WithdrawalList.from_bytes(Path(updater.download_target(info)).read_bytes())
    assert published.withdrawals == (withdrawal,)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert {i.target_path: i.withdrawal for i in library.images}[a2_target] == withdrawal


@pytest.mark.parametrize(
    ("which", "reason", "message", "error"),
    [
        (
            "unknown",
            "bad",
            "TARGET: found '121D/ESME-0001-00000009-0000000000000000.ota'",
            RejectedInputError,
        ),
        (
            "cpl",
            "bad",
            "TARGET: found 'cfl/cpl.json', expected an image target in the library",
            RejectedInputError,
        ),
        ("withdrawn", "again", "was withdrawn already", RejectedInputError),
        # An empty --reason is a usage error (exit 2), not a refused request.
        ("image", "   ", "--reason: found an empty reason", ConfigurationError),
    ],
    ids=["unknown-target", "provider-target", "twice", "blank-reason"],
)
def test_withdraw_refuses_bad_requests(
    tmp_path: Path, which: str, reason: str, message: str, error: type[CflError]
) -> None:
    factory, _ = standard_library(tmp_path)
    image_target = sorted(factory.repo.role("mfr-121D").signed.targets)[0]
    target = {
        "unknown": "121D/ESME-0001-00000009-0000000000000000.ota",
        "cpl": CPL_TARGET_PATH,
        "withdrawn": image_target,
        "image": image_target,
    }[which]
    if which == "withdrawn":
        with factory.repo.locked():
            withdraw_op(factory.repo, image_target, "first time", now=factory.tick())
    was = head_bytes(factory)

    with factory.repo.locked(), pytest.raises(error) as raised:
        withdraw_op(factory.repo, target, reason, now=factory.tick())

    assert message in str(raised.value)
    assert head_bytes(factory) == was


# -------------------------------------------------------------------------------------- refresh


def test_refresh_does_nothing_while_far_from_expiry(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    was = head_bytes(factory)

    with factory.repo.locked():
        resigned = refresh_op(factory.repo, now=factory.tick(60))

    assert resigned == []
    assert head_bytes(factory) == was


def test_refresh_re_signs_snapshot_and_timestamp_near_their_expiry(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    timestamp = factory.repo.timestamp()
    assert timestamp is not None
    old_expiry = timestamp.signed.expires
    targets_version = factory.repo.head.targets_version
    later = old_expiry - timedelta(hours=11)  # under half of the 1-day timestamp period is left

    with factory.repo.locked():
        resigned = refresh_op(factory.repo, now=later)

    assert resigned == ["snapshot", "timestamp"]
    timestamp = factory.repo.timestamp()
    assert timestamp is not None
    assert timestamp.signed.expires == later + timedelta(days=1)
    assert factory.repo.head.targets_version == targets_version
    # Published, the tree is valid past the old timestamp's expiry.
    factory.now = later
    factory.publish()
    after_old_expiry = old_expiry + timedelta(hours=1)
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=after_old_expiry
    )
    assert problems == []


def test_refresh_re_signs_targets_past_half_its_validity(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    targets = factory.repo.targets()
    version = targets.signed.version
    later = targets.signed.expires - timedelta(days=44)  # 90-day period, 0.5 margin

    with factory.repo.locked():
        resigned = refresh_op(factory.repo, now=later)

    assert resigned == ["targets", "snapshot", "timestamp"]
    targets = factory.repo.targets()
    assert targets.signed.version == version + 1
    assert targets.signed.expires == later + timedelta(days=90)
    last = events(factory)[-1]
    assert {k: last[k] for k in ("event", "resigned", "targets")} == {
        "event": "refresh",
        "resigned": ["targets", "snapshot", "timestamp"],
        "targets": version + 1,
    }
    assert factory.repo.head.last_events == [last]  # one commit carries root, targets, snapshot


# ------------------------------------------------------------------------------------ audit log


def test_events_jsonl_records_every_change_with_what_and_when(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    bad = factory.tmp / "inbox" / "junk.cflb"
    bad.write_bytes(b"not a zip")
    factory.ingest(bad)
    with factory.repo.locked():
        target = sorted(factory.repo.role("mfr-3F01").signed.targets)[0]
        withdraw_op(factory.repo, target, "recalled", now=factory.tick())

    log = events(factory)

    assert [e["event"] for e in log] == [
        "init",
        "cpl-import",
        "manufacturer-add",
        "manufacturer-add",
        "snapshot",
        *["ingest-accepted", "snapshot"] * 3,
        "ingest-rejected",
        "withdraw",
    ]
    for event in log:
        parse_timestamp(str(event["at"]))  # every line says when
    accepted = [e for e in log if e["event"] == "ingest-accepted"]
    assert [e["role"] for e in accepted] == ["mfr-121D", "mfr-121D", "mfr-3F01"]
    assert [e["role_version"] for e in accepted] == [1, 2, 1]
    assert log[-2]["reasons"] == ["malformed-bundle"]
    raw = (factory.repo.path / "events.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == len(log)


# ----------------------------------------------------------------------------------------- lock


LOCK_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from metadata_templates.errors import UnavailableError
    from repo_tool.state.repository import Repository

    repo = Repository.open(Path(sys.argv[1]))
    try:
        with repo.locked():
            print("acquired")
    except UnavailableError as e:
        print(f"refused: {e}")
        sys.exit(3)
    """
)


def _probe(path: Path) -> subprocess.CompletedProcess[str]:
    # The timeout is a hang guard: a lock that waits instead of failing fast fails this test.
    return subprocess.run(
        [sys.executable, "-c", LOCK_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_process_fails_fast_while_the_lock_is_held(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)

    with factory.repo.locked():
        held = _probe(factory.repo.path)
    released = _probe(factory.repo.path)

    assert held.returncode == 3, held.stderr
    # The refusal names the holder (this test process) from its record in R/.lock.
    assert re.fullmatch(
        rf"refused: the repository is busy: cfl-repo \(PID {os.getpid()} on \S+, "
        r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)\n",
        held.stdout,
    ), held.stdout
    assert (released.returncode, released.stdout) == (0, "acquired\n")


def test_nested_holds_by_one_object_are_one_hold_but_another_object_is_refused(
    tmp_path: Path,
) -> None:
    """`refresh` publishes inside its own hold; a second `Repository` on the same folder (whose
    cached head would overwrite the first one's commit) fails at once rather than deadlocking."""
    factory = LibraryFactory(tmp_path)
    again = Repository.open(factory.repo.path)
    with factory.repo.locked():
        with factory.repo.locked():
            assert factory.repo.lock.depth == 2
        with pytest.raises(UnavailableError, match="the repository is busy"), again.locked():
            pass
    assert factory.repo.lock.depth == 0
    with again.locked():  # released with the outer hold
        pass


def test_withdraw_again_with_the_same_reason_changes_nothing(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    target = sorted(factory.repo.role("mfr-121D").signed.targets)[0]
    with factory.repo.locked():
        first = withdraw_op(factory.repo, target, "recalled", now=factory.tick())
    head = head_bytes(factory)

    with factory.repo.locked():
        again = withdraw_op(factory.repo, target, " recalled ", now=factory.tick())

    assert again == first
    assert head_bytes(factory) == head
    assert [e["event"] for e in events(factory)].count("withdraw") == 1
