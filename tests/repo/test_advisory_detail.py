"""An advisory's confidential detail before disclosure (issue 23): encrypted on the manufacturer's
machine in the release-notes envelope to the suppliers entitled to the affected models and the
custodian, admitted by the gateway only as that envelope (one named test per refusal code, the
repository unchanged each time), disclosed later by the manufacturer as exactly the plaintext whose
SHA-256 the signed advisory recorded."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from advisory_factory import DETAIL, authored, detail_library, image_target, submit, submit_sealed
from notes_factory import make_org, publish_registry
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from client.log.audit import audit
from factory import LibraryFactory
from metadata_templates import naming
from metadata_templates.advisory import (
    Advisory,
    advisory_target_path,
    detail_target_path,
    parse_authored,
    with_revision,
)
from metadata_templates.errors import RejectedInputError
from metadata_templates.notes import (
    CUSTODIAN_KID,
    NotRecipientError,
    audience_for,
    decrypt_notes,
    encrypt_notes,
    parse_envelope,
    private_key_from_pem,
)
from repo_tool.intake.bundle import KIND_ADVISORY, Bundle, Declaration
from repo_tool.state.repository import Repository
from repo_tool.submit.advisory_disclose import build_disclosure
from repo_tool.submit.bins import build_split
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

ID = "CFL-121D-2026-0001"
R1 = advisory_target_path(ID, 1)


@dataclasses.dataclass
class Lib:
    factory: LibraryFactory
    orgs: dict[str, Any]
    custodian: Any

    @property
    def custodian_key(self) -> Any:
        from cryptography.hazmat.primitives import serialization

        pem = self.custodian.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return private_key_from_pem(pem, None, "custodian")

    def library(self) -> PublishedLibrary:
        f = self.factory
        return verified_library(folder_reader(f.out), f.root_bytes, now=f.now, check_blobs=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Lib:
    return Lib(*detail_library(tmp_path_factory.mktemp("advisory-detail")))


@pytest.fixture
def lib(built: Lib, tmp_path: Path) -> Lib:
    """A private copy of the module's library."""
    shutil.copytree(built.factory.tmp / "repo", tmp_path / "repo")
    clone = copy.copy(built.factory)
    clone.tmp = tmp_path
    clone.repo = Repository.open(tmp_path / "repo")
    return Lib(clone, built.orgs, built.custodian)


def head(lib: Lib) -> bytes:
    return (lib.factory.repo.path / "state" / "head.json").read_bytes()


def lodge(lib: Lib, bundle: Bundle) -> None:
    result = lib.factory.ingest(bundle, name="advisory")
    assert result.status == "accepted", result.messages
    lib.factory.publish()


def in_days(lib: Lib, days: int) -> str:
    return (lib.factory.now + timedelta(days=days)).date().isoformat()


def sealed(lib: Lib, revision: int = 1, **fields: Any) -> Advisory:
    """The signed form of a revision carrying encrypted detail (``fields`` override)."""
    base = with_revision(
        parse_authored(
            json.dumps(authored()).encode(),
            manufacturer_id="121D",
            today=lib.factory.now.date().isoformat(),
        ),
        revision,
    )
    values: dict[str, Any] = {
        "detail_target": detail_target_path(ID, revision),
        "detail_sha256": hashlib.sha256(DETAIL).hexdigest(),
        "disclosure": in_days(lib, 30),
    }
    return dataclasses.replace(base, **(values | fields))


def envelope(lib: Lib, target: str = R1, plaintext: bytes = DETAIL, drop: str = "") -> bytes:
    """The detail encrypted to the audience the published registry gives for ESME (less ``drop``,
    or plus Gasco with ``drop="+gs"``)."""
    library = lib.library()
    assert library.suppliers is not None and library.notes_custodian is not None
    types = ("ESME", "GSME") if drop == "+gs" else ("ESME",)
    recipients = [
        r
        for r in audience_for(library.suppliers, library.notes_custodian, types)
        if r.recipient.kid != drop
    ]
    return encrypt_notes(plaintext, target, recipients)


