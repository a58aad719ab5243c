"""The applicability rule: worked cases, and a property test against a literal reading of it."""

from __future__ import annotations

import random

import pytest
from client_factories import cpl, cpl_entry, image
from hypothesis import given, settings
from hypothesis import strategies as st

from client.estate.matching import Matcher, match_estate
from client.estate.reader import GroupKey
from client.trust.catalogue import CatalogueImage, VerifiedTarget, build_catalogue
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.withdrawals import Withdrawal, WithdrawalList

# A small product line: model 0001 hw 0001, firmware 1 -> 2 -> 3, and 3 lists explicit pathways.
V1 = cpl_entry("CPL-1", fw="00000001")
V2 = cpl_entry("CPL-2", fw="00000002")
V3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
GAS = cpl_entry("CPL-G1", device_type="GSME", model="0002", fw="00000005")
OTHER_HW = cpl_entry("CPL-H2", hw="0002", fw="00000009")
DOC = cpl([V1, V2, V3, GAS, OTHER_HW])


def group(fw: str, *, dt: str = "ESME", model: str = "0001", hw: str = "0001") -> GroupKey:
    return GroupKey(dt, "121D", model, hw, fw)


def targets(images: tuple[CatalogueImage, ...]) -> list[str]:
    return [i.target_path for i in images]


IMG2 = image([V2])
IMG3 = image([V3])


@pytest.mark.parametrize(
    ("device_fw", "images", "expected"),
    [
        ("00000001", [IMG2], [IMG2]),  # N/A pathway, higher version
        ("00000002", [IMG2], []),  # same version is not an upgrade
        ("00000003", [IMG2], []),  # lower version is not an upgrade
        ("00000002", [IMG3], [IMG3]),  # pathway lists the device's current entry
        ("00000001", [IMG3], []),  # pathway does not list CPL-1, although 3 > 1
        ("00000007", [IMG3], []),  # current firmware not on the CPL: no pathway can name it
        ("00000001", [IMG2, IMG3], [IMG2]),
        ("00000002", [IMG2, IMG3], [IMG3]),
    ],
    ids=[
        "na-higher",
        "na-equal",
        "na-lower",
        "pathway-listed",
        "pathway-not-listed",
        "current-not-on-cpl",
        "two-images-from-1",
        "two-images-from-2",
    ],
)
def test_upgrade_rule(
    device_fw: str, images: list[CatalogueImage], expected: list[CatalogueImage]
) -> None:
    assert targets(Matcher(images, DOC).applicable(group(device_fw))) == targets(tuple(expected))


def test_recommended_is_highest_version_and_all_applicable_are_listed_best_first() -> None:
    v4 = image([cpl_entry("CPL-4", fw="00000004")])
    v10 = image([cpl_entry("CPL-10", fw="00000010")])
    (result,) = match_estate({group("00000001"): 5}, [IMG2, v10, v4], DOC)
    assert targets(result.applicable) == targets((v10, v4, IMG2))
    assert result.recommended == v10
    assert result.device_count == 5
    assert result.current_cpl_entries == ("CPL-1",)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (group("00000001", dt="GSME"), "device type differs"),
        (group("00000001", model="0002"), "model differs"),
        (group("00000001", hw="0002"), "hardware version differs"),
        (GroupKey("ESME", "ABCD", "0001", "0001", "00000001"), "manufacturer differs"),
    ],
    ids=["device-type", "model", "hardware-version", "manufacturer"],
)
def test_identity_must_match(key: GroupKey, why: str) -> None:
    assert Matcher([IMG2], DOC).applicable(key) == (), why


def test_withdrawn_images_never_apply() -> None:
    withdrawn = image([V2], withdrawn=True)
    (result,) = match_estate({group("00000001"): 1}, [withdrawn], DOC)
    assert result.applicable == ()
    assert result.recommended is None


def test_an_image_for_several_entries_applies_through_any_and_is_listed_once() -> None:
    both = image([V2, cpl_entry("CPL-2b", hw="0002", fw="00000002")])
    assert targets(Matcher([both], DOC).applicable(group("00000001"))) == [both.target_path]
    assert targets(Matcher([both], DOC).applicable(group("00000001", hw="0002"))) == [
        both.target_path
    ]


def test_equal_versions_tie_break_on_target_path() -> None:
    a = image([V2], salt="a")
    b = image([V2], salt="b")
    first = min(a, b, key=lambda i: i.target_path)
    for order in ([a, b], [b, a]):
        (result,) = match_estate({group("00000001"): 1}, order, DOC)
        assert result.recommended == first


def test_security_fixes_are_flagged() -> None:
    fix = image([V3], reason="security", advisories=["CVE-2026-0001"])
    (result,) = match_estate({group("00000002"): 1}, [fix], DOC)
    assert result.has_security_fix
    (plain,) = match_estate({group("00000001"): 1}, [IMG2], DOC)
    assert not plain.has_security_fix


def test_every_group_gets_a_result_in_key_order_even_with_nothing_applicable() -> None:
    groups = {group("00000003"): 2, group("00000001"): 1, group("00000005", dt="GSME"): 4}
    results = match_estate(groups, [IMG2], DOC)
    assert [r.key for r in results] == sorted(groups)
    assert [r.recommended is not None for r in results] == [True, False, False]


def test_na_spelled_out_in_upgrade_from_is_treated_as_no_pathway() -> None:
    literal = image([cpl_entry("CPL-5", fw="00000005", upgrade_from=["N/A"])])
    assert targets(Matcher([literal], DOC).applicable(group("00000001"))) == [literal.target_path]


