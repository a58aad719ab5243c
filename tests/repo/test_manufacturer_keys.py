"""A manufacturer loses a key and keeps depositing: rotation, retirement, thresholds, suspension.

The two-party procedure: the provider changes the delegation (`rotate-key`), the manufacturer re-signs
its role with the new key (`submit --renew`), the provider drops the retired key (`retire-keys`).
Clients verify every lodged image at every step (python-tuf ngclient and our own full check).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library, updater_for
from metadata_templates.errors import CflError, ConfigurationError, RejectedInputError
from repo_tool.ops.manufacturer_keys import (
    SUSPENSIONS_TARGET_PATH,
    resume,
    retire_keys,
    rotate_key,
    rotated_record,
    suspend,
)
from repo_tool.submit.deposit import build_renewal
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

MFR = "121D"


def _clients_verify(factory: LibraryFactory, client: Path, images: int) -> None:
    """ngclient, from root v1, finds every lodged image of both manufacturers; our own full check
    agrees."""
    updater, _ = updater_for(factory, client)
    updater.refresh()
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert len(library.images) == images
    for image in library.images:
        assert updater.get_targetinfo(image.target_path) is not None, image.target_path


def _renew(factory: LibraryFactory, signers: list[CryptoSigner]) -> Path:
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    bundle = build_renewal(manufacturer_id=MFR, signers=signers, library=library, now=factory.now)
    return factory.write(bundle.bundle, "renewal")


def _published_delegation_keys(factory: LibraryFactory) -> set[str]:
    targets = Metadata[Targets].from_bytes(
        (
            factory.out / "metadata" / f"{factory.repo.head.targets_version}.targets.json"
        ).read_bytes()
    )
    assert targets.signed.delegations is not None and targets.signed.delegations.roles is not None
    return set(targets.signed.delegations.roles[f"mfr-{MFR}"].keyids)


def test_compromised_key_rotation_drill(tmp_path: Path) -> None:
    """Suspend, rotate, re-sign, retire, resume; lodged images stay verifiable throughout."""
    factory, _ = standard_library(tmp_path)
    client = tmp_path / "client"
    _clients_verify(factory, client, 3)
    old = factory.mfr_signers[MFR]
    new = CryptoSigner.generate_ecdsa()

    with factory.repo.locked():
        suspend(factory.repo, MFR, "signing key reported stolen", now=factory.tick())
        rotate_key(
            factory.repo,
            MFR,
            add=[new.public_key],
            remove=[old.public_key.keyid[:8]],
            threshold=None,
            now=factory.tick(),
            ceremony=False,
        )
    factory.publish()
    # The retired key stays delegated until the role is re-signed: old images still verify.
    assert _published_delegation_keys(factory) == {old.public_key.keyid, new.public_key.keyid}
    _clients_verify(factory, client, 3)

    # Retiring before the manufacturer re-signed would strand its images: refused.
    with factory.repo.locked(), pytest.raises(RejectedInputError, match="found 0 signature"):
        retire_keys(factory.repo, MFR, now=factory.tick(), ceremony=False)

    # A renewal signed by the stolen key is refused; by the new key, accepted despite suspension.
    stolen = factory.ingest(_renew(factory, [old]))
    assert stolen.status == "rejected" and stolen.reasons == ["threshold-not-met"], stolen.messages
    renewed = factory.ingest(_renew(factory, [new]))
    assert renewed.status == "accepted", renewed.messages
    with factory.repo.locked():
        retire_keys(factory.repo, MFR, now=factory.tick(), ceremony=False)
        resume(factory.repo, MFR, "keys rotated", now=factory.tick())
    factory.publish()
    assert _published_delegation_keys(factory) == {new.public_key.keyid}
    _clients_verify(factory, client, 3)

    # After rotation a deposit signed with the retired key is rejected; the new key deposits.
    image = make_image(MFR, 4)
    factory.entries.append(make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(image)))
    factory.import_cpl()
    factory.publish()
    deposit = factory.ingest(factory.submit(image, ["CPL-0004"], signers=[new]))
    assert deposit.status == "accepted", deposit.messages
    factory.publish()
    _clients_verify(factory, client, 4)


def test_deposit_signed_with_a_retired_key_is_rejected(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    old = factory.mfr_signers[MFR]
    new = CryptoSigner.generate_ed25519()
    with factory.repo.locked():
        rotate_key(
            factory.repo,
            MFR,
            add=[new.public_key],
            remove=[old.public_key.keyid],
            threshold=None,
            now=factory.tick(),
            ceremony=False,
        )
    factory.publish()
    image = make_image(MFR, 4)
    factory.entries.append(make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(image)))
    factory.import_cpl()
    factory.publish()
    result = factory.ingest(factory.submit(image, ["CPL-0004"], signers=[old]))
    assert result.status == "rejected"
    assert result.reasons == ["threshold-not-met"], result.messages
    assert "expected at least 1" in result.messages[0]


def test_two_of_three_manufacturer_deposits_with_two_keys_not_one(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    image = make_image("2B2B", 1)
    factory.import_cpl([make_entry("CPL-0201", mfr="2B2B", fw="00000001", image_sha=mi_sha(image))])
    signers = factory.add_manufacturer("2B2B", threshold=2, signers=3)
    factory.publish()
    one = factory.ingest(factory.submit(image, ["CPL-0201"], mfr="2B2B", signers=signers[:1]))
    assert one.reasons == ["threshold-not-met"], one.messages
    two = factory.ingest(factory.submit(image, ["CPL-0201"], mfr="2B2B", signers=signers[1:]))
    assert two.status == "accepted", two.messages
    factory.publish()
    library = verified_library(folder_reader(factory.out), factory.root_bytes, now=factory.tick())
    assert [i.target_path for i in library.images] == [two.target]


def test_suspension_is_published_and_hides_nothing(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    with factory.repo.locked():
        published = suspend(factory.repo, MFR, "under investigation", now=factory.tick())
    assert published
    factory.publish()
    targets = factory.repo.targets().signed
    assert SUSPENSIONS_TARGET_PATH in targets.targets
    doc = factory.repo.blobs.get(targets.targets[SUSPENSIONS_TARGET_PATH].hashes["sha256"])
    assert b'"manufacturer_id": "121D"' in doc and b"under investigation" in doc
    _clients_verify(factory, tmp_path / "client", 3)
    events = (factory.repo.path / "events.jsonl").read_text()
    assert '"event":"manufacturer-suspend"' in events


@pytest.mark.parametrize(
    ("add", "remove", "threshold", "message", "error"),
    [
        (0, ("ffff",), None, r"--remove: found 'ffff' matching 0 key\(s\)", RejectedInputError),
        # Nothing asked, or a number out of its range: usage errors (exit 2).
        (0, (), None, "found nothing to change", ConfigurationError),
        (1, (), 3, r"--threshold: found 3 with 2 key\(s\)", ConfigurationError),
        (0, ("*",), None, "matching 0", RejectedInputError),
    ],
    ids=["unknown-key", "nothing", "threshold-above-keys", "wildcard-is-not-a-prefix"],
)
def test_bad_rotations_are_refused(
    tmp_path: Path,
    add: int,
    remove: tuple[str, ...],
    threshold: int | None,
    message: str,
    error: type[CflError],
) -> None:
    factory, _ = standard_library(tmp_path)
    record = factory.repo.head.manufacturers[MFR]
    keys = [CryptoSigner.generate_ed25519().public_key for _ in range(add)]
    with pytest.raises(error, match=message):
        rotated_record(record, add=keys, remove=remove, threshold=threshold, delegated=True)


def test_removing_the_last_key_is_refused(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    record = factory.repo.head.manufacturers[MFR]
    with pytest.raises(ConfigurationError, match=r"0 key\(s\) left"):
        rotated_record(record, add=[], remove=list(record.keys), threshold=None, delegated=True)