def forge(
    lib: Lib,
    advisory: Advisory,
    jwe: bytes | None,
    *,
    role_detail: bytes | None = None,
    detail_path: str | None = None,
    signer: Signer | None = None,
) -> Bundle:
    """A bundle signed with 121D's key, without the manufacturer-side checks: ``advisory`` as the
    document, ``jwe`` as advisory-detail.jwe, the role adding the advisory and (unless
    ``role_detail`` is ``b""``) a detail target holding ``role_detail`` (default: ``jwe``)."""
    f = lib.factory
    data = advisory.to_bytes()
    signed = Metadata[Targets].from_bytes(f.repo.role("mfr-121D").to_bytes()).signed
    signed.version += 1
    signed.expires = f.now + timedelta(days=365)
    signed.targets[advisory.target_path] = TargetFile(
        len(data), {"sha256": hashlib.sha256(data).hexdigest()}, advisory.target_path
    )
    held = jwe if role_detail is None else role_detail
    if held:
        path = detail_path or detail_target_path(advisory.id, advisory.revision)
        signed.targets[path] = TargetFile(
            len(held), {"sha256": hashlib.sha256(held).hexdigest()}, path
        )
    md = Metadata(signed)
    md.sign(signer or f.mfr_signers["121D"])
    return Bundle(
        manufacturer_id="121D",
        target=advisory.target_path,
        declaration=Declaration((), "", ()),
        image=b"",
        role_bytes=md.to_bytes(),
        release_notes=None,
        kind=KIND_ADVISORY,
        advisory=data,
        advisory_detail=jwe,
    )


def refused(lib: Lib, bundle: Bundle, code: str, words: str) -> None:
    before = head(lib)
    result = lib.factory.ingest(bundle, name="advisory")
    assert result.status == "rejected", result
    assert code in result.reasons, result.messages
    assert any(words in m for m in result.messages), result.messages
    assert head(lib) == before


# ------------------------------------------------------------------------------ the happy path


def test_encrypted_detail_is_lodged_with_only_its_hash_and_date_public(lib: Lib) -> None:
    f = lib.factory
    lodge(lib, submit_sealed(f, authored(), disclose_at=None))
    library = verified_library(folder_reader(f.out), f.root_bytes, now=f.tick())
    (advisory,) = library.advisories
    assert advisory.detail_state == "encrypted"
    assert advisory.detail is None and advisory.detail_sha256 == hashlib.sha256(DETAIL).hexdigest()
    # No --disclose-at: the longest embargo the policy allows (90 days).
    assert advisory.disclosure == (f.now + timedelta(days=90)).date().isoformat()
    role = library.role_metadata["mfr-121D"].signed
    detail = role.targets[detail_target_path(ID, 1)]
    jwe = (f.out / "targets" / naming.blob_name(detail.path, detail.hashes["sha256"])).read_bytes()
    published = b"".join(p.read_bytes() for p in f.out.rglob("*") if p.is_file())
    assert b"SECRET-DETAIL-5c2e" not in published  # nowhere in the tree, the site included
    # Encrypted to the entitled IS supplier and the custodian: not to the GS one, not the revoked.
    assert parse_envelope(jwe).kids == ("0011223344556677", CUSTODIAN_KID)
    assert decrypt_notes(jwe, lib.orgs["is"].key, "0011223344556677", image_target=R1) == DETAIL
    assert decrypt_notes(jwe, lib.custodian_key, CUSTODIAN_KID, image_target=R1) == DETAIL
    with pytest.raises(NotRecipientError, match=r"advisory detail of .*8899AABBCCDDEEFF is not"):
        decrypt_notes(jwe, lib.orgs["gs"].key, "8899AABBCCDDEEFF", image_target=R1)
    # One advisory event carries the ciphertext target, the plaintext hash and the date, and
    # `cfl log verify` finds both targets in it.
    events = [json.loads(line) for line in (f.repo.path / "events.jsonl").read_text().splitlines()]
    (event,) = [e for e in events if e["event"] == "advisory"]
    assert event["detail_target"] == detail.path
    assert event["detail_target_sha256"] == detail.hashes["sha256"]
    assert (event["detail_sha256"], event["detail_state"]) == (advisory.detail_sha256, "encrypted")
    report = audit(_folder_fetch(f.out), vkey=None)
    assert report.problems == [] and report.advisories_checked == 2


