"""Enrolment bundles (issue 13): a manufacturer's signed empty role version 1, checked as strictly as a
deposit, staged with its delegation; the first deposit is then version 2 and needs no targets key.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from key_drills import offline_targets_routine
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, updater_for
from metadata_templates import naming
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.gateway.enrolment import build_enrolment, check_enrolment
from repo_tool.ops.ceremony import finish_ceremony
from repo_tool.ops.enrol import enrol
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

DAY = timedelta(days=1)


@pytest.fixture
def registered(tmp_path: Path) -> tuple[LibraryFactory, list[CryptoSigner]]:
    """A new library (cfl-provider from init) with a CPL and 121D registered 2 of 2, not enrolled."""
    factory = LibraryFactory(tmp_path, provider=True)
    image = make_image("121D", 2)
    factory.import_cpl([make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(image))])
    signers = factory.add_manufacturer("121D", threshold=2, signers=2)
    factory.publish()
    return factory, signers


def _role(
    *, version: int = 1, expires_in: timedelta = 365 * DAY, now: object = None
) -> Metadata[Targets]:
    from factory import T0

    role = Targets(version=version, expires=T0 + expires_in)
    return Metadata(role)


def _signed(md: Metadata[Targets], *signers: CryptoSigner) -> bytes:
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def test_direct_enrolment_then_the_first_deposit_is_version_two_without_a_targets_change(
    registered: tuple[LibraryFactory, list[CryptoSigner]], tmp_path: Path
) -> None:
    factory, signers = registered
    repo = factory.repo
    bundle = build_enrolment(signers, now=factory.tick(), expires_in=365 * DAY)
    with repo.locked():
        outcome = enrol(repo, "121D", bundle, now=factory.tick(), ceremony=False)
    assert outcome.targets_version == repo.head.targets_version and repo.head.roles["mfr-121D"] == 1
    assert repo.metadata_bytes("mfr-121D", 1) == bundle  # exactly the bytes the maker signed
    assert repo.head.last_events[0]["event"] == "manufacturer-enrol"
    with repo.locked():  # a re-run with the same bundle is done already
        assert enrol(repo, "121D", bundle, now=factory.tick(), ceremony=False).already
    factory.publish()
    targets_version = repo.head.targets_version
    factory.deposit(make_image("121D", 2), ["CPL-0002"], signers=signers)
    assert repo.head.roles["mfr-121D"] == 2
    assert repo.head.targets_version == targets_version
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None and len(library.images) == 1
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    assert updater.get_targetinfo(library.images[0].target_path) is not None


def _bad_bundles(signers: list[CryptoSigner]) -> dict[str, tuple[bytes, str]]:
    stranger = CryptoSigner.generate_ed25519()
    with_target = _role()
    with_target.signed.targets["121D/x.ota"] = TargetFile(1, {"sha256": "0" * 64}, "121D/x.ota")
    delegating = _role()
    delegating.signed.delegations = Delegations(
        keys={}, roles={"x": DelegatedRole("x", [], 1, True, ["121D/*"])}
    )
    tampered = json.loads(_signed(_role(), *signers))
    tampered["signed"]["expires"] = "2027-12-01T00:00:00Z"
    root_md = json.loads(_signed(_role(), *signers))
    root_md["signed"]["_type"] = "root"
    return {
        "one-of-two": (_signed(_role(), signers[0]), "found 1 valid by registered keys"),
        "stranger-key": (
            _signed(_role(), signers[0], stranger),
            "(and 1 by unregistered keys",
        ),
        "bad-signature": (json.dumps(tampered).encode(), "invalid signature(s) by registered"),
        "version-2": (_signed(_role(version=2), *signers), "version: found 2, expected 1"),
        "has-a-target": (_signed(with_target, *signers), "targets: found 1"),
        "delegates": (_signed(delegating, *signers), "delegations: found some"),
        "expires-too-soon": (_signed(_role(expires_in=10 * DAY), *signers), "expected at least"),
        "expires-too-far": (_signed(_role(expires_in=3000 * DAY), *signers), "expected at most"),
        "not-json": (b"{", "found no valid TUF metadata"),
        "root-not-targets": (json.dumps(root_md).encode(), "found no valid TUF metadata"),
        "oversized": (b" " * 2_000_001, "size: found 2000001 bytes"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "one-of-two",
        "stranger-key",
        "bad-signature",
        "version-2",
        "has-a-target",
        "delegates",
        "expires-too-soon",
        "expires-too-far",
        "not-json",
        "root-not-targets",
        "oversized",
    ],
)
def test_the_provider_refuses_a_bad_enrolment_and_changes_nothing(
    registered: tuple[LibraryFactory, list[CryptoSigner]], case: str
) -> None:
    factory, signers = registered
    repo = factory.repo
    data, expected = _bad_bundles(signers)[case]
    head = repo.head
    with repo.locked(), pytest.raises(RejectedInputError) as caught:
        enrol(repo, "121D", data, now=factory.now, ceremony=False)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert repo.head == head


def test_enrolment_of_an_unregistered_or_enrolled_manufacturer_is_refused(
    registered: tuple[LibraryFactory, list[CryptoSigner]],
) -> None:
    factory, signers = registered
    repo = factory.repo
    bundle = build_enrolment(signers, now=factory.now, expires_in=365 * DAY)
    with repo.locked(), pytest.raises(RejectedInputError, match="found no registration"):
        enrol(repo, "3F01", bundle, now=factory.now, ceremony=False)
    with repo.locked():
        enrol(repo, "121D", bundle, now=factory.now, ceremony=False)
    other = build_enrolment(signers, now=factory.tick(), expires_in=300 * DAY)
    with repo.locked(), pytest.raises(RejectedInputError, match="delegated already"):
        enrol(repo, "121D", other, now=factory.now, ceremony=False)


def test_a_ceremony_refuses_an_enrolment_swapped_after_the_holders_signed(
    tmp_path: Path,
) -> None:
    from key_drills import hand_targets_to_holders, root_to_holders

    factory = LibraryFactory(tmp_path, provider=True)
    factory.publish()
    holders = root_to_holders(factory)
    hand_targets_to_holders(factory, holders)
    repo = factory.repo
    signer = factory.add_manufacturer("121D")[0]
    bundle = build_enrolment([signer], now=factory.tick(), expires_in=365 * DAY)
    with repo.locked(), pytest.raises(ConfigurationError, match="held offline"):
        enrol(repo, "121D", bundle, now=factory.now, ceremony=False)
    with repo.locked():
        outcome = enrol(repo, "121D", bundle, now=factory.now, ceremony=True)
    from repo_tool.ceremony.sign import summary

    lines = summary(outcome.proposal)
    assert any(line.startswith("delegation mfr-121D: added") for line in lines)
    assert any(line.startswith("enrolment mfr-121D: role version 1") for line in lines)
    signatures = holders.sign(outcome.proposal, "tara", "tom")
    from dataclasses import replace

    forged = _signed(_role(), CryptoSigner.generate_ed25519())
    swapped = replace(outcome.proposal, enrolments=(("mfr-121D", forged.decode()),))
    head = repo.head
    with repo.locked(), pytest.raises(RejectedInputError, match="delegation does not verify"):
        finish_ceremony(repo, swapped, signatures, now=factory.tick())
    assert repo.head == head
    with repo.locked():
        finish_ceremony(repo, outcome.proposal, signatures, now=factory.tick())
    assert repo.head.roles["mfr-121D"] == 1


def test_check_enrolment_is_pure_and_returns_the_role(
    registered: tuple[LibraryFactory, list[CryptoSigner]],
) -> None:
    factory, signers = registered
    record = factory.repo.head.manufacturers["121D"].as_registered()
    data = build_enrolment(signers, now=factory.now, expires_in=365 * DAY)
    md = check_enrolment(
        data, record, now=factory.now, validity=(30 * DAY, 730 * DAY), size_cap=len(data)
    )
    assert md.signed.version == 1 and md.signed.targets == {}
    with pytest.raises(RejectedInputError, match="size"):
        check_enrolment(
            data, record, now=factory.now, validity=(30 * DAY, 730 * DAY), size_cap=len(data) - 1
        )


def test_with_targets_offline_from_the_start_routine_work_needs_only_online_keys(
    tmp_path: Path,
) -> None:
    factory = offline_targets_routine(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert len(library.images) == 2 and len(library.withdrawals) == 1
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    for image in library.images:
        info = updater.get_targetinfo(image.target_path)
        assert info is not None and info.hashes["sha256"] == image.sha256
    for path in (naming.CPL_TARGET_PATH, naming.SUPPLIERS_TARGET_PATH, "cfl/suspensions.json"):
        assert updater.get_targetinfo(path) is not None, path
    # `cfl log verify`: every image, the CPL and the withdrawal have their event; the registry
    # and suspensions cfl-provider signs are not taken for images.
    from client.log.audit import audit

    report = audit(lambda relative: (factory.out / relative).read_bytes(), vkey=None)
    assert report.problems == []
    assert (report.images_checked, report.withdrawals_checked) == (2, 1)


def test_a_first_deposit_without_enrolment_is_rejected_alone_when_targets_is_offline(
    tmp_path: Path,
) -> None:
    from key_drills import hand_targets_to_holders, root_to_holders

    factory = LibraryFactory(tmp_path, provider=True)
    factory.publish()
    hand_targets_to_holders(factory, root_to_holders(factory))
    image = make_image("121D", 2)
    factory.import_cpl([make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(image))])
    factory.add_manufacturer("121D")
    factory.publish()
    head = factory.repo.head
    # A rejection of this one bundle, not an error that halts the inbox for every manufacturer.
    result = factory.ingest(factory.submit(image, ["CPL-0002"]))
    assert result.status == "rejected" and result.reasons == ["manufacturer-not-enrolled"]
    assert "expected 121D enrolled" in result.messages[0]
    assert "manufacturer enrol 121D" in result.messages[0]
    assert factory.repo.head.roles == head.roles
    assert factory.repo.head.targets_version == head.targets_version
    assert factory.repo.head.index_sha256 == head.index_sha256
