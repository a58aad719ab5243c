"""`cfl-repo submit` verifies only what it signs on top of (repo_tool/submit/scope.py).

The root chain, timestamp, snapshot, targets and the provider's documents are always verified; of
the manufacturers, only the submitter's own role and, once split, the bin(s) a deposit goes to
(every own bin for a renewal or split). What it does read is verified as fully as `verify` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from test_repo_cli import PASSPHRASE, Lib, built, lib, ok, run  # noqa: F401 (the command tests' library fixtures)
from tuf.api.metadata import Metadata, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from metadata_templates.errors import RejectedInputError, VerificationError
from repo_tool.intake.bundle import Bundle, Declaration, read_bundle
from repo_tool.submit.bins import build_split
from repo_tool.submit.deposit import build_renewal, build_submission, load_source_library
from repo_tool.submit.scope import load_for_deposit, manufacturer_roles
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import Reader, folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

BITS = 3
MFR = "121D"


class CountingReader:
    """A Reader over the published folder that records every path read."""

    def __init__(self, out: Path) -> None:
        self.read_one: Reader = folder_reader(out)
        self.paths: list[str] = []

    def __call__(self, relative: str) -> bytes:
        self.paths.append(relative)
        return self.read_one(relative)

    def roles_read(self) -> set[str]:
        """The delegated roles read (``metadata/<version>.<role>.json``), by name."""
        names = {
            p.removeprefix("metadata/").split(".", 1)[1].removesuffix(".json")
            for p in self.paths
            if p.startswith("metadata/") and p.count(".") >= 2
        }
        return {n for n in names if naming.owner_of_role(n) is not None}


def _split_library(tmp_path: Path) -> tuple[LibraryFactory, bytes]:
    """121D split into 8 bins, 3F01 not split, and one more 121D image on the CPL to deposit."""
    factory, _ = standard_library(tmp_path)
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    split, _ = build_split(
        manufacturer_id=MFR,
        bit_length=BITS,
        signers=[factory.mfr_signers[MFR]],
        library=library,
        now=factory.now,
    )
    assert factory.ingest(split, "split").status == "accepted"
    new = make_image(MFR, 7)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0070", fw="00000007", image_sha=mi_sha(new))]
    )
    factory.publish()
    return factory, new


def _load(factory: LibraryFactory, read: Reader, image: bytes) -> PublishedLibrary:
    return load_for_deposit(
        str(factory.out),
        read,
        factory.root_bytes,
        now=factory.tick(),
        manufacturer_id=MFR,
        image=image,
        cpl_entry_ids=["CPL-0070"],
        with_notes=False,
    )


def _sign_deposit(factory: LibraryFactory, image: bytes, library: PublishedLibrary) -> Bundle:
    return build_submission(
        image=image,
        manufacturer_id=MFR,
        signers=[factory.mfr_signers[MFR]],
        declaration=Declaration(("CPL-0070",), "compliance", ()),
        release_notes=None,
        library=library,
        now=factory.now,
    ).bundle


def _full(factory: LibraryFactory) -> PublishedLibrary:
    return verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now, check_blobs=False
    )


def _metadata_file(factory: LibraryFactory, role: str) -> Path:
    return factory.out / "metadata" / f"{factory.repo.head.roles[role]}.{role}.json"


def _bins(factory: LibraryFactory, image: bytes) -> tuple[str, str]:
    """The bin the deposit of ``image`` goes to, and another bin of the same manufacturer."""
    needed = _sign_deposit(factory, image, _full(factory)).role
    other = next(n for n in naming.bin_roles(MFR, BITS) if n != needed)
    return needed, other


def test_a_deposit_into_a_split_manufacturer_reads_only_the_bin_it_goes_to(
    tmp_path: Path,
) -> None:
    factory, image = _split_library(tmp_path)
    reader = CountingReader(factory.out)
    bundle = _sign_deposit(factory, image, _load(factory, reader, image))
    assert bundle.role == naming.bin_for_target(MFR, bundle.target, BITS)
    assert reader.roles_read() == {naming.role_name(MFR), bundle.role}
    # The very bytes a fully verified library gives: nothing the deposit needs was left out.
    assert _sign_deposit(factory, image, _full(factory)).role_bytes == bundle.role_bytes


def test_a_renewal_reads_every_own_bin_and_no_other_manufacturer(tmp_path: Path) -> None:
    factory, _ = _split_library(tmp_path)
    reader = CountingReader(factory.out)
    library = load_source_library(
        str(factory.out),
        reader,
        factory.root_bytes,
        now=factory.tick(),
        wanted=manufacturer_roles(MFR),
    )
    assert reader.roles_read() == {naming.role_name(MFR), *naming.bin_roles(MFR, BITS)}
    renewal = build_renewal(
        manufacturer_id=MFR, signers=[factory.mfr_signers[MFR]], library=library, now=factory.now
    )
    assert factory.ingest(renewal.bundle, "renewal").status == "accepted"


@pytest.mark.parametrize("how", ["forged", "missing", "truncated"])
def test_a_bad_bin_the_deposit_needs_is_refused(tmp_path: Path, how: str) -> None:
    factory, image = _split_library(tmp_path)
    needed, _ = _bins(factory, image)
    path = _metadata_file(factory, needed)
    if how == "forged":
        md = Metadata[Targets].from_bytes(path.read_bytes())
        md.signed.expires = md.signed.expires.replace(year=md.signed.expires.year + 1)
        md.signatures.clear()  # re-signed by a key the manufacturer never delegated
        md.sign(CryptoSigner.generate_ed25519())
        path.write_bytes(md.to_bytes())
    elif how == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(VerificationError, match=needed):
        _load(factory, folder_reader(factory.out), image)


@pytest.mark.parametrize("where", ["other bin", "other manufacturer"])
def test_a_tampered_role_the_deposit_does_not_need_does_not_stop_it_but_verify_catches_it(
    tmp_path: Path, where: str
) -> None:
    factory, image = _split_library(tmp_path)
    _, other = _bins(factory, image)
    role = other if where == "other bin" else naming.role_name("3F01")
    path = _metadata_file(factory, role)
    path.write_bytes(path.read_bytes().replace(b'"version"', b'"versiom"', 1))
    bundle = _sign_deposit(factory, image, _load(factory, folder_reader(factory.out), image))
    assert factory.ingest(bundle).status == "accepted"
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert any(role in p for p in problems), problems


def test_an_image_already_in_its_bin_is_refused_from_the_narrow_view(tmp_path: Path) -> None:
    factory, image = _split_library(tmp_path)
    assert factory.ingest(_sign_deposit(factory, image, _full(factory))).status == "accepted"
    factory.publish()
    with pytest.raises(RejectedInputError, match="already"):
        _sign_deposit(factory, image, _load(factory, folder_reader(factory.out), image))


def test_the_filter_keeps_provider_roles_and_only_the_named_bins() -> None:
    wanted = manufacturer_roles(MFR, bins={f"{naming.bin_name_prefix(MFR)}-3"})
    assert wanted("cfl-provider") and wanted(naming.role_name(MFR))
    assert wanted(f"{naming.bin_name_prefix(MFR)}-3")
    assert not wanted(f"{naming.bin_name_prefix(MFR)}-4")
    assert not wanted(naming.role_name("3F01")) and not wanted(
        f"{naming.bin_name_prefix('3F01')}-3"
    )
    every = manufacturer_roles(MFR)
    assert every(f"{naming.bin_name_prefix(MFR)}-4") and not every(naming.role_name("3F01"))


def test_a_deposit_with_notes_reads_the_image_bin_and_the_notes_bin(tmp_path: Path) -> None:
    from bins_factory import notes_split_library

    factory, bundle = notes_split_library(tmp_path)
    reader = CountingReader(factory.out)
    library = load_for_deposit(
        str(factory.out),
        reader,
        factory.root_bytes,
        now=factory.tick(),
        manufacturer_id=MFR,
        image=bundle.image,
        cpl_entry_ids=["CPL-0003"],
        with_notes=True,
    )
    # The bins the published deposit signed: the image's, and its notes' when that is another.
    signed = {bundle.role, *(name for name, _ in bundle.bins)}
    assert reader.roles_read() == {naming.role_name(MFR), *signed}
    assert signed <= set(library.role_metadata)


def _published_file(out: Path, role: str) -> Path:
    snapshot = json.loads((out / "metadata" / "timestamp.json").read_bytes())["signed"]["meta"]
    version = snapshot["snapshot.json"]["version"]
    meta = json.loads((out / "metadata" / f"{version}.snapshot.json").read_bytes())["signed"][
        "meta"
    ]
    return out / "metadata" / f"{meta[role + '.json']['version']}.{role}.json"


def test_the_command_deposits_past_a_damaged_bin_it_does_not_need_but_not_one_it_needs(
    lib: Lib,  # noqa: F811
) -> None:
    env = {"CFL_KEY_PASSPHRASE": PASSPHRASE}
    common = ("--manufacturer", "121D", "--key", lib.key, "--from", lib.out, "--root", lib.root)
    split = lib.base / "outbox" / "split.cflb"
    ok("submit", "--split-bins", "2", *common, "--out", split, env=env)
    ok("--repo", lib.repo, "ingest", split)
    ok("--repo", lib.repo, "publish", "--no-site")
    needed = read_bundle(lib.submit("a3.ota", "CPL-0003", "first.cflb")).role
    other = next(n for n in naming.bin_roles("121D", 2) if n != needed)
    damaged = _published_file(lib.out, other)
    damaged.write_bytes(damaged.read_bytes().replace(b'"signed"', b'"signet"', 1))
    bundle = read_bundle(lib.submit("a3.ota", "CPL-0003", "second.cflb"))
    assert bundle.role == needed
    verify = run("verify", lib.out, "--root", lib.root)
    assert verify.returncode == 1 and other in verify.stderr and "Traceback" not in verify.stderr
    _published_file(lib.out, needed).write_bytes(b"{}")
    args = ("submit", lib.base / "images" / "a3.ota", "--cpl-entry", "CPL-0003")
    refused = run(*args, "--reason", "compliance", *common, "--out", lib.base / "x.cflb", env=env)
    assert refused.returncode == 1, refused.stderr
    assert needed in refused.stderr and "Traceback" not in refused.stderr
    assert not (lib.base / "x.cflb").exists()


def test_an_unknown_cpl_entry_or_a_malformed_image_gets_the_deposit_s_own_errors(
    tmp_path: Path,
) -> None:
    factory, image = _split_library(tmp_path)
    read = folder_reader(factory.out)
    library = load_for_deposit(
        str(factory.out),
        read,
        factory.root_bytes,
        now=factory.tick(),
        manufacturer_id=MFR,
        image=image,
        cpl_entry_ids=["CPL-9999"],
        with_notes=False,
    )
    with pytest.raises(RejectedInputError, match="expected IDs on the published CPL"):
        build_submission(
            image=image,
            manufacturer_id=MFR,
            signers=[factory.mfr_signers[MFR]],
            declaration=Declaration(("CPL-9999",), "compliance", ()),
            release_notes=None,
            library=library,
            now=factory.now,
        )
    with pytest.raises(RejectedInputError):
        _load(factory, read, image[:20])
