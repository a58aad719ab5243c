"""Succinct hash bins (TAP 15) inside a manufacturer's delegation: the contract, the split (migration)
bundle and its attacks, deposits and renewals into bins, and clients resolving every image."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from bins_factory import notes_split_library
from securesystemslib.signer import CryptoSigner
from test_repo_cli import PASSPHRASE, Lib, built, lib, ok, run  # noqa: F401 (the command tests' library fixtures)
from tuf.api.metadata import Metadata, SuccinctRoles, TargetFile, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library, updater_for
from metadata_templates import naming
from metadata_templates.errors import RejectedInputError
from metadata_templates.policy import DEFAULT_POLICY, RolePolicy
from repo_tool.intake.bundle import Bundle, read_bundle
from repo_tool.ops.status import status_report
from repo_tool.submit.bins import build_split
from repo_tool.submit.deposit import build_renewal
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

# ------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("bits", [1, 4, 5, 8])
def test_bin_for_target_is_what_ngclient_walks(bits: int) -> None:
    rule = SuccinctRoles([], 1, bits, "mfr-121D-bin")
    for n in range(200):
        path = f"121D/ESME-0001-{n:08X}-{n:016x}.ota"
        assert naming.bin_for_target("121D", path, bits) == rule.get_role_for_target(path)
    assert naming.bin_roles("121D", bits) == list(rule.get_roles())


def test_bin_role_names_say_whose_they_are() -> None:
    assert naming.bin_roles("121d", 4)[10] == "mfr-121D-bin-a"
    assert naming.manufacturer_of_bin("mfr-121D-bin-0a") == "121D"
    assert naming.owner_of_role("mfr-121D-bin-0a") == "121D"
    assert naming.owner_of_role("mfr-121D") == "121D"
    for not_a_bin in ("mfr-121D", "mfr-121D-bin-", "mfr-121D-bin-0A", "cfl-provider", "targets"):
        assert naming.manufacturer_of_bin(not_a_bin) is None
    assert naming.manufacturer_of_role("mfr-121D-bin-0") is None


@pytest.mark.parametrize(
    ("targets", "bits"),
    [(0, 1), (128, 1), (129, 2), (1024, 4), (1025, 5), (10_000, 8), (10**9, 16)],
)
def test_the_policy_suggests_bins_of_at_most_max_targets(targets: int, bits: int) -> None:
    assert DEFAULT_POLICY.bin_bit_length_for(targets) == bits


@pytest.mark.parametrize("bits", [0, 17, True])
def test_policy_refuses_a_bin_count_out_of_range(bits: object) -> None:
    with pytest.raises(ValueError, match="manufacturer_bin_bit_length"):
        RolePolicy.from_dict(DEFAULT_POLICY.to_dict() | {"manufacturer_bin_bit_length": bits})


# ---------------------------------------------------------------------------------- helpers


def _library(factory: LibraryFactory) -> PublishedLibrary:
    return verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )


def _split_bundle(factory: LibraryFactory, bits: int, mfr: str = "121D") -> Bundle:
    bundle, _ = build_split(
        manufacturer_id=mfr,
        bit_length=bits,
        signers=[factory.mfr_signers[mfr]],
        library=_library(factory),
        now=factory.now,
    )
    return bundle


def _split(factory: LibraryFactory, bits: int, mfr: str = "121D") -> None:
    result = factory.ingest(_split_bundle(factory, bits, mfr), f"split-{bits}")
    assert result.status == "accepted", result.messages
    factory.publish()


def _resign(data: bytes, signer: CryptoSigner, change: object = None) -> bytes:
    md = Metadata[Targets].from_bytes(data)
    if change is not None:
        change(md.signed)  # type: ignore[operator]
    md.signatures.clear()
    md.sign(signer)
    return md.to_bytes()


def _events(factory: LibraryFactory) -> list[dict[str, object]]:
    lines = (factory.repo.path / "events.jsonl").read_bytes().splitlines()
    return [json.loads(line) for line in lines]


def _all_targets(factory: LibraryFactory, mfr: str = "121D") -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for name in factory.repo.head.roles:
        if naming.owner_of_role(name) == mfr:
            found.update(
                {p: t.to_dict() for p, t in factory.repo.role(name).signed.targets.items()}
            )
    return found


# ------------------------------------------------------------------------------------ migration


def test_split_moves_every_image_into_its_bin_and_clients_still_resolve_them(
    tmp_path: Path,
) -> None:
    factory, images = standard_library(tmp_path)
    before = _all_targets(factory)
    path = factory.write(_split_bundle(factory, 2), "split")
    assert read_bundle(path).kind == "split-bins"
    result = factory.ingest(path)
    assert result.status == "accepted", result.messages
    factory.publish()

    head = factory.repo.head.roles
    assert sorted(n for n in head if naming.manufacturer_of_bin(n) == "121D") == naming.bin_roles(
        "121D", 2
    )
    assert factory.repo.role("mfr-121D").signed.targets == {}
    assert _all_targets(factory) == before  # byte for byte, each in its bin
    for name in naming.bin_roles("121D", 2):
        for target in factory.repo.role(name).signed.targets:
            assert naming.bin_for_target("121D", target, 2) == name
    event = next(e for e in reversed(_events(factory)) if e["event"] == "manufacturer-bins")
    assert event["bit_length"] == 2 and event["role"] == "mfr-121D"
    assert event["targets"] == len(before)

    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == [] and library is not None
    assert {i.target_path for i in library.images} >= {
        p for p in before if naming.is_image_target_path(p)
    }
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    for image in images.values():
        sha = hashlib.sha256(image).hexdigest()
        path_ = next((p for p, t in before.items() if t["hashes"] == {"sha256": sha}), None)
        if path_ is None:
            continue  # the other manufacturer
        info = updater.get_targetinfo(path_)
        assert info is not None and info.hashes["sha256"] == sha


def test_growing_the_bin_count_is_the_same_event_and_drops_the_old_bins(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    before = _all_targets(factory)
    _split(factory, 1)
    _split(factory, 5)
    bins = sorted(n for n in factory.repo.head.roles if naming.manufacturer_of_bin(n) == "121D")
    assert bins == naming.bin_roles("121D", 5)
    assert _all_targets(factory) == before
    assert [e["bit_length"] for e in _events(factory) if e["event"] == "manufacturer-bins"] == [
        1,
        5,
    ]
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == []


def test_split_to_the_same_or_fewer_bins_is_refused_at_the_manufacturer(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 2)
    with pytest.raises(Exception, match="--split-bins: found 2, expected more than today's 2"):
        _split_bundle(factory, 2)


def _tampered_split(factory: LibraryFactory, bits: int, how: str) -> Bundle:
    bundle = _split_bundle(factory, bits)
    signer = factory.mfr_signers["121D"]
    bins = dict(bundle.bins)
    full = next(n for n, d in bins.items() if Metadata[Targets].from_bytes(d).signed.targets)
    other = next(n for n in bins if n != full)
    if how == "dropped-target":
        bins[full] = _resign(bins[full], signer, lambda s: s.targets.popitem())
    elif how == "wrong-bin":
        moved = Metadata[Targets].from_bytes(bins[full]).signed.targets
        path, target = next(iter(moved.items()))
        bins[full] = _resign(bins[full], signer, lambda s: s.targets.pop(path))
        bins[other] = _resign(bins[other], signer, lambda s: s.targets.__setitem__(path, target))
    elif how == "wrong-key":
        bins[full] = _resign(bins[full], CryptoSigner.generate_ed25519())
    elif how == "bin-missing":
        del bins[other]
    elif how == "altered-target":
        bins[full] = _resign(
            bins[full],
            signer,
            lambda s: next(iter(s.targets.values())).unrecognized_fields.__setitem__("custom", {}),
        )
    elif how == "added-target":
        moved = Metadata[Targets].from_bytes(bins[full]).signed.targets
        target = next(iter(moved.values()))

        def add(s: Targets) -> None:
            for n in range(1000):  # a path the rule assigns to this bin
                path = f"121D/ESME-0001-{n:08X}-{n:016x}.ota"
                if naming.bin_for_target("121D", path, bits) == full:
                    s.targets[path] = TargetFile.from_dict(target.to_dict(), path)
                    return

        bins[full] = _resign(bins[full], signer, add)
    elif how == "keys-swapped":
        stranger = CryptoSigner.generate_ed25519()
        return replace(
            bundle,
            role_bytes=_resign(
                bundle.role_bytes,
                signer,
                lambda s: (
                    s.delegations.keys.clear(),  # type: ignore[union-attr]
                    s.delegations.keys.__setitem__(  # type: ignore[union-attr]
                        stranger.public_key.keyid, stranger.public_key
                    ),
                    setattr(
                        s.delegations.succinct_roles,  # type: ignore[union-attr]
                        "keyids",
                        [stranger.public_key.keyid],
                    ),
                ),
            ),
        )
    return replace(bundle, bins=tuple(sorted(bins.items())))


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("dropped-target", "role-content-altered"),
        ("wrong-bin", "wrong-bin"),
        ("wrong-key", "threshold-not-met"),
        ("bin-missing", "wrong-bin"),
        ("altered-target", "role-content-altered"),
        ("added-target", "target-metadata-mismatch"),
        ("keys-swapped", "wrong-bin"),
    ],
    ids=lambda v: str(v),
)
def test_a_forged_split_is_rejected_and_changes_nothing(
    tmp_path: Path, how: str, code: str
) -> None:
    factory, _ = standard_library(tmp_path)
    head = factory.repo.head
    result = factory.ingest(_tampered_split(factory, 2, how), "forged")
    assert result.status == "rejected"
    assert code in result.reasons, result.messages
    assert factory.repo.head.roles == head.roles
    assert factory.repo.head.event_seq == head.event_seq


# ------------------------------------------------------------------------------ deposits into bins


def _two_more_images(factory: LibraryFactory) -> list[bytes]:
    new = [make_image("121D", fw) for fw in (7, 8)]
    factory.import_cpl(
        factory.entries
        + [
            make_entry(f"CPL-00{fw}0", fw=f"0000000{fw}", image_sha=mi_sha(img))
            for fw, img in zip((7, 8), new, strict=True)
        ]
    )
    factory.publish()
    return new


def test_a_deposit_after_the_split_re_signs_one_bin_only(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 3)
    new = _two_more_images(factory)
    roles_before = dict(factory.repo.head.roles)
    bundle = factory.submit(new[0], ["CPL-0070"])
    assert bundle.role == naming.bin_for_target("121D", bundle.target, 3)
    assert bundle.bins == ()
    factory.ingest(bundle)
    factory.publish()
    changed = {n for n, v in factory.repo.head.roles.items() if roles_before.get(n) != v}
    assert changed == {bundle.role}
    factory.deposit(new[1], ["CPL-0080"])
    updater, _fetcher = updater_for(factory, tmp_path / "client")
    updater.refresh()
    info = updater.get_targetinfo(bundle.target)
    assert info is not None and info.hashes["sha256"] == hashlib.sha256(new[0]).hexdigest()
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == []


def _deposit_attack(factory: LibraryFactory, bundle: Bundle, how: str) -> Bundle:
    signer = factory.mfr_signers["121D"]
    if how == "wrong-bin":
        other = next(n for n in naming.bin_roles("121D", 3) if n != bundle.role)
        lib = _library(factory)
        target = Metadata[Targets].from_bytes(bundle.role_bytes).signed.targets[bundle.target]
        current = lib.role_metadata[other]
        data = _resign(
            current.to_bytes(),
            signer,
            lambda s: (
                setattr(s, "version", s.version + 1),
                s.targets.__setitem__(bundle.target, target),
            ),
        )
        return replace(bundle, role=other, role_bytes=data)
    if how == "not-a-bin":
        return replace(bundle, role="mfr-121D-bin-99")
    if how == "wrong-key":
        return replace(
            bundle, role_bytes=_resign(bundle.role_bytes, CryptoSigner.generate_ed25519())
        )
    if how == "stale-version":
        return replace(
            bundle,
            role_bytes=_resign(
                bundle.role_bytes, signer, lambda s: setattr(s, "version", s.version + 1)
            ),
        )
    if how == "old-style":
        return replace(bundle, role="")
    if how == "dropped-target":

        def drop(s: Targets) -> None:
            for path in [p for p in s.targets if p != bundle.target][:1]:
                del s.targets[path]

        return replace(bundle, role_bytes=_resign(bundle.role_bytes, signer, drop))
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("wrong-bin", "wrong-bin"),
        ("not-a-bin", "wrong-bin"),
        ("wrong-key", "threshold-not-met"),
        ("stale-version", "stale-role-version"),
        ("old-style", "wrong-bin"),
    ],
    ids=lambda v: str(v),
)
def test_a_forged_bin_deposit_is_rejected(tmp_path: Path, how: str, code: str) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 3)
    new = _two_more_images(factory)
    bundle = _deposit_attack(factory, factory.submit(new[0], ["CPL-0070"]), how)
    head = factory.repo.head
    result = factory.ingest(bundle, "forged")
    assert result.status == "rejected"
    assert code in result.reasons, result.messages
    assert factory.repo.head.roles == head.roles


def test_a_bin_deposit_cannot_drop_a_lodged_image(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 1)  # two bins: the new image shares a bin with a lodged one
    new = _two_more_images(factory)
    bundle = factory.submit(new[0], ["CPL-0070"])
    if len(Metadata[Targets].from_bytes(bundle.role_bytes).signed.targets) < 2:
        bundle = factory.submit(new[1], ["CPL-0080"])
    assert len(Metadata[Targets].from_bytes(bundle.role_bytes).signed.targets) >= 2
    result = factory.ingest(_deposit_attack(factory, bundle, "dropped-target"), "forged")
    assert result.status == "rejected"
    assert "role-content-altered" in result.reasons, result.messages


def test_a_manufacturer_not_split_cannot_send_bins(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    new = _two_more_images(factory)
    bundle = factory.submit(new[0], ["CPL-0070"])
    result = factory.ingest(replace(bundle, role="mfr-121D-bin-0"), "forged")
    assert result.status == "rejected" and "wrong-bin" in result.reasons


def test_multi_key_manufacturer_splits_and_deposits_with_its_threshold(tmp_path: Path) -> None:
    image = make_image("121D", 2)
    factory = LibraryFactory(tmp_path)
    factory.import_cpl([make_entry("CPL-0002", image_sha=mi_sha(image))])
    signers = factory.add_manufacturer("121D", threshold=2, signers=2)
    factory.publish()
    factory.deposit(image, ["CPL-0002"], signers=signers)
    with pytest.raises(RejectedInputError, match="expected 2"):
        build_split(
            manufacturer_id="121D",
            bit_length=2,
            signers=signers[:1],
            library=_library(factory),
            now=factory.now,
        )
    bundle, _ = build_split(
        manufacturer_id="121D",
        bit_length=2,
        signers=signers,
        library=_library(factory),
        now=factory.now,
    )
    assert factory.ingest(bundle, "split").status == "accepted"
    factory.publish()
    new = make_image("121D", 3)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(new))]
    )
    factory.publish()
    with pytest.raises(RejectedInputError, match="expected 2"):
        factory.submit(new, ["CPL-0003"], signers=signers[:1])
    bundle = factory.submit(new, ["CPL-0003"], signers=signers)
    one_signature = Metadata[Targets].from_bytes(bundle.role_bytes)
    one_signature.signatures.popitem()
    result = factory.ingest(replace(bundle, role_bytes=one_signature.to_bytes()), "one-key")
    assert result.status == "rejected" and "threshold-not-met" in result.reasons
    factory.deposit(new, ["CPL-0003"], signers=signers)


# ------------------------------------------------------------------------------------ renewal


def test_renewal_of_a_split_manufacturer_re_signs_its_roles(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 2)
    before = dict(factory.repo.head.roles)
    library = _library(factory)
    bundle = build_renewal(
        manufacturer_id="121D",
        signers=[factory.mfr_signers["121D"]],
        library=library,
        now=factory.now,
    ).bundle
    result = factory.ingest(bundle, "renew")
    assert result.status == "accepted", result.messages
    factory.publish()
    after = factory.repo.head.roles
    for name in ["mfr-121D", *naming.bin_roles("121D", 2)]:
        assert after[name] == before[name] + 1
    assert any(e["event"] == "ingest-renewal" and "roles" in e for e in _events(factory))
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == []


def test_a_renewal_cannot_change_the_bins(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 2)
    bundle = build_renewal(
        manufacturer_id="121D",
        signers=[factory.mfr_signers["121D"]],
        library=_library(factory),
        now=factory.now,
    ).bundle
    assert bundle.role == ""  # role.json is the manufacturer role
    signer = factory.mfr_signers["121D"]
    forged = replace(
        bundle,
        role_bytes=_resign(
            bundle.role_bytes,
            signer,
            lambda s: setattr(s.delegations.succinct_roles, "bit_length", 3),  # type: ignore[union-attr]
        ),
    )
    result = factory.ingest(forged, "forged")
    assert result.status == "rejected" and "wrong-bin" in result.reasons


# ------------------------------------------------------------------------------------ commands


def test_the_commands_split_deposit_publish_and_verify(lib: Lib) -> None:  # noqa: F811
    env = {"CFL_KEY_PASSPHRASE": PASSPHRASE}
    common = ("--manufacturer", "121D", "--key", lib.key, "--from", lib.out, "--root", lib.root)
    split = lib.base / "outbox" / "split.cflb"
    done = ok("submit", "--split-bins", "2", *common, "--out", split, "--json", env=env)
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "split-bins"
    assert doc["bins"] == naming.bin_roles("121D", 2) and doc["role"] == "mfr-121D"
    ok("--repo", lib.repo, "ingest", split)
    ok("--repo", lib.repo, "publish")
    bundle = lib.submit("a3.ota", "CPL-0003", "a3.cflb")
    ok("--repo", lib.repo, "ingest", bundle)
    ok("--repo", lib.repo, "publish")
    verified = ok("verify", lib.out, "--root", lib.root)
    assert "2 image" in verified.stderr + verified.stdout
    mistakes = run("submit", "--split-bins", "2", "--renew", *common, "--out", split, env=env)
    assert mistakes.returncode == 2 and "Traceback" not in mistakes.stderr
    assert "--split-bins BITS without one" in mistakes.stderr
    again = run("submit", "--split-bins", "2", *common, "--out", split, env=env)
    assert again.returncode == 1 and "expected more than today's 2" in again.stderr


# ------------------------------------------------------------- the provider's other commands


def test_a_lapsed_bin_is_contained_and_the_manufacturer_renews_it(tmp_path: Path) -> None:
    from datetime import timedelta

    from repo_tool.ops.refresh import refresh as refresh_op

    factory, _ = standard_library(tmp_path)
    bundle, _ = build_split(
        manufacturer_id="3F01",
        bit_length=1,
        signers=[factory.mfr_signers["3F01"]],
        library=_library(factory),
        now=factory.now,
        expiry=timedelta(days=31),
    )
    assert factory.ingest(bundle, "split").status == "accepted"
    factory.publish()
    factory.now += timedelta(days=40)
    with factory.repo.locked():
        refresh_op(factory.repo, now=factory.now)
    factory.publish()
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now
    )
    assert problems == [] and library is not None
    assert sorted(library.expired_roles) == ["mfr-3F01", *naming.bin_roles("3F01", 1)]
    assert {i.target_path.split("/")[0] for i in library.images} == {"121D", "3F01"}
    status = status_report(factory.repo, now=factory.now)
    assert status["keys"]["mfr-3F01"]["expires_in_days"] < 0  # the first bin to lapse counts
    renewal = build_renewal(
        manufacturer_id="3F01",
        signers=[factory.mfr_signers["3F01"]],
        library=_library(factory),
        now=factory.now,
    ).bundle
    result = factory.ingest(renewal, "renew")
    assert result.status == "accepted", result.messages
    factory.publish()
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == [] and library is not None and dict(library.expired_roles) == {}


def test_withdraw_finds_the_image_in_its_bin(tmp_path: Path) -> None:
    from repo_tool.ops.withdraw import withdraw

    factory, _ = standard_library(tmp_path)
    _split(factory, 3)
    target = next(p for p in _all_targets(factory) if naming.is_image_target_path(p))
    with factory.repo.locked():
        done = withdraw(factory.repo, target, reason="bricks meters", now=factory.tick())
    assert done.sha256 == _all_targets(factory)[target]["hashes"]["sha256"]  # type: ignore[index]
    factory.publish()
    library = _library(factory)
    assert [i.withdrawal is not None for i in library.images if i.target_path == target] == [True]
    with factory.repo.locked(), pytest.raises(RejectedInputError, match="expected an image target"):
        withdraw(
            factory.repo,
            "121D/ESME-0001-00000009-0123456789abcdef.ota",
            reason="x",
            now=factory.now,
        )


def test_status_reports_bins_and_says_when_to_grow(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    _split(factory, 4)
    bins = status_report(factory.repo, now=factory.now)["manufacturers"]["121D"]["bins"]
    assert bins["bit_length"] == 4 and bins["bins"] == 16 and bins["largest_bin"] >= 1
    assert bins["grow"] is False and bins["suggested_bit_length"] == 4
    assert status_report(factory.repo, now=factory.now)["manufacturers"]["3F01"]["bins"] is None
    assert status_report(factory.repo, now=factory.now)["images"] == 3
    # The contract's bin rule (metadata_templates/bin_rule.py): 2 bins double once they hold more
    # than 2 x 4,000 bytes, which the manufacturer's next deposit then does by itself.
    factory2, _ = standard_library(tmp_path / "two")
    _split(factory2, 1)
    assert _bins_of_121d(factory2)["grow"] is False
    images = [make_image("121D", fw) for fw in range(10, 30)]
    factory2.entries += [
        make_entry(f"CPL-{fw:04d}", fw=f"{fw:08X}", image_sha=mi_sha(image))
        for fw, image in enumerate(images, start=10)
    ]
    factory2.import_cpl()
    factory2.publish()
    for fw, image in enumerate(images, start=10):
        factory2.deposit(image, [f"CPL-{fw:04d}"])
        if _bins_of_121d(factory2)["grow"]:
            break
    grown = _bins_of_121d(factory2)
    assert grown["grow"] is True and grown["suggested_bit_length"] == 2 and grown["bit_length"] == 1


def _bins_of_121d(factory: LibraryFactory) -> dict[str, object]:
    bins: dict[str, object] = status_report(factory.repo, now=factory.now)["manufacturers"]["121D"][
        "bins"
    ]
    return bins


def test_a_deposit_with_notes_signs_the_notes_bin_too(tmp_path: Path) -> None:
    factory, bundle = notes_split_library(tmp_path)
    library, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == [] and library is not None
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    for path in (bundle.target, f"{bundle.target}.notes.jwe"):
        info = updater.get_targetinfo(path)
        assert info is not None, path


def test_after_a_key_rotation_a_split_lists_the_new_keys_and_the_old_one_retires(
    tmp_path: Path,
) -> None:
    from repo_tool.ops.manufacturer_keys import retire_keys, rotate_key

    factory, _ = standard_library(tmp_path)
    _split(factory, 1)
    old = factory.mfr_signers["121D"]
    new = CryptoSigner.generate_ed25519()
    with factory.repo.locked():
        rotate_key(
            factory.repo,
            "121D",
            add=[new.public_key],
            remove=[old.public_key.keyid],
            threshold=None,
            now=factory.tick(),
            ceremony=False,
        )
    factory.publish()
    factory.mfr_signers["121D"] = new
    _split(factory, 2)
    with factory.repo.locked():
        retire_keys(factory.repo, "121D", now=factory.tick(), ceremony=False)
    factory.publish()
    succinct = factory.repo.role("mfr-121D").signed.delegations.succinct_roles  # type: ignore[union-attr]
    assert succinct is not None and succinct.keyids == [new.public_key.keyid]
    new_images = _two_more_images(factory)
    factory.deposit(new_images[0], ["CPL-0070"])
    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick()
    )
    assert problems == []


def test_a_replayed_split_or_bin_deposit_is_already_accepted(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    split = factory.write(_split_bundle(factory, 2), "split")
    assert factory.ingest(split).status == "accepted"
    again = factory.ingest(split)
    assert again.status == "accepted" and again.messages[0].startswith("already accepted")
    factory.publish()
    new = _two_more_images(factory)
    deposit = factory.write(factory.submit(new[0], ["CPL-0070"]), "deposit")
    assert factory.ingest(deposit).status == "accepted"
    head = factory.repo.head
    replay = factory.ingest(deposit)
    assert replay.status == "accepted" and replay.messages[0].startswith("already accepted")
    assert factory.repo.head == head


def test_publish_plans_the_bins_as_delegated_roles_before_snapshot(tmp_path: Path) -> None:
    from repo_tool.ops.snapshot import stage_snapshot
    from repo_tool.publish.folder import repository_plan
    from repo_tool.publish.plan import PUBLISH_STEPS

    factory, _ = standard_library(tmp_path)
    assert factory.ingest(_split_bundle(factory, 2), "split").status == "accepted"
    metadata = factory.out / "metadata"

    def snapshot_file(version: int) -> bytes | None:
        path = metadata / f"{version}.snapshot.json"
        return path.read_bytes() if path.exists() else None

    with factory.repo.locked():
        stage_snapshot(factory.repo, now=factory.tick())
        plan = repository_plan(
            factory.repo, (metadata / "timestamp.json").read_bytes(), snapshot_file
        )
    steps = {p.role: p.step for p in plan if p.role is not None}
    assert {steps[name] for name in naming.bin_roles("121D", 2)} == {"delegated-roles"}
    assert steps["mfr-121D"] == "delegated-roles" and steps["snapshot"] == "snapshot"
    assert PUBLISH_STEPS.index("delegated-roles") < PUBLISH_STEPS.index("snapshot")


@pytest.mark.parametrize("edit", ["missing", "renamed", "another-manufacturer", "other-bytes"])
def test_a_replayed_split_with_edited_bins_is_judged_not_already_accepted(
    tmp_path: Path, edit: str
) -> None:
    # Attack: the replay check compared role.json alone, so an accepted split replayed with a bin
    # dropped, renamed, re-signed or another manufacturer's bin added was reported "accepted:
    # already accepted" (exit 0) instead of being judged and rejected.
    factory, _ = standard_library(tmp_path)
    split = _split_bundle(factory, 2)
    assert factory.ingest(split, "split").status == "accepted"
    bins = dict(split.bins)
    if edit == "missing":
        del bins["mfr-121D-bin-3"]
    elif edit == "renamed":
        bins["mfr-121D-bin-03"] = bins.pop("mfr-121D-bin-3")
    elif edit == "another-manufacturer":
        bins["mfr-3F01-bin-3"] = bins["mfr-121D-bin-3"]
    else:
        bins["mfr-121D-bin-3"] = _resign(bins["mfr-121D-bin-3"], factory.mfr_signers["121D"])
        bins["mfr-121D-bin-3"] = bins["mfr-121D-bin-3"].replace(b'"version"', b'"version" ', 1)
    head = factory.repo.head
    replay = factory.ingest(replace(split, bins=tuple(sorted(bins.items()))), f"replay-{edit}")
    assert replay.status == "rejected", replay.messages
    assert not any(m.startswith("already accepted") for m in replay.messages)
    assert factory.repo.head == head
