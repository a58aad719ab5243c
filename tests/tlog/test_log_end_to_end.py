"""The transparency log end to end: a library built by the factory, its published log, the client's
refresh and download checks, `cfl log verify`'s audit, witnesses, and the attacks at that boundary."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.log.audit import audit
from client.log.transparency import HomeLog, WitnessPolicy, read_bound, verify_image_logged
from client.log.witness import Witness
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    VerificationError,
)
from metadata_templates.tlog import events
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.note import NoteSigner, parse_note, parse_vkey, sign_note
from metadata_templates.tlog.tiles import ENTRIES_LEVEL, decode_bundle, tiles_for_size
from repo_tool.ops.publish import publish
from repo_tool.ops.snapshot import stage_snapshot as stage_snapshot_op
from repo_tool.ops.withdraw import withdraw as withdraw_op
from repo_tool.tlog import provider_log as tlog
from tests.factory import (
    LibraryFactory,
    make_entry,
    make_image,
    mi_sha,
    standard_library,
    updater_for,
)


class Host:
    """The static host as the client sees it: paths under the published folder, with tampering."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tamper: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def __call__(self, relative: str) -> bytes:
        self.fetched.append(relative)
        if relative in self.tamper:
            return self.tamper[relative]
        try:
            return (self.root / relative).read_bytes()
        except OSError as e:
            raise UnavailableError(f"{relative}: 404") from e


def _refresh(factory: LibraryFactory, client_dir: Path, host: Host) -> Checkpoint | None:
    """What `cfl refresh` does: ngclient verifies the timestamp, then the log is checked."""
    updater, _ = updater_for(factory, client_dir)
    updater.refresh()
    return HomeLog(client_dir).update(read_bound(client_dir / "metadata"), host, now=factory.now)


def _entries(log_dir: Path, size: int) -> list[bytes]:
    out: list[bytes] = []
    for tile in tiles_for_size(size):
        if tile.level == ENTRIES_LEVEL:
            out += decode_bundle((log_dir / tile.path).read_bytes(), expected=tile.width, where="")
    return out


def _republish_without(factory: LibraryFactory, drop: int) -> None:
    """The attack: the provider (or a thief of its keys) rebuilds the log without entry ``drop``,
    re-signs everything and republishes over the old tree."""
    repo = factory.repo
    entries = _entries(repo.log_dir, repo.head.log_size)
    del entries[drop]
    with repo.locked():
        shutil.rmtree(repo.log_dir)
        shutil.rmtree(factory.out / "log")
        state = tlog.append(repo.log_dir, tlog.LogState(), entries)
        head = replace(repo.head, log_size=state.size, log_root=state.root_hash.hex())
        atomic_write_bytes(repo.state_dir / "head.json", head.to_bytes())
    with repo.locked():
        stage_snapshot_op(repo, now=factory.tick(), force=True)
    factory.publish()


def _grow(factory: LibraryFactory) -> None:
    """Two more lodged events: a CPL import that lists a new image, and its deposit."""
    image = make_image("121D", 1)
    entries = [e for e in factory.entries if e.id != "CPL-0001"]
    factory.import_cpl([make_entry("CPL-0001", fw="00000001", image_sha=mi_sha(image)), *entries])
    factory.deposit(image, ["CPL-0001"])


@pytest.fixture
def library(tmp_path: Path) -> tuple[LibraryFactory, dict[str, bytes]]:
    return standard_library(tmp_path)


def test_every_lodged_event_is_logged_and_the_published_log_audits_clean(
    library: tuple[LibraryFactory, dict[str, bytes]],
) -> None:
    factory, _ = library
    host = Host(factory.out)
    report = audit(host, vkey=None)
    assert report.problems == []
    assert report.events == {
        "init": 1,
        "cpl-import": 1,
        "manufacturer-add": 2,
        "ingest-accepted": 3,
    }
    assert report.images_checked == 3
    assert report.index_files_checked == 3
    assert report.size == factory.repo.head.log_size == 7
    deposit = next(
        events.decode_event(e, index=i)
        for i, e in enumerate(_entries(factory.repo.log_dir, 7))
        if b"ingest-accepted" in e
    )
    assert set(deposit) >= {
        "target",
        "sha256",
        "manufacturer_image_sha256",
        "cpl_entries",
        "role_version",
    }


