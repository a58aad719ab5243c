"""Signing ceremonies: root and targets changed by key holders who never share a machine.

Each holder has only their own key file and the proposal; the repository's configuration records their
keys as ``offline:`` and could not sign for them if it tried. Clients that trusted the old root follow
each change (python-tuf ngclient), and the published tree verifies end to end.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from key_drills import Holders, offline_root_library
from securesystemslib.signer import CryptoSigner, Key, Signature
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets, Timestamp

from factory import FolderFetcher, LibraryFactory, updater_for
from metadata_templates.errors import ConfigurationError, RejectedInputError, VerificationError
from repo_tool.ceremony.diff import root_changes, targets_changes
from repo_tool.ceremony.proposal import Proposal, SignatureFile
from repo_tool.ceremony.sign import sign_proposal, summary
from repo_tool.ceremony.start import KeyChange, propose_root, propose_targets
from repo_tool.ops.ceremony import capture_targets_change, finish_ceremony
from repo_tool.ops.cpl_import import import_cpl as import_cpl_op
from repo_tool.ops.refresh import refresh as refresh_op
from repo_tool.ops.withdraw import withdraw as withdraw_op
from repo_tool.signing.keys import OFFLINE_URI, load_signer, write_keypair
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library


@pytest.fixture
def library(tmp_path: Path) -> tuple[LibraryFactory, Holders, Path]:
    """A library whose root is held by alice, bob and carol (2 of 3), offline; and a client that
    refreshed before any ceremony."""
    factory, holders = offline_root_library(tmp_path)
    return factory, holders, tmp_path / "client"


def _verified(factory: LibraryFactory, client: Path) -> int:
    """ngclient (from the client's old trusted root) and our own full check both accept the tree;
    returns the root version they reached."""
    updater, _ = updater_for(factory, client)
    updater.refresh()
    for name in ("mfr-121D", "mfr-3F01"):
        assert updater.get_targetinfo(f"{name.removeprefix('mfr-')}/x") is None
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert len(library.images) == 3
    return library.root_version


def test_two_of_three_holders_add_a_holder_and_clients_follow(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, holders, client = library
    dave = holders.make("dave")
    carol = holders.keyid("carol")
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(add=(dave.public_key,), remove=(carol[:8],), threshold=2),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    signatures = holders.sign(
        proposal, "alice", "bob"
    )  # 2 of the old {a,b,c} and of the new {a,b,d}
    with factory.repo.locked():
        outcome = finish_ceremony(factory.repo, proposal, signatures, now=factory.tick())
    assert (outcome.role, outcome.version, outcome.notes) == ("root", 3, [])
    factory.publish()

    assert _verified(factory, client) == 3
    root = factory.repo.root().signed
    assert set(root.roles["root"].keyids) == {holders.keyid(n) for n in ("alice", "bob", "dave")}
    assert {r.uri for r in factory.repo.config.signers["root"]} == {OFFLINE_URI}
    assert factory.repo.config.policy.root_keys == 3


def test_one_signature_does_not_meet_two_of_three_and_nothing_changes(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, holders, _ = library
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(threshold=3),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    head = factory.repo.head
    with (
        factory.repo.locked(),
        pytest.raises(VerificationError, match=r"found 1 valid .* expected at least 2"),
    ):
        finish_ceremony(factory.repo, proposal, holders.sign(proposal, "alice"), now=factory.tick())
    assert factory.repo.head == head


def test_a_new_root_must_meet_the_new_threshold_as_well_as_the_old(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, holders, client = library
    dave, erin = holders.make("dave"), holders.make("erin")
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(
            add=(dave.public_key, erin.public_key),
            remove=(holders.keyid("alice"), holders.keyid("bob"), holders.keyid("carol")),
            threshold=2,
        ),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    old_only = holders.sign(proposal, "alice", "bob")
    with factory.repo.locked(), pytest.raises(VerificationError, match="new root's keys"):
        finish_ceremony(factory.repo, proposal, old_only, now=factory.tick())
    new_only = holders.sign(proposal, "dave", "erin")
    with factory.repo.locked(), pytest.raises(VerificationError, match="current root's keys"):
        finish_ceremony(factory.repo, proposal, new_only, now=factory.tick())
    with factory.repo.locked():
        finish_ceremony(factory.repo, proposal, old_only + new_only, now=factory.tick())
    factory.publish()
    assert _verified(factory, client) == 3


def test_lost_root_key_drill_threshold_still_met_then_key_replaced(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    """Carol's key is lost: Alice and Bob (2 of 3) still meet both thresholds and replace it."""
    factory, holders, client = library
    frank = holders.make("frank")
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(add=(frank.public_key,), remove=(holders.keyid("carol")[:10],)),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, "alice", "bob"), now=factory.tick()
        )
    factory.publish()
    assert _verified(factory, client) == 3
    assert holders.keyid("carol") not in factory.repo.root().signed.keys


