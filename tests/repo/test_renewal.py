"""Role renewal: a manufacturer re-signs its role with a later expiry and the same images, so a
library that grows for decades never strands a manufacturer whose role is about to expire."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile, Targets

from factory import LibraryFactory, make_image, standard_library, updater_for
from repo_tool.intake.bundle import Bundle, read_bundle, write_bundle
from repo_tool.submit.deposit import build_renewal
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library


def _renewal(factory: LibraryFactory, mfr: str = "121D", **kwargs: object) -> Bundle:
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    return build_renewal(
        manufacturer_id=mfr,
        signers=[factory.mfr_signers[mfr]],
        library=library,
        now=factory.now,
        **kwargs,
    ).bundle  # type: ignore[arg-type]


def _resigned(bundle: Bundle, signer: CryptoSigner, change: object) -> Bundle:
    md = Metadata[Targets].from_bytes(bundle.role_bytes)
    change(md.signed)  # type: ignore[operator]
    md.signatures.clear()
    md.sign(signer)
    return Bundle(
        bundle.manufacturer_id, "", bundle.declaration, b"", md.to_bytes(), None, bundle.kind
    )


def test_renewal_extends_the_role_and_clients_see_the_same_images(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    before = factory.repo.role("mfr-121D").signed
    path = factory.write(_renewal(factory, expiry=timedelta(days=730)), "renew")
    assert read_bundle(path).kind == "renewal"
    result = factory.ingest(path)
    assert result.status == "accepted", result.messages
    factory.publish()
    after = factory.repo.role("mfr-121D").signed
    assert after.version == before.version + 1
    assert after.expires > before.expires
    assert after.targets == before.targets
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    for name in ("a2", "a3"):
        sha = hashlib.sha256(images[name]).hexdigest()
        path_ = next(p for p, t in after.targets.items() if t.hashes["sha256"] == sha)
        info = updater.get_targetinfo(path_)
        assert info is not None and info.hashes["sha256"] == sha
    assert '"ingest-renewal"' in (factory.repo.path / "events.jsonl").read_text()


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("adds-a-target", "target-metadata-mismatch"),
        ("drops-a-target", "role-content-altered"),
        ("does-not-extend", "role-expired"),
        ("skips-a-version", "stale-role-version"),
        ("wrong-key", "bad-signature"),
    ],
)
def test_bad_renewals_are_rejected_and_change_nothing(tmp_path: Path, case: str, code: str) -> None:
    factory, _ = standard_library(tmp_path)
    good = _renewal(factory)
    signer = factory.mfr_signers["121D"]
    current = factory.repo.role("mfr-121D").signed

    def add(t: Targets) -> None:
        data = make_image("121D", 9)
        t.targets["121D/x.ota"] = TargetFile.from_data("121D/x.ota", data)

    def drop(t: Targets) -> None:
        t.targets.pop(sorted(t.targets)[0])

    def keep_expiry(t: Targets) -> None:
        t.expires = current.expires

    def skip(t: Targets) -> None:
        t.version += 1

    changes = {
        "adds-a-target": add,
        "drops-a-target": drop,
        "does-not-extend": keep_expiry,
        "skips-a-version": skip,
    }
    if case == "wrong-key":
        md = Metadata[Targets].from_bytes(good.role_bytes)
        forged = md.signatures[signer.public_key.keyid]
        forged.signature = "00" * 64
        bundle = Bundle(
            good.manufacturer_id, "", good.declaration, b"", md.to_bytes(), None, good.kind
        )
    else:
        bundle = _resigned(good, signer, changes[case])
    head = (factory.repo.state_dir / "head.json").read_bytes()
    result = factory.ingest(bundle, f"renew-{case}")
    assert result.status == "rejected"
    assert code in result.reasons, result.messages
    assert (factory.repo.state_dir / "head.json").read_bytes() == head


def test_renewal_without_a_published_role_is_refused_at_submit(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    factory.import_cpl([])
    factory.add_manufacturer("121D")
    factory.publish()
    with pytest.raises(Exception, match="found no published role"):
        _renewal(factory)


def test_renewal_bundle_with_an_image_member_is_malformed(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path)
    bundle = _renewal(factory)
    path = tmp_path / "odd.cflb"
    write_bundle(
        path,
        Bundle(
            bundle.manufacturer_id,
            "121D/x.ota",
            bundle.declaration,
            images["a2"],
            bundle.role_bytes,
            None,
            "deposit",
        ),
    )
    # Rewrite the manifest's kind by hand: a "renewal" that still carries an image.
    import json
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members["cfl-bundle.json"])
    manifest["kind"] = "renewal"
    members["cfl-bundle.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    result = factory.ingest(path)
    assert result.reasons == ["malformed-bundle"]
    assert "in a renewal" in result.messages[0]
