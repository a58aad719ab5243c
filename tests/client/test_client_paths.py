"""Upgrade paths (MP231 pathways): worked cases, and property tests against brute force."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from client_factories import cpl, cpl_entry, image
from hypothesis import given, settings
from hypothesis import strategies as st
from test_client_matching import literal_rule

from client.estate.paths import (
    BLOCKED_NO_PATHWAY,
    BLOCKED_NOT_ON_CPL,
    BLOCKED_ONLY_VIA_WITHDRAWN,
    PathFinder,
)
from client.estate.reader import GroupKey
from client.trust.catalogue import CatalogueImage
from metadata_templates.cpl_document import CplDocument, CplEntry

# firmware 1 -> 2 (N/A) -> 3 (Upgrade From CPL-2 only) -> 4 (Upgrade From CPL-3 only)
V1 = cpl_entry("CPL-1", fw="00000001")
V2 = cpl_entry("CPL-2", fw="00000002")
V3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
V4 = cpl_entry("CPL-4", fw="00000004", upgrade_from=["CPL-3"])
IMG2 = image([V2])
IMG3 = image([V3], reason="security", advisories=["CVE-2026-0003"])
IMG4 = image([V4])


def group(fw: str) -> GroupKey:
    return GroupKey("ESME", "121D", "0001", "0001", fw)


def targets(path: Sequence[CatalogueImage]) -> list[str]:
    return [i.target_path for i in path]


def test_a_device_steps_through_every_intermediate_image_in_order() -> None:
    finder = PathFinder([IMG4, IMG2, IMG3], cpl([V1, V2, V3, V4]))
    plan = finder.plan(group("00000001"))
    assert targets(plan.path) == targets([IMG2, IMG3, IMG4])
    assert plan.recommended == IMG4
    assert plan.newest == IMG4 and plan.blocked is None
    assert plan.has_security_fix  # IMG3 on the way is a security fix


def test_an_up_to_date_group_has_an_empty_path_and_nothing_newer() -> None:
    plan = PathFinder([IMG2, IMG3, IMG4], cpl([V1, V2, V3, V4])).plan(group("00000004"))
    assert plan.path == () and plan.recommended is None
    assert plan.newest is None and plan.blocked is None


def test_the_shortest_path_wins_over_a_longer_one() -> None:
    # 4 also lists CPL-1 directly: one hop beats three.
    direct = cpl_entry("CPL-4", fw="00000004", upgrade_from=["CPL-3", "CPL-1"])
    img4 = image([direct])
    plan = PathFinder([IMG2, IMG3, img4], cpl([V1, V2, V3, direct])).plan(group("00000001"))
    assert targets(plan.path) == targets([img4])


def test_equally_short_paths_prefer_the_security_fix() -> None:
    # From 1, both 2a (compliance) and 2b (security) lead to 3 in two hops.
    a = cpl_entry("CPL-2A", fw="00000002", upgrade_from=["CPL-1"])
    b = cpl_entry("CPL-2B", fw="00000012", upgrade_from=["CPL-1"])
    top = cpl_entry("CPL-3", fw="00000030", upgrade_from=["CPL-2A", "CPL-2B"])
    img_a = image([a], salt="a")
    img_b = image([b], reason="security", advisories=["CVE-2026-0002"], salt="b")
    img_top = image([top])
    finder = PathFinder([img_a, img_b, img_top], cpl([V1, a, b, top]))
    assert targets(finder.plan(group("00000001")).path) == targets([img_b, img_top])
    # and with the security fix on the other branch, the other branch wins
    img_a = image([a], reason="security", advisories=["CVE-2026-0001"], salt="a")
    img_b = image([b], salt="b")
    finder = PathFinder([img_a, img_b, img_top], cpl([V1, a, b, top]))
    assert targets(finder.plan(group("00000001")).path) == targets([img_a, img_top])


def test_a_withdrawn_intermediate_is_never_passed_through_and_says_so() -> None:
    withdrawn = image([V3], reason="security", advisories=["CVE-2026-0003"], withdrawn=True)
    plan = PathFinder([IMG2, withdrawn, IMG4], cpl([V1, V2, V3, V4])).plan(group("00000001"))
    assert targets(plan.path) == targets([IMG2])
    assert plan.newest == IMG4
    assert plan.blocked is not None
    assert plan.blocked.code == BLOCKED_ONLY_VIA_WITHDRAWN
    assert plan.blocked.target == IMG4.target_path
    assert "withdrawn" in plan.blocked.message


def test_a_firmware_missing_from_the_cpl_cannot_follow_a_pathway() -> None:
    plan = PathFinder([IMG3], cpl([V2, V3])).plan(group("00000001"))
    assert plan.path == ()
    assert plan.blocked is not None and plan.blocked.code == BLOCKED_NOT_ON_CPL
    assert "00000001" in plan.blocked.message


def test_no_pathway_from_the_current_entry_is_reported() -> None:
    plan = PathFinder([IMG3], cpl([V1, V2, V3])).plan(group("00000001"))
    assert plan.path == ()
    assert plan.blocked is not None and plan.blocked.code == BLOCKED_NO_PATHWAY
    assert plan.blocked.to_json()["target"] == IMG3.target_path


def test_pathway_cycles_end() -> None:
    # 2 may go to 3 and 3 back to 2: the search must still stop and pick 3.
    back = cpl_entry("CPL-2", fw="00000002", upgrade_from=["CPL-3"])
    forth = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"])
    finder = PathFinder([image([back]), image([forth])], cpl([back, forth]))
    plan = finder.plan(group("00000002"))
    assert [i.cfl.firmware_version for i in plan.path] == ["00000003"]


# ---------------------------------------------------------------------------- properties


def _random_library(rnd: random.Random) -> tuple[list[CatalogueImage], CplDocument]:
    """One product line with a random pathway graph, some security fixes and withdrawals."""
    entries: list[CplEntry] = []
    for n in range(rnd.randint(1, 10)):
        others = [e.id for e in entries]
        pathway = rnd.sample(others, k=min(len(others), rnd.randint(0, 3)))
        entries.append(cpl_entry(f"CPL-{n}", fw=f"{rnd.randint(1, 9):08X}", upgrade_from=pathway))
    images = []
    for n in range(rnd.randint(0, 10)):
        security = rnd.random() < 0.4
        images.append(
            image(
                [rnd.choice(entries)],
                reason="security" if security else "compliance",
                advisories=["CVE-2026-0001"] if security else [],
                withdrawn=rnd.random() < 0.2,
                salt=str(n),
            )
        )
    return images, cpl(entries)


def _edges(images: Sequence[CatalogueImage], doc: CplDocument, fw: str) -> list[CatalogueImage]:
    return literal_rule(group(fw), list(images), doc)


def _all_paths(
    images: Sequence[CatalogueImage], doc: CplDocument, start: str, length: int
) -> list[tuple[CatalogueImage, ...]]:
    """Every walk of exactly ``length`` hops from ``start`` by the literal rule (brute force)."""
    walks: list[tuple[CatalogueImage, ...]] = [()]
    for _ in range(length):
        walks = [
            (*walk, hop)
            for walk in walks
            for hop in _edges(images, doc, walk[-1].cfl.firmware_version if walk else start)
        ]
    return walks


@settings(max_examples=100, deadline=None)
@given(rnd=st.randoms(use_true_random=False))
def test_paths_are_allowed_shortest_best_and_never_withdrawn(rnd: random.Random) -> None:
    images, doc = _random_library(rnd)
    finder = PathFinder(images, doc)
    start = f"{rnd.randint(1, 9):08X}"
    plan = finder.plan(group(start))
    # every hop is an edge the applicability rule allows from the firmware before it
    here = start
    for hop in plan.path:
        assert hop in _edges(images, doc, here)
        assert not hop.withdrawn
        here = hop.cfl.firmware_version
    # the best reachable image, by brute force over walks up to the number of firmware versions
    reachable: dict[str, int] = {}
    for length in range(1, 11):
        for walk in _all_paths(images, doc, start, length):
            reachable.setdefault(walk[-1].target_path, length)
        if len(reachable) == len({i.target_path for i in images}):
            break
    if not reachable:
        assert plan.path == ()
        return
    firmware = {i.target_path: i.firmware_number for i in images}
    best = max(firmware[t] for t in reachable)
    assert plan.recommended is not None
    assert plan.recommended.firmware_number == best
    # shortest: no walk reaches the recommended image in fewer hops
    assert len(plan.path) == reachable[plan.recommended.target_path]
    # among the shortest walks to it, none carries more security fixes
    rivals = [
        w for w in _all_paths(images, doc, start, len(plan.path)) if w[-1] == plan.recommended
    ]
    assert plan.path in rivals
    most = max(sum(i.is_security_fix for i in w) for w in rivals)
    assert sum(i.is_security_fix for i in plan.path) == most
    # input order never matters
    shuffled = list(images)
    rnd.shuffle(shuffled)
    assert PathFinder(shuffled, doc).plan(group(start)) == plan


@pytest.mark.parametrize("fw", ["00000001", "00000002", "00000003", "00000004"])
def test_the_blocked_reason_names_the_newest_image_only_when_it_is_not_reached(fw: str) -> None:
    plan = PathFinder([IMG2, IMG3, IMG4], cpl([V1, V2, V3, V4])).plan(group(fw))
    assert plan.blocked is None
    assert plan.newest == (IMG4 if fw != "00000004" else None)
