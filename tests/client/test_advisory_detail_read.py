"""`cfl advisories --detail` as a pure reader over verified files (an in-memory source): what it
refuses that a real library can only show when a manufacturer signed something inconsistent, an
organisation's certificate changed, or the host's bytes were not verified."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from advisory_factory import DETAIL, authored
from notes_factory import make_org

from client.advisories.detail import find_advisory, read_detail
from client.trust.catalogue import VerifiedTarget
from metadata_templates.advisory import (
    Advisory,
    advisory_target_path,
    detail_target_path,
    parse_authored,
    with_revision,
)
from metadata_templates.errors import RejectedInputError, VerificationError
from metadata_templates.notes import (
    NotesError,
    NotRecipientError,
    encrypt_notes,
    supplier_key,
)
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, SupplierRegistry

ID = "CFL-121D-2026-0001"
VOLT = make_org("0011223344556677", "Volt Energy", "IS")
VOLT_NEW_KEY = make_org("0011223344556677", "Volt Energy", "IS")


class Source:
    """Verified files by target path, and the registry, as a session would hand them over."""

    def __init__(self, tmp: Path, files: dict[str, bytes], registry: SupplierRegistry) -> None:
        self.tmp, self.files, self.registry = tmp, files, registry

    def target_info(self, path: str) -> Any:
        raise AssertionError("not used")

    def download(self, path: str) -> Path:
        if path not in self.files:
            raise VerificationError(f"target {path!r}: not in the verified library")
        out = self.tmp / hashlib.sha256(path.encode()).hexdigest()
        out.write_bytes(self.files[path])
        return out

    def provider_document(self, path: str) -> bytes | None:
        return self.registry.to_bytes() if path == SUPPLIERS_TARGET_PATH else None


def advisory(**fields: Any) -> Advisory:
    base = with_revision(
        parse_authored(json.dumps(authored()).encode(), manufacturer_id="121D", today="2026-03-02"),
        1,
    )
    values = {
        "detail_target": detail_target_path(ID, 1),
        "detail_sha256": hashlib.sha256(DETAIL).hexdigest(),
        "disclosure": "2026-05-01",
    }
    return dataclasses.replace(base, **(values | fields))


def sealed_for(*orgs: Any, plaintext: bytes = DETAIL) -> bytes:
    registered = [supplier_key(o.supplier("2026-01-01T00:00:00Z")) for o in orgs]
    return encrypt_notes(plaintext, advisory_target_path(ID, 1), registered)


def registry(org: Any) -> SupplierRegistry:
    return SupplierRegistry((org.supplier("2026-01-01T00:00:00Z"),))


def never() -> Any:
    raise AssertionError("the key is not needed for public detail")


def test_the_detail_opens_with_the_recipients_key(tmp_path: Path) -> None:
    source = Source(tmp_path, {detail_target_path(ID, 1): sealed_for(VOLT)}, registry(VOLT))
    found = read_detail(source, advisory(), lambda: VOLT.key)
    assert (found.text.encode(), found.via, found.entity_id) == (
        DETAIL,
        "recipient",
        "0011223344556677",
    )
    assert found.to_json()["sha256"] == hashlib.sha256(DETAIL).hexdigest()


def test_a_plaintext_other_than_the_signed_hash_is_refused(tmp_path: Path) -> None:
    other = DETAIL.replace(b"0x40", b"0x41")
    source = Source(
        tmp_path, {detail_target_path(ID, 1): sealed_for(VOLT, plaintext=other)}, registry(VOLT)
    )
    with pytest.raises(VerificationError, match=r"plaintext SHA-256: found .*signed by the manuf"):
        read_detail(source, advisory(), lambda: VOLT.key)


def test_a_key_other_than_the_one_encrypted_to_is_refused(tmp_path: Path) -> None:
    # Volt's certificate changed after the revision was signed: its new key is registered, the
    # detail was encrypted to the old one.
    source = Source(tmp_path, {detail_target_path(ID, 1): sealed_for(VOLT)}, registry(VOLT_NEW_KEY))
    with pytest.raises(NotRecipientError, match="key thumbprint for 0011223344556677: found"):
        read_detail(source, advisory(), lambda: VOLT_NEW_KEY.key)


def test_unverified_tampered_bytes_do_not_decrypt(tmp_path: Path) -> None:
    data = bytearray(sealed_for(VOLT))
    data[data.index(b'"ciphertext"') + 20] ^= 0x01
    source = Source(tmp_path, {detail_target_path(ID, 1): bytes(data)}, registry(VOLT))
    with pytest.raises(NotesError, match="decryption failed"):
        read_detail(source, advisory(), lambda: VOLT.key)


def test_public_detail_needs_no_key_and_no_detail_is_refused(tmp_path: Path) -> None:
    source = Source(tmp_path, {}, registry(VOLT))
    public = advisory(detail_target=None, detail=DETAIL.decode())
    assert read_detail(source, public, never).via == "public"
    with pytest.raises(RejectedInputError, match="publishes no technical detail"):
        read_detail(source, advisory(detail_target=None, detail_sha256=None), never)


def test_the_newest_revision_is_the_one_read(tmp_path: Path) -> None:
    docs = {
        advisory_target_path(ID, r): with_revision(
            advisory(detail_target=detail_target_path(ID, r)), r
        ).to_bytes()
        for r in (1, 2)
    }
    source = Source(tmp_path, docs, registry(VOLT))
    targets = [VerifiedTarget(p, "mfr-121D", len(d), "", {}) for p, d in docs.items()]
    assert find_advisory(source, targets, ID).revision == 2
    with pytest.raises(RejectedInputError, match="expected the ID of an advisory"):
        find_advisory(source, targets, "CFL-121D-2026-0002")
