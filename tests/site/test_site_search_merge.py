"""Merging new images into the word shards: appending on the encoded posting lists must give exactly
what a full encode gives, and a merge must equal a full build of the grown library."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repo_tool.site import search as site_search

id_sets = st.sets(st.integers(min_value=0, max_value=400), max_size=60)


@given(old=id_sets, new=id_sets)
def test_append_ids_is_encode_of_the_union_when_every_new_id_is_above(
    old: set[int], new: set[int]
) -> None:
    above = {max(old, default=-1) + 1 + i for i in new}
    appended = site_search.append_ids(site_search.encode_ids(old), above)
    assert appended == site_search.encode_ids(old | above)


@given(old=id_sets.filter(bool), new=id_sets)
def test_append_ids_refuses_an_id_not_above_the_last(old: set[int], new: set[int]) -> None:
    assert site_search.append_ids(site_search.encode_ids(old), new | {max(old)}) is None


def _tokens(first: int, last: int) -> list[tuple[int, list[str]]]:
    # A word every image holds (one long run), one held by every third image, a unique word per
    # image (enough of them to split their prefix's shard), and a firmware-like version.
    return [
        (i, ["model", f"zz{i % 3}", f"uniq{i:05d}", f"0000{i:04x}"]) for i in range(first, last)
    ]


@pytest.mark.parametrize("added", [1, 7, 2000], ids=["one", "a-few", "a-split-grows"])
def test_a_merge_equals_a_full_build_of_the_grown_library(added: int) -> None:
    before = site_search.word_shards(_tokens(0, 3000))
    merged = site_search.merge_shards(before, before.get, _tokens(3000, 3000 + added))
    assert {**before, **merged} == site_search.word_shards(_tokens(0, 3000 + added))


def test_merging_the_same_images_again_changes_nothing() -> None:
    """A re-run after a crash merges ids the shards already hold: the decode path, same bytes."""
    grown = site_search.word_shards(_tokens(0, 3001))
    again = site_search.merge_shards(grown, grown.get, _tokens(3000, 3001))
    assert again and all(grown[p] == data for p, data in again.items())


@pytest.mark.parametrize(
    "words",
    [{"model": [1, 0]}, {"model": "1"}, {"model": [True]}, {"model": [1.5]}],
    ids=["zero-step", "not-a-list", "a-boolean", "a-float"],
)
def test_a_damaged_shard_is_refused_not_merged(words: dict[str, object]) -> None:
    damaged = json.dumps({"schema_version": 1, "words": words}).encode()
    with pytest.raises(ValueError, match="model"):
        site_search.merge_shards(["mo"], lambda prefix: damaged, _tokens(5, 6))