def _folder_fetch(root: Path) -> Any:
    def fetch(relative: str) -> bytes:
        from metadata_templates.errors import UnavailableError

        try:
            return (root / relative).read_bytes()
        except OSError as e:
            raise UnavailableError(str(e)) from e

    return fetch


def test_disclosure_publishes_the_recorded_plaintext_and_may_come_early(lib: Lib) -> None:
    f = lib.factory
    lodge(lib, submit_sealed(f, authored(), disclose_at=(f.now + timedelta(days=60)).date()))
    submission, disclosed = build_disclosure(
        advisory_id=ID,
        detail=DETAIL,
        manufacturer_id="121D",
        signers=[f.mfr_signers["121D"]],
        library=lib.library(),
        now=f.tick(),
    )
    assert disclosed.disclosure == f.now.date().isoformat()  # 60 days early: the day it was done
    lodge(lib, submission.bundle)
    (advisory,) = lib.library().advisories
    assert (advisory.revision, advisory.detail_state) == (2, "public")
    assert advisory.detail == DETAIL.decode()
    assert advisory.detail_sha256 == hashlib.sha256(DETAIL).hexdigest()  # kept, now checkable
    # A later revision carries the public detail forward without the manufacturer pasting it.
    lodge(lib, submit(f, authored(status="fixed", fixed_by=[image_target(f, "CPL-0003")])))
    (advisory,) = lib.library().advisories
    assert (advisory.revision, advisory.detail) == (3, DETAIL.decode())


def test_disclose_refuses_another_plaintext_on_the_manufacturers_machine(lib: Lib) -> None:
    f = lib.factory
    lodge(lib, submit_sealed(f, authored()))
    with pytest.raises(RejectedInputError, match="advisory-detail-swapped: --detail SHA-256"):
        build_disclosure(
            advisory_id=ID,
            detail=DETAIL.replace(b"0x40", b"0x41"),
            manufacturer_id="121D",
            signers=[f.mfr_signers["121D"]],
            library=lib.library(),
            now=f.tick(),
        )


def test_a_revision_before_disclosure_carries_the_same_detail_again(lib: Lib) -> None:
    f = lib.factory
    first = (f.now + timedelta(days=40)).date()
    lodge(lib, submit_sealed(f, authored(), disclose_at=first))
    with pytest.raises(RejectedInputError, match="--detail: found none, expected the detail") as e:
        library = lib.library()
        from repo_tool.submit.advisory import build_advisory_submission

        build_advisory_submission(
            document=json.dumps(authored(status="investigating")).encode(),
            manufacturer_id="121D",
            signers=[f.mfr_signers["121D"]],
            library=library,
            now=f.tick(),
        )
    assert e.value.hint is not None and "advisory disclose" in e.value.hint
    lodge(lib, submit_sealed(f, authored(status="investigating")))
    (advisory,) = lib.library().advisories
    # Re-encrypted for revision 2; the date stays the one revision 1 announced.
    assert (advisory.revision, advisory.disclosure) == (2, first.isoformat())


def test_a_recently_registered_recipient_is_refused_as_for_release_notes(lib: Lib) -> None:
    f = lib.factory
    newcomer = make_org("5555666677778888", "Newcomer Energy", "IS")
    orgs = [lib.orgs["is"], lib.orgs["gs"], newcomer]
    publish_registry(f, orgs, registered=f.now - timedelta(days=3))
    with pytest.raises(RejectedInputError, match=r"^--detail recipient\(s\): found 0011"):
        submit_sealed(f, authored())