def test_a_stale_proposal_is_refused(library: tuple[LibraryFactory, Holders, Path]) -> None:
    factory, holders, _ = library
    expiry = factory.repo.config.policy.expiry("root")
    first = propose_root(factory.repo.root(), KeyChange(), now=factory.tick(), expires_in=expiry)
    second = propose_root(
        factory.repo.root(), KeyChange(threshold=1), now=factory.tick(), expires_in=expiry
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, first, holders.sign(first, "alice", "bob"), now=factory.tick()
        )
    head = factory.repo.head
    with (
        factory.repo.locked(),
        pytest.raises(
            RejectedInputError, match=r"proposal base: found root v2, expected the current root v3"
        ),
    ):
        finish_ceremony(
            factory.repo, second, holders.sign(second, "alice", "bob", "carol"), now=factory.tick()
        )
    assert factory.repo.head == head


def test_finish_again_completes_nothing_more(library: tuple[LibraryFactory, Holders, Path]) -> None:
    factory, holders, _ = library
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    signatures = holders.sign(proposal, "alice", "bob")
    with factory.repo.locked():
        finish_ceremony(factory.repo, proposal, signatures, now=factory.tick())
        again = finish_ceremony(factory.repo, proposal, signatures, now=factory.tick())
    assert again.already_finished and factory.repo.head.root_version == 3


def test_a_crash_before_the_commit_leaves_an_orphan_the_rerun_replaces(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, holders, client = library
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    orphan = factory.repo.metadata_path("root", 3)
    orphan.write_bytes(b"half-written by a killed run")
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, "alice", "bob"), now=factory.tick()
        )
    factory.publish()
    assert _verified(factory, client) == 3


