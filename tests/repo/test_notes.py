"""Encrypted release notes on the provider's side: submit encrypts, the gateway checks without
decrypting, the provider grants, and no plaintext ever reaches the tree, the state or a log."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from notes_factory import PLAINTEXT, NotesLibrary, make_org, notes_library, publish_registry
from tuf.api.metadata import Metadata, TargetFile, Targets

from metadata_templates.custom import CUSTOM_KEY
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.notes import (
    CUSTODIAN_KID,
    NotesError,
    NotRecipientError,
    decrypt_notes,
    encrypt_notes,
    grant_target_path,
    notes_target_path,
    parse_envelope,
)
from repo_tool.intake.bundle import Bundle
from repo_tool.ops.notes_grant import grant_notes
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

ESME_ENTRY = ["CPL-0002"]


@pytest.fixture
def lib(tmp_path: Path) -> NotesLibrary:
    return notes_library(tmp_path)


def _resign(lib: NotesLibrary, bundle: Bundle, edit: object) -> Bundle:
    """Apply ``edit`` to the bundle's role, re-sign it as the manufacturer (a hostile one)."""
    md = Metadata[Targets].from_bytes(bundle.role_bytes)
    edit(md.signed)  # type: ignore[operator]
    md.signatures.clear()
    md.sign(lib.factory.mfr_signers[bundle.manufacturer_id])
    return dataclasses.replace(bundle, role_bytes=md.to_bytes())