def test_a_split_manufacturer_signs_the_bins_its_advisory_and_detail_go_to(lib: Lib) -> None:
    f = lib.factory
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=4,
        signers=[f.mfr_signers["121D"]],
        library=lib.library(),
        now=f.tick(),
    )
    lodge(lib, split)
    bundle = submit_sealed(f, authored())
    bins = {bundle.role, *(name for name, _ in bundle.bins)}
    assert bins == {naming.bin_for_target("121D", p, 4) for p in (R1, detail_target_path(ID, 1))}
    lodge(lib, bundle)
    (advisory,) = lib.library().advisories
    assert advisory.detail_state == "encrypted"


# ---------------------------------------------------------------------- one test per code


def test_a_well_formed_forgery_is_accepted(lib: Lib) -> None:
    """The forger below is right: what it makes with correct values is admitted."""
    lodge(lib, forge(lib, sealed(lib), envelope(lib)))


def test_advisory_detail_not_encrypted(lib: Lib) -> None:
    refused(
        lib,
        forge(lib, sealed(lib), DETAIL),
        "advisory-detail-not-encrypted",
        "advisory-detail.jwe: notes: found no JSON (plaintext?)",
    )


def test_advisory_detail_over_the_size_cap_is_too_large(lib: Lib) -> None:
    refused(
        lib,
        forge(lib, sealed(lib), b"{" + b" " * (2 * 1024 * 1024)),
        "advisory-too-large",
        "advisory-detail.jwe size: found 2097153 bytes",
    )


@pytest.mark.parametrize(
    ("drop", "words"),
    [
        ("0011223344556677", "missing ['0011223344556677']"),
        ("+gs", "not entitled ['8899AABBCCDDEEFF']"),
    ],
    ids=["entitled-supplier-left-out", "supplier-of-another-device-type-added"],
)
def test_advisory_detail_recipients_mismatch(lib: Lib, drop: str, words: str) -> None:
    refused(
        lib,
        forge(lib, sealed(lib), envelope(lib, drop=drop)),
        "advisory-detail-recipients-mismatch",
        words,
    )


@pytest.mark.parametrize(
    "case",
    ["other-revision", "hash-differs", "hash-field-missing", "role-holds-other-bytes", "no-jwe"],
)
def test_advisory_detail_mismatch(lib: Lib, case: str) -> None:
    advisory, jwe, extra = sealed(lib), envelope(lib), {}
    words = {
        "other-revision": "protected cfl_target: found '121D/CFL-121D-2026-0001.r2.advisory.json'",
        "hash-differs": "detail_sha256: found 00000000",
        "hash-field-missing": "detail_target/detail_sha256: found None / None",
        "role-holds-other-bytes": "length/hashes/custom: found",
        "no-jwe": "detail_target: found '121D/CFL-121D-2026-0001.r1.advisory.json.detail.jwe', "
        "expected none",
    }[case]
    if case == "other-revision":
        jwe = envelope(lib, target=advisory_target_path(ID, 2))
    elif case == "hash-differs":
        advisory = dataclasses.replace(advisory, detail_sha256="0" * 64)
    elif case == "hash-field-missing":
        advisory = dataclasses.replace(advisory, detail_target=None, detail_sha256=None)
    elif case == "role-holds-other-bytes":
        extra = {"role_detail": envelope(lib)}
    elif case == "no-jwe":
        extra = {"role_detail": b""}
        jwe = None  # type: ignore[assignment]
    refused(lib, forge(lib, advisory, jwe, **extra), "advisory-detail-mismatch", words)


