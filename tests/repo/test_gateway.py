"""The gateway, one named case per rejection code, each driven through `Repository.ingest`.

Every bad bundle is built the way an attacker or a careless manufacturer would: a good deposit made
with the real `submit`, then altered and, where the signature would otherwise give it away, re-signed
with the manufacturer's own key, so that exactly one check fails. Each case asserts the code, a message
naming the field with the value found and the value expected, an untouched repository and published
tree, and the bundle kept with its report under ``R/rejected/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tracemalloc
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from notes_factory import make_org, publish_custodian, publish_registry
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, updater_for
from metadata_templates.cpl_document import CplEntry
from metadata_templates.naming import image_target_path
from repo_tool.gateway.model import DEFAULT_IMAGE_SIZE_CAP, Code
from repo_tool.intake.bundle import IMAGE, MANIFEST, ROLE, Bundle, Declaration, write_bundle
from repo_tool.ops.ingest import IngestResult
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

MFR = "121D"
THRESHOLD_MFR = "2B2B"  # registered with two keys and threshold 2
UNKNOWN_MFR = "4C4C"  # on the CPL, never registered


def image(tag: str, fw: int = 3, mfr: str = MFR) -> bytes:
    """A distinct, well-formed image (hardware versions 1000..2000)."""
    return make_image(mfr, fw, body=f"{tag} build of {mfr} firmware {fw}\n".encode() * 30)


def dcc_sample_image(body: bytes) -> bytes:
    """The DCC's public sample layout written out field by field: 60-byte header, field control
    0x0004 (hardware versions only), manufacturer 121D, image type 010A, file version ACDCACDC."""
    header = (
        bytes.fromhex("1EF1EE0B")  # magic 0x0BEEF11E
        + bytes.fromhex("0001")  # header version 0x0100
        + bytes.fromhex("3C00")  # header length 60
        + bytes.fromhex("0400")  # field control 0x0004
        + bytes.fromhex("1D12")  # manufacturer code 0x121D
        + bytes.fromhex("0A01")  # image type 0x010A
        + bytes.fromhex("DCACDCAC")  # file version 0xACDCACDC
        + bytes.fromhex("0200")  # stack version 2
        + b"GBCS sample".ljust(32, b"\x00")
        + struct.pack("<I", 60 + len(body))
        + bytes.fromhex("1111")  # minimum hardware version 0x1111
        + bytes.fromhex("1211")  # maximum hardware version 0x1112
    )
    assert len(header) == 60
    return header + body


IMAGES = {
    "a2": image("base", fw=2),  # deposited in the base library for CPL-0002
    "a3": image("next"),  # the good next deposit for CPL-0003
    "other-build": image("other"),  # a build whose hash no CPL entry records
    "mfr-entry": image("mfr-entry"),
    "fw-entry": image("fw-entry"),
    "hw-entry": image("hw-entry"),
    "cancelled": image("cancelled"),
    "fixed-a2": image("fixed", fw=2),
    "threshold": image("threshold", fw=1, mfr=THRESHOLD_MFR),
    "unknown": image("unknown", fw=1, mfr=UNKNOWN_MFR),
    "dcc": dcc_sample_image(bytes(range(256)) * 40),
}


def cpl_entries(*, cpl_0002_sha: str | None = None) -> list[CplEntry]:
    return [
        make_entry("CPL-0002", fw="00000002", image_sha=cpl_0002_sha or mi_sha(IMAGES["a2"])),
        make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(IMAGES["a3"])),
        # The CPL says this model is made by 3F01, but a 121D image declares it.
        make_entry("CPL-0005", mfr="3F01", fw="00000003", image_sha=mi_sha(IMAGES["mfr-entry"])),
        make_entry("CPL-0006", fw="00000009", image_sha=mi_sha(IMAGES["fw-entry"])),
        make_entry("CPL-0007", hw="3000", fw="00000003", image_sha=mi_sha(IMAGES["hw-entry"])),
        make_entry(
            "CPL-0008", fw="00000003", image_sha=mi_sha(IMAGES["cancelled"]), status="Cancelled"
        ),
        # A gas meter entry that records the same image as CPL-0003 (declaration-inconsistent).
        make_entry(
            "CPL-0009",
            model="0B0C",
            fw="00000003",
            image_sha=mi_sha(IMAGES["a3"]),
            device_type="GSME",
        ),
        # A gas meter entry recording the bytes already published for CPL-0002 (duplicate-image).
        make_entry(
            "CPL-0010",
            model="0B0C",
            fw="00000002",
            image_sha=mi_sha(IMAGES["a2"]),
            device_type="GSME",
        ),
        make_entry(
            "CPL-0201", mfr=THRESHOLD_MFR, fw="00000001", image_sha=mi_sha(IMAGES["threshold"])
        ),
        make_entry("CPL-0301", mfr=UNKNOWN_MFR, fw="00000001", image_sha=mi_sha(IMAGES["unknown"])),
        make_entry(
            "CPL-0401",
            model="00AA",
            hw="1111",
            fw="ACDCACDC",
            image_sha=mi_sha(IMAGES["dcc"]),
            model_name="DCC sample",
        ),
    ]


@dataclass
class Scenario:
    """A published library: 121D delegated with one image (role version 1); 3F01 and 2B2B (2 of 2)
    registered without deposits."""

    factory: LibraryFactory
    threshold_signers: list[CryptoSigner]
    base_target: str

    @property
    def key(self) -> Signer:
        return self.factory.mfr_signers[MFR]

    def submit(self, name: str, entries: Sequence[str], **kwargs: object) -> Bundle:
        return self.factory.submit(IMAGES[name], list(entries), **kwargs)  # type: ignore[arg-type]

    def good(self) -> Bundle:
        """The deposit every re-signing case starts from: a3 for CPL-0003, role version 2."""
        return self.submit("a3", ["CPL-0003"])

    def write(self, bundle: Bundle) -> Path:
        return self.factory.write(bundle, "case")

    def raw(self, data: bytes) -> Path:
        path = self.factory.tmp / "inbox" / "case.cflb"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    factory = LibraryFactory(tmp_path)
    factory.import_cpl(cpl_entries())
    factory.add_manufacturer(MFR)
    factory.add_manufacturer("3F01")
    threshold_signers = factory.add_manufacturer(THRESHOLD_MFR, threshold=2, signers=2)
    factory.publish()
    result = factory.deposit(IMAGES["a2"], ["CPL-0002"])
    assert result.target is not None
    return Scenario(factory, threshold_signers, result.target)


# ---------------------------------------------------------------------------------- alterations


def resign(
    bundle: Bundle, signers: Sequence[Signer], edit: Callable[[Targets], None] | None = None
) -> Bundle:
    """Edit the signed role, then sign it afresh (only ``signers``' signatures remain)."""
    md = Metadata[Targets].from_bytes(bundle.role_bytes)
    if edit is not None:
        edit(md.signed)
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return replace(bundle, role_bytes=md.to_bytes())


def rename_target(bundle: Bundle, signer: Signer, new_path: str) -> Bundle:
    def edit(signed: Targets) -> None:
        target = signed.targets.pop(bundle.target)
        target.path = new_path
        signed.targets[new_path] = target

    return replace(resign(bundle, [signer], edit), target=new_path)


def zip_members(members: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def members_of(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


# ----------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Built:
    """A bad bundle on disk and the fragments its message for the expected code must contain."""

    path: Path
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    id: str
    code: Code
    build: Callable[[Scenario], Built]


def malformed_image(s: Scenario) -> Built:
    good = s.good()
    truncated = good.image[:-10]
    path = s.write(replace(good, image=truncated))
    return Built(
        path,
        ("header total size", f"found {len(good.image)}", f"expected {len(truncated)}"),
    )


def image_too_large(s: Scenario) -> Built:
    body = b"\x5a" * (DEFAULT_IMAGE_SIZE_CAP + 1 - 60)
    big = make_image(MFR, 3, body=body)
    assert len(big) == DEFAULT_IMAGE_SIZE_CAP + 1
    bundle = s.factory.submit(big, ["CPL-0003"])
    return Built(
        s.write(bundle),
        ("image size", f"found {DEFAULT_IMAGE_SIZE_CAP + 1} octets", "at most 10240000"),
    )


def hash_not_on_cpl(s: Scenario) -> Built:
    bundle = s.submit("other-build", ["CPL-0003"])
    return Built(
        s.write(bundle),
        (
            "CPL entry CPL-0003 Manufacturer Image Hash",
            f"found {mi_sha(IMAGES['a3'])}",
            f"expected {mi_sha(IMAGES['other-build'])}",
        ),
    )


def manufacturer_mismatch(s: Scenario) -> Built:
    bundle = s.submit("mfr-entry", ["CPL-0005"])
    return Built(
        s.write(bundle),
        ("CPL entry CPL-0005 Manufacturer Identifier", "found 3F01", "expected 121D"),
    )


def firmware_version_mismatch(s: Scenario) -> Built:
    bundle = s.submit("fw-entry", ["CPL-0006"])
    return Built(
        s.write(bundle),
        ("CPL entry CPL-0006 Firmware Version", "found 00000009", "expected 00000003"),
    )


def hardware_version_out_of_range(s: Scenario) -> Built:
    bundle = s.submit("hw-entry", ["CPL-0007"])
    return Built(
        s.write(bundle),
        ("CPL entry CPL-0007 Hardware Version", "found 3000", "expected within", "1000..2000"),
    )


def cpl_entry_cancelled(s: Scenario) -> Built:
    bundle = s.submit("cancelled", ["CPL-0008"])
    return Built(
        s.write(bundle), ("CPL entry CPL-0008 status", "found 'Cancelled'", "expected 'Active'")
    )


def cpl_entry_nonexistent(s: Scenario) -> Built:
    # `submit` refuses IDs missing from the published CPL, so a hand-edited manifest is the way in.
    good = s.good()
    bundle = replace(good, declaration=replace(good.declaration, cpl_entries=("CPL-9999",)))
    return Built(
        s.write(bundle),
        ("declaration.cpl_entries", "found 'CPL-9999'", "expected an entry on the imported CPL"),
    )


def duplicate_same_bytes(s: Scenario) -> Built:
    # The very bytes published for CPL-0002, declared for a gas meter entry that records them.
    bundle = s.submit("a2", ["CPL-0010"])
    sha = hashlib.sha256(IMAGES["a2"]).hexdigest()
    return Built(
        s.write(bundle),
        ("image SHA-256", f"found {sha}", "expected bytes not yet in the library", s.base_target),
    )


def duplicate_entry_has_image(s: Scenario) -> Built:
    # SECAS corrects CPL-0002's hash to a rebuilt image; CPL-0002 has an image in the library already.
    s.factory.import_cpl(cpl_entries(cpl_0002_sha=mi_sha(IMAGES["fixed-a2"])))
    s.factory.publish()
    bundle = s.submit("fixed-a2", ["CPL-0002"])
    return Built(
        s.write(bundle),
        ("CPL entry CPL-0002", f"found an image already ({s.base_target})", "expected an entry"),
    )


def bad_signature(s: Scenario) -> Built:
    good = s.good()
    doc = json.loads(good.role_bytes)
    signature = doc["signatures"][0]
    flipped = "0" if signature["sig"][10] != "0" else "1"
    signature["sig"] = signature["sig"][:10] + flipped + signature["sig"][11:]
    bundle = replace(good, role_bytes=json.dumps(doc).encode())
    return Built(
        s.write(bundle),
        (
            "role.json signatures",
            f"found invalid signature(s) by registered key(s) ['{signature['keyid'][:8]}']",
            "expected valid signatures",
        ),
    )


def threshold_one_of_two(s: Scenario) -> Built:
    bundle = s.submit("threshold", ["CPL-0201"], mfr=THRESHOLD_MFR, signers=s.threshold_signers[:1])
    return Built(
        s.write(bundle), ("role.json signatures", "found 1 valid by registered keys", "at least 2")
    )


def threshold_unregistered_key(s: Scenario) -> Built:
    stranger = CryptoSigner.generate_ed25519()
    bundle = resign(s.good(), [stranger])
    return Built(
        s.write(bundle),
        (
            "role.json signatures",
            "found 0 valid by registered keys",
            f"unregistered keys ['{stranger.public_key.keyid[:8]}']",
            "expected at least 1",
        ),
    )


def outside_other_prefix(s: Scenario) -> Built:
    good = s.good()
    foreign = "3F01/" + good.target.split("/", 1)[1]
    bundle = rename_target(good, s.key, foreign)
    return Built(
        s.write(bundle),
        ("mfr-121D target path", f"found {foreign!r}", "expected a path matching '121D/*'"),
    )


def outside_delegates_further(s: Scenario) -> Built:
    helper = CryptoSigner.generate_ed25519()

    def edit(signed: Targets) -> None:
        from tuf.api.metadata import DelegatedRole, Delegations

        role = DelegatedRole("helper", [helper.public_key.keyid], 1, True, paths=["121D/*"])
        signed.delegations = Delegations(
            keys={helper.public_key.keyid: helper.public_key}, roles={"helper": role}
        )

    bundle = resign(s.good(), [s.key], edit)
    return Built(
        s.write(bundle),
        ("mfr-121D delegations", "found ['helper']", "expected none", "may not delegate"),
    )


def stale_version(version: int) -> Callable[[Scenario], Built]:
    def build(s: Scenario) -> Built:
        def edit(signed: Targets) -> None:
            signed.version = version

        bundle = resign(s.good(), [s.key], edit)
        return Built(
            s.write(bundle),
            ("mfr-121D version", f"found {version}", "expected 2", "library's version 1"),
        )

    return build


def unknown_manufacturer(s: Scenario) -> Built:
    bundle = s.submit(
        "unknown", ["CPL-0301"], mfr=UNKNOWN_MFR, signers=[CryptoSigner.generate_ed25519()]
    )
    return Built(
        s.write(bundle),
        (
            "manufacturer_id",
            "found '4C4C'",
            "expected one of the registered manufacturers ['121D', '2B2B', '3F01']",
        ),
    )


def missing_no_entries(s: Scenario) -> Built:
    good = s.good()
    bundle = replace(good, declaration=replace(good.declaration, cpl_entries=()))
    return Built(
        s.write(bundle),
        ("declaration.cpl_entries", "found none", "expected at least one CPL Entry ID"),
    )


def missing_advisory(s: Scenario) -> Built:
    good = s.good()
    bundle = replace(good, declaration=Declaration(("CPL-0003",), "security", ()))
    return Built(
        s.write(bundle),
        ("declaration.advisories", "found none", "expected at least one advisory ID"),
    )


def malformed_not_zip(s: Scenario) -> Built:
    return Built(s.raw(b"this is a text file, not a bundle\n" * 10), ("not a bundle", "ZIP"))


def malformed_extra_member(s: Scenario) -> Built:
    members = [*members_of(s.write(s.good())), ("../evil", b"#!/bin/sh\nrm -rf /\n")]
    return Built(
        s.raw(zip_members(members)), ("members", "found unexpected ['../evil']", "expected only")
    )


def malformed_missing_role(s: Scenario) -> Built:
    members = [(n, d) for n, d in members_of(s.write(s.good())) if n != ROLE]
    return Built(s.raw(zip_members(members)), ("members", "missing ['role.json']", "expected"))


def mismatch_custom_firmware_version(s: Scenario) -> Built:
    good = s.good()

    def edit(signed: Targets) -> None:
        signed.targets[good.target].custom["cfl"]["firmware_version"] = "00000009"

    bundle = resign(good, [s.key], edit)
    return Built(
        s.write(bundle),
        ("custom.cfl.firmware_version", "found '00000009'", "expected '00000003'"),
    )


def mismatch_length(s: Scenario) -> Built:
    good = s.good()

    def edit(signed: Targets) -> None:
        signed.targets[good.target].length += 1

    bundle = resign(good, [s.key], edit)
    n = len(good.image)
    return Built(
        s.write(bundle), (f"{good.target} length/hashes", f"found {n + 1}", f"expected {n}")
    )


def mismatch_hash(s: Scenario) -> Built:
    good = s.good()
    wrong = hashlib.sha256(b"something else").hexdigest()

    def edit(signed: Targets) -> None:
        signed.targets[good.target].hashes = {"sha256": wrong}

    bundle = resign(good, [s.key], edit)
    right = hashlib.sha256(good.image).hexdigest()
    return Built(
        s.write(bundle),
        (f"{good.target} length/hashes", f"'sha256': '{wrong}'", f"'sha256': '{right}'"),
    )


def altered_dropped(s: Scenario) -> Built:
    good = s.good()

    def edit(signed: Targets) -> None:
        del signed.targets[s.base_target]

    bundle = resign(good, [s.key], edit)
    return Built(
        s.write(bundle),
        (
            f"mfr-121D target {s.base_target}",
            "found it removed",
            "expected every lodged target kept",
        ),
    )


def altered_edited(s: Scenario) -> Built:
    good = s.good()

    def edit(signed: Targets) -> None:
        signed.targets[s.base_target].custom["cfl"]["reason"] = "security"
        signed.targets[s.base_target].custom["cfl"]["advisories"] = ["CFL-SA-2026-009"]

    bundle = resign(good, [s.key], edit)
    return Built(
        s.write(bundle),
        (
            f"mfr-121D target {s.base_target}",
            "found custom.cfl.advisories changed from [] to",
            "exactly as lodged",
        ),
    )


def declaration_inconsistent(s: Scenario) -> Built:
    bundle = s.submit("a3", ["CPL-0003", "CPL-0009"])
    return Built(
        s.write(bundle),
        ("declaration.cpl_entries", "found device types ['ESME', 'GSME']", "one device type"),
    )


def role_expired(s: Scenario) -> Built:
    expired = s.factory.now - timedelta(days=1)

    def edit(signed: Targets) -> None:
        signed.expires = expired

    bundle = resign(s.good(), [s.key], edit)
    return Built(
        s.write(bundle),
        ("mfr-121D expires", f"found {expired.isoformat()}", "expected a time after"),
    )


def role_expires_too_far(s: Scenario) -> Built:
    century = s.factory.now + timedelta(days=36500)

    def edit(signed: Targets) -> None:
        signed.expires = century

    bundle = resign(s.good(), [s.key], edit)
    return Built(
        s.write(bundle),
        ("mfr-121D expires", f"found {century.isoformat()}", "expected at most 730.0 days"),
    )


def role_expires_tomorrow(s: Scenario) -> Built:
    soon = s.factory.now + timedelta(days=1)

    def edit(signed: Targets) -> None:
        signed.expires = soon

    bundle = resign(s.good(), [s.key], edit)
    return Built(
        s.write(bundle),
        ("mfr-121D expires", f"found {soon.isoformat()}", "expected at least 30.0 days"),
    )


def _with_custodian(s: Scenario) -> None:
    publish_custodian(s.factory)


def notes_plaintext(s: Scenario) -> Built:
    bundle = replace(s.good(), release_notes=b"install at night")
    return Built(
        s.write(bundle),
        ("release-notes.txt", "found 16 bytes of plaintext", "expected release-notes.jwe"),
    )


def notes_recipients_registered_since(s: Scenario) -> Built:
    _with_custodian(s)
    bundle = s.submit("a3", ["CPL-0003"], release_notes=b"install at night")
    publish_registry(s.factory, [make_org("0011223344556677", "Volt Energy", "IS")])
    return Built(
        s.write(bundle),
        (
            "release-notes.jwe recipients",
            "found ['cfl-notes-custodian']",
            "missing ['0011223344556677']",
        ),
    )


def notes_not_named_by_image(s: Scenario) -> Built:
    _with_custodian(s)
    good = s.submit("a3", ["CPL-0003"], release_notes=b"install at night")

    def edit(signed: Targets) -> None:
        del signed.targets[good.target].custom["cfl"]["release_notes"]

    return Built(
        s.write(resign(good, [s.key], edit)),
        ("custom.cfl.release_notes.target", "found None", f"'{good.target}.notes.jwe'"),
    )


def manufacturer_suspended(s: Scenario) -> Built:
    from repo_tool.ops.manufacturer_keys import suspend

    with s.factory.repo.locked():
        suspend(s.factory.repo, MFR, "key compromise reported", now=s.factory.tick())
    return Built(
        s.write(s.good()),
        ("manufacturer_id", "found 121D, suspended by the provider", "key compromise reported"),
    )


def wrong_bin_not_split(s: Scenario) -> Built:
    # More wrong-bin cases (a split manufacturer's deposits and migrations): tests/repo/test_bins.py.
    return Built(
        s.write(replace(s.good(), role="mfr-121D-bin-0")),
        ("cfl-bundle.json role/bins", "found mfr-121D-bin-0", "expected the role mfr-121D alone"),
    )


CASES = [
    Case("malformed-image/truncated", Code.MALFORMED_IMAGE, malformed_image),
    Case("image-too-large/one-octet-over-cap", Code.IMAGE_TOO_LARGE, image_too_large),
    Case("hash-not-on-cpl/other-build", Code.HASH_NOT_ON_CPL, hash_not_on_cpl),
    Case(
        "manufacturer-mismatch/entry-of-another-maker",
        Code.MANUFACTURER_MISMATCH,
        manufacturer_mismatch,
    ),
    Case(
        "firmware-version-mismatch/entry-version",
        Code.FIRMWARE_VERSION_MISMATCH,
        firmware_version_mismatch,
    ),
    Case(
        "hardware-version-out-of-range/entry-hw",
        Code.HARDWARE_VERSION_OUT_OF_RANGE,
        hardware_version_out_of_range,
    ),
    Case("cpl-entry-not-active/cancelled", Code.CPL_ENTRY_NOT_ACTIVE, cpl_entry_cancelled),
    Case("cpl-entry-not-active/nonexistent", Code.CPL_ENTRY_NOT_ACTIVE, cpl_entry_nonexistent),
    Case("duplicate-image/same-bytes", Code.DUPLICATE_IMAGE, duplicate_same_bytes),
    Case("duplicate-image/entry-has-image", Code.DUPLICATE_IMAGE, duplicate_entry_has_image),
    Case("bad-signature/tampered", Code.BAD_SIGNATURE, bad_signature),
    Case("threshold-not-met/one-of-two", Code.THRESHOLD_NOT_MET, threshold_one_of_two),
    Case("threshold-not-met/unregistered-key", Code.THRESHOLD_NOT_MET, threshold_unregistered_key),
    Case("outside-delegation/other-prefix", Code.OUTSIDE_DELEGATION, outside_other_prefix),
    Case(
        "outside-delegation/delegates-further", Code.OUTSIDE_DELEGATION, outside_delegates_further
    ),
    Case("stale-role-version/replayed-version", Code.STALE_ROLE_VERSION, stale_version(1)),
    Case("stale-role-version/skipped-version", Code.STALE_ROLE_VERSION, stale_version(3)),
    Case("unknown-manufacturer/not-registered", Code.UNKNOWN_MANUFACTURER, unknown_manufacturer),
    Case("missing-declaration/no-entries", Code.MISSING_DECLARATION, missing_no_entries),
    Case("missing-declaration/security-no-advisory", Code.MISSING_DECLARATION, missing_advisory),
    Case("malformed-bundle/not-a-zip", Code.MALFORMED_BUNDLE, malformed_not_zip),
    Case("malformed-bundle/extra-member", Code.MALFORMED_BUNDLE, malformed_extra_member),
    Case("malformed-bundle/missing-role", Code.MALFORMED_BUNDLE, malformed_missing_role),
    Case(
        "target-metadata-mismatch/custom-firmware-version",
        Code.TARGET_METADATA_MISMATCH,
        mismatch_custom_firmware_version,
    ),
    Case("target-metadata-mismatch/length", Code.TARGET_METADATA_MISMATCH, mismatch_length),
    Case("target-metadata-mismatch/hash", Code.TARGET_METADATA_MISMATCH, mismatch_hash),
    Case("role-content-altered/dropped", Code.ROLE_CONTENT_ALTERED, altered_dropped),
    Case("role-content-altered/edited", Code.ROLE_CONTENT_ALTERED, altered_edited),
    Case(
        "declaration-inconsistent/two-device-types",
        Code.DECLARATION_INCONSISTENT,
        declaration_inconsistent,
    ),
    Case("role-expired/expired-yesterday", Code.ROLE_EXPIRED, role_expired),
    Case("role-expired/expires-tomorrow", Code.ROLE_EXPIRED, role_expires_tomorrow),
    Case("role-expiry-too-far/a-century", Code.ROLE_EXPIRY_TOO_FAR, role_expires_too_far),
    Case("notes-not-encrypted/plaintext-member", Code.NOTES_NOT_ENCRYPTED, notes_plaintext),
    Case(
        "notes-recipients-mismatch/registered-since-submit",
        Code.NOTES_RECIPIENTS_MISMATCH,
        notes_recipients_registered_since,
    ),
    Case(
        "notes-target-mismatch/not-named-by-image",
        Code.NOTES_TARGET_MISMATCH,
        notes_not_named_by_image,
    ),
    Case("manufacturer-suspended/suspended", Code.MANUFACTURER_SUSPENDED, manufacturer_suspended),
    Case("wrong-bin/manufacturer-not-split", Code.WRONG_BIN, wrong_bin_not_split),
]


# --------------------------------------------------------------------------------- assertions


def tree_digest(root: Path, *, skip: Sequence[str] = ()) -> dict[str, str]:
    """SHA-256 of every file below ``root`` (relative path -> digest), minus top-level ``skip``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


# The audit log and kept rejects are meant to grow; the lock file records the holder's pid.
REPO_SKIP = ("rejected", "events.jsonl", ".lock", "inbox")


@dataclass(frozen=True)
class Before:
    head: bytes
    repo: dict[str, str]
    public: dict[str, str]


def before(s: Scenario) -> Before:
    repo = s.factory.repo
    return Before(
        head=(repo.state_dir / "head.json").read_bytes(),
        repo=tree_digest(repo.path, skip=REPO_SKIP),
        public=tree_digest(s.factory.out),
    )


def assert_rejected_and_unchanged(
    s: Scenario, path: Path, result: IngestResult, was: Before
) -> None:
    repo = s.factory.repo
    assert result.status == "rejected"
    assert (repo.state_dir / "head.json").read_bytes() == was.head
    assert tree_digest(repo.path, skip=REPO_SKIP) == was.repo
    assert tree_digest(s.factory.out) == was.public
    assert result.kept_at is not None
    kept = repo.path / result.kept_at
    assert kept.parent == repo.path / "rejected"
    if Code.NOTES_NOT_ENCRYPTED.value in result.reasons:
        # The provider keeps no plaintext note, so such a bundle is reported but not copied.
        assert not (kept / path.name).exists()
    else:
        assert (kept / path.name).read_bytes() == path.read_bytes()
    report = json.loads((kept / "report.json").read_bytes())
    assert report["status"] == "rejected"
    assert report["reasons"] == result.reasons
    assert report["messages"] == result.messages
    event = json.loads((repo.path / "events.jsonl").read_bytes().splitlines()[-1])
    assert event["event"] == "ingest-rejected"
    assert event["reasons"] == result.reasons


# Codes that need a repository state the scenario here does not have, each with the test that
# rejects a real bundle with it.
CASES_ELSEWHERE = {
    # the targets key offline and a registered manufacturer never enrolled
    Code.NOT_ENROLLED: "tests/repo/test_enrolment.py::"
    "test_a_first_deposit_without_enrolment_is_rejected_alone_when_targets_is_offline",
    # advisory bundles: one named case per code in their own table
    **{
        code: "tests/repo/test_advisory_gateway.py::test_each_bad_advisory_is_refused_with_its_code"
        for code in (
            Code.ADVISORY_MALFORMED,
            Code.ADVISORY_TOO_LARGE,
            Code.ADVISORY_UNKNOWN_ENTRY,
            Code.ADVISORY_FIX_MISSING,
            Code.ADVISORY_FIX_NOT_APPLICABLE,
            Code.ADVISORY_STALE_REVISION,
        )
    },
}


def test_every_code_has_a_named_case() -> None:
    assert {case.code for case in CASES} | set(CASES_ELSEWHERE) == set(Code)
    for where in CASES_ELSEWHERE.values():
        path, _, name = where.partition("::")
        assert f"def {name}(" in (Path(__file__).parents[2] / path).read_text()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rejection(scenario: Scenario, case: Case) -> None:
    built = case.build(scenario)
    was = before(scenario)

    result = scenario.factory.ingest(built.path)

    assert result.reasons == [case.code.value], result.messages
    mine = [m for m in result.messages if m.startswith(f"{case.code.value}: ")]
    assert any(all(f in m for f in built.fragments) for m in mine), (built.fragments, mine)
    assert_rejected_and_unchanged(scenario, built.path, result, was)


def test_a_good_bundle_from_the_same_scenario_is_accepted(scenario: Scenario) -> None:
    """The control for every case above: unaltered, the base deposit passes."""
    result = scenario.factory.ingest(scenario.good())
    assert (result.status, result.reasons) == ("accepted", [])


def test_dcc_sample_layout_is_accepted_end_to_end(scenario: Scenario, tmp_path: Path) -> None:
    data = IMAGES["dcc"]
    assert data[6:10] == bytes.fromhex("3C000400")  # header length 60, field control 0x0004

    result = scenario.factory.deposit(data, ["CPL-0401"])

    sha = hashlib.sha256(data).hexdigest()
    assert result.target == image_target_path("121D", "ESME", "010A", "ACDCACDC", sha)
    library, problems = load_verified_library(
        folder_reader(scenario.factory.out), scenario.factory.root_bytes, now=scenario.factory.now
    )
    assert problems == []
    assert library is not None
    published = {i.target_path: i for i in library.images}[result.target]
    assert published.cfl.manufacturer_image_sha256 == hashlib.sha256(data[60:]).hexdigest()
    assert (published.cfl.hardware_version_min, published.cfl.hardware_version_max) == (
        "1111",
        "1112",
    )
    updater, _ = updater_for(scenario.factory, tmp_path / "client")
    updater.refresh()
    info = updater.get_targetinfo(result.target)
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == data


# -------------------------------------------------------------------------------------- attacks


@pytest.mark.parametrize(
    "name",
    ["121D/../3F01/ESME-0001-00000003-0123456789abcdef.ota", "121D/sub/ESME-0001-00000003.ota"],
    ids=["dot-dot", "slash-in-name"],
)
def test_target_path_escaping_its_segment_is_outside_delegation(
    scenario: Scenario, name: str
) -> None:
    bundle = rename_target(scenario.good(), scenario.key, name)
    path = scenario.write(bundle)
    was = before(scenario)

    result = scenario.factory.ingest(path)

    assert Code.OUTSIDE_DELEGATION.value in result.reasons
    assert any(f"found {name!r}" in m for m in result.messages)
    assert_rejected_and_unchanged(scenario, path, result, was)
    assert not (scenario.factory.out / "targets" / "3F01").exists()


def test_manifest_claiming_another_manufacturer_is_rejected(scenario: Scenario) -> None:
    """121D signs its own role and image, but the manifest says 3F01 (registered, no deposits)."""
    good = scenario.good()
    path = scenario.write(replace(good, manufacturer_id="3F01"))
    was = before(scenario)

    result = scenario.factory.ingest(path)

    # 3F01's keys did not sign; the header names 121D; the target is outside 3F01/*.
    assert {
        Code.THRESHOLD_NOT_MET.value,
        Code.MANUFACTURER_MISMATCH.value,
        Code.OUTSIDE_DELEGATION.value,
    } <= set(result.reasons)
    assert any(
        "found 121D, expected 3F01 (the submitting manufacturer)" in m for m in result.messages
    )
    assert_rejected_and_unchanged(scenario, path, result, was)
    assert "mfr-3F01" not in scenario.factory.repo.head.roles


def _deflate_bomb(members: list[tuple[str, bytes]], bomb_name: str, inflated: int) -> bytes:
    """A bundle whose ``bomb_name`` member declares 1000 octets but inflates to ``inflated``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, content in members:
            if member != bomb_name:
                archive.writestr(member, content)
        info = zipfile.ZipInfo(bomb_name)
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = b"\0" * (1 << 20)
        with archive.open(info, "w") as handle:
            for _ in range(inflated // len(chunk)):
                handle.write(chunk)
    raw = bytearray(buffer.getvalue())
    declared = 1000
    # Lie in both the local header (uncompressed size at +22) and the central directory (+24).
    encoded = bomb_name.encode()
    local = raw.index(b"PK\x03\x04")
    while raw[local + 30 : local + 30 + len(encoded)] != encoded:
        local = raw.index(b"PK\x03\x04", local + 4)
    struct.pack_into("<I", raw, local + 22, declared)
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(encoded)] != encoded:
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", raw, central + 24, declared)
    return bytes(raw)


def test_zip_bomb_member_is_rejected_without_inflating_it(scenario: Scenario) -> None:
    inflated = 128 * 1024 * 1024
    members = members_of(scenario.write(scenario.good()))
    bomb = _deflate_bomb(members, IMAGE, inflated)
    assert len(bomb) < 2 * 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.getinfo(IMAGE).file_size == 1000  # the lie the reader sees
    path = scenario.raw(bomb)
    was = before(scenario)

    tracemalloc.start()
    try:
        result = scenario.factory.ingest(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert any(IMAGE in m for m in result.messages)
    assert peak < inflated // 8, f"peak {peak} bytes while reading a bomb of {inflated}"
    assert_rejected_and_unchanged(scenario, path, result, was)


def test_manifest_member_is_read_within_its_limit(scenario: Scenario) -> None:
    """A manifest declared larger than its 1 MB limit is refused before it is read."""
    members = [
        (MANIFEST, b" " * 1_000_001 + b"{}") if name == MANIFEST else (name, data)
        for name, data in members_of(scenario.write(scenario.good()))
    ]
    path = scenario.raw(zip_members(members))
    was = before(scenario)

    result = scenario.factory.ingest(path)

    assert result.reasons == [Code.MALFORMED_BUNDLE.value]
    assert any(
        "cfl-bundle.json: found 1000003 bytes, expected at most 1000000" in m
        for m in result.messages
    )
    assert_rejected_and_unchanged(scenario, path, result, was)


def test_rejected_bundles_with_the_same_name_are_all_kept(scenario: Scenario) -> None:
    path = malformed_not_zip(scenario).path
    first = scenario.factory.ingest(path)
    second = scenario.factory.ingest(path)
    assert first.kept_at != second.kept_at
    assert first.kept_at is not None and second.kept_at is not None
    repo = scenario.factory.repo.path
    assert (repo / first.kept_at / "report.json").is_file()
    assert (repo / second.kept_at / "report.json").is_file()


def test_write_bundle_round_trip_is_what_the_gateway_reads(scenario: Scenario) -> None:
    """Guard for the helpers above: a bundle written by `write_bundle` has exactly these members."""
    path = scenario.factory.tmp / "roundtrip.cflb"
    write_bundle(path, scenario.good())
    assert [name for name, _ in members_of(path)] == [MANIFEST, IMAGE, ROLE]
