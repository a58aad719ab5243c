"""The online cfl-provider delegation (issue 13): routine provider documents are signed online, the
offline targets key is needed only in ceremonies, and clients (python-tuf ngclient) and our own full
check accept the tree.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from key_drills import hand_targets_to_holders, offline_root_library
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, TargetFile, Targets

from factory import LibraryFactory, make_image, standard_library, updater_for
from metadata_templates import naming
from metadata_templates.errors import ConfigurationError
from repo_tool.ops.ceremony import capture_targets_change, finish_ceremony
from repo_tool.ops.manufacturer_keys import suspend
from repo_tool.ops.provider import adopt, rotate_key
from repo_tool.ops.refresh import refresh
from repo_tool.ops.withdraw import withdraw
from repo_tool.signing.keys import SignerRef, write_keypair
from repo_tool.state.repository import Repository
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

PROVIDER = naming.PROVIDER_ROLE


def _verified(factory: LibraryFactory) -> None:
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert library.cpl is not None
    assert {i.target_path.split("/")[0] for i in library.images} <= {"121D", "3F01"}


def _provider_key(factory: LibraryFactory, name: str = "provider") -> SignerRef:
    key, uri = write_keypair(factory.repo.path / "keys" / f"{name}.pem")
    return SignerRef(key, uri)


def test_a_new_repository_signs_provider_documents_with_the_online_role(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path, provider=True)
    repo = factory.repo
    targets = repo.targets().signed
    assert not any(naming.is_provider_target(p) for p in targets.targets)
    role = targets.delegations.roles[PROVIDER]  # type: ignore[union-attr]
    assert role.terminating and role.paths == list(naming.PROVIDER_PATTERNS)
    assert naming.CPL_TARGET_PATH in repo.role(PROVIDER).signed.targets
    before = repo.head.targets_version
    with repo.locked():
        withdraw(repo, _images(repo)[0], "bricks", now=factory.tick())
    assert repo.head.targets_version == before  # only cfl-provider was re-signed
    factory.publish()
    _verified(factory)
    updater, fetcher = updater_for(factory, tmp_path / "client")
    updater.refresh()
    info = updater.get_targetinfo(naming.WITHDRAWALS_TARGET_PATH)
    assert info is not None
    assert any(f.endswith(f".{PROVIDER}.json") for f in fetcher.fetched)


def _images(repo: Repository) -> list[str]:
    return sorted(
        p for n in repo.head.roles if n.startswith("mfr-") for p in repo.role(n).signed.targets
    )


def test_adoption_moves_every_provider_document_byte_for_byte_in_one_commit(
    tmp_path: Path,
) -> None:
    factory, _ = standard_library(tmp_path)
    repo = factory.repo
    old_targets = repo.targets().signed
    documents = {p: t.to_dict() for p, t in old_targets.targets.items() if p.startswith("cfl/")}
    assert naming.CPL_TARGET_PATH in documents
    key = _provider_key(factory)
    seq = repo.head.event_seq
    with repo.locked():
        change = adopt(repo, [key], 1, now=factory.tick(), ceremony=False)
    assert repo.head.event_seq == seq + 1
    assert repo.head.last_events[0]["event"] == "provider-adopt"
    assert repo.head.last_events[0]["moved"] == sorted(documents)
    assert change.provider_version == 1 and repo.head.roles[PROVIDER] == 1
    moved = {p: t.to_dict() for p, t in repo.role(PROVIDER).signed.targets.items()}
    assert moved == documents
    assert not any(p.startswith("cfl/") for p in repo.targets().signed.targets)
    assert [r.keyid for r in repo.config.signers[PROVIDER]] == [key.keyid]
    # A re-run (a retried script, a run after a crash) changes nothing.
    with repo.locked():
        again = adopt(
            repo, [_provider_key(factory, "other")], 1, now=factory.tick(), ceremony=False
        )
    assert again.already and repo.head.event_seq == seq + 1
    factory.publish()
    _verified(factory)
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    info = updater.get_targetinfo(naming.CPL_TARGET_PATH)
    assert info is not None and info.to_dict() == documents[naming.CPL_TARGET_PATH]


def test_with_the_targets_key_offline_routine_work_needs_only_online_keys(
    tmp_path: Path,
) -> None:
    factory, holders = offline_root_library(tmp_path)
    hand_targets_to_holders(factory, holders)
    repo = factory.repo
    key = _provider_key(factory)
    with repo.locked():
        with pytest.raises(ConfigurationError, match="held offline"):
            adopt(repo, [key], 1, now=factory.tick(), ceremony=False)
        change = adopt(repo, [key], 1, now=factory.tick(), ceremony=True)
    assert change.proposal is not None and PROVIDER not in repo.head.roles
    with repo.locked():
        finish_ceremony(
            repo, change.proposal, holders.sign(change.proposal, "tara", "tess"), now=factory.tick()
        )
    assert repo.head.roles[PROVIDER] == 1
    assert repo.config.signers[PROVIDER][0].uri == key.uri  # followed from the proposal
    factory.publish()
    targets_version = repo.head.targets_version
    # Routine work: a new CPL, a withdrawal, a suspension; the targets key is never touched.
    factory.import_cpl()
    with repo.locked():
        withdraw(repo, _images(repo)[0], "bricks 1112", now=factory.tick())
        assert suspend(repo, "3F01", "audit", now=factory.tick())
    # A targets ceremony no longer carries cfl/* changes once cfl-provider signs them.
    with repo.locked(), pytest.raises(ConfigurationError, match="cfl-provider"):
        capture_targets_change(repo, lambda: None)
    # Past the cfl-provider's own 30 days: refresh re-signs it with snapshot and timestamp.
    factory.now += timedelta(days=20)
    with repo.locked():
        resigned = refresh(repo, now=factory.tick())
    assert PROVIDER in resigned and "targets" not in resigned
    assert repo.head.targets_version == targets_version
    factory.publish()
    _verified(factory)
    doc = json.loads(repo.provider_document("cfl/suspensions.json") or b"{}")
    assert "3F01" in json.dumps(doc)


def test_a_stolen_provider_key_is_rotated_through_targets_and_clients_follow(
    tmp_path: Path,
) -> None:
    factory, holders = offline_root_library(tmp_path, provider=True)
    hand_targets_to_holders(factory, holders)
    repo = factory.repo
    updater, _fetcher = updater_for(factory, tmp_path / "client")
    updater.refresh()
    assert updater.get_targetinfo(naming.CPL_TARGET_PATH) is not None
    stolen = repo.config.signers[PROVIDER][0]
    stolen_md = Metadata[Targets].from_bytes(
        repo.metadata_bytes(PROVIDER, repo.head.roles[PROVIDER])
    )
    root_version = repo.head.root_version
    new = _provider_key(factory, "provider-2")
    with repo.locked():
        change = rotate_key(
            repo, [new], [stolen.keyid[:8]], None, now=factory.tick(), ceremony=True
        )
        finish_ceremony(
            repo, change.proposal, holders.sign(change.proposal, "tom", "tess"), now=factory.tick()
        )
    assert repo.head.root_version == root_version  # no root change
    assert [r.keyid for r in repo.config.signers[PROVIDER]] == [new.keyid]
    factory.publish()
    _verified(factory)
    fresh, _ = updater_for(factory, tmp_path / "client")
    fresh.refresh()
    assert fresh.get_targetinfo(naming.CPL_TARGET_PATH) is not None
    # Attack: the thief signs a newer cfl-provider with the stolen key; the new delegation refuses it.
    forged = stolen_md.signed
    forged.version = repo.head.roles[PROVIDER] + 5
    md = Metadata(forged)
    md.sign(repo.signer(stolen))
    with pytest.raises(UnsignedMetadataError):
        repo.targets().signed.verify_delegate(PROVIDER, md.signed_bytes, md.signatures)


def test_verify_refuses_a_provider_role_that_strays_outside_cfl(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path, provider=True)
    repo = factory.repo
    image = make_image("121D", 9)
    sha = repo.blobs.put(image)

    path = naming.image_target_path("121D", "ESME", "0001", "00000009", sha)
    with repo.locked():
        head = repo.stage_provider_change(
            lambda t: t.targets.__setitem__(path, TargetFile(len(image), {"sha256": sha}, path)),
            factory.tick(),
        )
        repo.commit(head, event={"event": "attack"})
    factory.publish()
    _library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert any(f"{PROVIDER}: target {path!r} is outside its delegation" in p for p in problems)
    # ngclient never resolves an image through cfl-provider: the delegation stops at cfl/.
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    assert updater.get_targetinfo(path) is None


def test_status_counts_images_not_provider_documents(tmp_path: Path) -> None:
    from repo_tool.ops.status import status_report

    factory, _ = standard_library(tmp_path, provider=True)
    doc = status_report(factory.repo, now=factory.now)
    assert doc["images"] == 3
    # 30 days by design and re-signed by refresh: not an expiry warning, as snapshot is not.
    assert PROVIDER not in doc["expiring_soon"]
    assert doc["keys"][PROVIDER]["keys"][0]["location"] == "file2"


def test_the_client_reads_provider_documents_through_the_delegation_and_lists_only_images(
    tmp_path: Path,
) -> None:
    from client.trust.session import Session, SessionPaths
    from factory import FolderFetcher

    factory, _ = standard_library(tmp_path, provider=True)
    fetcher = FolderFetcher(factory.out)
    paths = SessionPaths(tmp_path / "home" / "metadata", tmp_path / "home" / "cache")
    session = Session(paths, fetcher.base_url, fetcher, bootstrap_root=factory.root_bytes)
    assert len(session.cpl().entries) == 4
    assert session.withdrawals().withdrawals == ()
    assert any(f.endswith(f".{PROVIDER}.json") for f in fetcher.fetched)
    # cfl-provider is the provider's role, not a manufacturer's: never listed, never an image.
    assert session.delegated_manufacturers() == ["121D", "3F01"]
    targets = session.verified_targets()
    assert len(targets) == 3 and not any(t.path.startswith("cfl/") for t in targets)


def test_the_site_lists_cfl_provider_among_the_signed_roles_and_no_document_as_an_image(
    tmp_path: Path,
) -> None:
    from repo_tool.site.build import build_site

    factory, _ = standard_library(tmp_path, provider=True)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert PROVIDER in {r.name for r in library.roles}
    assert PROVIDER not in library.role_metadata and len(library.images) == 3
    build_site(library, tmp_path / "site", generated=factory.now)
    trust = (tmp_path / "site" / "trust.html").read_text()
    assert f"<code>{PROVIDER}</code>" in trust


def test_release_note_grants_three_segments_down_are_signed_by_cfl_provider_and_resolve(
    tmp_path: Path,
) -> None:
    from notes_factory import notes_library, publish_registry

    from metadata_templates.notes import grant_target_path
    from repo_tool.ops.notes_grant import grant_notes

    lib = notes_library(tmp_path, provider=True)
    esme = lib.factory.deposit(lib.images["esme"], ["CPL-0002"], release_notes=b"notes").target
    assert esme is not None
    late = lib.orgs["late"]
    publish_registry(
        lib.factory,
        [lib.orgs["is"], lib.orgs["gs"], lib.orgs["revoked"], late],
        revoked=("1111222233334444",),
    )
    repo = lib.factory.repo
    targets_version = repo.head.targets_version
    with repo.locked():
        report = grant_notes(repo, late.entity_id, lib.custodian_key, now=lib.factory.tick())
    assert report.granted == (esme,) and repo.head.targets_version == targets_version
    lib.factory.publish()
    grant = grant_target_path(late.entity_id, esme)
    assert grant in repo.role(PROVIDER).signed.targets
    _verified(lib.factory)
    session = lib.session(tmp_path / "client")
    assert session.provider_document(grant) == repo.provider_document(grant)


def test_verify_refuses_a_provider_role_that_delegates_further(tmp_path: Path) -> None:
    from tuf.api.metadata import DelegatedRole, Delegations

    factory, _ = standard_library(tmp_path, provider=True)
    repo = factory.repo

    def sub_delegate(role: Targets) -> None:
        role.delegations = Delegations(
            keys={}, roles={"x": DelegatedRole("x", [], 1, True, ["cfl/*"])}
        )

    with repo.locked():
        repo.commit(repo.stage_provider_change(sub_delegate, factory.tick()), event={"event": "x"})
    factory.publish()
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [f"{PROVIDER}: delegates further, expected no delegations"]


def test_refresh_keeps_snapshot_and_timestamp_fresh_when_cfl_provider_keys_are_offline(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from repo_tool.signing.keys import OFFLINE_URI

    factory, _ = standard_library(tmp_path, provider=True)
    repo = factory.repo
    config = repo.config
    offline = tuple(SignerRef(r.public_key, OFFLINE_URI) for r in config.signers[PROVIDER])
    repo.config = replace(config, signers={**config.signers, PROVIDER: offline})
    version = repo.head.roles[PROVIDER]
    factory.now += timedelta(days=20)
    with repo.locked():
        resigned = refresh(repo, now=factory.tick())
    assert resigned == ["snapshot", "timestamp"] and repo.head.roles[PROVIDER] == version


def test_a_suspension_pending_while_targets_was_offline_is_published_by_the_adoption(
    tmp_path: Path,
) -> None:
    from repo_tool.ops.manufacturer_keys import pending_targets_change

    factory, holders = offline_root_library(tmp_path)
    hand_targets_to_holders(factory, holders)
    repo = factory.repo
    with repo.locked():
        assert not suspend(repo, "3F01", "audit", now=factory.tick())  # not published: offline
        change = adopt(repo, [_provider_key(factory)], 1, now=factory.tick(), ceremony=True)
        finish_ceremony(
            repo, change.proposal, holders.sign(change.proposal, "tom", "tess"), now=factory.tick()
        )
    assert "3F01" in (repo.provider_document("cfl/suspensions.json") or b"").decode()
    # From now on a targets ceremony never carries cfl/* documents: cfl-provider signs them.
    proposed = repo.targets().signed
    pending_targets_change(repo)(proposed)
    assert not any(naming.is_provider_target(p) for p in proposed.targets)
    factory.publish()
    _verified(factory)