@pytest.mark.parametrize(("days", "words"), [(0, "expected a date after today"), (None, "None")])
def test_advisory_disclosure_not_future(lib: Lib, days: int | None, words: str) -> None:
    when = None if days is None else in_days(lib, days)
    refused(
        lib,
        forge(lib, sealed(lib, disclosure=when), envelope(lib)),
        "advisory-disclosure-not-future",
        words,
    )


def test_advisory_disclosure_too_far(lib: Lib) -> None:
    refused(
        lib,
        forge(lib, sealed(lib, disclosure=in_days(lib, 92)), envelope(lib)),
        "advisory-disclosure-too-far",
        "policy.advisory_max_embargo_days: 90 days from today",
    )


def test_advisory_disclosure_too_far_when_a_revision_extends_the_embargo(lib: Lib) -> None:
    lodge(lib, forge(lib, sealed(lib, disclosure=in_days(lib, 20)), envelope(lib)))
    r2 = advisory_target_path(ID, 2)
    refused(
        lib,
        forge(lib, sealed(lib, 2, disclosure=in_days(lib, 21)), envelope(lib, target=r2)),
        "advisory-disclosure-too-far",
        "and not after revision 1's",
    )


@pytest.mark.parametrize("case", ["other-plaintext", "detail-dropped", "re-encrypted-other"])
def test_advisory_detail_swapped(lib: Lib, case: str) -> None:
    lodge(lib, forge(lib, sealed(lib), envelope(lib)))
    r2 = advisory_target_path(ID, 2)
    other = DETAIL.replace(b"0x40", b"0x41")
    if case == "other-plaintext":  # the disclosure the gateway must refuse
        bundle = forge(
            lib,
            sealed(lib, 2, detail_target=None, detail_sha256=None, detail=other.decode()),
            None,
        )
    elif case == "detail-dropped":
        bundle = forge(lib, sealed(lib, 2, detail_target=None, detail_sha256=None), None)
    else:
        digest = hashlib.sha256(other).hexdigest()
        bundle = forge(
            lib, sealed(lib, 2, detail_sha256=digest), envelope(lib, target=r2, plaintext=other)
        )
    refused(lib, bundle, "advisory-detail-swapped", "that revision 1 recorded")


def test_a_disclosed_detail_cannot_be_encrypted_again(lib: Lib) -> None:
    lodge(lib, forge(lib, sealed(lib), envelope(lib)))
    public = sealed(lib, 2, detail_target=None, detail=DETAIL.decode())
    lodge(lib, forge(lib, public, None))
    r3 = advisory_target_path(ID, 3)
    refused(
        lib,
        forge(lib, sealed(lib, 3), envelope(lib, target=r3)),
        "advisory-detail-swapped",
        "found it encrypted again, expected it public",
    )


def test_the_detail_target_outside_the_prefix_is_outside_delegation(lib: Lib) -> None:
    foreign = "3F01/CFL-3F01-2026-0001.r1.advisory.json.detail.jwe"
    refused(
        lib,
        forge(lib, sealed(lib), envelope(lib), detail_path=foreign),
        "outside-delegation",
        repr(foreign),
    )


def test_release_notes_bound_to_an_advisory_are_not_an_images_notes(lib: Lib) -> None:
    """The envelope now reads an advisory path as its binding: the release-notes check still
    wants the image's own."""
    from repo_tool.gateway.notes import NOTES_TARGET_MISMATCH, check_deposited_notes

    library = lib.library()
    image = next(i.target_path for i in library.images if i.cfl.device_type == "ESME")
    verdict = check_deposited_notes(
        plaintext=None,
        envelope_bytes=envelope(lib),
        image_target=image,
        added_notes={},
        device_type="ESME",
        registry=library.suppliers,
        custodian=library.notes_custodian,
    )
    assert (NOTES_TARGET_MISMATCH, f"release-notes.jwe protected cfl_target: found {R1!r}") in [
        (code, message.split(", expected")[0]) for code, message in verdict.findings
    ]