def test_entitled_supplier_and_custodian_decrypt_what_submit_encrypted(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.release_notes is None and bundle.notes_jwe is not None
    assert PLAINTEXT not in bundle.notes_jwe
    envelope = parse_envelope(bundle.notes_jwe)
    # ESME: the IS organisation and the custodian; not the gas supplier, not the revoked one.
    assert envelope.kids == (lib.orgs["is"].entity_id, CUSTODIAN_KID)
    assert envelope.target == bundle.target
    assert envelope.plaintext_sha256 == hashlib.sha256(PLAINTEXT).hexdigest()
    assert (
        decrypt_notes(
            bundle.notes_jwe,
            lib.orgs["is"].key,
            lib.orgs["is"].entity_id,
            image_target=bundle.target,
        )
        == PLAINTEXT
    )
    assert (
        decrypt_notes(
            bundle.notes_jwe, lib.custodian_key, CUSTODIAN_KID, image_target=bundle.target
        )
        == PLAINTEXT
    )


@pytest.mark.parametrize("who", ["gs", "revoked"], ids=["other-fuel", "revoked"])
def test_not_entitled_organisations_are_not_recipients(lib: NotesLibrary, who: str) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    org = lib.orgs[who]
    with pytest.raises(NotRecipientError, match="is not a recipient"):
        decrypt_notes(bundle.notes_jwe, org.key, org.entity_id, image_target=bundle.target)


def test_a_key_claiming_a_recipients_kid_is_refused(lib: NotesLibrary) -> None:
    """The manufacturer (or anyone) with another key cannot pass as a recipient by its kid."""
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    impostor = make_org(lib.orgs["is"].entity_id, "Impostor", "IS")
    with pytest.raises(NotRecipientError, match="thumbprint"):
        decrypt_notes(
            bundle.notes_jwe, impostor.key, impostor.entity_id, image_target=bundle.target
        )


def test_gateway_accepts_encrypted_notes_and_publishes_ciphertext_only(lib: NotesLibrary) -> None:
    result = lib.factory.deposit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert result.target is not None
    library = verified_library(
        folder_reader(lib.factory.out), lib.factory.root_bytes, now=lib.factory.tick()
    )
    image = next(i for i in library.images if i.target_path == result.target)
    assert image.cfl.release_notes is not None
    assert image.cfl.release_notes.target == notes_target_path(result.target)
    assert [r.name for r in image.cfl.release_notes.readers] == ["Volt Energy"]
    assert image.cfl.release_notes_sha256 == hashlib.sha256(PLAINTEXT).hexdigest()
    role = library.role_metadata["mfr-121D"].signed
    assert notes_target_path(result.target) in role.targets
    # No plaintext anywhere the provider or the host keeps anything, byte-wise.
    _assert_no_plaintext(lib.factory.repo.path)
    assert not (lib.factory.repo.path / "release-notes").exists()


def _assert_no_plaintext(root: Path) -> None:
    marker = b"SECRET-MARKER-7f3a91"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    leaked = [p for p in files if marker in p.read_bytes()]
    assert leaked == []


def test_plaintext_notes_are_rejected_and_not_kept(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY)
    result = lib.factory.ingest(dataclasses.replace(bundle, release_notes=PLAINTEXT))
    assert result.status == "rejected"
    assert result.reasons == ["notes-not-encrypted"]
    (lib.factory.tmp / "inbox").joinpath("deposit.cflb").unlink()  # the manufacturer's own file
    _assert_no_plaintext(lib.factory.repo.path)


def test_notes_that_are_not_a_jwe_are_rejected(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    result = lib.factory.ingest(dataclasses.replace(bundle, notes_jwe=b"just text, not encrypted"))
    assert result.status == "rejected"
    assert "notes-not-encrypted" in result.reasons


def test_recipients_differing_from_the_entitled_set_are_rejected(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    # A supplier registers between the manufacturer's submit and the deposit.
    publish_registry(
        lib.factory,
        [lib.orgs["is"], lib.orgs["gs"], lib.orgs["revoked"], lib.orgs["late"]],
        revoked=("1111222233334444",),
    )
    result = lib.factory.ingest(bundle)
    assert result.status == "rejected"
    assert result.reasons == ["notes-recipients-mismatch"]
    assert "5555666677778888" in " ".join(result.messages)


def test_notes_to_an_organisation_not_entitled_are_rejected(lib: NotesLibrary) -> None:
    """A manufacturer leaking its notes to the gas supplier (or anyone) is caught at the gateway."""
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    from metadata_templates.notes import audience, supplier_key

    library = verified_library(
        folder_reader(lib.factory.out),
        lib.factory.root_bytes,
        now=lib.factory.tick(),
        check_blobs=False,
    )
    assert library.suppliers is not None and library.notes_custodian is not None
    recipients = (
        *audience(library.suppliers, library.notes_custodian, "ESME"),
        supplier_key(library.suppliers.by_entity_id()[lib.orgs["gs"].entity_id]),
    )
    leaky = encrypt_notes(PLAINTEXT, bundle.target, recipients)
    result = lib.factory.ingest(_with_notes(lib, bundle, leaky))
    assert result.status == "rejected"
    assert result.reasons == ["notes-recipients-mismatch"]


def _with_notes(lib: NotesLibrary, bundle: Bundle, envelope: bytes) -> Bundle:
    path = notes_target_path(bundle.target)

    def edit(signed: Targets) -> None:
        signed.targets[path] = TargetFile(
            len(envelope), {"sha256": hashlib.sha256(envelope).hexdigest()}, path
        )

    return dataclasses.replace(_resign(lib, bundle, edit), notes_jwe=envelope)


def test_notes_bound_to_another_image_are_rejected(lib: NotesLibrary) -> None:
    other = lib.factory.submit(lib.images["esme3"], ["CPL-0003"], release_notes=PLAINTEXT)
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert other.notes_jwe is not None
    result = lib.factory.ingest(_with_notes(lib, bundle, other.notes_jwe))
    assert result.status == "rejected"
    assert result.reasons == ["notes-target-mismatch"]


def test_a_notes_target_the_image_does_not_name_is_rejected(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)

    def unname(signed: Targets) -> None:
        custom = signed.targets[bundle.target].unrecognized_fields["custom"][CUSTOM_KEY]
        del custom["release_notes"]

    result = lib.factory.ingest(_resign(lib, bundle, unname))
    assert result.status == "rejected"
    assert "notes-target-mismatch" in result.reasons


def test_a_notes_target_without_notes_in_the_bundle_is_rejected(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    result = lib.factory.ingest(dataclasses.replace(bundle, notes_jwe=None))
    assert result.status == "rejected"
    assert "notes-target-mismatch" in result.reasons


def test_a_tampered_ciphertext_is_refused(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    doc = json.loads(bundle.notes_jwe)
    doc["ciphertext"] = doc["ciphertext"][:-4] + (
        "AAAA" if not doc["ciphertext"].endswith("AAAA") else "BBBB"
    )
    with pytest.raises(NotesError, match="decryption failed"):
        decrypt_notes(
            json.dumps(doc).encode(),
            lib.orgs["is"].key,
            lib.orgs["is"].entity_id,
            image_target=bundle.target,
        )


def test_a_tampered_recipient_list_is_refused(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    doc = json.loads(bundle.notes_jwe)
    doc["recipients"][0]["header"]["kid"] = lib.orgs["gs"].entity_id
    with pytest.raises(NotesError, match="authenticated recipient list"):
        parse_envelope(json.dumps(doc).encode())
    # And a recipient entry dropped from the list.
    doc = json.loads(bundle.notes_jwe)
    del doc["recipients"][0]
    with pytest.raises(NotesError, match="authenticated recipient list"):
        parse_envelope(json.dumps(doc).encode())


def test_a_moved_ciphertext_is_refused_by_its_bound_target(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    with pytest.raises(NotesError, match="cfl_target"):
        decrypt_notes(
            bundle.notes_jwe,
            lib.orgs["is"].key,
            lib.orgs["is"].entity_id,
            image_target="121D/ESME-0001-00000003-0000000000000000.ota",
        )


def test_submit_without_a_custodian_key_says_so(tmp_path: Path) -> None:
    from factory import LibraryFactory, make_entry, make_image, mi_sha

    factory = LibraryFactory(tmp_path)
    image = make_image("121D", 2)
    factory.import_cpl([make_entry("CPL-0002", image_sha=mi_sha(image))])
    factory.add_manufacturer("121D")
    factory.publish()
    with pytest.raises(RejectedInputError, match="notes-custodian"):
        factory.submit(image, ["CPL-0002"], release_notes=PLAINTEXT)


# --------------------------------------------------------------------------------------- grants


def test_a_grant_gives_a_later_registered_supplier_the_notes(lib: NotesLibrary) -> None:
    esme = lib.factory.deposit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT).target
    gsme = lib.factory.deposit(
        lib.images["gsme"], ["CPL-0101"], mfr="3F01", release_notes=b"gas notes"
    ).target
    assert esme is not None and gsme is not None
    late = lib.orgs["late"]
    publish_registry(
        lib.factory,
        [lib.orgs["is"], lib.orgs["gs"], lib.orgs["revoked"], late],
        revoked=("1111222233334444",),
    )
    seen: list[tuple[int, int]] = []
    with lib.factory.repo.locked():
        report = grant_notes(
            lib.factory.repo,
            late.entity_id,
            lib.custodian_key,
            now=lib.factory.tick(),
            progress=lambda done, total: seen.append((done, total)),
        )
    assert report.granted == (esme, gsme)  # IS and GS: both fuels
    assert seen == [(1, 2), (2, 2)]
    lib.factory.publish()
    grant = lib.factory.repo.provider_document(grant_target_path(late.entity_id, esme))
    assert grant is not None
    assert parse_envelope(grant).kids == (late.entity_id,)
    assert decrypt_notes(grant, late.key, late.entity_id, image_target=esme) == PLAINTEXT
    events = [
        json.loads(line)
        for line in (lib.factory.repo.path / "events.jsonl").read_text().splitlines()
    ]
    grants = [e for e in events if e["event"] == "notes-grant"]
    assert [(e["entity_id"], len(e["grants"])) for e in grants] == [(late.entity_id, 2)]
    _assert_no_plaintext(lib.factory.repo.path)
    # Running it again grants nothing new and changes nothing.
    with lib.factory.repo.locked():
        again = grant_notes(
            lib.factory.repo, late.entity_id, lib.custodian_key, now=lib.factory.tick()
        )
    assert again.granted == () and again.targets_version is None


def test_grants_only_cover_the_organisations_roles(lib: NotesLibrary) -> None:
    lib.factory.deposit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    with lib.factory.repo.locked():
        report = grant_notes(
            lib.factory.repo, lib.orgs["gs"].entity_id, lib.custodian_key, now=lib.factory.tick()
        )
    assert report.granted == () and report.already == ()


def test_a_revoked_organisation_receives_no_grant(lib: NotesLibrary) -> None:
    lib.factory.deposit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    head = lib.factory.repo.head
    with lib.factory.repo.locked(), pytest.raises(RejectedInputError, match="revoked"):
        grant_notes(
            lib.factory.repo,
            lib.orgs["revoked"].entity_id,
            lib.custodian_key,
            now=lib.factory.tick(),
        )
    assert lib.factory.repo.head == head


def test_a_grant_needs_the_published_custodian_key(lib: NotesLibrary) -> None:
    lib.factory.deposit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    with lib.factory.repo.locked(), pytest.raises(ConfigurationError, match="thumbprint"):
        grant_notes(
            lib.factory.repo, lib.orgs["is"].entity_id, lib.orgs["is"].key, now=lib.factory.tick()
        )


def test_a_recipient_with_another_key_algorithm_is_not_our_format(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    doc = json.loads(bundle.notes_jwe)
    doc["recipients"][0]["header"]["alg"] = "ECDH-ES"
    result = lib.factory.ingest(_with_notes(lib, bundle, json.dumps(doc).encode()))
    assert result.status == "rejected"
    assert result.reasons == ["notes-not-encrypted"]
    assert any("header.alg" in m and "ECDH-ES+A256KW" in m for m in result.messages)


def test_a_grant_cannot_be_deposited_as_a_manufacturers_notes(lib: NotesLibrary) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    from metadata_templates.notes import audience

    library = verified_library(
        folder_reader(lib.factory.out),
        lib.factory.root_bytes,
        now=lib.factory.tick(),
        check_blobs=False,
    )
    assert library.suppliers is not None and library.notes_custodian is not None
    recipients = audience(library.suppliers, library.notes_custodian, "ESME")
    grant = encrypt_notes(PLAINTEXT, bundle.target, recipients, grant_for=lib.orgs["is"].entity_id)
    result = lib.factory.ingest(_with_notes(lib, bundle, grant))
    assert result.status == "rejected"
    assert "notes-target-mismatch" in result.reasons


def test_notes_under_another_manufacturers_prefix_are_outside_the_delegation(
    lib: NotesLibrary,
) -> None:
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    assert bundle.notes_jwe is not None
    envelope = bundle.notes_jwe
    foreign = "3F01/GSME-0001-00000005-0000000000000000.ota.notes.jwe"

    def edit(signed: Targets) -> None:
        signed.targets[foreign] = TargetFile(
            len(envelope), {"sha256": hashlib.sha256(envelope).hexdigest()}, foreign
        )

    result = lib.factory.ingest(_resign(lib, bundle, edit))
    assert result.status == "rejected"
    assert "outside-delegation" in result.reasons


def test_the_built_website_names_readers_and_holds_no_plaintext(lib: NotesLibrary) -> None:
    from repo_tool.site.build import build_site

    target = lib.factory.deposit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT).target
    library = verified_library(
        folder_reader(lib.factory.out), lib.factory.root_bytes, now=lib.factory.tick()
    )
    site = lib.factory.tmp / "site"
    build_site(library, site, generated=lib.factory.now)
    page = (site / "image" / f"{target}.html").read_text()
    assert "encrypted; readable by Volt Energy (as deposited)" in page
    assert "Gasco" not in page and "Gone Power" not in page
    _assert_no_plaintext(site)


@pytest.mark.parametrize("member", ["zip", "crit"], ids=["compressed", "critical-extension"])
def test_compressed_or_critical_notes_are_not_our_format(lib: NotesLibrary, member: str) -> None:
    """A hostile manufacturer's compressed note could be a decompression bomb for every reader."""
    bundle = lib.factory.submit(lib.images["esme"], ESME_ENTRY, release_notes=PLAINTEXT)
    from metadata_templates.notes import audience

    library = verified_library(
        folder_reader(lib.factory.out),
        lib.factory.root_bytes,
        now=lib.factory.tick(),
        check_blobs=False,
    )
    assert library.suppliers is not None and library.notes_custodian is not None
    from jwcrypto import jwe

    recipients = audience(library.suppliers, library.notes_custodian, "ESME")
    protected = json.loads(
        base64.urlsafe_b64decode(json.loads(bundle.notes_jwe or b"")["protected"] + "==")
    )
    protected[member] = "DEF" if member == "zip" else ["cfl_target"]
    # jwcrypto >= 1.6.2 refuses to build a critical header it does not know: register it, as a
    # hostile manufacturer's own tool would.
    registry = {"cfl_target": jwe.JWSEHeaderParameter("CFL target", False, True, None)}
    token = jwe.JWE(PLAINTEXT, protected=json.dumps(protected), header_registry=registry)
    for r in recipients:
        token.add_recipient(
            r.key, header=json.dumps({"alg": "ECDH-ES+A256KW", "kid": r.recipient.kid})
        )
    with pytest.raises(NotesError, match=f"notes.protected.{member}"):
        parse_envelope(token.serialize().encode())
    result = lib.factory.ingest(_with_notes(lib, bundle, token.serialize().encode()))
    assert result.reasons == ["notes-not-encrypted"]