# --- catalogue ------------------------------------------------------------------------------------


def verified(
    img: CatalogueImage, *, role: str = "mfr-121D", path: str | None = None
) -> VerifiedTarget:
    return VerifiedTarget(
        path=path or img.target_path,
        role=role,
        length=img.length,
        sha256=img.sha256,
        custom={"cfl": img.cfl.to_dict()},
    )


def test_catalogue_keeps_good_images_and_marks_withdrawals() -> None:
    withdrawals = WithdrawalList(
        (Withdrawal(IMG3.target_path, IMG3.sha256, "2026-02-01T00:00:00Z", "bricks meters"),)
    )
    cfl_cpl = VerifiedTarget("cfl/cpl.json", "targets", 10, "0" * 64, {})
    images, problems = build_catalogue([verified(IMG3), cfl_cpl, verified(IMG2)], withdrawals)
    assert problems == ()
    assert [i.target_path for i in images] == sorted([IMG2.target_path, IMG3.target_path])
    assert {i.target_path: i.withdrawn for i in images} == {
        IMG2.target_path: False,
        IMG3.target_path: True,
    }


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (verified(IMG2, path="ABCD/" + IMG2.target_path.split("/")[1], role="mfr-ABCD"), "prefix"),
        (verified(IMG2, role="mfr-ABCD"), "signing role"),
        (VerifiedTarget(IMG2.target_path, "mfr-121D", 1, "0" * 64, {}), "expected a 'cfl' key"),
        (VerifiedTarget(IMG2.target_path, "mfr-121D", 1, "0" * 64, {"cfl": {}}), "custom.cfl"),
        (verified(IMG2, path="121D/readme.txt"), "not an image target path"),
    ],
    ids=["other-manufacturers-prefix", "wrong-role", "no-cfl", "invalid-cfl", "not-an-image"],
)
def test_catalogue_refuses_targets_that_contradict_their_delegation(
    target: VerifiedTarget, message: str
) -> None:
    images, problems = build_catalogue([target], WithdrawalList())
    assert images == ()
    (problem,) = problems
    assert message in problem.message


# --- property: the indexed matcher equals a literal reading of the rule -----------------------------


def literal_rule(
    key: GroupKey, images: list[CatalogueImage], doc: CplDocument
) -> list[CatalogueImage]:
    """DOMAIN.md's sentence, checked image by image with no index."""
    current = {
        e.id
        for e in doc.entries
        if (e.manufacturer_id, e.model_id, e.hardware_version, e.firmware_version)
        == (key.manufacturer_id, key.model_id, key.hardware_version, key.firmware_version)
    }
    out = []
    for img in images:
        if img.withdrawn or img.cfl.device_type != key.device_type:
            continue
        if img.cfl.manufacturer_id != key.manufacturer_id:
            continue
        for entry in img.cfl.cpl_entries:
            if (entry.model_id, entry.hardware_version) != (key.model_id, key.hardware_version):
                continue
            if entry.upgrade_from and entry.upgrade_from != ("N/A",):
                ok = bool(current & set(entry.upgrade_from))
            else:
                ok = int(img.cfl.firmware_version, 16) > int(key.firmware_version, 16)
            if ok:
                out.append(img)
                break
    return out


@settings(max_examples=150, deadline=None)
@given(rnd=st.randoms(use_true_random=False))
def test_matcher_equals_the_literal_rule(rnd: random.Random) -> None:
    mfrs, models, hws = ["121D", "ABCD"], ["0001", "010A030B"], ["0001", "0002"]
    types = ["ESME", "GSME"]
    entries: list[CplEntry] = []
    for n in range(rnd.randint(1, 25)):
        earlier = [e.id for e in entries]
        pathway = rnd.sample(earlier, k=min(len(earlier), rnd.randint(0, 3)))
        entries.append(
            cpl_entry(
                f"CPL-{n}",
                device_type=rnd.choice(types),
                mfr=rnd.choice(mfrs),
                model=rnd.choice(models),
                hw=rnd.choice(hws),
                fw=f"{rnd.randint(1, 12):08X}",
                upgrade_from=pathway,
            )
        )
    images = []
    for n in range(rnd.randint(0, 12)):
        first = rnd.choice(entries)
        same = [
            e
            for e in entries
            if (e.manufacturer_id, e.device_type) == (first.manufacturer_id, first.device_type)
        ]
        chosen = [first, *rnd.sample(same, k=min(len(same), rnd.randint(0, 2)))]
        images.append(image(chosen, withdrawn=rnd.random() < 0.2, salt=str(n)))
    doc = cpl(entries)
    groups = {
        GroupKey(
            rnd.choice(types),
            rnd.choice(mfrs),
            rnd.choice(models),
            rnd.choice(hws),
            f"{rnd.randint(1, 12):08X}",
        ): rnd.randint(1, 9)
        for _ in range(rnd.randint(1, 20))
    }
    results = match_estate(groups, images, doc)
    shuffled = list(images)
    rnd.shuffle(shuffled)
    assert match_estate(groups, shuffled, doc) == results  # input order never matters
    for result in results:
        expected = literal_rule(result.key, images, doc)
        assert {i.target_path for i in result.applicable} == {i.target_path for i in expected}
        assert len(result.applicable) == len(expected)
        if expected:
            best = max(i.firmware_number for i in expected)
            assert result.recommended is not None
            assert result.recommended.firmware_number == best
            assert not result.recommended.withdrawn
        else:
            assert result.recommended is None