def test_withdrawal_is_logged_and_the_client_follows_consistently(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    host = Host(factory.out)
    first = _refresh(factory, tmp_path / "client", host)
    assert first is not None and first.size == 7
    host.fetched.clear()
    assert _refresh(factory, tmp_path / "client", host) == first
    assert host.fetched == []  # the timestamp names the trusted checkpoint: nothing to fetch
    target = next(iter(factory.repo.role("mfr-121D").signed.targets))
    with factory.repo.locked():
        withdraw_op(factory.repo, target, "bricks meters", now=factory.tick())
    factory.publish()
    second = _refresh(factory, tmp_path / "client", host)
    assert second is not None and second.size == 8
    report = audit(host, vkey=None)
    assert report.problems == [] and report.withdrawals_checked == 1
    assert report.events["withdraw"] == 1


def test_a_downloaded_image_is_proved_included(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    host = Host(factory.out)
    checkpoint = _refresh(factory, tmp_path / "client", host)
    assert checkpoint is not None
    for path, target in factory.repo.role("mfr-3F01").signed.targets.items():
        index = verify_image_logged(checkpoint, path, target.hashes["sha256"], host)
        assert 0 <= index < checkpoint.size
    with pytest.raises(VerificationError, match="no deposit entry"):
        verify_image_logged(checkpoint, "3F01/x.ota", "ab" * 32, host)


def test_an_index_pointing_at_another_entry_is_caught(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    host = Host(factory.out)
    checkpoint = _refresh(factory, tmp_path / "client", host)
    assert checkpoint is not None
    path, target = next(iter(factory.repo.role("mfr-121D").signed.targets.items()))
    sha = target.hashes["sha256"]
    host.tamper[f"log/cfl-index/{sha}"] = b"0\n"  # the init event
    with pytest.raises(VerificationError, match="expected \\('ingest-accepted'"):
        verify_image_logged(checkpoint, path, sha, host)


@pytest.mark.parametrize(
    ("served", "found"),
    [(b"0\n", "found b'0\\n'"), (b"seven\n", "found b'seven\\n'"), (None, "cannot fetch")],
    ids=["points-at-another-entry", "not-a-number", "missing"],
)
def test_audit_reports_a_cfl_index_file_that_does_not_name_its_deposit(
    library: tuple[LibraryFactory, dict[str, bytes]], served: bytes | None, found: str
) -> None:
    factory, _ = library
    target = next(iter(factory.repo.role("mfr-121D").signed.targets.values()))
    sha = target.hashes["sha256"]
    index = next(
        i
        for i, e in enumerate(_entries(factory.repo.log_dir, factory.repo.head.log_size))
        if events.decode_event(e, index=i).get("sha256") == sha
    )
    if served is None:
        (factory.out / "log" / "cfl-index" / sha).unlink()
    host = Host(factory.out)
    if served is not None:
        host.tamper[f"log/cfl-index/{sha}"] = served
    report = audit(host, vkey=None)
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith(f"log/cfl-index/{sha}: {found}")
    assert f"expected {index} (the deposit's log index)" in report.problems[0]
    assert report.index_files_checked == 3


def test_attack_a_log_republished_without_an_earlier_event_is_refused_and_reported(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, images = library
    host = Host(factory.out)
    trusted = _refresh(factory, tmp_path / "client", host)
    assert trusted is not None
    _grow(factory)  # the log grows past the old size
    _republish_without(factory, drop=4)  # the deposit of a2

    with pytest.raises(VerificationError, match="INCONSISTENT") as caught:
        _refresh(factory, tmp_path / "client", host)
    assert caught.value.hint is not None and "SECAS" in caught.value.hint
    evidence = next((tmp_path / "client" / "log" / "evidence").iterdir())
    kept = {p.name for p in evidence.iterdir()}
    assert kept == {"trusted-checkpoint", "offered-checkpoint", "reason.txt"}
    assert (
        Checkpoint.from_text(parse_note((evidence / "trusted-checkpoint").read_bytes()).text)
        == trusted
    )
    # The home still trusts the old checkpoint.
    assert HomeLog(tmp_path / "client").trusted() == trusted

    report = audit(host, vkey=None)
    a2 = f"(sha256 {hashlib.sha256(images['a2']).hexdigest()}): no deposit event"
    assert any(a2 in p for p in report.problems), report.problems


def test_audit_with_a_kept_checkpoint_catches_the_rewrite(
    library: tuple[LibraryFactory, dict[str, bytes]],
) -> None:
    factory, _ = library
    kept = (factory.out / "log" / "checkpoint").read_bytes()
    _grow(factory)
    assert audit(Host(factory.out), vkey=None, previous=kept).problems == []
    _republish_without(factory, drop=2)
    problems = audit(Host(factory.out), vkey=None, previous=kept).problems
    assert any("--previous checkpoint (size 7)" in p for p in problems), problems


@pytest.mark.parametrize(
    "attack",
    ["tampered-tile", "tampered-entry", "checkpoint-not-the-bound-one", "foreign-log-key"],
)
def test_audit_and_client_reject_a_tampered_log(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path, attack: str
) -> None:
    factory, _ = library
    host = Host(factory.out)
    _refresh(factory, tmp_path / "client", host)
    _grow(factory)
    size = factory.repo.head.log_size
    origin = factory.repo.config.log.origin if factory.repo.config.log else ""
    if attack == "tampered-tile":
        path = "log/tile/0/000.p/" + str(size)
        data = bytearray(host(path))
        data[5] ^= 1
        host.tamper[path] = bytes(data)
    elif attack == "tampered-entry":
        path = "log/tile/entries/000.p/" + str(size)
        host.tamper[path] = host(path).replace(b"ingest-accepted", b"ingest-acceptee")
    elif attack == "checkpoint-not-the-bound-one":
        # A validly signed, older checkpoint: TUF's timestamp binds the newer one.
        host.tamper["log/checkpoint"] = (tmp_path / "client" / "log" / "checkpoint").read_bytes()
    else:
        other = NoteSigner(origin, Ed25519PrivateKey.generate())
        text = parse_note(host("log/checkpoint")).text
        host.tamper["log/checkpoint"] = sign_note(text, [other]).to_bytes()
    problems: list[str] = []
    try:
        problems = audit(host, vkey=None).problems
    except VerificationError as e:
        problems = [str(e)]
    assert problems
    with pytest.raises(VerificationError):  # at refresh, or at the latest when downloading
        checkpoint = _refresh(factory, tmp_path / "client", host)
        assert checkpoint is not None
        for role in ("mfr-121D", "mfr-3F01"):
            for path, target in factory.repo.role(role).signed.targets.items():
                verify_image_logged(checkpoint, path, target.hashes["sha256"], host)


def test_a_home_that_trusted_a_log_refuses_a_timestamp_without_one(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    host = Host(factory.out)
    _refresh(factory, tmp_path / "client", host)
    with pytest.raises(VerificationError, match="stopped logging"):
        HomeLog(tmp_path / "client").update(None, host, now=factory.now)


def test_witness_cosigns_only_a_consistent_log_and_clients_can_require_it(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    host = Host(factory.out)
    assert factory.repo.config.log is not None
    witness = Witness(tmp_path / "witness")
    vkey = witness.init("witness.test/w1", factory.repo.config.log.vkey).vkey
    home = HomeLog(tmp_path / "client")
    home.set_policy(WitnessPolicy((parse_vkey(vkey),), 1))
    with pytest.raises(VerificationError, match="expected at least 1"):
        _refresh(factory, tmp_path / "client", host)

    first = witness.cosign(host, now=factory.now)
    assert first.previous_size is None
    with factory.repo.locked():
        added = tlog.add_cosignatures(
            factory.repo.log_dir, factory.repo.log_state(), first.cosigned, [parse_vkey(vkey)]
        )
    assert added == 1
    with factory.repo.locked():
        stage_snapshot_op(factory.repo, now=factory.tick(), force=True)
    factory.publish()
    assert _refresh(factory, tmp_path / "client", host) is not None
    assert audit(host, vkey=None, witnesses=(parse_vkey(vkey),)).cosigned_by == ["witness.test/w1"]

    _grow(factory)
    assert witness.cosign(host, now=factory.tick()).previous_size == 7
    _republish_without(factory, drop=3)
    with pytest.raises(VerificationError, match="not cosigning"):
        witness.cosign(host, now=factory.tick())


def test_provider_keeps_only_cosignatures_that_verify(
    library: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path
) -> None:
    factory, _ = library
    assert factory.repo.config.log is not None
    witness = Witness(tmp_path / "witness")
    vkey = parse_vkey(witness.init("witness.test/w1", factory.repo.config.log.vkey).vkey)
    cosigned = witness.cosign(Host(factory.out), now=factory.now).cosigned
    forged = cosigned[:-10] + b"AAAAAAAAA=\n"
    with pytest.raises(RejectedInputError, match="does not verify"):
        tlog.add_cosignatures(factory.repo.log_dir, factory.repo.log_state(), forged, [vkey])
    other = parse_vkey(
        Witness(tmp_path / "w2").init("witness.test/w2", factory.repo.config.log.vkey).vkey
    )
    with pytest.raises(RejectedInputError, match="expected a cosignature by"):
        tlog.add_cosignatures(factory.repo.log_dir, factory.repo.log_state(), cosigned, [other])


def test_the_log_key_must_match_its_vkey(library: tuple[LibraryFactory, dict[str, bytes]]) -> None:
    factory, _ = library
    config = factory.repo.config.log
    assert config is not None
    wrong = replace(
        config, vkey=NoteSigner(config.origin, Ed25519PrivateKey.generate()).verifier.vkey
    )
    with pytest.raises(ConfigurationError, match="differs from the configured"):
        tlog.load_log_signer(factory.repo.path, wrong, None)


def test_publish_writes_only_new_tiles_and_never_orphans(
    library: tuple[LibraryFactory, dict[str, bytes]],
) -> None:
    factory, _ = library
    repo = factory.repo
    # An orphan of an interrupted append: a tile and index beyond the committed size.
    atomic_write_bytes(repo.log_dir / "tile/0/000.p/8", b"\0" * 256)
    atomic_write_bytes(repo.log_dir / "cfl-index" / ("cd" * 32), b"7\n")
    report = publish(repo, factory.out, now=factory.tick())
    assert report.written["log"] == 0
    assert not (factory.out / "log/tile/0/000.p/8").exists()
    assert not (factory.out / "log/cfl-index" / ("cd" * 32)).exists()
    # The next append overwrites the orphan and the log audits clean.
    factory.import_cpl(
        [
            *factory.entries,
            make_entry("CPL-0009", fw="00000009", image_sha=mi_sha(make_image("121D", 9))),
        ]
    )
    factory.publish()
    assert audit(Host(factory.out), vkey=None).problems == []


def test_encrypted_release_notes_are_lodged_with_their_image_not_as_images(
    tmp_path: Path,
) -> None:
    from tests.notes_factory import notes_library

    world = notes_library(tmp_path)
    world.factory.deposit(world.images["esme"], ["CPL-0002"], release_notes=b"install at night")

    report = audit(Host(world.factory.out), vkey=None)

    assert report.problems == []
    notes = [
        path
        for role in world.factory.repo.head.roles
        for path in world.factory.repo.role(role).signed.targets
        if path.endswith(".notes.jwe")
    ]
    assert notes  # the library does hold notes targets, and none was counted as an image
    assert report.images_checked == report.events["ingest-accepted"]
