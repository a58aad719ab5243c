"""The Change of Supplier history: gained and lost meters, new images, time injected."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from client_factories import device_id
from hypothesis import given, settings
from hypothesis import strategies as st

from client.estate.history import SAMPLE_SIZE, History, _to_id, _to_int
from metadata_templates.errors import UnavailableError

T1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
T3 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def ids(numbers: range | list[int]) -> list[str]:
    return [device_id(n) for n in numbers]


def test_first_check_has_no_baseline_so_everything_is_new(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as history:
        changes = history.record(
            now=T1,
            devices=3,
            catalogue_targets=["A/1", "A/2"],
            applicable_targets=["A/2"],
            device_ids=ids(range(3)),
        )
    assert changes.devices_since is None
    assert changes.gained_devices == 3
    assert changes.gained_sample == tuple(ids(range(3)))
    assert changes.lost_devices == 0
    assert changes.images_since is None
    assert changes.new_images == ("A/2",)


def test_gained_and_lost_meters_and_new_images_since_last_check(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with History(path) as history:
        history.record(
            now=T1,
            devices=5,
            catalogue_targets=["A/1"],
            applicable_targets=["A/1"],
            device_ids=ids(range(5)),
        )
    gained: list[str] = []
    lost: list[str] = []
    with History(path) as history:
        # Hyphenation and case differ from last time: the same meters must still match.
        now_ids = [d.replace("-", "").lower() for d in ids([2, 3, 4, 7, 6])]
        changes = history.record(
            now=T2,
            devices=5,
            catalogue_targets=["A/1", "A/2", "B/9"],
            applicable_targets=["A/1", "A/2"],
            device_ids=now_ids,
            on_gained=gained.append,
            on_lost=lost.append,
        )
        assert history.last_check() is not None
    assert changes.devices_since == "2026-03-01T09:00:00Z"
    assert (changes.gained_devices, gained) == (2, ids([6, 7]))
    assert (changes.lost_devices, lost) == (2, ids([0, 1]))
    assert changes.images_since == "2026-03-01T09:00:00Z"
    assert changes.new_images == ("A/2",)  # B/9 is new but applies to nothing in the estate


def test_a_plain_check_records_images_but_keeps_the_device_baseline(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as history:
        history.record(
            now=T1, devices=2, catalogue_targets=[], applicable_targets=[], device_ids=ids([1, 2])
        )
        plain = history.record(
            now=T2, devices=3, catalogue_targets=["A/1"], applicable_targets=["A/1"]
        )
        assert (plain.gained_devices, plain.devices_since) == (0, None)
        assert plain.new_images == ("A/1",)
        later = history.record(
            now=T3,
            devices=3,
            catalogue_targets=["A/1"],
            applicable_targets=["A/1"],
            device_ids=ids([1, 2, 3]),
        )
        assert later.devices_since == "2026-03-01T09:00:00Z"
        assert later.images_since == "2026-04-01T09:00:00Z"
        assert later.gained_sample == (device_id(3),)
        assert later.new_images == ()
        last = history.last_check()
        assert last is not None and (last.at, last.devices, last.recorded_devices) == (
            "2026-05-01T09:00:00Z",
            3,
            True,
        )


def test_estates_are_kept_apart(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as history:
        history.record(
            now=T1,
            devices=1,
            catalogue_targets=[],
            applicable_targets=[],
            device_ids=ids([1]),
            estate="electricity",
        )
        gas = history.record(
            now=T2,
            devices=1,
            catalogue_targets=[],
            applicable_targets=[],
            device_ids=ids([1]),
            estate="gas",
        )
    assert (gas.devices_since, gas.gained_devices) == (None, 1)


def test_duplicate_ids_in_an_estate_count_once_and_samples_are_bounded(tmp_path: Path) -> None:
    many = ids(range(SAMPLE_SIZE + 10))
    with History(tmp_path / "h.sqlite") as history:
        changes = history.record(
            now=T1,
            devices=len(many) + 1,
            catalogue_targets=[],
            applicable_targets=[],
            device_ids=[*many, many[0]],
        )
    assert changes.gained_devices == SAMPLE_SIZE + 10
    assert len(changes.gained_sample) == SAMPLE_SIZE


def test_a_failure_mid_record_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with History(path) as history:
        history.record(
            now=T1, devices=1, catalogue_targets=[], applicable_targets=[], device_ids=ids([1])
        )

        def boom(_: str) -> None:
            raise RuntimeError("sink failed")

        with pytest.raises(RuntimeError, match="sink failed"):
            history.record(
                now=T2,
                devices=1,
                catalogue_targets=["A/1"],
                applicable_targets=[],
                device_ids=ids([2]),
                on_gained=boom,
            )
        retry = history.record(
            now=T3, devices=1, catalogue_targets=[], applicable_targets=[], device_ids=ids([2])
        )
    assert retry.devices_since == "2026-03-01T09:00:00Z"
    assert retry.gained_sample == (device_id(2),)


def test_a_history_from_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(UnavailableError, match="schema_version: found '99', expected 1"):
        History(path)


def test_an_unopenable_history_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "h.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(UnavailableError, match=r"h\.sqlite"):
        History(tmp_path / "h.sqlite")


@settings(max_examples=200)
@given(st.integers(0, 2**64 - 1))
def test_device_ids_round_trip_through_signed_integers(value: int) -> None:
    text = value.to_bytes(8, "big").hex("-").upper()
    stored = _to_int(text)
    assert -(2**63) <= stored < 2**63
    assert _to_id(stored) == text