def _attack_cases(
    factory: LibraryFactory, holders: Holders, proposal: Proposal
) -> dict[str, tuple[list[tuple[str, SignatureFile]], type[Exception], str]]:
    good = holders.sign(proposal, "alice", "bob")
    other = propose_root(
        factory.repo.root(),
        KeyChange(threshold=1),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    stranger = CryptoSigner.generate_ed25519()
    forged_sig = Signature(
        holders.keyid("bob"), stranger.sign(proposal.proposed.signed_bytes).signature
    )
    forged = replace(good[1][1], signature=forged_sig)
    outsider = replace(good[1][1], signature=stranger.sign(proposal.proposed.signed_bytes))
    return {
        "signature-over-another-proposal": (
            [good[0], holders.sign(other, "bob")[0]],
            RejectedInputError,
            "a signature over another proposal",
        ),
        "signature-by-a-stranger-key": (
            [good[0], ("x.sig.json", outsider)],
            RejectedInputError,
            "keyid: found",
        ),
        "forged-signature-under-a-holder-keyid": (
            [good[0], ("bob.sig.json", forged)],
            VerificationError,
            "does not verify",
        ),
        "same-holder-twice": ([good[0], good[0]], RejectedInputError, "second signature"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "signature-over-another-proposal",
        "signature-by-a-stranger-key",
        "forged-signature-under-a-holder-keyid",
        "same-holder-twice",
    ],
)
def test_bad_signature_files_are_refused(
    library: tuple[LibraryFactory, Holders, Path], case: str
) -> None:
    factory, holders, _ = library
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    signatures, error, message = _attack_cases(factory, holders, proposal)[case]
    head = factory.repo.head
    with factory.repo.locked(), pytest.raises(error, match=message):
        finish_ceremony(factory.repo, proposal, signatures, now=factory.tick())
    assert factory.repo.head == head


def test_an_edited_proposal_is_refused_on_reading(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, _, _ = library
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(threshold=3),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    doc = json.loads(proposal.to_bytes())
    doc["proposed"]["signed"]["roles"]["root"]["threshold"] = 1  # the summary would still say 3
    with pytest.raises(
        RejectedInputError, match=r"signed_sha256: found .* edited after it was made"
    ):
        Proposal.from_bytes(json.dumps(doc).encode(), source="p.json")


def test_a_key_that_cannot_sign_the_role_is_refused_when_signing(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, holders, _ = library
    proposal = propose_targets(
        factory.repo.root(),
        factory.repo.targets(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("targets"),
    )
    with pytest.raises(
        RejectedInputError, match=r"--signer: found key .* expected one of the targets keys"
    ):
        sign_proposal(proposal, holders.signers["alice"])


def test_online_key_compromise_drill_rotates_timestamp_through_a_root_ceremony(
    library: tuple[LibraryFactory, Holders, Path], tmp_path: Path
) -> None:
    factory, holders, client = library
    stolen = factory.repo.config.signers["timestamp"][0]
    key, uri = write_keypair(factory.repo.path / "keys" / "timestamp-2.pem")
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(keys_of="timestamp", add=(key,), remove=(stolen.keyid,), uris={key.keyid: uri}),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    assert f"timestamp: add key {key.keyid[:8]} (ed25519)" in summary(proposal)
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, "alice", "carol"), now=factory.tick()
        )
    factory.publish()
    assert _verified(factory, client) == 3
    assert [r.uri for r in factory.repo.config.signers["timestamp"]] == [uri]

    # The thief's timestamp, signed by the stolen key, is refused by clients that followed root.
    forged = Metadata[Timestamp].from_bytes(
        (factory.out / "metadata" / "timestamp.json").read_bytes()
    )
    forged.signed.version += 1
    forged.signatures.clear()
    forged.sign(load_signer(stolen, base=factory.repo.path, secrets_handler=None))
    fetcher = FolderFetcher(factory.out)
    fetcher.tamper["metadata/timestamp.json"] = forged.to_bytes()
    updater, _ = updater_for(factory, tmp_path / "client-2", fetcher)
    with pytest.raises(UnsignedMetadataError):
        updater.refresh()


def test_offline_targets_key_refresh_through_a_targets_ceremony(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, holders, client = library
    # A root ceremony hands targets to three holders (2 of 3); the old targets key is revoked.
    new_keys = tuple(holders.make(n).public_key for n in ("tara", "tom", "tess"))
    handover = propose_root(
        factory.repo.root(),
        KeyChange(
            keys_of="targets",
            add=new_keys,
            remove=(factory.repo.config.signers["targets"][0].keyid,),
            threshold=2,
        ),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    with factory.repo.locked():
        handed = finish_ceremony(
            factory.repo, handover, holders.sign(handover, "alice", "bob"), now=factory.tick()
        )
    # targets is still signed by the revoked key, and only the holders can re-sign it.
    assert len(handed.notes) == 1 and "ceremony start targets" in handed.notes[0]
    # Routine signing of targets is impossible now, and says how to proceed.
    target = next(iter(factory.repo.role("mfr-121D").signed.targets))
    with factory.repo.locked(), pytest.raises(ConfigurationError) as raised:
        withdraw_op(factory.repo, target, "drill", now=factory.tick())
    assert raised.value.hint is not None and "ceremony start targets" in raised.value.hint

    before = factory.repo.targets().signed
    proposal = propose_targets(
        factory.repo.root(),
        factory.repo.targets(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("targets"),
    )
    assert summary(proposal)[0] == f"targets version: {before.version} -> {before.version + 1}"
    with factory.repo.locked():
        outcome = finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, "tara", "tess"), now=factory.tick()
        )
    assert outcome.version == before.version + 1
    factory.publish()
    assert _verified(factory, client) == 3
    assert {r.uri for r in factory.repo.config.signers["targets"]} == {OFFLINE_URI}
    published = Metadata[Targets].from_bytes(
        (factory.out / "metadata" / f"{outcome.version}.targets.json").read_bytes()
    )
    assert set(published.signatures) == {holders.keyid("tara"), holders.keyid("tess")}


def test_root_changes_lists_keys_thresholds_and_expiry() -> None:
    a, b, c = (CryptoSigner.generate_ed25519().public_key for _ in range(3))
    old = Root()
    old.add_key(a, "root")
    old.add_key(b, "root")
    new = Root(version=2, expires=old.expires.replace(year=old.expires.year + 1))
    new.add_key(a, "root")
    new.add_key(c, "root")
    new.roles["root"].threshold = 2
    lines = root_changes(old, new)
    assert lines[0] == "root version: 1 -> 2"
    assert lines[1].startswith("root expires: ")
    assert set(lines[2:]) == {
        f"root: add key {c.keyid[:8]} (ed25519)",
        f"root: remove key {b.keyid[:8]} (ed25519)",
        "root: threshold 1 -> 2",
    }


def test_targets_changes_lists_delegation_keys() -> None:
    from tuf.api.metadata import DelegatedRole, Delegations

    a, b = (CryptoSigner.generate_ed25519().public_key for _ in range(2))

    def targets(key: Key, version: int) -> Targets:
        role = DelegatedRole("mfr-121D", [key.keyid], 1, True, ["121D/*"])
        return Targets(
            version=version, delegations=Delegations({key.keyid: key}, {"mfr-121D": role})
        )

    lines = targets_changes(targets(a, 4), targets(b, 5))
    assert lines == [
        "targets version: 4 -> 5",
        f"delegation mfr-121D: add key {b.keyid[:8]} (ed25519)",
        f"delegation mfr-121D: remove key {a.keyid[:8]} (ed25519)",
    ]


def _hand_targets_to_holders(factory: LibraryFactory, holders: Holders) -> None:
    """Root ceremony: targets becomes 2 of 3 offline holders; targets ceremony: they re-sign it."""
    keys = tuple(holders.make(n).public_key for n in ("tara", "tom", "tess"))
    old = factory.repo.config.signers["targets"][0].keyid
    handover = propose_root(
        factory.repo.root(),
        KeyChange(keys_of="targets", add=keys, remove=(old,), threshold=2),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, handover, holders.sign(handover, "alice", "bob"), now=factory.tick()
        )
    resign = propose_targets(
        factory.repo.root(),
        factory.repo.targets(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("targets"),
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, resign, holders.sign(resign, "tom", "tess"), now=factory.tick()
        )
    factory.publish()


def test_manufacturer_rotation_through_a_targets_ceremony(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    from repo_tool.ops.manufacturer_keys import rotate_key
    from repo_tool.submit.deposit import build_renewal
    from repo_tool.verify.walk import verified_library

    factory, holders, client = library
    _hand_targets_to_holders(factory, holders)
    old = factory.mfr_signers["121D"]
    new = CryptoSigner.generate_ed25519()
    head = factory.repo.head
    with factory.repo.locked():
        proposal = rotate_key(
            factory.repo,
            "121D",
            add=[new.public_key],
            remove=[old.public_key.keyid],
            threshold=None,
            now=factory.tick(),
            ceremony=True,
        )
    assert factory.repo.head == head  # nothing committed until the holders have signed
    assert f"delegation mfr-121D: add key {new.public_key.keyid[:8]} (ed25519)" in summary(proposal)
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, "tara", "tom"), now=factory.tick()
        )
    record = factory.repo.head.manufacturers["121D"]
    assert set(record.keys) == {new.public_key.keyid}
    assert set(record.retiring) == {old.public_key.keyid}
    factory.publish()
    assert _verified(factory, client) == 3

    def renewal(signer: CryptoSigner) -> Path:
        published = verified_library(
            folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
        )
        built = build_renewal(
            manufacturer_id="121D", signers=[signer], library=published, now=factory.now
        )
        return factory.write(built.bundle, "renewal")

    assert factory.ingest(renewal(old)).reasons == ["threshold-not-met"]
    assert factory.ingest(renewal(new)).status == "accepted"
    factory.publish()
    assert _verified(factory, client) == 3


def test_a_suspension_made_while_targets_is_offline_is_published_by_the_next_targets_ceremony(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    from repo_tool.ops.manufacturer_keys import (
        SUSPENSIONS_TARGET_PATH,
        pending_targets_change,
        suspend,
    )

    factory, holders, client = library
    _hand_targets_to_holders(factory, holders)
    with factory.repo.locked():
        published = suspend(factory.repo, "3F01", "audit pending", now=factory.tick())
    assert published is False  # the gateway enforces it; targets cannot carry it yet
    assert factory.repo.head.suspended["3F01"]["reason"] == "audit pending"
    proposal = propose_targets(
        factory.repo.root(),
        factory.repo.targets(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("targets"),
        change=pending_targets_change(factory.repo),
    )
    assert any(
        line.startswith(f"target {SUSPENSIONS_TARGET_PATH}: added") for line in summary(proposal)
    )
    with factory.repo.locked():
        finish_ceremony(
            factory.repo, proposal, holders.sign(proposal, "tara", "tom"), now=factory.tick()
        )
    factory.publish()
    assert SUSPENSIONS_TARGET_PATH in factory.repo.targets().signed.targets
    assert _verified(factory, client) == 3


def test_refresh_with_offline_targets_still_renews_snapshot_and_timestamp(
    library: tuple[LibraryFactory, Holders, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Cron's refresh must keep clients fresh when targets is due but its keys are offline."""
    factory, holders, _ = library
    _hand_targets_to_holders(factory, holders)
    targets = factory.repo.targets().signed
    late = targets.expires - factory.repo.config.policy.expiry("targets") * 0.25  # past the margin
    with factory.repo.locked():
        resigned = refresh_op(factory.repo, now=late)
    assert resigned == ["snapshot", "timestamp"]
    assert factory.repo.targets().signed.version == targets.version
    assert factory.repo.timestamp() is not None
    assert factory.repo.timestamp().signed.expires > late  # type: ignore[union-attr]
    assert "ceremony start targets" in caplog.text


class _BrokenToken(CryptoSigner):
    """A holder's signer whose device fails mid-ceremony (token pulled, wrong PIN)."""

    def sign(self, payload: bytes) -> Signature:
        raise RuntimeError("CKR_PIN_INCORRECT")


def test_a_failing_signing_device_is_one_clear_error(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    from metadata_templates.errors import UnavailableError

    factory, holders, _ = library
    proposal = propose_root(
        factory.repo.root(),
        KeyChange(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    alice = holders.signers["alice"]
    assert isinstance(alice, CryptoSigner)
    broken = _BrokenToken(alice._private_key, alice.public_key)
    with pytest.raises(
        UnavailableError, match=r"--signer: key .* unable to sign \(CKR_PIN_INCORRECT\)"
    ):
        sign_proposal(proposal, broken)


def test_cpl_import_and_withdrawal_with_offline_targets_go_through_a_targets_ceremony(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    from factory import make_entry
    from metadata_templates.cpl_document import CplDocument
    from metadata_templates.custom import format_timestamp
    from metadata_templates.naming import CPL_TARGET_PATH, WITHDRAWALS_TARGET_PATH

    factory, holders, client = library
    _hand_targets_to_holders(factory, holders)
    repo = factory.repo
    victim = next(iter(repo.role("mfr-121D").signed.targets))
    factory.entries.append(make_entry("CPL-0009", fw="00000009"))
    doc = CplDocument.of(factory.entries, "1" * 64, format_timestamp(factory.now))
    head = repo.head
    now = factory.tick()
    with repo.locked():
        edits = [
            capture_targets_change(repo, lambda: import_cpl_op(repo, doc, now=now)),
            capture_targets_change(
                repo, lambda: withdraw_op(repo, victim, "bricks hw 1112", now=now)
            ),
        ]
    assert repo.head == head  # captured, not committed

    def apply_edits(targets: Targets) -> None:
        for edit in edits:
            edit(targets)

    proposal = propose_targets(
        repo.root(),
        repo.targets(),
        now=now,
        expires_in=repo.config.policy.expiry("targets"),
        change=apply_edits,
    )
    changed = [line.split(":")[0] for line in summary(proposal)[1:] if line.startswith("target ")]
    assert changed == [f"target {CPL_TARGET_PATH}", f"target {WITHDRAWALS_TARGET_PATH}"]
    with repo.locked():
        finish_ceremony(repo, proposal, holders.sign(proposal, "tess", "tom"), now=factory.tick())
    cpl = repo.cpl()
    assert cpl is not None and "CPL-0009" in cpl.by_id()
    assert [w.target for w in repo.withdrawals().withdrawals] == [victim]
    factory.publish()
    assert _verified(factory, client) == 3
    library_after, _ = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert library_after is not None
    assert [w.target for w in library_after.withdrawals] == [victim]
    # The ceremony records and logs them as the routine commands do: an auditor finds both.
    from client.log.audit import audit
    from tests.tlog.test_log_end_to_end import Host

    report = audit(Host(factory.out), vkey=None)
    assert report.problems == []
    assert report.events["cpl-import"] == 2 and report.events["withdraw"] == 1
    logged = [json.loads(line) for line in (repo.path / "events.jsonl").read_bytes().splitlines()]
    assert {e["event"] for e in logged if e.get("via") == "ceremony-targets"} == {
        "cpl-import",
        "withdraw",
    }


def test_capturing_an_operation_that_changes_nothing_in_targets_is_refused(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    factory, _, _ = library
    with pytest.raises(ConfigurationError, match="changed nothing in targets"):
        capture_targets_change(factory.repo, lambda: None)
    with pytest.raises(RejectedInputError, match="TARGET: found"):
        capture_targets_change(
            factory.repo, lambda: withdraw_op(factory.repo, "121D/nope", "x", now=factory.now)
        )


def test_a_proposal_built_on_a_forged_previous_state_is_refused_against_the_published_root(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    """An attacker hands a holder a proposal whose "current root" already lists the attacker's key,
    so the summary shows only an expiry change; checking against the published root exposes it."""
    from repo_tool.ceremony.sign import check_against

    factory, _, _ = library
    published = factory.repo.root()
    forged_current = Metadata[Root].from_bytes(published.to_bytes())
    attacker = CryptoSigner.generate_ed25519()
    forged_current.signed.add_key(attacker.public_key, "root")
    proposal = propose_root(
        forged_current,
        KeyChange(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    assert not any("add key" in line for line in summary(proposal))  # the lie looks harmless
    with pytest.raises(RejectedInputError, match=r"--against published: found root v2, but"):
        check_against(proposal, published, source="published")
    honest = propose_root(
        published,
        KeyChange(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("root"),
    )
    check_against(honest, published, source="published")  # no error
    with pytest.raises(RejectedInputError, match="expected root"):
        check_against(honest, factory.repo.targets(), source="t")


def test_status_says_an_expiring_offline_role_is_renewed_by_a_ceremony(
    library: tuple[LibraryFactory, Holders, Path],
) -> None:
    import subprocess
    import sys

    factory, holders, _ = library
    _hand_targets_to_holders(factory, holders)
    short = propose_targets(
        factory.repo.root(),
        factory.repo.targets(),
        now=factory.tick(),
        expires_in=factory.repo.config.policy.expiry("targets") / 9,  # 10 days: inside the warning
    )
    with factory.repo.locked():
        finish_ceremony(factory.repo, short, holders.sign(short, "tara", "tom"), now=factory.tick())
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfl-repo")),
            "--repo",
            str(factory.repo.path),
            "status",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "renew it with a ceremony: cfl-repo ceremony start targets" in done.stderr
