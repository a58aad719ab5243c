"""The supplier's client on a library whose manufacturers are split into hash bins (TAP 15): every
image of a split manufacturer is listed (each bin loaded through client/trust/session.py, which pins the
private ngclient call), a warm refresh after one deposit fetches one bin, and a forged bin cuts off
only its own manufacturer."""

from __future__ import annotations

import json
from pathlib import Path

from tuf.api.metadata import Metadata, Targets

from client.trust.library import load_catalogue
from client.trust.session import Session, SessionPaths
from factory import FolderFetcher, LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from repo_tool.submit.bins import build_split
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

BITS = 2


def _session(tmp_path: Path, fetcher: FolderFetcher, root: bytes) -> Session:
    paths = SessionPaths(tmp_path / "home" / "metadata", tmp_path / "home" / "cache")
    return Session(paths, fetcher.base_url, fetcher, bootstrap_root=root)


def _split(factory: LibraryFactory, mfr: str = "121D") -> None:
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    bundle, _ = build_split(
        manufacturer_id=mfr,
        bit_length=BITS,
        signers=[factory.mfr_signers[mfr]],
        library=library,
        now=factory.now,
    )
    assert factory.ingest(bundle, "split").status == "accepted"
    factory.publish()


def _split_library(tmp_path: Path) -> LibraryFactory:
    factory, _ = standard_library(tmp_path)
    _split(factory)
    return factory


def test_every_image_of_a_split_manufacturer_is_listed_from_its_bins(tmp_path: Path) -> None:
    factory = _split_library(tmp_path)
    fetcher = FolderFetcher(factory.out)
    session = _session(tmp_path, fetcher, factory.root_bytes)
    loaded = session.load_manufacturers(["121D"])
    assert loaded.unverified == ()
    assert len(loaded.targets) == 2
    for target in loaded.targets:
        assert target.role == naming.bin_for_target("121D", target.path, BITS)
    # Private ngclient use pinned: `_load_targets(bin, parent)` verifies the bin with the
    # manufacturer role's succinct delegation and leaves it in the trusted set.
    for name in naming.bin_roles("121D", BITS):
        assert session._trusted_role(name).version == 1
    bins_fetched = sorted(f for f in fetcher.fetched if "-bin-" in f)
    assert bins_fetched == sorted(f"metadata/1.{n}.json" for n in naming.bin_roles("121D", BITS))
    catalogue = load_catalogue(_session(tmp_path / "again", fetcher, factory.root_bytes), None)
    assert len(catalogue.images) == 3 and catalogue.unverified == ()


def test_warm_refresh_after_one_deposit_fetches_one_bin(tmp_path: Path) -> None:
    factory = _split_library(tmp_path)
    image = make_image("121D", 7)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0070", fw="00000007", image_sha=mi_sha(image))]
    )
    factory.publish()
    _session(tmp_path, FolderFetcher(factory.out), factory.root_bytes).load_manufacturers(None)
    bundle = factory.submit(image, ["CPL-0070"])
    assert factory.ingest(bundle).status == "accepted"
    factory.publish()
    fetcher = FolderFetcher(factory.out)
    loaded = _session(tmp_path, fetcher, factory.root_bytes).load_manufacturers(None)
    assert len(loaded.targets) == 4
    roles = [f for f in fetcher.fetched if "mfr-" in f]
    assert roles == [f"metadata/2.{bundle.role}.json"]


def test_a_forged_bin_cuts_off_only_its_manufacturer(tmp_path: Path) -> None:
    factory = _split_library(tmp_path)
    fetcher = FolderFetcher(factory.out)
    victim = naming.bin_roles("121D", BITS)[0]
    data = (factory.out / "metadata" / f"1.{victim}.json").read_bytes()
    md = Metadata[Targets].from_bytes(data)
    md.signed.targets.clear()
    md.signed.version = 1
    forged = json.loads(md.to_bytes())  # the old signature no longer covers the content
    fetcher.tamper[f"metadata/1.{victim}.json"] = json.dumps(forged).encode()
    loaded = _session(tmp_path, fetcher, factory.root_bytes).load_manufacturers(None)
    assert [u.manufacturer_id for u in loaded.unverified] == ["121D"]
    assert {t.path.split("/")[0] for t in loaded.targets} == {"3F01"}
